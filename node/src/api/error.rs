//! Errors at the HTTP edge: the one table from our error classification to status codes
//! ([`status_of`]), Qdrant's error body, and the retry headers of a 429.
//!
//! Every error answer carries Qdrant's error JSON, also those that no handler of ours wrote:
//! [`qdrant_error_bodies`] rewrites the framework's own (405 with an empty body, a path
//! parameter that does not parse answered in plain text), and [`request_limits`] answers a
//! `Content-Length` over the body limit (413) and oversized headers (431) before any handler.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tessera_cluster::{Error, ErrorKind};

use super::json::ErrorBody;

/// An error on its way out as Qdrant's `{"status": {"error": ..}, "time": 0.0}`.
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// What every handler returns.
pub type Reply = std::result::Result<Response, ApiError>;

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
        let mut resp = (status, axum::Json(ErrorBody::new(self.0.message))).into_response();
        if let ErrorKind::TooManyRequests { retry_after_ms } = self.0.kind {
            set_retry_after(resp.headers_mut(), retry_after_ms);
        }
        resp
    }
}

/// The header giving Retry-After in milliseconds (Retry-After counts whole seconds).
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// Sets Retry-After (whole seconds, at least 1) and Retry-After-Ms (at least 1).
pub fn set_retry_after(headers: &mut HeaderMap, ms: u64) {
    let secs = ms.div_ceil(1000).max(1);
    headers.insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    headers.insert(RETRY_AFTER_MS, header::HeaderValue::from(ms.max(1)));
}

/// The answer to a path no route serves.
pub async fn not_found() -> ApiError {
    ApiError(Error::not_found("Not found"))
}

/// The most header bytes (names and values) a request may carry.
pub const MAX_HEADER_BYTES: usize = 64 << 10;
/// The most headers a request may carry.
pub const MAX_HEADERS: usize = 128;
/// The most bytes of a framework error's text kept as the error message.
const MAX_FRAMEWORK_ERROR_BYTES: usize = 4096;

/// Refuses at once what no handler could accept: a declared body over `max_body_bytes` (413,
/// instead of reading it until the body timeout) and oversized headers (431).
pub async fn request_limits(max_body_bytes: usize, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return closing(error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "Request headers too large: at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes"
            ),
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body_bytes as u64) {
        return closing(
            ApiError(Error::new(
                ErrorKind::PayloadTooLarge,
                "Payload too large: request body is over the configured limit",
            ))
            .into_response(),
        );
    }
    next.run(request).await
}

/// Gives Qdrant's error JSON to error answers that carry another body (the framework's 405,
/// plain-text path rejections), keeping their status and headers (`Allow`, `Retry-After`).
pub async fn qdrant_error_bodies(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_FRAMEWORK_ERROR_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_owned()
    } else {
        text
    };
    let Ok(body) = serde_json::to_vec(&ErrorBody::new(message)) else {
        return Response::from_parts(parts, Body::empty());
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// A refusal sent before the request body was read: the connection cannot carry another request
/// (the unread body is still on it), so the client is told to open a new one.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// An error answer with a status our classification does not name (431).
fn error_response(status: StatusCode, message: String) -> Response {
    (status, axum::Json(ErrorBody::new(message))).into_response()
}
