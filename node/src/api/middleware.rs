//! The middlewares every API request passes, outermost first: [`track`] (metrics by route),
//! [`hold_refusal`] (a 429 is held before it is sent), [`authenticate`] (credential to
//! [`Ctx`], early quota admission, the audit line). They learn which operation a request is
//! from the route table ([`Operations`]), never by matching names.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tessera_cluster::{Error, ErrorKind, Result};

use super::AppState;
use super::error::{ApiError, RETRY_AFTER_MS, set_retry_after};
use super::routes::{COLLECTION_PARAM, Operation, Operations};
use crate::access;
use crate::audit::AuditEntry;
use crate::auth::{AuthError, AuthMethod, Credential, Principal};
use crate::quota::{Op as QuotaOp, Outcome as QuotaOutcome};
use crate::router::Ctx;

/// What [`authenticate`] needs: the node and the table's operations.
#[derive(Clone)]
pub struct Edge {
    pub app: AppState,
    pub operations: Arc<Operations>,
}

/// Counts every request by route and status class and records its latency.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|route| route.as_str().to_string())
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
pub async fn hold_refusal(req: Request, next: Next) -> Response {
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
async fn admit_early(app: &AppState, ctx: &Ctx, kind: QuotaOp, req: Request) -> Result<Request> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (req, len) = match (kind, declared) {
        (QuotaOp::Write, None) => {
            // a chunked body: its size is known only once read (bounded by the body limit)
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, app.catalog.config.max_body_bytes)
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorKind::PayloadTooLarge,
                        "Payload too large: request body is over the configured limit",
                    )
                })?;
            let len = bytes.len() as u64;
            (
                Request::from_parts(parts, axum::body::Body::from(bytes)),
                len,
            )
        }
        (_, len) => (req, len.unwrap_or(0)),
    };
    admit_len(app, ctx, kind, len)?;
    Ok(req)
}

/// Admits a metered request of `len` body bytes of a tenant known from its credential (REST
/// and gRPC alike); others are admitted by the router once it knows their tenant.
pub fn admit_len(app: &AppState, ctx: &Ctx, kind: QuotaOp, len: u64) -> Result<()> {
    ctx.note.set_body_bytes(len);
    if let Some(tenant) = &ctx.principal.tenant {
        let adm = &app.router.quotas.admission;
        let permit = match kind {
            QuotaOp::Write => {
                adm.admit_write(tenant, len)?;
                None
            }
            QuotaOp::Read | QuotaOp::Search => Some(adm.admit_read(tenant)?),
        };
        ctx.note.admit(tenant, permit);
    }
    Ok(())
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

/// Authenticates every API request (public routes excepted): the credential becomes the
/// request's [`Ctx`], or the request is answered 401 (missing or invalid credential), 404 (a
/// tenant outside the token's), 400 (a tenant must be chosen) or 403 (tenant suspended). Admits
/// metered requests of token tenants early, and writes the request's audit line.
pub async fn authenticate(State(edge): State<Edge>, req: Request, next: Next) -> Response {
    let app = &edge.app;
    let operation = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|route| edge.operations.get(req.method(), route.as_str()));
    // the collection the route names, percent-decoded by axum as for the handlers
    let (mut parts, body) = req.into_parts();
    let collection = RawPathParams::from_request_parts(&mut parts, app)
        .await
        .ok()
        .and_then(|params| {
            params
                .iter()
                .find(|(name, _)| *name == COLLECTION_PARAM)
                .map(|(_, value)| value.to_owned())
        });
    let req = Request::from_parts(parts, body);
    let ctx = match authenticate_headers(app, req.headers(), collection.as_deref()).await {
        Ok(principal) => Ctx::of(principal),
        Err(e) => {
            let resp = ApiError(e).into_response();
            write_audit(app, operation, collection.as_deref(), None, resp.status());
            return resp;
        }
    };
    let kind = operation.and_then(Operation::quota_class);
    let started = Instant::now();
    let admitted = match kind {
        Some(kind) => admit_early(app, &ctx, kind, req).await,
        None => Ok(req),
    };
    let resp = match admitted {
        Ok(mut req) => {
            req.extensions_mut().insert(ctx.clone());
            match timeout_of(req.uri().query()) {
                Err(e) => ApiError(e).into_response(),
                Ok(None) => next.run(req).await,
                Ok(Some(secs)) => {
                    let limit = std::time::Duration::from_secs(secs);
                    match tokio::time::timeout(limit, next.run(req)).await {
                        Ok(resp) => resp,
                        Err(_) => ApiError(timed_out(secs)).into_response(),
                    }
                }
            }
        }
        Err(e) => ApiError(e).into_response(),
    };
    if let Some(kind) = kind {
        record_request(app, &ctx, kind, resp.status(), started);
    }
    write_audit(
        app,
        operation,
        collection.as_deref(),
        Some(&ctx),
        resp.status(),
    );
    resp
}

/// The `timeout` query parameter (whole seconds, at least 1), as Qdrant's operations take it.
fn timeout_of(query: Option<&str>) -> Result<Option<u64>> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        if let Some(("timeout", v)) = pair.split_once('=') {
            return check_timeout(v.parse().ok()).map(Some);
        }
    }
    Ok(None)
}

/// A request's own timeout, REST's `?timeout=` and gRPC's `timeout` field alike: at least 1 s.
pub fn check_timeout(secs: Option<u64>) -> Result<u64> {
    match secs {
        Some(s) if s >= 1 => Ok(s),
        _ => Err(Error::bad_request(
            "Bad request: timeout must be a whole number of seconds, at least 1",
        )),
    }
}

/// The answer to an operation that ran past the request's timeout (it may still complete, as in
/// Qdrant: a timed-out write is not rolled back).
pub fn timed_out(secs: u64) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("Timeout: the operation did not finish within {secs} s"),
    )
}

/// Counts a metered request in its tenant's figures (REST and gRPC alike).
pub fn record_request(
    app: &AppState,
    ctx: &Ctx,
    kind: QuotaOp,
    status: StatusCode,
    started: Instant,
) {
    if let Some(tenant) = ctx.principal.tenant.clone().or_else(|| ctx.note.tenant()) {
        app.router.quotas.metrics.request(
            &tenant,
            kind,
            outcome_of(status),
            Some(started.elapsed()),
        );
    }
}

/// The audit line of one request: `ctx` is None when authentication refused it.
pub fn write_audit(
    app: &AppState,
    operation: Option<Operation>,
    collection: Option<&str>,
    ctx: Option<&Ctx>,
    status: StatusCode,
) {
    if !app.audit.enabled() {
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
    let principal = ctx.map(|c| &c.principal);
    let tenant = ctx.and_then(|c| c.principal.tenant.clone().or_else(|| c.note.tenant()));
    let keys = ctx.and_then(|c| c.note.shard_keys());
    app.audit.write(&AuditEntry {
        time: crate::audit::now_rfc3339(),
        tenant: tenant.as_deref(),
        subject: principal.and_then(|p| p.subject.as_deref()),
        auth: principal
            .map(|p| method_name(&p.method))
            .unwrap_or("refused"),
        // a method the route does not serve (answered 405)
        operation: operation.map_or("other", Operation::audit_name),
        collection,
        shard_key: keys.as_deref(),
        outcome,
        status: status.as_u16(),
    });
}

/// The principal of a request's credential headers, revocation and suspension checked.
pub async fn authenticate_headers(
    app: &AppState,
    headers: &HeaderMap,
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
    let principal = app
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
        && !app.revocations.holds(&app.router, ve).await
    {
        return Err(Error::new(
            ErrorKind::Unauthenticated,
            "invalid credentials: the token was revoked (value_exists does not hold)",
        ));
    }
    if let Some(tenant) = &principal.tenant
        && app.catalog.meta.read().is_suspended(tenant)
    {
        return Err(Error::new(ErrorKind::Forbidden, "tenant suspended"));
    }
    Ok(principal)
}
