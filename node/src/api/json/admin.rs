//! Admin bodies: a tenant's suspension, its quota (the patch an admin sends, the limits read
//! back) and its usage, and the rebalance request and plan. The quota model lives in the
//! cluster crate, which knows no JSON; its HTTP shapes are here.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use tessera_cluster::{Error, Result};

use super::{KeyJson, bad};
use crate::quota::{Quota, QuotaPatch, RequestCounts, Usage};
use crate::replication::{MAX_REBALANCE_MOVES, MoveStatus, RebalanceMove};

/// `GET /admin/tenants/{t}` and the answer to suspend and resume.
#[derive(Serialize)]
pub struct TenantInfo {
    pub suspended: bool,
    pub tenant: String,
}

/// A tenant's limits as `GET .../quota` returns them; `null` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaView {
    pub max_batch: Option<u32>,
    pub max_bytes: Option<u64>,
    pub max_concurrent_searches: Option<u32>,
    pub max_limit: Option<u32>,
    pub max_points: Option<u64>,
    pub read_burst: Option<u32>,
    pub read_rps: Option<u32>,
    pub weight: u32,
    pub write_burst: Option<u32>,
    pub write_bytes_per_s: Option<u64>,
    pub write_rps: Option<u32>,
}

impl From<Quota> for QuotaView {
    fn from(q: Quota) -> QuotaView {
        let Quota {
            read_rps,
            read_burst,
            write_rps,
            write_burst,
            write_bytes_per_s,
            max_concurrent_searches,
            max_points,
            max_bytes,
            max_batch,
            max_limit,
            weight,
        } = q;
        QuotaView {
            max_batch,
            max_bytes,
            max_concurrent_searches,
            max_limit,
            max_points,
            read_burst,
            read_rps,
            weight,
            write_burst,
            write_bytes_per_s,
            write_rps,
        }
    }
}

/// `Some(v)` for a present field (v is `None` for `null`), so that "absent" and "null" differ.
fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `Some(v)` for a present field that must not be `null`.
fn not_null<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The body of `PUT /admin/tenants/{t}/quota`: absent fields keep their value, `null` makes a
/// limit unlimited, `weight` cannot be null. Unknown fields are an error (a typo must not be
/// accepted and ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaPatchBody {
    #[serde(default, deserialize_with = "present")]
    read_rps: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    read_burst: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    write_rps: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    write_burst: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    write_bytes_per_s: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    max_concurrent_searches: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    max_points: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    max_bytes: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    max_batch: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    max_limit: Option<Option<u32>>,
    #[serde(default, deserialize_with = "not_null")]
    weight: Option<u32>,
}

/// Parses a quota patch body, with the API's message style on error.
pub fn quota_patch(body: &[u8]) -> Result<QuotaPatch> {
    let b: QuotaPatchBody = serde_json::from_slice(body)
        .map_err(|e| Error::bad_request(format!("Format error in JSON body: {e}")))?;
    Ok(QuotaPatch {
        read_rps: b.read_rps,
        read_burst: b.read_burst,
        write_rps: b.write_rps,
        write_burst: b.write_burst,
        write_bytes_per_s: b.write_bytes_per_s,
        max_concurrent_searches: b.max_concurrent_searches,
        max_points: b.max_points,
        max_bytes: b.max_bytes,
        max_batch: b.max_batch,
        max_limit: b.max_limit,
        weight: b.weight,
    })
}

/// `GET /admin/tenants/{t}/usage`: the tenant's usage against its quota on this node.
#[derive(Serialize)]
pub struct UsageView {
    pub bytes: u64,
    pub custom_quota: bool,
    pub points: u64,
    pub queue_depth: usize,
    pub quota: QuotaView,
    pub reads: Requests,
    pub searches_in_flight: u64,
    pub storage_refused: u64,
    pub tenant: String,
    pub write_bytes_accepted: u64,
    pub writes: Requests,
}

#[derive(Serialize)]
pub struct Requests {
    pub accepted: u64,
    pub throttled: u64,
}

impl From<RequestCounts> for Requests {
    fn from(c: RequestCounts) -> Requests {
        Requests {
            accepted: c.accepted,
            throttled: c.throttled,
        }
    }
}

impl UsageView {
    pub fn new(usage: Usage, queue_depth: usize) -> UsageView {
        let Usage {
            tenant,
            quota,
            custom_quota,
            points,
            bytes,
            searches_in_flight,
            reads,
            writes,
            write_bytes_accepted,
            storage_refused,
        } = usage;
        UsageView {
            bytes,
            custom_quota,
            points,
            queue_depth,
            quota: quota.into(),
            reads: reads.into(),
            searches_in_flight,
            storage_refused,
            tenant,
            write_bytes_accepted,
            writes: writes.into(),
        }
    }
}

/// Moves a `POST /admin/rebalance` starts when its body names no `max_moves`.
pub const DEFAULT_REBALANCE_MOVES: usize = 4;

/// `POST /admin/rebalance`: `{"max_moves": N, "dry_run": bool}`, both optional (an empty body
/// is the defaults: 4 moves, started). Any other field, or a value out of its range, is a 400
/// naming it.
pub fn rebalance_request(o: &Map<String, Value>) -> Result<(usize, bool)> {
    if let Some(unknown) = o
        .keys()
        .find(|k| !matches!(k.as_str(), "max_moves" | "dry_run"))
    {
        return Err(bad(format!(
            "Format error in JSON body: unknown field {unknown} (expected max_moves, dry_run)"
        )));
    }
    let max_moves = match o.get("max_moves") {
        None | Some(Value::Null) => DEFAULT_REBALANCE_MOVES,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_REBALANCE_MOVES as u64).contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| {
                bad(format!(
                    "Bad request: max_moves must be an integer between 1 and {MAX_REBALANCE_MOVES}, got {v}"
                ))
            })?,
    };
    let dry_run = match o.get("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(bad(format!(
                "Format error in JSON body: dry_run must be a boolean, got {v}"
            )));
        }
    };
    Ok((max_moves, dry_run))
}

/// The answer to `POST /admin/rebalance`: every planned move and what became of it.
#[derive(Serialize)]
pub struct RebalanceView {
    pub dry_run: bool,
    pub moves: Vec<RebalanceMoveView>,
}

#[derive(Serialize)]
pub struct RebalanceMoveView {
    pub collection: String,
    pub shard_id: u32,
    pub shard_key: Option<KeyJson>,
    pub from_peer_id: u64,
    pub to_peer_id: u64,
    /// `planned` (a dry run), `started`, or `refused` (with `error`).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RebalanceView {
    pub fn new(dry_run: bool, moves: Vec<RebalanceMove>) -> RebalanceView {
        let moves = moves
            .into_iter()
            .map(|m| {
                let (status, error) = match m.status {
                    MoveStatus::Planned => ("planned", None),
                    MoveStatus::Started => ("started", None),
                    MoveStatus::Refused(why) => ("refused", Some(why)),
                };
                RebalanceMoveView {
                    collection: m.planned.collection,
                    shard_id: m.planned.shard,
                    shard_key: m.planned.key.map(KeyJson),
                    from_peer_id: m.planned.from,
                    to_peer_id: m.planned.to,
                    status,
                    error,
                }
            })
            .collect();
        RebalanceView { dry_run, moves }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Quota {
        Quota {
            read_rps: Some(10),
            read_burst: Some(5),
            max_points: Some(1000),
            weight: 2,
            ..Quota::default()
        }
    }

    #[test]
    fn absent_fields_keep_their_value_and_null_is_unlimited() {
        let p = quota_patch(br#"{"write_rps": 7, "read_burst": null}"#).expect("a valid patch");
        let q = base().apply_patch(&p).expect("valid result");
        assert_eq!(q.write_rps, Some(7));
        assert_eq!(q.read_burst, None, "null makes the burst follow the rate");
        assert_eq!(q.read_rps, Some(10), "absent: kept");
        assert_eq!(q.weight, 2, "absent: kept");
        assert_eq!(
            quota_patch(b"{}").expect("empty patch"),
            QuotaPatch::default()
        );
        let unl = quota_patch(br#"{"max_points": null, "weight": 5}"#).expect("parses");
        assert_eq!(unl.max_points, Some(None));
        assert_eq!(unl.weight, Some(5));
    }

    #[test]
    fn unknown_fields_null_weights_and_negative_numbers_are_format_errors() {
        let e = quota_patch(br#"{"read_rsp": 3}"#).expect_err("typo is an error");
        assert!(e.message.contains("read_rsp"), "{}", e.message);
        for body in [r#"{"weight": null}"#, r#"{"max_points": -1}"#] {
            let e = quota_patch(body.as_bytes()).expect_err("refused");
            assert!(
                e.message.starts_with("Format error in JSON body: "),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn the_views_have_the_shape_and_key_order_of_the_model_serialized() {
        let q = Quota {
            write_bytes_per_s: Some(9),
            max_limit: Some(50),
            ..base()
        };
        let view = serde_json::to_string(&QuotaView::from(q.clone())).expect("serializes");
        let model = serde_json::to_value(&q).expect("serializes").to_string();
        assert_eq!(view, model, "same bytes as the sorted map it replaces");

        let usage = Usage {
            tenant: "acme".into(),
            quota: q,
            custom_quota: true,
            points: 3,
            bytes: 4,
            searches_in_flight: 1,
            reads: RequestCounts {
                accepted: 5,
                throttled: 6,
            },
            writes: RequestCounts {
                accepted: 7,
                throttled: 8,
            },
            write_bytes_accepted: 9,
            storage_refused: 10,
        };
        let mut expected = serde_json::to_value(&usage).expect("serializes");
        expected["queue_depth"] = json!(2);
        let view = serde_json::to_string(&UsageView::new(usage, 2)).expect("serializes");
        assert_eq!(view, expected.to_string());
    }

    #[test]
    fn a_rebalance_body_is_checked_field_by_field() {
        let parse = |v: serde_json::Value| {
            rebalance_request(v.as_object().expect("an object")).map_err(|e| e.message)
        };
        assert_eq!(
            parse(serde_json::json!({})),
            Ok((DEFAULT_REBALANCE_MOVES, false))
        );
        assert_eq!(
            parse(serde_json::json!({"max_moves": 2, "dry_run": true})),
            Ok((2, true))
        );
        for (body, named) in [
            (serde_json::json!({"max_moves": 0}), "max_moves"),
            (serde_json::json!({"max_moves": 65}), "max_moves"),
            (serde_json::json!({"max_moves": -1}), "max_moves"),
            (serde_json::json!({"max_moves": "3"}), "max_moves"),
            (serde_json::json!({"dry_run": "yes"}), "dry_run"),
            (serde_json::json!({"moves": 3}), "unknown field moves"),
        ] {
            let e = parse(body.clone()).expect_err("refused");
            assert!(e.contains(named), "{body}: {e}");
        }
    }
}

/// `GET /admin/collections/{c}/replicas`: every shard's replica set with each replica's state
/// and, from the replica itself, its points, last sequence and digest (null: it did not answer).
#[derive(Serialize)]
pub struct ReplicasView {
    pub collection: String,
    pub shards: Vec<ShardReplicasView>,
}

#[derive(Serialize)]
pub struct ShardReplicasView {
    pub shard_id: u32,
    pub shard_key: Option<super::KeyJson>,
    pub epoch: u64,
    pub primary: Option<u64>,
    pub replicas: Vec<ReplicaView>,
}

#[derive(Serialize)]
pub struct ReplicaView {
    pub peer_id: u64,
    pub state: String,
    pub points_count: Option<u64>,
    pub last_seq: Option<u64>,
    /// The order-independent digest of the replica's ids, versions, vectors and payloads, as
    /// 16 hex digits: equal digests and sequences mean identical replicas.
    pub digest: Option<String>,
}
