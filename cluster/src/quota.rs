//! A tenant's limits: the resolved [`Quota`], a [`QuotaPatch`] that changes some of them, and
//! the node-wide [`QuotaDefaults`] from the config file's `[quota]` table. The JSON an admin
//! sends and reads back is the HTTP API's business (node's `api/json/admin.rs`), not this model's.
//!
//! Every limit but `weight` is an `Option`: `None` (JSON `null`) means unlimited. A limit that is
//! set is a positive number; there is no "0 means unlimited" and no "0 means blocked".

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

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
/// through non-self-describing formats such as bincode).
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

/// A change to a tenant's quota (the admin API's `PUT .../quota` parses its body into one).
///
/// Outer `None`: the field keeps its value. `Some(None)`: the limit becomes unlimited (for a
/// burst: equal to its rate). `Some(Some(v))`: set to v. `weight` cannot be unlimited.
///
/// A patch is never stored: [`Quota::apply_patch`] resolves it into the [`Quota`] that is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaPatch {
    pub read_rps: Option<Option<u32>>,
    pub read_burst: Option<Option<u32>>,
    pub write_rps: Option<Option<u32>>,
    pub write_burst: Option<Option<u32>>,
    pub write_bytes_per_s: Option<Option<u64>>,
    pub max_concurrent_searches: Option<Option<u32>>,
    pub max_points: Option<Option<u64>>,
    pub max_bytes: Option<Option<u64>>,
    pub max_batch: Option<Option<u32>>,
    pub max_limit: Option<Option<u32>>,
    pub weight: Option<u32>,
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
    fn absent_fields_keep_their_value_and_none_is_unlimited() {
        let p = QuotaPatch {
            write_rps: Some(Some(7)),
            read_burst: Some(None),
            ..QuotaPatch::default()
        };
        let q = base().apply_patch(&p).expect("valid result");
        assert_eq!(q.write_rps, Some(7));
        assert_eq!(
            q.read_burst, None,
            "unlimited makes the burst follow the rate"
        );
        assert_eq!(q.read_bucket(), Some((10, 10)));
        assert_eq!(q.read_rps, Some(10), "absent: kept");
        assert_eq!(q.max_points, Some(1000), "absent: kept");
        assert_eq!(q.weight, 2, "absent: kept");

        assert_eq!(
            base().apply_patch(&QuotaPatch::default()).expect("valid"),
            base()
        );

        let unl = QuotaPatch {
            max_points: Some(None),
            weight: Some(5),
            ..QuotaPatch::default()
        };
        let q = base().apply_patch(&unl).expect("valid");
        assert_eq!(q.max_points, None);
        assert_eq!(q.weight, 5);
    }

    #[test]
    fn bad_values_are_refused_with_the_field_name() {
        let patches = [
            (
                QuotaPatch {
                    read_rps: Some(Some(0)),
                    ..QuotaPatch::default()
                },
                "read_rps",
            ),
            (
                QuotaPatch {
                    write_bytes_per_s: Some(Some(0)),
                    ..QuotaPatch::default()
                },
                "write_bytes_per_s",
            ),
            (
                QuotaPatch {
                    max_batch: Some(Some(0)),
                    ..QuotaPatch::default()
                },
                "max_batch",
            ),
            (
                QuotaPatch {
                    weight: Some(0),
                    ..QuotaPatch::default()
                },
                "weight",
            ),
            (
                QuotaPatch {
                    weight: Some(1001),
                    ..QuotaPatch::default()
                },
                "weight",
            ),
            (
                QuotaPatch {
                    read_rps: Some(Some(2_000_000_000)),
                    ..QuotaPatch::default()
                },
                "read_rps",
            ),
        ];
        for (p, field) in patches {
            let e = base().apply_patch(&p).expect_err("invalid value");
            assert!(e.message.contains(field), "{p:?}: {}", e.message);
            assert_eq!(e.kind, crate::ErrorKind::BadRequest);
        }
    }

    #[test]
    fn quota_round_trips_through_the_metadata_codec() {
        let q = base();
        let bytes =
            bincode::serde::encode_to_vec(&q, bincode::config::standard()).expect("serializes");
        let (back, _): (Quota, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                .expect("round trip");
        assert_eq!(back, q);
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
