//! The in-memory state of one shard replica: its points, payloads and segments, and the pure
//! functions that apply logged writes to it and search it. The actor (actor.rs) owns the order of
//! writes and the WAL; readers share the state through a read lock and never wait for the actor.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;
use tessera_core::ShardKey;
use tessera_core::{Error, Result};
use tessera_index::{GraphParams, Metric};

use crate::filter::Filter;
use crate::point::{Payload, PointId};
use crate::segment::{BitSet, Segment, Vectors};
use crate::wal::{WalOp, WalPoint, WalRecord, payload_from_json, payload_to_json};

mod adopt;
mod groups;
pub use adopt::LoadedSegment;
pub use groups::{Form, build};

/// Everything a replica needs to know about itself; fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct ShardSpec {
    pub collection_uid: u64,
    pub shard_id: u32,
    /// The shard key (tenant) this replica belongs to; None in an auto-sharded collection.
    pub key: Option<ShardKey>,
    pub dim: usize,
    pub metric: Metric,
    /// The graph over each sealed segment; `m: 0` builds none.
    pub graph: GraphParams,
    /// Qdrant's `payload_m`: with a partition field, each sealed segment also gets a graph per
    /// value of it ([`groups`]).
    pub payload_m: Option<usize>,
    /// The field points are grouped by at first (the collection's `is_tenant` keyword index);
    /// changed later with [`ShardData::set_partition_field`].
    pub partition_field: Option<String>,
    /// The tail is sealed and indexed when it reaches this many points.
    pub indexing_threshold: usize,
    /// A filtered search scans the matches exactly when fewer than this many are expected.
    pub full_scan_threshold: usize,
}

#[cfg(test)]
impl ShardSpec {
    /// A small 2-d spec of tenant `key` for the crate's tests.
    pub(crate) fn for_tests(collection_uid: u64, shard_id: u32, key: &str) -> ShardSpec {
        ShardSpec {
            collection_uid,
            shard_id,
            key: Some(ShardKey::Str(key.into())),
            dim: 2,
            metric: crate::Metric::Dot,
            graph: crate::GraphParams::default(),
            payload_m: None,
            partition_field: None,
            indexing_threshold: 1000,
            full_scan_threshold: 1000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub seg: u64,
    pub off: u32,
}

#[derive(Debug, Clone)]
pub struct PointRec {
    pub loc: Loc,
    pub payload: Arc<Payload>,
    pub version: u64,
    /// Size of the payload as JSON, for the stored-bytes figure (quotas).
    pub payload_bytes: u32,
}

/// Which payload fields to return.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PayloadSelector {
    None,
    All,
    Include(Vec<String>),
    Exclude(Vec<String>),
}

impl PayloadSelector {
    /// The part of `payload` this selector returns (None: no payload at all).
    pub fn select(&self, payload: &Payload) -> Option<Payload> {
        match self {
            PayloadSelector::None => None,
            PayloadSelector::All => Some(payload.clone()),
            PayloadSelector::Include(keys) => Some(
                payload
                    .iter()
                    .filter(|(k, _)| keys.iter().any(|want| key_selected(want, k)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            PayloadSelector::Exclude(keys) => Some(
                payload
                    .iter()
                    .filter(|(k, _)| !keys.iter().any(|want| key_selected(want, k)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: PointId,
    pub version: u64,
    pub payload: Option<Payload>,
    pub vector: Option<Vec<f32>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub record: Record,
    /// Internal distance, lower is better.
    pub distance: f32,
}

#[derive(Debug, Clone)]
pub struct SearchParams {
    pub vector: Vec<f32>,
    pub filter: Option<Filter>,
    /// How many to return (the caller's limit + offset).
    pub k: usize,
    pub ef: usize,
    pub exact: bool,
    pub with_payload: PayloadSelector,
    pub with_vector: bool,
    /// A point to leave out (query by point id).
    pub exclude: Option<PointId>,
}

/// A graph to build in the background: the vectors are a copy, so no lock is held while building.
pub struct BuildJob {
    /// Segments the new one replaces (one for a fresh seal, several for a merge).
    pub sources: Vec<u64>,
    pub ids: Vec<PointId>,
    pub origin: Vec<Loc>,
    pub vectors: Vec<f32>,
    /// The form to build the segment in, and (grouped by a field) each point's values of it.
    pub form: Form,
    pub values: Vec<Vec<String>>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardStats {
    pub points: usize,
    pub indexed_points: usize,
    pub segments: usize,
    pub deleted: usize,
    pub memory_bytes: usize,
    pub last_seq: u64,
    /// Bytes of data stored: vectors (4 bytes a dimension) and payloads as JSON.
    pub stored_bytes: u64,
}

#[derive(Debug)]
struct Inner {
    points: BTreeMap<PointId, PointRec>,
    segments: BTreeMap<u64, Segment>,
    tail: u64,
    next_segment: u64,
    last_seq: u64,
    /// Sum of the live points' payload sizes as JSON.
    payload_bytes: u64,
    /// While segment files are being adopted ([`adopt`]): where each offered point may go.
    adopt: Option<std::collections::HashMap<PointId, Loc>>,
}

impl Inner {
    fn empty(dim: usize) -> Inner {
        Inner::starting_at(dim, 0)
    }

    /// An empty state whose segment ids start at `first`.
    fn starting_at(dim: usize, first: u64) -> Inner {
        Inner {
            points: BTreeMap::new(),
            segments: BTreeMap::from([(first, Segment::new_tail(first, dim))]),
            tail: first,
            next_segment: first + 1,
            last_seq: 0,
            payload_bytes: 0,
            adopt: None,
        }
    }

    /// Replaces a point's payload, keeping the stored-bytes figure right.
    fn set_payload(&mut self, id: &PointId, payload: Arc<Payload>, seq: u64) {
        if let Some(r) = self.points.get_mut(id) {
            let len = u32::try_from(payload_to_json(&payload).len()).unwrap_or(u32::MAX);
            self.payload_bytes = self.payload_bytes - u64::from(r.payload_bytes) + u64::from(len);
            r.payload = payload;
            r.payload_bytes = len;
            r.version = seq;
        }
    }
}

pub struct ShardData {
    pub spec: ShardSpec,
    inner: RwLock<Inner>,
    /// The field sealed segments are grouped by now ([`groups`]).
    partition: RwLock<Option<String>>,
}

/// Segments of one merge tier are merged when there are this many.
const MERGE_FANIN: usize = 3;
/// Most sealed segments a replica keeps before merging beyond its size tiers.
const MAX_SEALED: usize = 4;
/// A sealed segment with more than this fraction tombstoned is rebuilt.
const VACUUM_RATIO: f64 = 0.3;

impl ShardData {
    pub fn new(spec: ShardSpec) -> ShardData {
        ShardData {
            inner: RwLock::new(Inner::empty(spec.dim)),
            partition: RwLock::new(spec.partition_field.clone()),
            spec,
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.inner.read().last_seq
    }

    pub fn len(&self) -> usize {
        self.inner.read().points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses a request that names another tenant than the one this replica holds: a routing
    /// bug must not become a data leak.
    pub fn check_key(&self, key: Option<&ShardKey>) -> Result<()> {
        if self.spec.key.as_ref() == key {
            Ok(())
        } else {
            tracing::error!(
                shard = self.spec.shard_id,
                owned = ?self.spec.key,
                asked = ?key,
                "request for another shard key reached this replica; refused"
            );
            Err(tessera_core::missing_key(key))
        }
    }

    /// Makes a vector ready for storage or search (cosine: unit length).
    pub fn prepare_vector(&self, v: &mut [f32]) {
        if self.spec.metric == Metric::Cosine {
            normalize(v);
        }
    }

    /// Applies one logged record. Used for live writes (after the WAL append) and for replay;
    /// the same input gives the same state.
    pub fn apply(&self, rec: &WalRecord) -> Result<()> {
        let mut g = self.inner.write();
        if rec.seq <= g.last_seq {
            return Ok(());
        }
        self.apply_locked(&mut g, rec.seq, &rec.op)?;
        g.last_seq = rec.seq;
        Ok(())
    }

    fn apply_locked(&self, inner: &mut Inner, seq: u64, op: &WalOp) -> Result<()> {
        let field = self.partition_field();
        match op {
            WalOp::Upsert(points) => {
                // decode every payload first: a batch is applied whole or not at all
                let mut decoded = Vec::with_capacity(points.len());
                for p in points {
                    if p.vector.len() != self.spec.dim {
                        return Err(Error::bad_request(format!(
                            "Wrong input: Vector dimension error: expected dim: {}, got {}",
                            self.spec.dim,
                            p.vector.len()
                        )));
                    }
                    decoded.push(payload_from_json(&p.payload_json)?);
                }
                for (p, payload) in points.iter().zip(decoded) {
                    if let Some(old) = inner.points.get(&p.id) {
                        let (loc, old_bytes) = (old.loc, old.payload_bytes);
                        tombstone(inner, loc);
                        inner.payload_bytes -= u64::from(old_bytes);
                    }
                    let payload_bytes = u32::try_from(p.payload_json.len()).unwrap_or(u32::MAX);
                    inner.payload_bytes += u64::from(payload_bytes);
                    if let Some(loc) = inner.claim(&p.id, &p.vector) {
                        inner.points.insert(
                            p.id.clone(),
                            PointRec {
                                loc,
                                payload: Arc::new(payload),
                                version: seq,
                                payload_bytes,
                            },
                        );
                        continue;
                    }
                    if inner
                        .segments
                        .get(&inner.tail)
                        .is_none_or(|t| t.len() >= u32::MAX as usize - 1)
                    {
                        seal_tail(inner, self.spec.dim);
                    }
                    let tail_id = inner.tail;
                    let tail = inner
                        .segments
                        .get_mut(&tail_id)
                        .ok_or_else(|| Error::internal("tail segment missing"))?;
                    let off = tail.push(p.id.clone(), &p.vector);
                    let tail_len = tail.len();
                    inner.points.insert(
                        p.id.clone(),
                        PointRec {
                            loc: Loc { seg: tail_id, off },
                            payload: Arc::new(payload),
                            version: seq,
                            payload_bytes,
                        },
                    );
                    if tail_len >= self.spec.indexing_threshold.max(1) {
                        seal_tail(inner, self.spec.dim);
                    }
                }
            }
            WalOp::Delete(ids) => {
                for id in ids {
                    if let Some(old) = inner.points.remove(id) {
                        tombstone(inner, old.loc);
                        inner.payload_bytes -= u64::from(old.payload_bytes);
                    }
                }
            }
            WalOp::SetPayload {
                ids,
                payload_json,
                key,
            } => {
                let patch = payload_from_json(payload_json)?;
                for id in ids {
                    if let Some(rec_) = inner.points.get(id) {
                        let mut p = (*rec_.payload).clone();
                        match key {
                            Some(path) => set_at_path(&mut p, path, &patch),
                            None => p.extend(patch.clone()),
                        }
                        self.regroup_payload(inner, field.as_deref(), id, Arc::new(p), seq);
                    }
                }
            }
            WalOp::OverwritePayload { ids, payload_json } => {
                let payload = Arc::new(payload_from_json(payload_json)?);
                for id in ids {
                    self.regroup_payload(inner, field.as_deref(), id, payload.clone(), seq);
                }
            }
            WalOp::DeletePayload { ids, keys } => {
                for id in ids {
                    if let Some(r) = inner.points.get(id) {
                        let mut p = (*r.payload).clone();
                        for k in keys {
                            remove_at_path(&mut p, k);
                        }
                        self.regroup_payload(inner, field.as_deref(), id, Arc::new(p), seq);
                    }
                }
            }
            WalOp::ClearPayload { ids } => {
                let empty = Arc::new(Payload::new());
                for id in ids {
                    self.regroup_payload(inner, field.as_deref(), id, empty.clone(), seq);
                }
            }
        }
        Ok(())
    }

    /// Every live point with the sequence number of its last change, for a snapshot.
    pub fn export(&self) -> (u64, Vec<(WalPoint, u64)>) {
        let g = self.inner.read();
        let points = g
            .points
            .iter()
            .filter_map(|(id, r)| {
                let s = g.segments.get(&r.loc.seg)?;
                Some((
                    WalPoint {
                        id: id.clone(),
                        vector: s.vector(r.loc.off).to_vec(),
                        payload_json: payload_to_json(&r.payload),
                    },
                    r.version,
                ))
            })
            .collect();
        (g.last_seq, points)
    }

    /// Folds over every live point (id, version, vector, payload as JSON) under one read lock:
    /// a consistent cut at `last_seq`.
    pub fn fold_points<A>(
        &self,
        init: A,
        mut f: impl FnMut(A, &PointId, u64, &[f32], &[u8]) -> A,
    ) -> A {
        let g = self.inner.read();
        let mut acc = init;
        for (id, r) in &g.points {
            if let Some(s) = g.segments.get(&r.loc.seg) {
                acc = f(
                    acc,
                    id,
                    r.version,
                    s.vector(r.loc.off),
                    &payload_to_json(&r.payload),
                );
            }
        }
        acc
    }

    /// Replaces the whole state with a copy of another replica's (a returning replica's
    /// catch-up); readers see the old state or the new one, never a mix.
    /// Segment ids go on from the old state's, so an index job built over an old segment can
    /// never be installed into the new state.
    /// `segments` (files that came with the copy) are offered for adoption; the caller ends it
    /// with [`ShardData::finish_adoption`] after the last page.
    pub fn replace(
        &self,
        last_seq: u64,
        points: Vec<(WalPoint, u64)>,
        segments: Vec<LoadedSegment>,
    ) -> Result<()> {
        let first = self.inner.read().next_segment;
        let fresh = ShardData {
            inner: RwLock::new(Inner::starting_at(self.spec.dim, first)),
            partition: RwLock::new(self.partition_field()),
            spec: self.spec.clone(),
        };
        fresh.offer_segments(segments);
        fresh.import(last_seq, points)?;
        let new = std::mem::replace(&mut *fresh.inner.write(), Inner::empty(self.spec.dim));
        *self.inner.write() = new;
        Ok(())
    }

    /// Adds copied points (with their versions) to the state, keeping its sequence: the later
    /// pages of a copy from another replica.
    pub fn merge(&self, points: Vec<(WalPoint, u64)>) -> Result<()> {
        let mut g = self.inner.write();
        for (p, version) in points {
            self.apply_locked(&mut g, version, &WalOp::Upsert(vec![p]))?;
        }
        Ok(())
    }

    /// One page of the live points after `after` in id order, at most about `max_bytes` of
    /// vectors and payloads (at least one point), with the sequence it was taken at and the id
    /// to continue after (None: the last page).
    #[allow(
        clippy::type_complexity,
        reason = "a page, its sequence and where to go on"
    )]
    pub fn export_page(
        &self,
        after: Option<&PointId>,
        max_bytes: usize,
    ) -> (u64, Vec<(WalPoint, u64)>, Option<PointId>) {
        let g = self.inner.read();
        let range = match after {
            Some(a) => g
                .points
                .range::<PointId, _>((Bound::Excluded(a), Bound::Unbounded)),
            None => g.points.range::<PointId, _>(..),
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next = None;
        for (id, r) in range {
            if bytes >= max_bytes && !out.is_empty() {
                next = out.last().map(|(p, _): &(WalPoint, u64)| p.id.clone());
                break;
            }
            let Some(s) = g.segments.get(&r.loc.seg) else {
                continue;
            };
            let payload_json = payload_to_json(&r.payload);
            bytes += self.spec.dim * 4 + payload_json.len() + 32;
            out.push((
                WalPoint {
                    id: id.clone(),
                    vector: s.vector(r.loc.off).to_vec(),
                    payload_json,
                },
                r.version,
            ));
        }
        (g.last_seq, out, next)
    }

    /// Loads a snapshot into an empty replica (before its WAL is replayed).
    pub fn import(&self, last_seq: u64, points: Vec<(WalPoint, u64)>) -> Result<()> {
        let mut g = self.inner.write();
        for (p, version) in points {
            self.apply_locked(&mut g, version, &WalOp::Upsert(vec![p]))?;
        }
        g.last_seq = last_seq;
        Ok(())
    }

    /// The ids among `ids` that exist (and match `filter` if given), or all ids matching
    /// `filter`.
    pub fn resolve(&self, ids: Option<&[PointId]>, filter: Option<&Filter>) -> Vec<PointId> {
        let g = self.inner.read();
        match (ids, filter) {
            (Some(ids), f) => ids
                .iter()
                .filter(|id| {
                    g.points
                        .get(*id)
                        .is_some_and(|r| f.is_none_or(|f| f.matches(id, &r.payload)))
                })
                .cloned()
                .collect(),
            (None, Some(f)) => g
                .points
                .iter()
                .filter(|(id, r)| f.matches(id, &r.payload))
                .map(|(id, _)| id.clone())
                .collect(),
            (None, None) => Vec::new(),
        }
    }

    /// The ids among `ids` whose point exists and does not match `guard`.
    pub fn existing_not_matching(
        &self,
        ids: &[PointId],
        guard: &Filter,
    ) -> std::collections::HashSet<PointId> {
        let g = self.inner.read();
        ids.iter()
            .filter(|id| {
                g.points
                    .get(*id)
                    .is_some_and(|r| !guard.matches(id, &r.payload))
            })
            .cloned()
            .collect()
    }

    /// The points among `ids` that exist and match `filter` (if given).
    pub fn retrieve(
        &self,
        ids: &[PointId],
        filter: Option<&Filter>,
        with_payload: &PayloadSelector,
        with_vector: bool,
    ) -> Vec<Record> {
        let g = self.inner.read();
        ids.iter()
            .filter_map(|id| {
                g.points
                    .get(id)
                    .filter(|r| filter.is_none_or(|f| f.matches(id, &r.payload)))
                    .map(|r| materialize(&g, id, r, with_payload, with_vector))
            })
            .collect()
    }

    /// Points in id order from `offset` (inclusive) matching `filter`: up to `limit`, and the id
    /// that would start the next page.
    pub fn scroll(
        &self,
        offset: Option<&PointId>,
        limit: usize,
        filter: Option<&Filter>,
        with_payload: &PayloadSelector,
        with_vector: bool,
    ) -> (Vec<Record>, Option<PointId>) {
        let g = self.inner.read();
        let start = match offset {
            Some(o) => Bound::Included(o.clone()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        let mut next = None;
        for (id, r) in g.points.range((start, Bound::Unbounded)) {
            if filter.is_some_and(|f| !f.matches(id, &r.payload)) {
                continue;
            }
            if out.len() == limit {
                next = Some(id.clone());
                break;
            }
            out.push(materialize(&g, id, r, with_payload, with_vector));
        }
        (out, next)
    }

    pub fn count(&self, filter: Option<&Filter>) -> usize {
        let g = self.inner.read();
        match filter {
            None => g.points.len(),
            Some(f) => g
                .points
                .iter()
                .filter(|(id, r)| f.matches(id, &r.payload))
                .count(),
        }
    }

    /// The stored vector of `id`, if the point exists and matches `filter` (if given).
    pub fn vector_of(&self, id: &PointId, filter: Option<&Filter>) -> Option<Vec<f32>> {
        let g = self.inner.read();
        let r = g
            .points
            .get(id)
            .filter(|r| filter.is_none_or(|f| f.matches(id, &r.payload)))?;
        g.segments
            .get(&r.loc.seg)
            .map(|s| s.vector(r.loc.off).to_vec())
    }

    pub fn search(&self, p: &SearchParams) -> Vec<Hit> {
        let g = self.inner.read();
        let metric = self.spec.metric;
        let mut query = p.vector.clone();
        self.prepare_vector(&mut query);
        let k = p.k;
        let field = self.partition_field();
        let value = match (&p.filter, &field) {
            (Some(f), Some(field)) => groups::pinned(f, field),
            _ => None,
        };
        let tenant = field.as_deref().zip(value.as_deref());
        let mut found: Vec<(u64, u32, f32)> = Vec::new();
        for seg in g.segments.values() {
            if seg.live() == 0 {
                continue;
            }
            let payload_of = |off: u32| {
                g.points
                    .get(&seg.ids[off as usize])
                    .map(|r| r.payload.clone())
            };
            let excluded = |off: u32| p.exclude.as_ref() == Some(&seg.ids[off as usize]);
            let hits = match &p.filter {
                None => seg.search(metric, &query, k, p.ef, p.exact, None, &|off| {
                    !excluded(off)
                }),
                Some(f) => {
                    let accept = |off: u32| {
                        !excluded(off)
                            && payload_of(off)
                                .is_some_and(|pl| f.matches(&seg.ids[off as usize], &pl))
                    };
                    if matches!(seg.vectors, Vectors::Grouped(_)) {
                        // a pinned tenant's group only; else the global graph or a scan
                        let ef = p.ef.max(k);
                        seg.search(metric, &query, k, ef, p.exact, tenant, &accept)
                    } else if seg.is_indexed() && !p.exact && !self.prefer_scan(seg, &accept) {
                        // a graph walk that skips non-matching points; widen ef as matches thin out
                        let ef = p.ef.max(k);
                        seg.search(
                            metric,
                            &query,
                            k,
                            ef.saturating_mul(2),
                            false,
                            None,
                            &accept,
                        )
                    } else {
                        let offs: Vec<u32> = (0..seg.len() as u32)
                            .filter(|o| !seg.deleted.get(*o) && accept(*o))
                            .collect();
                        seg.search_among(metric, &query, k, &offs)
                    }
                }
            };
            found.extend(hits.into_iter().map(|(off, d)| (seg.id, off, d)));
        }
        found.sort_unstable_by(|a, b| a.2.total_cmp(&b.2));
        found.truncate(k);
        found
            .into_iter()
            .filter_map(|(seg, off, distance)| {
                let s = g.segments.get(&seg)?;
                let id = &s.ids[off as usize];
                let r = g.points.get(id)?;
                Some(Hit {
                    record: materialize(&g, id, r, &p.with_payload, p.with_vector),
                    distance,
                })
            })
            .collect()
    }

    /// Whether a filtered search of an indexed segment should scan the matches exactly: when the
    /// filter is selective, a graph walk visits most of the graph to find few matches.
    fn prefer_scan(&self, seg: &Segment, accept: &dyn Fn(u32) -> bool) -> bool {
        const SAMPLE: usize = 256;
        let n = seg.len();
        let step = (n / SAMPLE).max(1);
        let (mut seen, mut hit) = (0usize, 0usize);
        let mut off = 0;
        while off < n {
            if !seg.deleted.get(off as u32) {
                seen += 1;
                if accept(off as u32) {
                    hit += 1;
                }
            }
            off += step;
        }
        if seen == 0 {
            return true;
        }
        let ratio = hit as f64 / seen as f64;
        let expected = ratio * seg.live() as f64;
        ratio < 0.05 || expected < self.spec.full_scan_threshold.min(seg.live()) as f64 * 0.2
    }

    pub fn stats(&self) -> ShardStats {
        let g = self.inner.read();
        ShardStats {
            points: g.points.len(),
            indexed_points: g
                .segments
                .values()
                .filter(|s| s.is_indexed())
                .map(|s| s.live())
                .sum(),
            segments: g.segments.len(),
            deleted: g.segments.values().map(|s| s.deleted.count()).sum(),
            memory_bytes: g.segments.values().map(|s| s.memory_bytes()).sum::<usize>()
                + g.points.len() * (std::mem::size_of::<PointRec>() + 48),
            last_seq: g.last_seq,
            stored_bytes: g.points.len() as u64 * self.spec.dim as u64 * 4 + g.payload_bytes,
        }
    }

    /// The next background index job, if any: first a sealed segment that has no graph yet, then
    /// a segment with too many tombstones, then a merge of segments of one size tier.
    pub fn next_job(&self) -> Option<BuildJob> {
        let pick = self.due_job()?;
        let field = self.partition_field();
        let form = self.spec.form(field.as_ref());
        let g = self.inner.read();
        let mut job = BuildJob {
            sources: pick.clone(),
            ids: Vec::new(),
            origin: Vec::new(),
            vectors: Vec::new(),
            values: Vec::new(),
            form,
        };
        for sid in pick {
            let s = g.segments.get(&sid)?;
            for off in 0..s.len() as u32 {
                if !s.deleted.get(off) {
                    let id = &s.ids[off as usize];
                    if let Form::Grouped(Some(f)) = &job.form {
                        let values = g
                            .points
                            .get(id)
                            .map(|r| groups::values_of(&r.payload, f))
                            .unwrap_or_default();
                        job.values.push(values);
                    }
                    job.ids.push(id.clone());
                    job.origin.push(Loc { seg: sid, off });
                    job.vectors.extend_from_slice(s.vector(off));
                }
            }
        }
        Some(job)
    }

    /// The segments the next background job would rebuild, without copying anything.
    pub fn due_job(&self) -> Option<Vec<u64>> {
        let g = self.inner.read();
        if g.adopt.is_some() {
            return None;
        }
        let sealed = || g.segments.values().filter(|s| s.sealed);
        let form = self.spec.form(self.partition.read().as_ref());
        let pick: Vec<u64> = if let Some(s) = sealed().find(|s| !s.is_indexed()) {
            vec![s.id]
        } else if let Some(s) =
            sealed().find(|s| !s.is_empty() && groups::form_of(s).is_some_and(|f| f != form))
        {
            // built for another partition field (an `is_tenant` index made or dropped since)
            vec![s.id]
        } else if let Some(s) = sealed()
            .find(|s| !s.is_empty() && s.deleted.count() as f64 / s.len() as f64 > VACUUM_RATIO)
        {
            vec![s.id]
        } else {
            let base = self.spec.indexing_threshold.max(1) as f64;
            // tier t holds segments of base * FANIN^t .. base * FANIN^(t+1) live points
            let mut tiers: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
            for s in sealed() {
                let tier = ((s.live().max(1) as f64 / base).log(MERGE_FANIN as f64))
                    .floor()
                    .max(0.0) as u32;
                tiers.entry(tier).or_default().push(s.id);
            }
            if let Some(full) = tiers.values().find(|v| v.len() >= MERGE_FANIN) {
                full.iter().copied().take(MERGE_FANIN).collect()
            } else {
                // every sealed segment costs a graph walk per query: past MAX_SEALED, merge the
                // smallest ones
                let mut by_size: Vec<(usize, u64)> = sealed().map(|s| (s.live(), s.id)).collect();
                if by_size.len() <= MAX_SEALED {
                    return None;
                }
                by_size.sort_unstable();
                by_size
                    .into_iter()
                    .take(MERGE_FANIN)
                    .map(|(_, id)| id)
                    .collect()
            }
        };
        Some(pick)
    }

    /// Installs a graph built for `job` (persisted in `file`, if it was): a new segment replaces
    /// the sources, keeping tombstones set while the graph was being built. Answers the files of
    /// the segments it replaced, for the caller to delete.
    pub fn install(
        &self,
        job: BuildJob,
        vectors: Vectors,
        file: Option<String>,
    ) -> Result<Vec<String>> {
        let mut g = self.inner.write();
        let inner = &mut *g;
        if job.sources.iter().any(|s| !inner.segments.contains_key(s)) {
            return Err(Error::internal("a segment of the build job is gone"));
        }
        if vectors_len(&vectors, self.spec.dim) != job.ids.len() {
            return Err(Error::internal("built graph has the wrong size"));
        }
        let new_id = inner.next_segment;
        inner.next_segment += 1;
        let mut deleted = BitSet::with_len(job.ids.len());
        for (i, origin) in job.origin.iter().enumerate() {
            let gone = inner
                .segments
                .get(&origin.seg)
                .is_none_or(|s| s.deleted.get(origin.off));
            if gone {
                deleted.set(i as u32);
            } else if let Some(r) = inner.points.get_mut(&job.ids[i]) {
                r.loc = Loc {
                    seg: new_id,
                    off: i as u32,
                };
            }
        }
        let mut replaced = Vec::new();
        for s in &job.sources {
            if let Some(old) = inner.segments.remove(s) {
                replaced.extend(old.file);
            }
        }
        inner.segments.insert(
            new_id,
            Segment {
                id: new_id,
                dim: self.spec.dim,
                ids: job.ids,
                vectors,
                deleted,
                sealed: true,
                file,
            },
        );
        Ok(replaced)
    }
}

/// How many points `vectors` holds.
fn vectors_len(vectors: &Vectors, dim: usize) -> usize {
    match vectors {
        Vectors::Plain(rows) => rows.len() / dim.max(1),
        Vectors::Graph(g) => g.len(),
        Vectors::Grouped(gs) => match &gs.global {
            Some(g) => g.len(),
            None => gs.rows.len() / dim.max(1),
        },
    }
}

fn tombstone(inner: &mut Inner, loc: Loc) {
    if let Some(s) = inner.segments.get_mut(&loc.seg) {
        s.deleted.set(loc.off);
    }
}

fn seal_tail(inner: &mut Inner, dim: usize) {
    if let Some(t) = inner.segments.get_mut(&inner.tail) {
        t.sealed = true;
    }
    let id = inner.next_segment;
    inner.next_segment += 1;
    inner.segments.insert(id, Segment::new_tail(id, dim));
    inner.tail = id;
}

fn materialize(
    g: &Inner,
    id: &PointId,
    r: &PointRec,
    with_payload: &PayloadSelector,
    with_vector: bool,
) -> Record {
    let payload = with_payload.select(&r.payload);
    let vector = if with_vector {
        g.segments
            .get(&r.loc.seg)
            .map(|s| s.vector(r.loc.off).to_vec())
    } else {
        None
    };
    Record {
        id: id.clone(),
        version: r.version,
        payload,
        vector,
    }
}

/// Whether selecting `want` (a top-level key or a dotted path) selects top-level key `k`.
fn key_selected(want: &str, k: &str) -> bool {
    want == k || want.split(['.', '[']).next() == Some(k)
}

pub fn normalize(v: &mut [f32]) {
    let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 && n.is_finite() {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

fn set_at_path(p: &mut Payload, path: &str, patch: &Payload) {
    let mut parts = path.split('.');
    let Some(first) = parts.next() else { return };
    let mut cur = p
        .entry(first.to_string())
        .or_insert_with(|| Value::Object(Payload::new()));
    for part in parts {
        if !cur.is_object() {
            *cur = Value::Object(Payload::new());
        }
        let Value::Object(m) = cur else { return };
        cur = m
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Payload::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Payload::new());
    }
    if let Value::Object(m) = cur {
        m.extend(patch.clone());
    }
}

fn remove_at_path(p: &mut Payload, path: &str) {
    match path.split_once('.') {
        None => {
            p.remove(path);
        }
        Some((head, rest)) => {
            if let Some(Value::Object(m)) = p.get_mut(head) {
                remove_at_path(m, rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{self, WalPoint};

    fn spec(threshold: usize) -> ShardSpec {
        ShardSpec {
            collection_uid: 1,
            shard_id: 0,
            key: Some(ShardKey::Str("acme".into())),
            dim: 3,
            metric: Metric::Euclid,
            graph: GraphParams {
                m: 8,
                ef_construct: 32,
            },
            payload_m: None,
            partition_field: None,
            indexing_threshold: threshold,
            full_scan_threshold: 100,
        }
    }

    /// `m: 0, payload_m` with a partition field: a sealed segment gets a graph per large tenant
    /// and none over the whole; a query pinned to a tenant sees that tenant only, and a large
    /// tenant's graph walk finds what an exact search finds.
    #[test]
    fn per_tenant_graphs_answer_pinned_queries_within_the_tenant() {
        use crate::filter::parse_filter;
        let mut sp = spec(100_000);
        sp.dim = 8;
        sp.graph.m = 0;
        sp.payload_m = Some(16);
        sp.partition_field = Some("t".into());
        let d = ShardData::new(sp);
        let mut x = 17u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1000) as f32 / 500.0 - 1.0
        };
        let tenant = |i: u64| if i.is_multiple_of(10) { "small" } else { "big" };
        let points: Vec<WalPoint> = (0..2500u64)
            .map(|i| WalPoint {
                id: PointId::Num(i),
                vector: (0..8).map(|_| rnd()).collect(),
                payload_json: format!("{{\"t\":\"{}\"}}", tenant(i)).into_bytes(),
            })
            .collect();
        d.apply(&WalRecord {
            seq: 1,
            op: WalOp::Upsert(points),
        })
        .expect("upsert");
        d.inner
            .write()
            .segments
            .values_mut()
            .for_each(|s| s.sealed = true);
        let job = d.next_job().expect("due");
        assert_eq!(job.form, Form::Grouped(Some("t".into())));
        let built = build(&d.spec, &job).expect("build");
        // its file reads back the same, and a restarted replica adopts it instead of building
        let dir = tempfile::tempdir().expect("tmp");
        let name = crate::segfile::fresh_name();
        crate::segfile::write(dir.path(), &name, &job.ids, &built).expect("write");
        let (file_ids, from_file) =
            crate::segfile::read(&dir.path().join(&name)).expect("read back");
        assert_eq!(file_ids, job.ids);
        let (_, all) = {
            let restarted = ShardData::new(d.spec.clone());
            restarted.offer_segments(vec![(name, file_ids, from_file)]);
            let (seq, pts) = d.export();
            restarted.import(seq, pts).expect("import");
            assert_eq!(restarted.finish_adoption().0, 2500, "every point adopted");
            (seq, restarted)
        };
        d.install(job, built, None).expect("install");
        {
            let g = d.inner.read();
            let seg = g.segments.values().find(|s| s.is_indexed()).expect("built");
            let Vectors::Grouped(gs) = &seg.vectors else {
                panic!("not grouped")
            };
            assert!(gs.global.is_none(), "m: 0 builds no global graph");
            assert!(gs.by_value["big"].graph.is_some() && gs.by_value["small"].graph.is_none());
        }
        for (t, min_recall) in [("big", 0.9), ("small", 1.0)] {
            let f =
                parse_filter(&serde_json::json!({"must": [{"key": "t", "match": {"value": t}}]}))
                    .expect("filter");
            let mut found = 0;
            for q in 0..20 {
                let vector: Vec<f32> = (0..8).map(|_| rnd()).collect();
                let p = |exact| SearchParams {
                    vector: vector.clone(),
                    filter: Some(f.clone()),
                    k: 10,
                    ef: 64,
                    exact,
                    with_payload: PayloadSelector::All,
                    with_vector: false,
                    exclude: None,
                };
                let (got, want) = (d.search(&p(false)), d.search(&p(true)));
                let ids = |h: &[Hit]| h.iter().map(|h| h.record.id.clone()).collect::<Vec<_>>();
                assert_eq!(
                    ids(&all.search(&p(false))),
                    ids(&got),
                    "the adopted file searches alike"
                );
                assert!(
                    got.iter()
                        .all(|h| h.record.payload.as_ref().is_some_and(|pl| pl["t"] == t)),
                    "query {q}"
                );
                let want: std::collections::HashSet<_> =
                    want.iter().map(|h| h.record.id.clone()).collect();
                found += got.iter().filter(|h| want.contains(&h.record.id)).count();
            }
            let recall = found as f64 / 200.0;
            assert!(recall >= min_recall, "{t}: recall {recall}");
        }
        // a point whose tenant changes is found by its new tenant's queries
        let moved = PointId::Num(1);
        d.apply(&WalRecord {
            seq: 2,
            op: WalOp::OverwritePayload {
                ids: vec![moved.clone()],
                payload_json: b"{\"t\":\"small\"}".to_vec(),
            },
        })
        .expect("overwrite");
        let f =
            parse_filter(&serde_json::json!({"must": [{"key": "t", "match": {"value": "small"}}]}))
                .expect("filter");
        let v = d.vector_of(&moved, None).expect("vector");
        let hits = d.search(&SearchParams {
            vector: v,
            filter: Some(f),
            k: 1,
            ef: 64,
            exact: false,
            with_payload: PayloadSelector::None,
            with_vector: false,
            exclude: None,
        });
        assert_eq!(hits.first().map(|h| h.record.id.clone()), Some(moved));
        // a filter that does not pin the tenant searches every group
        let f = parse_filter(
            &serde_json::json!({"should": [{"key": "t", "match": {"value": "small"}}]}),
        )
        .expect("filter");
        assert!(groups::pinned(&f, "t").is_none());
    }

    fn upsert(seq: u64, ids: std::ops::Range<u64>) -> WalRecord {
        WalRecord {
            seq,
            op: WalOp::Upsert(
                ids.map(|i| WalPoint {
                    id: PointId::Num(i),
                    vector: vec![i as f32, 0.0, 1.0],
                    payload_json: format!("{{\"i\":{i}}}").into_bytes(),
                })
                .collect(),
            ),
        }
    }

    #[test]
    fn snapshot_then_wal_replay_gives_the_same_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ShardData::new(spec(16));
        a.apply(&upsert(1, 0..40)).expect("upsert");
        a.apply(&WalRecord {
            seq: 2,
            op: WalOp::Delete(vec![PointId::Num(3)]),
        })
        .expect("delete");
        let snap = dir.path().join("points.snap");
        let (seq, pts) = a.export();
        wal::write_snapshot(&snap, seq, pts).expect("snapshot");
        a.apply(&upsert(3, 100..102)).expect("upsert");

        let b = ShardData::new(spec(16));
        let (seq, pts) = wal::read_snapshot(&snap).expect("read").expect("some");
        b.import(seq, pts).expect("import");
        // replay of the whole history: records the snapshot holds are skipped
        b.apply(&upsert(1, 0..40)).expect("replay 1");
        b.apply(&WalRecord {
            seq: 2,
            op: WalOp::Delete(vec![PointId::Num(3)]),
        })
        .expect("replay 2");
        b.apply(&upsert(3, 100..102)).expect("replay 3");
        let all = |d: &ShardData| d.scroll(None, 1000, None, &PayloadSelector::All, true).0;
        assert_eq!(all(&a), all(&b));
        assert_eq!(b.len(), 41);
        assert_eq!(b.last_seq(), 3);
    }

    #[test]
    fn sealed_segments_get_graphs_and_keep_tombstones_set_meanwhile() {
        let d = ShardData::new(spec(16));
        d.apply(&upsert(1, 0..40)).expect("upsert");
        let job = d.next_job().expect("a sealed segment is due");
        // a delete lands while the graph is being built
        d.apply(&WalRecord {
            seq: 2,
            op: WalOp::Delete(vec![job.ids[0].clone()]),
        })
        .expect("delete");
        let g = build(&d.spec, &job).expect("build");
        d.install(job, g, None).expect("install");
        assert_eq!(d.len(), 39);
        let hits = d.search(&SearchParams {
            vector: vec![0.0, 0.0, 1.0],
            filter: None,
            k: 3,
            ef: 32,
            exact: false,
            with_payload: PayloadSelector::None,
            with_vector: false,
            exclude: None,
        });
        assert!(hits.iter().all(|h| h.record.id != PointId::Num(0)));
        assert_eq!(hits[0].record.id, PointId::Num(1));
        assert!(d.stats().indexed_points > 0);
    }

    #[test]
    fn a_replica_refuses_other_keys() {
        let d = ShardData::new(spec(16));
        assert!(d.check_key(Some(&ShardKey::Str("acme".into()))).is_ok());
        assert!(d.check_key(Some(&ShardKey::Str("globex".into()))).is_err());
        assert!(d.check_key(None).is_err());
    }
}
