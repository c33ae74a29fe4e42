//! Atomicity: a write of several points that ended unknown took effect on all of them or on
//! none. Of its points, those at its version show it applied; any other point of it must be
//! explained by a later write on that point, else the write was applied by half.

use super::{Final, Violation, ids_of, is_write};
use crate::history::{Kind, Op};

pub fn check(all: &[Op], fin: &Final) -> Vec<Violation> {
    let mut out = Vec::new();
    for op in all.iter().filter(|o| o.outcome() != Kind::Ok) {
        if !matches!(op.f(), "upsert" | "set_payload") {
            continue;
        }
        let ids = ids_of(op);
        if ids.len() < 2 {
            continue;
        }
        let Some(tenant) = op.tenant() else { continue };
        let v = op.invoke.value["v"].as_u64().unwrap_or(op.invoke.op);
        let found = fin.points.get(tenant);
        let at = |id: u64| found.and_then(|f| f.get(&id)).and_then(|p| p.0);
        let applied: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| at(*id) == Some(v))
            .collect();
        if applied.is_empty() {
            continue;
        }
        let later_write = |id: u64| {
            all.iter().any(|o| {
                is_write(o.f())
                    && o.invoke.op > op.invoke.op
                    && o.outcome() != Kind::Fail
                    && o.tenant() == Some(tenant)
                    && ids_of(o).contains(&id)
            })
        };
        let missing: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| at(*id) != Some(v) && !later_write(*id))
            .collect();
        if !missing.is_empty() {
            out.push(Violation::new(
                "atomicity",
                format!(
                    "{tenant}: {} #{} ended {:?} and is applied to points {applied:?} but not to {missing:?}",
                    op.f(),
                    op.invoke.op,
                    op.outcome()
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fin, op};
    use super::*;
    use serde_json::json;

    #[test]
    fn an_unknown_batch_applied_by_half_is_caught() {
        let h = [op(1, "upsert", "t", &[5, 6], Kind::Unknown, json!({}))];
        assert_eq!(check(&h, &fin("t", &[(5, Some(1))])).len(), 1);
        assert!(check(&h, &fin("t", &[(5, Some(1)), (6, Some(1))])).is_empty());
        assert!(check(&h, &fin("t", &[])).is_empty());
    }

    #[test]
    fn a_later_write_explains_a_missing_point() {
        let h = [
            op(1, "upsert", "t", &[5, 6], Kind::Unknown, json!({})),
            op(2, "delete", "t", &[6], Kind::Ok, json!({})),
        ];
        assert!(check(&h, &fin("t", &[(5, Some(1))])).is_empty());
    }
}
