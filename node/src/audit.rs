//! The audit log: one JSON line per API request that carries (or lacks) a credential — every data
//! access and every denial — with time, tenant, subject, operation, collection, shard key,
//! outcome and status. Never vectors, payload values, filters or credentials.
//!
//! Lines go through a bounded channel to a writer thread, so a slow disk never stalls requests;
//! when the channel is full a line is dropped and counted (`tessera_audit_dropped_total`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, TrySendError};

use serde::Serialize;

pub use crate::context::RequestNote;

/// Lines buffered between requests and the writer thread.
const QUEUE: usize = 16 * 1024;

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Stdout,
    File(PathBuf),
}

impl AuditTarget {
    /// `"stdout"`, or a file path (appended to, created if missing).
    pub fn parse(s: &str) -> AuditTarget {
        if s == "stdout" || s == "-" {
            AuditTarget::Stdout
        } else {
            AuditTarget::File(PathBuf::from(s))
        }
    }
}

/// The audit log of a node; disabled when no target is configured.
pub struct AuditLog {
    tx: Option<SyncSender<String>>,
}

impl AuditLog {
    pub fn disabled() -> AuditLog {
        AuditLog { tx: None }
    }

    /// Opens the target and starts the writer thread.
    pub fn open(target: &AuditTarget) -> anyhow::Result<AuditLog> {
        let mut out: Box<dyn Write + Send> = match target {
            AuditTarget::Stdout => Box::new(std::io::stdout()),
            AuditTarget::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                Box::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| anyhow::anyhow!("open audit log {}: {e}", path.display()))?,
                )
            }
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    let mut ok = writeln!(out, "{line}").is_ok();
                    // write what is already queued before flushing once
                    while let Ok(line) = rx.try_recv() {
                        ok &= writeln!(out, "{line}").is_ok();
                    }
                    ok &= out.flush().is_ok();
                    if !ok {
                        metrics::counter!("tessera_audit_write_errors_total").increment(1);
                    }
                }
            })?;
        Ok(AuditLog { tx: Some(tx) })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line; drops it (counted) when the writer is behind.
    pub fn write(&self, entry: &AuditEntry<'_>) {
        let Some(tx) = &self.tx else { return };
        let Ok(line) = serde_json::to_string(entry) else {
            return;
        };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                metrics::counter!("tessera_audit_dropped_total").increment(1);
            }
        }
    }
}

/// One audit line.
#[derive(Debug, Serialize)]
pub struct AuditEntry<'a> {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub tenant: Option<&'a str>,
    pub subject: Option<&'a str>,
    /// How the caller authenticated: `api_key`, `read_only_api_key`, `jwt`, `none`.
    pub auth: &'a str,
    pub operation: &'a str,
    pub collection: Option<&'a str>,
    pub shard_key: Option<&'a str>,
    /// `ok`, `denied` (authentication or authorization refused it) or `error`.
    pub outcome: &'a str,
    pub status: u16,
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_millis())
}

/// Formats unix seconds as RFC 3339 UTC (proleptic Gregorian).
fn rfc3339(secs: i64, millis: u32) -> String {
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = tessera_shard::calendar::civil_from_days(secs.div_euclid(86_400));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_795_392_000, 999), "2026-11-23T00:00:00.999Z");
        assert_eq!(rfc3339(4_107_542_399, 0), "2100-02-28T23:59:59.000Z");
    }

    #[test]
    fn lines_reach_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&AuditTarget::File(path.clone())).expect("open");
        log.write(&AuditEntry {
            time: now_rfc3339(),
            tenant: Some("acme"),
            subject: Some("alice"),
            auth: "jwt",
            operation: "points.query",
            collection: Some("docs"),
            shard_key: Some("acme"),
            outcome: "ok",
            status: 200,
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(line) = text.lines().next() {
                let v: serde_json::Value = serde_json::from_str(line).expect("json line");
                assert_eq!(v["tenant"], "acme");
                assert_eq!(v["operation"], "points.query");
                assert_eq!(v["status"], 200);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "audit line never written"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
