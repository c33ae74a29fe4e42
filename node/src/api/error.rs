//! Errors at the HTTP edge: the one table from our error classification to status codes
//! ([`status_of`]), Qdrant's error body, and the retry headers of a 429.

use axum::http::{HeaderMap, StatusCode, header};
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
