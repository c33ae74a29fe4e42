//! Convergence: after heal, every shard's replicas are all Active with one digest, one points
//! count and one last sequence (the admin replica view), and a scroll of every tenant through
//! every node returns the same ids.

use super::{Final, Violation};

pub fn check(fin: &Final) -> Vec<Violation> {
    let mut out: Vec<Violation> = fin
        .divergent
        .iter()
        .map(|s| Violation::new("convergence", format!("replicas differ after heal: {s}")))
        .collect();
    let mut nodes = fin.ids_per_node.iter();
    if let Some((first, reference)) = nodes.next() {
        for (node, seen) in nodes {
            let tenants: std::collections::BTreeSet<&String> =
                reference.keys().chain(seen.keys()).collect();
            for t in tenants.into_iter().filter(|t| !fin.unread.contains(*t)) {
                let (a, b) = (reference.get(t), seen.get(t));
                if a != b {
                    let only_a: Vec<u64> = a
                        .into_iter()
                        .flatten()
                        .filter(|id| !b.is_some_and(|b| b.contains(id)))
                        .copied()
                        .collect();
                    let only_b: Vec<u64> = b
                        .into_iter()
                        .flatten()
                        .filter(|id| !a.is_some_and(|a| a.contains(id)))
                        .copied()
                        .collect();
                    out.push(Violation::new(
                        "convergence",
                        format!(
                            "{t} after heal: node {first} alone returns {only_a:?}, node {node} alone returns {only_b:?}"
                        ),
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn divergent_replicas_and_nodes_that_answer_differently_are_caught() {
        let mut f = Final::default();
        assert!(check(&f).is_empty());
        f.divergent.push(serde_json::json!({"id": 3}));
        assert_eq!(check(&f).len(), 1);
        f.divergent.clear();
        let ids = |v: &[u64]| {
            BTreeMap::from([("t".to_owned(), v.iter().copied().collect::<BTreeSet<u64>>())])
        };
        f.ids_per_node.insert(1, ids(&[1, 2]));
        f.ids_per_node.insert(2, ids(&[1, 2]));
        assert!(check(&f).is_empty());
        f.ids_per_node.insert(3, ids(&[1]));
        let v = check(&f);
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.contains("[2]"), "{}", v[0].detail);
    }
}
