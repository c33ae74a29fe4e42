//! Raft RPCs over the node's [`Transport`] (`Service::Raft`, the same transport as shard and admin
//! calls): the wire enums [`RaftRpc`] and [`RaftReply`], openraft's network traits on top of them,
//! and the server-side [`handle_rpc`].
//!
//! The enums derive serde so they travel as bytes ([`encode_rpc`] / [`decode_reply`] use our
//! versioned, size-limited codec). openraft drops the call's future when the RPC's time is up;
//! every call also carries the transport's own deadline ([`RAFT_CALL_DEADLINE`]).
//!
//! A peer is called by node id. Its address comes from the membership openraft hands us
//! ([`MetaNode::p2p_addr`]) and is written into the transport's address book before the call,
//! so a member back on new addresses is reached there at once.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use serde::{Deserialize, Serialize};

use super::{MetaNode, NodeId, Raft, TypeConfig};
use crate::codec;
use crate::error::{ErrorKind, Result};
use crate::transport::{Service, Transport};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Deadline of one Raft RPC on the transport.
pub const RAFT_CALL_DEADLINE: Duration = Duration::from_secs(3);

/// A Raft request from one node to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RaftRpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

impl RaftRpc {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RaftRpc::AppendEntries(_) => "append_entries",
            RaftRpc::Vote(_) => "vote",
            RaftRpc::InstallSnapshot(_) => "install_snapshot",
        }
    }
}

/// The answer to a [`RaftRpc`], including the remote Raft's own error.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
}

/// Why a transport could not deliver an RPC or bring back its reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The peer cannot be reached (refused, no route, cut off, not running): openraft backs off.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The request may or may not have arrived (a stream broke, a frame was bad).
    #[error("raft rpc failed: {0}")]
    Failed(String),
}

/// Serves one incoming Raft RPC on this node's Raft.
pub async fn handle_rpc(raft: &Raft, rpc: RaftRpc) -> RaftReply {
    match rpc {
        RaftRpc::AppendEntries(req) => RaftReply::AppendEntries(raft.append_entries(req).await),
        RaftRpc::Vote(req) => RaftReply::Vote(raft.vote(req).await),
        RaftRpc::InstallSnapshot(req) => {
            RaftReply::InstallSnapshot(raft.install_snapshot(req).await)
        }
    }
}

/// Encodes a request for a byte transport (version byte, bincode).
pub fn encode_rpc(rpc: &RaftRpc) -> Result<Vec<u8>> {
    codec::encode(rpc)
}

/// Decodes a request from a byte transport; bad input is a `BadRequest`, never a panic.
pub fn decode_rpc(bytes: &[u8]) -> Result<RaftRpc> {
    codec::decode(bytes)
}

/// Encodes a reply for a byte transport.
pub fn encode_reply(reply: &RaftReply) -> Result<Vec<u8>> {
    codec::encode(reply)
}

/// Decodes a reply from a byte transport.
pub fn decode_reply(bytes: &[u8]) -> Result<RaftReply> {
    codec::decode(bytes)
}

/// openraft's network factory over the node's [`Transport`].
#[derive(Clone)]
pub struct NetworkFactory {
    transport: Arc<dyn Transport>,
}

impl NetworkFactory {
    /// A factory whose connections all go through `transport`.
    pub fn new(transport: Arc<dyn Transport>) -> NetworkFactory {
        NetworkFactory { transport }
    }
}

/// openraft's connection to one peer: the transport plus the peer's id and addresses.
pub struct Network {
    transport: Arc<dyn Transport>,
    target: NodeId,
    node: MetaNode,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &MetaNode) -> Network {
        Network {
            transport: self.transport.clone(),
            target,
            node: node.clone(),
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, MetaNode, RaftError<NodeId, E>>;

fn unexpected<E: std::error::Error>(
    sent: &'static str,
    got: &RaftReply,
) -> RPCError<NodeId, MetaNode, E> {
    let e = std::io::Error::other(format!(
        "reply to {sent} does not match the request: {}",
        match got {
            RaftReply::AppendEntries(_) => "append_entries",
            RaftReply::Vote(_) => "vote",
            RaftReply::InstallSnapshot(_) => "install_snapshot",
        }
    ));
    RPCError::Network(NetworkError::new(&e))
}

fn net_err<E: std::error::Error>(e: NetError) -> RPCError<NodeId, MetaNode, E> {
    match e {
        NetError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
        NetError::Failed(_) => RPCError::Network(NetworkError::new(&e)),
    }
}

/// A remote Raft that has stopped is, to us, an unreachable peer: openraft backs off from it.
fn remote_err<E: std::error::Error>(
    target: NodeId,
    node: &MetaNode,
    e: RaftError<NodeId, E>,
) -> RPCError<NodeId, MetaNode, RaftError<NodeId, E>> {
    match e {
        RaftError::Fatal(f) => RPCError::Unreachable(Unreachable::new(&f)),
        api @ RaftError::APIError(_) => {
            RPCError::RemoteError(RemoteError::new_with_node(target, node.clone(), api))
        }
    }
}

impl Network {
    async fn call(&self, rpc: RaftRpc) -> Result<RaftReply, NetError> {
        let request = encode_rpc(&rpc)
            .map_err(|e| NetError::Failed(format!("encode {}: {e}", rpc.kind())))?;
        self.learn_address();
        let reply = self
            .transport
            .call(self.target, Service::Raft, request, RAFT_CALL_DEADLINE)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Unavailable | ErrorKind::Timeout => NetError::Unreachable(e.message),
                ErrorKind::BadRequest
                | ErrorKind::Unauthenticated
                | ErrorKind::Forbidden
                | ErrorKind::NotFound
                | ErrorKind::AlreadyExists
                | ErrorKind::Conflict
                | ErrorKind::TooManyRequests { .. }
                | ErrorKind::PayloadTooLarge
                | ErrorKind::InsufficientStorage
                | ErrorKind::Internal => NetError::Failed(e.message),
            })?;
        decode_reply(&reply)
            .map_err(|e| NetError::Failed(format!("reply from node {}: {e}", self.target)))
    }

    /// Writes the membership's address of the peer into the transport's address book when it
    /// is new or changed (an address that is not `host:port` of an IP is left to the book).
    fn learn_address(&self) {
        let Ok(addr) = self.node.p2p_addr.parse::<SocketAddr>() else {
            return;
        };
        let known = self
            .transport
            .peers()
            .into_iter()
            .any(|(id, at)| id == self.target && at == addr);
        if !known {
            self.transport.set_peer(self.target, addr);
        }
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self
            .call(RaftRpc::AppendEntries(rpc))
            .await
            .map_err(net_err)?
        {
            RaftReply::AppendEntries(r) => r.map_err(|e| remote_err(self.target, &self.node, e)),
            other => Err(unexpected("append_entries", &other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self
            .call(RaftRpc::InstallSnapshot(rpc))
            .await
            .map_err(net_err)?
        {
            RaftReply::InstallSnapshot(r) => r.map_err(|e| remote_err(self.target, &self.node, e)),
            other => Err(unexpected("install_snapshot", &other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.call(RaftRpc::Vote(rpc)).await.map_err(net_err)? {
            RaftReply::Vote(r) => r.map_err(|e| remote_err(self.target, &self.node, e)),
            other => Err(unexpected("vote", &other)),
        }
    }
}
