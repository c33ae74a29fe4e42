//! Authentication and tenant isolation against a real `tessera` process with credentials on:
//! an api key, HS256 JWTs signed with it, and EdDSA JWTs whose public key comes from a JWKS file
//! made by `tessera token jwk`.
//!
//! - `cross_tenant_pattern_on_every_endpoint`: tenant A writes; tenant B reads, lists, counts,
//!   scrolls, queries, updates and deletes on every endpoint, naming A's shard key or A's ids or
//!   nothing at all, in a custom-sharded and in a payload-partitioned collection; B gets 404 (or
//!   an empty answer where the endpoint lists) and A's data is byte-for-byte unchanged.
//! - `jwt_attacks_are_refused_with_401`: the attack list, each over HTTP.
//! - `qdrant_style_tokens_keep_qdrant_access_levels`, suspension, audit log, JWKS reload.
//! - `tenant_bound_tokens_never_see_another_tenant` (proptest): random ids, shard keys and
//!   filters from B never return a point of A.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{Value, json};
use tessera_tests::{Api, Node, error_message, phase, tessera_bin};

const ADMIN_KEY: &str = "admin-key-for-tests-0123456789";
const READ_KEY: &str = "read-only-key-for-tests-0123456";
const ISSUER: &str = "https://auth.tessera.test/";
const AUDIENCE: &str = "tessera-tests";
const DIM: usize = 4;
/// A marker inside A's payloads: it must never reach B, nor the audit log.
const SECRET: &str = "confidential-text-of-a";

/// An Ed25519 key pair made by rcgen (PKCS#8 PEM private key).
struct EdKey {
    pem: String,
    public_raw: Vec<u8>,
}

impl EdKey {
    fn generate() -> EdKey {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519 key");
        EdKey {
            pem: kp.serialize_pem(),
            public_raw: kp.public_key_raw().to_vec(),
        }
    }

    fn encoding(&self) -> EncodingKey {
        EncodingKey::from_ed_pem(self.pem.as_bytes()).expect("pkcs8 ed25519")
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Claims every valid token carries (issuer, audience, an hour of validity) plus `extra`.
fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now() + 3600, "iat": now()});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn ed_token(key: &EdKey, kid: &str, extra: Value) -> String {
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, &claims(extra), &key.encoding()).expect("sign EdDSA")
}

fn hs_token(secret: &[u8], extra: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(extra),
        &EncodingKey::from_secret(secret),
    )
    .expect("sign HS256")
}

/// Writes `tessera token jwk`'s JWKS for `key` (made by the real CLI) to `path`.
fn write_jwks(key: &EdKey, kid: &str, dir: &Path, path: &Path) -> Result<()> {
    let pem = dir.join(format!("{kid}.pem"));
    std::fs::write(&pem, &key.pem)?;
    let out = Command::new(tessera_bin()?)
        .args(["token", "jwk", "--private-key"])
        .arg(&pem)
        .args(["--kid", kid])
        .output()
        .context("run tessera token jwk")?;
    ensure!(
        out.status.success(),
        "tessera token jwk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &out.stdout)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Fields drop in order: the node stops before its directory goes.
struct Fixture {
    node: Node,
    ed: EdKey,
    jwks: std::path::PathBuf,
    audit: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

fn start() -> Result<Fixture> {
    let tmp = tempfile::tempdir()?;
    let ed = EdKey::generate();
    let jwks = tmp.path().join("jwks.json");
    write_jwks(&ed, "ed1", tmp.path(), &jwks)?;
    let audit = tmp.path().join("audit.log");
    let (jwks_s, audit_s) = (
        jwks.to_string_lossy().into_owned(),
        audit.to_string_lossy().into_owned(),
    );
    let node = Node::start(
        &tmp.path().join("data"),
        &[
            "--api-key",
            ADMIN_KEY,
            "--read-only-api-key",
            READ_KEY,
            "--jwt-rbac",
            "--jwks",
            &jwks_s,
            "--jwt-issuer",
            ISSUER,
            "--jwt-audience",
            AUDIENCE,
            "--audit-log",
            &audit_s,
        ],
    )?;
    Ok(Fixture {
        node,
        ed,
        jwks,
        audit,
        _tmp: tmp,
    })
}

fn status_of(api: &Api, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
    match (method, body) {
        ("GET", _) => api.get(path),
        ("DELETE", _) => api.delete(path),
        ("PUT", Some(b)) => api.put(path, b),
        ("POST", Some(b)) => api.post(path, b),
        ("POST", None) => api.post(path, &json!({})),
        _ => bail!("bad request spec {method} {path}"),
    }
}

/// Asserts an answer is a Qdrant error with `status`, and returns its message.
fn expect_error(answer: (u16, Value), status: u16, what: &str) -> Result<String> {
    let (got, body) = answer;
    ensure!(
        got == status,
        "{what}: expected {status}, got {got}: {body}"
    );
    error_message(&body).with_context(|| what.to_owned())
}

fn point(id: u64, owner: &str, n: u64) -> Value {
    let v: Vec<f32> = (0..DIM)
        .map(|d| ((id * 7 + d as u64) % 11) as f32 + 0.5)
        .collect();
    let note = if owner == "acme" {
        SECRET
    } else {
        "public-note"
    };
    json!({"id": id, "vector": v, "payload": {"owner": owner, "n": n, "note": note}})
}

/// Every point of a collection as the admin sees it, optionally of one shard key.
fn admin_dump(admin: &Api, collection: &str, key: Option<&str>) -> Result<Vec<Value>> {
    admin.scroll_all(collection, key.map(|k| json!(k)).as_ref())
}

fn ids_of(points: &Value) -> Result<Vec<u64>> {
    points
        .as_array()
        .ok_or_else(|| anyhow!("not a list: {points}"))?
        .iter()
        .map(|p| p["id"].as_u64().ok_or_else(|| anyhow!("id of {p}")))
        .collect()
}

fn no_acme(points: &Value, what: &str) -> Result<()> {
    let text = points.to_string();
    ensure!(
        !text.contains(SECRET) && !text.contains("\"acme\""),
        "{what}: B saw A's data: {text}"
    );
    Ok(())
}

/// Tenants acme and globex in the two layouts: `docs`, custom-sharded with a shard key each, and
/// `shared`, one collection partitioned by the `owner` field (an `is_tenant` index).
fn tenant_collections(admin: &Api) -> Result<()> {
    admin.ok_put(
        "/collections/docs",
        &json!({"vectors": {"size": DIM, "distance": "Cosine"}, "sharding_method": "custom"}),
    )?;
    for k in ["acme", "globex"] {
        admin.ok_put("/collections/docs/shards", &json!({"shard_key": k}))?;
    }
    admin.ok_put(
        "/collections/shared",
        &json!({"vectors": {"size": DIM, "distance": "Cosine"}}),
    )?;
    admin.ok_put(
        "/collections/shared/index",
        &json!({"field_name": "owner", "field_schema": {"type": "keyword", "is_tenant": true}}),
    )?;
    Ok(())
}

#[test]
fn cross_tenant_pattern_on_every_endpoint() {
    let f = start().expect("start node");
    if let Err(e) = cross_tenant(&f) {
        panic!("{e:#}\n--- server log ---\n{}", f.node.log_tail());
    }
}

fn cross_tenant(f: &Fixture) -> Result<()> {
    let base = f.node.api();
    let admin = base.with_key(ADMIN_KEY);
    phase!("admin: a custom-sharded and a payload-partitioned collection, two tenants");
    tenant_collections(&admin)?;
    admin.ok_put(
        "/collections/private",
        &json!({"vectors": {"size": DIM, "distance": "Dot"}}),
    )?;

    // A: EdDSA token bound by tenant_id, no access claim (Qdrant's default, capped to rw).
    let a = base.with_key(&ed_token(
        &f.ed,
        "ed1",
        json!({"tenant_id": "acme", "sub": "alice"}),
    ));
    // B: HS256 token (Qdrant's shape) with per-collection access and the payload binding form.
    let b_token = hs_token(
        ADMIN_KEY.as_bytes(),
        json!({"sub": "bob", "access": [
            {"collection": "docs", "access": "rw", "payload": {"owner": "globex"}},
            {"collection": "shared", "access": "rw", "payload": {"owner": "globex"}},
        ]}),
    );
    let b = base.with_key(&b_token);

    phase!("A writes without naming a shard key: pinned to its key / stamped with its tenant");
    let a_points: Vec<Value> = (1..=12).map(|i| point(i, "acme", i)).collect();
    a.ok_put(
        "/collections/docs/points?wait=true",
        &json!({"points": a_points}),
    )?;
    let unstamped: Vec<Value> = (1..=12)
        .map(|i| {
            let mut p = point(i, "acme", i);
            p["payload"].as_object_mut().map(|m| m.remove("owner"));
            p
        })
        .collect();
    a.ok_put(
        "/collections/shared/points?wait=true",
        &json!({"points": unstamped}),
    )?;
    let b_points: Vec<Value> = (100..=104).map(|i| point(i, "globex", i)).collect();
    b.ok_put(
        "/collections/docs/points?wait=true",
        &json!({"points": b_points, "shard_key": "globex"}),
    )?;
    b.ok_put(
        "/collections/shared/points?wait=true",
        &json!({"points": b_points}),
    )?;

    let docs_a = admin_dump(&admin, "docs", Some("acme"))?;
    ensure!(
        docs_a.len() == 12,
        "A's 12 points in its shard key: {docs_a:?}"
    );
    let docs_b = admin_dump(&admin, "docs", Some("globex"))?;
    ensure!(docs_b.len() == 5, "B's 5 points in its shard key");
    let shared_before = admin_dump(&admin, "shared", None)?;
    ensure!(
        shared_before.len() == 17,
        "17 points in the shared collection"
    );
    for p in &shared_before {
        // an unbound admin sees a tenant's points under their stored ids, which name the
        // tenant's id space: `tenant:"<owner>"/n:<id>`
        let stored = p["id"].as_str().unwrap_or_default();
        let id: u64 = stored
            .rsplit_once("/n:")
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(u64::MAX);
        let want = if id < 100 { "acme" } else { "globex" };
        ensure!(
            p["payload"]["owner"] == want && stored.starts_with(&format!("tenant:\"{want}\"/")),
            "tenant field stamped server-side, id in the tenant's own space: {p}"
        );
    }

    phase!("B on every endpoint, naming A's shard key: 404 as for a missing key");
    let acme_key = json!("acme");
    let sk = |mut body: Value| {
        body["shard_key"] = acme_key.clone();
        body
    };
    let q = json!([1.0, 1.0, 1.0, 1.0]);
    let named: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/collections/docs/points".into(),
            sk(json!({"ids": [1, 2]})),
        ),
        (
            "POST",
            "/collections/docs/points/scroll".into(),
            sk(json!({"limit": 100})),
        ),
        (
            "POST",
            "/collections/docs/points/count".into(),
            sk(json!({})),
        ),
        (
            "POST",
            "/collections/docs/points/query".into(),
            sk(json!({"query": q})),
        ),
        (
            "POST",
            "/collections/docs/points/query".into(),
            sk(json!({"query": 1})),
        ),
        (
            "POST",
            "/collections/docs/points/query".into(),
            sk(json!({"prefetch": [{"query": q}, {"query": q}], "query": {"fusion": "rrf"}})),
        ),
        (
            "POST",
            "/collections/docs/points/query".into(),
            sk(json!({"query": {"order_by": "n"}})),
        ),
        (
            "POST",
            "/collections/docs/points/query".into(),
            sk(json!({"query": {"sample": "random"}})),
        ),
        (
            "POST",
            "/collections/docs/points/discover".into(),
            sk(json!({"target": q, "context": [{"positive": q, "negative": q}]})),
        ),
        (
            "POST",
            "/collections/docs/points/discover/batch".into(),
            json!({"searches": [sk(json!({"target": q}))]}),
        ),
        (
            "POST",
            "/collections/docs/points/query".into(),
            sk(json!({"query": {"recommend": {"positive": [q], "strategy": "best_score"}}})),
        ),
        (
            "POST",
            "/collections/docs/points/query/batch".into(),
            json!({"searches": [sk(json!({"query": q}))]}),
        ),
        (
            "POST",
            "/collections/docs/points/search".into(),
            sk(json!({"vector": q})),
        ),
        (
            "POST",
            "/collections/docs/points/search/batch".into(),
            json!({"searches": [sk(json!({"vector": q}))]}),
        ),
        (
            "POST",
            "/collections/docs/points/search/groups".into(),
            sk(json!({"vector": q, "group_by": "owner"})),
        ),
        (
            "POST",
            "/collections/docs/points/query/groups".into(),
            sk(json!({"query": q, "group_by": "owner"})),
        ),
        (
            "POST",
            "/collections/docs/points/recommend".into(),
            sk(json!({"positive": [q]})),
        ),
        (
            "POST",
            "/collections/docs/points/recommend/batch".into(),
            json!({"searches": [sk(json!({"positive": [1]}))]}),
        ),
        (
            "POST",
            "/collections/docs/points/recommend/groups".into(),
            sk(json!({"positive": [q], "group_by": "owner"})),
        ),
        (
            "PUT",
            "/collections/docs/points?wait=true".into(),
            sk(json!({"points": [point(1, "globex", 0)]})),
        ),
        (
            "POST",
            "/collections/docs/points/delete?wait=true".into(),
            sk(json!({"points": [1, 2]})),
        ),
        (
            "POST",
            "/collections/docs/points/delete?wait=true".into(),
            sk(json!({"filter": {"must": []}})),
        ),
        (
            "POST",
            "/collections/docs/points/payload?wait=true".into(),
            sk(json!({"points": [1], "payload": {"x": 1}})),
        ),
        (
            "PUT",
            "/collections/docs/points/payload?wait=true".into(),
            sk(json!({"points": [1], "payload": {"x": 1}})),
        ),
        (
            "POST",
            "/collections/docs/points/payload/delete?wait=true".into(),
            sk(json!({"points": [1], "keys": ["n"]})),
        ),
        (
            "POST",
            "/collections/docs/points/payload/clear?wait=true".into(),
            sk(json!({"points": [1]})),
        ),
        (
            "POST",
            "/collections/docs/points/batch?wait=true".into(),
            json!({"operations": [{"delete": sk(json!({"points": [1, 2]}))}]}),
        ),
        (
            "POST",
            "/collections/docs/points/search/matrix/pairs".into(),
            sk(json!({"sample": 5})),
        ),
        (
            "POST",
            "/collections/docs/facet".into(),
            sk(json!({"key": "owner"})),
        ),
        (
            "POST",
            "/collections/docs/points/scroll".into(),
            sk(json!({"order_by": "n"})),
        ),
        (
            "POST",
            "/collections/docs/points/batch?wait=true".into(),
            json!({"operations": [{"set_payload": sk(json!({"points": [1], "payload": {"x": 1}}))}]}),
        ),
        (
            "POST",
            "/collections/docs/points/scroll".into(),
            json!({"shard_key": ["globex", "acme"]}),
        ),
        (
            "POST",
            "/collections/docs/points/count".into(),
            json!({"shard_key": {"target": ["acme"], "fallback": "acme"}}),
        ),
    ];
    for (method, path, body) in &named {
        let what = format!("B {method} {path} {body}");
        let msg = expect_error(status_of(&b, method, path, Some(body))?, 404, &what)?;
        ensure!(
            msg == "Shard key acme not found",
            "{what}: same message as a missing key, got {msg}"
        );
    }
    // exactly the answer for a key that does not exist at all
    let msg = expect_error(
        b.post(
            "/collections/docs/points/count",
            &json!({"shard_key": "nonexistent"}),
        )?,
        404,
        "B names a missing key",
    )?;
    ensure!(msg == "Shard key nonexistent not found", "{msg}");

    phase!("B naming nothing: only its own points, A's ids are missing");
    for coll in ["docs", "shared"] {
        let r = b.ok_post(
            &format!("/collections/{coll}/points"),
            &json!({"ids": [1, 2, 3, 100], "with_payload": true}),
        )?;
        ensure!(
            ids_of(&r)? == vec![100],
            "{coll}: retrieve of A's ids gives nothing: {r}"
        );
        let (st, body) = b.get(&format!("/collections/{coll}/points/1"))?;
        ensure!(st == 404, "{coll}: GET A's point: {st} {body}");
        no_acme(&body, "GET point")?;
        let r = b.ok_post(
            &format!("/collections/{coll}/points/scroll"),
            &json!({"limit": 100, "with_payload": true}),
        )?;
        ensure!(
            ids_of(&r["points"])? == vec![100, 101, 102, 103, 104],
            "{coll}: scroll: {r}"
        );
        no_acme(&r, "scroll")?;
        // a filter that tries to widen the scope
        let wide = json!({"should": [{"key": "owner", "match": {"value": "acme"}}, {"has_id": [1, 2, 3]}, {"is_empty": {"key": "zzz"}}]});
        let r = b.ok_post(
            &format!("/collections/{coll}/points/scroll"),
            &json!({"limit": 100, "filter": wide, "with_payload": true}),
        )?;
        ensure!(
            ids_of(&r["points"])?.iter().all(|id| *id >= 100),
            "{coll}: widening filter: {r}"
        );
        no_acme(&r, "widening scroll")?;
        let r = b.ok_post(
            &format!("/collections/{coll}/points/count"),
            &json!({"filter": {"must": [{"key": "owner", "match": {"value": "acme"}}]}}),
        )?;
        ensure!(r["count"] == 0, "{coll}: count of A's points: {r}");
        let r = b.ok_post(&format!("/collections/{coll}/points/count"), &json!({}))?;
        ensure!(r["count"] == 5, "{coll}: B counts its own 5: {r}");
        let r = b.ok_post(
            &format!("/collections/{coll}/points/query"),
            &json!({"query": q, "limit": 50, "with_payload": true}),
        )?;
        ensure!(
            ids_of(&r["points"])?.iter().all(|id| *id >= 100),
            "{coll}: query: {r}"
        );
        no_acme(&r, "query")?;
        for (what, body) in [
            (
                "rrf",
                json!({"prefetch": [{"query": q, "limit": 50}, {"query": [1.0, 0.0, 0.0, 0.0], "limit": 50}],
                       "query": {"fusion": "rrf"}, "limit": 50, "with_payload": true}),
            ),
            (
                "rescoring",
                json!({"prefetch": {"query": q, "limit": 50, "filter": wide},
                       "query": [0.0, 1.0, 0.0, 0.0], "limit": 50, "with_payload": true}),
            ),
            (
                "sample",
                json!({"query": {"sample": "random"}, "limit": 50, "with_payload": true}),
            ),
            (
                "best_score",
                json!({"query": {"recommend": {"positive": [q], "negative": [[1.0, 0.0, 0.0, 0.0]], "strategy": "best_score"}},
                       "limit": 50, "with_payload": true, "filter": wide}),
            ),
            (
                "context",
                json!({"query": {"context": [{"positive": q, "negative": [1.0, 0.0, 0.0, 0.0]}]},
                       "limit": 50, "with_payload": true}),
            ),
        ] {
            let r = b.ok_post(&format!("/collections/{coll}/points/query"), &body)?;
            let got = ids_of(&r["points"])?;
            ensure!(
                got.len() == 5 && got.iter().all(|id| *id >= 100),
                "{coll}: {what}: B's 5 points only: {r}"
            );
            no_acme(&r, what)?;
        }
        let msg = expect_error(
            b.post(
                &format!("/collections/{coll}/points/query"),
                &json!({"prefetch": {"query": q}, "query": 1}),
            )?,
            404,
            "rescoring by A's point id",
        )?;
        ensure!(msg == "No point with id 1 found", "{msg}");
        let r = b.ok_post(
            &format!("/collections/{coll}/points/discover"),
            &json!({"target": q, "context": [{"positive": q, "negative": [1.0, 0.0, 0.0, 0.0]}], "limit": 50, "with_payload": true}),
        )?;
        let got = ids_of(&r)?;
        ensure!(
            got.len() == 5 && got.iter().all(|id| *id >= 100),
            "{coll}: discover: B's 5 points only: {r}"
        );
        no_acme(&r, "discover")?;
        let msg = expect_error(
            b.post(
                &format!("/collections/{coll}/points/discover"),
                &json!({"target": q, "context": [{"positive": 2, "negative": 100}]}),
            )?,
            404,
            "discover with A's point id",
        )?;
        ensure!(msg == "No point with id 2 found", "{msg}");
        // examples read from elsewhere: A's key of the other collection is missing, A's ids
        // there are missing, as everywhere
        let other = if coll == "docs" { "shared" } else { "docs" };
        let msg = expect_error(
            b.post(
                &format!("/collections/{coll}/points/query"),
                &json!({"query": 100, "lookup_from": {"collection": "docs", "shard_key": "acme"}}),
            )?,
            404,
            "lookup_from A's shard key",
        )?;
        ensure!(msg == "Shard key acme not found", "{msg}");
        let msg = expect_error(
            b.post(
                &format!("/collections/{coll}/points/recommend"),
                &json!({"positive": [1], "lookup_from": {"collection": other}}),
            )?,
            404,
            "lookup_from A's point id",
        )?;
        ensure!(msg == "No point with id 1 found", "{msg}");
        let r = b.ok_post(
            &format!("/collections/{coll}/points/query"),
            &json!({"query": 100, "lookup_from": {"collection": other}, "limit": 50, "with_payload": true}),
        )?;
        let got = ids_of(&r["points"])?;
        ensure!(
            got.len() == 5 && got.iter().all(|id| *id >= 100),
            "{coll}: lookup_from: B's own 5 points, 100 included (it names the other collection's): {r}"
        );
        let r = b.ok_post(
            &format!("/collections/{coll}/points/search"),
            &json!({"vector": q, "limit": 50, "with_payload": true}),
        )?;
        no_acme(&r, "search")?;
        let r = b.ok_post(
            &format!("/collections/{coll}/points/query/batch"),
            &json!({"searches": [{"query": q, "limit": 50, "with_payload": true}]}),
        )?;
        no_acme(&r, "query batch")?;
        let r = b.ok_post(
            &format!("/collections/{coll}/points/search/matrix/offsets"),
            &json!({"sample": 50, "limit": 2}),
        )?;
        let sampled: Vec<u64> = r["ids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        ensure!(
            sampled.len() == 5 && sampled.iter().all(|id| *id >= 100),
            "{coll}: a matrix of B's 5 points only: {r}"
        );
        if coll == "shared" {
            // the tenant field has its index there: B's facet counts B's points only
            let r = b.ok_post(
                &format!("/collections/{coll}/facet"),
                &json!({"key": "owner"}),
            )?;
            ensure!(
                r["hits"] == json!([{"count": 5, "value": "globex"}]),
                "{coll}: facet: {r}"
            );
        }
        let r = b.ok_post(
            &format!("/collections/{coll}/points/search/batch"),
            &json!({"searches": [{"vector": q, "limit": 50, "with_payload": true}]}),
        )?;
        no_acme(&r, "search batch")?;
        for (ep, body) in [
            ("search/groups", json!({"vector": q})),
            ("query/groups", json!({"query": q})),
            ("recommend/groups", json!({"positive": [q]})),
        ] {
            let mut body = body;
            body["group_by"] = json!("owner");
            body["limit"] = json!(50);
            body["group_size"] = json!(50);
            body["with_payload"] = json!(true);
            let r = b.ok_post(&format!("/collections/{coll}/points/{ep}"), &body)?;
            no_acme(&r, ep)?;
            let groups = r["groups"].as_array().map(Vec::len).unwrap_or(0);
            ensure!(groups == 1, "{coll}: {ep}: B's one group only: {r}");
        }
        let r = b.ok_post(
            &format!("/collections/{coll}/points/recommend"),
            &json!({"positive": [100], "limit": 50, "with_payload": true}),
        )?;
        no_acme(&r, "recommend")?;
        for body in [
            json!({"positive": [1]}),
            json!({"positive": [100], "negative": [2]}),
            json!({"query": {"recommend": {"positive": [1]}}}),
        ] {
            let ep = if body.get("query").is_some() {
                "query"
            } else {
                "recommend"
            };
            let msg = expect_error(
                b.post(&format!("/collections/{coll}/points/{ep}"), &body)?,
                404,
                "recommend by A's point id",
            )?;
            ensure!(
                msg.starts_with("No point with id") && msg.ends_with("found"),
                "{msg}"
            );
        }
        let msg = expect_error(
            b.post(
                &format!("/collections/{coll}/points/query"),
                &json!({"query": 1}),
            )?,
            404,
            "query by A's point id",
        )?;
        ensure!(msg == "No point with id 1 found", "{msg}");
        let info = b.ok_get(&format!("/collections/{coll}"))?;
        ensure!(
            info["points_count"] == 5,
            "{coll}: info counts B's points only: {info}"
        );

        phase!("{coll}: B updates and deletes A's ids: nothing of A changes");
        for (path, body) in [
            (
                "points/payload",
                json!({"points": [1, 2], "payload": {"hijacked": true}}),
            ),
            (
                "points/payload/delete",
                json!({"points": [1], "keys": ["n"]}),
            ),
            ("points/payload/clear", json!({"points": [1]})),
        ] {
            let what = format!("B {coll} {path} on A's ids");
            let msg = expect_error(
                b.post(&format!("/collections/{coll}/{path}?wait=true"), &body)?,
                404,
                &what,
            )?;
            ensure!(msg == "No point with id 1 found", "{what}: {msg}");
        }
        let msg = expect_error(
            b.put(
                &format!("/collections/{coll}/points/payload?wait=true"),
                &json!({"points": [1], "payload": {"x": 1}}),
            )?,
            404,
            "overwrite A's payload",
        )?;
        ensure!(msg == "No point with id 1 found", "{msg}");
        let msg = expect_error(
            b.post(
                &format!("/collections/{coll}/points/batch?wait=true"),
                &json!({"operations": [{"set_payload": {"points": [1], "payload": {"x": 1}}}]}),
            )?,
            404,
            "a batch on A's payload",
        )?;
        ensure!(msg == "No point with id 1 found", "{msg}");
        b.ok_post(
            &format!("/collections/{coll}/points/delete?wait=true"),
            &json!({"points": [1, 2, 3]}),
        )?;
        b.ok_post(
            &format!("/collections/{coll}/points/delete?wait=true"),
            &json!({"filter": {"must": [{"key": "owner", "match": {"value": "acme"}}]}}),
        )?;
        b.ok_post(&format!("/collections/{coll}/points/payload?wait=true"), &json!({"filter": {"must": [{"key": "n", "range": {"gte": 0}}]}, "payload": {"touched": "by-b"}}))?;
    }
    phase!("shared: B's upsert of A's ids is skipped; B cannot write another tenant's value");
    b.ok_put(
        "/collections/shared/points?wait=true",
        &json!({"points": [point(1, "globex", 99)]}),
    )?;
    let msg = expect_error(
        b.put(
            "/collections/shared/points?wait=true",
            &json!({"points": [point(200, "acme", 1)]}),
        )?,
        400,
        "B writes tenant field acme",
    )?;
    ensure!(msg.contains("owner"), "{msg}");
    expect_error(
        b.post(
            "/collections/shared/points/payload/delete?wait=true",
            &json!({"points": [100], "keys": ["owner"]}),
        )?,
        400,
        "B removes its tenant field",
    )?;
    b.ok_post(
        "/collections/shared/points/payload/clear?wait=true",
        &json!({"points": [100]}),
    )?;
    let r = b.ok_post(
        "/collections/shared/points",
        &json!({"ids": [100], "with_payload": true}),
    )?;
    ensure!(
        r[0]["payload"] == json!({"owner": "globex"}),
        "clear keeps the tenant field: {r}"
    );

    phase!("A's data is unchanged");
    ensure!(
        admin_dump(&admin, "docs", Some("acme"))? == docs_a,
        "docs/acme changed"
    );
    let shared_after: Vec<Value> = admin_dump(&admin, "shared", None)?
        .into_iter()
        .filter(|p| p["id"].as_u64().is_some_and(|id| id < 100))
        .collect();
    let shared_a: Vec<Value> = shared_before
        .iter()
        .filter(|p| p["id"].as_u64().is_some_and(|id| id < 100))
        .cloned()
        .collect();
    ensure!(shared_after == shared_a, "shared: A's points changed");

    phase!("lists show only what B may see; other collections are missing");
    let r = b.ok_get("/collections")?;
    let names: Vec<&str> = r["collections"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        names == vec!["docs", "shared"],
        "B's collections: {names:?}"
    );
    let r = b.ok_get("/collections/docs/shards")?;
    ensure!(
        r["shard_keys"] == json!([{"key": "globex"}]),
        "B's shard keys: {r}"
    );
    let r = b.ok_get("/collections/docs/cluster")?;
    ensure!(
        r["shard_count"] == 1 && r["local_shards"][0]["shard_key"] == "globex",
        "cluster view: {r}"
    );
    let missing = expect_error(admin.get("/collections/nope")?, 404, "admin: truly missing")?;
    for path in [
        "/collections/private",
        "/collections/private/shards",
        "/collections/private/cluster",
    ] {
        let msg = expect_error(b.get(path)?, 404, path)?;
        ensure!(
            msg == missing.replace("nope", "private"),
            "{path}: {msg} vs {missing}"
        );
    }
    let r = b.ok_get("/collections/private/exists")?;
    ensure!(r["exists"] == false, "exists of a hidden collection: {r}");
    expect_error(
        b.post("/collections/private/points/count", &json!({}))?,
        404,
        "count in a hidden collection",
    )?;
    phase!("B cannot manage; A cannot either (tenant-bound tokens never manage)");
    for api in [&a, &b] {
        expect_error(
            api.post(
                "/collections/docs/shards/delete",
                &json!({"shard_key": "acme"}),
            )?,
            403,
            "delete key",
        )?;
        expect_error(api.delete("/collections/docs")?, 403, "delete collection")?;
        expect_error(
            api.put(
                "/collections/x",
                &json!({"vectors": {"size": 2, "distance": "Dot"}}),
            )?,
            403,
            "create",
        )?;
        expect_error(
            api.put(
                "/collections/docs/index",
                &json!({"field_name": "n", "field_schema": "integer"}),
            )?,
            403,
            "index",
        )?;
        expect_error(api.get("/cluster")?, 403, "cluster")?;
        expect_error(
            api.post("/admin/tenants/acme/suspend", &json!({}))?,
            403,
            "suspend",
        )?;
        expect_error(
            api.post("/admin/rebalance", &json!({"dry_run": true}))?,
            403,
            "rebalance",
        )?;
    }
    phase!("X-Tenant-Id outside the token's tenant: 404");
    let msg = expect_error(
        b.with_header("x-tenant-id", "acme")
            .post("/collections/docs/points/count", &json!({}))?,
        404,
        "B with X-Tenant-Id acme",
    )?;
    ensure!(msg == "Collection `docs` doesn't exist!", "{msg}");

    phase!("suspension: every request of the tenant is 403 at once, others unaffected");
    admin.ok_post("/admin/tenants/globex/suspend", &json!({}))?;
    let msg = expect_error(
        b.post("/collections/docs/points/count", &json!({}))?,
        403,
        "suspended B",
    )?;
    ensure!(msg == "tenant suspended", "{msg}");
    expect_error(b.get("/collections")?, 403, "suspended B lists")?;
    expect_error(
        admin.post(
            "/collections/docs/points/count",
            &json!({"shard_key": "globex"}),
        )?,
        403,
        "admin request attributed to the suspended tenant",
    )?;
    a.ok_post("/collections/docs/points/count", &json!({}))?;
    let t = admin.ok_get("/admin/tenants/globex")?;
    ensure!(t["suspended"] == true, "{t}");
    admin.ok_post("/admin/tenants/globex/resume", &json!({}))?;
    b.ok_post("/collections/docs/points/count", &json!({}))?;

    phase!("the audit log: a line per request, denials included, never payload values");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = std::fs::read_to_string(&f.audit)?;
    ensure!(!log.contains(SECRET), "audit log holds payload values");
    ensure!(
        !log.contains(ADMIN_KEY) && !log.contains(&b_token),
        "audit log holds credentials"
    );
    let lines: Vec<Value> = log
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()
        .context("audit lines are JSON")?;
    let denied = lines
        .iter()
        .filter(|l| l["outcome"] == "denied" && l["tenant"] == "globex" && l["subject"] == "bob")
        .count();
    ensure!(denied >= named.len(), "B's denials audited: {denied}");
    ensure!(
        lines.iter().any(|l| l["operation"] == "points.upsert"
            && l["tenant"] == "acme"
            && l["shard_key"] == "acme"
            && l["outcome"] == "ok"
            && l["subject"] == "alice"),
        "A's upsert audited with its shard key"
    );
    for l in &lines {
        for k in ["time", "operation", "outcome", "status"] {
            ensure!(l.get(k).is_some(), "audit line without {k}: {l}");
        }
    }
    Ok(())
}

#[test]
fn jwt_attacks_are_refused_with_401() {
    let f = start().expect("start node");
    if let Err(e) = attacks(&f) {
        panic!("{e:#}\n--- server log ---\n{}", f.node.log_tail());
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn attacks(f: &Fixture) -> Result<()> {
    let base = f.node.api();
    let admin = base.with_key(ADMIN_KEY);
    admin.ok_put(
        "/collections/c",
        &json!({"vectors": {"size": DIM, "distance": "Dot"}}),
    )?;
    let good = ed_token(&f.ed, "ed1", json!({"sub": "ok"}));
    base.with_key(&good)
        .ok_post("/collections/c/points/count", &json!({}))?;
    base.with_header("authorization", &format!("Bearer {good}"))
        .ok_post("/collections/c/points/count", &json!({}))?;

    let attacker = EdKey::generate();
    let body = claims(json!({"sub": "mallory", "access": "m"}));
    let parts: Vec<&str> = good.split('.').collect();
    let mut tampered_claims = claims(json!({"sub": "ok", "access": "m", "tenant_id": "x"}));
    tampered_claims["exp"] = json!(now() + 7200);
    let mut embedded = Header::new(Algorithm::EdDSA);
    embedded.kid = Some("ed1".into());
    embedded.jwk = Some(
        serde_json::from_value(json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&attacker.public_raw)}))
            .context("jwk")?,
    );
    let mut jku = Header::new(Algorithm::EdDSA);
    jku.kid = Some("attacker".into());
    jku.jku = Some("http://127.0.0.1:1/jwks.json".into());
    let mut unknown_kid = Header::new(Algorithm::EdDSA);
    unknown_kid.kid = Some("nope".into());
    let mut confused = Header::new(Algorithm::HS256);
    confused.kid = Some("ed1".into());
    let jwks_text = std::fs::read(&f.jwks)?;
    let sign =
        |h: &Header, c: &Value, k: &EncodingKey| jsonwebtoken::encode(h, c, k).context("sign");
    let attacks: Vec<(&str, Option<String>)> = vec![
        ("no credential", None),
        ("unknown static key", Some("not-the-key".into())),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&body)
            )),
        ),
        (
            "alg None",
            Some(format!("{}.{}.", b64(&json!({"alg": "None"})), b64(&body))),
        ),
        (
            "HS256 with a wrong secret",
            Some(hs_token(b"guessed-secret", json!({"access": "m"}))),
        ),
        (
            "HS256 signed with the public key, kid of the EdDSA key (algorithm confusion)",
            Some(sign(
                &confused,
                &body,
                &EncodingKey::from_secret(&f.ed.public_raw),
            )?),
        ),
        (
            "HS256 signed with the JWKS document",
            Some(sign(
                &confused,
                &body,
                &EncodingKey::from_secret(&jwks_text),
            )?),
        ),
        (
            "HS256 signed with the public key, no kid",
            Some(jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &body,
                &EncodingKey::from_secret(&f.ed.public_raw),
            )?),
        ),
        (
            "unknown kid",
            Some(sign(&unknown_kid, &body, &attacker.encoding())?),
        ),
        (
            "attacker key with the real kid",
            Some(sign(
                &{
                    let mut h = Header::new(Algorithm::EdDSA);
                    h.kid = Some("ed1".into());
                    h
                },
                &body,
                &attacker.encoding(),
            )?),
        ),
        (
            "embedded jwk header",
            Some(sign(&embedded, &body, &attacker.encoding())?),
        ),
        ("jku header", Some(sign(&jku, &body, &attacker.encoding())?)),
        (
            "token over 8 KB",
            Some(ed_token(&f.ed, "ed1", json!({"pad": "x".repeat(9000)}))),
        ),
        ("malformed: garbage", Some("not.a.jwt".into())),
        (
            "malformed: two parts",
            Some(format!("{}.{}", parts[0], parts[1])),
        ),
        (
            "malformed: bad base64",
            Some(format!("{}.%%%.{}", parts[0], parts[2])),
        ),
        (
            "expired",
            Some(ed_token(&f.ed, "ed1", json!({"exp": now() - 3600}))),
        ),
        (
            "not yet valid (nbf)",
            Some(ed_token(&f.ed, "ed1", json!({"nbf": now() + 3600}))),
        ),
        (
            "wrong issuer",
            Some(ed_token(
                &f.ed,
                "ed1",
                json!({"iss": "https://evil.example/"}),
            )),
        ),
        (
            "wrong audience",
            Some(ed_token(&f.ed, "ed1", json!({"aud": "someone-else"}))),
        ),
        (
            "tampered claims, original signature",
            Some(format!(
                "{}.{}.{}",
                parts[0],
                b64(&tampered_claims),
                parts[2]
            )),
        ),
        (
            "flipped signature",
            Some(format!(
                "{}.{}.{}{}",
                parts[0],
                parts[1],
                if parts[2].starts_with('A') { 'B' } else { 'A' },
                &parts[2][1..]
            )),
        ),
    ];
    for (name, token) in &attacks {
        let api = match token {
            Some(t) => base.with_key(t),
            None => base.clone(),
        };
        for (method, path) in [
            ("POST", "/collections/c/points/count"),
            ("GET", "/collections"),
        ] {
            let what = format!("attack `{name}` on {method} {path}");
            let msg = expect_error(status_of(&api, method, path, None)?, 401, &what)?;
            if let Some(t) = token
                && t.len() > 12
            {
                ensure!(
                    !msg.contains(t.as_str()),
                    "{what}: the error echoes the credential"
                );
            }
        }
        eprintln!("attack refused with 401: {name}");
    }
    // Basic auth is no credential at all
    let msg = expect_error(
        base.with_header("authorization", "Basic YWRtaW46YWRtaW4=")
            .get("/collections")?,
        401,
        "basic auth",
    )?;
    ensure!(msg.contains("missing"), "{msg}");
    // health needs no credential, as in Qdrant
    let (st, _) = base.get("/healthz")?;
    ensure!(st == 200, "healthz without credentials: {st}");

    phase!("value_exists revocation: valid while the point exists, 401 otherwise");
    admin.ok_put(
        "/collections/users",
        &json!({"vectors": {"size": DIM, "distance": "Dot"}}),
    )?;
    admin.ok_put(
        "/collections/users/points?wait=true",
        &json!({"points": [{"id": 1, "vector": [1.0, 0.0, 0.0, 0.0], "payload": {"user": "bob", "gen": 3}}]}),
    )?;
    let revocable = |user: &str, generation: u64| {
        ed_token(
            &f.ed,
            "ed1",
            json!({"value_exists": {"collection": "users", "matches": [
                {"key": "user", "value": user}, {"key": "gen", "value": generation}]}}),
        )
    };
    base.with_key(&revocable("bob", 3)).ok_get("/collections")?;
    for (what, token) in [
        ("revoked generation", revocable("bob", 2)),
        ("no such user", revocable("mallory", 3)),
    ] {
        let msg = expect_error(base.with_key(&token).get("/collections")?, 401, what)?;
        ensure!(msg.contains("revoked"), "{what}: {msg}");
    }

    phase!("JWKS rotation without restart: a second key, SIGHUP, both accepted");
    let ed2 = EdKey::generate();
    let t2 = ed_token(&ed2, "ed2", json!({"sub": "rotated"}));
    expect_error(
        base.with_key(&t2).get("/collections")?,
        401,
        "key not yet in the JWKS",
    )?;
    let dir = f.jwks.parent().ok_or_else(|| anyhow!("jwks dir"))?;
    let both_path = dir.join("both.json");
    write_jwks(&ed2, "ed2", dir, &both_path)?;
    let mut both: Value = serde_json::from_slice(&std::fs::read(&f.jwks)?)?;
    let second: Value = serde_json::from_slice(&std::fs::read(&both_path)?)?;
    if let (Some(keys), Some(more)) = (both["keys"].as_array_mut(), second["keys"].as_array()) {
        keys.extend(more.iter().cloned());
    }
    let tmp = f.jwks.with_extension("new");
    std::fs::write(&tmp, serde_json::to_vec(&both)?)?;
    std::fs::rename(&tmp, &f.jwks)?;
    let status = Command::new("kill")
        .args(["-HUP", &f.node.pid().to_string()])
        .status()?;
    ensure!(status.success(), "kill -HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if base.with_key(&t2).get("/collections")?.0 == 200 {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "rotated key never accepted"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    base.with_key(&good).ok_get("/collections")?;
    Ok(())
}

#[test]
fn qdrant_style_tokens_keep_qdrant_access_levels() {
    let f = start().expect("start node");
    if let Err(e) = qdrant_levels(&f) {
        panic!("{e:#}\n--- server log ---\n{}", f.node.log_tail());
    }
}

fn qdrant_levels(f: &Fixture) -> Result<()> {
    let base = f.node.api();
    let admin = base.with_key(ADMIN_KEY);
    for c in ["c1", "c2"] {
        admin.ok_put(
            &format!("/collections/{c}"),
            &json!({"vectors": {"size": DIM, "distance": "Dot"}}),
        )?;
    }
    let secret = ADMIN_KEY.as_bytes();
    let m = base.with_key(&hs_token(secret, json!({"access": "m"})));
    let absent = base.with_key(&hs_token(secret, json!({})));
    let r = base.with_key(&hs_token(secret, json!({"access": "r"})));
    let ro_key = base.with_key(READ_KEY);
    let rw_c1 = base.with_key(&hs_token(
        secret,
        json!({"access": [{"collection": "c1", "access": "rw"}]}),
    ));
    let r_c1 = base.with_key(&hs_token(
        secret,
        json!({"access": [{"collection": "c1", "access": "r"}]}),
    ));
    let upsert = json!({"points": [point(1, "x", 1)]});
    // (who, name, may read c1, may write c1, may read c2, may manage)
    let cases: Vec<(&Api, &str, bool, bool, bool, bool)> = vec![
        (&admin, "api key", true, true, true, true),
        (&m, "access m", true, true, true, true),
        (
            &absent,
            "no access claim (Qdrant: manage)",
            true,
            true,
            true,
            true,
        ),
        (&r, "access r", true, false, true, false),
        (&ro_key, "read-only api key", true, false, true, false),
        (&rw_c1, "c1 rw", true, true, false, false),
        (&r_c1, "c1 r", true, false, false, false),
    ];
    for (api, name, read1, write1, read2, manage) in cases {
        let st = api.post("/collections/c1/points/count", &json!({}))?.0;
        ensure!((st == 200) == read1, "{name}: read c1 -> {st}");
        let st = api.put("/collections/c1/points?wait=true", &upsert)?.0;
        ensure!((st == 200) == write1, "{name}: write c1 -> {st}");
        if read1 && !write1 {
            ensure!(
                st == 403,
                "{name}: a read-only caller writing gets 403, got {st}"
            );
        }
        let st = api.post("/collections/c2/points/count", &json!({}))?.0;
        ensure!((st == 200) == read2, "{name}: read c2 -> {st}");
        if !read2 {
            ensure!(
                st == 404,
                "{name}: a collection outside the token is 404, got {st}"
            );
        }
        let st = api
            .put(
                "/collections/c1/index",
                &json!({"field_name": "n", "field_schema": "integer"}),
            )?
            .0;
        ensure!((st == 200) == manage, "{name}: manage -> {st}");
    }
    Ok(())
}

/// One request B may make: endpoint, shard-key part and filter, chosen by proptest.
#[derive(Debug, Clone)]
struct Probe {
    collection: &'static str,
    op: u8,
    key: Option<Value>,
    filter: Option<Value>,
    ids: Vec<u64>,
}

fn key_strategy() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!("acme"))),
        Just(Some(json!("globex"))),
        Just(Some(json!(["globex", "acme"]))),
        Just(Some(json!({"target": ["acme"], "fallback": "globex"}))),
        Just(Some(json!({"target": "globex", "fallback": "acme"}))),
    ]
}

fn condition_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec!["acme", "globex", "other"])
            .prop_map(|o| json!({"key": "owner", "match": {"value": o}})),
        (0u64..30).prop_map(|n| json!({"key": "n", "range": {"gte": n}})),
        prop::collection::vec(0u64..130, 0..5).prop_map(|ids| json!({"has_id": ids})),
        Just(json!({"is_empty": {"key": "owner"}})),
        Just(json!({"is_null": {"key": "owner"}})),
        prop::sample::select(vec!["acme", "globex"])
            .prop_map(|o| json!({"key": "owner", "match": {"any": [o, "x"]}})),
    ]
}

fn filter_strategy() -> impl Strategy<Value = Option<Value>> {
    let list = || prop::collection::vec(condition_strategy(), 0..3);
    prop_oneof![
        Just(None),
        (list(), list(), list()).prop_map(|(must, should, must_not)| Some(
            json!({"must": must, "should": should, "must_not": must_not})
        )),
        (list(), list()).prop_map(|(a, b)| Some(json!({"should": [{"must": a}, {"must_not": b}]}))),
    ]
}

fn probe_strategy() -> impl Strategy<Value = Probe> {
    (
        prop::sample::select(vec!["docs", "shared"]),
        0u8..6,
        key_strategy(),
        filter_strategy(),
        prop::collection::vec(0u64..130, 1..6),
    )
        .prop_map(|(collection, op, key, filter, ids)| Probe {
            collection,
            op,
            key,
            filter,
            ids,
        })
}

fn run_probe(b: &Api, p: &Probe, b_count: u64) -> Result<()> {
    let mut body = match p.op {
        0 => json!({"limit": 200, "with_payload": true, "with_vector": true}),
        1 => json!({}),
        2 => json!({"query": [1.0, 0.5, 0.25, 1.0], "limit": 100, "with_payload": true}),
        3 => json!({"ids": p.ids, "with_payload": true}),
        4 => json!({"query": p.ids[0], "limit": 100, "with_payload": true}),
        _ => json!({"vector": [0.5, 1.0, 1.0, 0.1], "limit": 100, "with_payload": true}),
    };
    let path = match p.op {
        0 => "points/scroll",
        1 => "points/count",
        2 | 4 => "points/query",
        3 => "points",
        _ => "points/search",
    };
    if let Some(k) = &p.key {
        body["shard_key"] = k.clone();
    }
    if let Some(f) = &p.filter
        && p.op != 3
    {
        body["filter"] = f.clone();
    }
    let (st, v) = b.post(&format!("/collections/{}/{path}", p.collection), &body)?;
    match st {
        200 => {
            no_acme(&v, &format!("{p:?}"))?;
            if p.op == 1 {
                let n = v["result"]["count"].as_u64().unwrap_or(u64::MAX);
                ensure!(n <= b_count, "{p:?}: count {n} over B's {b_count}");
            }
        }
        400 | 404 => {
            no_acme(&v, &format!("{p:?} error"))?;
        }
        other => bail!("{p:?}: unexpected status {other}: {v}"),
    }
    Ok(())
}

#[test]
fn tenant_bound_tokens_never_see_another_tenant() {
    let f = start().expect("start node");
    let base = f.node.api();
    let admin = base.with_key(ADMIN_KEY);
    let setup = || -> Result<()> {
        tenant_collections(&admin)?;
        // A and B use overlapping ids: the same id is a different point per tenant
        let a_pts: Vec<Value> = (0..100).map(|i| point(i, "acme", i % 30)).collect();
        let b_pts: Vec<Value> = (50..60).map(|i| point(i + 70, "globex", i % 30)).collect();
        for coll in ["docs", "shared"] {
            admin.ok_put(
                &format!("/collections/{coll}/points?wait=true"),
                &json!({"points": a_pts, "shard_key": if coll == "docs" { json!("acme") } else { Value::Null }}),
            )?;
            admin.ok_put(
                &format!("/collections/{coll}/points?wait=true"),
                &json!({"points": b_pts, "shard_key": if coll == "docs" { json!("globex") } else { Value::Null }}),
            )?;
        }
        Ok(())
    };
    if let Err(e) = setup() {
        panic!("{e:#}\n--- server log ---\n{}", f.node.log_tail());
    }
    let b = base.with_key(&ed_token(&f.ed, "ed1", json!({"tenant_id": "globex"})));
    let config = ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(probe in probe_strategy())| {
        if let Err(e) = run_probe(&b, &probe, 10) {
            return Err(TestCaseError::fail(format!("{e:#}")));
        }
    });
}
