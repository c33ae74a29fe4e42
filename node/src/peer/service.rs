//! The transport handler: serves peers' Raft, shard and admin calls on this node.
//!
//! Built once Raft, the shard manager and the catalog exist, and installed on the transport with
//! [`tessera_cluster::transport::Transport::serve`]; before that the transport refuses calls, so
//! nothing here waits for a part that is not there yet.
//!
//! Architecture invariant: Raft, shard and metadata calls are served only to current members,
//! each calling from the address the membership records for it. Holding a certificate of the
//! cluster CA is enough to ask to join (and to ping), not to read a tenant's data or to vote.
//! (QUIC validates a caller's address in its handshake, so it cannot be forged off-path.)

use std::sync::Arc;

use tessera_cluster::meta::NodeId;
use tessera_cluster::raft::MetaRaft;
use tessera_cluster::request::MetaRequest;
use tessera_cluster::transport::{Handler, PeerInfo, Service, handler_fn};
use tessera_cluster::{Error, ErrorKind, Result, codec};
use tessera_shard::manager::ShardManager;

use super::link::Link;
use super::membership::{add_member, remove_member};
use super::rpc::{AdminReply, AdminRpc, MetaExecutor};
use crate::quota::Quotas;
use crate::shard_rpc;

/// What serving peers' calls needs of this node.
pub struct PeerService {
    pub raft: MetaRaft,
    pub link: Arc<Link>,
    pub shards: Arc<ShardManager>,
    /// The replica sets (the replication layer above the catalog).
    pub sets: Arc<dyn shard_rpc::ReplicaSets>,
    pub quotas: Arc<Quotas>,
    /// Runs forwarded metadata changes (the catalog).
    pub meta: Arc<dyn MetaExecutor>,
    /// Voters the metadata group grows to.
    pub max_voters: usize,
    /// The secret a joining node must present, if the cluster has one.
    pub join_token: Option<crate::config::JoinToken>,
    /// Member ids whose binding to their certificate is being proposed.
    pub binding: Arc<dashmap::DashSet<NodeId>>,
}

impl PeerService {
    /// The transport handler serving this node's services.
    pub fn handler(self: Arc<Self>) -> Arc<dyn Handler> {
        handler_fn(move |from: PeerInfo, service: Service, body: Vec<u8>| {
            let served = self.clone();
            async move { served.serve(from, service, &body).await }
        })
    }

    /// Refuses a caller that is not a member calling from its recorded address. A node that is
    /// in no membership yet (joining: it has no log) takes Raft calls from anyone the CA
    /// vouches for, or it could never receive its first entries.
    fn check_member(&self, from: &PeerInfo, fresh_node_may_serve: bool) -> Result<()> {
        let nodes = self.raft.metrics().nodes;
        if nodes.is_empty() && fresh_node_may_serve {
            return Ok(());
        }
        let recorded = from
            .node
            .and_then(|id| nodes.get(&id))
            .and_then(|node| node.p2p_addr.parse::<std::net::SocketAddr>().ok());
        if recorded == Some(from.addr)
            && let Some(id) = from.node
        {
            return self.check_key(id, from);
        }
        tracing::warn!(caller = %from.addr, claimed = ?from.node, "call from a non-member refused");
        Err(Error::new(
            ErrorKind::Unauthenticated,
            "the caller is not a member of this cluster",
        ))
    }

    /// Refuses a member calling with another identity than the one its id is bound to; binds
    /// an id that has none yet (a member from before bindings) to the identity it calls with.
    fn check_key(&self, id: NodeId, from: &PeerInfo) -> Result<()> {
        let Some(key) = from.key else {
            // a transport without certificates
            return Ok(());
        };
        let bound = self.raft.state().read().node_keys.get(&id).copied();
        match bound {
            Some(tessera_cluster::meta::RETIRED_KEY) => Err(Error::new(
                ErrorKind::Unauthenticated,
                format!("node {id} was removed from the cluster"),
            )),
            Some(bound) if bound == key => Ok(()),
            Some(_) => {
                tracing::warn!(caller = %from.addr, claimed = id, "call refused: the certificate is not the one this node id is bound to");
                metrics::counter!("tessera_peer_identity_refusals_total").increment(1);
                Err(Error::new(
                    ErrorKind::Unauthenticated,
                    format!("the caller's certificate is not the one node {id} joined with"),
                ))
            }
            None => {
                if self.binding.insert(id) {
                    let meta = self.meta.clone();
                    let binding = self.binding.clone();
                    tokio::spawn(async move {
                        let done = meta
                            .submit(MetaRequest::BindNodeKey { node: id, key })
                            .await;
                        if let Err(e) = done {
                            tracing::warn!(node = id, error = %e, "binding a member to its certificate failed; retried at its next call");
                        }
                        binding.remove(&id);
                    });
                }
                Ok(())
            }
        }
    }

    async fn serve(&self, from: PeerInfo, service: Service, body: &[u8]) -> Result<Vec<u8>> {
        match service {
            Service::Raft => {
                self.check_member(&from, true)?;
                self.raft.handle_rpc_bytes(body).await
            }
            Service::Shard | Service::Replication => {
                self.check_member(&from, false)?;
                shard_rpc::serve_remote(&self.shards, &*self.sets, &self.quotas, body).await
            }
            Service::Admin => self.serve_admin(from, body).await,
            Service::Transfer => Err(Error::bad_request(format!(
                "service {service:?} is not served"
            ))),
        }
    }

    async fn serve_admin(&self, from: PeerInfo, body: &[u8]) -> Result<Vec<u8>> {
        let reply = match codec::decode::<AdminRpc>(body)? {
            AdminRpc::Ping => AdminReply::Pong,
            AdminRpc::ReadIndex => {
                self.check_member(&from, false)?;
                AdminReply::Applied(
                    self.raft
                        .read_index(super::link::READ_INDEX_DEADLINE)
                        .await?,
                )
            }
            AdminRpc::HasReplica { uid, shard } => {
                self.check_member(&from, false)?;
                AdminReply::HasReplica(self.shards.contains((uid, shard)))
            }
            AdminRpc::Meta(request) => {
                self.check_member(&from, false)?;
                AdminReply::Applied(self.meta.execute(request).await?)
            }
            AdminRpc::Join {
                id,
                node,
                member,
                token,
            } => {
                if let Some(required) = &self.join_token
                    && !required.matches(token.as_deref())
                {
                    tracing::warn!(caller = %from.addr, node = id, "join refused: wrong or missing join token");
                    return Err(Error::new(
                        ErrorKind::Unauthenticated,
                        "join refused: the join token is missing or wrong",
                    ));
                }
                // a node id is bound to the certificate it first joined with
                if let Some(key) = from.key {
                    let bound = self.raft.state().read().node_keys.get(&id).copied();
                    if bound == Some(tessera_cluster::meta::RETIRED_KEY) {
                        tracing::warn!(caller = %from.addr, node = id, "join refused: the node id was removed from the cluster");
                        return Err(Error::new(
                            ErrorKind::Unauthenticated,
                            format!(
                                "join refused: node id {id} was removed from the cluster; a removed node joins anew under a new id with an empty data dir"
                            ),
                        ));
                    }
                    if bound.is_some_and(|b| b != key) {
                        tracing::warn!(caller = %from.addr, node = id, "join refused: the node id is bound to another certificate");
                        return Err(Error::new(
                            ErrorKind::Unauthenticated,
                            format!(
                                "join refused: node id {id} is bound to another certificate; a node that lost its key is removed and joins anew under a new id"
                            ),
                        ));
                    }
                    self.meta
                        .submit(MetaRequest::BindNodeKey { node: id, key })
                        .await?;
                }
                let join = super::membership::JoinRequest {
                    id,
                    node,
                    member,
                    token,
                };
                add_member(&self.raft, &self.link, join, self.max_voters).await?;
                AdminReply::Joined
            }
            AdminRpc::Remove { id } => {
                self.check_member(&from, false)?;
                remove_member(&self.raft, &self.link, id, self.max_voters).await?;
                // for good: a removed node that comes back is refused, not re-admitted
                self.meta
                    .submit(MetaRequest::RetireNode { node: id })
                    .await?;
                AdminReply::Joined
            }
        };
        tracing::debug!(peer = %from.addr, "admin call served");
        codec::encode(&reply)
    }
}
