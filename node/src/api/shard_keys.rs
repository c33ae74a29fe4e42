//! Shard key endpoints (create, delete, list) and the collection's cluster view, Qdrant's
//! "distributed" group for a collection.

use std::time::Instant;
use tessera_cluster::request::MetaRequest;

use crate::catalog::KeyOutcome;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::response::IntoResponse;
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_cluster::meta::ShardKey;

use super::json::shard_keys::{
    CollectionCluster, CreateShardKey, KeyCreated, ShardKeyEntry, ShardKeyList, ShardReplica,
    ShardTransfer, cluster_op, delete_shard_key,
};
use super::json::{KeyJson, body_json, body_object};
use super::{AppState, Reply, ok, visible_collection, visible_read_scope};
use crate::access;
use crate::router::Ctx;

type Body = std::result::Result<Bytes, BytesRejection>;

pub async fn create(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: Body,
) -> Reply {
    let started = Instant::now();
    let (key, outcome) = create_key(&app, &ctx, &name, body_object(&body_json(body)?)?).await?;
    let answer = KeyCreated::new(key, outcome, started.elapsed().as_secs_f64());
    Ok(axum::Json(answer).into_response())
}

/// Creates the shard key a create body names (manage rights); what happened.
pub async fn create_key(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<(ShardKey, KeyOutcome)> {
    access::check_manage(&ctx.principal)?;
    let CreateShardKey {
        key,
        shards_number,
        replication_factor,
        placement,
    } = CreateShardKey::parse(o)?;
    let outcome = app
        .catalog
        .create_shard_key(MetaRequest::CreateShardKey {
            collection: name.to_string(),
            key: key.clone(),
            shards_number,
            replication_factor,
            placement,
        })
        .await?;
    tracing::info!(collection = %name, shard_key = %key, created = outcome.created, pending = outcome.pending.len(), "shard key create answered");
    Ok((key, outcome))
}

pub async fn delete(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: Body,
) -> Reply {
    let started = Instant::now();
    delete_key(&app, &ctx, &name, body_object(&body_json(body)?)?).await?;
    ok(true, started)
}

/// Deletes the shard key a delete body names (manage rights).
pub async fn delete_key(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<()> {
    access::check_manage(&ctx.principal)?;
    let key = delete_shard_key(o)?;
    app.catalog
        .submit(MetaRequest::DeleteShardKey {
            collection: name.to_string(),
            key,
        })
        .await?;
    Ok(())
}

/// Qdrant's placement operations on a collection's shards (manage rights): `replicate_shard`,
/// `move_shard`, `abort_transfer`, `drop_replica`.
pub async fn update_cluster(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: Body,
) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    visible_collection(&app, &ctx, &name, |_| ())?;
    let op = cluster_op(body_object(&body_json(body)?)?)?;
    app.router.replication.cluster_op(&name, op).await?;
    ok(true, started)
}

pub async fn list(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let started = Instant::now();
    let shard_keys = visible_keys(&app, &ctx, &name)?
        .into_iter()
        .map(|key| ShardKeyEntry { key: KeyJson(key) })
        .collect();
    ok(ShardKeyList { shard_keys }, started)
}

/// The shard keys of a collection the caller may see.
pub fn visible_keys(app: &AppState, ctx: &Ctx, name: &str) -> Result<Vec<ShardKey>> {
    visible_collection(app, ctx, name, |c| access::visible_keys(&ctx.principal, c))
}

/// The caller's shards of a collection and where their replicas are, each replica with its
/// state and its own points count (asked of it, on whichever node it is), unless the caller sees
/// only a payload partition of them.
pub async fn collection_cluster(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let started = Instant::now();
    ok(cluster_view(&app, &ctx, &name).await?, started)
}

/// The caller's shards of a collection and their replicas, as `GET /collections/{c}/cluster`
/// answers.
pub async fn cluster_view(app: &AppState, ctx: &Ctx, name: &str) -> Result<CollectionCluster> {
    let (collection, scope) = visible_read_scope(app, ctx, name)?;
    let mut local_shards = Vec::new();
    let mut remote_shards = Vec::new();
    let mut shard_transfers = Vec::new();
    let shards = scope
        .targets
        .iter()
        .filter_map(|target| collection.shards.get(&target.shard));
    for shard in shards {
        // every replica's own count (remote ones asked over the link; null if it does not
        // answer), unless the caller sees only a payload partition of them
        let statuses = if scope.partition.is_none() && shard.replicas.len() > 1 {
            app.router
                .replication
                .replica_statuses(collection.uid, shard)
                .await
        } else {
            Default::default()
        };
        for replica in &shard.replicas {
            // a replica catching up is a transfer from the primary to it
            if replica.state == tessera_cluster::meta::ReplicaState::Partial
                && let Some(from) = shard.primary()
            {
                // progress as Qdrant words it: the points the new replica holds so far of the
                // primary's (unknown when either does not answer, or in a payload partition)
                let count = |node| statuses.get(&node).copied().flatten().map(|s| s.points);
                let comment = match (count(replica.node), count(from)) {
                    (Some(done), Some(total)) => {
                        Some(format!("Transferring records ({done}/{total})"))
                    }
                    _ => None,
                };
                shard_transfers.push(ShardTransfer {
                    shard_id: shard.id,
                    from,
                    to: replica.node,
                    sync: false,
                    method: "snapshot",
                    comment,
                });
            }
            let mut entry = ShardReplica {
                peer_id: None,
                points_count: None,
                shard_id: shard.id,
                shard_key: shard.key.clone().map(KeyJson),
                state: format!("{:?}", replica.state),
            };
            if scope.partition.is_none() {
                entry.points_count = if replica.node == app.catalog.node_id {
                    Some(
                        app.catalog
                            .shards
                            .data((collection.uid, shard.id))
                            .map(|data| data.stats().points)
                            .unwrap_or(0),
                    )
                } else {
                    statuses
                        .get(&replica.node)
                        .copied()
                        .flatten()
                        .map(|s| s.points as usize)
                };
            }
            if replica.node == app.catalog.node_id {
                local_shards.push(entry);
            } else {
                entry.peer_id = Some(replica.node);
                remote_shards.push(entry);
            }
        }
    }
    let cluster = CollectionCluster {
        peer_id: app.catalog.node_id,
        shard_count: local_shards.len() + remote_shards.len(),
        local_shards,
        remote_shards,
        shard_transfers,
    };
    Ok(cluster)
}
