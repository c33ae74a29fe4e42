//! Per-tenant quotas against a real `tessera` process: a flooding tenant gets 429 with
//! `Retry-After` while another tenant's requests all succeed; a batch that would cross a storage
//! quota is refused whole (507); quotas are metadata and survive a restart.

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use tessera_tests::{Api, Node, error_message, phase, with_node};

const ADMIN_KEY: &str = "quota-admin-key-0123456789abcdef";
const DIM: usize = 4;

fn points(ids: std::ops::Range<u64>) -> Value {
    let pts: Vec<Value> = ids
        .map(|i| json!({"id": i, "vector": [1.0, i as f32, 0.5, 0.25], "payload": {"i": i}}))
        .collect();
    json!(pts)
}

fn setup(admin: &Api) -> Result<()> {
    admin.ok_put(
        "/collections/c",
        &json!({"vectors": {"size": DIM, "distance": "Dot"}, "sharding_method": "custom"}),
    )?;
    for k in ["flood", "calm"] {
        admin.ok_put("/collections/c/shards", &json!({"shard_key": k}))?;
        admin.ok_put(
            "/collections/c/points?wait=true",
            &json!({"points": points(0..20), "shard_key": k}),
        )?;
    }
    Ok(())
}

#[test]
fn a_flooding_tenant_is_throttled_and_the_other_is_not() {
    with_node(&["--api-key", ADMIN_KEY], |node: &mut Node| {
        let admin = node.api().with_key(ADMIN_KEY);
        setup(&admin)?;
        phase!("flood: 5 reads/s, burst 5; calm: no quota");
        let q = admin.ok_put(
            "/admin/tenants/flood/quota",
            &json!({"read_rps": 5, "read_burst": 5, "write_rps": 2, "write_burst": 2}),
        )?;
        ensure!(
            q["read_rps"] == 5 && q["write_burst"] == 2 && q["weight"] == 1,
            "{q}"
        );
        let query =
            |key: &str| json!({"query": [1.0, 0.0, 0.0, 0.0], "limit": 5, "shard_key": key});
        let (mut ok, mut throttled) = (0u32, 0u32);
        let mut refusals_took = std::time::Duration::ZERO;
        let flood_started = std::time::Instant::now();
        for i in 0..40 {
            let sent = std::time::Instant::now();
            let (st, retry, body) =
                admin.post_with_retry_after("/collections/c/points/query", &query("flood"))?;
            match st {
                200 => ok += 1,
                429 => {
                    throttled += 1;
                    refusals_took += sent.elapsed();
                    let secs: u64 = retry
                        .as_deref()
                        .and_then(|r| r.parse().ok())
                        .ok_or_else(|| anyhow::anyhow!("429 without a Retry-After: {body}"))?;
                    // this client retries at once, so each refusal is given the slot after
                    // the previous one (up to 10 s ahead), as if a new client were waiting
                    ensure!((1..=10).contains(&secs), "Retry-After {secs}");
                    error_message(&body)?;
                }
                other => anyhow::bail!("flood query {i}: {other} {body}"),
            }
            // the other tenant, interleaved: never refused
            let (st, _, body) =
                admin.post_with_retry_after("/collections/c/points/query", &query("calm"))?;
            ensure!(st == 200, "calm query {i} refused: {st} {body}");
        }
        // the bucket admits its burst and then 5 a second, however long the loop took (held
        // refusals make it take several seconds); never more, and never all 40
        let allowed = 5 + (5.0 * flood_started.elapsed().as_secs_f64()).ceil() as u32;
        ensure!(
            ok >= 5 && ok <= allowed && throttled >= 5,
            "flood: {ok} ok (at most {allowed}), {throttled} throttled"
        );
        // a refusal is held up to 250 ms (never past its retry time): with the slots 200 ms
        // apart, every refusal but perhaps the first is held at least 100 ms
        ensure!(
            refusals_took >= std::time::Duration::from_millis(100) * (throttled - 1),
            "{throttled} refusals answered in {refusals_took:?}: not held"
        );
        phase!("flood's writes: 2 then 429; calm writes freely");
        let mut write_codes = Vec::new();
        for i in 0..6 {
            let (st, _) = admin.put(
                "/collections/c/points?wait=true",
                &json!({"points": points(100 + i..101 + i), "shard_key": "flood"}),
            )?;
            write_codes.push(st);
            admin.ok_put(
                "/collections/c/points?wait=true",
                &json!({"points": points(100 + i..101 + i), "shard_key": "calm"}),
            )?;
        }
        ensure!(
            write_codes.iter().filter(|c| **c == 429).count() >= 3,
            "{write_codes:?}"
        );
        let usage = admin.ok_get("/admin/tenants/flood/usage")?;
        ensure!(
            usage["reads"]["throttled"].as_u64() == Some(u64::from(throttled)),
            "{usage}"
        );
        ensure!(usage["points"].as_u64() >= Some(20), "{usage}");
        let metrics = node
            .api()
            .with_key(ADMIN_KEY)
            .raw_text(reqwest::Method::GET, "/metrics", None)?
            .1;
        ensure!(
            metrics.contains("tessera_tenant_throttled_total")
                && metrics.contains("tenant=\"flood\""),
            "per-tenant metrics exported"
        );
        phase!("bad quota bodies change nothing");
        for bad in [
            json!({"read_rps": 0}),
            json!({"reed_rps": 3}),
            json!({"weight": null}),
            json!([1]),
        ] {
            let (st, body) = admin.put("/admin/tenants/flood/quota", &bad)?;
            ensure!(st == 400, "{bad}: {st} {body}");
            error_message(&body)?;
        }
        ensure!(
            admin.ok_get("/admin/tenants/flood/quota")? == q,
            "quota unchanged"
        );
        phase!("quotas are metadata: they survive a restart");
        node.restart()?;
        ensure!(
            admin.ok_get("/admin/tenants/flood/quota")? == q,
            "quota after restart"
        );
        Ok(())
    });
}

#[test]
fn a_batch_crossing_the_storage_quota_is_refused_whole() {
    with_node(&["--api-key", ADMIN_KEY], |node: &mut Node| {
        let admin = node.api().with_key(ADMIN_KEY);
        setup(&admin)?;
        admin.ok_put(
            "/admin/tenants/flood/quota",
            &json!({"max_points": 30, "max_batch": 8}),
        )?;
        let count = |key: &str| -> Result<u64> {
            Ok(
                admin.ok_post("/collections/c/points/count", &json!({"shard_key": key}))?["count"]
                    .as_u64()
                    .unwrap_or(0),
            )
        };
        admin.ok_put(
            "/collections/c/points?wait=true",
            &json!({"points": points(20..28), "shard_key": "flood"}),
        )?;
        ensure!(count("flood")? == 28);
        phase!("3 more would make 31 > 30: refused whole, nothing written");
        let (st, body) = admin.put(
            "/collections/c/points?wait=true",
            &json!({"points": points(28..31), "shard_key": "flood"}),
        )?;
        ensure!(st == 507, "{st} {body}");
        let msg = error_message(&body)?;
        ensure!(msg.contains("max_points"), "{msg}");
        ensure!(count("flood")? == 28, "nothing of the batch written");
        phase!("over max_batch: 400; the other tenant is not limited");
        let (st, body) = admin.put(
            "/collections/c/points?wait=true",
            &json!({"points": points(40..49), "shard_key": "flood"}),
        )?;
        ensure!(
            st == 400 && error_message(&body)?.contains("max_batch"),
            "{st} {body}"
        );
        admin.ok_put(
            "/collections/c/points?wait=true",
            &json!({"points": points(20..60), "shard_key": "calm"}),
        )?;
        admin.ok_put(
            "/collections/c/points?wait=true",
            &json!({"points": points(28..30), "shard_key": "flood"}),
        )?;
        ensure!(count("flood")? == 30);
        let usage = admin.ok_get("/admin/tenants/flood/usage")?;
        ensure!(
            usage["points"] == 30 && usage["storage_refused"].as_u64() >= Some(1),
            "{usage}"
        );
        Ok(())
    });
}

/// A request over more shard keys than a tenant's queue holds (1 024 jobs) is answered: its
/// reads wait their turn inside the request instead of overflowing the queue with a 429.
#[test]
fn a_read_over_more_shard_keys_than_a_queue_holds_is_answered() {
    const KEYS: usize = 1_100;
    with_node(&[], |node: &mut Node| {
        let api = node.api();
        api.ok_put(
            "/collections/many",
            &json!({"vectors": {"size": DIM, "distance": "Dot"}, "sharding_method": "custom"}),
        )?;
        for i in 0..KEYS {
            api.ok_put(
                "/collections/many/shards",
                &json!({"shard_key": format!("k{i}")}),
            )?;
        }
        api.ok_put(
            "/collections/many/points?wait=true",
            &json!({"points": points(0..3), "shard_key": "k7"}),
        )?;
        phase!("count, scroll, query and collection info over {KEYS} keys, no key named");
        let count = api.ok_post("/collections/many/points/count", &json!({"exact": true}))?;
        ensure!(count["count"] == 3, "count: {count}");
        let page = api.ok_post("/collections/many/points/scroll", &json!({"limit": 10}))?;
        ensure!(
            page["points"].as_array().map(Vec::len) == Some(3),
            "scroll: {page}"
        );
        let hits = api.ok_post(
            "/collections/many/points/query",
            &json!({"query": [1.0, 1.0, 0.5, 0.25], "limit": 2}),
        )?;
        ensure!(
            hits["points"].as_array().map(Vec::len) == Some(2),
            "query: {hits}"
        );
        let info = api.ok_get("/collections/many")?;
        ensure!(info["points_count"] == 3, "info: {info}");
        Ok(())
    });
}
