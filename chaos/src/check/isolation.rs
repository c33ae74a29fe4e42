//! Isolation: no answer ever holds another tenant's point. Every point a read of tenant `t`
//! returned (get, search, scroll, and the reads after heal) has an id of `t`'s range and a
//! payload naming `t`, and a count of `t` never exceeds the points `t` ever wrote.

use std::collections::BTreeSet;

use super::{Final, Violation, ids_of};
use crate::fixture::tenant;
use crate::history::{Kind, Op};
use crate::workload::tenant_of;

/// What the isolation check found.
#[derive(Debug, Default)]
pub struct Report {
    pub violations: Vec<Violation>,
    /// Points returned to a tenant that were another's.
    pub cross_tenant: usize,
    /// Points the check looked at.
    pub checked: usize,
}

fn owner_is(id: u64, t: &str) -> bool {
    tenant_of(id).is_some_and(|i| tenant(i) == t)
}

pub fn check(all: &[Op], fin: &Final) -> Report {
    let mut r = Report::default();
    for op in all.iter().filter(|o| o.outcome() == Kind::Ok) {
        let Some(t) = op.tenant() else { continue };
        if !matches!(op.f(), "get" | "search" | "scroll") {
            continue;
        }
        for p in op
            .result()
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            r.checked += 1;
            let id = p["id"].as_u64();
            let named = p["tenant"].as_str();
            if id.is_some_and(|id| owner_is(id, t)) && named == Some(t) {
                continue;
            }
            r.cross_tenant += 1;
            r.violations.push(Violation::new(
                "isolation",
                format!(
                    "{} #{} of {t} through node {:?} returned {p}",
                    op.f(),
                    op.invoke.op,
                    op.invoke.node
                ),
            ));
        }
    }
    // a count never exceeds what the tenant ever wrote
    for op in all
        .iter()
        .filter(|o| o.outcome() == Kind::Ok && o.f() == "count")
    {
        let Some(t) = op.tenant() else { continue };
        let written: BTreeSet<u64> = all
            .iter()
            .filter(|o| o.tenant() == Some(t) && o.f() == "upsert" && o.outcome() != Kind::Fail)
            .flat_map(ids_of)
            .collect();
        let n = op.result()["count"].as_u64().unwrap_or(0);
        if n > written.len() as u64 {
            r.violations.push(Violation::new(
                "isolation",
                format!(
                    "count #{} of {t} is {n}, more than the {} points {t} ever wrote",
                    op.invoke.op,
                    written.len()
                ),
            ));
        }
    }
    for (t, points) in &fin.points {
        for (id, (_, named)) in points {
            r.checked += 1;
            if owner_is(*id, t) && named.as_deref() == Some(t.as_str()) {
                continue;
            }
            r.cross_tenant += 1;
            r.violations.push(Violation::new(
                "isolation",
                format!("after heal {t} holds point {id} of payload tenant {named:?}"),
            ));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fin, op};
    use super::*;
    use crate::workload::base;
    use serde_json::json;

    #[test]
    fn another_tenants_point_in_an_answer_is_caught() {
        let t0 = tenant(0);
        let mine = json!([{"id": base(0) + 1, "tenant": t0, "v": 3}]);
        let theirs = json!([{"id": base(1) + 1, "tenant": tenant(1), "v": 3}]);
        let spoofed = json!([{"id": base(0) + 2, "tenant": tenant(1), "v": 3}]);
        let h = [
            op(1, "scroll", &t0, &[], Kind::Ok, mine),
            op(2, "search", &t0, &[], Kind::Ok, theirs.clone()),
            op(3, "get", &t0, &[], Kind::Ok, spoofed),
            op(4, "search", &t0, &[], Kind::Fail, theirs),
        ];
        let r = check(&h, &Final::default());
        assert_eq!(r.cross_tenant, 2, "{:?}", r.violations);
    }

    #[test]
    fn a_count_above_what_was_written_is_caught_and_so_is_a_foreign_point_after_heal() {
        let t0 = tenant(0);
        let h = [
            op(1, "upsert", &t0, &[base(0) + 1], Kind::Ok, json!({})),
            op(2, "count", &t0, &[], Kind::Ok, json!({"count": 2})),
            op(3, "count", &t0, &[], Kind::Ok, json!({"count": 1})),
        ];
        assert_eq!(check(&h, &Final::default()).violations.len(), 1);
        let f = fin(&t0, &[(base(1) + 1, Some(1))]);
        assert_eq!(check(&[], &f).cross_tenant, 1);
    }
}
