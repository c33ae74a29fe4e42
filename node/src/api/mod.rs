//! The client-facing API: a compatible subset of Qdrant's REST API (same paths, bodies,
//! envelopes, error body and status codes) plus health and metrics, and Qdrant's gRPC API
//! ([`grpc`]) over the same operations.
//!
//! * [`routes`]: the table of every endpoint and its [`routes::Operation`]; the axum router
//!   and the middlewares are built from it.
//! * [`middleware`]: metrics, the 429 hold, authentication, early admission, the audit line.
//! * handlers by resource, as Qdrant groups them: [`service`], [`collections`],
//!   [`shard_keys`], [`points`], [`query`], [`groups`], [`admin`].
//! * [`json`]: Qdrant's JSON shapes, the only module that knows them.
//! * [`error`]: error classification to status code, Qdrant's error body.

/// An axum handler of a read with a JSON body (`POST /collections/{c}/...`): the read
/// consistency its query string asks for, the body parsed as an object, `$run(&app, &ctx, &name,
/// body)` answered in Qdrant's envelope. One definition for the many reads that differ only in
/// what they run.
macro_rules! read_handler {
    ($(#[$doc:meta])* $handler:ident, $run:path) => {
        $(#[$doc])*
        pub async fn $handler(
            axum::extract::State(app): axum::extract::State<$crate::api::AppState>,
            axum::extract::Extension(ctx): axum::extract::Extension<$crate::router::Ctx>,
            axum::extract::Path(name): axum::extract::Path<String>,
            axum::extract::RawQuery(query): axum::extract::RawQuery,
            body: std::result::Result<
                axum::body::Bytes,
                axum::extract::rejection::BytesRejection,
            >,
        ) -> $crate::api::Reply {
            let started = std::time::Instant::now();
            let ctx = $crate::api::with_consistency(ctx, &query)?;
            let v = $crate::api::json::body_json(body)?;
            let answer = $run(&app, &ctx, &name, $crate::api::json::body_object(&v)?).await?;
            $crate::api::ok(answer, started)
        }
    };
}

pub mod admin;
pub mod aliases;
pub mod batch;
pub mod collections;
pub mod error;
pub mod facet;
pub mod groups;
pub mod grpc;
pub mod hybrid;
pub mod json;
pub mod listener;
pub mod matrix;
pub mod middleware;
pub mod order_by;
pub mod points;
pub mod query;
pub mod routes;
pub mod scorer;
pub mod service;
pub mod shard_keys;

use std::sync::Arc;
use std::time::Instant;

use axum::Router as Http;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tessera_cluster::Result;
use tessera_cluster::meta::CollectionMeta;

pub use self::error::{ApiError, Reply, status_of};
use self::json::{Envelope, UpdateResult, bad};
use self::middleware::Edge;
use self::routes::Operations;
use crate::access;
use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::catalog::Catalog;
use crate::router::{Ctx, Router};

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

/// The axum router of [`routes::table`]: public routes as they are, the others behind
/// authentication and the 429 hold; every route counted by [`middleware::track`].
pub fn http(state: AppState) -> Http {
    let limit = state.catalog.config.max_body_bytes;
    let table = routes::table();
    let edge = Edge {
        app: state.clone(),
        operations: Arc::new(Operations::of(&table)),
    };
    let (mut public, mut api) = (Http::new(), Http::new());
    for route in table {
        if route.operation.is_public() {
            public = public.route(route.path, route.handler);
        } else {
            api = api.route(route.path, route.handler);
        }
    }
    let api = api
        .route_layer(axum::middleware::from_fn_with_state(
            edge,
            middleware::authenticate,
        ))
        .route_layer(axum::middleware::from_fn(middleware::hold_refusal));
    public
        .merge(api)
        .route_layer(axum::middleware::from_fn(middleware::track))
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(move |request, next| {
            error::request_limits(limit, request, next)
        }))
        .layer(axum::middleware::map_response(error::qdrant_error_bodies))
        .with_state(state)
}

/// Qdrant's success envelope around `result`, timed from `started`.
pub(crate) fn ok(result: impl Serialize, started: Instant) -> Reply {
    Ok(axum::Json(Envelope {
        result,
        status: "ok",
        time: started.elapsed().as_secs_f64(),
    })
    .into_response())
}

/// The answer to a write: its operation id, and whether it was waited for.
fn update_result(operation_id: u64, wait: bool, started: Instant) -> Reply {
    ok(UpdateResult::new(operation_id, wait), started)
}

/// A boolean query parameter (`wait`, `force`): absent is false, a bare name is true.
fn query_flag(query: &Option<String>, name: &str) -> Result<bool> {
    let Some(query) = query else { return Ok(false) };
    for pair in query.split('&') {
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

/// The request context with the read `consistency` the query string asks for (Qdrant's
/// `consistency=majority|quorum|all|<n>`); anything else is a 400 naming it.
pub fn with_consistency(mut ctx: Ctx, query: &Option<String>) -> Result<Ctx> {
    let Some(query) = query else { return Ok(ctx) };
    for pair in query.split('&') {
        if let Some(("consistency", v)) = pair.split_once('=') {
            ctx.consistency = crate::context::ReadConsistency::parse(v).ok_or_else(|| {
                bad(format!(
                    "Bad query parameter consistency={v}: expected a number of replicas, majority, quorum or all"
                ))
            })?;
        }
    }
    Ok(ctx)
}

/// Runs `f` on a collection the caller may see; any other is answered as missing.
fn visible_collection<T>(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    f: impl FnOnce(&CollectionMeta) -> T,
) -> Result<T> {
    let state = app.catalog.meta.read();
    match state.lookup(name) {
        Some(c) if access::visible(&ctx.principal, c) => Ok(f(c)),
        _ => Err(access::missing_collection(name)),
    }
}

/// A collection the caller may see, and the caller's read scope in it (every shard it may
/// reach), for the endpoints that describe a collection.
fn visible_read_scope(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
) -> Result<(CollectionMeta, access::Scope)> {
    let collection = visible_collection(app, ctx, name, Clone::clone)?;
    let scope = access::scope_named(
        &ctx.principal,
        &collection,
        name,
        &crate::router::KeySelector::All,
        access::Need::Read,
    )?;
    Ok((collection, scope))
}
