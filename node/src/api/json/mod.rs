//! Qdrant's JSON shapes, and the only place that knows them: request bodies are parsed here into
//! typed requests, responses are serde types built from internal values. Handlers neither read
//! fields by name nor build JSON.
//!
//! Parsing is written out by hand rather than derived where serde's own messages would differ
//! from the texts clients and tests already see ("Format error in JSON body: ..."), and where a
//! check must come after the collection is known to be visible (404 before 400, as before).
//!
//! Responses are plain structs whose fields are declared in alphabetical order: the bodies used
//! to be `serde_json::Value` maps, which serialize their keys sorted, and the bytes stay the same.
//! For the same reason floats that were `f32` go out widened to `f64` (as `Value` stored them).

pub mod admin;
pub mod aliases;
pub mod collections;
pub mod facet;
#[cfg(test)]
mod fuzz;
pub mod groups;
pub mod points;
pub mod prefetch;
pub mod query;
pub mod service;
pub mod shard_keys;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use tessera_cluster::meta::ShardKey;
use tessera_cluster::{Error, ErrorKind, Result};
use tessera_shard::filter::{Filter, parse_filter};
use tessera_shard::point::{Payload, PointId};
use tessera_shard::store::{PayloadSelector, Record};

use crate::router::KeySelector;

/// Qdrant's success envelope.
#[derive(Serialize)]
pub struct Envelope<T> {
    pub result: T,
    pub status: &'static str,
    pub time: f64,
}

/// Qdrant's error body: `{"status": {"error": ".."}, "time": 0.0}`.
#[derive(Serialize)]
pub struct ErrorBody {
    pub status: ErrorStatus,
    pub time: f64,
}

#[derive(Serialize)]
pub struct ErrorStatus {
    pub error: String,
}

impl ErrorBody {
    pub fn new(message: String) -> ErrorBody {
        ErrorBody {
            status: ErrorStatus { error: message },
            time: 0.0,
        }
    }
}

/// The result of a write: `wait=true` answers once it is applied.
#[derive(Serialize)]
pub struct UpdateResult {
    pub operation_id: u64,
    pub status: &'static str,
}

impl UpdateResult {
    pub fn new(operation_id: u64, wait: bool) -> UpdateResult {
        UpdateResult {
            operation_id,
            status: if wait { "completed" } else { "acknowledged" },
        }
    }
}

/// `{}`: Qdrant's empty objects (`message_send_failures`).
#[derive(Serialize, Default)]
pub struct Empty {}

/// A request body as JSON; an empty body is `{}`.
pub fn body_json(body: std::result::Result<Bytes, BytesRejection>) -> Result<Value> {
    let bytes = body_bytes(body)?;
    if bytes.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    check_parse_cost(&bytes)?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("Format error in JSON body: {e}")))
}

/// The body's bytes, or the error of a body that could not be read (over the limit: 413).
pub fn body_bytes(body: std::result::Result<Bytes, BytesRejection>) -> Result<Bytes> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::new(
                ErrorKind::PayloadTooLarge,
                "Payload too large: request body is over the configured limit",
            )
        } else {
            bad(format!("Format error in JSON body: {}", r.body_text()))
        }
    })
}

/// A body that must be a JSON object.
pub fn body_object(v: &Value) -> Result<&Map<String, Value>> {
    obj(v, "body")
}

pub fn bad(m: impl Into<String>) -> Error {
    Error::bad_request(m)
}

pub fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        bad(format!(
            "Format error in JSON body: {what} must be an object"
        ))
    })
}

/// A field that may be absent or null.
pub fn field<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|v| !v.is_null())
}

pub fn point_id(v: &Value) -> Result<PointId> {
    match v {
        Value::Number(n) => n.as_u64().map(PointId::Num).ok_or_else(|| {
            bad(format!(
                "Format error in JSON body: point id {n} must be an unsigned integer or a string"
            ))
        }),
        Value::String(s) if !s.is_empty() && s.len() <= 512 => Ok(PointId::from_string(s)),
        Value::String(_) => Err(bad(
            "Format error in JSON body: point id must be 1 to 512 bytes",
        )),
        other => Err(bad(format!(
            "Format error in JSON body: point id must be an unsigned integer or a string, got {other}"
        ))),
    }
}

/// A point id as Qdrant writes it: a number or a string.
#[derive(Clone)]
pub struct IdJson(pub PointId);

impl Serialize for IdJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match &self.0 {
            PointId::Num(n) => serializer.serialize_u64(*n),
            PointId::Uuid(s) | PointId::Str(s) => serializer.serialize_str(s),
        }
    }
}

pub fn shard_key(v: &Value) -> Result<ShardKey> {
    match v {
        Value::String(s) => Ok(ShardKey::Str(s.clone())),
        Value::Number(n) => n.as_u64().map(ShardKey::Num).ok_or_else(|| {
            bad("Format error in JSON body: shard key must be a string or an unsigned integer")
        }),
        _ => Err(bad(
            "Format error in JSON body: shard key must be a string or an unsigned integer",
        )),
    }
}

/// A shard key as Qdrant writes it: a number or a string.
#[derive(Clone)]
pub struct KeyJson(pub ShardKey);

impl Serialize for KeyJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match &self.0 {
            ShardKey::Num(n) => serializer.serialize_u64(*n),
            ShardKey::Str(s) => serializer.serialize_str(s),
        }
    }
}

fn key_list(v: &Value) -> Result<Vec<ShardKey>> {
    match v {
        Value::Array(a) => a.iter().map(shard_key).collect(),
        other => Ok(vec![shard_key(other)?]),
    }
}

/// `shard_key`: absent, one key, a list, or `{target, fallback}`.
pub fn key_selector(o: &Map<String, Value>) -> Result<KeySelector> {
    match field(o, "shard_key") {
        None => Ok(KeySelector::All),
        Some(Value::Object(m)) => {
            let target = m
                .get("target")
                .ok_or_else(|| bad("Format error in JSON body: shard_key object needs `target`"))?;
            let target = key_list(target)?;
            match field(m, "fallback") {
                Some(fb) => Ok(KeySelector::Fallback {
                    target,
                    fallback: shard_key(fb)?,
                }),
                None => Ok(KeySelector::Keys(target)),
            }
        }
        Some(v) => Ok(KeySelector::Keys(key_list(v)?)),
    }
}

pub fn vector(v: &Value) -> Result<Vec<f32>> {
    let arr = match v {
        Value::Array(a) => a,
        Value::Object(m) if m.len() == 1 && m.contains_key("") => {
            return vector(&m[""]);
        }
        Value::Object(_) => {
            return Err(bad(
                "Wrong input: named vectors are not supported; this collection has one unnamed vector",
            ));
        }
        _ => {
            return Err(bad(
                "Format error in JSON body: vector must be a list of numbers",
            ));
        }
    };
    let mut out = Vec::with_capacity(arr.len());
    for x in arr {
        let f = x
            .as_f64()
            .ok_or_else(|| bad("Format error in JSON body: vector must be a list of numbers"))?
            as f32;
        if !f.is_finite() {
            return Err(bad("Wrong input: vector values must be finite numbers"));
        }
        out.push(f);
    }
    Ok(out)
}

pub fn check_dim(v: &[f32], dim: usize) -> Result<()> {
    if v.len() != dim {
        return Err(bad(format!(
            "Wrong input: Vector dimension error: expected dim: {dim}, got {}",
            v.len()
        )));
    }
    Ok(())
}

pub fn payload(v: Option<&Value>) -> Result<Payload> {
    match v {
        None | Some(Value::Null) => Ok(Payload::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(bad("Format error in JSON body: payload must be an object")),
    }
}

pub fn with_payload(v: Option<&Value>, default: bool) -> Result<PayloadSelector> {
    let strings = |a: &Vec<Value>| -> Result<Vec<String>> {
        a.iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    bad("Format error in JSON body: with_payload keys must be strings")
                })
            })
            .collect()
    };
    match v {
        None | Some(Value::Null) => Ok(if default {
            PayloadSelector::All
        } else {
            PayloadSelector::None
        }),
        Some(Value::Bool(true)) => Ok(PayloadSelector::All),
        Some(Value::Bool(false)) => Ok(PayloadSelector::None),
        Some(Value::Array(a)) => Ok(PayloadSelector::Include(strings(a)?)),
        Some(Value::Object(m)) => {
            if let Some(Value::Array(a)) = m.get("include") {
                Ok(PayloadSelector::Include(strings(a)?))
            } else if let Some(Value::Array(a)) = m.get("exclude") {
                Ok(PayloadSelector::Exclude(strings(a)?))
            } else {
                Err(bad(
                    "Format error in JSON body: with_payload object needs include or exclude",
                ))
            }
        }
        Some(_) => Err(bad(
            "Format error in JSON body: with_payload must be a bool, a list or an object",
        )),
    }
}

pub fn with_vector(v: Option<&Value>) -> Result<bool> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Array(_)) => Ok(true),
        Some(_) => Err(bad(
            "Format error in JSON body: with_vector must be a bool or a list",
        )),
    }
}

pub fn filter(o: &Map<String, Value>) -> Result<Option<Filter>> {
    filter_at(o, "filter")
}

/// The filter under key `k` (absent or null: none).
pub fn filter_at(o: &Map<String, Value>, k: &str) -> Result<Option<Filter>> {
    match field(o, k) {
        None => Ok(None),
        Some(v) => parse_filter(v)
            .map(Some)
            .map_err(|e| bad(format!("Format error in JSON body: {e}"))),
    }
}

/// Refuses every set field of `o` that tessera would not honour, naming it: a field outside
/// `honoured`, unless it has the one value of `neutral` that changes nothing (`on_disk: false`).
/// Unset and null fields pass (the official clients send unset options as null). A setting or
/// parameter accepted and then dropped is worse than a refusal.
pub fn check_fields(
    o: &Map<String, Value>,
    at: &str,
    honoured: &[&str],
    neutral: &[(&str, Value)],
) -> Result<()> {
    for (k, v) in o {
        if v.is_null()
            || honoured.contains(&k.as_str())
            || neutral.iter().any(|(nk, nv)| nk == k && nv == v)
        {
            continue;
        }
        return Err(bad(format!(
            "Bad request: tessera does not support {at}{k} (given {v}); leave it unset"
        )));
    }
    Ok(())
}

/// The string field `k` of the object at `at` (`"create_alias"`), required.
pub fn string_at(m: &Map<String, Value>, k: &str, at: &str) -> Result<String> {
    field(m, k)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            bad(format!(
                "Format error in JSON body: {at}.{k} must be a string"
            ))
        })
}

pub fn f64_field(o: &Map<String, Value>, k: &str) -> Result<Option<f64>> {
    field(o, k)
        .map(|v| {
            v.as_f64()
                .ok_or_else(|| bad(format!("Format error in JSON body: {k} must be a number")))
        })
        .transpose()
}

pub fn usize_field(o: &Map<String, Value>, k: &str) -> Result<Option<usize>> {
    match field(o, k) {
        None => Ok(None),
        Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            bad(format!(
                "Format error in JSON body: {k} must be a non-negative integer"
            ))
        }),
    }
}

pub fn limit(o: &Map<String, Value>, default: usize, max: usize) -> Result<usize> {
    let l = usize_field(o, "limit")?.unwrap_or(default);
    if l > max {
        return Err(bad(format!(
            "Bad request: limit {l} is over the maximum of {max}"
        )));
    }
    Ok(l)
}

/// A point as Qdrant returns it from retrieve and scroll.
#[derive(Serialize)]
pub struct PointRecord {
    pub id: IdJson,
    /// The value a scroll ordered by (`order_by`), else none.
    pub order_value: Option<serde_json::Number>,
    pub payload: Option<Payload>,
    pub shard_key: Option<KeyJson>,
    pub vector: Option<Vec<f64>>,
}

impl PointRecord {
    pub fn new((key, record): (Option<ShardKey>, Record)) -> PointRecord {
        PointRecord {
            id: IdJson(record.id),
            order_value: None,
            payload: record.payload,
            shard_key: key.map(KeyJson),
            vector: record.vector.map(widen),
        }
    }
}

/// f32 values as `serde_json::Value` held them (widened to f64), so numbers print as before.
pub fn widen(v: Vec<f32>) -> Vec<f64> {
    v.into_iter().map(f64::from).collect()
}

/// What one JSON value costs in memory once parsed into a `Value` tree (the value, its slot in
/// its array or map, allocator overhead), on top of the text of its strings.
const PARSED_VALUE_BYTES: usize = 80;
/// The most memory the parsed form of one request body may take. A body of tiny values (30 MB
/// of `{}`) would otherwise cost over 2 GB once parsed; real bodies (vectors of floats written
/// with their digits) stay well below, at most ~170 MB for the largest body accepted.
pub const MAX_PARSED_BODY_BYTES: usize = 256 << 20;

/// Refuses, before parsing, a body whose parsed form would cost more than
/// [`MAX_PARSED_BODY_BYTES`]: one pass counts the values outside strings.
pub fn check_parse_cost(body: &[u8]) -> Result<()> {
    let values = count_json_values(body);
    let cost = values
        .saturating_mul(PARSED_VALUE_BYTES)
        .saturating_add(body.len());
    if cost > MAX_PARSED_BODY_BYTES {
        return Err(Error::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "Payload too large: the request body holds {values} JSON values, more than one \
                 request may ({})",
                MAX_PARSED_BODY_BYTES / PARSED_VALUE_BYTES
            ),
        ));
    }
    Ok(())
}

/// How many JSON values a text holds, about: one, plus one per `,` and per opening bracket
/// outside strings (an upper bound for well-formed JSON; malformed text fails its parse anyway).
fn count_json_values(body: &[u8]) -> usize {
    let (mut values, mut in_string, mut escaped) = (1usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                (false, _) => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' | b'[' | b'{' => values += 1,
            _ => {}
        }
    }
    values
}

#[cfg(test)]
mod cost_tests {
    use super::*;

    #[test]
    fn values_are_counted_outside_strings() {
        assert_eq!(count_json_values(b"1"), 1);
        assert_eq!(count_json_values(br#"{"a": [1, 2, 3]}"#), 5);
        assert_eq!(count_json_values(br#"{"a": "x,y[{\"z,"}"#), 2);
    }

    #[test]
    fn a_body_of_tiny_values_is_refused_before_parsing_and_real_ones_pass() {
        let junk = format!("{{\"points\": [{}{{}}]}}", "{},".repeat(4_000_000));
        let e = check_parse_cost(junk.as_bytes()).expect_err("junk");
        assert_eq!(e.kind, ErrorKind::PayloadTooLarge);
        // 5,000 points of 384 floats written with their digits, as clients send them (29 MB)
        let vector = vec!["0.123456789012"; 384].join(",");
        let point = format!("{{\"id\": 1, \"vector\": [{vector}], \"payload\": {{\"t\": \"x\"}}}}");
        let body = format!("{{\"points\": [{}]}}", vec![point; 5_000].join(","));
        check_parse_cost(body.as_bytes()).expect("a real batch");
    }
}
