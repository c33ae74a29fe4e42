//! An in-memory [`RaftTransport`] for in-process clusters: a hub of Raft handles, with faults.
//!
//! Every RPC and reply goes through the same byte encoding as a real transport, so a type that
//! does not survive the codec fails here first. A node can be cut off (isolated): then nothing
//! reaches it and nothing leaves it, as in a network partition of one node.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use super::network::{BoxFuture, ByteTransport, NetError, OverBytes, RaftTransport};
use super::{MetaNode, MetaRaft, NodeId};

#[derive(Default)]
struct Hub {
    nodes: HashMap<NodeId, MetaRaft>,
    isolated: HashSet<NodeId>,
}

/// The hub: register each node after starting it, hand each node its own
/// [`MemRouter::transport`]. RPCs take the production path: [`OverBytes`] encodes them and the
/// receiver serves them with [`MetaRaft::handle_rpc_bytes`].
#[derive(Clone, Default)]
pub struct MemRouter {
    hub: Arc<Mutex<Hub>>,
}

impl MemRouter {
    /// An empty hub.
    pub fn new() -> MemRouter {
        MemRouter::default()
    }

    /// The transport node `from` sends through (it knows its sender, so isolation is two-way).
    pub fn transport(&self, from: NodeId) -> Arc<dyn RaftTransport> {
        Arc::new(OverBytes(MemBytes {
            from,
            hub: self.hub.clone(),
        }))
    }

    /// Makes `raft` reachable as node `raft.id()` (replacing an earlier registration, e.g. on
    /// restart).
    pub fn register(&self, raft: MetaRaft) {
        self.hub.lock().nodes.insert(raft.id(), raft);
    }

    /// Makes node `id` unreachable as if its process were gone.
    pub fn unregister(&self, id: NodeId) {
        self.hub.lock().nodes.remove(&id);
    }

    /// Cuts node `id` off: RPCs to and from it fail as unreachable.
    pub fn isolate(&self, id: NodeId) {
        self.hub.lock().isolated.insert(id);
    }

    /// Reconnects an isolated node.
    pub fn heal(&self, id: NodeId) {
        self.hub.lock().isolated.remove(&id);
    }
}

struct MemBytes {
    from: NodeId,
    hub: Arc<Mutex<Hub>>,
}

impl ByteTransport for MemBytes {
    fn call(
        &self,
        target: NodeId,
        _node: &MetaNode,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, NetError>> {
        let from = self.from;
        let hub = self.hub.clone();
        Box::pin(async move {
            let raft = {
                let hub = hub.lock();
                if hub.isolated.contains(&from) || hub.isolated.contains(&target) {
                    return Err(NetError::Unreachable(format!(
                        "node {from} -> node {target}: cut off"
                    )));
                }
                hub.nodes
                    .get(&target)
                    .cloned()
                    .ok_or_else(|| NetError::Unreachable(format!("node {target} is not running")))?
            };
            let reply = raft
                .handle_rpc_bytes(&request)
                .await
                .map_err(|e| NetError::Failed(format!("node {target}: {e}")))?;
            // a reply is lost if the link was cut while the request was being served
            if hub.lock().isolated.contains(&target) {
                return Err(NetError::Failed(format!(
                    "node {target}: cut off before replying"
                )));
            }
            Ok(reply)
        })
    }
}
