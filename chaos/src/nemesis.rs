//! Nemeses: the faults a run injects into a swarm, each healed within the run.
//!
//! The whole schedule is drawn from the run's seed before the run starts ([`plan`]): which
//! fault, on which node or split, when, and for how long. Only "the leader" is resolved when
//! the fault begins (who leads then). One fault is active at a time, and every fault leaves a
//! majority of the nodes able to talk to one another, so the cluster is expected to keep serving.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::Swarm;
use crate::net::{OneWay, Table, split};

/// A kind of fault, as `--nemesis` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Nemesis {
    /// SIGKILL a node, restart it at heal.
    Kill,
    /// SIGSTOP a node, SIGCONT it at heal.
    Pause,
    /// SIGTERM a node (graceful), start it again at heal.
    Restart,
    /// SIGKILL or SIGSTOP whichever node leads the metadata group when the fault begins.
    Leader,
    /// Split the nodes into a majority and a minority that cannot reach each other.
    Partition,
    /// Cut one node off from all the others.
    Isolate,
    /// Asymmetric: one node's packets to the others are dropped, theirs to it arrive.
    Oneway,
    /// Two halves that cannot reach each other, and one node that reaches both.
    Bridge,
}

impl Nemesis {
    pub const ALL: [Nemesis; 8] = [
        Nemesis::Kill,
        Nemesis::Pause,
        Nemesis::Restart,
        Nemesis::Leader,
        Nemesis::Partition,
        Nemesis::Isolate,
        Nemesis::Oneway,
        Nemesis::Bridge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::Restart => "restart",
            Nemesis::Leader => "leader",
            Nemesis::Partition => "partition",
            Nemesis::Isolate => "isolate",
            Nemesis::Oneway => "oneway",
            Nemesis::Bridge => "bridge",
        }
    }

    /// Whether it needs nftables.
    pub fn is_network(self) -> bool {
        matches!(
            self,
            Nemesis::Partition | Nemesis::Isolate | Nemesis::Oneway | Nemesis::Bridge
        )
    }
}

impl FromStr for Nemesis {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Nemesis> {
        Nemesis::ALL
            .into_iter()
            .find(|n| n.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Nemesis::ALL.iter().map(|n| n.name()).collect();
                anyhow!("unknown nemesis {s:?}; known: {}", names.join(", "))
            })
    }
}

/// Parses `kill,pause,partition` (or `all`).
pub fn parse_list(s: &str) -> Result<Vec<Nemesis>> {
    if s.trim() == "all" {
        return Ok(Nemesis::ALL.to_vec());
    }
    let mut out: Vec<Nemesis> = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(Nemesis::from_str)
        .collect::<Result<_>>()?;
    out.sort();
    out.dedup();
    if out.is_empty() {
        bail!("--nemesis names no fault");
    }
    Ok(out)
}

/// The comma list of `nemeses`, as `--nemesis` takes it.
pub fn list_name(nemeses: &[Nemesis]) -> String {
    let names: Vec<&str> = nemeses.iter().map(|n| n.name()).collect();
    names.join(",")
}

/// What a planned fault does, with its targets drawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "lowercase")]
pub enum Fault {
    Kill {
        node: u64,
    },
    Pause {
        node: u64,
    },
    Restart {
        node: u64,
    },
    /// The leader at the time, killed (`kill: true`) or paused.
    Leader {
        kill: bool,
    },
    /// Groups of node ids that cannot reach one another.
    Split {
        groups: Vec<Vec<u64>>,
    },
    /// `from`'s packets to `to` are dropped (one direction only).
    Oneway {
        from: u64,
        to: Vec<u64>,
    },
    /// `left` and `right` cannot reach each other; `bridge` reaches both.
    Bridge {
        left: Vec<u64>,
        right: Vec<u64>,
        bridge: u64,
    },
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill",
            Fault::Pause { .. } => "pause",
            Fault::Restart { .. } => "restart",
            Fault::Leader { .. } => "leader",
            Fault::Split { .. } => "partition",
            Fault::Oneway { .. } => "oneway",
            Fault::Bridge { .. } => "bridge",
        }
    }
}

/// One step of a schedule: quiet for `quiet`, then `fault` for `hold`, then heal.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub quiet_ms: u64,
    pub hold_ms: u64,
    pub fault: Fault,
}

/// The schedule of a run of `duration` on `nodes` nodes, drawn from `seed`: steps until the
/// time is used up (each at least a second; at most one fault at a time).
pub fn plan(seed: u64, nodes: usize, nemeses: &[Nemesis], duration: Duration) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let mut out = Vec::new();
    let total = duration.as_millis() as u64;
    let mut used = 0u64;
    // bounded: every step uses at least 2 s of the run
    for _ in 0..(total / 2000 + 1) {
        let quiet_ms = rng.random_range(2000..5000);
        let hold_ms = rng.random_range(3000..9000);
        if used + quiet_ms + hold_ms > total || nemeses.is_empty() {
            break;
        }
        let kind = nemeses[rng.random_range(0..nemeses.len())];
        if let Some(fault) = draw(&mut rng, kind, nodes) {
            out.push(Step {
                quiet_ms,
                hold_ms,
                fault,
            });
        }
        used += quiet_ms + hold_ms;
    }
    out
}

fn draw(rng: &mut StdRng, kind: Nemesis, nodes: usize) -> Option<Fault> {
    let n = nodes as u64;
    let mut ids: Vec<u64> = (1..=n).collect();
    shuffle(rng, &mut ids);
    let one = ids.first().copied()?;
    Some(match kind {
        Nemesis::Kill => Fault::Kill { node: one },
        Nemesis::Pause => Fault::Pause { node: one },
        Nemesis::Restart => Fault::Restart { node: one },
        Nemesis::Leader => Fault::Leader {
            kill: rng.random_bool(0.5),
        },
        _ if nodes < 2 => return None,
        Nemesis::Isolate => Fault::Split {
            groups: vec![vec![one], ids[1..].to_vec()],
        },
        Nemesis::Partition => {
            // a minority of 1..=(n-1)/2 nodes (1 of 2 or 3, 1..2 of 5)
            let minority = rng.random_range(1..=((nodes - 1) / 2).max(1));
            let mut a = ids[..minority].to_vec();
            let mut b = ids[minority..].to_vec();
            a.sort();
            b.sort();
            Fault::Split { groups: vec![a, b] }
        }
        Nemesis::Oneway => {
            let mut to = ids[1..].to_vec();
            to.sort();
            Fault::Oneway { from: one, to }
        }
        Nemesis::Bridge => {
            if nodes < 3 {
                return None;
            }
            let rest = &ids[1..];
            let half = rest.len() / 2;
            let mut left = rest[..half].to_vec();
            let mut right = rest[half..].to_vec();
            left.sort();
            right.sort();
            Fault::Bridge {
                left,
                right,
                bridge: one,
            }
        }
    })
}

fn shuffle(rng: &mut StdRng, v: &mut [u64]) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

/// A fault in force, and how to heal it.
pub enum Active {
    /// The node to restart.
    Down(u64),
    /// The node to resume.
    Paused(u64),
    /// The table to delete.
    Net,
    /// Nothing was done (e.g. no leader to target).
    Nothing,
}

/// Injects `fault` into `swarm` (network faults into `table`); what it hit and how to heal it.
pub fn inject(swarm: &mut Swarm, table: &Table, fault: &Fault) -> Result<(Active, Vec<u64>)> {
    let port = |swarm: &Swarm, id: u64| -> Result<u16> { Ok(swarm.node(id)?.p2p_addr.port()) };
    let ports = |swarm: &Swarm, ids: &[u64]| -> Result<Vec<u16>> {
        ids.iter().map(|id| port(swarm, *id)).collect()
    };
    Ok(match fault {
        Fault::Kill { node } => {
            swarm.kill9(*node)?;
            (Active::Down(*node), vec![*node])
        }
        Fault::Pause { node } => {
            swarm.pause(*node)?;
            (Active::Paused(*node), vec![*node])
        }
        Fault::Restart { node } => {
            swarm.stop(*node)?;
            (Active::Down(*node), vec![*node])
        }
        Fault::Leader { kill } => match swarm.leader()? {
            None => (Active::Nothing, vec![]),
            Some(l) if *kill => {
                swarm.kill9(l)?;
                (Active::Down(l), vec![l])
            }
            Some(l) => {
                swarm.pause(l)?;
                (Active::Paused(l), vec![l])
            }
        },
        Fault::Split { groups } => {
            let g: Vec<Vec<u16>> = groups
                .iter()
                .map(|ids| ports(swarm, ids))
                .collect::<Result<_>>()?;
            table.set(&split(&g))?;
            (Active::Net, groups.concat())
        }
        Fault::Oneway { from, to } => {
            table.set(&[OneWay {
                from: vec![port(swarm, *from)?],
                to: ports(swarm, to)?,
            }])?;
            (Active::Net, vec![*from])
        }
        Fault::Bridge {
            left,
            right,
            bridge,
        } => {
            table.set(&split(&[ports(swarm, left)?, ports(swarm, right)?]))?;
            (Active::Net, vec![*bridge])
        }
    })
}

/// Heals what [`inject`] did.
pub fn heal(swarm: &mut Swarm, table: &Table, active: &Active) -> Result<()> {
    match active {
        Active::Down(id) => swarm.restart(*id),
        Active::Paused(id) => swarm.resume(*id),
        Active::Net => table.heal(),
        Active::Nothing => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_the_same_for_the_same_seed_and_fits_the_run() {
        let all = Nemesis::ALL.to_vec();
        let a = plan(7, 5, &all, Duration::from_secs(300));
        let b = plan(7, 5, &all, Duration::from_secs(300));
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert!(a.len() >= 10, "{}", a.len());
        let used: u64 = a.iter().map(|s| s.quiet_ms + s.hold_ms).sum();
        assert!(used <= 300_000);
        let c = plan(8, 5, &all, Duration::from_secs(300));
        assert_ne!(format!("{a:?}"), format!("{c:?}"));
    }

    #[test]
    fn partitions_leave_a_majority_together() {
        for seed in 0..200 {
            for nodes in [3usize, 5] {
                for step in plan(seed, nodes, &[Nemesis::Partition], Duration::from_secs(60)) {
                    let Fault::Split { groups } = step.fault else {
                        panic!("a partition plan made {:?}", step.fault);
                    };
                    let biggest = groups.iter().map(Vec::len).max().unwrap_or(0);
                    assert!(biggest * 2 > nodes, "{groups:?}");
                    assert_eq!(groups.concat().len(), nodes);
                }
            }
        }
    }

    #[test]
    fn nemesis_lists_parse() {
        assert_eq!(
            parse_list("pause,kill,kill").expect("parses"),
            [Nemesis::Kill, Nemesis::Pause]
        );
        assert_eq!(parse_list("all").expect("parses").len(), 8);
        assert!(parse_list("kill,nuke").is_err());
        assert_eq!(list_name(&[Nemesis::Kill, Nemesis::Oneway]), "kill,oneway");
    }
}
