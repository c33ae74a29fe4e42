//! The checker: reads a run's history and what the healed cluster holds, and reports every
//! violated invariant. One file per invariant:
//!
//! - [`durability`]: every acknowledged write is there after heal, every acknowledged delete
//!   stays deleted (a point ends in a state its history allows);
//! - [`atomicity`]: an operation that ended unknown took effect whole or not at all;
//! - [`isolation`]: no answer ever holds another tenant's point;
//! - [`convergence`]: the replicas of every shard are identical after heal, and every node
//!   answers the same;
//! - [`stale_read`]: a read after an acknowledged write sees it or something newer;
//! - [`shard_keys`]: shard-key operations end the same on every node, as their answers allow.
//!
//! The model of a point: one worker per tenant makes one operation at a time, so the
//! operations on a point are ordered. An `ok` operation took effect, a `fail` one did not, an
//! `unknown` one may have, at its place or at any later time (a stuck request applied late).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::history::{Event, Kind, Op, ops};

pub mod atomicity;
pub mod convergence;
pub mod durability;
pub mod isolation;
pub mod shard_keys;
pub mod stale_read;

/// One violated invariant.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// Which: durability, atomicity, isolation, convergence, stale_read, shard_keys.
    pub invariant: &'static str,
    /// What exactly, with ids and op ids.
    pub detail: String,
}

impl Violation {
    pub fn new(invariant: &'static str, detail: String) -> Violation {
        Violation { invariant, detail }
    }
}

/// A point after heal: the version of its payload (`v`) and the tenant its payload names.
pub type Held = (Option<u64>, Option<String>);

/// What the healed cluster holds, read after the workload stopped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Final {
    /// Per tenant, per point id: its version (`v` of its payload) and the tenant its payload
    /// names, as read through the first node.
    pub points: BTreeMap<String, BTreeMap<u64, Held>>,
    /// Per node, per tenant: the ids a scroll through that node returned.
    pub ids_per_node: BTreeMap<u64, BTreeMap<String, BTreeSet<u64>>>,
    /// Per node: the shard keys it lists.
    pub keys_per_node: BTreeMap<u64, BTreeSet<String>>,
    /// Tenants whose points could not be read through some node after heal (a liveness
    /// incident of its own; durability and convergence leave them out).
    pub unread: BTreeSet<String>,
    /// The shards whose replicas still differed when the heal wait ended.
    pub divergent: Vec<Value>,
}

/// A point's state: absent, or present with the version of the write that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Absent,
    At(u64),
}

/// A write's effect on one point.
pub fn apply(op: &Op, s: State) -> State {
    let v = op.invoke.value["v"].as_u64().unwrap_or(op.invoke.op);
    match op.f() {
        "upsert" => State::At(v),
        "delete" => State::Absent,
        "set_payload" => match s {
            State::At(_) => State::At(v),
            State::Absent => State::Absent,
        },
        _ => s,
    }
}

/// Whether `f` writes points.
pub fn is_write(f: &str) -> bool {
    matches!(f, "upsert" | "delete" | "set_payload")
}

/// The ids an operation names (its invoke's `ids`).
pub fn ids_of(op: &Op) -> Vec<u64> {
    op.invoke.value["ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// The states a point may be in, as its writes so far allow.
#[derive(Debug, Clone)]
pub struct Possible {
    /// Where the ordered writes may have left it.
    pub now: BTreeSet<State>,
    /// Unknown writes that may still take effect later.
    pub pending: Vec<Op>,
}

impl Default for Possible {
    fn default() -> Possible {
        Possible {
            now: BTreeSet::from([State::Absent]),
            pending: Vec::new(),
        }
    }
}

impl Possible {
    /// Takes one write into account.
    pub fn step(&mut self, op: &Op) {
        match op.outcome() {
            Kind::Ok => self.now = self.now.iter().map(|s| apply(op, *s)).collect(),
            Kind::Unknown => {
                let more: Vec<State> = self.now.iter().map(|s| apply(op, *s)).collect();
                self.now.extend(more);
                self.pending.push(op.clone());
            }
            _ => {}
        }
    }

    /// Every state the point may be seen in now (an unknown write applied late included).
    pub fn allowed(&self) -> BTreeSet<State> {
        let mut out = self.now.clone();
        for u in &self.pending {
            out.extend(self.now.iter().map(|s| apply(u, *s)));
        }
        out
    }
}

/// Per tenant, per point: its writes, in invoke order.
pub fn writes_by_point(all: &[Op]) -> BTreeMap<String, BTreeMap<u64, Vec<Op>>> {
    let mut out: BTreeMap<String, BTreeMap<u64, Vec<Op>>> = BTreeMap::new();
    for op in all.iter().filter(|o| is_write(o.f())) {
        let Some(t) = op.tenant() else { continue };
        for id in ids_of(op) {
            out.entry(t.to_owned())
                .or_default()
                .entry(id)
                .or_default()
                .push(op.clone());
        }
    }
    out
}

/// Every check on one run; the violations (none: the run is clean).
pub fn check_all(events: &[Event], fin: &Final) -> Vec<Violation> {
    let all = ops(events);
    let mut out = Vec::new();
    out.extend(durability::check(&all, fin).violations);
    out.extend(atomicity::check(&all, fin));
    out.extend(isolation::check(&all, fin).violations);
    out.extend(convergence::check(fin));
    out.extend(stale_read::check(&all));
    out.extend(shard_keys::check(&all, fin));
    out
}

#[cfg(test)]
pub(crate) mod testing {
    //! Hand-made histories for the checks' own tests.
    use super::*;
    use serde_json::json;

    /// A write or read of tenant `t` with op id `op`, ending `kind`.
    pub fn op(op: u64, f: &str, t: &str, ids: &[u64], kind: Kind, result: Value) -> Op {
        let ev = |kind, value| Event {
            op,
            kind,
            process: "w0".into(),
            f: f.into(),
            tenant: Some(t.into()),
            node: Some(1),
            value,
            time_ms: op as f64,
        };
        Op {
            invoke: ev(Kind::Invoke, json!({"ids": ids, "v": op})),
            done: Some(ev(kind, result)),
        }
    }

    /// A final state with `points` of tenant `t` at the given versions (None: no `v`).
    pub fn fin(t: &str, points: &[(u64, Option<u64>)]) -> Final {
        let mut f = Final::default();
        f.points.insert(
            t.into(),
            points
                .iter()
                .map(|(id, v)| (*id, (*v, Some(t.to_owned()))))
                .collect(),
        );
        f
    }
}

#[cfg(test)]
mod tests {
    use super::testing::op;
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_writes_widen_what_a_point_may_be() {
        let mut p = Possible::default();
        p.step(&op(1, "upsert", "t", &[5], Kind::Ok, json!({})));
        assert_eq!(p.allowed(), BTreeSet::from([State::At(1)]));
        p.step(&op(2, "delete", "t", &[5], Kind::Unknown, json!({})));
        assert_eq!(p.allowed(), BTreeSet::from([State::At(1), State::Absent]));
        p.step(&op(3, "set_payload", "t", &[5], Kind::Ok, json!({})));
        // the delete may also come late, after the payload update
        assert_eq!(p.allowed(), BTreeSet::from([State::At(3), State::Absent]));
        p.step(&op(4, "upsert", "t", &[5], Kind::Fail, json!({})));
        assert!(!p.allowed().contains(&State::At(4)));
    }
}
