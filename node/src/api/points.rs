//! Point endpoints: upsert, retrieve (by ids and by path), scroll, count, delete and the
//! payload writes.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, RawQuery, State};
use serde_json::{Map, Value};
use tessera_cluster::meta::ShardKey;
use tessera_cluster::{Error, Result};
use tessera_shard::priority::{self, Class};
use tessera_shard::store::{PayloadSelector, Record};

use super::json::points::{
    Count, CountResult, Retrieve, Scroll, ScrollPage, SelectedWrite, SelectedWriteKind, Upsert,
    path_point_id,
};
use super::json::{IdJson, PointRecord, body_json, body_object};
use super::{AppState, Reply, ok, query_flag, update_result, visible_collection};
use crate::router::{Ctx, KeySelector};

type Body = std::result::Result<Bytes, BytesRejection>;

/// Points read per page by [`for_each_point`].
const SCAN_PAGE: usize = 1024;

/// Bodies up to this size are parsed on the async worker; larger ones on the ingest pool.
const PARSE_INLINE_BYTES: usize = 32 * 1024;

pub async fn upsert(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Reply {
    let started = Instant::now();
    let wait = query_flag(&query, "wait")?;
    // A large batch is parsed on the ingest pool: parsing megabytes of JSON on the async
    // workers would hold up every other tenant's requests behind it, and the ingest pool runs
    // below searches' CPU priority.
    let large = body.as_ref().is_ok_and(|b| b.len() > PARSE_INLINE_BYTES);
    let parse = {
        let (app, ctx, name) = (app.clone(), ctx.clone(), name.clone());
        move || parse_upsert(&app, &ctx, &name, body_object(&body_json(body)?)?)
    };
    let upsert = if large {
        priority::run(Class::Ingest, parse).await??
    } else {
        parse()?
    };
    let seq = apply_upsert(&app, &ctx, &name, upsert).await?;
    update_result(seq, wait, started)
}

/// Writes a parsed upsert; its operation id.
pub async fn apply_upsert(app: &AppState, ctx: &Ctx, name: &str, upsert: Upsert) -> Result<u64> {
    app.router
        .upsert(
            ctx,
            name,
            &upsert.shard_key,
            upsert.points,
            upsert.update_filter,
        )
        .await
}

/// The shard keys and points of an upsert body, checked against the collection (a collection
/// the caller cannot see is missing before anything but the body's shape is looked at).
pub fn parse_upsert(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<Upsert> {
    let dim = visible_collection(app, ctx, name, |c| c.params.dim)?;
    Upsert::parse(o, dim, app.catalog.config.max_batch_points)
}

/// Parses a points-selector write body and applies it to the named shard keys.
async fn selected_write(
    app: AppState,
    ctx: Ctx,
    name: String,
    query: Option<String>,
    body: Body,
    kind: SelectedWriteKind,
) -> Reply {
    let started = Instant::now();
    let v = body_json(body)?;
    let seq = write_selected(&app, &ctx, &name, body_object(&v)?, kind).await?;
    update_result(seq, query_flag(&query, "wait")?, started)
}

/// A delete or payload write of the points a body selects; its operation id.
pub async fn write_selected(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
    kind: SelectedWriteKind,
) -> Result<u64> {
    let SelectedWrite {
        shard_key,
        write,
        points,
    } = SelectedWrite::parse(o, kind)?;
    app.router
        .write_selected(ctx, name, &shard_key, points, write)
        .await
}

macro_rules! selected_write_handler {
    ($name:ident, $kind:expr) => {
        pub async fn $name(
            State(app): State<AppState>,
            Extension(ctx): Extension<Ctx>,
            Path(name): Path<String>,
            RawQuery(query): RawQuery,
            body: Body,
        ) -> Reply {
            selected_write(app, ctx, name, query, body, $kind).await
        }
    };
}

selected_write_handler!(delete, SelectedWriteKind::Delete);
selected_write_handler!(set_payload, SelectedWriteKind::SetPayload);
selected_write_handler!(overwrite_payload, SelectedWriteKind::OverwritePayload);
selected_write_handler!(delete_payload, SelectedWriteKind::DeletePayload);
selected_write_handler!(clear_payload, SelectedWriteKind::ClearPayload);

pub async fn retrieve(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Reply {
    let started = Instant::now();
    let ctx = super::with_consistency(ctx, &query)?;
    let v = body_json(body)?;
    let records = retrieve_points(&app, &ctx, &name, body_object(&v)?).await?;
    let records: Vec<PointRecord> = records.into_iter().map(PointRecord::new).collect();
    ok(records, started)
}

/// The points a retrieve body names, with their shard keys.
pub async fn retrieve_points(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<Vec<(Option<ShardKey>, Record)>> {
    let Retrieve {
        shard_key,
        ids,
        with_payload,
        with_vector,
    } = Retrieve::parse(o, app.catalog.config.max_limit)?;
    app.router
        .retrieve(ctx, name, &shard_key, ids, with_payload, with_vector)
        .await
}

pub async fn get(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((name, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Reply {
    let started = Instant::now();
    let ctx = super::with_consistency(ctx, &query)?;
    let ids = vec![path_point_id(&id)];
    let records = app
        .router
        .retrieve(
            &ctx,
            &name,
            &KeySelector::All,
            ids,
            PayloadSelector::All,
            true,
        )
        .await?;
    let record = records
        .into_iter()
        .next()
        .ok_or_else(|| Error::not_found(format!("No point with id {id} found")))?;
    ok(PointRecord::new(record), started)
}

pub async fn scroll(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Reply {
    let started = Instant::now();
    let ctx = super::with_consistency(ctx, &query)?;
    let v = body_json(body)?;
    let page = scroll_page(&app, &ctx, &name, body_object(&v)?).await?;
    ok(page, started)
}

/// One page of a scroll body.
pub async fn scroll_page(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<ScrollPage> {
    let Scroll {
        shard_key,
        offset,
        limit,
        filter,
        with_payload,
        with_vector,
        order_by,
    } = Scroll::parse(o, app.catalog.config.max_limit)?;
    if let Some(order_by) = order_by {
        let page = super::order_by::Ordered {
            shard_key,
            limit,
            filter,
            with_payload,
            with_vector,
            order_by,
        };
        return page.run(app, ctx, name).await;
    }
    let (records, next) = app
        .router
        .scroll(
            ctx,
            name,
            &shard_key,
            offset,
            limit,
            filter,
            with_payload,
            with_vector,
        )
        .await?;
    Ok(ScrollPage {
        next_page_offset: next.map(IdJson),
        points: records.into_iter().map(PointRecord::new).collect(),
    })
}

pub async fn count(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Reply {
    let started = Instant::now();
    let ctx = super::with_consistency(ctx, &query)?;
    let v = body_json(body)?;
    let count = count_points(&app, &ctx, &name, body_object(&v)?).await?;
    ok(CountResult { count }, started)
}

/// The exact count of the points a count body selects.
pub async fn count_points(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    o: &Map<String, Value>,
) -> Result<usize> {
    let Count { shard_key, filter } = Count::parse(o)?;
    app.router.count(ctx, name, &shard_key, filter).await
}

/// Hands every point the caller may read under `filter` (with `payload`, no vector) to `each`,
/// read through the router page by page, so memory is bounded by a page: the scan of facets,
/// distance-matrix samples and ordered scrolls.
pub async fn for_each_point(
    app: &AppState,
    ctx: &Ctx,
    name: &str,
    sel: &KeySelector,
    filter: &Option<tessera_shard::filter::Filter>,
    payload: PayloadSelector,
    mut each: impl FnMut(Record),
) -> Result<()> {
    let scan = Scan {
        sel,
        filter,
        payload,
        vectors: false,
    };
    scan.run(app, ctx, name, |(_, r)| each(r)).await
}

/// A page-by-page read of every point the caller may read under a filter.
pub struct Scan<'a> {
    pub sel: &'a KeySelector,
    pub filter: &'a Option<tessera_shard::filter::Filter>,
    pub payload: PayloadSelector,
    pub vectors: bool,
}

impl Scan<'_> {
    /// Hands each point, with its shard key, to `each`.
    pub async fn run(
        &self,
        app: &AppState,
        ctx: &Ctx,
        name: &str,
        mut each: impl FnMut(crate::router::Keyed<Record>),
    ) -> Result<()> {
        let mut offset = None;
        loop {
            let (records, next) = app
                .router
                .scroll(
                    ctx,
                    name,
                    self.sel,
                    offset,
                    SCAN_PAGE,
                    self.filter.clone(),
                    self.payload.clone(),
                    self.vectors,
                )
                .await?;
            records.into_iter().for_each(&mut each);
            match next {
                Some(n) => offset = Some(n),
                None => return Ok(()),
            }
        }
    }
}
