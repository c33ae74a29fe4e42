//! Admission: the per-tenant checks a request passes before it is parsed, queued or sent to a
//! shard. Each is cheap (a token bucket, a semaphore, a comparison) and refuses with the error
//! the API maps to HTTP: 429 with Retry-After for rates and concurrency, 507 for storage, 413
//! for a body that no bucket could ever hold, 400 for batch size and `limit`.
//!
//! Token buckets are governor's direct (GCRA) limiters, one set per active tenant, rebuilt when
//! the tenant's quota changes (which refills them). Tenants idle long enough for their buckets
//! to be full again are dropped by [`Admission::cleanup_idle`], so the maps hold active tenants
//! only; their quota overrides are kept apart and never dropped by cleanup.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, RateLimiter};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tessera_cluster::{Error, ErrorKind, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::clock::TokioClock;
use super::limits::Quota;
use super::metrics::TenantMetrics;

/// Retry-After of a refusal by `max_concurrent_searches`, which no bucket can predict.
pub const CONCURRENCY_RETRY_AFTER_MS: u64 = 1000;

/// A clock the buckets can run on: [`TokioClock`] in production, governor's
/// `FakeRelativeClock` in unit tests.
pub trait QuotaClock: Clock<Instant = Nanos> + Clone + Send + Sync + 'static {}
impl<T: Clock<Instant = Nanos> + Clone + Send + Sync + 'static> QuotaClock for T {}

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<Nanos>>;

/// One tenant's limiters, built from one quota.
struct Buckets<C: QuotaClock> {
    quota: Quota,
    read: Option<Limiter<C>>,
    write: Option<Limiter<C>>,
    write_bytes: Option<Limiter<C>>,
    searches: Option<Arc<Semaphore>>,
    /// Retry hints of refusals by `read`, `write` and `write_bytes`.
    read_pace: Pacer,
    write_pace: Pacer,
    bytes_pace: Pacer,
    /// How long an emptied bucket takes to fill up again; a tenant idle this long loses nothing
    /// when its state is dropped.
    refill: Duration,
}

fn bucket<C: QuotaClock>(
    name: &str,
    per_s: u64,
    burst: u64,
    clock: &C,
) -> Result<(Limiter<C>, Duration)> {
    let bad = || Error::internal(format!("quota {name} cannot be built from {per_s}/s"));
    let period = Duration::from_nanos(1_000_000_000 / per_s.max(1));
    let burst = NonZeroU32::new(u32::try_from(burst).unwrap_or(u32::MAX)).ok_or_else(bad)?;
    let q = governor::Quota::with_period(period)
        .ok_or_else(bad)?
        .allow_burst(burst);
    Ok((
        RateLimiter::direct_with_clock(q, clock.clone()),
        q.burst_size_replenished_in(),
    ))
}

impl<C: QuotaClock> Buckets<C> {
    fn build(quota: &Quota, clock: &C) -> Result<Buckets<C>> {
        let mut refill = Duration::ZERO;
        let mut make = |name, spec: Option<(u64, u64)>| -> Result<Option<Limiter<C>>> {
            match spec {
                None => Ok(None),
                Some((rate, burst)) => {
                    let (l, r) = bucket(name, rate, burst, clock)?;
                    refill = refill.max(r);
                    Ok(Some(l))
                }
            }
        };
        let wide = |(r, b): (u32, u32)| (u64::from(r), u64::from(b));
        let read = make("read_rps", quota.read_bucket().map(wide))?;
        let write = make("write_rps", quota.write_bucket().map(wide))?;
        let write_bytes = make("write_bytes_per_s", quota.write_bytes_per_s.map(|b| (b, b)))?;
        Ok(Buckets {
            quota: quota.clone(),
            read,
            write,
            write_bytes,
            searches: quota
                .max_concurrent_searches
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            read_pace: Pacer::default(),
            write_pace: Pacer::default(),
            bytes_pace: Pacer::default(),
            refill,
        })
    }
}

/// Spreads the Retry-After of a bucket's refusals over time. Telling every refused caller when
/// the next token comes would bring them all back at once for one token, and most would be
/// refused again (a herd: with 16 writers sharing 20 writes/s, some 340 attempts a second for
/// 20 admitted). Instead each refusal is given the slot one token period after the previous
/// refusal's, never earlier than the bucket's next token, so callers that honour the hint come
/// back in turn. A caller that never comes back holds its slot only until its time passes.
#[derive(Default)]
struct Pacer {
    /// Clock nanoseconds of the next free slot.
    next: AtomicU64,
}

/// Retry hints are never spread further ahead than this many token periods...
const PACE_SLOTS: u64 = 64;
/// ...nor than this, so a herd of clients ignoring the hints cannot push the honest ones' far out.
const PACE_MAX_AHEAD: Duration = Duration::from_secs(10);

impl Pacer {
    /// The time (clock nanoseconds) to tell a caller refused at `now`, when the bucket's next
    /// token is due at `earliest`: the later of `earliest` and the next free slot, but no more
    /// than the horizon ahead; the slot after it is `step` nanoseconds (one token) later.
    fn slot(&self, now: u64, earliest: u64, step: u64) -> u64 {
        let horizon = now.saturating_add(
            step.saturating_mul(PACE_SLOTS)
                .min(PACE_MAX_AHEAD.as_nanos() as u64),
        );
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let at = cur.min(horizon).max(earliest);
            match self.next.compare_exchange_weak(
                cur,
                at.saturating_add(step),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return at,
                Err(seen) => cur = seen,
            }
        }
    }
}

/// Nanoseconds per token of a bucket filling at `per_s` tokens a second, for `n` tokens.
fn period_nanos(per_s: u64, n: u64) -> u64 {
    u64::try_from(u128::from(n) * 1_000_000_000 / u128::from(per_s.max(1))).unwrap_or(u64::MAX)
}

/// Counters of one tenant since it became active on this node.
#[derive(Default)]
struct Counters {
    read_accepted: AtomicU64,
    read_throttled: AtomicU64,
    write_accepted: AtomicU64,
    write_throttled: AtomicU64,
    write_bytes_accepted: AtomicU64,
    storage_refused: AtomicU64,
    searches_in_flight: AtomicU64,
    points: AtomicU64,
    bytes: AtomicU64,
    /// Clock nanoseconds of the last admission call.
    last_seen: AtomicU64,
}

struct TenantState<C: QuotaClock> {
    buckets: RwLock<Arc<Buckets<C>>>,
    /// Shared with outstanding [`ReadPermit`]s, which is how cleanup sees them.
    counters: Arc<Counters>,
}

/// Stored points and bytes of a tenant, as the caller (router or shard statistics) knows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageUsage {
    pub points: u64,
    pub bytes: u64,
}

/// Accepted and throttled requests of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub accepted: u64,
    pub throttled: u64,
}

/// A tenant's usage against its quota, the body of `GET /admin/tenants/{tenant}/usage`.
/// Counters count since the tenant became active on this node (idle cleanup resets them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub tenant: String,
    pub quota: Quota,
    /// Whether `quota` is an override set for this tenant (else the node's defaults).
    pub custom_quota: bool,
    /// Last reported stored points and bytes (see [`Admission::record_storage`]).
    pub points: u64,
    pub bytes: u64,
    pub searches_in_flight: u64,
    pub reads: RequestCounts,
    pub writes: RequestCounts,
    pub write_bytes_accepted: u64,
    pub storage_refused: u64,
}

/// Held while an admitted read runs; dropping it frees the tenant's concurrent-search place.
#[must_use = "the concurrent-search place is released when the permit is dropped"]
pub struct ReadPermit {
    _place: Option<OwnedSemaphorePermit>,
    counters: Arc<Counters>,
}

impl Drop for ReadPermit {
    fn drop(&mut self) {
        self.counters
            .searches_in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for ReadPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadPermit").finish_non_exhaustive()
    }
}

fn millis_ceil(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Per-tenant admission for a node; shared by every request (`Send + Sync`).
pub struct Admission<C: QuotaClock = TokioClock> {
    clock: C,
    defaults: RwLock<Quota>,
    overrides: DashMap<String, Quota>,
    tenants: DashMap<String, Arc<TenantState<C>>>,
    metrics: Option<Arc<TenantMetrics>>,
}

impl Admission<TokioClock> {
    /// Admission on tokio's clock with `defaults` for tenants without an override.
    pub fn new(defaults: Quota) -> Result<Admission<TokioClock>> {
        Admission::with_clock(defaults, TokioClock::new())
    }
}

impl<C: QuotaClock> Admission<C> {
    /// Admission on the given clock (tests pass a fake one).
    pub fn with_clock(defaults: Quota, clock: C) -> Result<Admission<C>> {
        defaults.validate()?;
        Ok(Admission {
            clock,
            defaults: RwLock::new(defaults),
            overrides: DashMap::new(),
            tenants: DashMap::new(),
            metrics: None,
        })
    }

    /// Also counts throttles and admitted write bytes in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<TenantMetrics>) -> Admission<C> {
        self.metrics = Some(metrics);
        self
    }

    /// The quota in force for `tenant`: its override, else the defaults.
    pub fn quota(&self, tenant: &str) -> Quota {
        match self.overrides.get(tenant) {
            Some(q) => q.clone(),
            None => self.defaults.read().clone(),
        }
    }

    /// The overrides, e.g. to compare with metadata after a restart.
    pub fn overrides(&self) -> Vec<(String, Quota)> {
        self.overrides
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// Sets `tenant`'s override (as applied from metadata). Its buckets are rebuilt, and so
    /// refilled, if the quota changed. In-flight reads keep their places on the old semaphore.
    pub fn set_quota(&self, tenant: &str, quota: Quota) -> Result<()> {
        quota.validate()?;
        self.overrides.insert(tenant.to_owned(), quota.clone());
        self.rebuild(tenant, &quota)
    }

    /// Drops `tenant`'s override: it gets the defaults again.
    pub fn clear_quota(&self, tenant: &str) -> Result<()> {
        self.overrides.remove(tenant);
        let q = self.defaults.read().clone();
        self.rebuild(tenant, &q)
    }

    /// Replaces the defaults; tenants without an override get them at once.
    pub fn set_defaults(&self, quota: Quota) -> Result<()> {
        quota.validate()?;
        *self.defaults.write() = quota.clone();
        let tenants: Vec<String> = self.tenants.iter().map(|e| e.key().clone()).collect();
        for t in tenants {
            if !self.overrides.contains_key(&t) {
                self.rebuild(&t, &quota)?;
            }
        }
        Ok(())
    }

    fn rebuild(&self, tenant: &str, quota: &Quota) -> Result<()> {
        let Some(state) = self.tenants.get(tenant).map(|s| s.clone()) else {
            return Ok(());
        };
        if state.buckets.read().quota == *quota {
            return Ok(());
        }
        let fresh = Arc::new(Buckets::build(quota, &self.clock)?);
        *state.buckets.write() = fresh;
        Ok(())
    }

    fn state(&self, tenant: &str) -> Result<Arc<TenantState<C>>> {
        let now = self.clock.now().as_u64();
        if let Some(s) = self.tenants.get(tenant) {
            s.counters.last_seen.store(now, Ordering::Relaxed);
            return Ok(s.clone());
        }
        let quota = self.quota(tenant);
        let s = self
            .tenants
            .entry(tenant.to_owned())
            .or_try_insert_with(|| -> Result<_> {
                Ok(Arc::new(TenantState {
                    buckets: RwLock::new(Arc::new(Buckets::build(&quota, &self.clock)?)),
                    counters: Arc::new(Counters::default()),
                }))
            })?
            .clone();
        s.counters.last_seen.store(now, Ordering::Relaxed);
        Ok(s)
    }

    fn throttled(&self, tenant: &str, quota: &'static str) {
        if let Some(m) = &self.metrics {
            m.throttled(tenant, quota);
        }
    }

    fn too_many(
        &self,
        tenant: &str,
        quota: &'static str,
        what: String,
        not_until: &NotUntil<Nanos>,
        (pacer, step): (&Pacer, u64),
    ) -> Error {
        self.throttled(tenant, quota);
        let now = self.clock.now();
        let earliest = now.as_u64() + not_until.wait_time_from(now).as_nanos() as u64;
        let at = pacer.slot(now.as_u64(), earliest, step);
        let ms = millis_ceil(Duration::from_nanos(at.saturating_sub(now.as_u64())));
        Error::new(
            ErrorKind::TooManyRequests { retry_after_ms: ms },
            format!(
                "Too many requests: tenant {tenant} is over its {quota} quota ({what}); retry after the time in Retry-After"
            ),
        )
    }

    /// Admits a read (search, query, retrieve, scroll, count): takes a token from the read
    /// bucket and a place among the tenant's concurrent searches, held by the returned permit.
    /// The place is checked first, so a refusal for concurrency spends no token.
    pub fn admit_read(&self, tenant: &str) -> Result<ReadPermit> {
        let state = self.state(tenant)?;
        let b = state.buckets.read().clone();
        let c = &state.counters;
        let place = match &b.searches {
            None => None,
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    c.read_throttled.fetch_add(1, Ordering::Relaxed);
                    self.throttled(tenant, "max_concurrent_searches");
                    let max = b.quota.max_concurrent_searches.unwrap_or(0);
                    return Err(Error::new(
                        ErrorKind::TooManyRequests {
                            retry_after_ms: CONCURRENCY_RETRY_AFTER_MS,
                        },
                        format!(
                            "Too many requests: tenant {tenant} is over its max_concurrent_searches quota ({max} at once)"
                        ),
                    ));
                }
            },
        };
        if let Some(l) = &b.read
            && let Err(nu) = l.check()
        {
            c.read_throttled.fetch_add(1, Ordering::Relaxed);
            let (rps, burst) = b.quota.read_bucket().unwrap_or_default();
            return Err(self.too_many(
                tenant,
                "read_rps",
                format!("{rps}/s, burst {burst}"),
                &nu,
                (&b.read_pace, period_nanos(rps.into(), 1)),
            ));
        }
        c.read_accepted.fetch_add(1, Ordering::Relaxed);
        c.searches_in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(ReadPermit {
            _place: place,
            counters: state.counters.clone(),
        })
    }

    /// Admits a write whose request body is `body_bytes` long (from Content-Length or the
    /// buffered body, before any JSON parsing): a token from the write bucket, then
    /// `body_bytes` from the write-bytes bucket. A body larger than the write-bytes burst can
    /// never pass and is refused with 413. When the bytes are refused, the request token is
    /// spent (bytes are the scarcer budget and are never taken for a refused request).
    pub fn admit_write(&self, tenant: &str, body_bytes: u64) -> Result<()> {
        let state = self.state(tenant)?;
        let b = state.buckets.read().clone();
        let c = &state.counters;
        if let (Some(per_s), Some(_)) = (b.quota.write_bytes_per_s, &b.write_bytes)
            && body_bytes > per_s
        {
            c.write_throttled.fetch_add(1, Ordering::Relaxed);
            self.throttled(tenant, "write_bytes_per_s");
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "Payload too large: a body of {body_bytes} bytes is over tenant {tenant}'s write_bytes_per_s quota ({per_s} bytes/s); send smaller batches"
                ),
            ));
        }
        if let Some(l) = &b.write
            && let Err(nu) = l.check()
        {
            c.write_throttled.fetch_add(1, Ordering::Relaxed);
            let (rps, burst) = b.quota.write_bucket().unwrap_or_default();
            return Err(self.too_many(
                tenant,
                "write_rps",
                format!("{rps}/s, burst {burst}"),
                &nu,
                (&b.write_pace, period_nanos(rps.into(), 1)),
            ));
        }
        if let Some(l) = &b.write_bytes {
            let n = NonZeroU32::new(u32::try_from(body_bytes).unwrap_or(u32::MAX));
            if let Some(n) = n {
                let per_s = b.quota.write_bytes_per_s.unwrap_or(0);
                match l.check_n(n) {
                    Ok(Ok(())) => {}
                    Ok(Err(nu)) => {
                        c.write_throttled.fetch_add(1, Ordering::Relaxed);
                        return Err(self.too_many(
                            tenant,
                            "write_bytes_per_s",
                            format!("{per_s} bytes/s, this body {body_bytes} bytes"),
                            &nu,
                            (&b.bytes_pace, period_nanos(per_s, body_bytes)),
                        ));
                    }
                    Err(_) => {
                        // unreachable after the size check above, but never admit it
                        c.write_throttled.fetch_add(1, Ordering::Relaxed);
                        return Err(Error::new(
                            ErrorKind::PayloadTooLarge,
                            format!(
                                "Payload too large: a body of {body_bytes} bytes is over tenant {tenant}'s write_bytes_per_s quota ({per_s} bytes/s)"
                            ),
                        ));
                    }
                }
            }
        }
        c.write_accepted.fetch_add(1, Ordering::Relaxed);
        c.write_bytes_accepted
            .fetch_add(body_bytes, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.write_bytes(tenant, body_bytes);
        }
        Ok(())
    }

    /// Refuses a write batch of more than the tenant's `max_batch` points (400).
    pub fn check_batch(&self, tenant: &str, points: usize) -> Result<()> {
        let q = self.quota(tenant);
        match q.max_batch {
            Some(max) if points as u64 > u64::from(max) => {
                self.throttled(tenant, "max_batch");
                Err(Error::bad_request(format!(
                    "Bad request: a batch may carry at most {max} points (tenant {tenant}'s max_batch quota), got {points}"
                )))
            }
            Some(_) | None => Ok(()),
        }
    }

    /// Refuses a `limit` above the tenant's `max_limit` (400).
    pub fn check_limit(&self, tenant: &str, limit: usize) -> Result<()> {
        let q = self.quota(tenant);
        match q.max_limit {
            Some(max) if limit as u64 > u64::from(max) => {
                self.throttled(tenant, "max_limit");
                Err(Error::bad_request(format!(
                    "Bad request: limit may be at most {max} (tenant {tenant}'s max_limit quota), got {limit}"
                )))
            }
            Some(_) | None => Ok(()),
        }
    }

    /// Refuses (507, naming the quota) a write that would take `tenant` from `usage` over its
    /// `max_points` or `max_bytes`; call it before any of the batch is written. `add_points`
    /// may over-count (an upsert of existing ids replaces them); the caller chooses whether to
    /// pass the batch size or the new ids only. `usage` is also recorded as the tenant's usage.
    pub fn check_storage(
        &self,
        tenant: &str,
        usage: StorageUsage,
        add_points: u64,
        add_bytes: u64,
    ) -> Result<()> {
        self.record_storage(tenant, usage);
        let q = self.quota(tenant);
        let refuse = |quota: &'static str, unit: &str, max: u64, cur: u64, add: u64| {
            self.throttled(tenant, quota);
            if let Some(s) = self.tenants.get(tenant) {
                s.counters.storage_refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(Error::new(
                ErrorKind::InsufficientStorage,
                format!(
                    "Insufficient storage: tenant {tenant} would exceed its {quota} quota of {max} {unit} ({cur} stored, the write adds {add}); nothing was written"
                ),
            ))
        };
        if let Some(max) = q.max_points
            && usage.points.saturating_add(add_points) > max
        {
            return refuse("max_points", "points", max, usage.points, add_points);
        }
        if let Some(max) = q.max_bytes
            && usage.bytes.saturating_add(add_bytes) > max
        {
            return refuse("max_bytes", "bytes", max, usage.bytes, add_bytes);
        }
        Ok(())
    }

    /// Records `tenant`'s stored points and bytes, shown by [`Admission::usage`].
    pub fn record_storage(&self, tenant: &str, usage: StorageUsage) {
        if let Ok(s) = self.state(tenant) {
            s.counters.points.store(usage.points, Ordering::Relaxed);
            s.counters.bytes.store(usage.bytes, Ordering::Relaxed);
        }
    }

    fn usage_of(&self, tenant: &str, counters: Option<&Counters>) -> Usage {
        let get =
            |f: fn(&Counters) -> &AtomicU64| counters.map_or(0, |c| f(c).load(Ordering::Relaxed));
        Usage {
            tenant: tenant.to_owned(),
            quota: self.quota(tenant),
            custom_quota: self.overrides.contains_key(tenant),
            points: get(|c| &c.points),
            bytes: get(|c| &c.bytes),
            searches_in_flight: get(|c| &c.searches_in_flight),
            reads: RequestCounts {
                accepted: get(|c| &c.read_accepted),
                throttled: get(|c| &c.read_throttled),
            },
            writes: RequestCounts {
                accepted: get(|c| &c.write_accepted),
                throttled: get(|c| &c.write_throttled),
            },
            write_bytes_accepted: get(|c| &c.write_bytes_accepted),
            storage_refused: get(|c| &c.storage_refused),
        }
    }

    /// `tenant`'s usage with its quota (zeros for a tenant not active on this node).
    pub fn usage(&self, tenant: &str) -> Usage {
        let s = self.tenants.get(tenant).map(|s| s.clone());
        self.usage_of(tenant, s.as_ref().map(|s| &*s.counters))
    }

    /// The usage of every active tenant (e.g. to publish gauges).
    pub fn usage_all(&self) -> Vec<Usage> {
        let all: Vec<(String, Arc<TenantState<C>>)> = self
            .tenants
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        all.iter()
            .map(|(t, s)| self.usage_of(t, Some(&s.counters)))
            .collect()
    }

    /// Tenants with state on this node.
    pub fn active_tenants(&self) -> usize {
        self.tenants.len()
    }

    /// Drops the state of tenants unseen for `idle_for` and for at least as long as their
    /// buckets take to refill (so dropping them forgives nothing), with no read in flight.
    /// Returns how many were dropped. Call it periodically (e.g. every minute).
    pub fn cleanup_idle(&self, idle_for: Duration) -> usize {
        let now = self.clock.now().as_u64();
        let before = self.tenants.len();
        self.tenants.retain(|_, s| {
            let idle = Duration::from_nanos(
                now.saturating_sub(s.counters.last_seen.load(Ordering::Relaxed)),
            );
            let refill = s.buckets.read().refill;
            let busy = Arc::strong_count(s) > 1 || Arc::strong_count(&s.counters) > 1;
            busy || idle < idle_for.max(refill)
        });
        before.saturating_sub(self.tenants.len())
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn admission(q: Quota) -> (Admission<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            Admission::with_clock(q, clock.clone()).expect("valid defaults"),
            clock,
        )
    }

    fn retry_ms(e: &Error) -> u64 {
        match e.kind {
            ErrorKind::TooManyRequests { retry_after_ms } => retry_after_ms,
            other => panic!("expected 429, got {other:?}: {}", e.message),
        }
    }

    #[test]
    fn read_bucket_is_exact_burst_then_one_per_period() {
        let (a, clock) = admission(Quota {
            read_rps: Some(10),
            read_burst: Some(5),
            ..Quota::default()
        });
        for i in 0..5 {
            drop(
                a.admit_read("acme")
                    .unwrap_or_else(|e| panic!("burst {i}: {e}")),
            );
        }
        let e = a.admit_read("acme").expect_err("burst spent");
        assert_eq!(retry_ms(&e), 100, "the next token is 100 ms away");
        assert!(e.message.contains("read_rps"), "{}", e.message);

        // the first refused caller was given the token at 100 ms, so the next is given 200 ms
        clock.advance(Duration::from_millis(40));
        let e = a.admit_read("acme").expect_err("still early");
        assert_eq!(
            retry_ms(&e),
            160,
            "the slot after the first refused caller's"
        );

        for step in 0..20 {
            clock.advance(Duration::from_millis(if step == 0 { 60 } else { 100 }));
            drop(a.admit_read("acme").expect("exactly one token per 100 ms"));
            let e = a.admit_read("acme").expect_err("and only one");
            // one hinted caller is always still to come before this one
            assert_eq!(retry_ms(&e), 200);
        }

        // another tenant has its own bucket
        drop(a.admit_read("globex").expect("separate bucket"));

        // after a long idle period the burst is back, no more
        clock.advance(Duration::from_secs(10));
        for _ in 0..5 {
            drop(a.admit_read("acme").expect("burst refilled"));
        }
        assert!(a.admit_read("acme").is_err());

        let u = a.usage("acme");
        assert_eq!(u.reads.accepted, 5 + 20 + 5);
        assert_eq!(u.reads.throttled, 2 + 20 + 1);
    }

    #[test]
    fn refused_callers_are_given_successive_slots_within_a_horizon() {
        let (a, clock) = admission(Quota {
            write_rps: Some(20),
            write_burst: Some(1),
            ..Quota::default()
        });
        a.admit_write("acme", 1).expect("the burst");
        // a herd of 100 refused at once: slots 50 ms apart, up to 64 slots (3.2 s) ahead
        let hints: Vec<u64> = (0..100)
            .map(|_| retry_ms(&a.admit_write("acme", 1).expect_err("spent")))
            .collect();
        let expected: Vec<u64> = (1..=100).map(|i: u64| 50 * i.min(64)).collect();
        assert_eq!(hints, expected);

        // a caller arriving later queues behind the herd's slots (which end at 3.25 s)
        clock.advance(Duration::from_millis(1000));
        a.admit_write("acme", 1).expect("a token refilled");
        let e = a.admit_write("acme", 1).expect_err("spent");
        assert_eq!(retry_ms(&e), 2250);
        // once every slot has passed, a refusal is given the bucket's next token again
        clock.advance(Duration::from_secs(10));
        a.admit_write("acme", 1).expect("refilled");
        let e = a.admit_write("acme", 1).expect_err("spent again");
        assert_eq!(retry_ms(&e), 50);
        // each tenant's slots are its own
        a.admit_write("globex", 1).expect("untouched");
        let e = a.admit_write("globex", 1).expect_err("spent");
        assert_eq!(retry_ms(&e), 50);
    }

    #[test]
    fn write_bytes_bucket_counts_bytes_and_refuses_what_can_never_fit() {
        let (a, clock) = admission(Quota {
            write_bytes_per_s: Some(1000),
            ..Quota::default()
        });
        a.admit_write("acme", 600).expect("fits in the burst");
        let e = a.admit_write("acme", 600).expect_err("only 400 bytes left");
        // 200 bytes are missing at 1 byte per ms
        assert_eq!(retry_ms(&e), 200);
        assert!(e.message.contains("write_bytes_per_s"), "{}", e.message);
        clock.advance(Duration::from_millis(199));
        assert!(a.admit_write("acme", 600).is_err(), "one byte short");
        clock.advance(Duration::from_millis(1));
        a.admit_write("acme", 600).expect("exactly enough");

        let e = a
            .admit_write("acme", 1001)
            .expect_err("larger than the burst");
        assert_eq!(e.kind, ErrorKind::PayloadTooLarge);
        assert!(e.message.contains("write_bytes_per_s"), "{}", e.message);

        a.admit_write("acme", 0)
            .expect("an empty body costs no bytes");
        let u = a.usage("acme");
        assert_eq!(u.write_bytes_accepted, 1200);
        assert_eq!(u.writes.accepted, 3);
        assert_eq!(u.writes.throttled, 3);
    }

    #[test]
    fn write_request_bucket() {
        let (a, clock) = admission(Quota {
            write_rps: Some(2),
            ..Quota::default()
        });
        a.admit_write("acme", 10).expect("1");
        a.admit_write("acme", 10).expect("2");
        let e = a.admit_write("acme", 10).expect_err("burst of 2");
        assert_eq!(retry_ms(&e), 500);
        assert!(e.message.contains("write_rps"), "{}", e.message);
        clock.advance(Duration::from_millis(500));
        a.admit_write("acme", 10).expect("refilled one");
    }

    #[test]
    fn concurrent_search_places_are_released_on_drop() {
        let (a, _clock) = admission(Quota {
            max_concurrent_searches: Some(2),
            ..Quota::default()
        });
        let p1 = a.admit_read("acme").expect("1");
        let p2 = a.admit_read("acme").expect("2");
        let e = a.admit_read("acme").expect_err("third at once");
        assert_eq!(retry_ms(&e), CONCURRENCY_RETRY_AFTER_MS);
        assert!(
            e.message.contains("max_concurrent_searches"),
            "{}",
            e.message
        );
        assert_eq!(a.usage("acme").searches_in_flight, 2);
        drop(p1);
        let p3 = a.admit_read("acme").expect("a place came free");
        drop((p2, p3));
        assert_eq!(a.usage("acme").searches_in_flight, 0);
    }

    #[test]
    fn concurrency_refusal_spends_no_read_token() {
        let (a, _clock) = admission(Quota {
            read_rps: Some(1),
            max_concurrent_searches: Some(1),
            ..Quota::default()
        });
        let p = a.admit_read("acme").expect("first");
        assert!(a.admit_read("acme").is_err());
        drop(p);
        // the one token was spent by the first read; the refused one spent nothing more
        let e = a.admit_read("acme").expect_err("rate");
        assert!(e.message.contains("read_rps"), "{}", e.message);
        assert_eq!(retry_ms(&e), 1000);
    }

    #[test]
    fn storage_quota_refuses_with_a_message_naming_it() {
        let (a, _clock) = admission(Quota {
            max_points: Some(1000),
            max_bytes: Some(1 << 20),
            ..Quota::default()
        });
        let usage = StorageUsage {
            points: 990,
            bytes: 1000,
        };
        a.check_storage("acme", usage, 10, 100)
            .expect("exactly at the limit");
        let e = a
            .check_storage("acme", usage, 11, 100)
            .expect_err("one point over");
        assert_eq!(e.kind, ErrorKind::InsufficientStorage);
        assert!(e.message.contains("max_points"), "{}", e.message);
        assert!(e.message.contains("1000"), "{}", e.message);
        let e = a
            .check_storage("acme", usage, 1, 1 << 20)
            .expect_err("bytes over");
        assert!(e.message.contains("max_bytes"), "{}", e.message);
        let u = a.usage("acme");
        assert_eq!((u.points, u.bytes), (990, 1000));
        assert_eq!(u.storage_refused, 2);
    }

    #[test]
    fn batch_and_limit_quotas() {
        let (a, _clock) = admission(Quota {
            max_batch: Some(100),
            max_limit: Some(50),
            ..Quota::default()
        });
        a.check_batch("acme", 100).expect("at the limit");
        let e = a.check_batch("acme", 101).expect_err("over");
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.contains("max_batch"), "{}", e.message);
        a.check_limit("acme", 50).expect("at the limit");
        let e = a.check_limit("acme", 51).expect_err("over");
        assert!(e.message.contains("max_limit"), "{}", e.message);
    }

    #[test]
    fn quota_changes_rebuild_the_tenant_buckets_and_defaults_apply_to_the_rest() {
        let (a, _clock) = admission(Quota {
            read_rps: Some(1),
            ..Quota::default()
        });
        drop(a.admit_read("acme").expect("one"));
        assert!(a.admit_read("acme").is_err());
        a.set_quota(
            "acme",
            Quota {
                read_rps: Some(3),
                ..Quota::default()
            },
        )
        .expect("valid");
        for _ in 0..3 {
            drop(a.admit_read("acme").expect("new burst of 3"));
        }
        assert!(a.admit_read("acme").is_err());
        assert!(a.usage("acme").custom_quota);

        drop(a.admit_read("globex").expect("default bucket"));
        a.set_defaults(Quota::default())
            .expect("unlimited defaults");
        for _ in 0..100 {
            drop(a.admit_read("globex").expect("now unlimited"));
        }
        assert!(a.admit_read("acme").is_err(), "the override stays");

        let bad = Quota {
            weight: 0,
            ..Quota::default()
        };
        assert!(a.set_quota("acme", bad).is_err());
        a.clear_quota("acme").expect("back to defaults");
        drop(a.admit_read("acme").expect("unlimited defaults"));
        assert!(!a.usage("acme").custom_quota);
    }

    #[test]
    fn idle_tenants_are_dropped_only_when_their_buckets_are_full_and_nothing_is_in_flight() {
        let (a, clock) = admission(Quota {
            read_rps: Some(1),
            read_burst: Some(60),
            ..Quota::default()
        });
        a.set_quota("custom", Quota::default()).expect("valid");
        let held = a.admit_read("busy").expect("in flight");
        drop(a.admit_read("idle").expect("read"));
        drop(a.admit_read("custom").expect("read"));
        assert_eq!(a.active_tenants(), 3);

        clock.advance(Duration::from_secs(30));
        assert_eq!(
            a.cleanup_idle(Duration::from_secs(10)),
            1,
            "custom refills at once"
        );
        clock.advance(Duration::from_secs(30));
        assert_eq!(
            a.cleanup_idle(Duration::from_secs(10)),
            1,
            "idle after its 60 s refill"
        );
        assert_eq!(a.active_tenants(), 1, "busy holds a read");
        drop(held);
        assert_eq!(a.cleanup_idle(Duration::from_secs(10)), 1);
        assert_eq!(a.active_tenants(), 0);
        assert_eq!(
            a.quota("custom"),
            Quota::default(),
            "overrides survive cleanup"
        );
    }

    #[test]
    fn usage_serializes_with_the_quota() {
        let (a, _clock) = admission(Quota {
            max_points: Some(5),
            ..Quota::default()
        });
        drop(a.admit_read("acme").expect("read"));
        let v = serde_json::to_value(a.usage("acme")).expect("serializes");
        assert_eq!(v["quota"]["max_points"], 5);
        assert_eq!(v["reads"]["accepted"], 1);
        assert_eq!(v["tenant"], "acme");
    }

    #[test]
    fn admission_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Admission>();
        check::<ReadPermit>();
    }
}

/// The token bucket under tokio's paused clock: the limiter's time is tokio's time, so this is
/// exact to the millisecond with no real waiting.
#[cfg(test)]
mod paused_clock {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn token_bucket_is_exact_under_the_paused_clock() {
        let a = Admission::new(Quota {
            read_rps: Some(10),
            read_burst: Some(5),
            ..Quota::default()
        })
        .expect("valid");
        for _ in 0..5 {
            drop(a.admit_read("acme").expect("burst"));
        }
        let e = a.admit_read("acme").expect_err("spent");
        assert_eq!(
            e.kind,
            ErrorKind::TooManyRequests {
                retry_after_ms: 100
            }
        );
        for _ in 0..50 {
            tokio::time::advance(Duration::from_millis(100)).await;
            drop(a.admit_read("acme").expect("one per 100 ms"));
            assert!(a.admit_read("acme").is_err());
        }
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(a.admit_read("acme").is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        drop(a.admit_read("acme").expect("exactly at 100 ms"));
        // another tenant has its own bucket
        drop(a.admit_read("globex").expect("untouched"));
    }
}
