//! `qdrant.Points`: each method is the REST body it means, run by the same operation as REST.

use std::time::Instant;

use prost::Message;
use qdrant_client::qdrant as pb;
use serde_json::{Map, Value, json};
use tessera_shard::priority::{self, Class};
use tonic::{Request, Response, Status};

use super::Grpc;
use super::edge::{Call, unimplemented};
use super::groups::{
    discover_body, facet_hit, groups, matrix_body, order_by, query_body, query_groups_body,
    recommend_body, recommend_groups_body, search_body, search_groups_body, selected, upsert_body,
};
use super::to_json::{self as j, Body};
use super::to_proto;
use crate::api::groups::{Kind as GroupKind, groups_of};
use crate::api::json::PointRecord;
use crate::api::json::points::SelectedWriteKind;
use crate::api::json::query::ScoredPoint;
use crate::api::query::Kind as BatchKind;
use crate::api::routes::Operation;
use crate::api::{batch, facet, matrix, points, query};
use crate::router::Ctx;

type Answer<T> = std::result::Result<Response<T>, Status>;

/// Requests up to this size are converted and parsed on the async worker; larger ones on the
/// ingest pool, as REST parses large bodies.
const PARSE_INLINE_BYTES: usize = 32 * 1024;

fn secs(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

fn write_answer(seq: u64, wait: bool, started: Instant) -> pb::PointsOperationResponse {
    pb::PointsOperationResponse {
        result: Some(to_proto::update_result(seq, wait)),
        time: secs(started),
        usage: None,
    }
}

/// The context with the read consistency a request asks for.
fn consistent(ctx: Ctx, r: Option<&pb::ReadConsistency>) -> tessera_cluster::Result<Ctx> {
    let query = r
        .and_then(j::read_consistency)
        .map(|c| format!("consistency={c}"));
    crate::api::with_consistency(ctx, &query)
}

fn call<'a>(
    operation: Operation,
    collection: &'a str,
    timeout: Option<u64>,
    r: &impl Message,
) -> Call<'a> {
    Call {
        operation,
        collection: Some(collection),
        timeout,
        bytes: r.encoded_len(),
    }
}

impl Grpc {
    /// The hits of each classic search or recommend body, as batch results.
    async fn batch(
        &self,
        ctx: &Ctx,
        collection: &str,
        bodies: Vec<Map<String, Value>>,
        kind: BatchKind,
    ) -> tessera_cluster::Result<Vec<pb::BatchResult>> {
        let searches: Vec<Value> = bodies.into_iter().map(Value::Object).collect();
        let body = Body::new().put("searches", searches).map();
        let results = query::each(&self.app, ctx, collection, &body, kind).await?;
        Ok(results.into_iter().map(batch_result).collect())
    }
}

fn batch_result(hits: Vec<ScoredPoint>) -> pb::BatchResult {
    pb::BatchResult {
        result: hits.into_iter().map(to_proto::scored).collect(),
    }
}

#[tonic::async_trait]
impl pb::points_server::Points for Grpc {
    async fn upsert(
        &self,
        request: Request<pb::UpsertPoints>,
    ) -> Answer<pb::PointsOperationResponse> {
        let (md, _, r) = request.into_parts();
        let name = r.collection_name.clone();
        let c = call(Operation::Upsert, &name, r.timeout, &r);
        let large = c.bytes > PARSE_INLINE_BYTES;
        let (app, name) = (&self.app, &name);
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let wait = r.wait.unwrap_or(false);
            let parse = {
                let (app, ctx, name) = (app.clone(), ctx.clone(), name.clone());
                move || points::parse_upsert(&app, &ctx, &name, &upsert_body(&r))
            };
            let upsert = if large {
                priority::run(Class::Ingest, parse).await??
            } else {
                parse()?
            };
            let seq = points::apply_upsert(app, &ctx, name, upsert).await?;
            Ok(write_answer(seq, wait, started))
        })
        .await
    }

    async fn delete(
        &self,
        request: Request<pb::DeletePoints>,
    ) -> Answer<pb::PointsOperationResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::DeletePoints, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let body = selected(
                Body::new(),
                r.points.as_ref(),
                r.shard_key_selector.as_ref(),
                r.ordering.as_ref(),
            );
            let seq = points::write_selected(
                &self.app,
                &ctx,
                &r.collection_name,
                &body,
                SelectedWriteKind::Delete,
            )
            .await?;
            Ok(write_answer(seq, r.wait.unwrap_or(false), started))
        })
        .await
    }

    async fn get(&self, request: Request<pb::GetPoints>) -> Answer<pb::GetResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::Retrieve, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let body = Body::new()
                .put("ids", j::point_ids(&r.ids))
                .opt("with_payload", r.with_payload.as_ref(), j::with_payload)
                .opt("with_vector", r.with_vectors.as_ref(), j::with_vectors)
                .opt("shard_key", r.shard_key_selector.as_ref(), j::key_selector)
                .map();
            let records =
                points::retrieve_points(&self.app, &ctx, &r.collection_name, &body).await?;
            Ok(pb::GetResponse {
                result: records
                    .into_iter()
                    .map(|r| to_proto::retrieved(PointRecord::new(r)))
                    .collect(),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn update_vectors(
        &self,
        _: Request<pb::UpdatePointVectors>,
    ) -> Answer<pb::PointsOperationResponse> {
        Err(unimplemented("UpdateVectors"))
    }

    async fn delete_vectors(
        &self,
        _: Request<pb::DeletePointVectors>,
    ) -> Answer<pb::PointsOperationResponse> {
        Err(unimplemented("DeleteVectors"))
    }

    async fn set_payload(
        &self,
        request: Request<pb::SetPayloadPoints>,
    ) -> Answer<pb::PointsOperationResponse> {
        self.payload_write(
            request,
            Operation::SetPayload,
            SelectedWriteKind::SetPayload,
        )
        .await
    }

    async fn overwrite_payload(
        &self,
        request: Request<pb::SetPayloadPoints>,
    ) -> Answer<pb::PointsOperationResponse> {
        self.payload_write(
            request,
            Operation::OverwritePayload,
            SelectedWriteKind::OverwritePayload,
        )
        .await
    }

    async fn delete_payload(
        &self,
        request: Request<pb::DeletePayloadPoints>,
    ) -> Answer<pb::PointsOperationResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::DeletePayload, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let b = Body::new().put("keys", json!(r.keys));
            let body = selected(
                b,
                r.points_selector.as_ref(),
                r.shard_key_selector.as_ref(),
                r.ordering.as_ref(),
            );
            let seq = points::write_selected(
                &self.app,
                &ctx,
                &r.collection_name,
                &body,
                SelectedWriteKind::DeletePayload,
            )
            .await?;
            Ok(write_answer(seq, r.wait.unwrap_or(false), started))
        })
        .await
    }

    async fn clear_payload(
        &self,
        request: Request<pb::ClearPayloadPoints>,
    ) -> Answer<pb::PointsOperationResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::ClearPayload, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let body = selected(
                Body::new(),
                r.points.as_ref(),
                r.shard_key_selector.as_ref(),
                r.ordering.as_ref(),
            );
            let seq = points::write_selected(
                &self.app,
                &ctx,
                &r.collection_name,
                &body,
                SelectedWriteKind::ClearPayload,
            )
            .await?;
            Ok(write_answer(seq, r.wait.unwrap_or(false), started))
        })
        .await
    }

    async fn create_field_index(
        &self,
        request: Request<pb::CreateFieldIndexCollection>,
    ) -> Answer<pb::PointsOperationResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(
            Operation::CreatePayloadIndex,
            &r.collection_name,
            r.timeout,
            &r,
        );
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let body = Body::new()
                .put("field_name", r.field_name.clone())
                .opt(
                    "field_schema",
                    j::field_schema(r.field_type, r.field_index_params.as_ref()),
                    |v| v,
                )
                .map();
            let seq =
                crate::api::collections::index_from(&self.app, &ctx, &r.collection_name, &body)
                    .await?;
            Ok(write_answer(seq, r.wait.unwrap_or(false), started))
        })
        .await
    }

    async fn delete_field_index(
        &self,
        request: Request<pb::DeleteFieldIndexCollection>,
    ) -> Answer<pb::PointsOperationResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(
            Operation::DeletePayloadIndex,
            &r.collection_name,
            r.timeout,
            &r,
        );
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let seq = crate::api::collections::drop_index(
                &self.app,
                &ctx,
                &r.collection_name,
                &r.field_name,
            )
            .await?;
            Ok(write_answer(seq, r.wait.unwrap_or(false), started))
        })
        .await
    }

    async fn create_vector_name(
        &self,
        _: Request<pb::CreateVectorNameRequest>,
    ) -> Answer<pb::PointsOperationResponse> {
        Err(unimplemented("CreateVectorName"))
    }

    async fn delete_vector_name(
        &self,
        _: Request<pb::DeleteVectorNameRequest>,
    ) -> Answer<pb::PointsOperationResponse> {
        Err(unimplemented("DeleteVectorName"))
    }

    async fn search(&self, request: Request<pb::SearchPoints>) -> Answer<pb::SearchResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::Search, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let hits =
                query::search_points(&self.app, &ctx, &r.collection_name, &search_body(r)).await?;
            Ok(pb::SearchResponse {
                result: hits.into_iter().map(to_proto::scored).collect(),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn search_batch(
        &self,
        request: Request<pb::SearchBatchPoints>,
    ) -> Answer<pb::SearchBatchResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::SearchBatch, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let bodies = r.search_points.iter().map(search_body).collect();
            let result = self
                .batch(&ctx, &r.collection_name, bodies, BatchKind::Search)
                .await?;
            Ok(pb::SearchBatchResponse {
                result,
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn search_groups(
        &self,
        request: Request<pb::SearchPointGroups>,
    ) -> Answer<pb::SearchGroupsResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::SearchGroups, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let body = search_groups_body(r);
            let found = groups_of(
                &self.app,
                &ctx,
                &r.collection_name,
                &body,
                GroupKind::Search,
            );
            Ok(pb::SearchGroupsResponse {
                result: Some(groups(found.await?)),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn scroll(&self, request: Request<pb::ScrollPoints>) -> Answer<pb::ScrollResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::Scroll, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let body = Body::new()
                .opt("filter", r.filter.as_ref(), j::filter)
                .opt("offset", r.offset.as_ref(), j::point_id)
                .opt("limit", r.limit, |v| json!(v))
                .opt("with_payload", r.with_payload.as_ref(), j::with_payload)
                .opt("with_vector", r.with_vectors.as_ref(), j::with_vectors)
                .opt("shard_key", r.shard_key_selector.as_ref(), j::key_selector)
                .opt("order_by", r.order_by.as_ref(), order_by)
                .map();
            let page = points::scroll_page(&self.app, &ctx, &r.collection_name, &body).await?;
            Ok(pb::ScrollResponse {
                next_page_offset: page.next_page_offset.map(|id| to_proto::point_id(id.0)),
                result: page.points.into_iter().map(to_proto::retrieved).collect(),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn recommend(
        &self,
        request: Request<pb::RecommendPoints>,
    ) -> Answer<pb::RecommendResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::Recommend, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let body = recommend_body(r);
            let hits = query::recommend_points(&self.app, &ctx, &r.collection_name, &body).await?;
            Ok(pb::RecommendResponse {
                result: hits.into_iter().map(to_proto::scored).collect(),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn recommend_batch(
        &self,
        request: Request<pb::RecommendBatchPoints>,
    ) -> Answer<pb::RecommendBatchResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::RecommendBatch, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let bodies = r.recommend_points.iter().map(recommend_body).collect();
            let result = self
                .batch(&ctx, &r.collection_name, bodies, BatchKind::Recommend)
                .await?;
            Ok(pb::RecommendBatchResponse {
                result,
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn recommend_groups(
        &self,
        request: Request<pb::RecommendPointGroups>,
    ) -> Answer<pb::RecommendGroupsResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(
            Operation::RecommendGroups,
            &r.collection_name,
            r.timeout,
            &r,
        );
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let body = recommend_groups_body(r);
            let found = groups_of(
                &self.app,
                &ctx,
                &r.collection_name,
                &body,
                GroupKind::Recommend,
            );
            Ok(pb::RecommendGroupsResponse {
                result: Some(groups(found.await?)),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn discover(&self, request: Request<pb::DiscoverPoints>) -> Answer<pb::DiscoverResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::Discover, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let body = discover_body(r);
            let hits = query::discover_points(&self.app, &ctx, &r.collection_name, &body).await?;
            Ok(pb::DiscoverResponse {
                result: hits.into_iter().map(to_proto::scored).collect(),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn discover_batch(
        &self,
        request: Request<pb::DiscoverBatchPoints>,
    ) -> Answer<pb::DiscoverBatchResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::DiscoverBatch, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let bodies = r.discover_points.iter().map(discover_body).collect();
            let result = self
                .batch(&ctx, &r.collection_name, bodies, BatchKind::Discover)
                .await?;
            Ok(pb::DiscoverBatchResponse {
                result,
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn count(&self, request: Request<pb::CountPoints>) -> Answer<pb::CountResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::Count, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let body = Body::new()
                .opt("filter", r.filter.as_ref(), j::filter)
                .opt("exact", r.exact, |v| json!(v))
                .opt("shard_key", r.shard_key_selector.as_ref(), j::key_selector)
                .map();
            let count = points::count_points(&self.app, &ctx, &r.collection_name, &body).await?;
            Ok(pb::CountResponse {
                result: Some(pb::CountResult {
                    count: count as u64,
                }),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn update_batch(
        &self,
        request: Request<pb::UpdateBatchPoints>,
    ) -> Answer<pb::UpdateBatchResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::UpdateBatch, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let body = super::batch::batch_body(r);
            let seqs = batch::run_batch(&self.app, &ctx, &r.collection_name, &body).await?;
            let wait = r.wait.unwrap_or(false);
            Ok(pb::UpdateBatchResponse {
                result: seqs
                    .into_iter()
                    .map(|seq| to_proto::update_result(seq, wait))
                    .collect(),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn query(&self, request: Request<pb::QueryPoints>) -> Answer<pb::QueryResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::Query, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let hits =
                query::query_one(&self.app, &ctx, &r.collection_name, &query_body(r)).await?;
            Ok(pb::QueryResponse {
                result: hits.into_iter().map(to_proto::scored).collect(),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn query_batch(
        &self,
        request: Request<pb::QueryBatchPoints>,
    ) -> Answer<pb::QueryBatchResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::QueryBatch, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let searches: Vec<Value> = r
                .query_points
                .iter()
                .map(|q| Value::Object(query_body(q)))
                .collect();
            let body = Body::new().put("searches", searches).map();
            let results = query::query_many(&self.app, &ctx, &r.collection_name, &body).await?;
            Ok(pb::QueryBatchResponse {
                result: results
                    .into_iter()
                    .map(|q| pb::BatchResult {
                        result: q.points.into_iter().map(to_proto::scored).collect(),
                    })
                    .collect(),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn query_groups(
        &self,
        request: Request<pb::QueryPointGroups>,
    ) -> Answer<pb::QueryGroupsResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::QueryGroups, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let body = query_groups_body(r);
            let found = groups_of(&self.app, &ctx, &r.collection_name, &body, GroupKind::Query);
            Ok(pb::QueryGroupsResponse {
                result: Some(groups(found.await?)),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn facet(&self, request: Request<pb::FacetCounts>) -> Answer<pb::FacetResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::Facet, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let body = Body::new()
                .put("key", r.key.clone())
                .opt("filter", r.filter.as_ref(), j::filter)
                .opt("limit", r.limit, |v| json!(v))
                .opt("exact", r.exact, |v| json!(v))
                .opt("shard_key", r.shard_key_selector.as_ref(), j::key_selector)
                .map();
            let found = facet::facet_of(&self.app, &ctx, &r.collection_name, &body).await?;
            Ok(pb::FacetResponse {
                hits: found.hits.into_iter().map(facet_hit).collect(),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn search_matrix_pairs(
        &self,
        request: Request<pb::SearchMatrixPoints>,
    ) -> Answer<pb::SearchMatrixPairsResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::MatrixPairs, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let body = matrix_body(r);
            let found = matrix::pairs_of(&self.app, &ctx, &r.collection_name, &body).await?;
            Ok(pb::SearchMatrixPairsResponse {
                result: Some(pb::SearchMatrixPairs {
                    pairs: found
                        .pairs
                        .into_iter()
                        .map(|p| pb::SearchMatrixPair {
                            a: Some(to_proto::point_id(p.a.0)),
                            b: Some(to_proto::point_id(p.b.0)),
                            score: p.score as f32,
                        })
                        .collect(),
                }),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }

    async fn search_matrix_offsets(
        &self,
        request: Request<pb::SearchMatrixPoints>,
    ) -> Answer<pb::SearchMatrixOffsetsResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(Operation::MatrixOffsets, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let ctx = consistent(ctx, r.read_consistency.as_ref())?;
            let body = matrix_body(r);
            let m = matrix::offsets_of(&self.app, &ctx, &r.collection_name, &body).await?;
            Ok(pb::SearchMatrixOffsetsResponse {
                result: Some(pb::SearchMatrixOffsets {
                    offsets_row: m.offsets_row,
                    offsets_col: m.offsets_col,
                    scores: m.scores.into_iter().map(|s| s as f32).collect(),
                    ids: m.ids.into_iter().map(|i| to_proto::point_id(i.0)).collect(),
                }),
                time: secs(started),
                usage: None,
            })
        })
        .await
    }
}

impl Grpc {
    /// `SetPayload` and `OverwritePayload`: the payload, an optional `key` to set it under, and
    /// the points.
    async fn payload_write(
        &self,
        request: Request<pb::SetPayloadPoints>,
        operation: Operation,
        kind: SelectedWriteKind,
    ) -> Answer<pb::PointsOperationResponse> {
        let (md, _, r) = request.into_parts();
        let c = call(operation, &r.collection_name, r.timeout, &r);
        let r = &r;
        self.run(&md, c, |ctx| async move {
            let started = Instant::now();
            let b = Body::new().put("payload", j::payload(&r.payload)).opt(
                "key",
                r.key.as_ref(),
                |k| json!(k),
            );
            let body = selected(
                b,
                r.points_selector.as_ref(),
                r.shard_key_selector.as_ref(),
                r.ordering.as_ref(),
            );
            let seq =
                points::write_selected(&self.app, &ctx, &r.collection_name, &body, kind).await?;
            Ok(write_answer(seq, r.wait.unwrap_or(false), started))
        })
        .await
    }
}
