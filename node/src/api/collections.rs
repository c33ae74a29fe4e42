//! Collection endpoints: list, create, info, update, delete, exists, and payload indexes.

use std::time::Instant;
use tessera_cluster::request::MetaRequest;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, RawQuery, State};
use tessera_cluster::ErrorKind;

use super::json::collections::{
    CollectionConfig, CollectionInfo, CollectionList, CollectionName, Exists, PayloadSchemaInfo,
    create_collection, payload_index,
};
use super::json::{bad, body_json, body_object};
use super::{
    AppState, Reply, ok, query_flag, update_result, visible_collection, visible_read_scope,
};
use crate::access;
use crate::router::{Ctx, KeySelector};

type Body = std::result::Result<Bytes, BytesRejection>;

pub async fn list(State(app): State<AppState>, Extension(ctx): Extension<Ctx>) -> Reply {
    let started = Instant::now();
    let collections = app
        .catalog
        .meta
        .read()
        .collections
        .values()
        .filter(|c| access::visible(&ctx.principal, c))
        .map(|c| CollectionName {
            name: c.name.clone(),
        })
        .collect();
    ok(CollectionList { collections }, started)
}

pub async fn create(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: Body,
) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    let params = create_collection(body_object(&body_json(body)?)?)?;
    app.catalog
        .submit(MetaRequest::CreateCollection { name, params })
        .await?;
    ok(true, started)
}

pub async fn update(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: Body,
) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    let body = body_json(body)?;
    visible_collection(&app, &ctx, &name, |_| ())?;
    // no setting of an existing collection can be changed yet: a change is refused naming it,
    // never answered `true` and dropped (an empty update changes nothing and says so)
    let asked: Vec<&str> = body_object(&body)?
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(key, _)| key.as_str())
        .collect();
    if !asked.is_empty() {
        return Err(bad(format!(
            "Bad request: tessera cannot change {} of an existing collection; create a new \
             collection with the settings instead",
            asked.join(", ")
        ))
        .into());
    }
    ok(true, started)
}

pub async fn info(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let started = Instant::now();
    let (collection, scope) = visible_read_scope(&app, &ctx, &name)?;
    let (mut indexed, mut segments, mut all_local) = (0usize, 0usize, true);
    // as Qdrant: yellow while index builds or merges are due on the shards (here: this node's)
    let mut optimizing = false;
    for target in &scope.targets {
        match app.catalog.shards.data((collection.uid, target.shard)) {
            Some(data) => {
                let stats = data.stats();
                indexed += stats.indexed_points;
                segments += stats.segments;
                optimizing |= data.due_job().is_some();
            }
            None => all_local = false,
        }
    }
    // the exact count goes through the router: every shard, on whichever node, in the
    // caller's scope (a tenant of a shared collection counts its own points only)
    let points = app
        .router
        .count(&ctx, &name, &KeySelector::All, None)
        .await?;
    // per-segment figures are known for this node's replicas only
    let indexed = (scope.partition.is_none() && all_local).then_some(indexed);
    if scope.partition.is_some() {
        segments = 0;
    }
    let payload_schema = collection
        .payload_indexes
        .iter()
        .map(|(field, index)| (field.clone(), PayloadSchemaInfo::new(index, points)))
        .collect();
    let info = CollectionInfo {
        config: CollectionConfig::new(&collection, app.catalog.config.indexing_threshold),
        indexed_vectors_count: indexed,
        optimizer_status: "ok",
        payload_schema,
        points_count: points,
        segments_count: segments,
        status: if optimizing { "yellow" } else { "green" },
    };
    ok(info, started)
}

pub async fn delete(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    let existed = match app
        .catalog
        .submit(MetaRequest::DeleteCollection { name })
        .await
    {
        Ok(_) => true,
        Err(e) if e.kind == ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    ok(existed, started)
}

pub async fn exists(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let started = Instant::now();
    let exists = visible_collection(&app, &ctx, &name, |_| ()).is_ok();
    ok(Exists { exists }, started)
}

pub async fn create_index(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    let (field_name, index) = payload_index(body_object(&body_json(body)?)?)?;
    let seq = app
        .catalog
        .submit(MetaRequest::CreatePayloadIndex {
            collection: name,
            field: field_name,
            index,
        })
        .await?;
    update_result(seq, query_flag(&query, "wait")?, started)
}

pub async fn delete_index(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((name, field_name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Reply {
    let started = Instant::now();
    access::check_manage(&ctx.principal)?;
    let seq = app
        .catalog
        .submit(MetaRequest::DeletePayloadIndex {
            collection: name,
            field: field_name,
        })
        .await?;
    update_result(seq, query_flag(&query, "wait")?, started)
}
