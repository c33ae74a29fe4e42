//! Alias bodies (`POST /collections/aliases`) and answers (`GET .../aliases`).

use serde::Serialize;
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_cluster::meta::AliasAction;

use super::{bad, check_fields, field, obj};

/// Most actions one alias change may carry.
pub const MAX_ALIAS_ACTIONS: usize = 256;

/// The actions of an alias change body, in order.
pub fn alias_actions(o: &Map<String, Value>) -> Result<Vec<AliasAction>> {
    check_fields(o, "", &["actions"], &[])?;
    let list = field(o, "actions")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Format error in JSON body: actions must be a list"))?;
    if list.len() > MAX_ALIAS_ACTIONS {
        return Err(bad(format!(
            "Bad request: at most {MAX_ALIAS_ACTIONS} alias actions per request"
        )));
    }
    list.iter().map(action).collect()
}

fn action(v: &Value) -> Result<AliasAction> {
    let o = obj(v, "actions[]")?;
    let name = super::string_at;
    if let Some(c) = field(o, "create_alias") {
        let m = obj(c, "create_alias")?;
        check_fields(m, "create_alias.", &["collection_name", "alias_name"], &[])?;
        return Ok(AliasAction::Create {
            alias: name(m, "alias_name", "create_alias")?,
            collection: name(m, "collection_name", "create_alias")?,
        });
    }
    if let Some(d) = field(o, "delete_alias") {
        let m = obj(d, "delete_alias")?;
        check_fields(m, "delete_alias.", &["alias_name"], &[])?;
        return Ok(AliasAction::Delete {
            alias: name(m, "alias_name", "delete_alias")?,
        });
    }
    if let Some(r) = field(o, "rename_alias") {
        let m = obj(r, "rename_alias")?;
        check_fields(
            m,
            "rename_alias.",
            &["old_alias_name", "new_alias_name"],
            &[],
        )?;
        return Ok(AliasAction::Rename {
            old: name(m, "old_alias_name", "rename_alias")?,
            new: name(m, "new_alias_name", "rename_alias")?,
        });
    }
    Err(bad(
        "Format error in JSON body: an alias action is create_alias, delete_alias or rename_alias",
    ))
}

/// One alias.
#[derive(Serialize)]
pub struct AliasDescription {
    pub alias_name: String,
    pub collection_name: String,
}

/// `GET /aliases`, `GET /collections/{c}/aliases`.
#[derive(Serialize)]
pub struct AliasList {
    pub aliases: Vec<AliasDescription>,
}
