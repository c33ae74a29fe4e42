//! Child processes with bounded waits: short commands whose output we need (`tessera cert`,
//! `tessera serve --help`) and the signals a nemesis sends (`kill -STOP/-CONT/-TERM/-KILL`).
//!
//! Signals go through the `kill` command rather than libc: the workspace forbids unsafe code and
//! carries no libc binding, and a fork per fault is cheap next to what a fault costs the cluster.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// How long a `kill` command may take (it only asks the kernel).
const KILL_CMD_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a bounded wait looks at the child.
const POLL: Duration = Duration::from_millis(10);

/// A signal the harness sends, by the name `kill -<NAME>` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Stop at once, no cleanup (SIGKILL).
    Kill,
    /// Graceful shutdown (SIGTERM).
    Term,
    /// Freeze: the process keeps its sockets but runs no code (SIGSTOP).
    Stop,
    /// Thaw a frozen process (SIGCONT).
    Cont,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Kill => "KILL",
            Signal::Term => "TERM",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
        }
    }
}

/// Sends `signal` to process `pid` with `kill -<SIG> <pid>`, bounded in time.
pub fn send_signal(pid: u32, signal: Signal) -> Result<()> {
    let mut cmd = Command::new("kill");
    cmd.arg(format!("-{}", signal.name())).arg(pid.to_string());
    let out = run_bounded(&mut cmd, KILL_CMD_TIMEOUT)
        .with_context(|| format!("run kill -{} {pid}", signal.name()))?;
    if !out.status.success() {
        bail!(
            "kill -{} {pid} failed ({}): {}",
            signal.name(),
            out.status,
            out.stderr.trim()
        );
    }
    Ok(())
}

/// What a finished short command printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion with stdout and stderr captured; kills it and fails if it takes
/// longer than `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {what}"))?;
    // read both pipes on their own threads, so a chatty child never blocks on a full pipe
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let status = match wait_bounded(&mut child, timeout)? {
        Some(s) => s,
        None => {
            child.kill().ok();
            child.wait().ok();
            bail!("{what} did not finish within {timeout:?}");
        }
    };
    Ok(Output {
        status,
        stdout: join_reader(out)?,
        stderr: join_reader(err)?,
    })
}

/// Polls `child` until it exits (its status) or `timeout` passes (None; the child runs on).
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let started = Instant::now();
    let max_polls = timeout.as_millis() / POLL.as_millis() + 1;
    for _ in 0..max_polls {
        if let Some(status) = child.try_wait().context("poll child process")? {
            return Ok(Some(status));
        }
        if started.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(POLL);
    }
    child.try_wait().context("poll child process")
}

fn reader<R: Read + Send + 'static>(
    pipe: Option<R>,
) -> Option<JoinHandle<std::io::Result<String>>> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            p.read_to_end(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        })
    })
}

fn join_reader(h: Option<JoinHandle<std::io::Result<String>>>) -> Result<String> {
    match h {
        None => Ok(String::new()),
        Some(h) => h
            .join()
            .map_err(|_| anyhow!("output reader thread panicked"))?
            .context("read child output"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_command_gives_its_output_and_a_slow_one_is_cut_off() {
        let out = run_bounded(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .expect("sh runs");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");

        let started = Instant::now();
        let err = run_bounded(
            Command::new("sh").args(["-c", "exec sleep 30"]),
            Duration::from_millis(200),
        )
        .expect_err("sleep 30 outlives a 200 ms bound");
        assert!(format!("{err:#}").contains("did not finish"), "{err:#}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn signals_stop_continue_and_kill_a_child() {
        let mut child = Command::new("sh")
            .args(["-c", "exec sleep 30"])
            .spawn()
            .expect("spawn sleep");
        send_signal(child.id(), Signal::Stop).expect("SIGSTOP");
        send_signal(child.id(), Signal::Cont).expect("SIGCONT");
        assert!(
            wait_bounded(&mut child, Duration::from_millis(50))
                .expect("poll")
                .is_none(),
            "STOP then CONT leaves the process running"
        );
        send_signal(child.id(), Signal::Kill).expect("SIGKILL");
        let status = wait_bounded(&mut child, Duration::from_secs(10))
            .expect("poll")
            .expect("SIGKILL ends sleep");
        assert!(!status.success());
    }
}
