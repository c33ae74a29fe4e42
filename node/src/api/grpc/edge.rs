//! What every gRPC call passes, as every REST request passes the middlewares: the credential
//! becomes the call's [`Ctx`] (or the call is refused as REST refuses it), metered calls of a
//! token's tenant are admitted before any work, and the call gets its audit line, its metrics
//! and its tenant's figures. Errors become the status codes Qdrant sends for them.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tessera_cluster::{Error, ErrorKind, Result};
use tonic::{Code, Status};

use super::Grpc;
use crate::api::middleware::{
    admit_len, authenticate_headers, check_timeout, record_request, timed_out, write_audit,
};
use crate::api::routes::Operation;
use crate::api::status_of;
use crate::router::Ctx;

/// What a call is, read off its request before it runs.
pub struct Call<'a> {
    pub operation: Operation,
    /// The collection the request names, if any (for 404s and the audit line).
    pub collection: Option<&'a str>,
    /// The request's own `timeout` field, seconds.
    pub timeout: Option<u64>,
    /// The request's encoded size: what a write's byte quota is charged.
    pub bytes: usize,
}

impl Grpc {
    /// Runs `f` for the call `call` of `metadata`, as the REST middlewares run a handler.
    pub async fn run<T, Fut>(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        call: Call<'_>,
        f: impl FnOnce(Ctx) -> Fut,
    ) -> std::result::Result<tonic::Response<T>, Status>
    where
        Fut: Future<Output = Result<T>>,
    {
        let app = &self.app;
        let started = Instant::now();
        let headers = metadata.clone().into_headers();
        let method = call.operation.audit_name();
        let principal = match authenticate_headers(app, &headers, call.collection).await {
            Ok(p) => p,
            Err(e) => {
                let status = status_of(e.kind);
                write_audit(app, Some(call.operation), call.collection, None, status);
                count(method, &e, started);
                return Err(status_from(e));
            }
        };
        let ctx = Ctx::of(principal);
        let kind = call.operation.quota_class();
        let admitted = match kind {
            Some(kind) => admit_len(app, &ctx, kind, call.bytes as u64),
            None => Ok(()),
        };
        let result = match admitted {
            Ok(()) => match call.timeout.map(|t| check_timeout(Some(t))) {
                None => f(ctx.clone()).await,
                Some(Err(e)) => Err(e),
                Some(Ok(secs)) => {
                    match tokio::time::timeout(Duration::from_secs(secs), f(ctx.clone())).await {
                        Ok(r) => r,
                        Err(_) => Err(timed_out(secs)),
                    }
                }
            },
            Err(e) => Err(e),
        };
        let status = match &result {
            Ok(_) => StatusCode::OK,
            Err(e) => status_of(e.kind),
        };
        if let Some(kind) = kind {
            record_request(app, &ctx, kind, status, started);
        }
        write_audit(
            app,
            Some(call.operation),
            call.collection,
            Some(&ctx),
            status,
        );
        match result {
            Ok(answer) => {
                metrics::counter!("tessera_grpc_requests_total", "method" => method, "code" => "ok")
                    .increment(1);
                metrics::histogram!("tessera_grpc_request_seconds", "method" => method)
                    .record(started.elapsed().as_secs_f64());
                Ok(tonic::Response::new(answer))
            }
            Err(e) => {
                count(method, &e, started);
                Err(status_from(e))
            }
        }
    }
}

fn count(method: &'static str, e: &Error, started: Instant) {
    let code = code_of(e.kind);
    metrics::counter!("tessera_grpc_requests_total", "method" => method, "code" => code.description())
        .increment(1);
    metrics::histogram!("tessera_grpc_request_seconds", "method" => method)
        .record(started.elapsed().as_secs_f64());
}

/// The gRPC code of an error kind, as Qdrant maps its errors.
pub fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::BadRequest | ErrorKind::PayloadTooLarge => Code::InvalidArgument,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Forbidden => Code::PermissionDenied,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => Code::AlreadyExists,
        ErrorKind::TooManyRequests { .. } | ErrorKind::InsufficientStorage => {
            Code::ResourceExhausted
        }
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The status of an error: its code, its message as REST words it, and for a refusal by quota
/// the time to wait (`retry-after`, whole seconds, as Qdrant sends it, and `retry-after-ms`).
pub fn status_from(e: Error) -> Status {
    let code = code_of(e.kind);
    if code == Code::Internal {
        tracing::error!(error = %e, "grpc call failed");
    }
    let mut status = Status::new(code, e.message);
    if let ErrorKind::TooManyRequests { retry_after_ms } = e.kind {
        let secs = retry_after_ms.div_ceil(1000).max(1);
        let md = status.metadata_mut();
        md.insert("retry-after", secs.into());
        md.insert("retry-after-ms", retry_after_ms.max(1).into());
    }
    status
}

/// The answer to a method tessera does not serve (on REST either).
pub fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!("tessera does not support {method} yet"))
}
