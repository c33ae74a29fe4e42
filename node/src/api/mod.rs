//! The HTTP API: a compatible subset of Qdrant's REST API (same paths, bodies, envelopes, error
//! body and status codes) plus health and metrics.

pub mod json;

use std::sync::Arc;
use std::time::Instant;

use axum::Router as Http;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, FromRequestParts, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Map, Value, json};
use tessera_cluster::meta::{CollectionParams, HnswParams, ShardingMethod};
use tessera_cluster::request::MetaRequest;
use tessera_cluster::{Error, ErrorKind, Result};
use tessera_shard::actor::{NewPoint, Selector};
use tessera_shard::priority::{self, Class};
use tessera_shard::store::SearchParams;

use self::json::*;
use crate::access;
use crate::audit::{AuditEntry, AuditLog, RequestNote};
use crate::auth::{AuthError, AuthMethod, Authenticator, Credential, Principal};
use crate::catalog::Catalog;
use crate::quota::{Op as QuotaOp, Outcome as QuotaOutcome, QuotaPatch, Quotas};
use crate::router::{Ctx, KeySelector, PointsWrite, Router};

/// The Qdrant REST API level tessera implements.
pub const QDRANT_API_VERSION: &str = "1.19.0";
/// Default search ef when the request names none.
pub const DEFAULT_EF: usize = tessera_shard::DEFAULT_EF;

#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub router: Arc<Router>,
    pub prom: Option<PrometheusHandle>,
    pub auth: Arc<Authenticator>,
    pub audit: Arc<AuditLog>,
    pub revocations: Arc<crate::revocation::Revocations>,
}

pub fn http(state: AppState) -> Http {
    let limit = state.catalog.config.max_body_bytes;
    // Health and the service banner answer without credentials, as in Qdrant.
    let public = Http::new()
        .route("/", get(root))
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(ready));
    let api = Http::new()
        .route("/metrics", get(metrics_text))
        .route("/cluster", get(cluster))
        .route("/cluster/peer/{id}", axum::routing::delete(remove_peer))
        .route("/collections", get(list_collections))
        .route(
            "/collections/{c}",
            put(create_collection)
                .get(get_collection)
                .delete(delete_collection)
                .patch(update_collection),
        )
        .route("/collections/{c}/exists", get(collection_exists))
        .route("/collections/{c}/cluster", get(collection_cluster))
        .route(
            "/collections/{c}/shards",
            put(create_shard_key).get(list_shard_keys),
        )
        .route("/collections/{c}/shards/delete", post(delete_shard_key))
        .route("/collections/{c}/index", put(create_index))
        .route(
            "/collections/{c}/index/{field}",
            axum::routing::delete(delete_index),
        )
        .route("/collections/{c}/points", put(upsert).post(retrieve))
        .route("/collections/{c}/points/{id}", get(get_point))
        .route("/collections/{c}/points/delete", post(delete_points))
        .route("/collections/{c}/points/scroll", post(scroll))
        .route("/collections/{c}/points/count", post(count))
        .route("/collections/{c}/points/query", post(query))
        .route("/collections/{c}/points/query/batch", post(query_batch))
        .route("/collections/{c}/points/search", post(search))
        .route(
            "/collections/{c}/points/payload",
            post(set_payload).put(overwrite_payload),
        )
        .route(
            "/collections/{c}/points/payload/delete",
            post(delete_payload),
        )
        .route("/collections/{c}/points/payload/clear", post(clear_payload))
        .route("/admin/tenants/{t}", get(get_tenant))
        .route("/admin/tenants/{t}/suspend", post(suspend_tenant))
        .route("/admin/tenants/{t}/resume", post(resume_tenant))
        .route("/admin/tenants/{t}/quota", get(get_quota).put(set_quota))
        .route("/admin/tenants/{t}/usage", get(tenant_usage))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .route_layer(axum::middleware::from_fn(hold_refusal));
    public
        .merge(api)
        .route_layer(axum::middleware::from_fn(track))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Counts every request by route and status class and records its latency.
async fn track(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    let class = match status.as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let secs = started.elapsed().as_secs_f64();
    metrics::counter!("tessera_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => class).increment(1);
    metrics::histogram!("tessera_http_request_seconds", "route" => route.clone(), "method" => method.clone()).record(secs);
    tracing::debug!(%method, %route, status = status.as_u16(), ms = secs * 1000.0, "http request");
    resp
}

/// The longest a 429 is held before it is sent.
const REFUSAL_HOLD_MS: u64 = 250;

/// Holds a 429 for up to 250 ms (never past its retry time) before sending it, and counts its
/// Retry-After from then. A client that honours Retry-After comes back exactly when it would
/// have; one that retries at once, as a flood does, is slowed to one attempt per hold per
/// connection instead of one per round trip: each refused upsert still sends its whole body
/// before it reads the answer, and those bytes are CPU the other tenants share. A held refusal
/// costs a sleeping task, nothing more.
async fn hold_refusal(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    if resp.status() != StatusCode::TOO_MANY_REQUESTS {
        return resp;
    }
    let Some(ms) = resp
        .headers()
        .get(RETRY_AFTER_MS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return resp;
    };
    let hold = ms.min(REFUSAL_HOLD_MS);
    tokio::time::sleep(std::time::Duration::from_millis(hold)).await;
    set_retry_after(resp.headers_mut(), ms - hold);
    resp
}

/// The header giving Retry-After in milliseconds (Retry-After counts whole seconds).
const RETRY_AFTER_MS: &str = "retry-after-ms";

/// Sets Retry-After (whole seconds, at least 1) and Retry-After-Ms (at least 1).
fn set_retry_after(headers: &mut axum::http::HeaderMap, ms: u64) {
    let secs = ms.div_ceil(1000).max(1);
    headers.insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    headers.insert(RETRY_AFTER_MS, header::HeaderValue::from(ms.max(1)));
}

/// The name of an operation in the audit log.
fn operation(method: &str, route: &str) -> &'static str {
    match (method, route) {
        ("GET", "/metrics") => "metrics",
        ("GET", "/cluster") => "cluster.info",
        ("DELETE", "/cluster/peer/{id}") => "cluster.remove_peer",
        ("GET", "/collections") => "collections.list",
        ("PUT", "/collections/{c}") => "collection.create",
        ("GET", "/collections/{c}") => "collection.info",
        ("DELETE", "/collections/{c}") => "collection.delete",
        ("PATCH", "/collections/{c}") => "collection.update",
        ("GET", "/collections/{c}/exists") => "collection.exists",
        ("GET", "/collections/{c}/cluster") => "collection.cluster",
        ("PUT", "/collections/{c}/shards") => "shard_key.create",
        ("GET", "/collections/{c}/shards") => "shard_key.list",
        ("POST", "/collections/{c}/shards/delete") => "shard_key.delete",
        ("PUT", "/collections/{c}/index") => "payload_index.create",
        ("DELETE", "/collections/{c}/index/{field}") => "payload_index.delete",
        ("PUT", "/collections/{c}/points") => "points.upsert",
        ("POST", "/collections/{c}/points") => "points.retrieve",
        ("GET", "/collections/{c}/points/{id}") => "points.get",
        ("POST", "/collections/{c}/points/delete") => "points.delete",
        ("POST", "/collections/{c}/points/scroll") => "points.scroll",
        ("POST", "/collections/{c}/points/count") => "points.count",
        ("POST", "/collections/{c}/points/query") => "points.query",
        ("POST", "/collections/{c}/points/query/batch") => "points.query_batch",
        ("POST", "/collections/{c}/points/search") => "points.search",
        ("POST", "/collections/{c}/points/payload") => "payload.set",
        ("PUT", "/collections/{c}/points/payload") => "payload.overwrite",
        ("POST", "/collections/{c}/points/payload/delete") => "payload.delete",
        ("POST", "/collections/{c}/points/payload/clear") => "payload.clear",
        ("GET", "/admin/tenants/{t}") => "tenant.info",
        ("POST", "/admin/tenants/{t}/suspend") => "tenant.suspend",
        ("POST", "/admin/tenants/{t}/resume") => "tenant.resume",
        ("GET", "/admin/tenants/{t}/quota") => "tenant.quota",
        ("PUT", "/admin/tenants/{t}/quota") => "tenant.set_quota",
        ("GET", "/admin/tenants/{t}/usage") => "tenant.usage",
        _ => "other",
    }
}

/// The quota class of an operation: reads and searches take the read bucket (and a concurrent
/// search place), writes the write buckets; other operations are not metered.
fn op_kind(op: &str) -> Option<QuotaOp> {
    match op {
        "points.query" | "points.query_batch" | "points.search" => Some(QuotaOp::Search),
        "points.retrieve" | "points.get" | "points.scroll" | "points.count" => Some(QuotaOp::Read),
        "points.upsert" | "points.delete" | "payload.set" | "payload.overwrite"
        | "payload.delete" | "payload.clear" => Some(QuotaOp::Write),
        _ => None,
    }
}

fn outcome_of(status: StatusCode) -> QuotaOutcome {
    match status.as_u16() {
        200..=299 => QuotaOutcome::Ok,
        429 => QuotaOutcome::Throttled,
        413 | 507 => QuotaOutcome::Rejected,
        _ => QuotaOutcome::Error,
    }
}

/// Admits a metered request of a tenant known from its credential, before its body is parsed
/// (a rejection costs no JSON parse). Requests attributed by the shard key they name are
/// admitted by the router instead.
async fn admit_early(
    s: &AppState,
    ctx: &Ctx,
    kind: QuotaOp,
    req: axum::extract::Request,
) -> std::result::Result<axum::extract::Request, Error> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (req, len) = match (kind, declared) {
        (QuotaOp::Write, None) => {
            // a chunked body: its size is known only once read (bounded by the body limit)
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, s.catalog.config.max_body_bytes)
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorKind::PayloadTooLarge,
                        "Payload too large: request body is over the configured limit",
                    )
                })?;
            let len = bytes.len() as u64;
            (
                axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes)),
                len,
            )
        }
        (_, len) => (req, len.unwrap_or(0)),
    };
    ctx.note.set_body_bytes(len);
    if let Some(t) = &ctx.principal.tenant {
        let adm = &s.router.quotas.admission;
        let permit = match kind {
            QuotaOp::Write => {
                adm.admit_write(t, len)?;
                None
            }
            QuotaOp::Read | QuotaOp::Search => Some(adm.admit_read(t)?),
        };
        ctx.note.admit(t, permit);
    }
    Ok(req)
}

fn method_name(m: &AuthMethod) -> &'static str {
    match m {
        AuthMethod::Unauthenticated => "none",
        AuthMethod::ApiKey => "api_key",
        AuthMethod::ReadOnlyApiKey => "read_only_api_key",
        AuthMethod::Jwt { .. } => "jwt",
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Authenticates every API request (health and `/` excepted): the credential becomes the
/// request's [`Ctx`], or the request is answered 401 (missing or invalid credential), 404 (a
/// tenant outside the token's), 400 (a tenant must be chosen) or 403 (tenant suspended). Writes
/// the request's audit line.
async fn authenticate(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let op = operation(req.method().as_str(), &route);
    // the collection the route names, percent-decoded by axum as for the handlers
    let (mut parts, body) = req.into_parts();
    let collection = axum::extract::RawPathParams::from_request_parts(&mut parts, &s)
        .await
        .ok()
        .and_then(|p| p.iter().find(|(k, _)| *k == "c").map(|(_, v)| v.to_owned()));
    let req = axum::extract::Request::from_parts(parts, body);
    let ctx = match authenticate_headers(&s, req.headers(), collection.as_deref()).await {
        Ok(p) => Ctx {
            principal: Arc::new(p),
            note: Arc::new(RequestNote::default()),
        },
        Err(e) => {
            let resp = ApiError(e).into_response();
            write_audit(&s, op, collection.as_deref(), None, resp.status());
            return resp;
        }
    };
    let kind = op_kind(op);
    let started = Instant::now();
    let admitted = match kind {
        Some(kind) => admit_early(&s, &ctx, kind, req).await,
        None => Ok(req),
    };
    let resp = match admitted {
        Ok(mut req) => {
            req.extensions_mut().insert(ctx.clone());
            next.run(req).await
        }
        Err(e) => ApiError(e).into_response(),
    };
    if let Some(kind) = kind
        && let Some(t) = ctx.principal.tenant.clone().or_else(|| ctx.note.tenant())
    {
        s.router.quotas.metrics.request(
            &t,
            kind,
            outcome_of(resp.status()),
            Some(started.elapsed()),
        );
    }
    write_audit(&s, op, collection.as_deref(), Some(&ctx), resp.status());
    resp
}

/// The audit line of one request: `ctx` is None when authentication refused it.
fn write_audit(
    s: &AppState,
    op: &str,
    collection: Option<&str>,
    ctx: Option<&Ctx>,
    status: StatusCode,
) {
    if !s.audit.enabled() {
        return;
    }
    let denied = ctx.is_none_or(|c| c.note.denied())
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN;
    let outcome = if denied {
        "denied"
    } else if status.is_success() {
        "ok"
    } else {
        "error"
    };
    let p = ctx.map(|c| &c.principal);
    let tenant = ctx.and_then(|c| c.principal.tenant.clone().or_else(|| c.note.tenant()));
    let keys = ctx.and_then(|c| c.note.shard_keys());
    s.audit.write(&AuditEntry {
        time: crate::audit::now_rfc3339(),
        tenant: tenant.as_deref(),
        subject: p.and_then(|p| p.subject.as_deref()),
        auth: p.map(|p| method_name(&p.method)).unwrap_or("refused"),
        operation: op,
        collection,
        shard_key: keys.as_deref(),
        outcome,
        status: status.as_u16(),
    });
}

/// The principal of a request's credential headers, revocation and suspension checked.
async fn authenticate_headers(
    s: &AppState,
    headers: &axum::http::HeaderMap,
    collection: Option<&str>,
) -> Result<Principal> {
    let text = |name: &str| -> Result<Option<&str>> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v.to_str().map(Some).map_err(|_| {
                Error::new(
                    ErrorKind::Unauthenticated,
                    format!("invalid credentials: the {name} header is not text"),
                )
            }),
        }
    };
    let credential =
        Credential::from_headers(text("api-key")?, text(header::AUTHORIZATION.as_str())?);
    let tenant_header = text("x-tenant-id")?;
    let principal = s
        .auth
        .authenticate(credential, tenant_header, unix_now())
        .map_err(|e| match e {
            AuthError::Missing | AuthError::Invalid(_) => {
                Error::new(ErrorKind::Unauthenticated, e.to_string())
            }
            AuthError::TenantNotAllowed => match collection {
                Some(c) => access::missing_collection(c),
                None => Error::not_found("Not found"),
            },
            AuthError::TenantRequired => Error::bad_request(e.to_string()),
        })?;
    if let Some(ve) = &principal.value_exists
        && !s.revocations.holds(&s.router, ve).await
    {
        return Err(Error::new(
            ErrorKind::Unauthenticated,
            "invalid credentials: the token was revoked (value_exists does not hold)",
        ));
    }
    if let Some(t) = &principal.tenant
        && s.catalog.meta.read().is_suspended(t)
    {
        return Err(Error::new(ErrorKind::Forbidden, "tenant suspended"));
    }
    Ok(principal)
}

// ---------- envelopes and errors ----------

pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "request failed");
        }
        let body = json!({"status": {"error": self.0.message}, "time": 0.0});
        let mut resp = (status, axum::Json(body)).into_response();
        if let ErrorKind::TooManyRequests { retry_after_ms } = self.0.kind {
            set_retry_after(resp.headers_mut(), retry_after_ms);
        }
        resp
    }
}

type Reply = std::result::Result<Response, ApiError>;

fn ok(result: Value, started: Instant) -> Reply {
    Ok(axum::Json(json!({
        "result": result,
        "status": "ok",
        "time": started.elapsed().as_secs_f64(),
    }))
    .into_response())
}

fn body_json(body: std::result::Result<Bytes, BytesRejection>) -> Result<Value> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::new(
                ErrorKind::PayloadTooLarge,
                "Payload too large: request body is over the configured limit",
            )
        } else {
            bad(format!("Format error in JSON body: {}", r.body_text()))
        }
    })?;
    if bytes.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("Format error in JSON body: {e}")))
}

fn query_flag(q: &Option<String>, name: &str) -> Result<bool> {
    let Some(q) = q else { return Ok(false) };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
        if k == name {
            return match v {
                "true" | "1" | "" => Ok(true),
                "false" | "0" => Ok(false),
                other => Err(bad(format!("Bad query parameter {name}={other}"))),
            };
        }
    }
    Ok(false)
}

fn update_result(seq: u64, wait: bool, started: Instant) -> Reply {
    ok(
        json!({"operation_id": seq, "status": if wait { "completed" } else { "acknowledged" }}),
        started,
    )
}

async fn not_found() -> ApiError {
    ApiError(Error::not_found("Not found"))
}

// ---------- service ----------

async fn root() -> Response {
    axum::Json(json!({
        "title": "tessera - multi-tenant vector search",
        "version": QDRANT_API_VERSION,
        "commit": option_env!("TESSERA_COMMIT").unwrap_or("unknown"),
        "tessera_version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

async fn health() -> &'static str {
    "healthz check passed"
}

/// Ready when this node can route: on a cluster member, once it knows the metadata leader and
/// has applied the log up to what it had committed (a restarted node replays first).
async fn ready(State(s): State<AppState>) -> Response {
    if let Some(raft) = s.catalog.meta.raft() {
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

async fn metrics_text(State(s): State<AppState>, Extension(ctx): Extension<Ctx>) -> Response {
    if let Err(e) = access::check_global_read(&ctx.principal) {
        return ApiError(e).into_response();
    }
    match &s.prom {
        Some(p) => p.render().into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed").into_response(),
    }
}

async fn cluster(State(s): State<AppState>, Extension(ctx): Extension<Ctx>) -> Reply {
    let t = Instant::now();
    access::check_global_read(&ctx.principal)?;
    let me = s.catalog.node_id;
    let status = match s.catalog.meta.raft() {
        None => {
            let applied = s.catalog.meta.read().applied;
            json!({
                "status": "enabled",
                "peer_id": me,
                "peers": {me.to_string(): {"uri": format!("http://{}/", s.catalog.config.http_addr)}},
                "raft_info": {"term": 1, "commit": applied, "pending_operations": 0, "leader": me, "role": "Leader", "is_voter": true},
                "consensus_thread_status": {"consensus_thread_status": "working", "last_update": "1970-01-01T00:00:00Z"},
                "message_send_failures": {},
            })
        }
        Some(raft) => {
            let m = raft.metrics();
            let peers: Map<String, Value> = m
                .nodes
                .iter()
                .map(|(id, n)| {
                    let down = s.catalog.link().is_some_and(|l| l.check_up(*id).is_err());
                    (
                        id.to_string(),
                        json!({"uri": format!("http://{}/", n.http_addr), "p2p": n.p2p_addr,
                               "voter": m.voters.contains(id), "reachable": !down}),
                    )
                })
                .collect();
            json!({
                "status": "enabled",
                "peer_id": me,
                "peers": peers,
                "raft_info": {
                    "term": m.term,
                    "commit": m.committed_index,
                    "applied": m.applied_index,
                    "pending_operations": m.last_log_index.unwrap_or(0).saturating_sub(m.applied_index.unwrap_or(0)),
                    "leader": m.leader,
                    "role": format!("{:?}", m.role),
                    "is_voter": m.voters.contains(&me),
                },
                "consensus_thread_status": {"consensus_thread_status": "working", "last_update": crate::audit::now_rfc3339()},
                "message_send_failures": {},
            })
        }
    };
    ok(status, t)
}

/// Removes a peer from the cluster (manage rights). A peer that still holds replicas is refused
/// unless `force=true`: its shards would be lost.
async fn remove_peer(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<u64>,
    RawQuery(q): RawQuery,
) -> Reply {
    let t = Instant::now();
    access::check_manage(&ctx.principal)?;
    let raft = s
        .catalog
        .meta
        .raft()
        .ok_or_else(|| bad("Bad request: this node is not in a cluster"))?;
    if !raft.metrics().nodes.contains_key(&id) {
        return Err(Error::not_found(format!("Peer {id} not found")).into());
    }
    let holds = s.catalog.meta.read().collections.values().any(|c| {
        c.shards
            .values()
            .any(|sh| sh.replicas.iter().any(|r| r.node == id))
    });
    if holds && !query_flag(&q, "force")? {
        return Err(bad(format!(
            "Bad request: peer {id} holds replicas; move or delete them first, or pass force=true"
        ))
        .into());
    }
    let (leader, _) = raft
        .leader()
        .ok_or_else(|| Error::unavailable("no metadata leader"))?;
    let link = s
        .catalog
        .link()
        .ok_or_else(|| Error::unavailable("cluster link not ready"))?;
    link.remove_peer(leader, id).await?;
    ok(json!(true), t)
}

// ---------- collections ----------

async fn list_collections(State(s): State<AppState>, Extension(ctx): Extension<Ctx>) -> Reply {
    let t = Instant::now();
    let names: Vec<Value> = s
        .catalog
        .meta
        .read()
        .collections
        .values()
        .filter(|c| access::visible(&ctx.principal, c))
        .map(|c| json!({"name": c.name}))
        .collect();
    ok(json!({"collections": names}), t)
}

async fn create_collection(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let t = Instant::now();
    access::check_manage(&ctx.principal)?;
    let v = body_json(body)?;
    let o = obj(&v, "body")?;
    let vectors =
        field(o, "vectors").ok_or_else(|| bad("Format error in JSON body: vectors is required"))?;
    let vo = obj(vectors, "vectors")?;
    let (size, dist) = if vo.contains_key("size") {
        (vo.get("size"), vo.get("distance"))
    } else if vo.len() == 1 && vo.contains_key("") {
        let inner = obj(&vo[""], "vectors")?;
        (inner.get("size"), inner.get("distance"))
    } else {
        return Err(bad(
            "Wrong input: named vectors are not supported; give vectors {size, distance}",
        )
        .into());
    };
    let dim = size
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("Format error in JSON body: vectors.size must be a positive integer"))?;
    let distance = distance(
        dist.ok_or_else(|| bad("Format error in JSON body: vectors.distance is required"))?,
    )?;
    let sharding_method = match field(o, "sharding_method").and_then(Value::as_str) {
        None | Some("auto") => ShardingMethod::Auto,
        Some("custom") => ShardingMethod::Custom,
        Some(other) => {
            return Err(bad(format!("Wrong input: unknown sharding_method {other}")).into());
        }
    };
    let u32_field = |k: &str, d: u32| -> Result<u32> {
        Ok(usize_field(o, k)?
            .map(|n| n.min(u32::MAX as usize) as u32)
            .unwrap_or(d))
    };
    let mut hnsw = HnswParams::default();
    if let Some(h) = field(o, "hnsw_config") {
        let h = obj(h, "hnsw_config")?;
        if let Some(m) = usize_field(h, "m")? {
            hnsw.m = m;
        }
        if let Some(e) = usize_field(h, "ef_construct")? {
            hnsw.ef_construct = e;
        }
        hnsw.payload_m = usize_field(h, "payload_m")?;
        if let Some(f) = usize_field(h, "full_scan_threshold")? {
            hnsw.full_scan_threshold = f;
        }
    }
    let params = CollectionParams {
        dim: dim as usize,
        distance,
        sharding_method,
        shard_number: u32_field("shard_number", 1)?,
        replication_factor: u32_field("replication_factor", 1)?,
        write_consistency_factor: u32_field("write_consistency_factor", 1)?,
        hnsw,
        on_disk_payload: field(o, "on_disk_payload")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    s.catalog
        .submit(MetaRequest::CreateCollection { name, params })
        .await?;
    ok(json!(true), t)
}

async fn update_collection(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let t = Instant::now();
    access::check_manage(&ctx.principal)?;
    let v = body_json(body)?;
    obj(&v, "body")?;
    visible_collection(&s, &ctx, &name, |_| ())?;
    // accepted and ignored: tessera tunes optimizers itself
    ok(json!(true), t)
}

async fn get_collection(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let t = Instant::now();
    let c = visible_collection(&s, &ctx, &name, Clone::clone)?;
    let scope = access::scope(&ctx.principal, &c, &KeySelector::All, access::Need::Read)?;
    let (mut indexed, mut segments, mut all_local) = (0usize, 0usize, true);
    // as Qdrant: yellow while index builds or merges are due on the shards (here: this node's)
    let mut optimizing = false;
    for id in scope.targets.iter().map(|target| &target.shard) {
        match s.catalog.shards.data((c.uid, *id)) {
            Some(d) => {
                let st = d.stats();
                indexed += st.indexed_points;
                segments += st.segments;
                optimizing |= d.due_job().is_some();
            }
            None => all_local = false,
        }
    }
    // the exact count goes through the router: every shard, on whichever node, in the
    // caller's scope (a tenant of a shared collection counts its own points only)
    let points = s.router.count(&ctx, &name, &KeySelector::All, None).await?;
    let mut indexed = json!(indexed);
    if scope.partition.is_some() || !all_local {
        // per-segment figures are known for this node's replicas only
        indexed = Value::Null;
    }
    if scope.partition.is_some() {
        segments = 0;
    }
    let schema: Map<String, Value> = c
        .payload_indexes
        .iter()
        .map(|(k, ix)| {
            let mut params = json!({"type": schema_name(ix.schema)});
            if ix.is_tenant {
                params["is_tenant"] = json!(true);
            }
            (
                k.clone(),
                json!({"data_type": schema_name(ix.schema), "params": params, "points": points}),
            )
        })
        .collect();
    ok(
        json!({
            "status": if optimizing { "yellow" } else { "green" },
            "optimizer_status": "ok",
            "indexed_vectors_count": indexed,
            "points_count": points,
            "segments_count": segments,
            "config": collection_config(&c),
            "payload_schema": schema,
        }),
        t,
    )
}

async fn delete_collection(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let t = Instant::now();
    access::check_manage(&ctx.principal)?;
    let existed = match s
        .catalog
        .submit(MetaRequest::DeleteCollection { name })
        .await
    {
        Ok(_) => true,
        Err(e) if e.kind == ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    ok(json!(existed), t)
}

async fn collection_exists(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let t = Instant::now();
    ok(
        json!({"exists": visible_collection(&s, &ctx, &name, |_| ()).is_ok()}),
        t,
    )
}

async fn collection_cluster(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let t = Instant::now();
    let c = visible_collection(&s, &ctx, &name, Clone::clone)?;
    let scope = access::scope(&ctx.principal, &c, &KeySelector::All, access::Need::Read)?;
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for sh in scope
        .targets
        .iter()
        .filter_map(|target| c.shards.get(&target.shard))
    {
        for r in &sh.replicas {
            let mut e = json!({
                "shard_id": sh.id,
                "shard_key": sh.key.as_ref().map(shard_key_json),
                "state": format!("{:?}", r.state),
            });
            if r.node == s.catalog.node_id {
                if scope.partition.is_none() {
                    let points = s
                        .catalog
                        .shards
                        .data((c.uid, sh.id))
                        .map(|d| d.stats().points)
                        .unwrap_or(0);
                    e["points_count"] = json!(points);
                }
                local.push(e);
            } else {
                e["peer_id"] = json!(r.node);
                remote.push(e);
            }
        }
    }
    ok(
        json!({
            "peer_id": s.catalog.node_id,
            "shard_count": local.len() + remote.len(),
            "local_shards": local,
            "remote_shards": remote,
            "shard_transfers": [],
        }),
        t,
    )
}

async fn create_shard_key(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let t = Instant::now();
    access::check_manage(&ctx.principal)?;
    let v = body_json(body)?;
    let o = obj(&v, "body")?;
    let key = shard_key(
        field(o, "shard_key")
            .ok_or_else(|| bad("Format error in JSON body: shard_key is required"))?,
    )?;
    let shards_number = usize_field(o, "shards_number")?.map(|n| n.min(u32::MAX as usize) as u32);
    let rf = usize_field(o, "replication_factor")?.map(|n| n.min(u32::MAX as usize) as u32);
    let placement = match field(o, "placement") {
        None => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|x| {
                    x.as_u64().ok_or_else(|| {
                        bad("Format error in JSON body: placement must list peer ids")
                    })
                })
                .collect::<Result<Vec<u64>>>()?,
        ),
        Some(_) => {
            return Err(bad("Format error in JSON body: placement must list peer ids").into());
        }
    };
    s.catalog
        .submit(MetaRequest::CreateShardKey {
            collection: name,
            key,
            shards_number,
            replication_factor: rf,
            placement,
        })
        .await?;
    ok(json!(true), t)
}

async fn delete_shard_key(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let t = Instant::now();
    access::check_manage(&ctx.principal)?;
    let v = body_json(body)?;
    let o = obj(&v, "body")?;
    let key = shard_key(
        field(o, "shard_key")
            .ok_or_else(|| bad("Format error in JSON body: shard_key is required"))?,
    )?;
    s.catalog
        .submit(MetaRequest::DeleteShardKey {
            collection: name,
            key,
        })
        .await?;
    ok(json!(true), t)
}

async fn list_shard_keys(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let t = Instant::now();
    let keys: Vec<Value> =
        visible_collection(&s, &ctx, &name, |c| access::visible_keys(&ctx.principal, c))?
            .iter()
            .map(|k| json!({"key": shard_key_json(k)}))
            .collect();
    ok(json!({"shard_keys": keys}), t)
}

async fn create_index(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let t = Instant::now();
    access::check_manage(&ctx.principal)?;
    let v = body_json(body)?;
    let (field_name, index) = payload_index(obj(&v, "body")?)?;
    let seq = s
        .catalog
        .submit(MetaRequest::CreatePayloadIndex {
            collection: name,
            field: field_name,
            index,
        })
        .await?;
    update_result(seq, query_flag(&q, "wait")?, t)
}

async fn delete_index(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((name, field_name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Reply {
    let t = Instant::now();
    access::check_manage(&ctx.principal)?;
    let seq = s
        .catalog
        .submit(MetaRequest::DeletePayloadIndex {
            collection: name,
            field: field_name,
        })
        .await?;
    update_result(seq, query_flag(&q, "wait")?, t)
}

// ---------- points ----------

/// Runs `f` on a collection the caller may see; any other is answered as missing.
fn visible_collection<T>(
    s: &AppState,
    ctx: &Ctx,
    name: &str,
    f: impl FnOnce(&tessera_cluster::meta::CollectionMeta) -> T,
) -> Result<T> {
    let state = s.catalog.meta.read();
    match state.collections.get(name) {
        Some(c) if access::visible(&ctx.principal, c) => Ok(f(c)),
        _ => Err(access::missing_collection(name)),
    }
}

async fn upsert(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let t = Instant::now();
    let wait = query_flag(&q, "wait")?;
    // A large batch is parsed on the ingest pool: parsing megabytes of JSON on the async
    // workers would hold up every other tenant's requests behind it, and the ingest pool runs
    // below searches' CPU priority.
    let large = body.as_ref().is_ok_and(|b| b.len() > PARSE_INLINE_BYTES);
    let parse = {
        let (s, ctx, name) = (s.clone(), ctx.clone(), name.clone());
        move || parse_upsert(&s, &ctx, &name, body)
    };
    let (sel, points) = if large {
        priority::run(Class::Ingest, parse).await??
    } else {
        parse()?
    };
    let seq = s.router.upsert(&ctx, &name, &sel, points).await?;
    update_result(seq, wait, t)
}

/// Bodies up to this size are parsed on the async worker; larger ones on the ingest pool.
const PARSE_INLINE_BYTES: usize = 32 * 1024;

/// The shard keys and points of an upsert body, checked against the collection.
fn parse_upsert(
    s: &AppState,
    ctx: &Ctx,
    name: &str,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(KeySelector, Vec<NewPoint>)> {
    let v = body_json(body)?;
    let o = obj(&v, "body")?;
    let dim = visible_collection(s, ctx, name, |c| c.params.dim)?;
    let sel = key_selector(o)?;
    let mut points = Vec::new();
    if let Some(list) = field(o, "points") {
        let list = list
            .as_array()
            .ok_or_else(|| bad("Format error in JSON body: points must be a list"))?;
        for p in list {
            let po = obj(p, "point")?;
            let id = point_id(
                po.get("id")
                    .ok_or_else(|| bad("Format error in JSON body: point id is required"))?,
            )?;
            let vector = vector(
                po.get("vector")
                    .ok_or_else(|| bad("Format error in JSON body: point vector is required"))?,
            )?;
            check_dim(&vector, dim)?;
            points.push(NewPoint {
                id,
                vector,
                payload: payload(po.get("payload"))?,
            });
        }
    } else if let Some(b) = field(o, "batch") {
        let bo = obj(b, "batch")?;
        let ids = bo
            .get("ids")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("Format error in JSON body: batch.ids must be a list"))?;
        let vectors = bo
            .get("vectors")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("Format error in JSON body: batch.vectors must be a list"))?;
        let payloads = field(bo, "payloads")
            .map(|p| {
                p.as_array()
                    .ok_or_else(|| bad("Format error in JSON body: batch.payloads must be a list"))
            })
            .transpose()?;
        if vectors.len() != ids.len() || payloads.is_some_and(|p| p.len() != ids.len()) {
            return Err(bad(
                "Wrong input: batch ids, vectors and payloads must have the same length",
            ));
        }
        for (i, id) in ids.iter().enumerate() {
            let vector = vector(&vectors[i])?;
            check_dim(&vector, dim)?;
            points.push(NewPoint {
                id: point_id(id)?,
                vector,
                payload: payload(payloads.and_then(|p| p.get(i)))?,
            });
        }
    } else {
        return Err(bad(
            "Format error in JSON body: points or batch is required",
        ));
    }
    let max = s.catalog.config.max_batch_points;
    if points.len() > max {
        return Err(bad(format!(
            "Bad request: a batch may carry at most {max} points, got {}",
            points.len()
        )));
    }
    Ok((sel, points))
}

/// `points` (ids) or `filter` of a points selector body.
fn selector(o: &Map<String, Value>) -> Result<Selector> {
    if let Some(p) = field(o, "points") {
        let ids = p
            .as_array()
            .ok_or_else(|| bad("Format error in JSON body: points must be a list of ids"))?
            .iter()
            .map(point_id)
            .collect::<Result<Vec<_>>>()?;
        return Ok(Selector::Ids(ids));
    }
    if let Some(f) = filter(o)? {
        return Ok(Selector::Filter(f));
    }
    Err(bad(
        "Format error in JSON body: points or filter is required",
    ))
}

/// The writes that select points by ids or filter.
#[derive(Clone, Copy)]
enum SelectedWrite {
    Delete,
    SetPayload,
    OverwritePayload,
    DeletePayload,
    ClearPayload,
}

/// Parses a points-selector write body and applies it to the named shard keys.
async fn selected_write(
    s: AppState,
    ctx: Ctx,
    name: String,
    q: Option<String>,
    body: std::result::Result<Bytes, BytesRejection>,
    kind: SelectedWrite,
) -> Reply {
    let t = Instant::now();
    let v = body_json(body)?;
    let o = obj(&v, "body")?;
    let sel = key_selector(o)?;
    let required_payload = || -> Result<_> {
        payload(Some(field(o, "payload").ok_or_else(|| {
            bad("Format error in JSON body: payload is required")
        })?))
    };
    let write = match kind {
        SelectedWrite::Delete => PointsWrite::Delete,
        SelectedWrite::ClearPayload => PointsWrite::ClearPayload,
        SelectedWrite::SetPayload => {
            let key = field(o, "key")
                .map(|k| {
                    k.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad("Format error in JSON body: key must be a string"))
                })
                .transpose()?;
            PointsWrite::SetPayload {
                payload: required_payload()?,
                key,
            }
        }
        SelectedWrite::OverwritePayload => PointsWrite::OverwritePayload(required_payload()?),
        SelectedWrite::DeletePayload => {
            let not_strings = || bad("Format error in JSON body: keys must be a list of strings");
            let keys: Vec<String> = field(o, "keys")
                .and_then(Value::as_array)
                .ok_or_else(not_strings)?
                .iter()
                .map(|k| k.as_str().map(str::to_string).ok_or_else(not_strings))
                .collect::<Result<_>>()?;
            PointsWrite::DeletePayload(keys)
        }
    };
    let seq = s
        .router
        .write_selected(&ctx, &name, &sel, selector(o)?, write)
        .await?;
    update_result(seq, query_flag(&q, "wait")?, t)
}

macro_rules! selected_write_handler {
    ($name:ident, $kind:expr) => {
        async fn $name(
            State(s): State<AppState>,
            Extension(ctx): Extension<Ctx>,
            Path(name): Path<String>,
            RawQuery(q): RawQuery,
            body: std::result::Result<Bytes, BytesRejection>,
        ) -> Reply {
            selected_write(s, ctx, name, q, body, $kind).await
        }
    };
}

selected_write_handler!(delete_points, SelectedWrite::Delete);
selected_write_handler!(set_payload, SelectedWrite::SetPayload);
selected_write_handler!(overwrite_payload, SelectedWrite::OverwritePayload);
selected_write_handler!(delete_payload, SelectedWrite::DeletePayload);
selected_write_handler!(clear_payload, SelectedWrite::ClearPayload);

async fn retrieve(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let t = Instant::now();
    let v = body_json(body)?;
    let o = obj(&v, "body")?;
    let sel = key_selector(o)?;
    let ids = field(o, "ids")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Format error in JSON body: ids must be a list"))?
        .iter()
        .map(point_id)
        .collect::<Result<Vec<_>>>()?;
    if ids.len() > s.catalog.config.max_limit {
        return Err(bad(format!(
            "Bad request: at most {} ids per request",
            s.catalog.config.max_limit
        ))
        .into());
    }
    let recs = s
        .router
        .retrieve(
            &ctx,
            &name,
            &sel,
            ids,
            with_payload(field(o, "with_payload"), true)?,
            with_vector(field(o, "with_vector"))?,
        )
        .await?;
    ok(Value::Array(recs.into_iter().map(record_json).collect()), t)
}

async fn get_point(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((name, id)): Path<(String, String)>,
) -> Reply {
    let t = Instant::now();
    let pid = match id.parse::<u64>() {
        Ok(n) => tessera_shard::point::PointId::Num(n),
        Err(_) => tessera_shard::point::PointId::from_string(&id),
    };
    let recs = s
        .router
        .retrieve(
            &ctx,
            &name,
            &KeySelector::All,
            vec![pid],
            tessera_shard::store::PayloadSelector::All,
            true,
        )
        .await?;
    let rec = recs
        .into_iter()
        .next()
        .ok_or_else(|| Error::not_found(format!("No point with id {id} found")))?;
    ok(record_json(rec), t)
}

async fn scroll(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let t = Instant::now();
    let v = body_json(body)?;
    let o = obj(&v, "body")?;
    let sel = key_selector(o)?;
    if field(o, "order_by").is_some() {
        return Err(bad("Wrong input: order_by is not supported; scroll pages by point id").into());
    }
    let lim = limit(o, 10, s.catalog.config.max_limit)?;
    let offset = field(o, "offset").map(point_id).transpose()?;
    let (recs, next) = s
        .router
        .scroll(
            &ctx,
            &name,
            &sel,
            offset,
            lim,
            filter(o)?,
            with_payload(field(o, "with_payload"), true)?,
            with_vector(field(o, "with_vector"))?,
        )
        .await?;
    ok(
        json!({
            "points": recs.into_iter().map(record_json).collect::<Vec<_>>(),
            "next_page_offset": next.as_ref().map(point_id_json),
        }),
        t,
    )
}

async fn count(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let t = Instant::now();
    let v = body_json(body)?;
    let o = obj(&v, "body")?;
    let sel = key_selector(o)?;
    let n = s.router.count(&ctx, &name, &sel, filter(o)?).await?;
    ok(json!({"count": n}), t)
}

/// The shared part of query and search: runs a nearest-neighbour search and renders scored points.
async fn nearest(
    s: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
    query: &Value,
) -> Result<Vec<Value>> {
    let sel = key_selector(o)?;
    let (dim, distance) = visible_collection(s, ctx, name, |c| (c.params.dim, c.params.distance))?;
    let max = s.catalog.config.max_limit;
    let lim = limit(o, 10, max)?;
    let offset = usize_field(o, "offset")?.unwrap_or(0);
    if offset > max {
        return Err(bad(format!(
            "Bad request: offset {offset} is over the maximum of {max}"
        )));
    }
    let (vector, exclude) = match query {
        Value::Array(_) => (vector(query)?, None),
        Value::Number(_) | Value::String(_) => {
            let id = point_id(query)?;
            (
                s.router.vector_of(ctx, name, &sel, id.clone()).await?,
                Some(id),
            )
        }
        _ => {
            return Err(bad(
                "Wrong input: query must be a vector, a point id or {\"nearest\": ...}",
            ));
        }
    };
    check_dim(&vector, dim)?;
    let params = field(o, "params").map(|p| obj(p, "params")).transpose()?;
    let ef = params
        .map(|p| usize_field(p, "hnsw_ef"))
        .transpose()?
        .flatten()
        .unwrap_or(DEFAULT_EF);
    let exact = params
        .and_then(|p| p.get("exact"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let threshold = field(o, "score_threshold")
        .map(|v| {
            v.as_f64()
                .ok_or_else(|| bad("Format error in JSON body: score_threshold must be a number"))
        })
        .transpose()?;
    let metric = crate::catalog::metric_of(distance);
    let hits = s
        .router
        .search(
            ctx,
            name,
            &sel,
            SearchParams {
                vector,
                filter: filter(o)?,
                k: lim + offset,
                ef: ef.clamp(1, 100_000),
                exact,
                with_payload: with_payload(field(o, "with_payload"), false)?,
                with_vector: with_vector(field(o, "with_vector"))?,
                exclude,
            },
            offset,
        )
        .await?;
    let higher_better = metric != tessera_shard::Metric::Euclid;
    Ok(hits
        .into_iter()
        .map(|h| (tessera_shard::score_from_distance(metric, h.1.distance), h))
        .filter(|(score, _)| match threshold {
            None => true,
            Some(th) if higher_better => f64::from(*score) >= th,
            Some(th) => f64::from(*score) <= th,
        })
        .map(|(score, (key, h))| {
            let version = h.record.version;
            let mut r = record_json((key, h.record));
            let m = r.as_object_mut().expect("record_json builds an object");
            m.insert("score".into(), json!(score));
            m.insert("version".into(), json!(version));
            r
        })
        .collect())
}

async fn query(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let t = Instant::now();
    let v = body_json(body)?;
    let o = obj(&v, "body")?;
    let points = query_one(&s, &ctx, &name, o).await?;
    ok(json!({"points": points}), t)
}

/// Most queries one batch request may carry.
const MAX_BATCH_QUERIES: usize = 256;

async fn query_batch(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let t = Instant::now();
    let v = body_json(body)?;
    let o = obj(&v, "body")?;
    let searches = field(o, "searches")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Format error in JSON body: searches must be a list"))?;
    if searches.len() > MAX_BATCH_QUERIES {
        return Err(bad(format!(
            "Bad request: at most {MAX_BATCH_QUERIES} queries per batch"
        ))
        .into());
    }
    let mut out = Vec::with_capacity(searches.len());
    for q in searches {
        let points = query_one(&s, &ctx, &name, obj(q, "searches[]")?).await?;
        out.push(json!({"points": points}));
    }
    ok(Value::Array(out), t)
}

async fn query_one(
    s: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<Vec<Value>> {
    if field(o, "prefetch").is_some() {
        return Err(bad("Wrong input: prefetch is not supported"));
    }
    let q = match field(o, "query") {
        None => {
            // no query: Qdrant returns points in id order (a scroll)
            let lim = limit(o, 10, s.catalog.config.max_limit)?;
            let (recs, _) = s
                .router
                .scroll(
                    ctx,
                    name,
                    &key_selector(o)?,
                    None,
                    lim,
                    filter(o)?,
                    with_payload(field(o, "with_payload"), false)?,
                    with_vector(field(o, "with_vector"))?,
                )
                .await?;
            let points: Vec<Value> = recs
                .into_iter()
                .map(|r| {
                    let version = r.1.version;
                    let mut v = record_json(r);
                    v["score"] = json!(1.0);
                    v["version"] = json!(version);
                    v
                })
                .collect();
            return Ok(points);
        }
        Some(Value::Object(m)) if m.contains_key("nearest") => m["nearest"].clone(),
        Some(Value::Object(m)) => {
            let kind = m.keys().next().cloned().unwrap_or_default();
            return Err(bad(format!(
                "Wrong input: query type `{kind}` is not supported"
            )));
        }
        Some(v) => v.clone(),
    };
    nearest(s, ctx, name, o, &q).await
}

async fn search(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let t = Instant::now();
    let v = body_json(body)?;
    let o = obj(&v, "body")?;
    let q = field(o, "vector")
        .ok_or_else(|| bad("Format error in JSON body: vector is required"))?
        .clone();
    if !q.is_array() {
        return Err(bad("Format error in JSON body: vector must be a list of numbers").into());
    }
    let points = nearest(&s, &ctx, &name, o, &q).await?;
    ok(Value::Array(points), t)
}

// ---------- admin: tenants ----------

fn tenant_json(s: &AppState, tenant: &str) -> Value {
    let suspended = s.catalog.meta.read().is_suspended(tenant);
    json!({"tenant": tenant, "suspended": suspended})
}

async fn get_tenant(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(tenant): Path<String>,
) -> Reply {
    let t = Instant::now();
    access::check_manage(&ctx.principal)?;
    ok(tenant_json(&s, &tenant), t)
}

async fn set_suspended(s: AppState, ctx: Ctx, tenant: String, suspended: bool) -> Reply {
    let t = Instant::now();
    access::check_manage(&ctx.principal)?;
    s.catalog
        .submit(MetaRequest::SetTenantSuspended {
            tenant: tenant.clone(),
            suspended,
        })
        .await?;
    tracing::info!(%tenant, suspended, "tenant suspension changed");
    ok(tenant_json(&s, &tenant), t)
}

async fn suspend_tenant(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(tenant): Path<String>,
) -> Reply {
    set_suspended(s, ctx, tenant, true).await
}

async fn resume_tenant(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(tenant): Path<String>,
) -> Reply {
    set_suspended(s, ctx, tenant, false).await
}

async fn get_quota(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(tenant): Path<String>,
) -> Reply {
    let t = Instant::now();
    access::check_manage(&ctx.principal)?;
    let quota = s.router.quotas.admission.quota(&tenant);
    ok(serde_json::to_value(quota).unwrap_or(Value::Null), t)
}

/// Changes a tenant's quota: absent fields keep their value, `null` is unlimited. Stored in
/// the metadata, so it survives restarts.
async fn set_quota(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(tenant): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Reply {
    let t = Instant::now();
    access::check_manage(&ctx.principal)?;
    let bytes = body.map_err(|r| bad(format!("Format error in JSON body: {}", r.body_text())))?;
    // an object, never serde's sequence form of a struct
    obj(&body_json(Ok(bytes.clone()))?, "body")?;
    let patch = QuotaPatch::from_json(&bytes)?;
    let quota = s
        .router
        .quotas
        .admission
        .quota(&tenant)
        .apply_patch(&patch)?;
    s.catalog
        .submit(MetaRequest::SetTenantQuota {
            tenant: tenant.clone(),
            quota: Some(quota.clone()),
        })
        .await?;
    s.router.quotas.follow(&s.catalog.meta.read())?;
    tracing::info!(%tenant, ?quota, "tenant quota changed");
    ok(serde_json::to_value(quota).unwrap_or(Value::Null), t)
}

async fn tenant_usage(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(tenant): Path<String>,
) -> Reply {
    let t = Instant::now();
    access::check_manage(&ctx.principal)?;
    let stored = Quotas::storage_of(&s.catalog.meta.read(), &s.catalog.shards, &tenant);
    let adm = &s.router.quotas.admission;
    adm.record_storage(&tenant, stored);
    let mut usage = serde_json::to_value(adm.usage(&tenant)).unwrap_or(Value::Null);
    usage["queue_depth"] = json!(s.router.quotas.scheduler.queue_depth(&tenant));
    ok(usage, t)
}
