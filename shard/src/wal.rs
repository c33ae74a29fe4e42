//! The shard replica's write-ahead log: one record per write batch, so a batch is applied whole or
//! not at all. Filter-based writes are resolved to point ids before they are logged, so replay is
//! deterministic.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tessera_core::{Error, Result, codec, record_log::RecordLog};

use crate::point::{Payload, PointId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalPoint {
    pub id: PointId,
    pub vector: Vec<f32>,
    /// The payload as JSON text (bincode cannot carry self-describing JSON values); empty: none.
    pub payload_json: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WalOp {
    Upsert(Vec<WalPoint>),
    Delete(Vec<PointId>),
    SetPayload {
        ids: Vec<PointId>,
        payload_json: Vec<u8>,
        key: Option<String>,
    },
    OverwritePayload {
        ids: Vec<PointId>,
        payload_json: Vec<u8>,
    },
    DeletePayload {
        ids: Vec<PointId>,
        keys: Vec<String>,
    },
    ClearPayload {
        ids: Vec<PointId>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalRecord {
    pub seq: u64,
    pub op: WalOp,
}

pub fn payload_to_json(p: &Payload) -> Vec<u8> {
    if p.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(p).unwrap_or_default()
    }
}

pub fn payload_from_json(b: &[u8]) -> Result<Payload> {
    if b.is_empty() {
        return Ok(Payload::new());
    }
    serde_json::from_slice(b).map_err(|e| Error::internal(format!("wal payload: {e}")))
}

/// Opens a WAL, feeding every record to `apply`.
pub fn open(path: &Path, mut apply: impl FnMut(WalRecord) -> Result<()>) -> Result<RecordLog> {
    let (log, report) = RecordLog::open(path, |body| apply(codec::decode(body)?))?;
    if report.records > 0 || report.truncated_bytes > 0 {
        tracing::debug!(path = %path.display(), records = report.records, truncated = report.truncated_bytes, "wal replayed");
    }
    Ok(log)
}

pub fn encode(rec: &WalRecord) -> Result<Vec<u8>> {
    codec::encode(rec)
}

/// First record of a points snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub last_seq: u64,
    pub points: u64,
}

/// A chunk of a points snapshot: points with the sequence number of their last change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub points: Vec<(WalPoint, u64)>,
}

/// Points per snapshot record.
pub const SNAPSHOT_CHUNK: usize = 1024;

/// Writes a snapshot atomically (a temporary file, fsync, rename, directory fsync).
pub fn write_snapshot(path: &Path, last_seq: u64, points: Vec<(WalPoint, u64)>) -> Result<()> {
    let tmp = path.with_extension("snap.tmp");
    let _ = std::fs::remove_file(&tmp);
    let (mut log, _) = RecordLog::open(&tmp, |_| Ok(()))?;
    let header = codec::encode(&SnapshotHeader {
        last_seq,
        points: points.len() as u64,
    })?;
    log.append(&[&header], false)?;
    let mut it = points.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<(WalPoint, u64)> = it.by_ref().take(SNAPSHOT_CHUNK).collect();
        let body = codec::encode(&SnapshotChunk { points: chunk })?;
        log.append(&[&body], false)?;
    }
    log.append(&[], true)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename snapshot into", path, e))?;
    tessera_core::record_log::sync_parent_dir(path)
}

/// A snapshot's content: its last sequence number, and each point with its version.
pub type Snapshot = (u64, Vec<(WalPoint, u64)>);

/// Reads a snapshot; None if there is none.
pub fn read_snapshot(path: &Path) -> Result<Option<Snapshot>> {
    if !path.exists() {
        return Ok(None);
    }
    let mut header: Option<SnapshotHeader> = None;
    let mut points = Vec::new();
    RecordLog::open(path, |body| {
        if header.is_none() {
            header = Some(codec::decode(body)?);
        } else {
            let c: SnapshotChunk = codec::decode(body)?;
            points.extend(c.points);
        }
        Ok(())
    })?;
    let h = header
        .ok_or_else(|| Error::internal(format!("snapshot {} has no header", path.display())))?;
    if h.points != points.len() as u64 {
        return Err(Error::internal(format!(
            "snapshot {} holds {} points, its header says {}",
            path.display(),
            points.len(),
            h.points
        )));
    }
    Ok(Some((h.last_seq, points)))
}
