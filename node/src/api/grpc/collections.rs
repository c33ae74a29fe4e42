//! `qdrant.Collections`: each method is the REST body it means, run by the same operation as
//! REST.

use std::time::Instant;

use prost::Message;
use qdrant_client::qdrant as pb;
use serde_json::{Map, Value, json};
use tonic::{Request, Response, Status};

use super::Grpc;
use super::edge::{Call, unimplemented};
use super::to_json::{self as j, Body};
use super::to_proto;
use crate::api::json::aliases::AliasList;
use crate::api::routes::Operation;
use crate::api::{aliases, collections, shard_keys};

type Answer<T> = std::result::Result<Response<T>, Status>;

fn secs(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

fn call<'a>(
    operation: Operation,
    collection: Option<&'a str>,
    timeout: Option<u64>,
    r: &impl Message,
) -> Call<'a> {
    Call {
        operation,
        collection,
        timeout,
        bytes: r.encoded_len(),
    }
}

fn distance(d: i32) -> Value {
    match pb::Distance::try_from(d) {
        Ok(pb::Distance::Cosine) => json!("Cosine"),
        Ok(pb::Distance::Euclid) => json!("Euclid"),
        Ok(pb::Distance::Dot) => json!("Dot"),
        Ok(pb::Distance::Manhattan) => json!("Manhattan"),
        _ => json!("UnknownDistance"),
    }
}

#[allow(deprecated)] // `on_disk` is still sent by clients
fn hnsw(h: &pb::HnswConfigDiff) -> Value {
    Body::new()
        .opt("m", h.m, |v| json!(v))
        .opt("ef_construct", h.ef_construct, |v| json!(v))
        .opt("full_scan_threshold", h.full_scan_threshold, |v| json!(v))
        .opt("max_indexing_threads", h.max_indexing_threads, |v| json!(v))
        .opt("on_disk", h.on_disk, |v| json!(v))
        .opt("payload_m", h.payload_m, |v| json!(v))
        .refused("inline_storage", h.inline_storage.is_some())
        .refused("memory", h.memory.is_some())
        .value()
}

#[allow(deprecated)] // `on_disk` is still sent by clients
fn vector_params(p: &pb::VectorParams) -> Value {
    Body::new()
        .put("size", p.size)
        .put("distance", distance(p.distance))
        .opt("hnsw_config", p.hnsw_config.as_ref(), hnsw)
        .refused("quantization_config", p.quantization_config.is_some())
        .opt("on_disk", p.on_disk, |v| json!(v))
        .opt("datatype", p.datatype, |d| {
            match pb::Datatype::try_from(d) {
                Ok(pb::Datatype::Float32) => json!("float32"),
                Ok(pb::Datatype::Uint8) => json!("uint8"),
                Ok(pb::Datatype::Float16) => json!("float16"),
                _ => json!("unknown"),
            }
        })
        .refused("multivector_config", p.multivector_config.is_some())
        .refused("memory", p.memory.is_some())
        .value()
}

/// A create request as REST's create body.
#[allow(deprecated)] // `on_disk_payload` is still sent by clients
fn create_body(r: &pb::CreateCollection) -> Map<String, Value> {
    let vectors = r
        .vectors_config
        .as_ref()
        .and_then(|v| v.config.as_ref())
        .map(|c| match c {
            pb::vectors_config::Config::Params(p) => vector_params(p),
            pb::vectors_config::Config::ParamsMap(m) => Value::Object(
                m.map
                    .iter()
                    .map(|(k, p)| (k.clone(), vector_params(p)))
                    .collect(),
            ),
        });
    Body::new()
        .opt("vectors", vectors, |v| v)
        .opt("hnsw_config", r.hnsw_config.as_ref(), hnsw)
        .refused("wal_config", r.wal_config.is_some())
        .refused("optimizers_config", r.optimizers_config.is_some())
        .opt("shard_number", r.shard_number, |v| json!(v))
        .opt("on_disk_payload", r.on_disk_payload, |v| json!(v))
        .opt("replication_factor", r.replication_factor, |v| json!(v))
        .opt(
            "write_consistency_factor",
            r.write_consistency_factor,
            |v| json!(v),
        )
        .refused("quantization_config", r.quantization_config.is_some())
        .opt(
            "sharding_method",
            r.sharding_method,
            |m| match pb::ShardingMethod::try_from(m) {
                Ok(pb::ShardingMethod::Custom) => json!("custom"),
                _ => json!("auto"),
            },
        )
        .refused("sparse_vectors", r.sparse_vectors_config.is_some())
        .refused("strict_mode_config", r.strict_mode_config.is_some())
        .refused("metadata", !r.metadata.is_empty())
        .refused("payload", r.payload.is_some())
        .refused("id_tracker", r.id_tracker.is_some())
        .map()
}

/// An update request as REST's update body: every setting it gives is named.
fn update_body(r: &pb::UpdateCollection) -> Map<String, Value> {
    Body::new()
        .refused("optimizers_config", r.optimizers_config.is_some())
        .refused("params", r.params.is_some())
        .opt("hnsw_config", r.hnsw_config.as_ref(), hnsw)
        .refused("vectors", r.vectors_config.is_some())
        .refused("quantization_config", r.quantization_config.is_some())
        .refused("sparse_vectors", r.sparse_vectors_config.is_some())
        .refused("strict_mode_config", r.strict_mode_config.is_some())
        .refused("metadata", !r.metadata.is_empty())
        .map()
}

fn collection_answer(started: Instant) -> pb::CollectionOperationResponse {
    pb::CollectionOperationResponse {
        result: true,
        time: secs(started),
    }
}

#[tonic::async_trait]
impl pb::collections_server::Collections for Grpc {
    async fn get(
        &self,
        request: Request<pb::GetCollectionInfoRequest>,
    ) -> Answer<pb::GetCollectionInfoResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::GetCollection, Some(&r.collection_name), None, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let info = collections::describe(&self.app, &ctx, &r.collection_name).await?;
            Ok(pb::GetCollectionInfoResponse {
                result: Some(to_proto::collection_info(info)),
                time: secs(started),
            })
        })
        .await
    }

    async fn list(
        &self,
        request: Request<pb::ListCollectionsRequest>,
    ) -> Answer<pb::ListCollectionsResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::ListCollections, None, None, &r);
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let collections = collections::visible_names(&self.app, &ctx)
                .into_iter()
                .map(|name| pb::CollectionDescription { name })
                .collect();
            Ok(pb::ListCollectionsResponse {
                collections,
                time: secs(started),
            })
        })
        .await
    }

    async fn create(
        &self,
        request: Request<pb::CreateCollection>,
    ) -> Answer<pb::CollectionOperationResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(
            Operation::CreateCollection,
            Some(&r.collection_name),
            r.timeout,
            &r,
        );
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            collections::create_from(&self.app, &ctx, &r.collection_name, &create_body(r)).await?;
            Ok(collection_answer(started))
        })
        .await
    }

    async fn update(
        &self,
        request: Request<pb::UpdateCollection>,
    ) -> Answer<pb::CollectionOperationResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(
            Operation::UpdateCollection,
            Some(&r.collection_name),
            r.timeout,
            &r,
        );
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            collections::update_from(&self.app, &ctx, &r.collection_name, &update_body(r))?;
            Ok(collection_answer(started))
        })
        .await
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteCollection>,
    ) -> Answer<pb::CollectionOperationResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(
            Operation::DeleteCollection,
            Some(&r.collection_name),
            r.timeout,
            &r,
        );
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let existed = collections::drop_collection(&self.app, &ctx, &r.collection_name).await?;
            Ok(pb::CollectionOperationResponse {
                result: existed,
                time: secs(started),
            })
        })
        .await
    }

    async fn update_aliases(
        &self,
        request: Request<pb::ChangeAliases>,
    ) -> Answer<pb::CollectionOperationResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::UpdateAliases, None, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let body = Body::new().put("actions", alias_actions(&r.actions)).map();
            aliases::update_from(&self.app, &ctx, &body).await?;
            Ok(pb::CollectionOperationResponse {
                result: true,
                time: secs(started),
            })
        })
        .await
    }

    async fn list_collection_aliases(
        &self,
        request: Request<pb::ListCollectionAliasesRequest>,
    ) -> Answer<pb::ListAliasesResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(
            Operation::CollectionAliases,
            Some(&r.collection_name),
            None,
            &r,
        );
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let list = aliases::aliases_of(&self.app, &ctx, Some(&r.collection_name))?;
            Ok(alias_list(list, started))
        })
        .await
    }

    async fn list_aliases(
        &self,
        request: Request<pb::ListAliasesRequest>,
    ) -> Answer<pb::ListAliasesResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::ListAliases, None, None, &r);
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let list = aliases::aliases_of(&self.app, &ctx, None)?;
            Ok(alias_list(list, started))
        })
        .await
    }

    async fn collection_cluster_info(
        &self,
        request: Request<pb::CollectionClusterInfoRequest>,
    ) -> Answer<pb::CollectionClusterInfoResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(
            Operation::CollectionCluster,
            Some(&r.collection_name),
            None,
            &r,
        );
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let view = shard_keys::cluster_view(&self.app, &ctx, &r.collection_name).await?;
            Ok(to_proto::cluster_info(view, secs(started)))
        })
        .await
    }

    async fn collection_exists(
        &self,
        request: Request<pb::CollectionExistsRequest>,
    ) -> Answer<pb::CollectionExistsResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(
            Operation::CollectionExists,
            Some(&r.collection_name),
            None,
            &r,
        );
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let exists = collections::exists_for(&self.app, &ctx, &r.collection_name);
            Ok(pb::CollectionExistsResponse {
                result: Some(pb::CollectionExists { exists }),
                time: secs(started),
            })
        })
        .await
    }

    async fn update_collection_cluster_setup(
        &self,
        _: Request<pb::UpdateCollectionClusterSetupRequest>,
    ) -> Answer<pb::UpdateCollectionClusterSetupResponse> {
        Err(unimplemented("UpdateCollectionClusterSetup"))
    }

    async fn create_shard_key(
        &self,
        request: Request<pb::CreateShardKeyRequest>,
    ) -> Answer<pb::CreateShardKeyResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(
            Operation::CreateShardKey,
            Some(&r.collection_name),
            r.timeout,
            &r,
        );
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let mut b = Body::new();
            if let Some(k) = &r.request {
                b = b
                    .opt("shard_key", k.shard_key.as_ref(), j::shard_key)
                    .opt("shards_number", k.shards_number, |v| json!(v))
                    .opt("replication_factor", k.replication_factor, |v| json!(v))
                    .refused("initial_state", k.initial_state.is_some());
                if !k.placement.is_empty() {
                    b = b.put("placement", json!(k.placement));
                }
            }
            shard_keys::create_key(&self.app, &ctx, &r.collection_name, &b.map()).await?;
            Ok(pb::CreateShardKeyResponse {
                result: true,
                time: secs(started),
            })
        })
        .await
    }

    async fn delete_shard_key(
        &self,
        request: Request<pb::DeleteShardKeyRequest>,
    ) -> Answer<pb::DeleteShardKeyResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(
            Operation::DeleteShardKey,
            Some(&r.collection_name),
            r.timeout,
            &r,
        );
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let b = Body::new()
                .opt(
                    "shard_key",
                    r.request.as_ref().and_then(|d| d.shard_key.as_ref()),
                    j::shard_key,
                )
                .map();
            shard_keys::delete_key(&self.app, &ctx, &r.collection_name, &b).await?;
            Ok(pb::DeleteShardKeyResponse {
                result: true,
                time: secs(started),
            })
        })
        .await
    }

    async fn list_shard_keys(
        &self,
        request: Request<pb::ListShardKeysRequest>,
    ) -> Answer<pb::ListShardKeysResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::ListShardKeys, Some(&r.collection_name), None, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let shard_keys = shard_keys::visible_keys(&self.app, &ctx, &r.collection_name)?
                .into_iter()
                .map(|k| pb::ShardKeyDescription {
                    key: Some(to_proto::shard_key(k)),
                })
                .collect();
            Ok(pb::ListShardKeysResponse {
                shard_keys,
                time: secs(started),
            })
        })
        .await
    }
}

/// Alias actions as the REST body names them.
fn alias_actions(actions: &[pb::AliasOperations]) -> Value {
    use pb::alias_operations::Action;
    Value::Array(
        actions
            .iter()
            .map(|a| match &a.action {
                Some(Action::CreateAlias(c)) => json!({"create_alias": {
                    "collection_name": c.collection_name, "alias_name": c.alias_name}}),
                Some(Action::RenameAlias(r)) => json!({"rename_alias": {
                    "old_alias_name": r.old_alias_name, "new_alias_name": r.new_alias_name}}),
                Some(Action::DeleteAlias(d)) => {
                    json!({"delete_alias": {"alias_name": d.alias_name}})
                }
                None => json!({}),
            })
            .collect(),
    )
}

fn alias_list(list: AliasList, started: Instant) -> pb::ListAliasesResponse {
    pb::ListAliasesResponse {
        aliases: list
            .aliases
            .into_iter()
            .map(|a| pb::AliasDescription {
                alias_name: a.alias_name,
                collection_name: a.collection_name,
            })
            .collect(),
        time: secs(started),
    }
}
