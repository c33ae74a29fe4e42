//! Admin endpoints (manage rights): a tenant's suspension, quota and usage; a collection's
//! replicas; rebalancing the cluster.

use std::time::Instant;
use tessera_cluster::request::MetaRequest;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};

use super::json::KeyJson;
use super::json::admin::{
    QuotaView, RebalanceView, ReplicaView, ReplicasView, ShardReplicasView, TenantInfo, UsageView,
    quota_patch, rebalance_request,
};
use super::json::{bad, body_json, body_object};
use super::{AppState, Reply, ok};
use crate::access;
use crate::quota::Quotas;
use crate::router::Ctx;

fn tenant_info(app: &AppState, tenant: String) -> TenantInfo {
    let suspended = app.catalog.meta.read().is_suspended(&tenant);
    TenantInfo { suspended, tenant }
}

pub async fn tenant(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(tenant): Path<String>,
) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    ok(tenant_info(&app, tenant), started)
}

async fn set_suspended(app: AppState, ctx: Ctx, tenant: String, suspended: bool) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    app.catalog
        .submit(MetaRequest::SetTenantSuspended {
            tenant: tenant.clone(),
            suspended,
        })
        .await?;
    tracing::info!(%tenant, suspended, "tenant suspension changed");
    ok(tenant_info(&app, tenant), started)
}

pub async fn suspend(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(tenant): Path<String>,
) -> Reply {
    set_suspended(app, ctx, tenant, true).await
}

pub async fn resume(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(tenant): Path<String>,
) -> Reply {
    set_suspended(app, ctx, tenant, false).await
}

pub async fn quota(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(tenant): Path<String>,
) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    let quota = app.router.quotas.admission.quota(&tenant);
    ok(QuotaView::from(quota), started)
}

/// Changes a tenant's quota: absent fields keep their value, `null` is unlimited. Stored in
/// the metadata, so it survives restarts.
pub async fn set_quota(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(tenant): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    let bytes = body.map_err(|r| bad(format!("Format error in JSON body: {}", r.body_text())))?;
    // an object, never serde's sequence form of a struct
    body_object(&body_json(Ok(bytes.clone()))?)?;
    let patch = quota_patch(&bytes)?;
    let quota = app
        .router
        .quotas
        .admission
        .quota(&tenant)
        .apply_patch(&patch)?;
    app.catalog
        .submit(MetaRequest::SetTenantQuota {
            tenant: tenant.clone(),
            quota: Some(quota.clone()),
        })
        .await?;
    app.router.quotas.follow(&app.catalog.meta.read())?;
    tracing::info!(%tenant, ?quota, "tenant quota changed");
    ok(QuotaView::from(quota), started)
}

pub async fn usage(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(tenant): Path<String>,
) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    let stored = Quotas::storage_of(&app.catalog.meta.read(), &app.catalog.shards, &tenant);
    let admission = &app.router.quotas.admission;
    admission.record_storage(&tenant, stored);
    let queue_depth = app.router.quotas.scheduler.queue_depth(&tenant);
    ok(
        UsageView::new(admission.usage(&tenant), queue_depth),
        started,
    )
}

/// Every replica of a collection's shards, as the replicas report themselves (manage rights).
pub async fn replicas(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    let collection = app.catalog.meta.read().collection(&name)?.clone();
    let mut shards = Vec::new();
    for s in collection.shards.values() {
        let statuses = app
            .router
            .replication
            .replica_statuses(collection.uid, s)
            .await;
        let replicas = s
            .replicas
            .iter()
            .map(|r| {
                let status = statuses.get(&r.node).copied().flatten();
                ReplicaView {
                    peer_id: r.node,
                    state: format!("{:?}", r.state),
                    points_count: status.map(|s| s.points),
                    last_seq: status.map(|s| s.last_seq),
                    digest: status.map(|s| format!("{:016x}", s.digest)),
                }
            })
            .collect();
        shards.push(ShardReplicasView {
            shard_id: s.id,
            shard_key: s.key.clone().map(KeyJson),
            epoch: s.epoch,
            primary: s.primary(),
            replicas,
        });
    }
    ok(
        ReplicasView {
            collection: name,
            shards,
        },
        started,
    )
}

/// Moves shard replicas from the most loaded reachable nodes onto the least loaded ones (a node
/// that joined empty), at most `max_moves` at a time; answers the plan, each move started (or
/// refused), or only planned with `dry_run` (manage rights).
pub async fn rebalance(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    let (max_moves, dry_run) = rebalance_request(body_object(&body_json(body)?)?)?;
    let moves = app.router.replication.rebalance(max_moves, dry_run).await?;
    tracing::info!(
        moves = moves.len(),
        max_moves,
        dry_run,
        "rebalance requested"
    );
    ok(RebalanceView::new(dry_run, moves), started)
}
