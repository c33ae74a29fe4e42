//! Per-tenant graphs (Qdrant's `payload_m`, the seed guide's shared collection with
//! `hnsw_config: {m: 0, payload_m: 16}` and an `is_tenant` keyword index): a sealed segment groups
//! its points by the value of the partition field and builds a graph per group
//! ([`crate::segment::Groups`]); a query whose filter pins that field to one value searches that
//! value's group in each segment and nothing else.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tessera_core::{Error, Result};
use tessera_index::{CompactGraph, GraphParams};

use super::{BuildJob, Inner, Loc, ShardData, ShardSpec, seal_tail, tombstone};
use crate::filter::{Condition, Filter, JsonPath, Match, MatchValue, get_flat_values};
use crate::point::Payload;
use crate::point::PointId;
use crate::segment::{GROUP_GRAPH_MIN, Group, Groups, Segment, Vectors};

/// How a sealed segment is built under a spec and partition field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// One graph over the segment (`m > 0`, no per-tenant graphs).
    Graph,
    /// Grouped by this field (None: no groups, `m: 0` without a partition field).
    Grouped(Option<String>),
}

impl ShardSpec {
    /// The form sealed segments are built in while `field` is the partition field.
    pub fn form(&self, field: Option<&String>) -> Form {
        match (self.payload_m, field) {
            (Some(_), Some(f)) => Form::Grouped(Some(f.clone())),
            _ if self.graph.m > 0 => Form::Graph,
            _ => Form::Grouped(None),
        }
    }
}

/// The form a built segment is in (None: not built).
pub(super) fn form_of(seg: &Segment) -> Option<Form> {
    match &seg.vectors {
        Vectors::Plain(_) => None,
        Vectors::Graph(_) => Some(Form::Graph),
        Vectors::Grouped(g) => Some(Form::Grouped(g.field.clone())),
    }
}

/// The string values of a point's partition field (a keyword, or an array of them).
pub(super) fn values_of(payload: &Payload, field: &str) -> Vec<String> {
    let path = JsonPath::key(field);
    let mut out: Vec<String> = get_flat_values(payload, &path)
        .into_iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The value `filter` pins `field` to, if every point it accepts must have it: a top-level
/// `must` condition `field == "value"` (and nothing else in that condition).
pub(super) fn pinned(filter: &Filter, field: &str) -> Option<String> {
    filter.must.iter().find_map(|c| match c {
        Condition::Field(fc)
            if fc.key.first_key == field
                && fc.key.rest.is_empty()
                && fc.range.is_none()
                && fc.values_count.is_none()
                && fc.is_empty.is_none()
                && fc.is_null.is_none() =>
        {
            match &fc.r#match {
                Some(Match::Value(MatchValue::Keyword(v))) => Some(v.clone()),
                _ => None,
            }
        }
        Condition::Filter(f) => pinned(f, field),
        _ => None,
    })
}

impl ShardData {
    /// Sets the partition field (the collection's `is_tenant` keyword index); segments built
    /// for another one are rebuilt in the background.
    pub fn set_partition_field(&self, field: Option<String>) {
        let mut f = self.partition.write();
        if *f != field {
            tracing::info!(shard = self.spec.shard_id, field = ?field, "partition field set");
            *f = field;
        }
    }

    pub fn partition_field(&self) -> Option<String> {
        self.partition.read().clone()
    }

    /// Replaces a point's payload; a point whose partition values change leaves its grouped
    /// segment for the tail (its old group would hide it from its new tenant's queries).
    pub(super) fn regroup_payload(
        &self,
        inner: &mut Inner,
        field: Option<&str>,
        id: &PointId,
        payload: std::sync::Arc<Payload>,
        seq: u64,
    ) {
        let before = field.and_then(|f| inner.points.get(id).map(|r| values_of(&r.payload, f)));
        let after = field.map(|f| values_of(&payload, f));
        inner.set_payload(id, payload, seq);
        if before.is_some() && before != after {
            relocate(inner, id, self.spec.dim, self.spec.indexing_threshold);
        }
    }
}

/// Moves a point of a grouped segment to the tail (its vector copied, its old place a
/// tombstone).
fn relocate(inner: &mut Inner, id: &PointId, dim: usize, threshold: usize) {
    let Some(loc) = inner.points.get(id).map(|r| r.loc) else {
        return;
    };
    let vector = match inner.segments.get(&loc.seg) {
        Some(s) if matches!(s.vectors, Vectors::Grouped(_)) => s.vector(loc.off).to_vec(),
        _ => return,
    };
    tombstone(inner, loc);
    if inner
        .segments
        .get(&inner.tail)
        .is_none_or(|t| t.len() >= u32::MAX as usize - 1)
    {
        seal_tail(inner, dim);
    }
    let tail_id = inner.tail;
    let Some(tail) = inner.segments.get_mut(&tail_id) else {
        return;
    };
    let off = tail.push(id.clone(), &vector);
    let full = tail.len() >= threshold.max(1);
    if let Some(r) = inner.points.get_mut(id) {
        r.loc = Loc { seg: tail_id, off };
    }
    if full {
        seal_tail(inner, dim);
    }
}

/// Builds a job's segment in the form it was taken for (CPU heavy; the build pool).
pub fn build(spec: &ShardSpec, job: &BuildJob) -> Result<Vectors> {
    let graph = |vectors: &[f32], params: GraphParams| {
        CompactGraph::build_with_stats(vectors, spec.dim, spec.metric, params, 1)
            .map(|(g, _)| g)
            .map_err(|e| Error::internal(format!("index build: {e}")))
    };
    let field = match &job.form {
        Form::Graph => {
            return graph(&job.vectors, spec.graph).map(|g| Vectors::Graph(Arc::new(g)));
        }
        Form::Grouped(f) => f.clone(),
    };
    let global = if spec.graph.m > 0 {
        Some(graph(&job.vectors, spec.graph)?)
    } else {
        None
    };
    let group_params = GraphParams {
        m: spec.payload_m.unwrap_or(spec.graph.m).max(2),
        ef_construct: spec.graph.ef_construct,
    };
    let mut by_value: HashMap<String, Vec<u32>> = HashMap::new();
    for (i, values) in job.values.iter().enumerate() {
        for v in values {
            by_value.entry(v.clone()).or_default().push(i as u32);
        }
    }
    let mut groups = HashMap::with_capacity(by_value.len());
    for (value, offs) in by_value {
        let graph = if offs.len() >= GROUP_GRAPH_MIN {
            let mut rows = Vec::with_capacity(offs.len() * spec.dim);
            for &o in &offs {
                let s = o as usize * spec.dim;
                rows.extend_from_slice(&job.vectors[s..s + spec.dim]);
            }
            Some(graph(&rows, group_params)?)
        } else {
            None
        };
        groups.insert(value, Group { offs, graph });
    }
    Ok(Vectors::Grouped(Arc::new(Groups {
        rows: if global.is_some() {
            Vec::new()
        } else {
            job.vectors.clone()
        },
        global,
        field,
        by_value: groups,
    })))
}
