//! Per-tenant metrics with a cardinality guard: the busiest `top_n` tenants keep their name as the
//! `tenant` label, every other tenant is summed under [`OTHER`], so 100,000 tenants make at most
//! `top_n + 1` series of each metric at a time.
//!
//! Busyness is a decayed count of observations: each [`TenantLabels::recompute`] (call it
//! periodically, e.g. from the metrics upkeep every 10 s) folds the hits of the last window into
//! a score (`score = score * DECAY + hits`) and publishes the top `top_n`. An incumbent keeps its
//! place unless a challenger's score beats it by [`HYSTERESIS`], so equal load does not make
//! labels flap. Until the first recompute fills it, free places go to tenants as they appear.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use metrics::SharedString;
use parking_lot::{Mutex, RwLock};

/// The label of every tenant outside the top N.
pub const OTHER: &str = "_other";

/// Tenants with a label of their own unless configured otherwise.
pub const DEFAULT_TOP_TENANTS: usize = 100;

/// Weight of the previous score at each recompute.
pub const DECAY: f64 = 0.5;

/// How much a challenger must outscore an incumbent to take its label.
pub const HYSTERESIS: f64 = 1.25;

/// Candidates whose scores are kept between recomputes, as a multiple of `top_n`.
const CANDIDATES_PER_PLACE: usize = 4;

/// Requests by tenant, operation and outcome.
pub const REQUESTS: &str = "tessera_tenant_requests_total";
/// Request latency in seconds by tenant and operation (a histogram).
pub const LATENCY: &str = "tessera_tenant_request_seconds";
/// Refusals by tenant and the quota that refused.
pub const THROTTLES: &str = "tessera_tenant_throttled_total";
/// Accepted write body bytes by tenant.
pub const WRITE_BYTES: &str = "tessera_tenant_write_bytes_total";
/// Points stored by tenant (a gauge).
pub const POINTS: &str = "tessera_tenant_points";
/// Bytes stored by tenant (a gauge).
pub const BYTES: &str = "tessera_tenant_bytes";
/// Jobs waiting in the tenant's scheduler queue (a gauge).
pub const QUEUE_DEPTH: &str = "tessera_tenant_queue_depth";

#[derive(Default)]
struct LabelState {
    /// Published labels, at most `top_n`.
    named: HashMap<String, SharedString>,
    /// Decayed scores of the strongest candidates.
    scores: HashMap<String, f64>,
}

/// Maps tenant names to metric labels, keeping at most `top_n` names (see the module doc).
pub struct TenantLabels {
    top_n: usize,
    hits: DashMap<String, AtomicU64>,
    state: RwLock<LabelState>,
}

impl TenantLabels {
    /// A guard keeping at most `top_n` tenant names.
    pub fn new(top_n: usize) -> TenantLabels {
        TenantLabels {
            top_n,
            hits: DashMap::new(),
            state: RwLock::new(LabelState::default()),
        }
    }

    /// The label for `tenant`, counting one observation towards its busyness.
    pub fn label(&self, tenant: &str) -> SharedString {
        match self.hits.get(tenant) {
            Some(c) => {
                c.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.hits
                    .entry(tenant.to_owned())
                    .or_default()
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        {
            let st = self.state.read();
            if let Some(l) = st.named.get(tenant) {
                return l.clone();
            }
            if st.named.len() >= self.top_n {
                return SharedString::const_str(OTHER);
            }
        }
        let mut st = self.state.write();
        if let Some(l) = st.named.get(tenant) {
            return l.clone();
        }
        if st.named.len() < self.top_n {
            let l = SharedString::from(tenant.to_owned());
            st.named.insert(tenant.to_owned(), l.clone());
            return l;
        }
        SharedString::const_str(OTHER)
    }

    /// The label `tenant` has now, without counting an observation.
    pub fn peek(&self, tenant: &str) -> SharedString {
        self.state
            .read()
            .named
            .get(tenant)
            .cloned()
            .unwrap_or(SharedString::const_str(OTHER))
    }

    /// Tenants that currently have a label of their own.
    pub fn named(&self) -> Vec<String> {
        self.state.read().named.keys().cloned().collect()
    }

    /// Folds the hits since the last call into the decayed scores and publishes the top N.
    pub fn recompute(&self) {
        let window: Vec<(String, u64)> = self
            .hits
            .iter()
            .map(|e| (e.key().clone(), e.value().swap(0, Ordering::Relaxed)))
            .collect();
        self.hits.retain(|_, v| v.load(Ordering::Relaxed) > 0);

        let mut st = self.state.write();
        let mut scores: HashMap<String, f64> = std::mem::take(&mut st.scores)
            .into_iter()
            .map(|(k, s)| (k, s * DECAY))
            .collect();
        for (t, n) in window {
            *scores.entry(t).or_insert(0.0) += n as f64;
        }
        let mut ranked: Vec<(String, f64)> = scores
            .into_iter()
            .filter(|(_, s)| *s >= 0.01)
            .map(|(t, s)| {
                let bonus = if st.named.contains_key(&t) {
                    HYSTERESIS
                } else {
                    1.0
                };
                (t, s * bonus)
            })
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(self.top_n.saturating_mul(CANDIDATES_PER_PLACE));

        let mut named = HashMap::with_capacity(self.top_n);
        for (t, _) in ranked.iter().take(self.top_n) {
            let l = st
                .named
                .get(t)
                .cloned()
                .unwrap_or_else(|| SharedString::from(t.clone()));
            named.insert(t.clone(), l);
        }
        st.named = named;
        st.scores = ranked
            .into_iter()
            .map(|(t, s)| {
                let raw = if st.named.contains_key(&t) {
                    s / HYSTERESIS
                } else {
                    s
                };
                (t, raw)
            })
            .collect();
    }
}

/// The operation a request performed, as the `op` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// k-NN search or query.
    Search,
    /// Retrieve, scroll, count.
    Read,
    /// Upsert, delete, payload changes.
    Write,
}

impl Op {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Search => "search",
            Op::Read => "read",
            Op::Write => "write",
        }
    }
}

/// How a request ended, as the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered successfully.
    Ok,
    /// Refused by a rate, concurrency or queue limit (429).
    Throttled,
    /// Refused by a storage, batch or limit quota (507, 413, 400).
    Rejected,
    /// Failed for another reason.
    Error,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Throttled => "throttled",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
        }
    }

    /// The outcome an error stands for.
    pub fn of(e: &tessera_cluster::Error) -> Outcome {
        use tessera_cluster::ErrorKind as K;
        match e.kind {
            K::TooManyRequests { .. } => Outcome::Throttled,
            K::InsufficientStorage | K::PayloadTooLarge | K::BadRequest => Outcome::Rejected,
            K::Unauthenticated
            | K::Forbidden
            | K::NotFound
            | K::AlreadyExists
            | K::Conflict
            | K::Unavailable
            | K::Timeout
            | K::Internal => Outcome::Error,
        }
    }
}

/// A tenant's gauges, published together by [`TenantMetrics::publish_gauges`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantGauges {
    pub points: u64,
    pub bytes: u64,
    pub queue_depth: u64,
}

/// Records per-tenant metrics through the `metrics` macros, labels through [`TenantLabels`].
pub struct TenantMetrics {
    labels: TenantLabels,
    /// Gauge labels set by the last publish, to zero the ones that left.
    gauge_labels: Mutex<HashSet<SharedString>>,
}

impl TenantMetrics {
    /// Metrics keeping at most `top_n` tenant names.
    pub fn new(top_n: usize) -> TenantMetrics {
        TenantMetrics {
            labels: TenantLabels::new(top_n),
            gauge_labels: Mutex::new(HashSet::new()),
        }
    }

    /// The cardinality guard.
    pub fn labels(&self) -> &TenantLabels {
        &self.labels
    }

    /// One finished request; `latency` is recorded for answered ones.
    pub fn request(&self, tenant: &str, op: Op, outcome: Outcome, latency: Option<Duration>) {
        let t = self.labels.label(tenant);
        metrics::counter!(REQUESTS, "tenant" => t.clone(), "op" => op.as_str(), "outcome" => outcome.as_str())
            .increment(1);
        if let Some(d) = latency {
            metrics::histogram!(LATENCY, "tenant" => t, "op" => op.as_str())
                .record(d.as_secs_f64());
        }
    }

    /// One refusal by the named quota (e.g. `read_rps`, `max_points`, `queue`).
    pub fn throttled(&self, tenant: &str, quota: &'static str) {
        let t = self.labels.label(tenant);
        metrics::counter!(THROTTLES, "tenant" => t, "quota" => quota).increment(1);
    }

    /// Write body bytes that were admitted.
    pub fn write_bytes(&self, tenant: &str, bytes: u64) {
        let t = self.labels.label(tenant);
        metrics::counter!(WRITE_BYTES, "tenant" => t).increment(bytes);
    }

    /// Sets the gauges from a snapshot of every tenant (e.g. [`Admission::usage_all`] and the
    /// scheduler's depths): named tenants get their values, the rest are summed under
    /// [`OTHER`], and labels that left since the last publish are set to zero.
    ///
    /// [`Admission::usage_all`]: super::Admission::usage_all
    pub fn publish_gauges<'a>(&self, rows: impl IntoIterator<Item = (&'a str, TenantGauges)>) {
        let mut sums: HashMap<SharedString, TenantGauges> = HashMap::new();
        sums.insert(SharedString::const_str(OTHER), TenantGauges::default());
        for (tenant, g) in rows {
            let s = sums.entry(self.labels.peek(tenant)).or_default();
            s.points = s.points.saturating_add(g.points);
            s.bytes = s.bytes.saturating_add(g.bytes);
            s.queue_depth = s.queue_depth.saturating_add(g.queue_depth);
        }
        let mut last = self.gauge_labels.lock();
        for gone in last.iter().filter(|l| !sums.contains_key(*l)) {
            metrics::gauge!(POINTS, "tenant" => gone.clone()).set(0.0);
            metrics::gauge!(BYTES, "tenant" => gone.clone()).set(0.0);
            metrics::gauge!(QUEUE_DEPTH, "tenant" => gone.clone()).set(0.0);
        }
        for (l, g) in &sums {
            metrics::gauge!(POINTS, "tenant" => l.clone()).set(g.points as f64);
            metrics::gauge!(BYTES, "tenant" => l.clone()).set(g.bytes as f64);
            metrics::gauge!(QUEUE_DEPTH, "tenant" => l.clone()).set(g.queue_depth as f64);
        }
        *last = sums.into_keys().collect();
    }

    /// Periodic work: recomputes which tenants are named.
    pub fn upkeep(&self) {
        self.labels.recompute();
    }
}

impl Default for TenantMetrics {
    fn default() -> Self {
        TenantMetrics::new(DEFAULT_TOP_TENANTS)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, Unit};

    use super::*;

    /// A recorder that remembers every (metric name, tenant label) registered.
    #[derive(Default, Clone)]
    pub(crate) struct Seen(pub(crate) Arc<Mutex<BTreeSet<(String, String)>>>);

    impl Seen {
        fn note(&self, key: &Key) {
            let tenant = key
                .labels()
                .find(|l| l.key() == "tenant")
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            self.0.lock().insert((key.name().to_owned(), tenant));
        }
        pub(crate) fn tenants_of(&self, metric: &str) -> BTreeSet<String> {
            self.0
                .lock()
                .iter()
                .filter(|(m, _)| m == metric)
                .map(|(_, t)| t.clone())
                .collect()
        }
    }

    impl Recorder for Seen {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            self.note(key);
            Counter::noop()
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            self.note(key);
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            self.note(key);
            Histogram::noop()
        }
    }

    #[test]
    fn ten_thousand_tenants_make_at_most_n_plus_one_labels() {
        let seen = Seen::default();
        let m = TenantMetrics::new(100);
        metrics::with_local_recorder(&seen, || {
            for round in 0..3 {
                for i in 0..10_000 {
                    let t = format!("tenant-{i}");
                    m.request(&t, Op::Search, Outcome::Ok, Some(Duration::from_millis(1)));
                    m.throttled(&t, "read_rps");
                }
                m.upkeep();
                let rows: Vec<(String, TenantGauges)> = (0..10_000)
                    .map(|i| {
                        let g = TenantGauges {
                            points: 1,
                            bytes: 10,
                            queue_depth: round,
                        };
                        (format!("tenant-{i}"), g)
                    })
                    .collect();
                m.publish_gauges(rows.iter().map(|(t, g)| (t.as_str(), *g)));
            }
        });
        for metric in [REQUESTS, LATENCY, THROTTLES, POINTS, BYTES, QUEUE_DEPTH] {
            let tenants = seen.tenants_of(metric);
            assert!(
                tenants.len() <= 101,
                "{metric}: {} distinct tenant labels",
                tenants.len()
            );
            assert!(tenants.contains(OTHER), "{metric}: the rest is summed");
        }
    }

    #[test]
    fn the_busiest_tenants_are_named_and_quiet_ones_fold_into_other() {
        let l = TenantLabels::new(2);
        for t in ["a", "b", "c"] {
            l.label(t);
        }
        assert_eq!(l.peek("a").as_ref(), "a", "free places go to first comers");
        assert_eq!(l.peek("c").as_ref(), OTHER);

        // c becomes the busiest; a stays somewhat busy; b goes quiet
        for _ in 0..3 {
            for _ in 0..100 {
                l.label("c");
            }
            for _ in 0..50 {
                l.label("a");
            }
            l.recompute();
        }
        let mut named = l.named();
        named.sort();
        assert_eq!(named, vec!["a".to_owned(), "c".to_owned()]);
        assert_eq!(l.peek("b").as_ref(), OTHER);

        // equal load: the incumbents keep their labels
        for _ in 0..5 {
            for t in ["a", "b", "c"] {
                for _ in 0..10 {
                    l.label(t);
                }
            }
            l.recompute();
            let mut now = l.named();
            now.sort();
            assert_eq!(now, named, "no flapping under equal load");
        }
    }

    /// Remembers the last value set on each (gauge, tenant).
    #[derive(Default, Clone)]
    struct Gauges(Arc<Mutex<HashMap<(String, String), f64>>>);

    struct OneGauge(Gauges, (String, String));

    impl metrics::GaugeFn for OneGauge {
        fn increment(&self, _: f64) {}
        fn decrement(&self, _: f64) {}
        fn set(&self, value: f64) {
            (self.0).0.lock().insert(self.1.clone(), value);
        }
    }

    impl Recorder for Gauges {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::noop()
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            let tenant = key
                .labels()
                .find(|l| l.key() == "tenant")
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            Gauge::from_arc(Arc::new(OneGauge(
                self.clone(),
                (key.name().to_owned(), tenant),
            )))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn gauges_sum_the_rest_under_other_and_departed_labels_drop_to_zero() {
        let g = Gauges::default();
        let m = TenantMetrics::new(1);
        let row = |points| TenantGauges {
            points,
            bytes: points * 10,
            queue_depth: 1,
        };
        let value = |metric: &str, tenant: &str| {
            g.0.lock()
                .get(&(metric.to_owned(), tenant.to_owned()))
                .copied()
        };
        metrics::with_local_recorder(&g, || {
            m.labels().label("big");
            m.publish_gauges([("big", row(5)), ("x", row(2)), ("y", row(3))]);
        });
        assert_eq!(value(POINTS, "big"), Some(5.0));
        assert_eq!(value(POINTS, OTHER), Some(5.0));
        assert_eq!(value(BYTES, OTHER), Some(50.0));
        assert_eq!(value(QUEUE_DEPTH, OTHER), Some(2.0));
        assert_eq!(value(POINTS, "x"), None, "x has no series of its own");

        // "x" becomes the busiest and takes the one place; "big" must not keep a stale value
        metrics::with_local_recorder(&g, || {
            for _ in 0..100 {
                m.labels().label("x");
            }
            m.upkeep();
            m.upkeep();
            m.publish_gauges([("big", row(5)), ("x", row(2)), ("y", row(3))]);
        });
        assert_eq!(m.labels().named(), vec!["x".to_owned()]);
        assert_eq!(value(POINTS, "x"), Some(2.0));
        assert_eq!(value(POINTS, "big"), Some(0.0), "departed label zeroed");
        assert_eq!(value(POINTS, OTHER), Some(8.0));
    }
}
