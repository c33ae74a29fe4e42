//! `POST /collections/{c}/points/batch` (qdrant-client's `batch_update_points`): several point
//! writes in one request, applied in order. Every operation is parsed and checked before the
//! first is applied, so a malformed or refused one changes nothing; an operation that fails
//! while the batch runs (a write refused by the shard) stops it there, with the ones before it
//! applied, as in Qdrant.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, RawQuery, State};
use serde_json::{Map, Value};
use tessera_cluster::Result;

use super::json::points::{SelectedWrite, SelectedWriteKind, Upsert};
use super::json::{UpdateResult, bad, body_json, body_object, field, obj};
use super::points::parse_upsert;
use super::{AppState, Reply, ok, query_flag};
use crate::router::Ctx;

type Body = std::result::Result<Bytes, BytesRejection>;

/// Most operations one batch may carry.
pub const MAX_BATCH_OPERATIONS: usize = 1024;

pub async fn update_batch(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Reply {
    let started = Instant::now();
    let wait = query_flag(&query, "wait")?;
    let v = body_json(body)?;
    let seqs = run_batch(&app, &ctx, &name, body_object(&v)?).await?;
    let results: Vec<UpdateResult> = seqs
        .into_iter()
        .map(|seq| UpdateResult::new(seq, wait))
        .collect();
    ok(results, started)
}

/// One parsed operation of a batch.
enum Op {
    Upsert(Upsert),
    Selected(SelectedWrite),
}

/// Parses every operation of a batch body, then applies them in order; their operation ids.
pub async fn run_batch(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<Vec<u64>> {
    super::json::check_fields(o, "", &["operations"], &[])?;
    let list = field(o, "operations")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Format error in JSON body: operations must be a list"))?;
    if list.len() > MAX_BATCH_OPERATIONS {
        return Err(bad(format!(
            "Bad request: at most {MAX_BATCH_OPERATIONS} operations per batch"
        )));
    }
    let mut ops = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let op = obj(v, "operations[]")?;
        let (kind, body) = match op.iter().next() {
            Some((k, b)) if op.len() == 1 => (k.as_str(), obj(b, k)?),
            _ => {
                return Err(bad(format!(
                    "Format error in JSON body: operations[{i}] must hold exactly one operation"
                )));
            }
        };
        let selected = |kind| SelectedWrite::parse(body, kind).map(Op::Selected);
        ops.push(match kind {
            "upsert" => Op::Upsert(parse_upsert(app, ctx, name, body)?),
            "delete" => selected(SelectedWriteKind::Delete)?,
            "set_payload" => selected(SelectedWriteKind::SetPayload)?,
            "overwrite_payload" => selected(SelectedWriteKind::OverwritePayload)?,
            "delete_payload" => selected(SelectedWriteKind::DeletePayload)?,
            "clear_payload" => selected(SelectedWriteKind::ClearPayload)?,
            "update_vectors" | "delete_vectors" => {
                return Err(bad(format!(
                    "Bad request: tessera does not support the batch operation {kind} (operations[{i}]); nothing was applied"
                )));
            }
            other => {
                return Err(bad(format!(
                    "Format error in JSON body: unknown batch operation {other} (operations[{i}])"
                )));
            }
        });
    }
    let mut seqs = Vec::with_capacity(ops.len());
    for op in ops {
        seqs.push(match op {
            Op::Upsert(u) => super::points::apply_upsert(app, ctx, name, u).await?,
            Op::Selected(SelectedWrite {
                shard_key,
                write,
                points,
            }) => {
                app.router
                    .write_selected(ctx, name, &shard_key, points, write)
                    .await?
            }
        });
    }
    Ok(seqs)
}
