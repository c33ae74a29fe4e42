//! One small fixed classification of errors, mapped to HTTP status codes in one table in the node.
//! There is no Forbidden for data outside the caller's scope: that is NotFound.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    AlreadyExists,
    Conflict,
    PayloadTooLarge,
    TooManyRequests { retry_after_ms: u64 },
    InsufficientStorage,
    Unavailable,
    Timeout,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadRequest, m)
    }
    pub fn not_found(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, m)
    }
    pub fn already_exists(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::AlreadyExists, m)
    }
    pub fn conflict(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Conflict, m)
    }
    pub fn internal(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, m)
    }
    pub fn unavailable(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unavailable, m)
    }
    pub fn timeout(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Timeout, m)
    }
    /// An I/O failure, naming the path and what was being done.
    pub fn io(what: &str, path: &std::path::Path, e: std::io::Error) -> Error {
        Error::internal(format!("{what} {}: {e}", path.display()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
