//! Routing of data requests: which shards a request may touch, the fan-out to them, and the merge
//! of their answers. A request names shard keys (tenants); only those keys' shards are called.

use std::collections::BTreeMap;
use std::sync::Arc;

use tessera_cluster::meta::{CollectionMeta, ShardId, ShardKey, ShardingMethod};
use tessera_cluster::{Error, Result};
use tessera_shard::actor::{NewPoint, Selector, WriteOp};
use tessera_shard::filter::Filter;
use tessera_shard::point::PointId;
use tessera_shard::store::{Hit, PayloadSelector, Record, SearchParams};
use tokio::task::JoinSet;

use crate::catalog::Catalog;

/// Which shard keys a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// No key: every shard of the collection (reads only, in a custom-sharded collection).
    All,
    Keys(Vec<ShardKey>),
    /// The target keys if they exist, else the fallback.
    Fallback {
        target: Vec<ShardKey>,
        fallback: ShardKey,
    },
}

/// A result with the shard key it came from (None in an auto-sharded collection).
pub type Keyed<T> = (Option<ShardKey>, T);

/// A shard a request goes to, with the shard key the shard must own.
pub type Target = (ShardId, Option<ShardKey>);

/// The shards a request may touch.
pub fn targets(c: &CollectionMeta, sel: &KeySelector, write: bool) -> Result<Vec<Target>> {
    match c.params.sharding_method {
        ShardingMethod::Auto => match sel {
            KeySelector::All => Ok(c.shards.keys().map(|s| (*s, None)).collect()),
            KeySelector::Keys(_) | KeySelector::Fallback { .. } => Err(Error::bad_request(
                "Shard key specified, but the collection uses sharding_method auto",
            )),
        },
        ShardingMethod::Custom => {
            let keys: Vec<ShardKey> = match sel {
                KeySelector::All if write => {
                    return Err(Error::bad_request(
                        "Shard key must be specified for a write to a collection with custom sharding",
                    ));
                }
                KeySelector::All => {
                    return Ok(c.shards.values().map(|s| (s.id, s.key.clone())).collect());
                }
                KeySelector::Keys(k) => k.clone(),
                KeySelector::Fallback { target, fallback } => {
                    if target.iter().all(|k| c.shard_keys.contains_key(k)) {
                        target.clone()
                    } else {
                        vec![fallback.clone()]
                    }
                }
            };
            if keys.is_empty() {
                return Err(Error::bad_request("shard_key must name at least one key"));
            }
            let mut out = Vec::new();
            for k in keys {
                let shards = c
                    .shards_of_key(&k)
                    .ok_or_else(|| Error::not_found(format!("Shard key {k} not found")))?;
                out.extend(shards.iter().map(|s| (*s, Some(k.clone()))));
            }
            out.sort();
            out.dedup();
            Ok(out)
        }
    }
}

/// Groups targets by shard key (None for auto sharding), each group's shards in id order.
fn groups(targets: &[Target]) -> BTreeMap<Option<ShardKey>, Vec<ShardId>> {
    let mut g: BTreeMap<Option<ShardKey>, Vec<ShardId>> = BTreeMap::new();
    for (s, k) in targets {
        g.entry(k.clone()).or_default().push(*s);
    }
    g
}

/// The shard of a group that holds `id`.
fn shard_for(shards: &[ShardId], id: &PointId) -> ShardId {
    shards[(id.stable_hash() % shards.len() as u64) as usize]
}

struct Plan {
    uid: u64,
    dim: usize,
    targets: Vec<Target>,
}

pub struct Router {
    pub catalog: Arc<Catalog>,
}

impl Router {
    /// The collection's uid and vector size, and the shards a request may touch.
    fn plan(&self, collection: &str, sel: &KeySelector, write: bool) -> Result<Plan> {
        self.catalog.with_collection(collection, |c| {
            Ok(Plan {
                uid: c.uid,
                dim: c.params.dim,
                targets: targets(c, sel, write)?,
            })
        })?
    }

    async fn write_all(&self, uid: u64, jobs: Vec<(Target, WriteOp)>) -> Result<u64> {
        let mut set = JoinSet::new();
        for ((shard, key), op) in jobs {
            let cat = self.catalog.clone();
            set.spawn(async move { cat.shards.write((uid, shard), key.as_ref(), op).await });
        }
        let mut seq = 0;
        let mut first_err = None;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(s)) => seq = seq.max(s),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(Error::internal(format!("write task: {e}")));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(seq),
        }
    }

    pub async fn upsert(
        &self,
        collection: &str,
        sel: &KeySelector,
        points: Vec<NewPoint>,
    ) -> Result<u64> {
        let plan = self.plan(collection, sel, true)?;
        let t = plan.targets;
        let mut per_shard: BTreeMap<Target, Vec<NewPoint>> = BTreeMap::new();
        for (key, shards) in groups(&t) {
            for p in &points {
                per_shard
                    .entry((shard_for(&shards, &p.id), key.clone()))
                    .or_default()
                    .push(p.clone());
            }
        }
        let jobs = per_shard
            .into_iter()
            .map(|(t, pts)| (t, WriteOp::Upsert(pts)))
            .collect();
        self.write_all(plan.uid, jobs).await
    }

    /// A write that selects points by ids or filter (delete, payload changes).
    pub async fn write_selected(
        &self,
        collection: &str,
        sel: &KeySelector,
        selector: Selector,
        make: impl Fn(Selector) -> WriteOp,
    ) -> Result<u64> {
        let plan = self.plan(collection, sel, true)?;
        let t = plan.targets;
        let mut jobs = Vec::new();
        match &selector {
            Selector::Ids(ids) => {
                let mut per_shard: BTreeMap<Target, Vec<PointId>> = BTreeMap::new();
                for (key, shards) in groups(&t) {
                    for id in ids {
                        per_shard
                            .entry((shard_for(&shards, id), key.clone()))
                            .or_default()
                            .push(id.clone());
                    }
                }
                for (t, ids) in per_shard {
                    jobs.push((t, make(Selector::Ids(ids))));
                }
            }
            Selector::Filter(_) => {
                for target in t {
                    jobs.push((target, make(selector.clone())));
                }
            }
        }
        self.write_all(plan.uid, jobs).await
    }

    /// Runs `f` on every target shard's data, concurrently on the read pool.
    async fn read_all<T: Send + 'static>(
        &self,
        plan: Plan,
        f: impl Fn(&tessera_shard::store::ShardData) -> T + Send + Sync + 'static,
    ) -> Result<Vec<(Option<ShardKey>, T)>> {
        let f = Arc::new(f);
        let mut set = JoinSet::new();
        let uid = plan.uid;
        for (shard, key) in plan.targets {
            let cat = self.catalog.clone();
            let f = f.clone();
            set.spawn(async move {
                let r = cat
                    .shards
                    .read((uid, shard), key.as_ref(), move |d| f(d))
                    .await;
                r.map(|v| (key, v))
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.map_err(|e| Error::internal(format!("read task: {e}")))??);
        }
        Ok(out)
    }

    pub async fn retrieve(
        &self,
        collection: &str,
        sel: &KeySelector,
        ids: Vec<PointId>,
        with_payload: PayloadSelector,
        with_vector: bool,
    ) -> Result<Vec<Keyed<Record>>> {
        let plan = self.plan(collection, sel, false)?;
        let ids = Arc::new(ids);
        let ids2 = ids.clone();
        let parts = self
            .read_all(plan, move |d| d.retrieve(&ids2, &with_payload, with_vector))
            .await?;
        // answer in the order asked, once per id (a write to two keys may store it twice)
        // answer in the order asked; the same id under two shard keys is two points
        let mut by_id: BTreeMap<PointId, Vec<Keyed<Record>>> = BTreeMap::new();
        for (key, recs) in parts {
            for r in recs {
                by_id
                    .entry(r.id.clone())
                    .or_default()
                    .push((key.clone(), r));
            }
        }
        let mut out = Vec::new();
        for id in ids.iter() {
            if let Some(mut rs) = by_id.remove(id) {
                rs.sort_by(|a, b| a.0.cmp(&b.0));
                out.extend(rs);
            }
        }
        Ok(out)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one call per field of Qdrant's scroll request"
    )]
    pub async fn scroll(
        &self,
        collection: &str,
        sel: &KeySelector,
        offset: Option<PointId>,
        limit: usize,
        filter: Option<Filter>,
        with_payload: PayloadSelector,
        with_vector: bool,
    ) -> Result<(Vec<Keyed<Record>>, Option<PointId>)> {
        let plan = self.plan(collection, sel, false)?;
        let parts = self
            .read_all(plan, move |d| {
                d.scroll(
                    offset.as_ref(),
                    limit,
                    filter.as_ref(),
                    &with_payload,
                    with_vector,
                )
            })
            .await?;
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
        Ok((all, next))
    }

    pub async fn count(
        &self,
        collection: &str,
        sel: &KeySelector,
        filter: Option<Filter>,
    ) -> Result<usize> {
        let plan = self.plan(collection, sel, false)?;
        let parts = self
            .read_all(plan, move |d| d.count(filter.as_ref()))
            .await?;
        Ok(parts.into_iter().map(|(_, n)| n).sum())
    }

    /// The stored vector of a point (for a query by point id).
    pub async fn vector_of(
        &self,
        collection: &str,
        sel: &KeySelector,
        id: PointId,
    ) -> Result<Vec<f32>> {
        let plan = self.plan(collection, sel, false)?;
        let id2 = id.clone();
        let parts = self.read_all(plan, move |d| d.vector_of(&id2)).await?;
        parts
            .into_iter()
            .find_map(|(_, v)| v)
            .ok_or_else(|| Error::not_found(format!("No point with id {id} found")))
    }

    /// Nearest points over every target shard, merged: `offset` skipped, then `limit` returned.
    pub async fn search(
        &self,
        collection: &str,
        sel: &KeySelector,
        params: SearchParams,
        offset: usize,
    ) -> Result<Vec<Keyed<Hit>>> {
        let plan = self.plan(collection, sel, false)?;
        if params.vector.len() != plan.dim {
            return Err(Error::bad_request(format!(
                "Wrong input: Vector dimension error: expected dim: {}, got {}",
                plan.dim,
                params.vector.len()
            )));
        }
        let k = params.k;
        let parts = self.read_all(plan, move |d| d.search(&params)).await?;
        let mut hits: Vec<Keyed<Hit>> = parts
            .into_iter()
            .flat_map(|(key, hs)| hs.into_iter().map(move |h| (key.clone(), h)))
            .collect();
        hits.sort_by(|a, b| {
            a.1.distance
                .total_cmp(&b.1.distance)
                .then_with(|| a.1.record.id.cmp(&b.1.record.id))
                .then_with(|| a.0.cmp(&b.0))
        });
        hits.truncate(k);
        Ok(hits.into_iter().skip(offset).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_cluster::meta::*;

    fn custom() -> CollectionMeta {
        let mut st = MetadataState::default();
        st.apply(
            1,
            &Command::CreateCollection {
                name: "c".into(),
                uid: 1,
                params: CollectionParams {
                    dim: 2,
                    distance: Distance::Dot,
                    sharding_method: ShardingMethod::Custom,
                    shard_number: 1,
                    replication_factor: 1,
                    write_consistency_factor: 1,
                    hnsw: HnswParams::default(),
                    on_disk_payload: false,
                },
                shards: vec![],
            },
        )
        .expect("create");
        for (i, k) in ["a", "b"].iter().enumerate() {
            st.apply(
                2 + i as u64,
                &Command::CreateShardKey {
                    collection: "c".into(),
                    key: ShardKey::Str((*k).into()),
                    shards: vec![ShardPlacement {
                        id: i as u32,
                        nodes: vec![1],
                    }],
                },
            )
            .expect("key");
        }
        st.collections["c"].clone()
    }

    #[test]
    fn a_key_reaches_only_its_shards() {
        let c = custom();
        let a = ShardKey::Str("a".into());
        let t = targets(&c, &KeySelector::Keys(vec![a.clone()]), false).expect("targets");
        assert_eq!(t, vec![(0, Some(a.clone()))]);
        assert!(targets(&c, &KeySelector::All, true).is_err());
        assert_eq!(targets(&c, &KeySelector::All, false).expect("all").len(), 2);
        let missing = targets(
            &c,
            &KeySelector::Keys(vec![ShardKey::Str("zz".into())]),
            false,
        );
        assert_eq!(
            missing.expect_err("missing").kind,
            tessera_cluster::ErrorKind::NotFound
        );
        let fb = KeySelector::Fallback {
            target: vec![ShardKey::Str("zz".into())],
            fallback: a.clone(),
        };
        assert_eq!(
            targets(&c, &fb, true).expect("fallback"),
            vec![(0, Some(a))]
        );
    }
}
