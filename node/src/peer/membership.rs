//! Membership of the metadata group: joining through a seed, adding and removing members on the
//! leader, announcing new addresses after a restart, and pinging peers so the link knows who is
//! down. The loops here run on their own tasks, started once the node serves
//! ([`spawn_background`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_cluster::meta::NodeId;
use tessera_cluster::raft::{MetaNode, MetaRaft, Role};
use tessera_cluster::transport::Service;
use tessera_cluster::{Error, ErrorKind, Result, codec};

use super::link::{ADMIN_DEADLINE, Link};
use super::rpc::AdminRpc;
use crate::config::ClusterConfig;

/// Peers are pinged this often; one missed ping marks a peer down until it answers again.
const PING_EVERY: Duration = Duration::from_millis(300);
/// A joining node retries this long before giving up.
const JOIN_FOR: Duration = Duration::from_secs(120);

/// Pings peers, and joins the cluster through `config.join` or tells the leader about new
/// addresses of this member.
pub fn spawn_background(raft: &MetaRaft, link: &Arc<Link>, config: &ClusterConfig) {
    tokio::spawn(ping_peers(raft.clone(), link.clone()));
    let token = config.join_token.as_ref().map(|t| t.0.clone());
    match config.join {
        Some(seed) => tokio::spawn(join(raft.clone(), link.clone(), seed, token)),
        None => tokio::spawn(announce(raft.clone(), link.clone(), token)),
    };
}

/// A node's request to join, as the leader handles it.
pub struct JoinRequest {
    pub id: NodeId,
    pub node: MetaNode,
    /// The joining node's metadata lists it as a member already (it is back, not new).
    pub member: bool,
    /// The join secret it presented (checked by the node that took the request).
    pub token: Option<String>,
}

/// Writes every member's p2p address into the transport's address book.
pub fn learn_addresses<'a>(
    link: &Link,
    members: impl IntoIterator<Item = (&'a NodeId, &'a MetaNode)>,
) {
    for (id, member) in members {
        if let Ok(addr) = member.p2p_addr.parse() {
            link.transport.set_peer(*id, addr);
        }
    }
}

/// Pings every other member; a peer that misses a ping is down until it answers.
async fn ping_peers(raft: MetaRaft, link: Arc<Link>) {
    let me = raft.id();
    loop {
        tokio::time::sleep(PING_EVERY).await;
        // the address book follows the membership (a restarted node learns it from its log)
        let members = raft.metrics().nodes;
        learn_addresses(&link, &members);
        link.ping_round(members.keys().copied().filter(|id| *id != me))
            .await;
    }
}

/// A member restarted with other addresses (a pod with a new IP) tells the leader, so that
/// peers dial the new ones: the same request as a join, which updates a member's addresses.
async fn announce(raft: MetaRaft, link: Arc<Link>, token: Option<String>) {
    let started = Instant::now();
    while started.elapsed() < JOIN_FOR {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let metrics = raft.metrics();
        let Some(known) = metrics.nodes.get(&raft.id()) else {
            return; // not a member (yet): nothing to update
        };
        if known == raft.node() {
            return;
        }
        let Some(leader) = metrics.leader_node else {
            continue;
        };
        let Ok(addr) = leader.p2p_addr.parse::<SocketAddr>() else {
            continue;
        };
        join(raft.clone(), link.clone(), addr, token).await;
        return;
    }
}

/// Asks the seed node to add this node, until it is a member (bounded).
async fn join(raft: MetaRaft, link: Arc<Link>, seed: SocketAddr, token: Option<String>) {
    let started = Instant::now();
    let rpc = AdminRpc::Join {
        id: raft.id(),
        node: raft.node().clone(),
        member: raft.metrics().nodes.contains_key(&raft.id()),
        token,
    };
    let Ok(body) = codec::encode(&rpc) else {
        return;
    };
    while started.elapsed() < JOIN_FOR {
        match link
            .transport
            .call_addr(seed, Service::Admin, body.clone(), ADMIN_DEADLINE)
            .await
        {
            Ok(_) => {
                tracing::info!(%seed, "joined the cluster");
                return;
            }
            Err(e)
                if matches!(
                    e.kind,
                    ErrorKind::AlreadyExists | ErrorKind::Unauthenticated
                ) =>
            {
                // retrying cannot help: another member holds this node's id, or the join token
                // is wrong (membership changes in progress answer Conflict, and are retried)
                tracing::error!(%seed, error = %e, "join refused; this node is not a member");
                return;
            }
            Err(e) => {
                tracing::warn!(%seed, error = %e, "join failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    tracing::error!(%seed, "could not join the cluster");
}

/// On the leader (forwarded there otherwise): adds `id` as a learner, then as a voter while
/// the cluster has fewer voters than `max_voters`. Idempotent.
pub async fn add_member(
    raft: &MetaRaft,
    link: &Link,
    join: JoinRequest,
    max_voters: usize,
) -> Result<()> {
    let JoinRequest {
        id,
        node,
        member,
        token,
    } = join;
    let metrics = raft.metrics();
    if metrics.role != Role::Leader {
        let (leader, _) = raft
            .leader()
            .ok_or_else(|| Error::unavailable("no metadata leader yet"))?;
        let body = codec::encode(&AdminRpc::Join {
            id,
            node,
            member,
            token,
        })?;
        link.transport
            .call(leader, Service::Admin, body, ADMIN_DEADLINE)
            .await?;
        return Ok(());
    }
    if let Some(known) = metrics.nodes.get(&id)
        && *known != node
        && !member
    {
        return Err(Error::already_exists(format!(
            "node id {id} is already held by the member at {known}; start this node with \
             another --node-id, or without one to get a random id"
        )));
    }
    if let Ok(addr) = node.p2p_addr.parse() {
        link.transport.set_peer(id, addr);
    }
    if metrics.nodes.get(&id).is_some_and(|known| *known != node) {
        // a member back with other addresses: record them (voter or learner, it stays one)
        raft.set_node(id, node.clone()).await.map_err(Error::from)?;
        tracing::info!(node = id, p2p = %node.p2p_addr, "member addresses updated");
        return Ok(());
    }
    if !metrics.voters.contains(&id) {
        raft.add_learner(id, node).await.map_err(Error::from)?;
        let voters = raft.metrics().voters;
        if voters.len() < max_voters {
            let mut next = voters;
            next.insert(id);
            raft.change_membership(next, true)
                .await
                .map_err(Error::from)?;
        }
    }
    tracing::info!(node = id, "member added");
    Ok(())
}

/// On the leader: removes `id` from the voters (never the last one).
pub async fn remove_member(
    raft: &MetaRaft,
    link: &Link,
    id: NodeId,
    max_voters: usize,
) -> Result<()> {
    let metrics = raft.metrics();
    if metrics.role != Role::Leader {
        return Err(Error::unavailable("not the metadata leader"));
    }
    if !metrics.voters.contains(&id) {
        // a learner: it leaves the group; no voter changes
        raft.remove_learner(id).await.map_err(Error::from)?;
        tracing::info!(node = id, "learner removed");
        return Ok(());
    }
    let mut voters = metrics.voters.clone();
    voters.remove(&id);
    if voters.is_empty() {
        return Err(Error::bad_request("cannot remove the last voter"));
    }
    // a voter that leaves is replaced by a reachable learner, so the metadata keeps its
    // fault tolerance
    promote_learners(&mut voters, &metrics, link, max_voters, &[id]);
    raft.change_membership(voters, false)
        .await
        .map_err(Error::from)?;
    Ok(())
}

/// Adds reachable learners to `voters` until it has `max_voters` (never those in `skip`).
fn promote_learners(
    voters: &mut BTreeSet<NodeId>,
    metrics: &tessera_cluster::raft::MetaMetrics,
    link: &Link,
    max_voters: usize,
    skip: &[NodeId],
) {
    for learner in metrics.nodes.keys() {
        if voters.len() >= max_voters {
            break;
        }
        if !voters.contains(learner)
            && !skip.contains(learner)
            && (*learner == metrics.id || link.check_up(*learner).is_ok())
        {
            tracing::info!(node = learner, "learner promoted to voter");
            voters.insert(*learner);
        }
    }
}

/// On the leader: a voter unreachable for longer than `timeout` is replaced by a reachable
/// learner (it stays a learner itself, and votes again only if a voter place frees up later).
/// Nothing is done without a learner to promote.
pub async fn replace_lost_voters(
    raft: &MetaRaft,
    link: &Link,
    max_voters: usize,
    timeout: Duration,
) -> Result<()> {
    let metrics = raft.metrics();
    if metrics.role != Role::Leader {
        return Ok(());
    }
    let lost: Vec<NodeId> = metrics
        .voters
        .iter()
        .copied()
        .filter(|v| *v != metrics.id && link.down_for(*v).is_some_and(|d| d >= timeout))
        .collect();
    if lost.is_empty() {
        return Ok(());
    }
    let mut voters = metrics.voters.clone();
    let before = voters.len();
    for v in &lost {
        voters.remove(v);
    }
    promote_learners(&mut voters, &metrics, link, max_voters.min(before), &lost);
    if voters.len() < before {
        // no learner to take the places: keep the voters as they are
        return Ok(());
    }
    tracing::warn!(lost = ?lost, voters = ?voters, "voters lost past the replica timeout replaced by learners");
    raft.change_membership(voters, true)
        .await
        .map_err(Error::from)
}
