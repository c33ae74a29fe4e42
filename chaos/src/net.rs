//! Real network faults between the nodes of a swarm: nftables tables that drop UDP packets (the
//! nodes' QUIC traffic: Raft, shard calls, replication) between chosen ports in chosen
//! directions. Clients keep reaching every node's HTTP port (TCP), as clients on either side
//! of a partition would.
//!
//! Every table this process creates is named `tessera_chaos_<pid>_<tag>` and is listed in a
//! process-wide registry: [`Table`]'s drop deletes it, [`remove_all`] deletes every one still
//! listed (the runner's SIGINT/SIGTERM path), and [`clean_stale`] deletes the tables of
//! processes that are gone (a runner killed with SIGKILL), so nothing outlives a run.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::process::wait_bounded;

/// The prefix of every table the chaos suite creates.
pub const TABLE_PREFIX: &str = "tessera_chaos_";
/// How long one `nft` command may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// Tables created by this process and not deleted yet.
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn live() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Packets from any of `from` to any of `to` (UDP ports on loopback) are dropped: one direction
/// of a cut. A symmetric cut is two of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneWay {
    pub from: Vec<u16>,
    pub to: Vec<u16>,
}

/// The drops that split `groups` from one another (both directions between every two groups).
pub fn split(groups: &[Vec<u16>]) -> Vec<OneWay> {
    let mut out = Vec::new();
    for (i, a) in groups.iter().enumerate() {
        for (j, b) in groups.iter().enumerate() {
            if i != j && !a.is_empty() && !b.is_empty() {
                out.push(OneWay {
                    from: a.clone(),
                    to: b.clone(),
                });
            }
        }
    }
    out
}

fn port_set(ports: &[u16]) -> String {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!("{{ {} }}", list.join(", "))
}

impl OneWay {
    /// Its nft rule.
    pub fn rule(&self) -> String {
        format!(
            "udp sport {} udp dport {} drop",
            port_set(&self.from),
            port_set(&self.to)
        )
    }
}

/// The nft script that (re)creates table `name` with `rules` as its only rules, in one atomic
/// transaction (the `table` line makes the `delete` valid when the table does not exist yet).
pub fn script(name: &str, rules: &[String]) -> String {
    let mut body = String::new();
    for r in rules {
        body += &format!("  {r}\n");
    }
    format!(
        "table inet {name}\ndelete table inet {name}\ntable inet {name} {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n{body} }}\n}}\n"
    )
}

/// One nftables table of this process. Empty until [`Table::set`]; deleted on drop.
pub struct Table {
    name: String,
}

impl Table {
    /// A table named `tessera_chaos_<pid>_<tag>`; `tag` is made of `[a-z0-9_]` by the caller.
    pub fn new(tag: &str) -> Table {
        Table {
            name: format!("{TABLE_PREFIX}{}_{tag}", std::process::id()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replaces the table's rules with `drops` (none: the table exists and drops nothing).
    pub fn set(&self, drops: &[OneWay]) -> Result<()> {
        let rules: Vec<String> = drops.iter().map(OneWay::rule).collect();
        self.set_rules(&rules)
    }

    /// Replaces the table's rules with `rules` (nft rule text).
    pub fn set_rules(&self, rules: &[String]) -> Result<()> {
        live().insert(self.name.clone());
        nft(&["-f", "-"], Some(&script(&self.name, rules)))
            .with_context(|| format!("set nftables table {}", self.name))
    }

    /// Deletes the table (nothing dropped any more); a table already gone is fine.
    pub fn heal(&self) -> Result<()> {
        let r = delete_table(&self.name);
        live().remove(&self.name);
        r
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if let Err(e) = self.heal() {
            tessera_tests::log_phase(format_args!("removing nftables table {}: {e:#}", self.name));
        }
    }
}

/// An nftables table that drops every UDP packet from or to one node's QUIC port (its Raft,
/// shard and replication traffic; its HTTP port stays open to clients). Removed on drop, also
/// when the test fails.
pub struct CutOff {
    _table: Table,
}

impl CutOff {
    pub fn port(port: u16) -> Result<CutOff> {
        let table = Table::new(&format!("cut_{port}"));
        table
            .set_rules(&[
                format!("udp sport {port} drop"),
                format!("udp dport {port} drop"),
            ])
            .map_err(|e| {
                anyhow!(
                    "nftables is needed (and root) to cut a node off: {e:#}; .ci/run installs it"
                )
            })?;
        Ok(CutOff { _table: table })
    }
}

/// Deletes every table this process still has (the path of SIGINT and SIGTERM); what failed.
pub fn remove_all() -> Vec<String> {
    let names: Vec<String> = live().iter().cloned().collect();
    let mut failed = Vec::new();
    for n in names {
        match delete_table(&n) {
            Ok(()) => {
                live().remove(&n);
            }
            Err(e) => failed.push(format!("{n}: {e:#}")),
        }
    }
    failed
}

/// Fails with what to do unless `nft` runs and may create and delete a table here (root, or
/// CAP_NET_ADMIN): the partition nemeses need it, and a run never skips them silently.
pub fn require_nft() -> Result<()> {
    let probe = Table::new("probe");
    probe.set(&[]).map_err(|e| {
        anyhow!(
            "the partition nemeses need nftables and the right to use it (root or CAP_NET_ADMIN): \
             {e:#}. Install it (`apt-get install nftables`; .ci/run does) and run as root, or \
             leave the partition nemeses out of --nemesis"
        )
    })?;
    probe.heal()
}

/// Deletes the chaos tables of processes that no longer run (left by a runner killed with
/// SIGKILL); the names it deleted. Tables of live processes (a parallel runner) stay.
pub fn clean_stale() -> Result<Vec<String>> {
    let listed = nft_output(&["list", "tables"])?;
    let mut removed = Vec::new();
    for name in stale_tables(&listed, |pid| {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }) {
        delete_table(&name)?;
        removed.push(name);
    }
    Ok(removed)
}

/// The chaos tables in `nft list tables` output whose owning pid `alive` says is gone.
pub fn stale_tables(listed: &str, alive: impl Fn(u32) -> bool) -> Vec<String> {
    listed
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table inet "))
        .filter(|n| n.starts_with(TABLE_PREFIX))
        .filter(|n| {
            let pid = n[TABLE_PREFIX.len()..]
                .split('_')
                .next()
                .and_then(|p| p.parse::<u32>().ok());
            // a name of ours without a pid is no one's: stale
            pid.is_none_or(|p| p != std::process::id() && !alive(p))
        })
        .map(str::to_owned)
        .collect()
}

fn delete_table(name: &str) -> Result<()> {
    match nft(&["delete", "table", "inet", name], None) {
        Ok(()) => Ok(()),
        Err(e) if format!("{e:#}").contains("No such file") => Ok(()),
        Err(e) => Err(e),
    }
}

fn nft_output(args: &[&str]) -> Result<String> {
    let out = crate::process::run_bounded(Command::new("nft").args(args), NFT_TIMEOUT)
        .with_context(|| format!("run nft {args:?} (is nftables installed?)"))?;
    if !out.status.success() {
        bail!("nft {args:?}: {} {}", out.status, out.stderr.trim());
    }
    Ok(out.stdout)
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<()> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn nft {args:?} (is nftables installed?)"))?;
    if let Some(text) = stdin
        && let Some(mut input) = child.stdin.take()
    {
        input
            .write_all(text.as_bytes())
            .context("write nft script")?;
    }
    drop(child.stdin.take());
    let Some(status) = wait_bounded(&mut child, NFT_TIMEOUT)? else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("nft {args:?} did not finish within {NFT_TIMEOUT:?}");
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        bail!("nft {args:?}: {status} {}", err.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_drops_both_ways_between_every_two_groups() {
        let d = split(&[vec![1, 2], vec![3]]);
        assert_eq!(
            d,
            [
                OneWay {
                    from: vec![1, 2],
                    to: vec![3]
                },
                OneWay {
                    from: vec![3],
                    to: vec![1, 2]
                }
            ]
        );
        assert_eq!(split(&[vec![1, 2, 3]]), []);
    }

    #[test]
    fn the_script_replaces_the_table_atomically() {
        let s = script(
            "tessera_chaos_1_x",
            &[OneWay {
                from: vec![5, 6],
                to: vec![7],
            }
            .rule()],
        );
        assert!(
            s.starts_with("table inet tessera_chaos_1_x\ndelete table inet tessera_chaos_1_x\n")
        );
        assert!(s.contains("udp sport { 5, 6 } udp dport { 7 } drop"), "{s}");
    }

    #[test]
    fn only_tables_of_dead_chaos_processes_are_stale() {
        let me = std::process::id();
        let listed = format!(
            "table inet tessera_chaos_{me}_a\ntable inet tessera_chaos_4000000_b\n\
             table inet tessera_chaos_7_c\ntable inet other_1\ntable inet tessera_chaos_x\n"
        );
        let stale = stale_tables(&listed, |p| p == 7);
        assert_eq!(stale, ["tessera_chaos_4000000_b", "tessera_chaos_x"]);
    }
}
