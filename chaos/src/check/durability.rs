//! Durability: after heal, every point is in a state its writes allow. An acknowledged upsert
//! or payload update is there (or something newer), an acknowledged delete stays deleted
//! (unless a later write put the point back), a failed write left nothing, and no point exists
//! that nobody wrote.

use super::{Final, Possible, State, Violation, writes_by_point};
use crate::history::{Kind, Op};

/// What the durability check found.
#[derive(Debug, Default)]
pub struct Report {
    pub violations: Vec<Violation>,
    /// Points whose last acknowledged write was an upsert or payload update, found absent or
    /// at an older version.
    pub lost: usize,
    /// Points whose last acknowledged write was a delete, found present with no later write
    /// that could explain it.
    pub resurrected: usize,
    /// Points checked.
    pub checked: usize,
}

pub fn check(all: &[Op], fin: &Final) -> Report {
    let mut r = Report::default();
    let by_point = writes_by_point(all);
    for (tenant, points) in by_point.iter().filter(|(t, _)| !fin.unread.contains(*t)) {
        let found = fin.points.get(tenant);
        for (id, writes) in points {
            let mut p = Possible::default();
            for w in writes {
                p.step(w);
            }
            let allowed = p.allowed();
            let state = match found.and_then(|f| f.get(id)) {
                None => State::Absent,
                Some((Some(v), _)) => State::At(*v),
                Some((None, _)) => State::At(0),
            };
            r.checked += 1;
            if allowed.contains(&state) {
                continue;
            }
            let last_ok = writes.iter().rev().find(|w| w.outcome() == Kind::Ok);
            match last_ok.map(|w| w.f()) {
                Some("delete") => r.resurrected += 1,
                Some(_) => r.lost += 1,
                None => {}
            }
            let trail: Vec<String> = writes
                .iter()
                .map(|w| format!("{}#{}:{:?}", w.f(), w.invoke.op, w.outcome()))
                .collect();
            r.violations.push(super::Violation::new(
                "durability",
                format!(
                    "{tenant} point {id} is {state:?} after heal; its writes allow {allowed:?}; writes: {}",
                    trail.join(" ")
                ),
            ));
        }
    }
    for (tenant, points) in &fin.points {
        for id in points.keys() {
            if !by_point.get(tenant).is_some_and(|p| p.contains_key(id)) {
                r.violations.push(Violation::new(
                    "durability",
                    format!("{tenant} holds point {id} that no operation of it wrote"),
                ));
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fin, op};
    use super::*;
    use serde_json::json;

    #[test]
    fn an_acknowledged_write_missing_after_heal_is_lost() {
        let h = [op(1, "upsert", "t", &[5, 6], Kind::Ok, json!({}))];
        let r = check(&h, &fin("t", &[(5, Some(1))]));
        assert_eq!(r.lost, 1, "{:?}", r.violations);
        assert_eq!(r.violations.len(), 1);
        let ok = check(&h, &fin("t", &[(5, Some(1)), (6, Some(1))]));
        assert!(ok.violations.is_empty(), "{:?}", ok.violations);
    }

    #[test]
    fn an_older_version_after_an_acknowledged_update_is_lost() {
        let h = [
            op(1, "upsert", "t", &[5], Kind::Ok, json!({})),
            op(2, "set_payload", "t", &[5], Kind::Ok, json!({})),
        ];
        assert_eq!(check(&h, &fin("t", &[(5, Some(1))])).lost, 1);
        assert_eq!(check(&h, &fin("t", &[(5, Some(2))])).lost, 0);
    }

    #[test]
    fn an_acknowledged_delete_stays_deleted_and_a_failed_write_leaves_nothing() {
        let h = [
            op(1, "upsert", "t", &[5], Kind::Ok, json!({})),
            op(2, "delete", "t", &[5], Kind::Ok, json!({})),
            op(3, "upsert", "t", &[5], Kind::Fail, json!({})),
        ];
        let r = check(&h, &fin("t", &[(5, Some(1))]));
        assert_eq!(r.resurrected, 1, "{:?}", r.violations);
        assert_eq!(check(&h, &fin("t", &[(5, Some(3))])).violations.len(), 1);
        assert!(check(&h, &fin("t", &[])).violations.is_empty());
    }

    #[test]
    fn an_unknown_write_may_or_may_not_be_there() {
        let h = [op(1, "upsert", "t", &[5], Kind::Unknown, json!({}))];
        assert!(check(&h, &fin("t", &[])).violations.is_empty());
        assert!(check(&h, &fin("t", &[(5, Some(1))])).violations.is_empty());
        assert_eq!(check(&h, &fin("t", &[(7, Some(1))])).violations.len(), 1);
    }
}
