//! The official Rust `qdrant-client` (gRPC only) drives a real tessera process through the seed
//! guide's flow: custom sharding, shard keys, a payload index with `is_tenant`, upserts and
//! queries with a shard key selector and filters, with the admin key and with a JWT bound to one
//! tenant. Outside its tenant the token gets NOT_FOUND with REST's message, byte for byte, and
//! changes nothing.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use jsonwebtoken::{EncodingKey, Header};
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    CreateShardKeyBuilder, CreateShardKeyRequestBuilder, Distance, FieldType, Filter,
    GetPointsBuilder, KeywordIndexParamsBuilder, PointStruct, QueryPointsBuilder, Range,
    ScrollPointsBuilder, ShardingMethod, UpsertPointsBuilder, VectorParamsBuilder, point_id,
    shard_key,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::{Value, json};
use tessera_tests::{Api, error_message, with_node};

const KEY: &str = "grpc-admin-key-0123456789abcdef";
const DIM: u64 = 4;

fn token(claims: Value) -> Result<String> {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(KEY.as_bytes()),
    )
    .context("sign HS256")
}

fn exp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 3600
}

/// A client of the node's gRPC port (the one after its HTTP port, the default).
fn client(api: &Api, key: Option<&str>) -> Result<Qdrant> {
    let http = api.url("");
    let port: u16 = http
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("http port")?;
    Qdrant::from_url(&format!("http://127.0.0.1:{}", port + 1))
        .api_key(key.map(str::to_string))
        .build()
        .context("build client")
}

fn vector(i: u64) -> Vec<f32> {
    vec![1.0, i as f32, (i % 3) as f32, 0.5]
}

fn points(tenant: &str, ids: std::ops::RangeInclusive<u64>) -> Vec<PointStruct> {
    ids.map(|i| {
        let payload = Payload::from([
            ("group_id", tenant.to_string().into()),
            ("n", (i as i64).into()),
        ]);
        PointStruct::new(i, vector(i), payload)
    })
    .collect()
}

fn ids_of(ids: impl IntoIterator<Item = Option<qdrant_client::qdrant::PointId>>) -> BTreeSet<u64> {
    ids.into_iter()
        .filter_map(|id| match id?.point_id_options? {
            point_id::PointIdOptions::Num(n) => Some(n),
            point_id::PointIdOptions::Uuid(_) => None,
        })
        .collect()
}

/// Runs a blocking REST call from inside the test's runtime.
fn blocking<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    tokio::task::block_in_place(f)
}

/// The status of a refused call.
fn refused<T: std::fmt::Debug>(r: std::result::Result<T, QdrantError>) -> Result<tonic::Status> {
    match r {
        Err(QdrantError::ResponseError { status }) => Ok(status),
        other => anyhow::bail!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_rust_client_runs_the_seed_guide_over_grpc_and_a_tenant_token_stays_in_its_tenant() {
    with_node(&["--api-key", KEY, "--jwt-rbac"], |node| {
        let rt = tokio::runtime::Runtime::new()?;
        let rest = node.api().with_key(KEY);
        rt.block_on(async {
            let admin = client(&rest, Some(KEY))?;
            let health = admin.health_check().await?;
            let (_, banner) = blocking(|| rest.get("/"))?;
            ensure!(
                Some(health.version.as_str()) == banner["version"].as_str(),
                "{health:?} vs {banner}"
            );

            admin
                .create_collection(
                    CreateCollectionBuilder::new("guide")
                        .vectors_config(VectorParamsBuilder::new(DIM, Distance::Cosine))
                        .sharding_method(ShardingMethod::Custom.into()),
                )
                .await?;
            for t in ["t1", "t2"] {
                admin
                    .create_shard_key(
                        CreateShardKeyRequestBuilder::new("guide").request(
                            CreateShardKeyBuilder::default()
                                .shard_key(shard_key::Key::Keyword(t.to_string())),
                        ),
                    )
                    .await?;
            }
            admin
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new("guide", "group_id", FieldType::Keyword)
                        .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
                        .wait(true),
                )
                .await?;
            let info = admin
                .collection_info("guide")
                .await?
                .result
                .context("info")?;
            let schema = info
                .payload_schema
                .get("group_id")
                .context("group_id index")?;
            ensure!(
                format!("{:?}", schema.params).contains("is_tenant: Some(true)"),
                "{schema:?}"
            );
            admin
                .upsert_points(
                    UpsertPointsBuilder::new("guide", points("t1", 1..=10))
                        .shard_key_selector("t1".to_string())
                        .wait(true),
                )
                .await?;
            admin
                .upsert_points(
                    UpsertPointsBuilder::new("guide", points("t2", 101..=110))
                        .shard_key_selector("t2".to_string())
                        .wait(true),
                )
                .await?;

            // a query with a shard key selector sees that key's points, as REST answers it
            let q = vector(4);
            let hits = admin
                .query(
                    QueryPointsBuilder::new("guide")
                        .query(q.clone())
                        .limit(5)
                        .shard_key_selector("t1".to_string()),
                )
                .await?
                .result;
            let rest_hits = blocking(|| {
                rest.ok_post(
                    "/collections/guide/points/query",
                    &json!({"query": q, "limit": 5, "shard_key": "t1"}),
                )
            })?;
            let rest_points = rest_hits["points"].as_array().context("points")?;
            ensure!(hits.len() == 5 && rest_points.len() == 5, "{hits:?}");
            for (g, r) in hits.iter().zip(rest_points) {
                ensure!(
                    ids_of([g.id.clone()]).first().copied() == r["id"].as_u64(),
                    "{g:?} vs {r}"
                );
                let score = r["score"].as_f64().context("score")?;
                ensure!((f64::from(g.score) - score).abs() < 1e-5, "{g:?} vs {r}");
            }
            ensure!(
                ids_of(hits.iter().map(|h| h.id.clone()))
                    .iter()
                    .all(|i| (1..=10).contains(i))
            );

            // filters: a range and the tenant field
            let filtered = admin
                .query(
                    QueryPointsBuilder::new("guide")
                        .query(q.clone())
                        .limit(20)
                        .filter(Filter::must([
                            Condition::range(
                                "n",
                                Range {
                                    gte: Some(5.0),
                                    ..Default::default()
                                },
                            ),
                            Condition::matches("group_id", "t1".to_string()),
                        ])),
                )
                .await?
                .result;
            ensure!(
                ids_of(filtered.iter().map(|h| h.id.clone())) == (5..=10).collect(),
                "{filtered:?}"
            );

            // a token bound to tenant t1 sees t1 without naming it
            let t1 = client(
                &rest,
                Some(&token(json!({"tenant_id": "t1", "exp": exp()}))?),
            )?;
            let count = t1
                .count(CountPointsBuilder::new("guide").exact(true))
                .await?;
            ensure!(count.result.map(|c| c.count) == Some(10), "{count:?}");
            let mine = t1
                .query(QueryPointsBuilder::new("guide").query(q.clone()).limit(50))
                .await?
                .result;
            ensure!(
                ids_of(mine.iter().map(|h| h.id.clone())) == (1..=10).collect(),
                "{mine:?}"
            );
            let scrolled = t1
                .scroll(ScrollPointsBuilder::new("guide").limit(100))
                .await?
                .result;
            ensure!(ids_of(scrolled.iter().map(|p| p.id.clone())) == (1..=10).collect());

            // outside it: NOT_FOUND with REST's message, on every path, and nothing changes
            let t1_token = token(json!({"tenant_id": "t1", "exp": exp()}))?;
            let (status, body) = blocking(|| {
                node.api().with_key(&t1_token).post(
                    "/collections/guide/points/count",
                    &json!({"shard_key": "t2", "exact": true}),
                )
            })?;
            ensure!(status == 404, "{status} {body}");
            let rest_message = error_message(&body)?;
            let outside = [
                refused(
                    t1.count(CountPointsBuilder::new("guide").shard_key_selector("t2".to_string()))
                        .await,
                )?,
                refused(
                    t1.query(
                        QueryPointsBuilder::new("guide")
                            .query(q.clone())
                            .shard_key_selector("t2".to_string()),
                    )
                    .await,
                )?,
                refused(
                    t1.get_points(
                        GetPointsBuilder::new("guide", vec![101.into()])
                            .shard_key_selector("t2".to_string()),
                    )
                    .await,
                )?,
                refused(
                    t1.upsert_points(
                        UpsertPointsBuilder::new("guide", points("t2", 111..=111))
                            .shard_key_selector("t2".to_string())
                            .wait(true),
                    )
                    .await,
                )?,
            ];
            for status in &outside {
                ensure!(status.code() == tonic::Code::NotFound, "{status:?}");
                ensure!(
                    status.message() == rest_message,
                    "{status:?} vs REST {rest_message:?}"
                );
            }
            let t2_count = admin
                .count(
                    CountPointsBuilder::new("guide")
                        .shard_key_selector("t2".to_string())
                        .exact(true),
                )
                .await?;
            ensure!(
                t2_count.result.map(|c| c.count) == Some(10),
                "a refused write changed t2: {t2_count:?}"
            );

            // a collection the token cannot see is missing exactly as one that does not exist
            admin
                .create_collection(
                    CreateCollectionBuilder::new("private")
                        .vectors_config(VectorParamsBuilder::new(DIM, Distance::Dot)),
                )
                .await?;
            let hidden = refused(t1.collection_info("private").await)?;
            let missing = refused(t1.collection_info("absent").await)?;
            ensure!(
                hidden.code() == tonic::Code::NotFound && missing.code() == tonic::Code::NotFound
            );
            ensure!(
                hidden.message().replace("private", "X")
                    == missing.message().replace("absent", "X"),
                "{hidden:?} vs {missing:?}"
            );
            let listed = t1.list_collections().await?;
            ensure!(
                listed.collections.iter().all(|c| c.name != "private"),
                "{listed:?}"
            );

            // no credential: UNAUTHENTICATED, as REST's 401
            let anonymous = client(&rest, None)?;
            let status = refused(anonymous.list_collections().await)?;
            ensure!(status.code() == tonic::Code::Unauthenticated, "{status:?}");
            Ok(())
        })
    });
}
