//! Grouped searches (`/points/query/groups`, `/points/search/groups`,
//! `/points/recommend/groups`): the grouping fields of their bodies and the groups they answer.

use serde::Serialize;
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_shard::filter::path::{JsonPath, get_flat_values};
use tessera_shard::point::Payload;
use tessera_shard::store::PayloadSelector;

use super::query::ScoredPoint;
use super::{PointRecord, bad, field, obj, usize_field, with_payload, with_vector};

/// The fields of a groups body that say how to group; the rest is the search's own body.
const GROUP_FIELDS: [&str; 4] = ["group_by", "group_size", "limit", "with_lookup"];

/// How to group a search's hits.
pub struct GroupSpec {
    /// The payload field whose values are the groups.
    pub group_by: JsonPath,
    /// Most hits per group.
    pub group_size: usize,
    /// Most groups.
    pub limit: usize,
    /// Where each group's own point is read, by the group's id.
    pub lookup: Option<Lookup>,
}

/// `with_lookup`: the collection holding a point per group, and what to return of it.
pub struct Lookup {
    pub collection: String,
    pub with_payload: PayloadSelector,
    pub with_vector: bool,
}

impl GroupSpec {
    /// The grouping of `o`, and `o` without its grouping fields (the search body).
    pub fn parse(
        o: &Map<String, Value>,
        default_group_size: usize,
        max_limit: usize,
    ) -> Result<(GroupSpec, Map<String, Value>)> {
        let group_by = match field(o, "group_by") {
            Some(Value::String(s)) if !s.is_empty() => JsonPath::parse(s).map_err(|e| {
                bad(format!(
                    "Format error in JSON body: group_by is not a valid path: {e}"
                ))
            })?,
            Some(_) => return Err(bad("Format error in JSON body: group_by must be a string")),
            None => return Err(bad("Format error in JSON body: group_by is required")),
        };
        let positive = |k: &str, default: usize| -> Result<usize> {
            let n = usize_field(o, k)?.unwrap_or(default);
            if n == 0 || n > max_limit {
                return Err(bad(format!(
                    "Bad request: {k} must be between 1 and {max_limit}, got {n}"
                )));
            }
            Ok(n)
        };
        let group_size = positive("group_size", default_group_size)?;
        let limit = positive("limit", 10)?;
        if field(o, "offset").is_some() {
            return Err(bad(
                "Bad request: tessera does not support offset in a groups request; leave it unset",
            ));
        }
        let lookup = match field(o, "with_lookup") {
            None => None,
            // as Qdrant: payload and vectors of the looked-up point unless told otherwise
            Some(Value::String(c)) => Some(Lookup {
                collection: c.clone(),
                with_payload: PayloadSelector::All,
                with_vector: true,
            }),
            Some(v) => {
                let l = obj(v, "with_lookup")?;
                super::check_fields(
                    l,
                    "with_lookup.",
                    &["collection", "with_payload", "with_vectors"],
                    &[],
                )?;
                let collection = super::string_at(l, "collection", "with_lookup")?;
                Some(Lookup {
                    collection,
                    with_payload: with_payload(field(l, "with_payload"), true)?,
                    with_vector: match field(l, "with_vectors") {
                        None => true,
                        v => with_vector(v)?,
                    },
                })
            }
        };
        let rest = o
            .iter()
            .filter(|(k, _)| !GROUP_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok((
            GroupSpec {
                group_by,
                group_size,
                limit,
                lookup,
            },
            rest,
        ))
    }

    /// The groups a point belongs to, as Qdrant groups: each distinct string or integer value
    /// of the field (arrays opened); `None` when the field is missing or any of its values is
    /// of another type (the point joins no group).
    pub fn ids_of(&self, payload: &Payload) -> Option<Vec<Value>> {
        let values = get_flat_values(payload, &self.group_by);
        if values.is_empty() {
            return None;
        }
        let mut ids: Vec<Value> = Vec::new();
        for v in values {
            let groupable = v.is_string() || v.is_i64() || v.is_u64();
            if !groupable {
                return None;
            }
            if !ids.contains(v) {
                ids.push(v.clone());
            }
        }
        Some(ids)
    }
}

/// One group of hits.
#[derive(Serialize)]
pub struct PointGroup {
    pub hits: Vec<ScoredPoint>,
    pub id: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup: Option<PointRecord>,
}

/// The answer to a groups request.
#[derive(Serialize)]
pub struct GroupsResult {
    pub groups: Vec<PointGroup>,
}
