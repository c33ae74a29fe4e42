//! Metadata change requests: what a client asks of the metadata ([`MetaRequest`]), beside what
//! the Raft log records ([`Command`]).
//!
//! A request carries only what the caller said (a shard key, "3 shards", maybe a placement); the
//! leader turns it into a command with [`decide`], which adds everything nondeterministic (the
//! nodes, the collection uid) from the state and load it sees at that moment. A follower forwards
//! the request, not a command, so placement is always decided on the leader against the latest
//! state.
//!
//! Architecture invariant: [`decide`] is pure (no clock, no randomness, no I/O, no local node
//! id); it is the only place that turns a request into a command, so placement and validation
//! are tested here without a cluster.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::meta::{
    CollectionParams, Command, MAX_SHARDS_PER_KEY, MetadataState, NodeId, PayloadIndex, ShardKey,
    ShardingMethod, place,
};
use crate::quota::Quota;

/// A metadata change as a client asks for it: forwardable to the leader, decided there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetaRequest {
    CreateCollection {
        name: String,
        params: CollectionParams,
    },
    DeleteCollection {
        name: String,
    },
    CreateShardKey {
        collection: String,
        key: ShardKey,
        /// The collection's `shard_number` when absent.
        shards_number: Option<u32>,
        /// The collection's `replication_factor` when absent.
        replication_factor: Option<u32>,
        /// The nodes to place the key's replicas on (least loaded among them); any node when
        /// absent.
        placement: Option<Vec<NodeId>>,
    },
    DeleteShardKey {
        collection: String,
        key: ShardKey,
    },
    CreatePayloadIndex {
        collection: String,
        field: String,
        index: PayloadIndex,
    },
    DeletePayloadIndex {
        collection: String,
        field: String,
    },
    SetTenantSuspended {
        tenant: String,
        suspended: bool,
    },
    SetTenantQuota {
        tenant: String,
        quota: Option<Quota>,
    },
    /// A replica-set change ([`Command::SetReplicaState`] or [`Command::PromoteReplica`]): it
    /// carries the epoch it was decided in and needs nothing the leader adds.
    Replicas(Command),
    /// Binds a node id to the identity it calls with ([`Command::BindNodeKey`]).
    BindNodeKey {
        node: NodeId,
        key: [u8; 32],
    },
    /// Marks a removed node id removed for good ([`Command::RetireNode`]).
    RetireNode {
        node: NodeId,
    },
    /// Changes collection aliases, all or none ([`Command::UpdateAliases`]).
    UpdateAliases {
        actions: Vec<crate::meta::AliasAction>,
    },
}

/// The command the leader proposes for `request`: validation and placement over `state` and
/// `load` (replicas held by each node that may take new ones), with `uid` as the id of anything
/// the command creates.
pub fn decide(
    state: &MetadataState,
    load: &BTreeMap<NodeId, usize>,
    uid: u64,
    request: MetaRequest,
) -> Result<Command> {
    match request {
        MetaRequest::CreateCollection { name, params } => {
            let shards = match params.sharding_method {
                // a replication factor the cluster cannot hold is refused, never capped: the
                // collection would report copies it does not have
                ShardingMethod::Auto => {
                    place(load, 0, params.shard_number, params.replication_factor)?
                }
                ShardingMethod::Custom => Vec::new(),
            };
            Ok(Command::CreateCollection {
                name,
                uid,
                params,
                shards,
            })
        }
        MetaRequest::DeleteCollection { name } => Ok(Command::DeleteCollection { name }),
        MetaRequest::CreateShardKey {
            collection,
            key,
            shards_number,
            replication_factor,
            placement,
        } => {
            let candidates = match &placement {
                Some(named) => placement_candidates(load, named)?,
                None => load.clone(),
            };
            let meta = state.collection(&collection)?;
            if existing_key(
                state,
                &collection,
                &key,
                shards_number,
                replication_factor,
                placement.as_deref(),
            )? {
                // the caller reads it back on its own node (it may not have applied it yet)
                return Err(Error::already_exists(format!(
                    "Shard key {key} already exists with the same settings"
                )));
            }
            let shards_number = shards_number.unwrap_or(meta.params.shard_number);
            if shards_number == 0 || shards_number > MAX_SHARDS_PER_KEY {
                return Err(Error::bad_request(format!(
                    "shards_number must be between 1 and {MAX_SHARDS_PER_KEY}"
                )));
            }
            let replication_factor = replication_factor.unwrap_or(meta.params.replication_factor);
            if replication_factor == 0 {
                return Err(Error::bad_request("replication_factor must be at least 1"));
            }
            if replication_factor < meta.params.write_consistency_factor {
                return Err(Error::bad_request(format!(
                    "replication_factor {replication_factor} is less than the collection's write_consistency_factor {}: no write could reach that many replicas",
                    meta.params.write_consistency_factor
                )));
            }
            let shards = place(
                &candidates,
                meta.next_shard_id,
                shards_number,
                replication_factor,
            )?;
            Ok(Command::CreateShardKey {
                collection,
                key,
                shards,
            })
        }
        MetaRequest::DeleteShardKey { collection, key } => {
            Ok(Command::DeleteShardKey { collection, key })
        }
        MetaRequest::CreatePayloadIndex {
            collection,
            field,
            index,
        } => Ok(Command::CreatePayloadIndex {
            collection,
            field,
            index,
        }),
        MetaRequest::DeletePayloadIndex { collection, field } => {
            Ok(Command::DeletePayloadIndex { collection, field })
        }
        MetaRequest::SetTenantSuspended { tenant, suspended } => {
            Ok(Command::SetTenantSuspended { tenant, suspended })
        }
        MetaRequest::SetTenantQuota { tenant, quota } => {
            Ok(Command::SetTenantQuota { tenant, quota })
        }
        MetaRequest::Replicas(
            command @ (Command::SetReplicaState { .. }
            | Command::PromoteReplica { .. }
            | Command::AddReplica { .. }
            | Command::RemoveReplica { .. }
            | Command::MoveReplica { .. }),
        ) => Ok(command),
        MetaRequest::BindNodeKey { node, key } => Ok(Command::BindNodeKey { node, key }),
        MetaRequest::RetireNode { node } => Ok(Command::RetireNode { node }),
        MetaRequest::UpdateAliases { actions } => Ok(Command::UpdateAliases { actions }),
        MetaRequest::Replicas(other) => Err(Error::bad_request(format!(
            "not a replica-set change: {other:?}"
        ))),
    }
}

/// Whether a create of shard key `key` finds it there already with the settings it asks for
/// (true: a repeated create, nothing to do), finds no such key (false), or finds it with other
/// settings (409 naming each difference). Absent settings are the collection's; a placement is
/// compatible when the key's replicas were placed among the nodes it names.
pub fn existing_key(
    state: &MetadataState,
    collection: &str,
    key: &ShardKey,
    shards_number: Option<u32>,
    replication_factor: Option<u32>,
    placement: Option<&[NodeId]>,
) -> Result<bool> {
    let meta = state.collection(collection)?;
    let (Some(shards), Some(settings)) = (meta.shards_of_key(key), meta.key_settings_of(key))
    else {
        return Ok(false);
    };
    let mut differences = Vec::new();
    let wanted_shards = shards_number.unwrap_or(meta.params.shard_number);
    if shards.len() != wanted_shards as usize {
        differences.push(format!(
            "shards_number {wanted_shards} (it has {})",
            shards.len()
        ));
    }
    let wanted_rf = replication_factor.unwrap_or(meta.params.replication_factor);
    if settings.replication_factor != wanted_rf {
        differences.push(format!(
            "replication_factor {wanted_rf} (it has {})",
            settings.replication_factor
        ));
    }
    if let Some(named) = placement
        && let Some(outside) = settings.placed_on.iter().find(|n| !named.contains(n))
    {
        differences.push(format!(
            "placement {named:?} (its replicas were placed on {:?}, peer {outside} among them)",
            settings.placed_on
        ));
    }
    if differences.is_empty() {
        return Ok(true);
    }
    Err(Error::conflict(format!(
        "Shard key {key} already exists with other settings than the create asks for: {}",
        differences.join(", ")
    )))
}

/// The nodes a placement names, with their load; every one must be a node that may take
/// replicas.
fn placement_candidates(
    load: &BTreeMap<NodeId, usize>,
    named: &[NodeId],
) -> Result<BTreeMap<NodeId, usize>> {
    if named.is_empty() {
        return Err(Error::bad_request("placement must name at least one peer"));
    }
    if let Some(unknown) = named.iter().find(|node| !load.contains_key(node)) {
        return Err(Error::bad_request(format!(
            "placement names unknown peer {unknown}"
        )));
    }
    Ok(load
        .iter()
        .filter(|(node, _)| named.contains(node))
        .map(|(node, held)| (*node, *held))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::meta::{Distance, HnswParams};

    fn params(
        method: ShardingMethod,
        shard_number: u32,
        replication_factor: u32,
    ) -> CollectionParams {
        CollectionParams {
            dim: 4,
            distance: Distance::Cosine,
            sharding_method: method,
            shard_number,
            replication_factor,
            write_consistency_factor: 1,
            hnsw: HnswParams::default(),
            on_disk_payload: false,
        }
    }

    /// A state with one custom-sharded collection `c` (1 shard per key, replication 1).
    fn state_with_custom() -> MetadataState {
        let mut state = MetadataState::default();
        state
            .apply(
                1,
                &Command::CreateCollection {
                    name: "c".into(),
                    uid: 1,
                    params: params(ShardingMethod::Custom, 1, 1),
                    shards: vec![],
                },
            )
            .expect("create collection");
        state
    }

    fn load(nodes: &[(NodeId, usize)]) -> BTreeMap<NodeId, usize> {
        nodes.iter().copied().collect()
    }

    fn shard_key(
        shards_number: Option<u32>,
        replication_factor: Option<u32>,
        placement: Option<Vec<NodeId>>,
    ) -> MetaRequest {
        MetaRequest::CreateShardKey {
            collection: "c".into(),
            key: ShardKey::Str("tenant".into()),
            shards_number,
            replication_factor,
            placement,
        }
    }

    fn placed(command: &Command) -> Vec<Vec<NodeId>> {
        match command {
            Command::CreateShardKey { shards, .. } | Command::CreateCollection { shards, .. } => {
                shards.iter().map(|s| s.nodes.clone()).collect()
            }
            other => panic!("not a placing command: {other:?}"),
        }
    }

    #[test]
    fn a_shard_key_goes_to_distinct_least_loaded_nodes() {
        let state = state_with_custom();
        let command = decide(
            &state,
            &load(&[(1, 5), (2, 0), (3, 1)]),
            9,
            shard_key(Some(2), Some(2), None),
        )
        .expect("decided");
        let nodes = placed(&command);
        let sorted: Vec<Vec<NodeId>> = nodes
            .iter()
            .map(|n| {
                let mut n = n.clone();
                n.sort_unstable();
                n
            })
            .collect();
        assert_eq!(sorted, vec![vec![2, 3], vec![2, 3]]);
        assert_ne!(
            nodes[0][0], nodes[1][0],
            "the two primaries on different nodes"
        );
        for replicas in &nodes {
            let mut distinct = replicas.clone();
            distinct.dedup();
            assert_eq!(&distinct, replicas, "replicas of a shard on distinct nodes");
        }
    }

    #[test]
    fn a_repeated_create_with_the_same_settings_is_told_apart_from_a_different_one() {
        let mut state = state_with_custom();
        let nodes = load(&[(1, 0), (2, 0), (3, 0)]);
        let command = decide(&state, &nodes, 9, shard_key(Some(2), None, None)).expect("new");
        state.apply(2, &command).expect("created");
        let tenant = ShardKey::Str("tenant".into());
        let on: Vec<NodeId> = placed(&command).into_iter().flatten().collect();
        // the same settings, spelt out or left to the collection's defaults: a repeat
        for (n, rf, placement) in [
            (Some(2), None, None),
            (Some(2), Some(1), None),
            (Some(2), None, Some(vec![1, 2, 3])),
        ] {
            assert_eq!(
                existing_key(&state, "c", &tenant, n, rf, placement.as_deref()),
                Ok(true)
            );
            let e = decide(&state, &nodes, 10, shard_key(n, rf, placement)).expect_err("repeat");
            assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
        }
        // other settings: a 409 naming each difference
        let elsewhere: Vec<NodeId> = [1, 2, 3].into_iter().filter(|n| !on.contains(n)).collect();
        let e = decide(
            &state,
            &nodes,
            10,
            shard_key(None, Some(2), Some(elsewhere)),
        )
        .expect_err("different");
        assert_eq!(e.kind, ErrorKind::Conflict);
        for named in [
            "shards_number 1 (it has 2)",
            "replication_factor 2 (it has 1)",
            "placement",
        ] {
            assert!(e.message.contains(named), "{named}: {}", e.message);
        }
        assert_eq!(
            existing_key(&state, "c", &ShardKey::Num(3), None, None, None),
            Ok(false)
        );
    }

    #[test]
    fn shards_number_is_bounded() {
        let state = state_with_custom();
        let nodes = load(&[(1, 0)]);
        for bad in [0, MAX_SHARDS_PER_KEY + 1] {
            let e = decide(&state, &nodes, 9, shard_key(Some(bad), None, None))
                .expect_err("out of bounds");
            assert_eq!(e.kind, ErrorKind::BadRequest);
            assert!(e.message.contains("shards_number"), "{}", e.message);
        }
        let ok = decide(
            &state,
            &nodes,
            9,
            shard_key(Some(MAX_SHARDS_PER_KEY), None, None),
        )
        .expect("the maximum is allowed");
        assert_eq!(placed(&ok).len(), MAX_SHARDS_PER_KEY as usize);
    }

    #[test]
    fn replication_factor_zero_or_above_the_nodes_is_refused() {
        let state = state_with_custom();
        let nodes = load(&[(1, 0), (2, 0)]);
        let e = decide(&state, &nodes, 9, shard_key(None, Some(0), None)).expect_err("zero");
        assert_eq!(e.message, "replication_factor must be at least 1");
        let e = decide(&state, &nodes, 9, shard_key(None, Some(3), None)).expect_err("too many");
        assert_eq!(e.kind, ErrorKind::BadRequest);
    }

    #[test]
    fn placement_names_known_peers_only() {
        let state = state_with_custom();
        let nodes = load(&[(1, 0), (2, 7), (3, 0)]);
        let e = decide(&state, &nodes, 9, shard_key(None, None, Some(vec![2, 4])))
            .expect_err("unknown peer");
        assert_eq!(e.message, "placement names unknown peer 4");
        let e = decide(&state, &nodes, 9, shard_key(None, None, Some(vec![])))
            .expect_err("empty placement");
        assert_eq!(e.message, "placement must name at least one peer");
        let command = decide(&state, &nodes, 9, shard_key(None, None, Some(vec![2])))
            .expect("placed where asked");
        assert_eq!(placed(&command), vec![vec![2]], "even on a loaded node");
    }

    #[test]
    fn placement_is_checked_before_the_collection() {
        // as before the request type existed: a bad placement is a 400 even for a missing
        // collection
        let e = decide(
            &MetadataState::default(),
            &load(&[(1, 0)]),
            9,
            shard_key(None, None, Some(vec![5])),
        )
        .expect_err("bad placement");
        assert_eq!(e.kind, ErrorKind::BadRequest);
        let e = decide(
            &MetadataState::default(),
            &load(&[(1, 0)]),
            9,
            shard_key(None, None, None),
        )
        .expect_err("no collection");
        assert_eq!(e.kind, ErrorKind::NotFound);
    }

    #[test]
    fn an_auto_collection_is_placed_with_the_uid_given() {
        let request = MetaRequest::CreateCollection {
            name: "auto".into(),
            params: params(ShardingMethod::Auto, 3, 5),
        };
        let e = decide(
            &MetadataState::default(),
            &load(&[(1, 0), (2, 0)]),
            42,
            request,
        )
        .expect_err("5 copies on 2 nodes");
        assert_eq!(e.kind, ErrorKind::BadRequest, "refused, not capped: {e}");
        let request = MetaRequest::CreateCollection {
            name: "auto".into(),
            params: params(ShardingMethod::Auto, 3, 2),
        };
        let command = decide(
            &MetadataState::default(),
            &load(&[(1, 0), (2, 0)]),
            42,
            request,
        )
        .expect("decided");
        let Command::CreateCollection { uid, shards, .. } = &command else {
            panic!("not a collection: {command:?}");
        };
        assert_eq!(*uid, 42);
        assert_eq!(shards.len(), 3);
        assert!(shards.iter().all(|s| s.nodes.len() == 2));
    }

    #[test]
    fn a_custom_collection_has_no_shards_until_keys_come() {
        let request = MetaRequest::CreateCollection {
            name: "custom".into(),
            params: params(ShardingMethod::Custom, 1, 1),
        };
        let command =
            decide(&MetadataState::default(), &load(&[(1, 0)]), 1, request).expect("decided");
        assert!(placed(&command).is_empty());
    }
}
