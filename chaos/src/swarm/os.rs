//! What the swarm asks of the operating system: free loopback ports, short commands, log tails.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::PROBE_EVERY;
use crate::process::run_bounded;

/// Runs a short command that must succeed; its stdout.
pub(super) fn check_output(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let what = format!("{cmd:?}");
    let out = run_bounded(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            out.stdout,
            out.stderr
        );
    }
    Ok(out.stdout)
}

/// `n` pairs of (HTTP TCP address, p2p UDP address) on 127.0.0.1 that were free a moment ago and
/// are pairwise distinct: every probe socket stays bound until all are chosen, so the OS cannot
/// hand out the same port twice.
pub fn free_ports(n: usize) -> Result<Vec<(SocketAddr, SocketAddr)>> {
    let mut tcp = Vec::with_capacity(n);
    let mut udp = Vec::with_capacity(n);
    for _ in 0..n {
        let t = TcpListener::bind("127.0.0.1:0").context("bind a TCP probe on 127.0.0.1:0")?;
        let u = UdpSocket::bind("127.0.0.1:0").context("bind a UDP probe on 127.0.0.1:0")?;
        tcp.push(t);
        udp.push(u);
    }
    let mut out = Vec::with_capacity(n);
    for (t, u) in tcp.iter().zip(&udp) {
        out.push((
            t.local_addr().context("TCP probe address")?,
            u.local_addr().context("UDP probe address")?,
        ));
    }
    let http: BTreeSet<_> = out.iter().map(|p| p.0).collect();
    let p2p: BTreeSet<_> = out.iter().map(|p| p.1).collect();
    if http.len() != n || p2p.len() != n {
        bail!("the OS handed out a port twice: {out:?}");
    }
    Ok(out)
}

/// Whether a start failure looks like a port taken by someone else.
pub(super) fn is_port_clash(err: &str) -> bool {
    let e = err.to_ascii_lowercase();
    e.contains("address already in use") || e.contains("addrinuse")
}

/// How many probes fit in `timeout` (the loop bound of every wait).
pub(super) fn max_probes(timeout: Duration) -> u128 {
    timeout.as_millis() / PROBE_EVERY.as_millis() + 1
}

/// The last `max` bytes of the file at `path`, or why it cannot be read.
pub(super) fn read_tail(path: &Path, max: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    read().unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_on_loopback() {
        let ports = free_ports(8).expect("ports");
        assert_eq!(ports.len(), 8);
        let http: BTreeSet<u16> = ports.iter().map(|p| p.0.port()).collect();
        let p2p: BTreeSet<u16> = ports.iter().map(|p| p.1.port()).collect();
        assert_eq!(http.len(), 8, "{ports:?}");
        assert_eq!(p2p.len(), 8, "{ports:?}");
        assert!(
            ports
                .iter()
                .all(|(h, p)| h.ip().is_loopback() && p.ip().is_loopback())
        );
    }

    #[test]
    fn port_clashes_are_recognised() {
        assert!(is_port_clash(
            "bind 127.0.0.1:5: Address already in use (os error 98)"
        ));
        assert!(is_port_clash("quic endpoint: AddrInUse"));
        assert!(!is_port_clash("permission denied"));
    }

    #[test]
    fn log_tail_of_a_missing_file_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = read_tail(&dir.path().join("nope.log"), 10);
        assert!(t.starts_with("<cannot read"), "{t}");
        let p = dir.path().join("a.log");
        std::fs::write(&p, "0123456789abcdef").expect("write");
        assert_eq!(read_tail(&p, 4), "cdef");
    }
}
