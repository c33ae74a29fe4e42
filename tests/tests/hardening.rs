//! Regression tests of the hardening review, each against a real `tessera` process: what an
//! attacker holding one tenant's token could do before, and must not do now.
//!
//! - tokens without `exp` are refused unless the node was started with `--jwt-allow-no-exp`;
//! - a token whose claims repeat a key (two `tenant_id`s) is refused, whatever its signature;
//! - a token's `tenant_id` is its default org, and `X-Tenant-Id` switches to another org the
//!   token lists, never outside them;
//! - a client that never finishes its headers, or sends less body than it announced, is cut off
//!   within the configured timeouts, and idle connections cannot take every connection slot;
//! - a node started without `--node-id` gets a random id recorded in its data dir, keeps it
//!   across restarts, and refuses to open that data dir under another id;
//! - in a collection partitioned by an integer `is_tenant` field, tokens for `07` or `+7` reach
//!   nothing of tenant 7, before and after 7 is suspended;
//! - a tenant's `max_points` counts its points in shared (payload-partitioned) collections too;
//! - a request refused as outside the caller's tenant is audited as `denied`, with the tenant
//!   and the shard key it named;
//! - suspending a tenant does not revoke another tenant's tokens whose `value_exists` looks
//!   into a collection the suspended tenant holds;
//! - four concurrent 30 MB bodies of tiny JSON values are refused without being parsed, and
//!   raise the node's peak RSS by less than 512 MB;
//! - every error answer is Qdrant's error JSON: 405, unparsable path parameters, 431, a
//!   `Content-Length` over the limit (at once, not after reading).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tessera_tests::{Api, Node, error_message, phase};

const ADMIN_KEY: &str = "hardening-admin-key-0123456789";
const MISSING: &str = "Collection `docs` doesn't exist!";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An HS256 token over exactly these claims.
fn token(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(ADMIN_KEY.as_bytes()),
    )
    .expect("sign HS256")
}

/// An HS256 token whose payload is this exact text (so it can repeat a key), validly signed.
fn token_over_text(payload: &str) -> Result<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(payload.as_bytes());
    let message = format!("{header}.{body}");
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(ADMIN_KEY.as_bytes()),
        Algorithm::HS256,
    )
    .context("sign")?;
    Ok(format!("{message}.{signature}"))
}

fn start(dir: &std::path::Path, extra: &[&str]) -> Result<Node> {
    let mut args = vec!["--api-key", ADMIN_KEY, "--jwt-rbac"];
    args.extend_from_slice(extra);
    Node::start(dir, &args)
}

/// A custom-sharded collection with one point in each of the tenants acme, globex and initech.
fn seed(admin: &Api) -> Result<()> {
    admin.ok_put(
        "/collections/docs",
        &json!({"vectors": {"size": 2, "distance": "Dot"}, "sharding_method": "custom"}),
    )?;
    for (i, tenant) in ["acme", "globex", "initech"].iter().enumerate() {
        admin.ok_put("/collections/docs/shards", &json!({"shard_key": tenant}))?;
        admin.ok_put(
            "/collections/docs/points?wait=true",
            &json!({"shard_key": tenant, "points": [
                {"id": i + 1, "vector": [1.0, 0.5], "payload": {"owner": tenant}}
            ]}),
        )?;
    }
    Ok(())
}

/// The owners of the points a caller's scroll returns.
fn owners(api: &Api) -> Result<Vec<String>> {
    let (status, body) = api.post("/collections/docs/points/scroll", &json!({"limit": 10}))?;
    ensure!(status == 200, "scroll: {status} {body}");
    Ok(body["result"]["points"]
        .as_array()
        .context("points")?
        .iter()
        .filter_map(|p| p["payload"]["owner"].as_str().map(str::to_owned))
        .collect())
}

fn expect_status(answer: (u16, Value), status: u16, what: &str) -> Result<String> {
    let (got, body) = answer;
    ensure!(
        got == status,
        "{what}: expected {status}, got {got}: {body}"
    );
    error_message(&body).with_context(|| what.to_owned())
}

/// A shared collection partitioned by an `is_tenant` index on `field` of type `schema`.
fn shared_collection(admin: &Api, name: &str, field: &str, schema: &str) -> Result<()> {
    admin.ok_put(
        &format!("/collections/{name}"),
        &json!({"vectors": {"size": 2, "distance": "Dot"}}),
    )?;
    admin.ok_put(
        &format!("/collections/{name}/index?wait=true"),
        &json!({"field_name": field, "field_schema": {"type": schema, "is_tenant": true}}),
    )?;
    Ok(())
}

/// Runs a test's story in a temp dir of its own; an error fails the test with its context.
fn scenario(story: impl FnOnce(&std::path::Path) -> Result<()>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    story(tmp.path()).expect("scenario");
}

#[test]
fn tokens_without_exp_are_refused_unless_allowed() {
    scenario(|tmp| {
        phase!("a node with defaults: a token that never expires is refused");
        let node = start(&tmp.join("strict"), &[])?;
        let admin = node.api().with_key(ADMIN_KEY);
        seed(&admin)?;
        let forever = node.api().with_key(&token(&json!({"tenant_id": "acme"})));
        let msg = expect_status(
            forever.post("/collections/docs/points/count", &json!({}))?,
            401,
            "no exp",
        )?;
        ensure!(msg.contains("token has no exp"), "{msg}");
        let expiring = node
            .api()
            .with_key(&token(&json!({"tenant_id": "acme", "exp": now() + 600})));
        ensure!(
            owners(&expiring)? == ["acme"],
            "the same token with exp works"
        );
        drop(node);

        phase!("--jwt-allow-no-exp: the deliberate choice accepts it");
        let node = start(&tmp.join("lenient"), &["--jwt-allow-no-exp"])?;
        seed(&node.api().with_key(ADMIN_KEY))?;
        let forever = node.api().with_key(&token(&json!({"tenant_id": "acme"})));
        ensure!(owners(&forever)? == ["acme"], "accepted when allowed");
        Ok(())
    });
}

#[test]
fn repeated_claims_and_org_switching() {
    scenario(|tmp| {
        let node = start(tmp, &[])?;
        let admin = node.api().with_key(ADMIN_KEY);
        seed(&admin)?;
        let exp = now() + 600;

        phase!("a validly signed token that says tenant_id twice is refused, in either order");
        for (first, second) in [("acme", "globex"), ("globex", "acme")] {
            let text = format!(r#"{{"tenant_id":"{first}","exp":{exp},"tenant_id":"{second}"}}"#);
            let api = node.api().with_key(&token_over_text(&text)?);
            let msg = expect_status(
                api.post("/collections/docs/points/count", &json!({}))?,
                401,
                "repeated tenant_id",
            )?;
            ensure!(msg.contains("token repeats a claim"), "{msg}");
        }
        let text = format!(r#"{{"tenant_id":"acme","exp":{exp}}}"#);
        let single = node.api().with_key(&token_over_text(&text)?);
        ensure!(owners(&single)? == ["acme"], "the hand-made token is valid");

        phase!("tenant_id is the default org; X-Tenant-Id switches among the token's orgs");
        let user = node.api().with_key(&token(
            &json!({"tenant_id": "acme", "orgs": ["acme", "globex"], "exp": exp}),
        ));
        ensure!(owners(&user)? == ["acme"], "default org");
        ensure!(
            owners(&user.with_header("x-tenant-id", "globex"))? == ["globex"],
            "switched to globex"
        );
        ensure!(
            owners(&user.with_header("x-tenant-id", "acme"))? == ["acme"],
            "switched back"
        );

        phase!("an org the token does not list stays out of reach, as a missing thing");
        let msg = expect_status(
            user.with_header("x-tenant-id", "initech")
                .post("/collections/docs/points/scroll", &json!({"limit": 10}))?,
            404,
            "initech through the header",
        )?;
        ensure!(msg == MISSING, "{msg}");
        Ok(())
    });
}

/// Sends `bytes` on a fresh connection and waits (bounded) for the server to answer or close;
/// returns what came back and how long the server took.
fn send_and_wait(addr: std::net::SocketAddr, bytes: &[u8]) -> Result<(String, Duration)> {
    let mut stream = TcpStream::connect(addr).context("connect")?;
    stream.set_read_timeout(Some(Duration::from_secs(8)))?;
    stream.write_all(bytes).context("send")?;
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => {
                anyhow::bail!(
                    "the server neither answered nor closed within 8 s ({e}); got {:?}",
                    String::from_utf8_lossy(&got)
                )
            }
        }
    }
    Ok((
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    ))
}

#[test]
fn slow_clients_are_cut_off() {
    scenario(|tmp| {
        let node = Node::start(
            tmp,
            &[
                "--http-header-timeout-ms",
                "1000",
                "--http-body-timeout-ms",
                "1000",
                "--http-max-connections",
                "4",
            ],
        )?;
        let addr = node.addr();
        node.api().ok_put(
            "/collections/docs",
            &json!({"vectors": {"size": 2, "distance": "Dot"}}),
        )?;

        phase!("headers that never end: the connection is closed after the header timeout");
        let (answer, took) = send_and_wait(
            addr,
            b"POST /collections/docs/points/count HTTP/1.1\r\nHost: t\r\n",
        )?;
        ensure!(took < Duration::from_secs(4), "closed after {took:?}");
        ensure!(!answer.contains("200 OK"), "{answer}");

        phase!("a body shorter than its Content-Length: refused after the body timeout");
        let (answer, took) = send_and_wait(
            addr,
            b"POST /collections/docs/points/count HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"exact\"",
        )?;
        ensure!(took < Duration::from_secs(4), "answered after {took:?}");
        ensure!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "a refusal or a close, not {answer}"
        );

        phase!("idle connections fill every slot; they are cut and a real client gets in");
        let idle: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(addr))
            .collect::<std::io::Result<_>>()?;
        let started = Instant::now();
        let (status, body) = node
            .api()
            .post("/collections/docs/points/count", &json!({}))?;
        ensure!(status == 200, "{status} {body}");
        ensure!(
            started.elapsed() < Duration::from_secs(5),
            "served after {:?}",
            started.elapsed()
        );
        drop(idle);

        phase!("a normal request on the same node still works at once");
        let (status, _) = node
            .api()
            .post("/collections/docs/points/count", &json!({}))?;
        ensure!(status == 200);
        Ok(())
    });
}

#[test]
fn a_node_without_an_id_gets_one_of_its_own() {
    scenario(|tmp| {
        phase!("started as a Qdrant user would, without --node-id");
        let data = tmp.join("data");
        let mut node = Node::start(&data, &[])?;
        let recorded = std::fs::read_to_string(data.join("node_id")).context("node_id file")?;
        let id: u64 = recorded.trim().parse().context("a number")?;
        ensure!(id > 0, "{recorded}");
        node.api().ok_put(
            "/collections/docs",
            &json!({"vectors": {"size": 2, "distance": "Dot"}}),
        )?;

        phase!("a restart keeps the id and the data");
        node.restart()?;
        let again = std::fs::read_to_string(data.join("node_id"))?;
        ensure!(again.trim() == id.to_string(), "{again} vs {id}");
        node.api().ok_get("/collections/docs")?;
        node.stop()?;

        phase!("the same data dir under another --node-id is refused, loudly");
        let other = if id == 1 { 2 } else { 1 };
        let out = tessera_tests::run_tessera_briefly(&[
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            &data.to_string_lossy(),
            "--node-id",
            &other.to_string(),
        ])?;
        ensure!(!out.status.success(), "it started: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            stderr.contains(&format!("belongs to node {id}")),
            "the error names the recorded id: {stderr}"
        );
        Ok(())
    });
}

/// Asserts a raw HTTP answer is `status` with Qdrant's error JSON, and returns its message.
fn qdrant_error(answer: &str, status: u16) -> Result<String> {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .with_context(|| format!("no head/body split: {answer:?}"))?;
    ensure!(
        head.starts_with(&format!("HTTP/1.1 {status} ")),
        "expected {status}: {head}"
    );
    ensure!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let body: Value = serde_json::from_str(body).with_context(|| format!("json: {body:?}"))?;
    ensure!(body["time"].is_number(), "{body}");
    error_message(&body)
}

#[test]
fn every_error_answer_is_qdrant_error_json() {
    scenario(|tmp| {
        let node = Node::start(tmp, &[])?;
        let addr = node.addr();
        let ask = |request: &str| send_and_wait(addr, request.as_bytes()).map(|(a, _)| a);
        let close = "Connection: close\r\n\r\n";

        phase!("a method the route does not serve: 405 with its Allow header");
        let answer = ask(&format!(
            "PATCH /collections HTTP/1.1\r\nHost: t\r\n{close}"
        ))?;
        qdrant_error(&answer, 405)?;
        ensure!(
            answer.to_ascii_lowercase().contains("allow: get"),
            "{answer}"
        );

        phase!("path parameters that do not parse: 400 naming them");
        let msg = qdrant_error(
            &ask(&format!(
                "DELETE /cluster/peer/abc HTTP/1.1\r\nHost: t\r\n{close}"
            ))?,
            400,
        )?;
        ensure!(msg.contains("abc"), "{msg}");
        qdrant_error(
            &ask(&format!(
                "GET /collections/%FF%FE/points/1 HTTP/1.1\r\nHost: t\r\n{close}"
            ))?,
            400,
        )?;

        phase!("a Content-Length over the body limit: 413 at once, without reading the body");
        let started = Instant::now();
        let msg = qdrant_error(
            &ask(&format!(
                "PUT /collections/x/points HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\ncontent-length: 99999999999\r\n{close}"
            ))?,
            413,
        )?;
        ensure!(msg.contains("Payload too large"), "{msg}");
        ensure!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );

        phase!("too many or too large headers: 431");
        let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
        qdrant_error(
            &ask(&format!(
                "GET /collections HTTP/1.1\r\nHost: t\r\n{many}{close}"
            ))?,
            431,
        )?;
        let big = "a".repeat(300_000);
        qdrant_error(
            &ask(&format!(
                "GET /collections HTTP/1.1\r\nHost: t\r\nx-big: {big}\r\n{close}"
            ))?,
            431,
        )?;
        Ok(())
    });
}

#[test]
fn a_suspension_does_not_revoke_other_tenants_tokens() {
    scenario(|tmp| {
        let node = start(tmp, &[])?;
        let admin = node.api().with_key(ADMIN_KEY);
        seed(&admin)?;
        phase!("the users collection, whose only shard key is globex's, holds alice");
        admin.ok_put(
            "/collections/users",
            &json!({"vectors": {"size": 2, "distance": "Dot"}, "sharding_method": "custom"}),
        )?;
        admin.ok_put("/collections/users/shards", &json!({"shard_key": "globex"}))?;
        admin.ok_put(
            "/collections/users/points?wait=true",
            &json!({"shard_key": "globex", "points": [
                {"id": 1, "vector": [1.0, 0.0], "payload": {"user": "alice"}}
            ]}),
        )?;
        let revocable = |user: &str| {
            node.api().with_key(&token(&json!({
                "tenant_id": "acme",
                "exp": now() + 600,
                "value_exists": {"collection": "users", "matches": [{"key": "user", "value": user}]},
            })))
        };

        phase!("globex is suspended before acme's token is first checked");
        admin.ok_post("/admin/tenants/globex/suspend", &json!({}))?;
        ensure!(
            owners(&revocable("alice"))? == ["acme"],
            "acme's token holds: the lookup is the node's, not globex's"
        );
        let (status, body) =
            revocable("mallory").post("/collections/docs/points/scroll", &json!({"limit": 10}))?;
        ensure!(
            status == 401,
            "a token whose point is absent is revoked: {status} {body}"
        );
        Ok(())
    });
}

#[test]
fn denied_requests_are_audited_with_the_key_they_named() {
    scenario(|tmp| {
        let audit = tmp.join("audit.log");
        let node = start(
            &tmp.join("data"),
            &["--audit-log", &audit.to_string_lossy()],
        )?;
        seed(&node.api().with_key(ADMIN_KEY))?;
        phase!("acme names globex's shard key: 404, audited as denied with the key it named");
        let acme = node
            .api()
            .with_key(&token(&json!({"tenant_id": "acme", "exp": now() + 600})));
        let msg = expect_status(
            acme.post(
                "/collections/docs/points/count",
                &json!({"shard_key": "globex"}),
            )?,
            404,
            "acme naming globex",
        )?;
        // the answer for a key that does not exist: nothing tells globex exists
        ensure!(msg == "Shard key globex not found", "{msg}");
        // the audit writer is asynchronous: wait (bounded) for the line
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&audit).unwrap_or_default();
            let denied: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|e| e["outcome"] == "denied")
                .collect();
            if let Some(entry) = denied.first() {
                ensure!(entry["tenant"] == "acme", "{entry}");
                ensure!(entry["shard_key"] == "globex", "{entry}");
                ensure!(entry["status"] == 404, "{entry}");
                break;
            }
            ensure!(Instant::now() < deadline, "no denied line in {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    });
}

#[test]
fn integer_tenant_ids_are_not_aliased() {
    scenario(|tmp| {
        let node = start(tmp, &[])?;
        let admin = node.api().with_key(ADMIN_KEY);
        shared_collection(&admin, "shared", "org", "integer")?;
        admin.ok_put(
            "/collections/shared/points?wait=true",
            &json!({"points": [
                {"id": 1, "vector": [1.0, 0.0], "payload": {"org": 7}},
                {"id": 2, "vector": [0.0, 1.0], "payload": {"org": 8}},
            ]}),
        )?;
        let as_tenant = |t: &str| {
            node.api()
                .with_key(&token(&json!({"tenant_id": t, "exp": now() + 600})))
        };
        let count = |api: &Api| api.post("/collections/shared/points/count", &json!({}));
        phase!("tenant 7 counts its one point");
        let (status, body) = count(&as_tenant("7"))?;
        ensure!(
            status == 200 && body["result"]["count"] == 1,
            "{status} {body}"
        );
        phase!("07, +7 and 7.0 are other tenants: the collection does not exist for them");
        for alias in ["07", "+7", "7.0"] {
            let msg = expect_status(count(&as_tenant(alias))?, 404, alias)?;
            ensure!(
                msg == "Collection `shared` doesn't exist!",
                "{alias}: {msg}"
            );
        }
        phase!("after 7 is suspended: 7 is refused, the aliases still reach nothing");
        admin.ok_post("/admin/tenants/7/suspend", &json!({}))?;
        expect_status(count(&as_tenant("7"))?, 403, "suspended 7")?;
        for alias in ["07", "+7"] {
            expect_status(count(&as_tenant(alias))?, 404, alias)?;
        }
        Ok(())
    });
}

#[test]
fn storage_quotas_count_shared_collections() {
    scenario(|tmp| {
        let node = start(tmp, &[])?;
        let admin = node.api().with_key(ADMIN_KEY);
        shared_collection(&admin, "shared", "group_id", "keyword")?;
        admin.ok_put("/admin/tenants/acme/quota", &json!({"max_points": 3}))?;
        let as_tenant = |t: &str| {
            node.api()
                .with_key(&token(&json!({"tenant_id": t, "exp": now() + 600})))
        };
        let upsert = |api: &Api, ids: std::ops::Range<u64>| {
            let points: Vec<Value> = ids
                .map(|id| json!({"id": id, "vector": [1.0, 0.0], "payload": {"n": id}}))
                .collect();
            api.put(
                "/collections/shared/points?wait=true",
                &json!({"points": points}),
            )
        };
        phase!("acme fills its quota of 3 points in the shared collection");
        let (status, body) = upsert(&as_tenant("acme"), 1..4)?;
        ensure!(status == 200, "{status} {body}");
        phase!("one more is refused with 507, and nothing of it is stored");
        let msg = expect_status(upsert(&as_tenant("acme"), 4..5)?, 507, "over max_points")?;
        ensure!(msg.contains("max_points"), "{msg}");
        let (_, body) = as_tenant("acme").post("/collections/shared/points/count", &json!({}))?;
        ensure!(body["result"]["count"] == 3, "{body}");
        phase!("another tenant of the same collection is not charged for acme's points");
        let (status, body) = upsert(&as_tenant("globex"), 10..14)?;
        ensure!(status == 200, "{status} {body}");
        Ok(())
    });
}

/// The node's peak resident memory so far (VmHWM), in bytes.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("VmHWM in /proc status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}

#[test]
fn junk_bodies_cost_bounded_memory() {
    scenario(|tmp| {
        let node = Node::start(tmp, &[])?;
        node.api().ok_put(
            "/collections/docs",
            &json!({"vectors": {"size": 2, "distance": "Dot"}}),
        )?;
        let before = peak_rss(node.pid())?;
        phase!("four clients at once send 30 MB of tiny JSON objects as an upsert");
        let junk = format!("{{\"points\": [{}{{}}]}}", "{},".repeat(10_000_000));
        ensure!(junk.len() >= 30_000_000, "{} bytes", junk.len());
        let answers: Vec<Result<(u16, Value)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let api = node.api();
                    let body = junk.clone();
                    s.spawn(move || {
                        api.raw(
                            reqwest::Method::PUT,
                            "/collections/docs/points?wait=true",
                            Some(body.into_bytes()),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("client panicked")))
                })
                .collect()
        });
        for answer in answers {
            let (status, body) = answer?;
            ensure!(status == 413 || status == 400, "{status} {body}");
            ensure!(body["status"]["error"].is_string(), "{body}");
        }
        let grew = peak_rss(node.pid())?.saturating_sub(before);
        tessera_tests::log_phase(format_args!("peak RSS grew by {} MiB", grew >> 20));
        ensure!(grew < 512 << 20, "peak RSS grew by {} MiB", grew >> 20);
        let (status, _) = node
            .api()
            .post("/collections/docs/points/count", &json!({}))?;
        ensure!(status == 200, "the node still serves");
        Ok(())
    });
}

#[test]
fn each_tenant_has_its_own_point_ids_in_a_shared_collection() {
    scenario(|tmp| {
        let node = start(tmp, &[])?;
        let admin = node.api().with_key(ADMIN_KEY);
        shared_collection(&admin, "shared", "group_id", "keyword")?;
        let as_tenant = |t: &str| {
            node.api()
                .with_key(&token(&json!({"tenant_id": t, "exp": now() + 600})))
        };
        let (a, b) = (as_tenant("acme"), as_tenant("globex"));
        let upsert = |api: &Api, ids: &[u64], who: &str| {
            let points: Vec<Value> = ids
                .iter()
                .map(|id| json!({"id": id, "vector": [1.0, *id as f32], "payload": {"who": who}}))
                .collect();
            api.put(
                "/collections/shared/points?wait=true",
                &json!({"points": points}),
            )
        };
        let retrieve = |api: &Api, ids: &[u64]| -> Result<Vec<Value>> {
            let (status, body) = api.post(
                "/collections/shared/points",
                &json!({"ids": ids, "with_payload": true}),
            )?;
            ensure!(status == 200, "retrieve: {status} {body}");
            Ok(body["result"].as_array().cloned().unwrap_or_default())
        };
        phase!("B holds 21; A writes 21 and 777: both are A's own points, B's is untouched");
        ensure!(upsert(&b, &[21], "globex")?.0 == 200, "B's write");
        let (status, body) = upsert(&a, &[21, 777], "acme")?;
        ensure!(status == 200, "{status} {body}");
        let mine = retrieve(&a, &[21, 777])?;
        ensure!(
            mine.len() == 2 && mine.iter().all(|p| p["payload"]["who"] == "acme"),
            "A's points: {mine:?}"
        );
        ensure!(
            mine[0]["id"] == 21 && mine[1]["id"] == 777,
            "A names them by its ids: {mine:?}"
        );
        let theirs = retrieve(&b, &[21, 777])?;
        ensure!(
            theirs.len() == 1 && theirs[0]["id"] == 21 && theirs[0]["payload"]["who"] == "globex",
            "B sees only its own 21: {theirs:?}"
        );
        phase!("scroll, has_id, search and errors speak each tenant's ids");
        let (_, body) = a.post("/collections/shared/points/scroll", &json!({"limit": 10}))?;
        let ids: Vec<Value> = body["result"]["points"]
            .as_array()
            .map(|p| p.iter().map(|p| p["id"].clone()).collect())
            .unwrap_or_default();
        ensure!(
            ids == vec![json!(21), json!(777)],
            "A's scroll in id order: {body}"
        );
        let (_, body) = a.post(
            "/collections/shared/points/count",
            &json!({"filter": {"must": [{"has_id": [21]}]}, "exact": true}),
        )?;
        ensure!(body["result"]["count"] == 1, "has_id in A's space: {body}");
        let (_, body) = b.post(
            "/collections/shared/points/query",
            &json!({"query": 21, "limit": 5}),
        )?;
        let hits = body["result"]["points"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ensure!(
            hits.is_empty(),
            "B's query by its own 21 finds no other point of B: {body}"
        );
        let (status, body) = b.post(
            "/collections/shared/points/payload",
            &json!({"payload": {"x": 1}, "points": [777]}),
        )?;
        let msg = expect_status((status, body), 404, "B sets a payload on 777")?;
        ensure!(
            msg == "No point with id 777 found",
            "as for any missing id: {msg}"
        );
        phase!("A deletes its 21; B's 21 stays");
        let (status, body) = a.post(
            "/collections/shared/points/delete?wait=true",
            &json!({"points": [21]}),
        )?;
        ensure!(status == 200, "{status} {body}");
        ensure!(retrieve(&a, &[21])?.is_empty(), "A's 21 is gone");
        ensure!(retrieve(&b, &[21])?.len() == 1, "B's 21 is still there");
        phase!("an unbound admin sees the stored ids, each in its tenant's space");
        let (_, body) = admin.post("/collections/shared/points/scroll", &json!({"limit": 10}))?;
        let stored: Vec<String> = body["result"]["points"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(|p| p["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        ensure!(
            stored
                == vec![
                    "tenant:\"acme\"/n:00000000000000000777".to_string(),
                    "tenant:\"globex\"/n:00000000000000000021".to_string()
                ],
            "{body}"
        );
        Ok(())
    });
}
