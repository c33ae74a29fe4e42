//! Placing a replica's points into graphs read from segment files ([`crate::segfile`]) instead of
//! building them again: at load (after a restart) and when a copy from another replica brings the
//! other replica's files along.
//!
//! The files are offered first ([`ShardData::offer_segments`]): their segments join the state
//! with every offset a tombstone. Then the points are applied as always (snapshot, WAL, or the
//! pages of a copy); a point whose vector is bit for bit the one a file holds for its id takes
//! that offset instead of a place in the tail. [`ShardData::finish_adoption`] ends it: offsets
//! nobody claimed stay tombstones, and segments nobody claimed at all are dropped with their
//! files. No background index job runs while an adoption is open (a segment of tombstones would
//! look ripe for a rebuild).

use std::collections::HashMap;

use super::{Inner, Loc, ShardData};
use crate::point::PointId;
use crate::segment::{BitSet, Segment, Vectors};

/// A segment file read from disk: its name, ids and vectors (a graph, or groups).
pub type LoadedSegment = (String, Vec<PointId>, Vectors);

impl ShardData {
    /// Adds segments read from files, each offset a tombstone until a point claims it.
    pub fn offer_segments(&self, loaded: Vec<LoadedSegment>) {
        let mut g = self.inner.write();
        let inner = &mut *g;
        let map = inner.adopt.get_or_insert_with(HashMap::new);
        for (file, ids, vectors) in loaded {
            let fits = match &vectors {
                Vectors::Graph(g) => g.dim() == self.spec.dim && g.metric() == self.spec.metric,
                Vectors::Grouped(gs) => {
                    (match &gs.global {
                        Some(g) => g.dim() == self.spec.dim && g.metric() == self.spec.metric,
                        None => gs.rows.len() == ids.len() * self.spec.dim,
                    }) && gs.by_value.values().all(|grp| {
                        grp.graph.as_ref().is_none_or(|g| {
                            g.dim() == self.spec.dim && g.metric() == self.spec.metric
                        })
                    })
                }
                Vectors::Plain(_) => false,
            };
            if !fits {
                tracing::warn!(
                    shard = self.spec.shard_id,
                    file,
                    "segment file is of another dimension or metric; not used"
                );
                continue;
            }
            let id = inner.next_segment;
            inner.next_segment += 1;
            for (off, pid) in ids.iter().enumerate() {
                map.entry(pid.clone()).or_insert(Loc {
                    seg: id,
                    off: off as u32,
                });
            }
            inner.segments.insert(
                id,
                Segment {
                    id,
                    dim: self.spec.dim,
                    deleted: BitSet::full(ids.len()),
                    ids,
                    vectors,
                    sealed: true,
                    file: Some(file),
                },
            );
        }
    }

    /// Ends an adoption: answers how many points were placed in offered graphs, and the files
    /// of segments no point claimed (dropped from the state; the caller deletes the files).
    pub fn finish_adoption(&self) -> (usize, Vec<String>) {
        let mut g = self.inner.write();
        let inner = &mut *g;
        if inner.adopt.take().is_none() {
            return (0, Vec::new());
        }
        let unused: Vec<u64> = inner
            .segments
            .values()
            .filter(|s| s.file.is_some() && s.live() == 0)
            .map(|s| s.id)
            .collect();
        let mut files = Vec::new();
        for id in unused {
            if let Some(s) = inner.segments.remove(&id) {
                files.extend(s.file);
            }
        }
        let adopted = inner
            .segments
            .values()
            .filter(|s| s.file.is_some())
            .map(|s| s.live())
            .sum();
        (adopted, files)
    }

    /// The files of the state's indexed segments, by name.
    pub fn segment_files(&self) -> Vec<String> {
        let g = self.inner.read();
        g.segments
            .values()
            .filter(|s| s.is_indexed())
            .filter_map(|s| s.file.clone())
            .collect()
    }
}

impl Inner {
    /// The offered place of point `id` with `vector`, claimed for it, if a file holds exactly
    /// that vector for it.
    pub(super) fn claim(&mut self, id: &PointId, vector: &[f32]) -> Option<Loc> {
        let loc = *self.adopt.as_ref()?.get(id)?;
        let seg = self.segments.get_mut(&loc.seg)?;
        let same = seg.ids.get(loc.off as usize) == Some(id)
            && seg.deleted.get(loc.off)
            && seg
                .vector(loc.off)
                .iter()
                .zip(vector)
                .all(|(a, b)| a.to_bits() == b.to_bits())
            && seg.dim == vector.len();
        if !same {
            return None;
        }
        seg.deleted.unset(loc.off);
        if let Some(map) = self.adopt.as_mut() {
            map.remove(id);
        }
        Some(loc)
    }
}
