//! Shard keys end the same on every node: every node lists the same keys after heal, every
//! tenant's key is there, and each extra key exists or not as the answers to its creates and
//! deletes allow (one answered as failed did not happen; an unknown one may have).

use std::collections::BTreeSet;

use super::{Final, Violation};
use crate::history::{Kind, Op};
use crate::workload::{EXTRA_KEYS, extra_key};

pub fn check(all: &[Op], fin: &Final) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut nodes = fin.keys_per_node.iter();
    let Some((first, keys)) = nodes.next() else {
        return out;
    };
    for (node, other) in nodes {
        if other != keys {
            out.push(Violation::new(
                "shard_keys",
                format!("after heal node {first} lists {keys:?}, node {node} lists {other:?}"),
            ));
        }
    }
    for t in fin.points.keys() {
        if !keys.contains(t) {
            out.push(Violation::new(
                "shard_keys",
                format!("tenant key {t} is missing on node {first}"),
            ));
        }
    }
    for i in 0..EXTRA_KEYS {
        let key = extra_key(i);
        // may the key exist: the set of possibilities after its operations, in order
        let mut now: BTreeSet<bool> = BTreeSet::from([false]);
        let mut late: BTreeSet<bool> = BTreeSet::new();
        for op in all
            .iter()
            .filter(|o| o.tenant() == Some(key.as_str()) && o.f().ends_with("_key"))
        {
            let exists = op.f() == "create_key";
            match op.outcome() {
                Kind::Ok => now = BTreeSet::from([exists]),
                Kind::Unknown => {
                    now.insert(exists);
                    late.insert(exists);
                }
                _ => {}
            }
        }
        let listed = keys.contains(&key);
        if !now.contains(&listed) && !late.contains(&listed) {
            out.push(Violation::new(
                "shard_keys",
                format!(
                    "key {key} {} after heal, but its operations allow only {now:?}",
                    if listed { "exists" } else { "is missing" }
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::op;
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn listed(per_node: &[&[&str]]) -> Final {
        let mut f = Final::default();
        for (i, keys) in per_node.iter().enumerate() {
            f.keys_per_node
                .insert(i as u64 + 1, keys.iter().map(|k| (*k).to_owned()).collect());
        }
        f.points = BTreeMap::new();
        f
    }

    #[test]
    fn keys_must_agree_and_follow_their_answers() {
        let x = extra_key(0);
        let created = [op(1, "create_key", &x, &[], Kind::Ok, json!({}))];
        assert!(check(&created, &listed(&[&["x-0"], &["x-0"]])).is_empty());
        assert_eq!(check(&created, &listed(&[&["x-0"], &[]])).len(), 1);
        assert_eq!(check(&created, &listed(&[&[], &[]])).len(), 1);
        let failed = [op(1, "create_key", &x, &[], Kind::Fail, json!({}))];
        assert_eq!(check(&failed, &listed(&[&["x-0"]])).len(), 1);
        let unknown = [op(1, "delete_key", &x, &[], Kind::Unknown, json!({}))];
        assert!(check(&unknown, &listed(&[&[]])).is_empty());
    }
}
