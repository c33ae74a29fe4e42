//! The shard replica's write-ahead log: one record per write batch, so a batch is applied whole or
//! not at all. Filter-based writes are resolved to point ids before they are logged, so replay is
//! deterministic.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tessera_cluster::{Error, Result, codec, record_log::RecordLog};

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
