//! What goes in comes out: payload values are answered exactly as written (issue 2: a point is
//! "retrievable with its payload"). Floating-point numbers are compared as text tokens of the
//! raw response, parsed with the standard library (exact): serde_json's default float parser,
//! which this test client also uses elsewhere, may itself be one ulp off and would hide or fake
//! a difference.

use anyhow::{Context, Result, anyhow, ensure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};
use tessera_tests::{Node, phase, with_node};

/// The number token that follows `"key":` in compact JSON text.
fn number_after(text: &str, key: &str) -> Result<String> {
    let needle = format!("\"{key}\":");
    let at = text
        .find(&needle)
        .ok_or_else(|| anyhow!("{needle} not in the answer"))?
        + needle.len();
    let token: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
        .collect();
    ensure!(!token.is_empty(), "no number after {needle}");
    Ok(token)
}

#[test]
fn payload_numbers_and_values_round_trip_exactly() {
    with_node(&[], fidelity);
}

fn fidelity(node: &mut Node) -> Result<()> {
    let api = node.api();
    let mut rng = StdRng::seed_from_u64(1);

    phase!("setup: payload floats at full precision (and edge values), with other value kinds");
    api.ok_put(
        "/collections/f",
        &json!({"vectors": {"size": 2, "distance": "Dot"}}),
    )?;
    let mut floats: Vec<f64> = vec![
        0.1,
        1.0 / 3.0,
        0.9077500334580549,
        -0.0,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        -2.5e-300,
        1e300,
        9007199254740993.0,
    ];
    floats.extend((0..190).map(|i| rng.random::<f64>() * 10f64.powi(i % 40 - 20)));
    let others = json!({
        "s": "unicode ✓ — \"quoted\" \\ back\nslash\ttab \u{1F600}",
        "big": u64::MAX,
        "neg": i64::MIN,
        "nested": {"arr": [1, "two", null, true, {"deep": [[]]}], "empty": {}},
        "null": null,
    });
    let points: Vec<Value> = floats
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let mut p = others.clone();
            p[format!("x{i}")] = json!(x);
            json!({"id": i, "vector": [1.0, 0.5], "payload": p})
        })
        .collect();
    api.ok_put(
        "/collections/f/points?wait=true",
        &json!({"points": points}),
    )?;

    phase!("retrieve: every float's shortest decimal form comes back unchanged");
    let ids: Vec<usize> = (0..floats.len()).collect();
    let body = serde_json::to_vec(&json!({"ids": ids, "with_payload": true}))?;
    let (status, text) = api.raw_text(Method::POST, "/collections/f/points", Some(body))?;
    ensure!(status == 200, "retrieve: {status} {text}");
    let mut wrong = Vec::new();
    for (i, x) in floats.iter().enumerate() {
        let sent = json!(x).to_string();
        let got = number_after(&text, &format!("x{i}"))?;
        let back: f64 = got.parse().with_context(|| format!("parse {got}"))?;
        if back.to_bits() != x.to_bits() {
            wrong.push(format!("x{i}: sent {sent}, answered {got}"));
        }
    }
    let parsed: Value = serde_json::from_str(&text).context("parse retrieve answer")?;
    let recs = parsed["result"]
        .as_array()
        .context("retrieve result list")?;
    ensure!(
        recs.len() == floats.len(),
        "retrieve answered {} of {} points",
        recs.len(),
        floats.len()
    );
    for r in recs {
        let mut p = r["payload"].clone();
        let o = p.as_object_mut().context("payload object")?;
        o.retain(|k, _| !k.starts_with('x'));
        ensure!(
            p == others,
            "point {}: payload {p} != written {others}",
            r["id"]
        );
    }
    ensure!(
        wrong.is_empty(),
        "{} of {} payload floats came back changed (the server parses JSON floats inexactly; \
         serde_json needs its `float_roundtrip` feature):\n{}",
        wrong.len(),
        floats.len(),
        wrong.join("\n")
    );
    Ok(())
}
