//! Merging the shards' answers into one: scroll pages, nearest points, retrieved records. Pure
//! functions over plain data, tested without shards.

use std::collections::BTreeMap;

use tessera_cluster::meta::{ShardId, ShardKey};
use tessera_shard::point::PointId;
use tessera_shard::store::{Hit, Record};

use crate::context::{Keyed, Target};
use crate::shard_rpc::ReadReply;

/// Groups targets by shard key (None for auto sharding), each group's shards in id order.
pub(super) fn groups(targets: &[Target]) -> BTreeMap<Option<ShardKey>, Vec<ShardId>> {
    let mut by_key: BTreeMap<Option<ShardKey>, Vec<ShardId>> = BTreeMap::new();
    for target in targets {
        by_key
            .entry(target.key.clone())
            .or_default()
            .push(target.shard);
    }
    by_key
}

/// The shard of a group that holds `id`.
pub(super) fn shard_for(shards: &[ShardId], id: &PointId) -> ShardId {
    shards[(id.stable_hash() % shards.len() as u64) as usize]
}

/// One shard's scroll page and the id that would start its next page.
pub(super) type Page = (Vec<Record>, Option<PointId>);

/// Merges the shards' scroll pages into one page of `limit`, and the id that starts the next.
pub(super) fn merge_pages(
    parts: Vec<(Option<ShardKey>, Page)>,
    limit: usize,
) -> (Vec<Keyed<Record>>, Option<PointId>) {
    let mut all: Vec<Keyed<Record>> = Vec::new();
    let mut next: Option<PointId> = None;
    for (key, (recs, n)) in parts {
        all.extend(recs.into_iter().map(|r| (key.clone(), r)));
        if let Some(n) = n {
            next = Some(match next {
                Some(cur) if cur < n => cur,
                _ => n,
            });
        }
    }
    all.sort_by(|a, b| a.1.id.cmp(&b.1.id).then_with(|| a.0.cmp(&b.0)));
    if all.len() > limit {
        // the same id under several shard keys is one group: a page never splits it, or the
        // next page (which starts at that id) would repeat the copies already sent
        let mut cut = limit;
        if limit > 0 && all[limit].1.id == all[limit - 1].1.id {
            let id = &all[limit].1.id;
            let start = all.iter().position(|r| &r.1.id == id).unwrap_or(limit);
            cut = if start > 0 {
                start
            } else {
                all.iter().position(|r| &r.1.id != id).unwrap_or(all.len())
            };
        }
        let rest = all.split_off(cut);
        let first_rest = rest.into_iter().next().map(|r| r.1.id);
        next = match (first_rest, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    (all, next)
}

/// Merges the shards' nearest points: by distance, then point id, then shard key; the best `k`,
/// of which the first `offset` are skipped.
pub(super) fn merge_hits(
    parts: Vec<(Option<ShardKey>, Vec<Hit>)>,
    k: usize,
    offset: usize,
) -> Vec<Keyed<Hit>> {
    let mut hits: Vec<Keyed<Hit>> = parts
        .into_iter()
        .flat_map(|(key, shard_hits)| shard_hits.into_iter().map(move |h| (key.clone(), h)))
        .collect();
    hits.sort_by(|a, b| {
        a.1.distance
            .total_cmp(&b.1.distance)
            .then_with(|| a.1.record.id.cmp(&b.1.record.id))
            .then_with(|| a.0.cmp(&b.0))
    });
    hits.truncate(k);
    hits.into_iter().skip(offset).collect()
}

/// The shards' records in the order the ids were asked; the same id under two shard keys is two
/// points, in key order. Ids no shard has are left out.
pub(super) fn records_in_order(
    parts: Vec<(Option<ShardKey>, Vec<Record>)>,
    ids: &[PointId],
) -> Vec<Keyed<Record>> {
    let mut by_id: BTreeMap<PointId, Vec<Keyed<Record>>> = BTreeMap::new();
    for (key, records) in parts {
        for record in records {
            by_id
                .entry(record.id.clone())
                .or_default()
                .push((key.clone(), record));
        }
    }
    let mut out = Vec::new();
    for id in ids {
        if let Some(mut copies) = by_id.remove(id) {
            copies.sort_by(|a, b| a.0.cmp(&b.0));
            out.extend(copies);
        }
    }
    out
}

/// The values of a read present in at least `keep` of the replicas' `answers` (all of one
/// kind): records and hits by id (the first answer's copy), a count as the `keep`-th largest, a
/// vector if enough replicas have it. None: the answers are of different kinds.
pub(super) fn agreed(answers: Vec<ReadReply>, keep: usize) -> Option<ReadReply> {
    use std::collections::HashMap;
    let keep = keep.clamp(1, answers.len().max(1));
    let ids_in = |answers: &[ReadReply]| -> HashMap<PointId, usize> {
        let mut n = HashMap::new();
        for a in answers {
            let ids: Vec<&PointId> = match a {
                ReadReply::Records(r) | ReadReply::Page(r, _) => r.iter().map(|r| &r.id).collect(),
                ReadReply::Hits(h) => h.iter().map(|h| &h.record.id).collect(),
                ReadReply::Count(_) | ReadReply::Vector(_) => Vec::new(),
            };
            for id in ids {
                *n.entry(id.clone()).or_default() += 1;
            }
        }
        n
    };
    let seen = ids_in(&answers);
    let enough = |id: &PointId| seen.get(id).copied().unwrap_or(0) >= keep;
    let mut it = answers.into_iter();
    let first = it.next()?;
    let rest: Vec<ReadReply> = it.collect();
    Some(match first {
        ReadReply::Records(r) => {
            if !rest.iter().all(|a| matches!(a, ReadReply::Records(_))) {
                return None;
            }
            ReadReply::Records(r.into_iter().filter(|r| enough(&r.id)).collect())
        }
        ReadReply::Page(r, next) => {
            if !rest.iter().all(|a| matches!(a, ReadReply::Page(..))) {
                return None;
            }
            ReadReply::Page(r.into_iter().filter(|r| enough(&r.id)).collect(), next)
        }
        ReadReply::Hits(h) => {
            if !rest.iter().all(|a| matches!(a, ReadReply::Hits(_))) {
                return None;
            }
            ReadReply::Hits(h.into_iter().filter(|h| enough(&h.record.id)).collect())
        }
        ReadReply::Count(c) => {
            let mut counts = vec![c];
            for a in &rest {
                match a {
                    ReadReply::Count(n) => counts.push(*n),
                    _ => return None,
                }
            }
            counts.sort_unstable_by(|a, b| b.cmp(a));
            ReadReply::Count(counts[keep - 1])
        }
        ReadReply::Vector(v) => {
            let mut have = usize::from(v.is_some());
            for a in &rest {
                match a {
                    ReadReply::Vector(x) => have += usize::from(x.is_some()),
                    _ => return None,
                }
            }
            ReadReply::Vector(if have >= keep { v } else { None })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> Record {
        Record {
            id: PointId::Num(id),
            version: 1,
            payload: None,
            vector: None,
        }
    }

    fn key(name: &str) -> Option<ShardKey> {
        Some(ShardKey::Str(name.into()))
    }

    fn ids(page: &[Keyed<Record>]) -> Vec<(Option<ShardKey>, u64)> {
        page.iter()
            .map(|(k, r)| match &r.id {
                PointId::Num(n) => (k.clone(), *n),
                other => panic!("unexpected id {other:?}"),
            })
            .collect()
    }

    #[test]
    fn pages_merge_in_id_order_and_the_next_page_starts_at_the_first_left_out() {
        let parts = vec![
            (
                key("a"),
                (vec![record(1), record(4)], Some(PointId::Num(9))),
            ),
            (key("b"), (vec![record(2), record(3)], None)),
        ];
        let (page, next) = merge_pages(parts, 3);
        assert_eq!(
            ids(&page),
            vec![(key("a"), 1), (key("b"), 2), (key("b"), 3)]
        );
        assert_eq!(next, Some(PointId::Num(4)));
    }

    #[test]
    fn a_page_never_splits_the_copies_of_one_id() {
        // id 2 under two shard keys: cutting between them would repeat one on the next page
        let parts = vec![
            (key("a"), (vec![record(1), record(2)], None)),
            (key("b"), (vec![record(2), record(3)], None)),
        ];
        let (page, next) = merge_pages(parts, 2);
        assert_eq!(ids(&page), vec![(key("a"), 1)]);
        assert_eq!(next, Some(PointId::Num(2)));
        // a limit inside the first group takes the whole group
        let parts = vec![
            (key("a"), (vec![record(5)], None)),
            (key("b"), (vec![record(5), record(6)], None)),
        ];
        let (page, next) = merge_pages(parts, 1);
        assert_eq!(ids(&page), vec![(key("a"), 5), (key("b"), 5)]);
        assert_eq!(next, Some(PointId::Num(6)));
    }

    #[test]
    fn the_smallest_next_id_of_the_shards_wins() {
        let parts = vec![
            (key("a"), (vec![record(1)], Some(PointId::Num(7)))),
            (key("b"), (vec![record(2)], Some(PointId::Num(5)))),
        ];
        let (page, next) = merge_pages(parts, 10);
        assert_eq!(page.len(), 2);
        assert_eq!(next, Some(PointId::Num(5)));
    }

    #[test]
    fn hits_merge_by_distance_then_id_then_key_and_skip_the_offset() {
        let hit = |id: u64, distance: f32| Hit {
            record: record(id),
            distance,
        };
        let parts = vec![
            (key("b"), vec![hit(1, 0.5), hit(3, 0.9)]),
            (key("a"), vec![hit(1, 0.5), hit(2, 0.1)]),
        ];
        let merged = merge_hits(parts.clone(), 3, 0);
        let order: Vec<(Option<ShardKey>, f32)> = merged
            .iter()
            .map(|(k, h)| (k.clone(), h.distance))
            .collect();
        assert_eq!(
            order,
            vec![(key("a"), 0.1), (key("a"), 0.5), (key("b"), 0.5)]
        );
        let skipped = merge_hits(parts, 3, 2);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].0, key("b"));
    }

    #[test]
    fn records_come_back_in_the_order_asked() {
        let parts = vec![
            (key("b"), vec![record(2), record(1)]),
            (key("a"), vec![record(1)]),
        ];
        let out = records_in_order(parts, &[PointId::Num(1), PointId::Num(9), PointId::Num(2)]);
        assert_eq!(ids(&out), vec![(key("a"), 1), (key("b"), 1), (key("b"), 2)]);
    }

    #[test]
    fn writes_spread_by_stable_hash_within_a_key() {
        let targets = vec![
            Target::new(3, key("a")),
            Target::new(1, key("a")),
            Target::new(2, key("b")),
        ];
        let by_key = groups(&targets);
        assert_eq!(by_key[&key("a")], vec![3, 1]);
        assert_eq!(by_key[&key("b")], vec![2]);
        let shards = [1, 3];
        let id = PointId::Num(42);
        assert_eq!(shard_for(&shards, &id), shard_for(&shards, &id));
        assert!(shards.contains(&shard_for(&shards, &id)));
    }

    #[test]
    fn agreed_keeps_what_enough_replicas_answered() {
        use crate::shard_rpc::ReadReply;
        let rec = |n: u64| Record {
            id: PointId::Num(n),
            version: 1,
            payload: None,
            vector: None,
        };
        let a = ReadReply::Records(vec![rec(1), rec(2), rec(3)]);
        let b = ReadReply::Records(vec![rec(1), rec(3)]);
        let c = ReadReply::Records(vec![rec(1), rec(2)]);
        let ids = |r: Option<ReadReply>| match r {
            Some(ReadReply::Records(r)) => r.into_iter().map(|r| r.id).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let all = agreed(vec![a.clone(), b.clone(), c.clone()], 3);
        assert_eq!(ids(all), vec![PointId::Num(1)], "in every answer");
        let majority = agreed(vec![a, b, c], 2);
        assert_eq!(
            ids(majority),
            vec![PointId::Num(1), PointId::Num(2), PointId::Num(3)],
            "in two of three"
        );
        let counts = vec![
            ReadReply::Count(5),
            ReadReply::Count(3),
            ReadReply::Count(4),
        ];
        assert!(matches!(
            agreed(counts.clone(), 3),
            Some(ReadReply::Count(3))
        ));
        assert!(matches!(agreed(counts, 2), Some(ReadReply::Count(4))));
        assert!(
            agreed(vec![ReadReply::Count(1), ReadReply::Records(vec![])], 2).is_none(),
            "different kinds"
        );
    }
}
