//! No stale reads: a point read after an acknowledged write sees that write or a newer one
//! (never an older version, and never a deleted point come back). Each point a `get` asked for
//! is checked against what the tenant's writes before it allow; one worker per tenant makes
//! one operation at a time, so "before" is exact.

use std::collections::BTreeMap;

use super::{Possible, State, Violation, ids_of, is_write};
use crate::history::{Kind, Op};

pub fn check(all: &[Op]) -> Vec<Violation> {
    let mut out = Vec::new();
    // per tenant, per point: the model so far, advanced in op order
    let mut model: BTreeMap<(String, u64), Possible> = BTreeMap::new();
    let mut ordered: Vec<&Op> = all.iter().filter(|o| o.tenant().is_some()).collect();
    ordered.sort_by_key(|o| o.invoke.op);
    for op in ordered {
        let Some(t) = op.tenant() else { continue };
        if is_write(op.f()) {
            for id in ids_of(op) {
                model.entry((t.to_owned(), id)).or_default().step(op);
            }
            continue;
        }
        if op.f() != "get" || op.outcome() != Kind::Ok {
            continue;
        }
        let seen: BTreeMap<u64, State> = op
            .result()
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| {
                        let id = p["id"].as_u64()?;
                        Some((id, p["v"].as_u64().map_or(State::At(0), State::At)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for id in ids_of(op) {
            let state = seen.get(&id).copied().unwrap_or(State::Absent);
            let allowed = model
                .get(&(t.to_owned(), id))
                .map(Possible::allowed)
                .unwrap_or_else(|| Possible::default().allowed());
            if !allowed.contains(&state) {
                out.push(Violation::new(
                    "stale_read",
                    format!(
                        "get #{} of {t} through node {:?} saw point {id} {state:?}; the writes before it allow {allowed:?}",
                        op.invoke.op, op.invoke.node
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::op;
    use super::*;
    use serde_json::json;

    #[test]
    fn a_read_of_an_older_version_or_of_a_deleted_point_is_stale() {
        let w1 = op(1, "upsert", "t", &[5], Kind::Ok, json!({}));
        let w2 = op(2, "upsert", "t", &[5], Kind::Ok, json!({}));
        let old = op(3, "get", "t", &[5], Kind::Ok, json!([{"id": 5, "v": 1}]));
        let new = op(4, "get", "t", &[5], Kind::Ok, json!([{"id": 5, "v": 2}]));
        assert_eq!(check(&[w1.clone(), w2.clone(), old]).len(), 1);
        assert!(check(&[w1.clone(), w2.clone(), new]).is_empty());
        let del = op(5, "delete", "t", &[5], Kind::Ok, json!({}));
        let back = op(6, "get", "t", &[5], Kind::Ok, json!([{"id": 5, "v": 2}]));
        let gone = op(7, "get", "t", &[5], Kind::Ok, json!([]));
        assert_eq!(check(&[w1.clone(), w2.clone(), del.clone(), back]).len(), 1);
        assert!(check(&[w1, w2, del, gone]).is_empty());
    }
}
