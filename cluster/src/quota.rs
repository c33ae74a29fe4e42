//! A tenant's limits: the resolved [`Quota`], the [`QuotaPatch`] an admin sends to change it, and
//! the node-wide [`QuotaDefaults`] from the config file's `[quota]` table.
//!
//! Every limit but `weight` is an `Option`: `None` (JSON `null`) means unlimited. A limit that is
//! set is a positive number; there is no "0 means unlimited" and no "0 means blocked".

use crate::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize};

/// The largest accepted rate for request rates and `write_bytes_per_s`: the token buckets count
/// in whole nanoseconds per cell, so a rate above one cell per nanosecond cannot be represented.
pub const MAX_RATE: u64 = 1_000_000_000;

/// The largest scheduling weight.
pub const MAX_WEIGHT: u32 = 1000;

/// The weight of a tenant nobody configured.
pub const DEFAULT_WEIGHT: u32 = 1;

/// A tenant's resolved limits. `None` is unlimited.
///
/// This is the form stored in metadata (plain serde, no skipped fields, so it also round-trips
/// through non-self-describing formats such as bincode) and returned by `GET .../quota`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Read requests (searches, retrievals, scrolls, counts) per second.
    pub read_rps: Option<u32>,
    /// Read requests that may arrive at once after a quiet period; `None` is `read_rps`.
    /// Ignored while `read_rps` is unlimited.
    pub read_burst: Option<u32>,
    /// Write requests per second.
    pub write_rps: Option<u32>,
    /// Write requests that may arrive at once; `None` is `write_rps`. Ignored while `write_rps`
    /// is unlimited.
    pub write_burst: Option<u32>,
    /// Write request body bytes per second. The burst is one second's worth, so a single body
    /// larger than this is refused outright (413), not throttled.
    pub write_bytes_per_s: Option<u64>,
    /// Searches of the tenant admitted and not yet answered, on this node.
    pub max_concurrent_searches: Option<u32>,
    /// Points stored, over all the tenant's collections.
    pub max_points: Option<u64>,
    /// Bytes stored (vectors and payload), over all the tenant's collections.
    pub max_bytes: Option<u64>,
    /// Points in one write batch (the node's own `max_batch_points` applies as well).
    pub max_batch: Option<u32>,
    /// The largest `limit` of a search, scroll or query (the node's `max_limit` applies as well).
    pub max_limit: Option<u32>,
    /// Share of the node's CPU pool while tenants compete, 1..=1000.
    pub weight: u32,
}

impl Default for Quota {
    /// Everything unlimited, weight 1.
    fn default() -> Self {
        Quota {
            read_rps: None,
            read_burst: None,
            write_rps: None,
            write_burst: None,
            write_bytes_per_s: None,
            max_concurrent_searches: None,
            max_points: None,
            max_bytes: None,
            max_batch: None,
            max_limit: None,
            weight: DEFAULT_WEIGHT,
        }
    }
}

fn positive(name: &str, v: Option<u64>, max: u64) -> Result<()> {
    match v {
        Some(0) => Err(Error::bad_request(format!(
            "Bad request: quota {name} must be positive (null means unlimited)"
        ))),
        Some(v) if v > max => Err(Error::bad_request(format!(
            "Bad request: quota {name} must be at most {max}, got {v}"
        ))),
        Some(_) | None => Ok(()),
    }
}

impl Quota {
    /// Checks every field: set limits are positive, rates at most [`MAX_RATE`], weight in
    /// 1..=[`MAX_WEIGHT`]. The message names the field.
    pub fn validate(&self) -> Result<()> {
        let u32max = u64::from(u32::MAX);
        positive("read_rps", self.read_rps.map(u64::from), MAX_RATE)?;
        positive("read_burst", self.read_burst.map(u64::from), u32max)?;
        positive("write_rps", self.write_rps.map(u64::from), MAX_RATE)?;
        positive("write_burst", self.write_burst.map(u64::from), u32max)?;
        // the write-bytes bucket counts bytes as governor cells (u32) and holds one second's worth
        positive(
            "write_bytes_per_s",
            self.write_bytes_per_s,
            MAX_RATE.min(u32max),
        )?;
        positive(
            "max_concurrent_searches",
            self.max_concurrent_searches.map(u64::from),
            u32max,
        )?;
        positive("max_points", self.max_points, u64::MAX)?;
        positive("max_bytes", self.max_bytes, u64::MAX)?;
        positive("max_batch", self.max_batch.map(u64::from), u32max)?;
        positive("max_limit", self.max_limit.map(u64::from), u32max)?;
        if !(1..=MAX_WEIGHT).contains(&self.weight) {
            return Err(Error::bad_request(format!(
                "Bad request: quota weight must be between 1 and {MAX_WEIGHT}, got {}",
                self.weight
            )));
        }
        Ok(())
    }

    /// This quota with `patch` applied: fields absent from the patch keep their value, `null`
    /// makes a limit unlimited. The result is validated; on error `self` is unchanged.
    pub fn apply_patch(&self, patch: &QuotaPatch) -> Result<Quota> {
        fn set<T: Copy>(cur: Option<T>, p: Option<Option<T>>) -> Option<T> {
            match p {
                Some(v) => v,
                None => cur,
            }
        }
        let q = Quota {
            read_rps: set(self.read_rps, patch.read_rps),
            read_burst: set(self.read_burst, patch.read_burst),
            write_rps: set(self.write_rps, patch.write_rps),
            write_burst: set(self.write_burst, patch.write_burst),
            write_bytes_per_s: set(self.write_bytes_per_s, patch.write_bytes_per_s),
            max_concurrent_searches: set(
                self.max_concurrent_searches,
                patch.max_concurrent_searches,
            ),
            max_points: set(self.max_points, patch.max_points),
            max_bytes: set(self.max_bytes, patch.max_bytes),
            max_batch: set(self.max_batch, patch.max_batch),
            max_limit: set(self.max_limit, patch.max_limit),
            weight: patch.weight.unwrap_or(self.weight),
        };
        q.validate()?;
        Ok(q)
    }

    /// The read bucket as (rate per second, burst), or `None` when reads are unlimited.
    pub fn read_bucket(&self) -> Option<(u32, u32)> {
        self.read_rps.map(|r| (r, self.read_burst.unwrap_or(r)))
    }

    /// The write bucket as (rate per second, burst), or `None` when writes are unlimited.
    pub fn write_bucket(&self) -> Option<(u32, u32)> {
        self.write_rps.map(|r| (r, self.write_burst.unwrap_or(r)))
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

/// A change to a tenant's quota, the body of `PUT /admin/tenants/{tenant}/quota`.
///
/// Outer `None`: the field was absent and keeps its value. `Some(None)`: the field was `null`
/// and the limit becomes unlimited (for a burst: equal to its rate). `Some(Some(v))`: set to v.
/// `weight` cannot be null. Unknown fields are an error.
///
/// This is a JSON input shape: its serialization skips absent fields, so store the resolved
/// [`Quota`] (from [`Quota::apply_patch`]) in metadata, not the patch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaPatch {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub read_rps: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub read_burst: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub write_rps: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub write_burst: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub write_bytes_per_s: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_concurrent_searches: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_points: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_bytes: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_batch: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_limit: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub weight: Option<u32>,
}

impl QuotaPatch {
    /// Parses a request body, with the API's message style on error.
    pub fn from_json(body: &[u8]) -> Result<QuotaPatch> {
        serde_json::from_slice(body)
            .map_err(|e| Error::bad_request(format!("Format error in JSON body: {e}")))
    }
}

/// The quota of tenants without an override: the config file's `[quota]` table, with the same
/// keys as [`Quota`]. Absent keys are unlimited (TOML has no null); `weight` defaults to 1.
///
/// ```toml
/// [quota]
/// read_rps = 200
/// read_burst = 400
/// max_points = 10_000_000
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaDefaults {
    pub read_rps: Option<u32>,
    pub read_burst: Option<u32>,
    pub write_rps: Option<u32>,
    pub write_burst: Option<u32>,
    pub write_bytes_per_s: Option<u64>,
    pub max_concurrent_searches: Option<u32>,
    pub max_points: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_batch: Option<u32>,
    pub max_limit: Option<u32>,
    pub weight: Option<u32>,
}

impl QuotaDefaults {
    /// The validated quota these defaults describe; the error names the bad key.
    pub fn quota(&self) -> Result<Quota> {
        let q = Quota {
            read_rps: self.read_rps,
            read_burst: self.read_burst,
            write_rps: self.write_rps,
            write_burst: self.write_burst,
            write_bytes_per_s: self.write_bytes_per_s,
            max_concurrent_searches: self.max_concurrent_searches,
            max_points: self.max_points,
            max_bytes: self.max_bytes,
            max_batch: self.max_batch,
            max_limit: self.max_limit,
            weight: self.weight.unwrap_or(DEFAULT_WEIGHT),
        };
        q.validate()?;
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let p = QuotaPatch::from_json(br#"{"write_rps": 7, "read_burst": null}"#)
            .expect("a valid patch parses");
        let q = base().apply_patch(&p).expect("valid result");
        assert_eq!(q.write_rps, Some(7));
        assert_eq!(q.read_burst, None, "null makes the burst follow the rate");
        assert_eq!(q.read_bucket(), Some((10, 10)));
        assert_eq!(q.read_rps, Some(10), "absent: kept");
        assert_eq!(q.max_points, Some(1000), "absent: kept");
        assert_eq!(q.weight, 2, "absent: kept");

        let empty = QuotaPatch::from_json(b"{}").expect("empty patch parses");
        assert_eq!(base().apply_patch(&empty).expect("valid"), base());

        let unl = QuotaPatch::from_json(br#"{"max_points": null, "weight": 5}"#).expect("parses");
        let q = base().apply_patch(&unl).expect("valid");
        assert_eq!(q.max_points, None);
        assert_eq!(q.weight, 5);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_with_the_field_name() {
        let e = QuotaPatch::from_json(br#"{"read_rsp": 3}"#).expect_err("typo is an error");
        assert!(e.message.contains("read_rsp"), "{}", e.message);

        let e = QuotaPatch::from_json(br#"{"weight": null}"#).expect_err("weight is not nullable");
        assert!(e.message.contains("Format error"), "{}", e.message);

        for (body, field) in [
            (r#"{"read_rps": 0}"#, "read_rps"),
            (r#"{"write_bytes_per_s": 0}"#, "write_bytes_per_s"),
            (r#"{"max_batch": 0}"#, "max_batch"),
            (r#"{"weight": 0}"#, "weight"),
            (r#"{"weight": 1001}"#, "weight"),
            (r#"{"read_rps": 2000000000}"#, "read_rps"),
        ] {
            let p = QuotaPatch::from_json(body.as_bytes()).expect("well-formed");
            let e = base().apply_patch(&p).expect_err("invalid value");
            assert!(e.message.contains(field), "{body}: {}", e.message);
            assert_eq!(e.kind, crate::ErrorKind::BadRequest);
        }
        let e = QuotaPatch::from_json(br#"{"max_points": -1}"#).expect_err("negative");
        assert!(e.message.contains("Format error"), "{}", e.message);
    }

    #[test]
    fn quota_round_trips_through_json_and_patch_serializes_only_present_fields() {
        let q = base();
        let s = serde_json::to_string(&q).expect("serializes");
        let back: Quota = serde_json::from_str(&s).expect("round trip");
        assert_eq!(back, q);

        let p = QuotaPatch::from_json(br#"{"max_bytes": null, "max_limit": 50}"#).expect("parses");
        let s = serde_json::to_value(&p).expect("serializes");
        assert_eq!(s, serde_json::json!({"max_bytes": null, "max_limit": 50}));
        assert_eq!(
            QuotaPatch::from_json(s.to_string().as_bytes()).expect("again"),
            p
        );
    }

    #[test]
    fn defaults_come_from_a_toml_table() {
        #[derive(Deserialize)]
        struct File {
            quota: QuotaDefaults,
        }
        let f: File = toml::from_str("[quota]\nread_rps = 200\nmax_points = 10_000\nweight = 3\n")
            .expect("valid table");
        let q = f.quota.quota().expect("valid defaults");
        assert_eq!(q.read_bucket(), Some((200, 200)));
        assert_eq!(q.max_points, Some(10_000));
        assert_eq!(q.write_rps, None);
        assert_eq!(q.weight, 3);

        assert!(toml::from_str::<File>("[quota]\nread_rsp = 1\n").is_err());
        let bad: File = toml::from_str("[quota]\nweight = 0\n").expect("parses");
        let e = bad.quota.quota().expect_err("weight 0");
        assert!(e.message.contains("weight"), "{}", e.message);
        let none: QuotaDefaults = toml::from_str("").expect("empty table");
        assert_eq!(none.quota().expect("valid"), Quota::default());
    }
}
