//! Service endpoints: the banner, health and readiness (public, as in Qdrant), Prometheus
//! metrics, the cluster status and peer removal.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tessera_cluster::Error;

use super::json::service::{Banner, ClusterStatus, ConsensusThreadStatus, Peer, RaftInfo};
use super::json::{Empty, bad};
use super::{ApiError, AppState, QDRANT_API_VERSION, Reply, ok, query_flag};
use crate::access;
use crate::router::Ctx;

/// The service's title, in the banner and the gRPC health check.
pub const TITLE: &str = "tessera - multi-tenant vector search";

pub async fn root() -> Response {
    axum::Json(Banner {
        commit: option_env!("TESSERA_COMMIT").unwrap_or("unknown"),
        tessera_version: env!("CARGO_PKG_VERSION"),
        title: TITLE,
        version: QDRANT_API_VERSION,
    })
    .into_response()
}

pub async fn health() -> &'static str {
    "healthz check passed"
}

/// Ready when this node can route: on a cluster member, once it knows the metadata leader and
/// has applied the log up to what it had committed (a restarted node replays first).
pub async fn ready(State(app): State<AppState>) -> Response {
    if let Some(raft) = app.catalog.meta.raft() {
        let m = raft.metrics();
        if m.leader.is_none() || m.applied_index.unwrap_or(0) < m.committed_index {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: joining the metadata group",
            )
                .into_response();
        }
    }
    "all shards are ready".into_response()
}

pub async fn metrics(State(app): State<AppState>, Extension(ctx): Extension<Ctx>) -> Response {
    if let Err(e) = access::check_global_read(&ctx.principal) {
        return ApiError(e).into_response();
    }
    match &app.prom {
        Some(prom) => prom.render().into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed").into_response(),
    }
}

pub async fn cluster(State(app): State<AppState>, Extension(ctx): Extension<Ctx>) -> Reply {
    let started = Instant::now();
    access::check_global_read(&ctx.principal)?;
    let me = app.catalog.node_id;
    let status = match app.catalog.meta.raft() {
        None => {
            let applied = app.catalog.meta.read().applied;
            let peer = Peer {
                p2p: None,
                reachable: None,
                uri: format!("http://{}/", app.catalog.config.http_addr),
                voter: None,
            };
            ClusterStatus {
                consensus_thread_status: ConsensusThreadStatus {
                    consensus_thread_status: "working",
                    last_update: "1970-01-01T00:00:00Z".into(),
                },
                message_send_failures: Empty {},
                peer_id: me,
                peers: BTreeMap::from([(me.to_string(), peer)]),
                raft_info: RaftInfo {
                    applied: None,
                    commit: applied,
                    is_voter: true,
                    leader: Some(me),
                    pending_operations: 0,
                    role: "Leader".into(),
                    term: 1,
                },
                status: "enabled",
            }
        }
        Some(raft) => {
            let m = raft.metrics();
            let peers = m
                .nodes
                .iter()
                .map(|(id, node)| {
                    let down = app.catalog.link().is_some_and(|l| l.check_up(*id).is_err());
                    let peer = Peer {
                        p2p: Some(node.p2p_addr.clone()),
                        reachable: Some(!down),
                        uri: format!("http://{}/", node.http_addr),
                        voter: Some(m.voters.contains(id)),
                    };
                    (id.to_string(), peer)
                })
                .collect();
            ClusterStatus {
                consensus_thread_status: ConsensusThreadStatus {
                    consensus_thread_status: "working",
                    last_update: crate::audit::now_rfc3339(),
                },
                message_send_failures: Empty {},
                peer_id: me,
                peers,
                raft_info: RaftInfo {
                    applied: Some(m.applied_index),
                    commit: m.committed_index,
                    is_voter: m.voters.contains(&me),
                    leader: m.leader,
                    pending_operations: m
                        .last_log_index
                        .unwrap_or(0)
                        .saturating_sub(m.applied_index.unwrap_or(0)),
                    role: format!("{:?}", m.role),
                    term: m.term,
                },
                status: "enabled",
            }
        }
    };
    ok(status, started)
}

/// Removes a peer from the cluster (manage rights). A peer that still holds replicas is refused
/// unless `force=true`: its shards would be lost.
pub async fn remove_peer(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(peer): Path<u64>,
    RawQuery(query): RawQuery,
) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    let raft = app
        .catalog
        .meta
        .raft()
        .ok_or_else(|| bad("Bad request: this node is not in a cluster"))?;
    if !raft.metrics().nodes.contains_key(&peer) {
        return Err(Error::not_found(format!("Peer {peer} not found")).into());
    }
    let holds = app.catalog.meta.read().collections.values().any(|c| {
        c.shards
            .values()
            .any(|shard| shard.replicas.iter().any(|r| r.node == peer))
    });
    if holds && !query_flag(&query, "force")? {
        return Err(bad(format!(
            "Bad request: peer {peer} holds replicas; move or delete them first, or pass force=true"
        ))
        .into());
    }
    let (leader, _) = raft
        .leader()
        .ok_or_else(|| Error::unavailable("no metadata leader"))?;
    let link = app
        .catalog
        .link()
        .ok_or_else(|| Error::unavailable("cluster link not ready"))?;
    link.remove_peer(leader, peer).await?;
    ok(true, started)
}
