//! One small fixed classification of errors, mapped to HTTP status codes in one table in the node.
//! There is no Forbidden for data outside the caller's scope: that is NotFound.
//!
//! Besides the per-call [`Error`] there is [`Fatal`] (as openraft's `RaftError { APIError, Fatal }`):
//! a failure after which the component that met it must not go on, because what it holds in
//! memory and what is on disk may no longer agree (a WAL append or fsync that failed). It is not a
//! kind of its own, so the classification, its HTTP table and its wire encoding stay as they are:
//! callers see it as `Unavailable` (a 503 naming what failed), while the component itself knows
//! to stop.

/// Linux's errno for "no space left on device" and "disk quota exceeded".
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{message}")]
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
    /// An I/O failure, naming the path and what was being done. A full disk or quota is
    /// `InsufficientStorage` (Qdrant answers 507), every other failure `Internal`.
    pub fn io(what: &str, path: &std::path::Path, e: std::io::Error) -> Error {
        let kind = match e.raw_os_error() {
            Some(ENOSPC | EDQUOT) => ErrorKind::InsufficientStorage,
            _ if e.kind() == std::io::ErrorKind::StorageFull => ErrorKind::InsufficientStorage,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, format!("{what} {}: {e}", path.display()))
    }
}

/// A failure after which `component` must not be used again: it refuses every later request with
/// this error until it is reopened (or rebuilt from another copy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{component} failed: {cause}")]
pub struct Fatal {
    /// What stopped, as the caller's message starts (`replica`).
    pub component: &'static str,
    /// The error that stopped it.
    pub cause: Error,
}

impl Fatal {
    pub fn new(component: &'static str, cause: Error) -> Fatal {
        Fatal { component, cause }
    }
}

impl From<Fatal> for Error {
    /// A stopped component is unavailable: another copy (or a later reopen) may serve the call.
    fn from(f: Fatal) -> Error {
        Error::unavailable(f.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_insufficient_storage_and_other_io_failures_are_internal() {
        let p = std::path::Path::new("wal.log");
        let full = Error::io("append to log", p, std::io::Error::from_raw_os_error(28));
        assert_eq!(full.kind, ErrorKind::InsufficientStorage);
        assert!(
            full.message.starts_with("append to log wal.log: "),
            "{}",
            full.message
        );
        let quota = Error::io("append to log", p, std::io::Error::from_raw_os_error(122));
        assert_eq!(quota.kind, ErrorKind::InsufficientStorage);
        let denied = Error::io("open", p, std::io::Error::from_raw_os_error(13));
        assert_eq!(denied.kind, ErrorKind::Internal);
    }

    #[test]
    fn a_fatal_error_reaches_callers_as_unavailable_naming_what_failed() {
        let f = Fatal::new(
            "replica",
            Error::internal("append to log wal.log: disk full"),
        );
        let e = Error::from(f);
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert_eq!(
            e.message,
            "replica failed: append to log wal.log: disk full"
        );
    }
}
