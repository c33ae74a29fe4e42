//! SIGINT and SIGTERM for the runner: the first asks every run to stop (each heals its faults
//! and drops its swarm, which kills its nodes), deletes this process's nftables tables at once,
//! and if the runner has not exited within [`GRACE`], kills the nodes it knows and exits.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::Swarm;
use crate::process::{Signal, send_signal};

/// How long a stop may take before the runner exits by force.
const GRACE: Duration = Duration::from_secs(30);

static STOPPING: AtomicBool = AtomicBool::new(false);
/// Per swarm (its root dir), the pids of its nodes as last seen.
static PIDS: Mutex<BTreeMap<String, Vec<u32>>> = Mutex::new(BTreeMap::new());

/// Whether the runner was asked to stop.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// Notes the pids of `swarm`'s nodes (call after every start and restart).
pub fn track(swarm: &Swarm) {
    let pids = swarm
        .ids()
        .into_iter()
        .filter_map(|id| swarm.node(id).ok().and_then(|n| n.pid))
        .collect();
    PIDS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(swarm.root().display().to_string(), pids);
}

/// Forgets a swarm's pids when dropped (make it after the swarm, so it drops first).
pub struct Tracked(String);

impl Tracked {
    pub fn new(swarm: &Swarm) -> Tracked {
        track(swarm);
        Tracked(swarm.root().display().to_string())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        PIDS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
    }
}

/// Installs the handler (once per process).
pub fn install() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build the signal runtime")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                STOPPING.store(true, Ordering::SeqCst);
                let failed = crate::net::remove_all();
                tessera_tests::log_phase(format_args!(
                    "signal: stopping; nftables tables left: {failed:?}"
                ));
                tokio::time::sleep(GRACE).await;
                let pids: Vec<u32> = PIDS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .flatten()
                    .copied()
                    .collect();
                for pid in pids {
                    let _ = send_signal(pid, Signal::Kill);
                }
                crate::net::remove_all();
                std::process::exit(130);
            });
        })
        .context("spawn the signal thread")?;
    Ok(())
}
