//! Collection endpoints: list, create, info, update, delete, exists, and payload indexes.

use std::time::Instant;
use tessera_cluster::request::MetaRequest;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, RawQuery, State};
use serde_json::{Map, Value};
use tessera_cluster::{ErrorKind, Result};

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
    let collections = visible_names(&app, &ctx)
        .into_iter()
        .map(|name| CollectionName { name })
        .collect();
    ok(CollectionList { collections }, started)
}

/// The names of the collections the caller may see.
pub fn visible_names(app: &AppState, ctx: &Ctx) -> Vec<String> {
    app.catalog
        .meta
        .read()
        .collections
        .values()
        .filter(|c| access::visible(&ctx.principal, c))
        .map(|c| c.name.clone())
        .collect()
}

pub async fn create(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: Body,
) -> Reply {
    let started = Instant::now();
    create_from(&app, &ctx, &name, body_object(&body_json(body)?)?).await?;
    ok(true, started)
}

/// Creates a collection from a create body (manage rights).
pub async fn create_from(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<()> {
    access::check_manage(&ctx.principal)?;
    let params = create_collection(o)?;
    app.catalog
        .submit(MetaRequest::CreateCollection {
            name: name.to_string(),
            params,
        })
        .await?;
    Ok(())
}

pub async fn update(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    body: Body,
) -> Reply {
    let started = Instant::now();
    update_from(&app, &ctx, &name, body_object(&body_json(body)?)?)?;
    ok(true, started)
}

/// Applies an update body to a collection (manage rights).
///
/// No setting of an existing collection can be changed yet: a setting equal to what
/// `get_collection` reports is a no-op (clients send the whole config back), any other is
/// refused naming each such field, never answered `true` and dropped.
pub fn update_from(app: &AppState, ctx: &Ctx, name: &str, o: &Map<String, Value>) -> Result<()> {
    access::check_manage(&ctx.principal)?;
    let threshold = app.catalog.config.indexing_threshold;
    let config = visible_collection(app, ctx, name, |c| CollectionConfig::new(c, threshold))?;
    let config = serde_json::to_value(config).unwrap_or(Value::Null);
    let changed = super::json::collections::changed_settings(o, &config);
    if !changed.is_empty() {
        return Err(bad(format!(
            "Bad request: tessera cannot change {} of an existing collection; create a new \
             collection with the settings instead",
            changed.join(", ")
        )));
    }
    Ok(())
}

pub async fn info(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let started = Instant::now();
    ok(describe(&app, &ctx, &name).await?, started)
}

/// What `GET /collections/{c}` answers: the collection as the caller sees it.
pub async fn describe(app: &AppState, ctx: &Ctx, name: &str) -> Result<CollectionInfo> {
    let (collection, scope) = visible_read_scope(app, ctx, name)?;
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
    let points = app.router.count(ctx, name, &KeySelector::All, None).await?;
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
    Ok(info)
}

pub async fn delete(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let started = Instant::now();
    ok(drop_collection(&app, &ctx, &name).await?, started)
}

/// Deletes a collection (manage rights); whether it existed.
pub async fn drop_collection(app: &AppState, ctx: &Ctx, name: &str) -> Result<bool> {
    access::check_manage(&ctx.principal)?;
    match app
        .catalog
        .submit(MetaRequest::DeleteCollection {
            name: name.to_string(),
        })
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

pub async fn exists(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let started = Instant::now();
    let exists = exists_for(&app, &ctx, &name);
    ok(Exists { exists }, started)
}

/// Whether the caller may see a collection of this name.
pub fn exists_for(app: &AppState, ctx: &Ctx, name: &str) -> bool {
    visible_collection(app, ctx, name, |_| ()).is_ok()
}

pub async fn create_index(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Reply {
    let started = Instant::now();
    let seq = index_from(&app, &ctx, &name, body_object(&body_json(body)?)?).await?;
    update_result(seq, query_flag(&query, "wait")?, started)
}

/// Creates the payload index an index body asks for (manage rights); its operation id.
pub async fn index_from(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<u64> {
    access::check_manage(&ctx.principal)?;
    let (field_name, index) = payload_index(o)?;
    app.catalog
        .submit(MetaRequest::CreatePayloadIndex {
            collection: name.to_string(),
            field: field_name,
            index,
        })
        .await
}

pub async fn delete_index(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((name, field_name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Reply {
    let started = Instant::now();
    let seq = drop_index(&app, &ctx, &name, &field_name).await?;
    update_result(seq, query_flag(&query, "wait")?, started)
}

/// Deletes a payload index (manage rights); its operation id.
pub async fn drop_index(app: &AppState, ctx: &Ctx, name: &str, field_name: &str) -> Result<u64> {
    access::check_manage(&ctx.principal)?;
    app.catalog
        .submit(MetaRequest::DeletePayloadIndex {
            collection: name.to_string(),
            field: field_name.to_string(),
        })
        .await
}
