//! The replica-set commands: in-sync states, promotions, and replicas added, removed and
//! moved. Every one applies only in the shard's current epoch.

use super::*;

impl MetadataState {
    /// Applies a replica-set command (any other is an internal error).
    pub(super) fn apply_replicas(&mut self, cmd: &Command) -> Result<Applied> {
        match cmd {
            Command::SetReplicaState {
                collection,
                uid,
                shard,
                node,
                state,
                epoch,
            } => {
                let s = self.shard_at_epoch(collection, *uid, *shard, *epoch)?;
                if *state == ReplicaState::Initializing {
                    return Err(Error::bad_request("a replica cannot be set Initializing"));
                }
                if s.primary() == Some(*node) {
                    return Err(Error::conflict(format!(
                        "node {node} holds the primary of shard {shard}; only a promotion changes it"
                    )));
                }
                let at = s.replica_index(*node)?;
                s.replicas[at].state = *state;
                Ok(Applied::ReplicasChanged {
                    uid: *uid,
                    shard: *shard,
                })
            }
            Command::PromoteReplica {
                collection,
                uid,
                shard,
                node,
                epoch,
            } => {
                let s = self.shard_at_epoch(collection, *uid, *shard, *epoch)?;
                let at = s
                    .replicas
                    .iter()
                    .position(|r| r.node == *node && r.state == ReplicaState::Active)
                    .ok_or_else(|| {
                        Error::conflict(format!(
                            "node {node} holds no in-sync replica of shard {shard}"
                        ))
                    })?;
                if at == 0 {
                    return Err(Error::conflict(format!(
                        "node {node} is the primary of shard {shard} already"
                    )));
                }
                let promoted = s.replicas.remove(at);
                if let Some(old) = s.replicas.first_mut() {
                    old.state = ReplicaState::Dead;
                }
                s.replicas.insert(0, promoted);
                s.epoch += 1;
                Ok(Applied::ReplicasChanged {
                    uid: *uid,
                    shard: *shard,
                })
            }
            Command::AddReplica {
                collection,
                uid,
                shard,
                node,
                epoch,
            } => {
                let s = self.shard_at_epoch(collection, *uid, *shard, *epoch)?;
                if s.replicas.iter().any(|r| r.node == *node) {
                    return Err(Error::conflict(format!(
                        "node {node} holds a replica of shard {shard} already"
                    )));
                }
                s.replicas.push(Replica {
                    node: *node,
                    state: ReplicaState::Partial,
                });
                Ok(Applied::ReplicasChanged {
                    uid: *uid,
                    shard: *shard,
                })
            }
            Command::RemoveReplica {
                collection,
                uid,
                shard,
                node,
                epoch,
            } => {
                let s = self.shard_at_epoch(collection, *uid, *shard, *epoch)?;
                if s.primary() == Some(*node) {
                    return Err(Error::conflict(format!(
                        "node {node} holds the primary of shard {shard}; promote another replica first"
                    )));
                }
                let at = s.replica_index(*node)?;
                s.replicas.remove(at);
                // removing either end of a move ends it
                if s.moving.is_some_and(|m| m.from == *node || m.to == *node) {
                    s.moving = None;
                }
                Ok(Applied::ReplicasChanged {
                    uid: *uid,
                    shard: *shard,
                })
            }
            Command::MoveReplica {
                collection,
                uid,
                shard,
                from,
                to,
                epoch,
            } => {
                let s = self.shard_at_epoch(collection, *uid, *shard, *epoch)?;
                if let Some(m) = s.moving {
                    return Err(Error::conflict(format!(
                        "shard {shard} is moving from peer {} to peer {} already",
                        m.from, m.to
                    )));
                }
                if from == to {
                    return Err(Error::bad_request(format!(
                        "a move of shard {shard} needs two peers, not {from} twice"
                    )));
                }
                if s.state_on(*from) != Some(ReplicaState::Active) {
                    return Err(Error::conflict(format!(
                        "peer {from} holds no in-sync replica of shard {shard}"
                    )));
                }
                if s.state_on(*to).is_some() {
                    return Err(Error::conflict(format!(
                        "node {to} holds a replica of shard {shard} already"
                    )));
                }
                s.replicas.push(Replica {
                    node: *to,
                    state: ReplicaState::Partial,
                });
                s.moving = Some(ShardMove {
                    from: *from,
                    to: *to,
                });
                Ok(Applied::ReplicasChanged {
                    uid: *uid,
                    shard: *shard,
                })
            }
            other => Err(Error::internal(format!(
                "not a replica-set command: {other:?}"
            ))),
        }
    }

    /// The shard a replica-set command names, if it still exists and is still at `epoch`.
    fn shard_at_epoch(
        &mut self,
        collection: &str,
        uid: u64,
        shard: ShardId,
        epoch: u64,
    ) -> Result<&mut ShardMeta> {
        let c = self
            .collections
            .get_mut(collection)
            .filter(|c| c.uid == uid)
            .ok_or_else(|| missing_collection(collection))?;
        let s = c
            .shards
            .get_mut(&shard)
            .ok_or_else(|| Error::not_found(format!("shard {shard} not found")))?;
        if s.epoch != epoch {
            return Err(Error::conflict(format!(
                "stale epoch {epoch} for shard {shard}: it is at epoch {}",
                s.epoch
            )));
        }
        Ok(s)
    }
}
