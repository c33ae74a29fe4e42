//! The history of a run: every client operation as an `invoke` event and then its completion
//! (`ok`, `fail` or `unknown`), and every fault the nemesis injects or heals (`info`), one JSON
//! object per line, in the order they happened.
//!
//! `fail` means the operation certainly did not take effect (refused before or by the cluster
//! with a definite error); `unknown` means it may or may not have (a timeout or a broken
//! connection after the request went out, or a 5xx whose write may be applied on some replica).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an event says of its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Unknown,
    /// A nemesis event (a fault begins or heals), or a note of the runner.
    Info,
}

/// One line of the history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// The operation's id, the same on its invoke and its completion (unique in a run).
    pub op: u64,
    pub kind: Kind,
    /// Who: `w<i>` (tenant i's worker), `admin`, `nemesis`, `final` (the reads after heal).
    pub process: String,
    /// What: upsert, delete, set_payload, get, search, scroll, count, create_key,
    /// delete_key, set_quota; for the nemesis the fault's name.
    pub f: String,
    /// The tenant (its shard key), when the operation concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The node the request went to (or the fault's target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// On invoke what was asked; on completion what came back (or the error).
    pub value: Value,
    /// Milliseconds since the run began.
    pub time_ms: f64,
}

/// Who did what where: the fields an operation's invoke and completion share.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub process: &'a str,
    pub f: &'a str,
    pub tenant: Option<&'a str>,
    pub node: Option<u64>,
}

/// Appends events to a JSONL file as they happen, from any thread.
pub struct Recorder {
    out: Mutex<BufWriter<File>>,
    started: Instant,
    next_op: AtomicU64,
}

impl Recorder {
    pub fn create(path: &Path) -> Result<Recorder> {
        let f = File::create(path).with_context(|| format!("create {}", path.display()))?;
        Ok(Recorder {
            out: Mutex::new(BufWriter::new(f)),
            started: Instant::now(),
            next_op: AtomicU64::new(1),
        })
    }

    /// Milliseconds since the recorder was created.
    pub fn now_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// A new operation id.
    pub fn next_op(&self) -> u64 {
        self.next_op.fetch_add(1, Ordering::SeqCst)
    }

    /// Records one event, stamped now. The file lock is held while stamping, so the lines are
    /// in time order.
    pub fn record(&self, op: u64, kind: Kind, head: &Head<'_>, value: Value) -> Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let e = Event {
            op,
            kind,
            process: head.process.to_owned(),
            f: head.f.to_owned(),
            tenant: head.tenant.map(str::to_owned),
            node: head.node,
            value,
            time_ms: self.now_ms(),
        };
        serde_json::to_writer(&mut *out, &e).context("encode history event")?;
        out.write_all(b"\n").context("write history")?;
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush()
            .context("flush history")
    }
}

/// Reads a history file back.
pub fn read(path: &Path) -> Result<Vec<Event>> {
    let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{} line {}: not an event", path.display(), i + 1))?,
        );
    }
    Ok(out)
}

/// One client operation: its invoke and its completion (None when the history ends first,
/// which counts as unknown).
#[derive(Debug, Clone)]
pub struct Op {
    pub invoke: Event,
    pub done: Option<Event>,
}

impl Op {
    /// How it ended: Ok, Fail or Unknown.
    pub fn outcome(&self) -> Kind {
        self.done.as_ref().map_or(Kind::Unknown, |d| d.kind)
    }

    pub fn f(&self) -> &str {
        &self.invoke.f
    }

    pub fn tenant(&self) -> Option<&str> {
        self.invoke.tenant.as_deref()
    }

    /// The time it completed (invoke time for one that never did).
    pub fn end_ms(&self) -> f64 {
        self.done
            .as_ref()
            .map_or(self.invoke.time_ms, |d| d.time_ms)
    }

    /// What came back, Null if nothing did.
    pub fn result(&self) -> &Value {
        self.done.as_ref().map_or(&Value::Null, |d| &d.value)
    }
}

/// Pairs invokes with their completions, in invoke order; nemesis `info` events are left out.
pub fn ops(events: &[Event]) -> Vec<Op> {
    let mut by_op: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    let mut out: Vec<Op> = Vec::new();
    for e in events {
        match e.kind {
            Kind::Invoke => {
                by_op.insert(e.op, out.len());
                out.push(Op {
                    invoke: e.clone(),
                    done: None,
                });
            }
            Kind::Info => {}
            _ => {
                if let Some(i) = by_op.get(&e.op)
                    && let Some(op) = out.get_mut(*i)
                {
                    op.done = Some(e.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_history_reads_back_paired_in_invoke_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.jsonl");
        let r = Recorder::create(&path).expect("recorder");
        let (a, b) = (r.next_op(), r.next_op());
        let head = |process, f, tenant, node| Head {
            process,
            f,
            tenant,
            node,
        };
        let up = head("w0", "upsert", Some("t"), Some(1));
        let get = head("w1", "get", Some("u"), Some(2));
        r.record(a, Kind::Invoke, &up, json!({"id": 1}))
            .expect("record");
        r.record(b, Kind::Invoke, &get, json!({"id": 2}))
            .expect("record");
        r.record(b, Kind::Ok, &get, json!({})).expect("record");
        let kill = head("nemesis", "kill", None, Some(3));
        r.record(0, Kind::Info, &kill, json!({})).expect("record");
        r.flush().expect("flush");
        let events = read(&path).expect("read");
        assert_eq!(events.len(), 4);
        let ops = ops(&events);
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].f(), "upsert");
        assert_eq!(ops[0].outcome(), Kind::Unknown, "no completion: unknown");
        assert_eq!(ops[1].outcome(), Kind::Ok);
        assert_eq!(ops[1].tenant(), Some("u"));
    }
}
