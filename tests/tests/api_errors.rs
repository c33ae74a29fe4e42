//! Bad input gets Qdrant's error body (`{"status":{"error":..},"time":..}`) with the right status
//! and changes nothing (issue 2, REST API): wrong vector length, non-finite numbers, malformed
//! JSON, bad point ids, unknown collection or shard key, a write without shard key in a custom
//! collection, `limit` over its maximum, a body over `--max-body-bytes`, a duplicate collection,
//! a shard key in an auto-sharded collection. After each request the whole visible state
//! (collections, their info, shard keys, every point) is compared with the state before; after
//! all of them the node is killed and restarted and must still hold exactly the same data.

use anyhow::{Context, Result, anyhow, ensure};
use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::Method;
use serde_json::{Value, json};
use tessera_tests::{Api, Node, error_message, json_diff, phase, random_vector, with_node};

const DIM: usize = 7;
const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_LIMIT: usize = 1000;

// paths of the requests below
const T: &str = "/collections/t/points";
const TP: &str = "/collections/t/points?wait=true";
const TD: &str = "/collections/t/points/delete?wait=true";
const TPL: &str = "/collections/t/points/payload?wait=true";
const TQ: &str = "/collections/t/points/query";
const TS: &str = "/collections/t/points/scroll";
const TC: &str = "/collections/t/points/count";
const TKD: &str = "/collections/t/shards/delete";
const UP: &str = "/collections/u/points?wait=true";
const UQ: &str = "/collections/u/points/query";
const US: &str = "/collections/u/points/search";
const US_SCROLL: &str = "/collections/u/points/scroll";
const M: &str = "/collections/m";
const NOPE: &str = "/collections/nope/points";
const NOPE_UP: &str = "/collections/nope/points?wait=true";
const NOPE_Q: &str = "/collections/nope/points/query";
const NOPE_SCROLL: &str = "/collections/nope/points/scroll";
const NOPE_COUNT: &str = "/collections/nope/points/count";
const NOPE_DEL: &str = "/collections/nope/points/delete?wait=true";

/// Everything a bad request could have changed.
fn snapshot(api: &Api) -> Result<Value> {
    let mut names: Vec<String> = api.ok_get("/collections")?["collections"]
        .as_array()
        .context("collections list")?
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    let mut out = json!({"collections": names});
    for c in &names {
        let mut info = api.ok_get(&format!("/collections/{c}"))?;
        // a collection's segment counts and status move with background index builds, not
        // with writes
        if let Some(o) = info.as_object_mut() {
            o.remove("segments_count");
            o.remove("indexed_vectors_count");
            o.remove("status");
        }
        out[c] = json!({
            "info": info,
            "shard_keys": api.ok_get(&format!("/collections/{c}/shards"))?,
            "points": api.scroll_all(c, None)?,
        });
    }
    Ok(out)
}

enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>),
}

fn j(v: Value) -> Body {
    Body::Json(v)
}

fn raw(text: &str) -> Body {
    Body::Raw(text.as_bytes().to_vec())
}

struct Case {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    body: Body,
    status: u16,
    /// Substrings the error message must contain (ASCII case-insensitive).
    mentions: &'static [&'static str],
}

fn case(
    what: &'static str,
    method: &'static str,
    path: &'static str,
    body: Body,
    status: u16,
    mentions: &'static [&'static str],
) -> Case {
    Case {
        what,
        method,
        path,
        body,
        status,
        mentions,
    }
}

fn run_case(api: &Api, c: &Case) -> Result<()> {
    let body = match &c.body {
        Body::None => None,
        Body::Json(v) => Some(serde_json::to_vec(v)?),
        Body::Raw(b) => Some(b.clone()),
    };
    let method = Method::from_bytes(c.method.as_bytes())?;
    let (status, resp) = api.raw(method, c.path, body)?;
    ensure!(
        status == c.status,
        "{}: {} {} answered {status}, want {}: {resp}",
        c.what,
        c.method,
        c.path,
        c.status
    );
    let msg = error_message(&resp).with_context(|| format!("{}: error body", c.what))?;
    for m in c.mentions {
        ensure!(
            msg.to_ascii_lowercase().contains(&m.to_ascii_lowercase()),
            "{}: message does not mention {m:?}: {msg}",
            c.what
        );
    }
    Ok(())
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let args = [
        "--max-body-bytes",
        &MAX_BODY_BYTES.to_string(),
        "--max-limit",
        &MAX_LIMIT.to_string(),
    ]
    .map(|s| s.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    with_node(&args, bad_input);
}

fn bad_input(node: &mut Node) -> Result<()> {
    let api = node.api();
    let mut rng = StdRng::seed_from_u64(7);
    let v = |rng: &mut StdRng| json!(random_vector(rng, DIM));

    phase!("setup: custom collection t (keys a, b) and auto collection u (2 shards), dim {DIM}");
    api.ok_put(
        "/collections/t",
        &json!({"vectors": {"size": DIM, "distance": "Dot"}, "sharding_method": "custom"}),
    )?;
    for k in ["a", "b"] {
        api.ok_put("/collections/t/shards", &json!({"shard_key": k}))?;
    }
    api.ok_put(
        "/collections/u",
        &json!({"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 2}),
    )?;
    for (k, base) in [("a", 0), ("b", 100)] {
        let points: Vec<Value> = (base..base + 5)
            .map(|i| json!({"id": i, "vector": v(&mut rng), "payload": {"k": k, "i": i}}))
            .collect();
        api.ok_put(
            "/collections/t/points?wait=true",
            &json!({"shard_key": k, "points": points}),
        )?;
    }
    let points: Vec<Value> = (0..10)
        .map(|i| json!({"id": i, "vector": v(&mut rng), "payload": {"i": i}}))
        .collect();
    api.ok_put(
        "/collections/u/points?wait=true",
        &json!({"points": points}),
    )?;
    let before = snapshot(&api)?;
    let n = |c: &str| before[c]["points"].as_array().map_or(0, Vec::len);
    phase!(
        "  state to keep: collections t ({} points) and u ({} points)",
        n("t"),
        n("u")
    );
    ensure!(
        n("t") == 10 && n("u") == 10,
        "setup did not write the points: {before}"
    );

    let good = v(&mut rng);
    let short = json!([0.5, 0.25, 0.125]);
    let mut huge = good.clone();
    huge[2] = json!(1e39); // a finite f64 that overflows f32
    let mut neg_huge = good.clone();
    neg_huge[0] = json!(-1e39);
    let g = good.to_string();
    let pt = |id: Value, vector: &Value| json!({"id": id, "vector": vector});
    // an upsert under key a of collection t
    let in_a = |points: Value| j(json!({"shard_key": "a", "points": points}));
    let blob = "x".repeat(MAX_BODY_BYTES);
    let over = MAX_LIMIT + 1;
    let has0 = json!({"must": [{"has_id": [0]}]});
    let nan_str = json!(["NaN", 0, 0, 0, 0, 0, 0]);

    let cases = vec![
        // wrong vector length: 400, message names the expected size
        case(
            "wrong dim upsert",
            "PUT",
            TP,
            in_a(json!([pt(json!(50), &short)])),
            400,
            &["7"],
        ),
        case(
            "wrong dim in the 2nd point of a batch (1st valid)",
            "PUT",
            TP,
            in_a(json!([pt(json!(51), &good), pt(json!(52), &short)])),
            400,
            &["7"],
        ),
        case(
            "wrong dim, batch form",
            "PUT",
            TP,
            j(json!({"shard_key": "a", "batch": {"ids": [53, 54], "vectors": [good, short]}})),
            400,
            &["7"],
        ),
        case(
            "wrong dim, auto",
            "PUT",
            UP,
            j(json!({"points": [pt(json!(55), &short)]})),
            400,
            &["7"],
        ),
        case(
            "wrong dim query",
            "POST",
            TQ,
            j(json!({"query": short, "shard_key": "a"})),
            400,
            &["7"],
        ),
        case(
            "wrong dim search",
            "POST",
            US,
            j(json!({"vector": short})),
            400,
            &["7"],
        ),
        case(
            "empty vector",
            "PUT",
            TP,
            in_a(json!([pt(json!(56), &json!([]))])),
            400,
            &["7"],
        ),
        // non-finite numbers: 400
        case(
            "1e39 overflows f32",
            "PUT",
            TP,
            in_a(json!([pt(json!(57), &good), pt(json!(58), &huge)])),
            400,
            &[],
        ),
        case(
            "-1e39 in batch form",
            "PUT",
            TP,
            j(json!({"shard_key": "a", "batch": {"ids": [59], "vectors": [neg_huge]}})),
            400,
            &[],
        ),
        case(
            "1e39 in query",
            "POST",
            UQ,
            j(json!({"query": huge})),
            400,
            &[],
        ),
        case(
            "1e39 in search",
            "POST",
            US,
            j(json!({"vector": huge})),
            400,
            &[],
        ),
        case(
            "1e400 (out of f64 range)",
            "PUT",
            TP,
            raw(r#"{"shard_key":"a","points":[{"id":60,"vector":[1e400,0,0,0,0,0,0]}]}"#),
            400,
            &[],
        ),
        case(
            "NaN literal",
            "PUT",
            TP,
            raw(r#"{"shard_key":"a","points":[{"id":61,"vector":[NaN,0,0,0,0,0,0]}]}"#),
            400,
            &[],
        ),
        case(
            "Infinity literal",
            "POST",
            UQ,
            raw(r#"{"query":[Infinity,0,0,0,0,0,0]}"#),
            400,
            &[],
        ),
        case(
            "\"NaN\" string",
            "PUT",
            TP,
            in_a(json!([pt(json!(62), &nan_str)])),
            400,
            &[],
        ),
        // malformed JSON: 400
        case(
            "truncated JSON",
            "PUT",
            TP,
            raw(&format!(
                r#"{{"shard_key":"a","points":[{{"id":63,"vector":{g}"#
            )),
            400,
            &[],
        ),
        case("not JSON at all", "PUT", TP, raw("upsert please"), 400, &[]),
        case(
            "trailing comma",
            "POST",
            TS,
            raw(r#"{"shard_key":"a",}"#),
            400,
            &[],
        ),
        case("JSON array body", "PUT", TP, raw("[1,2,3]"), 400, &[]),
        case(
            "trailing garbage",
            "PUT",
            TP,
            raw(&format!(
                r#"{{"shard_key":"a","points":[{{"id":64,"vector":{g}}}]}} x"#
            )),
            400,
            &[],
        ),
        case(
            "points not a list",
            "PUT",
            TP,
            j(json!({"shard_key": "a", "points": {"id": 65}})),
            400,
            &[],
        ),
        case(
            "payload not an object",
            "PUT",
            TP,
            in_a(json!([{"id": 66, "vector": good, "payload": [1]}])),
            400,
            &[],
        ),
        case(
            "create, malformed",
            "PUT",
            M,
            raw(r#"{"vectors": {"size": 4}"#),
            400,
            &[],
        ),
        case(
            "create, distance Manhattan",
            "PUT",
            M,
            j(json!({"vectors": {"size": 4, "distance": "Manhattan"}})),
            400,
            &["Manhattan"],
        ),
        case(
            "create, size 0",
            "PUT",
            M,
            j(json!({"vectors": {"size": 0, "distance": "Dot"}})),
            400,
            &[],
        ),
        case(
            "create, shard_number 0",
            "PUT",
            M,
            j(json!({"vectors": {"size": 4, "distance": "Dot"}, "shard_number": 0})),
            400,
            &[],
        ),
        // bad point ids: 400
        case(
            "negative id",
            "PUT",
            TP,
            in_a(json!([pt(json!(67), &good), pt(json!(-1), &good)])),
            400,
            &["-1"],
        ),
        case(
            "float id",
            "PUT",
            TP,
            in_a(json!([pt(json!(1.5), &good)])),
            400,
            &["1.5"],
        ),
        case(
            "id over u64",
            "PUT",
            TP,
            raw(&format!(
                r#"{{"shard_key":"a","points":[{{"id":18446744073709551616,"vector":{g}}}]}}"#
            )),
            400,
            &[],
        ),
        case(
            "bool id",
            "PUT",
            TP,
            in_a(json!([pt(json!(true), &good)])),
            400,
            &[],
        ),
        case(
            "empty string id",
            "PUT",
            TP,
            in_a(json!([pt(json!(""), &good)])),
            400,
            &[],
        ),
        case(
            "negative id in batch form",
            "PUT",
            TP,
            j(json!({"shard_key": "a", "batch": {"ids": [68, -2], "vectors": [good, good]}})),
            400,
            &[],
        ),
        case(
            "negative id in retrieve",
            "POST",
            T,
            j(json!({"ids": [-1], "shard_key": "a"})),
            400,
            &[],
        ),
        case(
            "float id in delete",
            "POST",
            TD,
            j(json!({"points": [0.5], "shard_key": "a"})),
            400,
            &[],
        ),
        case(
            "float scroll offset",
            "POST",
            US_SCROLL,
            j(json!({"offset": 2.5})),
            400,
            &[],
        ),
        // unknown collection or shard key: 404 naming it
        case(
            "upsert, no collection",
            "PUT",
            NOPE_UP,
            j(json!({"points": [pt(json!(1), &good)]})),
            404,
            &["nope"],
        ),
        case(
            "get, no collection",
            "GET",
            "/collections/nope",
            Body::None,
            404,
            &["nope"],
        ),
        case(
            "retrieve, no collection",
            "POST",
            NOPE,
            j(json!({"ids": [1]})),
            404,
            &["nope"],
        ),
        case(
            "query, no collection",
            "POST",
            NOPE_Q,
            j(json!({"query": good})),
            404,
            &["nope"],
        ),
        case(
            "scroll, no collection",
            "POST",
            NOPE_SCROLL,
            j(json!({})),
            404,
            &["nope"],
        ),
        case(
            "count, no collection",
            "POST",
            NOPE_COUNT,
            j(json!({})),
            404,
            &["nope"],
        ),
        case(
            "delete, no collection",
            "POST",
            NOPE_DEL,
            j(json!({"points": [1]})),
            404,
            &["nope"],
        ),
        case(
            "get point, no collection",
            "GET",
            "/collections/nope/points/1",
            Body::None,
            404,
            &["nope"],
        ),
        case(
            "key, no collection",
            "PUT",
            "/collections/nope/shards",
            j(json!({"shard_key": "a"})),
            404,
            &["nope"],
        ),
        case(
            "index, no collection",
            "PUT",
            "/collections/nope/index?wait=true",
            j(json!({"field_name": "k", "field_schema": "keyword"})),
            404,
            &["nope"],
        ),
        case(
            "upsert, no key",
            "PUT",
            TP,
            j(json!({"shard_key": "zz", "points": [pt(json!(1), &good)]})),
            404,
            &["zz"],
        ),
        case(
            "query, no key",
            "POST",
            TQ,
            j(json!({"shard_key": "zz", "query": good})),
            404,
            &["zz"],
        ),
        case(
            "count, no key",
            "POST",
            TC,
            j(json!({"shard_key": "zz"})),
            404,
            &["zz"],
        ),
        case(
            "delete key, no key",
            "POST",
            TKD,
            j(json!({"shard_key": "zz"})),
            404,
            &["zz"],
        ),
        // a write without shard_key to a custom collection: 400
        case(
            "upsert, keyless",
            "PUT",
            TP,
            j(json!({"points": [pt(json!(70), &good)]})),
            400,
            &["shard key"],
        ),
        case(
            "delete, keyless",
            "POST",
            TD,
            j(json!({"points": [0, 100]})),
            400,
            &["shard key"],
        ),
        case(
            "delete by filter, keyless",
            "POST",
            TD,
            j(json!({"filter": has0})),
            400,
            &["shard key"],
        ),
        case(
            "set payload, keyless",
            "POST",
            TPL,
            j(json!({"points": [0], "payload": {}})),
            400,
            &["shard key"],
        ),
        case(
            "overwrite payload, keyless",
            "PUT",
            TPL,
            j(json!({"points": [0], "payload": {}})),
            400,
            &["shard key"],
        ),
        case(
            "delete payload, keyless",
            "POST",
            "/collections/t/points/payload/delete?wait=true",
            j(json!({"points": [0], "keys": ["k"]})),
            400,
            &["shard key"],
        ),
        case(
            "clear payload, keyless",
            "POST",
            "/collections/t/points/payload/clear?wait=true",
            j(json!({"points": [0]})),
            400,
            &["shard key"],
        ),
        // limit (and offset, ids) over the maximum: 400 naming the maximum
        case(
            "query limit",
            "POST",
            UQ,
            j(json!({"query": good, "limit": over})),
            400,
            &["1000"],
        ),
        case(
            "query limit, no vector",
            "POST",
            UQ,
            j(json!({"limit": over})),
            400,
            &["1000"],
        ),
        case(
            "search limit",
            "POST",
            US,
            j(json!({"vector": good, "limit": over})),
            400,
            &["1000"],
        ),
        case(
            "scroll limit",
            "POST",
            TS,
            j(json!({"limit": over, "shard_key": "a"})),
            400,
            &["1000"],
        ),
        case(
            "query offset",
            "POST",
            UQ,
            j(json!({"query": good, "offset": over})),
            400,
            &["1000"],
        ),
        case(
            "retrieve ids",
            "POST",
            "/collections/u/points",
            j(json!({"ids": (0..over as u64).collect::<Vec<_>>()})),
            400,
            &["1000"],
        ),
        case(
            "negative limit",
            "POST",
            US_SCROLL,
            j(json!({"limit": -1})),
            400,
            &[],
        ),
        // a body over --max-body-bytes: 413
        case(
            "upsert body over max-body-bytes",
            "PUT",
            TP,
            in_a(json!([{"id": 71, "vector": good, "payload": {"blob": blob}}])),
            413,
            &[],
        ),
        case(
            "query body over max-body-bytes",
            "POST",
            UQ,
            j(json!({"query": good, "filter": {"must": [{"key": "x", "match": {"value": blob}}]}})),
            413,
            &[],
        ),
        // duplicates: 409
        case(
            "duplicate collection",
            "PUT",
            "/collections/t",
            j(json!({"vectors": {"size": 3, "distance": "Euclid"}})),
            409,
            &["already exists"],
        ),
        // a key that exists with other settings: 409 naming the difference (with the same
        // settings a create is a repeat, answered 200)
        case(
            "duplicate key, other settings",
            "PUT",
            "/collections/t/shards",
            j(json!({"shard_key": "a", "shards_number": 2})),
            409,
            &["already exists", "shards_number 2 (it has 1)"],
        ),
        // a shard key in an auto-sharded collection: 400
        case(
            "upsert, key in auto",
            "PUT",
            UP,
            j(json!({"shard_key": "a", "points": [pt(json!(72), &good)]})),
            400,
            &["shard key"],
        ),
        case(
            "query, key in auto",
            "POST",
            UQ,
            j(json!({"shard_key": "a", "query": good})),
            400,
            &["shard key"],
        ),
        case(
            "delete, key in auto",
            "POST",
            "/collections/u/points/delete?wait=true",
            j(json!({"shard_key": "a", "points": [1]})),
            400,
            &["shard key"],
        ),
        case(
            "create key in auto",
            "PUT",
            "/collections/u/shards",
            j(json!({"shard_key": "a"})),
            400,
            &["custom"],
        ),
    ];

    phase!(
        "{} bad requests, each checked for status, error body and no change",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut prev = before.clone();
    for c in &cases {
        if let Err(e) = run_case(&api, c) {
            failures.push(format!("{e:#}"));
        }
        let now = snapshot(&api)?;
        if now != prev {
            failures.push(format!(
                "{}: the request changed the node's state:\n  {}",
                c.what,
                json_diff(&prev, &now, 8).join("\n  ")
            ));
            prev = now;
        }
    }
    ensure!(
        node.is_running(),
        "tessera died during the bad requests:\n{}",
        node.log_tail()
    );
    ensure!(
        failures.is_empty(),
        "{} failed checks over {} bad requests:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    phase!("restart (SIGKILL): the same data, and no panic in the server log");
    node.kill9()?;
    node.restart()?;
    let after = snapshot(&api)?;
    ensure!(
        after == before,
        "after restart the state differs:\n  {}",
        json_diff(&before, &after, 8).join("\n  ")
    );
    let log = std::fs::read_to_string(node.log_path())
        .with_context(|| format!("read {}", node.log_path().display()))?;
    if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
        return Err(anyhow!("the server panicked on bad input: {line}"));
    }
    Ok(())
}
