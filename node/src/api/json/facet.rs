//! `POST /collections/{c}/facet`: the body, and the counts it answers.

use serde::Serialize;
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_shard::filter::{Filter, JsonPath};

use super::{bad, check_fields, field, filter, limit};
use crate::router::KeySelector;

/// A facet request.
pub struct Facet {
    pub key: String,
    pub path: JsonPath,
    pub limit: usize,
    pub filter: Option<Filter>,
    pub shard_key: KeySelector,
}

impl Facet {
    pub fn parse(o: &Map<String, Value>, max_limit: usize) -> Result<Facet> {
        // counts are always exact: `exact: false` allows an estimate, and an exact count is one
        check_fields(
            o,
            "",
            &["key", "limit", "filter", "exact", "shard_key"],
            &[],
        )?;
        let key = match field(o, "key") {
            Some(Value::String(k)) if !k.is_empty() => k.clone(),
            _ => {
                return Err(bad(
                    "Format error in JSON body: key must be a payload field name",
                ));
            }
        };
        let path = JsonPath::parse(&key).map_err(|e| {
            bad(format!(
                "Format error in JSON body: key is not a valid path: {e}"
            ))
        })?;
        if let Some(v) = field(o, "exact")
            && !v.is_boolean()
        {
            return Err(bad("Format error in JSON body: exact must be a boolean"));
        }
        Ok(Facet {
            key,
            path,
            limit: limit(o, 10, max_limit)?,
            filter: filter(o)?,
            shard_key: super::key_selector(o)?,
        })
    }
}

/// One value and how many points hold it.
#[derive(Serialize)]
pub struct FacetHit {
    pub count: u64,
    pub value: Value,
}

/// The answer of a facet request.
#[derive(Serialize)]
pub struct FacetResult {
    pub hits: Vec<FacetHit>,
}
