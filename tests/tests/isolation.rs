//! Cross-shard-key isolation (issue 2, acceptance): data written under shard key A never appears
//! in a request that names shard key B, even when point ids collide, for every read and write
//! endpoint; writes naming B leave A exactly as it was (full scroll of A compared after each).
//! A request naming a missing key C (alone or with an existing key) is 404 and changes nothing.
//! Plus an auto-sharded collection (3 shards): points spread over the shards, all retrievable,
//! counts and paging exact.
//!
//! `GET /collections/{c}/points/{id}` takes no shard key: it reads every key of the collection
//! and, when the id exists under several keys, answers the copy of the first key in key order
//! (here A's), whole (payload, vector and `shard_key` of that one copy). Clients that need a
//! given tenant's point use `POST /collections/{c}/points` with `shard_key`.
//! `PUT /collections/{c}/index` is collection-wide and takes no key either: the test checks it
//! changes no data and that a filter on the new index, naming B, still sees only B.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, anyhow, bail, ensure};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use tessera_tests::{Api, Node, as_vector, error_message, phase, random_vector, with_node};

const C: &str = "iso";
const DIM: usize = 4;

/// One shard key's points as the test knows them: id (as JSON text) -> (id, vector, payload).
type Model = BTreeMap<String, (Value, Vec<f32>, Value)>;

fn ids_shared() -> Vec<Value> {
    vec![
        json!(1),
        json!(2),
        json!(3),
        json!(4),
        json!(5),
        json!("tenant_7"),
        json!("5c56c793-69f3-4fbf-87e6-c4bf54c28c26"),
    ]
}

fn path(p: &str) -> String {
    format!("/collections/{C}{p}")
}

/// The records of a scroll, retrieve or query answer as a model, checking each names `key`.
fn as_model(records: &[Value], key: &str, what: &str) -> Result<Model> {
    let mut m = Model::new();
    for r in records {
        ensure!(
            r["shard_key"] == json!(key),
            "{what}: record of another shard key than {key}: {r}"
        );
        let vector = if r["vector"].is_null() {
            Vec::new()
        } else {
            as_vector(&r["vector"])?
        };
        let prev = m.insert(
            r["id"].to_string(),
            (r["id"].clone(), vector, r["payload"].clone()),
        );
        ensure!(
            prev.is_none(),
            "{what}: id {} answered twice: {records:?}",
            r["id"]
        );
    }
    Ok(m)
}

/// Records answered for a request naming B: each is B's point with B's payload and vector.
fn only_b(records: &[Value], b: &Model, what: &str) -> Result<()> {
    for r in records {
        ensure!(
            r["shard_key"] == json!("B"),
            "{what}: a record not of key B: {r}"
        );
        let (_, v, p) = b
            .get(&r["id"].to_string())
            .ok_or_else(|| anyhow!("{what}: id {} is not B's: {r}", r["id"]))?;
        if !r["payload"].is_null() {
            ensure!(
                &r["payload"] == p,
                "{what}: payload of {} is not B's ({p}): {r}",
                r["id"]
            );
        }
        if !r["vector"].is_null() {
            ensure!(
                &as_vector(&r["vector"])? == v,
                "{what}: vector of {} is not B's: {r}",
                r["id"]
            );
        }
    }
    Ok(())
}

/// The full contents of `key` equal `want` (ids, payloads, vectors).
fn check_key(api: &Api, key: &str, want: &Model, after: &str) -> Result<()> {
    let got = as_model(&api.scroll_all(C, Some(&json!(key)))?, key, after)?;
    if &got != want {
        let diff: Vec<String> = want
            .keys()
            .chain(got.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|k| want.get(*k) != got.get(*k))
            .map(|k| format!("id {k}: want {:?}, got {:?}", want.get(k), got.get(k)))
            .collect();
        bail!(
            "after {after}: shard key {key} differs from what was written:\n{}",
            diff.join("\n")
        );
    }
    Ok(())
}

fn euclid(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// Ids of `m` nearest to `q` (excluding `skip`), as JSON text, by exact Euclid distance.
fn nearest(m: &Model, q: &[f32], skip: Option<&str>) -> Vec<String> {
    let mut v: Vec<(f32, &String)> = m
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .map(|(k, (_, vec, _))| (euclid(q, vec), k))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v.into_iter().map(|(_, k)| k.clone()).collect()
}

fn points_of(res: &Value, what: &str) -> Result<Vec<Value>> {
    res.get("points")
        .unwrap_or(res)
        .as_array()
        .cloned()
        .ok_or_else(|| anyhow!("{what}: no list of points in {res}"))
}

#[test]
fn data_of_one_shard_key_never_answers_for_another() {
    with_node(&[], isolation);
}

fn isolation(node: &mut Node) -> Result<()> {
    let api = node.api();
    let mut rng = StdRng::seed_from_u64(20_260_101);

    phase!("setup: custom collection, keys A and B, the same ids under both with other data");
    api.ok_put(
        &path(""),
        &json!({"vectors": {"size": DIM, "distance": "Euclid"}, "sharding_method": "custom"}),
    )?;
    for k in ["A", "B"] {
        api.ok_put(&path("/shards"), &json!({"shard_key": k}))?;
    }
    let mut a = Model::new();
    let mut b = Model::new();
    for (n, id) in ids_shared().into_iter().enumerate() {
        for (key, m) in [("A", &mut a), ("B", &mut b)] {
            let color = if key == "A" { "red" } else { "blue" };
            let payload = json!({"owner": key, "n": n, "color": color, "tags": [key, "shared"]});
            m.insert(
                id.to_string(),
                (id.clone(), random_vector(&mut rng, DIM), payload),
            );
        }
    }
    // an id only A has, and one only B has
    a.insert(
        "100".into(),
        (
            json!(100),
            random_vector(&mut rng, DIM),
            json!({"owner": "A", "n": 100, "color": "red"}),
        ),
    );
    b.insert(
        "200".into(),
        (
            json!(200),
            random_vector(&mut rng, DIM),
            json!({"owner": "B", "n": 200, "color": "blue"}),
        ),
    );
    for (key, m) in [("A", &a), ("B", &b)] {
        let points: Vec<Value> = m
            .values()
            .map(|(id, v, p)| json!({"id": id, "vector": v, "payload": p}))
            .collect();
        api.ok_put(
            &path("/points?wait=true"),
            &json!({"shard_key": key, "points": points}),
        )?;
    }
    check_key(&api, "A", &a, "setup")?;
    check_key(&api, "B", &b, "setup")?;
    let shared: Vec<Value> = ids_shared();
    let all_ids: Vec<Value> = shared
        .iter()
        .cloned()
        .chain([json!(100), json!(200)])
        .collect();

    phase!("retrieve naming B: B's records only, also for an id only A has");
    let r = api.ok_post(
        &path("/points"),
        &json!({"ids": all_ids, "shard_key": "B", "with_payload": true, "with_vector": true}),
    )?;
    let recs = points_of(&r, "retrieve B")?;
    only_b(&recs, &b, "retrieve B")?;
    ensure!(
        recs.len() == b.len(),
        "retrieve B answered {} of B's {} points: {r}",
        recs.len(),
        b.len()
    );
    let r = api.ok_post(&path("/points"), &json!({"ids": [100], "shard_key": "B"}))?;
    ensure!(
        r == json!([]),
        "retrieve of A-only id 100 naming B answered {r}"
    );

    phase!("GET /points/{{id}} names no key: it reads every key and answers one consistent copy");
    for id in &shared {
        let key = id.as_str().map_or_else(|| id.to_string(), str::to_string);
        let r = api.ok_get(&path(&format!("/points/{key}")))?;
        let owner = r["shard_key"]
            .as_str()
            .ok_or_else(|| anyhow!("GET point {id}: no shard_key: {r}"))?;
        let m = if owner == "A" { &a } else { &b };
        let (_, v, p) = &m[&id.to_string()];
        ensure!(
            &r["payload"] == p && &as_vector(&r["vector"])? == v,
            "GET point {id}: a mix of copies, not {owner}'s: {r}"
        );
        phase!("  GET /points/{key} answers key {owner}'s copy (the first key in key order)");
    }
    ensure!(
        api.ok_get(&path("/points/100"))?["shard_key"] == json!("A"),
        "GET A-only id 100 is not A's"
    );
    ensure!(
        api.ok_get(&path("/points/200"))?["shard_key"] == json!("B"),
        "GET B-only id 200 is not B's"
    );
    let (st, body) = api.get(&path("/points/999"))?;
    ensure!(st == 404, "GET of a missing point: {st} {body}");
    error_message(&body)?;

    phase!(
        "scroll naming B: all of B in small pages, nothing of A; A's filter under B matches nothing"
    );
    let mut pages = Vec::new();
    let mut offset = Value::Null;
    for _ in 0..20 {
        let r = api.ok_post(
            &path("/points/scroll"),
            &json!({"shard_key": "B", "limit": 2, "offset": offset, "with_vector": true}),
        )?;
        pages.extend(points_of(&r, "scroll B")?);
        offset = r["next_page_offset"].clone();
        if offset.is_null() {
            break;
        }
    }
    ensure!(
        offset.is_null(),
        "scroll of B in pages of 2 did not end in 20 pages"
    );
    ensure!(
        as_model(&pages, "B", "paged scroll B")? == b,
        "paged scroll of B is not B: {pages:?}"
    );
    let red = json!({"must": [{"key": "color", "match": {"value": "red"}}]});
    let r = api.ok_post(
        &path("/points/scroll"),
        &json!({"shard_key": "B", "filter": red, "limit": 100}),
    )?;
    ensure!(
        points_of(&r, "scroll B red")?.is_empty(),
        "scroll naming B with A's filter: {r}"
    );

    phase!("count naming B: exactly B's, and A's filter under B counts 0");
    let r = api.ok_post(
        &path("/points/count"),
        &json!({"shard_key": "B", "exact": true}),
    )?;
    ensure!(
        r["count"] == json!(b.len()),
        "count B: {r}, want {}",
        b.len()
    );
    let r = api.ok_post(
        &path("/points/count"),
        &json!({"shard_key": "B", "filter": red, "exact": true}),
    )?;
    ensure!(r["count"] == json!(0), "count B with A's filter: {r}");

    phase!("query and search naming B with A's exact vectors: only B's points, none at distance 0");
    for (k, (_, av, _)) in &a {
        let want = nearest(&b, av, None);
        for params in [json!({"exact": true}), json!({})] {
            let body = json!({
                "query": av, "shard_key": "B", "limit": 20, "with_payload": true,
                "with_vector": true, "params": params,
            });
            let recs = points_of(&api.ok_post(&path("/points/query"), &body)?, "query B")?;
            only_b(&recs, &b, &format!("query B with A's vector of {k}"))?;
            let got: Vec<String> = recs.iter().map(|r| r["id"].to_string()).collect();
            ensure!(
                got == want,
                "query B with A's vector of {k} ({params}): {got:?}, want {want:?}"
            );
        }
        let body = json!({"vector": av, "shard_key": "B", "limit": 20, "with_payload": true});
        let recs = points_of(&api.ok_post(&path("/points/search"), &body)?, "search B")?;
        only_b(&recs, &b, &format!("search B with A's vector of {k}"))?;
        ensure!(
            recs.len() == b.len(),
            "search B answered {} points, B has {}",
            recs.len(),
            b.len()
        );
    }
    let r = api.ok_post(
        &path("/points/query"),
        &json!({"shard_key": "B", "limit": 100, "with_payload": true}),
    )?;
    let recs = points_of(&r, "query B without query")?;
    only_b(&recs, &b, "query B without a query")?;
    ensure!(recs.len() == b.len(), "query B without a query: {r}");

    phase!(
        "query by point id naming B: B's vector of that id is the query, A's would rank otherwise"
    );
    let mut discriminating = 0;
    for id in &shared {
        let k = id.to_string();
        let want = nearest(&b, &b[&k].1, Some(&k));
        let wrong = nearest(&b, &a[&k].1, Some(&k));
        discriminating += usize::from(want != wrong);
        let body = json!({
            "query": id, "shard_key": "B", "limit": 20, "with_payload": true,
            "params": {"exact": true},
        });
        let recs = points_of(&api.ok_post(&path("/points/query"), &body)?, "query by id")?;
        only_b(&recs, &b, &format!("query B by id {k}"))?;
        let got: Vec<String> = recs.iter().map(|r| r["id"].to_string()).collect();
        ensure!(
            got == want,
            "query naming B by id {k}: {got:?}, want {want:?} \
             (ranking by A's vector would be {wrong:?})"
        );
    }
    ensure!(
        discriminating > 0,
        "test data: A's and B's vectors rank B alike for every id"
    );
    let (st, body) = api.post(
        &path("/points/query"),
        &json!({"query": 100, "shard_key": "B"}),
    )?;
    ensure!(st == 404, "query naming B by A-only id 100: {st} {body}");
    error_message(&body)?;

    phase!("payload writes naming B: B changes as asked, A not at all");
    let a_before = a.clone();
    api.ok_post(
        &path("/points/payload?wait=true"),
        &json!({"shard_key": "B", "points": [1, 2], "payload": {"touched": "B"}}),
    )?;
    for id in ["1", "2"] {
        b.get_mut(id).context("B has 1 and 2")?.2["touched"] = json!("B");
    }
    check_key(&api, "A", &a_before, "set payload naming B")?;
    check_key(&api, "B", &b, "set payload naming B")?;
    api.ok_post(
        &path("/points/payload?wait=true"),
        &json!({"shard_key": "B", "filter": red, "payload": {"touched": "by-filter"}}),
    )?;
    check_key(
        &api,
        "A",
        &a_before,
        "set payload naming B with a filter only A's points match",
    )?;
    check_key(
        &api,
        "B",
        &b,
        "set payload naming B with a filter only A's points match",
    )?;
    let (st, body) = api.post(
        &path("/points/payload?wait=true"),
        &json!({"shard_key": "B", "points": [100], "payload": {"touched": "B"}}),
    )?;
    ensure!(
        st == 404,
        "set payload naming B on A-only id 100: {st} {body}"
    );
    check_key(&api, "A", &a_before, "set payload naming B on A-only id")?;

    api.ok_put(
        &path("/points/payload?wait=true"),
        &json!({"shard_key": "B", "points": [3], "payload": {"owner": "B", "fresh": true}}),
    )?;
    b.get_mut("3").context("B has 3")?.2 = json!({"owner": "B", "fresh": true});
    check_key(&api, "A", &a_before, "overwrite payload naming B")?;
    check_key(&api, "B", &b, "overwrite payload naming B")?;

    api.ok_post(
        &path("/points/payload/delete?wait=true"),
        &json!({"shard_key": "B", "points": [4, "tenant_7"], "keys": ["color", "tags"]}),
    )?;
    for id in ["4", "\"tenant_7\""] {
        let p = &mut b.get_mut(id).context("B has 4 and tenant_7")?.2;
        let o = p.as_object_mut().context("payloads are objects")?;
        o.remove("color");
        o.remove("tags");
    }
    check_key(&api, "A", &a_before, "delete payload keys naming B")?;
    check_key(&api, "B", &b, "delete payload keys naming B")?;

    api.ok_post(
        &path("/points/payload/clear?wait=true"),
        &json!({"shard_key": "B", "points": [5]}),
    )?;
    b.get_mut("5").context("B has 5")?.2 = json!({});
    check_key(&api, "A", &a_before, "clear payload naming B")?;
    let got = as_model(&api.scroll_all(C, Some(&json!("B")))?, "B", "clear")?;
    let p5 = &got.get("5").context("B's 5 after clear")?.2;
    ensure!(
        p5 == &json!({}) || p5.is_null(),
        "B's 5 after clear payload: {p5}"
    );
    b.get_mut("5").context("B has 5")?.2 = p5.clone();
    check_key(&api, "B", &b, "clear payload naming B")?;

    phase!("index creation (collection-wide, names no key), then a filter on it naming B");
    api.ok_put(
        &path("/index?wait=true"),
        &json!({"field_name": "owner", "field_schema": {"type": "keyword", "is_tenant": true}}),
    )?;
    api.ok_put(
        &path("/index?wait=true"),
        &json!({"field_name": "color", "field_schema": "keyword"}),
    )?;
    check_key(&api, "A", &a_before, "index creation")?;
    check_key(&api, "B", &b, "index creation")?;
    let owner_a = json!({"must": [{"key": "owner", "match": {"value": "A"}}]});
    for ep in ["/points/scroll", "/points/query"] {
        let r = api.ok_post(
            &path(ep),
            &json!({"shard_key": "B", "filter": owner_a, "limit": 100}),
        )?;
        ensure!(
            points_of(&r, ep)?.is_empty(),
            "{ep} naming B filtered on indexed owner=A: {r}"
        );
    }
    let r = api.ok_post(
        &path("/points/count"),
        &json!({"shard_key": "B", "filter": owner_a, "exact": true}),
    )?;
    ensure!(
        r["count"] == json!(0),
        "count naming B filtered on indexed owner=A: {r}"
    );

    phase!("upsert naming B over colliding ids: A's copies untouched");
    let v = random_vector(&mut rng, DIM);
    let point = json!({"id": 3, "vector": v, "payload": {"owner": "B", "v": 2}});
    api.ok_put(
        &path("/points?wait=true"),
        &json!({"shard_key": "B", "points": [point]}),
    )?;
    b.insert("3".into(), (json!(3), v, json!({"owner": "B", "v": 2})));
    check_key(&api, "A", &a_before, "upsert naming B")?;
    check_key(&api, "B", &b, "upsert naming B")?;

    phase!("delete naming B: by ids, by a filter only A matches, by has_id; A untouched");
    api.ok_post(
        &path("/points/delete?wait=true"),
        &json!({"shard_key": "B", "points": [1, 100]}),
    )?;
    b.remove("1");
    check_key(&api, "A", &a_before, "delete by ids naming B")?;
    check_key(&api, "B", &b, "delete by ids naming B")?;
    api.ok_post(
        &path("/points/delete?wait=true"),
        &json!({"shard_key": "B", "filter": red}),
    )?;
    check_key(
        &api,
        "A",
        &a_before,
        "delete naming B with a filter only A's points match",
    )?;
    check_key(
        &api,
        "B",
        &b,
        "delete naming B with a filter only A's points match",
    )?;
    api.ok_post(
        &path("/points/delete?wait=true"),
        &json!({"shard_key": "B", "filter": {"must": [{"has_id": [2]}]}}),
    )?;
    b.remove("2");
    check_key(&api, "A", &a_before, "delete by has_id naming B")?;
    check_key(&api, "B", &b, "delete by has_id naming B")?;

    phase!("missing shard key C, alone or with B: 404 on every endpoint, nothing changes");
    let v = random_vector(&mut rng, DIM);
    let point = json!([{"id": 1, "vector": v, "payload": {"owner": "C"}}]);
    let cases: Vec<(&str, &str, Value)> = vec![
        ("PUT", "/points?wait=true", json!({"points": point})),
        ("POST", "/points", json!({"ids": [1, 2, 3]})),
        ("POST", "/points/scroll", json!({})),
        ("POST", "/points/count", json!({})),
        ("POST", "/points/query", json!({"query": v})),
        ("POST", "/points/query", json!({"query": 3})),
        ("POST", "/points/query", json!({})),
        ("POST", "/points/search", json!({"vector": v})),
        (
            "POST",
            "/points/payload?wait=true",
            json!({"points": [3], "payload": {"x": 1}}),
        ),
        (
            "PUT",
            "/points/payload?wait=true",
            json!({"points": [3], "payload": {"x": 1}}),
        ),
        (
            "POST",
            "/points/payload/delete?wait=true",
            json!({"points": [3], "keys": ["owner"]}),
        ),
        (
            "POST",
            "/points/payload/clear?wait=true",
            json!({"points": [3]}),
        ),
        (
            "POST",
            "/points/delete?wait=true",
            json!({"points": [3, 4]}),
        ),
        (
            "POST",
            "/points/delete?wait=true",
            json!({"filter": {"must": [{"has_id": [3]}]}}),
        ),
    ];
    for (method, ep, body) in &cases {
        for key in [json!("C"), json!(["B", "C"]), json!(["C", "A"])] {
            let mut body = body.clone();
            body["shard_key"] = key.clone();
            let m = reqwest::Method::from_bytes(method.as_bytes())?;
            let (st, resp) = api.raw(m, &path(ep), Some(serde_json::to_vec(&body)?))?;
            ensure!(
                st == 404,
                "{method} {ep} naming {key}: want 404, got {st} {resp}"
            );
            let msg = error_message(&resp)?;
            ensure!(
                msg.contains('C'),
                "{method} {ep} naming {key}: 404 message does not name key C: {msg}"
            );
        }
    }
    check_key(&api, "A", &a_before, "requests naming a missing key")?;
    check_key(&api, "B", &b, "requests naming a missing key")?;

    phase!("restart (SIGKILL): both keys exactly as they were");
    node.kill9()?;
    node.restart()?;
    check_key(&api, "A", &a_before, "restart")?;
    check_key(&api, "B", &b, "restart")?;
    Ok(())
}

#[test]
fn auto_sharding_spreads_points_and_keeps_them_all() {
    with_node(&[], auto_sharding);
}

fn auto_sharding(node: &mut Node) -> Result<()> {
    const N: u64 = 300;
    let api = node.api();
    let mut rng = StdRng::seed_from_u64(42);
    let c = "auto3";
    let p = |s: &str| format!("/collections/{c}{s}");

    phase!("setup: auto-sharded collection with 3 shards; {N} numeric and 30 string ids");
    api.ok_put(
        &p(""),
        &json!({"vectors": {"size": 8, "distance": "Euclid"}, "shard_number": 3}),
    )?;
    let mut want = Model::new();
    for i in 0..N {
        let id = json!(i);
        want.insert(
            id.to_string(),
            (
                id,
                random_vector(&mut rng, 8),
                json!({"i": i, "parity": if i % 2 == 0 { "even" } else { "odd" }}),
            ),
        );
    }
    for i in 0..30 {
        let id = json!(format!("doc-{i}"));
        want.insert(
            id.to_string(),
            (
                id,
                random_vector(&mut rng, 8),
                json!({"i": i, "parity": "string"}),
            ),
        );
    }
    let points: Vec<Value> = want
        .values()
        .map(|(id, v, pl)| json!({"id": id, "vector": v, "payload": pl}))
        .collect();
    for chunk in points.chunks(110) {
        api.ok_put(&p("/points?wait=true"), &json!({"points": chunk}))?;
    }
    let total = want.len();

    phase!("points spread over all 3 shards; collection and cluster counts agree");
    let cl = api.ok_get(&p("/cluster"))?;
    let shards = cl["local_shards"]
        .as_array()
        .ok_or_else(|| anyhow!("cluster: {cl}"))?;
    ensure!(shards.len() == 3, "3 local shards expected: {cl}");
    let per: Vec<u64> = shards
        .iter()
        .map(|s| s["points_count"].as_u64().unwrap_or(0))
        .collect();
    ensure!(per.iter().all(|n| *n > 0), "a shard got no points: {per:?}");
    ensure!(
        per.iter().sum::<u64>() == total as u64,
        "shard counts {per:?} do not sum to {total}"
    );
    phase!("  points per shard: {per:?}");
    let info = api.ok_get(&p(""))?;
    ensure!(
        info["points_count"] == json!(total),
        "collection info: {info}"
    );

    phase!("all retrievable with exact data; counts exact with and without a filter");
    let ids: Vec<Value> = want.values().map(|(id, _, _)| id.clone()).collect();
    let r = api.ok_post(
        &p("/points"),
        &json!({"ids": ids, "with_payload": true, "with_vector": true}),
    )?;
    let got = auto_model(&points_of(&r, "retrieve")?)?;
    ensure!(
        got == want,
        "retrieve of every id differs from what was written"
    );
    let r = api.ok_post(&p("/points/count"), &json!({"exact": true}))?;
    ensure!(r["count"] == json!(total), "count: {r}");
    let even = json!({"must": [{"key": "parity", "match": {"value": "even"}}]});
    let r = api.ok_post(&p("/points/count"), &json!({"exact": true, "filter": even}))?;
    ensure!(r["count"] == json!(N / 2), "count of even: {r}");

    phase!("scroll in pages of 7 across shards: every point once, ids ascending per kind");
    let mut seen = Vec::new();
    let mut offset = Value::Null;
    for _ in 0..200 {
        let r = api.ok_post(
            &p("/points/scroll"),
            &json!({"limit": 7, "offset": offset, "with_vector": true}),
        )?;
        let page = points_of(&r, "scroll")?;
        ensure!(page.len() <= 7, "scroll page of {} > limit 7", page.len());
        seen.extend(page);
        offset = r["next_page_offset"].clone();
        if offset.is_null() {
            break;
        }
    }
    ensure!(offset.is_null(), "scroll did not end within 200 pages");
    ensure!(
        auto_model(&seen)? == want,
        "paged scroll differs from what was written"
    );
    let nums: Vec<u64> = seen.iter().filter_map(|r| r["id"].as_u64()).collect();
    ensure!(
        nums.windows(2).all(|w| w[0] < w[1]),
        "numeric ids not ascending over pages"
    );

    phase!("each point is the top-1 exact hit for its own vector across the 3 shards");
    for (k, (id, v, _)) in &want {
        let r = api.ok_post(
            &p("/points/query"),
            &json!({"query": v, "limit": 1, "params": {"exact": true}}),
        )?;
        ensure!(r["points"][0]["id"] == *id, "own-vector query for {k}: {r}");
    }

    phase!("delete 40 ids; counts follow; restart (SIGKILL) keeps exactly the rest");
    let gone: Vec<Value> = want
        .values()
        .step_by(8)
        .map(|(id, _, _)| id.clone())
        .take(40)
        .collect();
    api.ok_post(&p("/points/delete?wait=true"), &json!({"points": gone}))?;
    for id in &gone {
        want.remove(&id.to_string());
    }
    let r = api.ok_post(&p("/points/count"), &json!({"exact": true}))?;
    ensure!(r["count"] == json!(want.len()), "count after delete: {r}");
    node.kill9()?;
    node.restart()?;
    ensure!(
        auto_model(&api.scroll_all(c, None)?)? == want,
        "after restart the collection differs"
    );
    let r = api.ok_post(&p("/points"), &json!({"ids": gone}))?;
    ensure!(r == json!([]), "deleted ids came back after restart: {r}");
    Ok(())
}

fn auto_model(records: &[Value]) -> Result<Model> {
    let mut m = Model::new();
    for r in records {
        ensure!(
            r["shard_key"].is_null(),
            "auto-sharded record with a shard key: {r}"
        );
        let prev = m.insert(
            r["id"].to_string(),
            (
                r["id"].clone(),
                as_vector(&r["vector"])?,
                r["payload"].clone(),
            ),
        );
        ensure!(prev.is_none(), "id {} answered twice", r["id"]);
    }
    Ok(m)
}
