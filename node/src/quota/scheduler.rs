//! Fair scheduling of a node's CPU work (searches, HNSW inserts, graph rebuilds) across tenants.
//!
//! Jobs wait in per-tenant FIFO queues and are started on a bounded number of slots, each job
//! on tokio's blocking pool. Which queue goes next is decided by deficit round robin: tenants
//! with queued jobs take turns; at the start of its turn a tenant's deficit grows by
//! `quantum * weight`, and it starts jobs while the cost of its next job fits in its deficit.
//! Over any stretch where tenants are backlogged, each receives service (summed job cost) in
//! proportion to its weight, whatever the length of the others' queues: a flooding tenant waits
//! in its own queue. A queue holds at most `max_queue` jobs; the next is refused with 429.
//!
//! The decision logic ([`Drr`]) is plain data, tested on its own; [`FairScheduler`] is the
//! async shell around it. Dropping a waiting `run` future removes its job from the queue; a job
//! that has started holds its slot until it returns, even if nobody awaits it any more.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tessera_cluster::{Error, ErrorKind, Result};
use tokio::sync::oneshot;

use super::limits::MAX_WEIGHT;
use super::metrics::TenantMetrics;

/// Settings of a [`FairScheduler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Jobs running at once (the node's CPU pool), at least 1.
    pub slots: usize,
    /// Jobs one tenant may have waiting; more are refused with 429.
    pub max_queue: usize,
    /// Cost units a tenant of weight 1 may start per turn; 1 suits jobs costing about 1.
    pub quantum: u32,
    /// Retry-After of a refusal for a full queue.
    pub retry_after_ms: u64,
    /// Slots one tenant may hold at once (0: all). Below `slots`, a flooding tenant always
    /// leaves a slot free, so another tenant's request starts at once instead of waiting for
    /// one of the flood's jobs to finish; the price is that a lone tenant uses fewer slots.
    pub tenant_max_running: usize,
}

impl Default for SchedulerConfig {
    /// One slot per core, 1024 queued jobs per tenant, quantum 1, retry after 1 s.
    fn default() -> Self {
        SchedulerConfig {
            slots: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            max_queue: 1024,
            quantum: 1,
            retry_after_ms: 1000,
            tenant_max_running: 0,
        }
    }
}

/// One tenant's queue in [`Drr`].
#[derive(Debug)]
struct TenantQueue<J> {
    /// (job id, cost, job) in arrival order.
    jobs: VecDeque<(u64, u64, J)>,
    deficit: u64,
    weight: u64,
    /// Jobs of this tenant started and not finished.
    running: usize,
    /// Whether the tenant is in the round-robin ring.
    in_ring: bool,
}

/// Deficit round robin over per-tenant FIFO queues: the pure core of [`FairScheduler`].
/// `J` is whatever the shell queues (a channel to wake the waiter, or a label in tests).
#[derive(Debug)]
pub struct Drr<J> {
    queues: HashMap<String, TenantQueue<J>>,
    /// Tenants with queued jobs, in turn order; the front one is taking its turn.
    ring: VecDeque<String>,
    /// Whether the front of the ring already received its quantum for this turn.
    turn_open: bool,
    quantum: u64,
    max_queue: usize,
    next_id: u64,
    /// Jobs one tenant may have running at once (`usize::MAX`: no cap).
    max_running: usize,
}

impl<J> Drr<J> {
    /// An empty scheduler core; `quantum` and `max_queue` as in [`SchedulerConfig`].
    pub fn new(quantum: u32, max_queue: usize) -> Drr<J> {
        Drr {
            queues: HashMap::new(),
            ring: VecDeque::new(),
            turn_open: false,
            quantum: u64::from(quantum.max(1)),
            max_queue,
            next_id: 0,
            max_running: usize::MAX,
        }
    }

    /// Caps the jobs one tenant may have running at once (0: no cap).
    pub fn with_max_running(mut self, max_running: usize) -> Drr<J> {
        self.max_running = if max_running == 0 {
            usize::MAX
        } else {
            max_running
        };
        self
    }

    fn capped(&self, tenant: &str) -> bool {
        self.queues
            .get(tenant)
            .is_some_and(|q| q.running >= self.max_running)
    }

    /// Queues `job` for `tenant` (weight clamped to 1..=1000, cost to at least 1) and returns
    /// its id, or gives the job back if the tenant's queue is full. The latest weight given
    /// for a tenant is the one used.
    pub fn push(&mut self, tenant: &str, weight: u32, cost: u32, job: J) -> Result<u64, J> {
        let id = self.next_id;
        let q = self
            .queues
            .entry(tenant.to_owned())
            .or_insert_with(|| TenantQueue {
                jobs: VecDeque::new(),
                deficit: 0,
                weight: 1,
                running: 0,
                in_ring: false,
            });
        q.weight = u64::from(weight.clamp(1, MAX_WEIGHT));
        if q.jobs.len() >= self.max_queue {
            self.tidy(tenant);
            return Err(job);
        }
        self.next_id += 1;
        q.jobs.push_back((id, u64::from(cost.max(1)), job));
        if !q.in_ring {
            q.in_ring = true;
            self.ring.push_back(tenant.to_owned());
        }
        Ok(id)
    }

    /// Removes a queued job (its waiter went away); false if it is no longer queued.
    pub fn cancel(&mut self, tenant: &str, id: u64) -> bool {
        let Some(q) = self.queues.get_mut(tenant) else {
            return false;
        };
        let Some(pos) = q.jobs.iter().position(|(i, _, _)| *i == id) else {
            return false;
        };
        q.jobs.remove(pos);
        true
    }

    /// The next job to start, by deficit round robin, counted as running for its tenant until
    /// [`Drr::finished`] is called for it.
    pub fn pop(&mut self) -> Option<(String, J)> {
        // tenants at their running cap wait for one of their jobs to finish
        if self.ring.iter().all(|t| self.capped(t)) {
            return None;
        }
        let mut misses = 0usize;
        loop {
            let name = self.ring.front()?.clone();
            if self.capped(&name) {
                self.ring.rotate_left(1);
                self.turn_open = false;
                continue;
            }
            let quantum = self.quantum;
            let Some(q) = self.queues.get_mut(&name) else {
                self.ring.pop_front();
                self.turn_open = false;
                continue;
            };
            if !self.turn_open {
                q.deficit = q.deficit.saturating_add(quantum * q.weight);
                self.turn_open = true;
            }
            match q.jobs.front().map(|(_, cost, _)| *cost) {
                None => {
                    // emptied by cancellations: leaves the ring, keeps no credit
                    q.deficit = 0;
                    q.in_ring = false;
                    self.ring.pop_front();
                    self.turn_open = false;
                    self.tidy(&name);
                }
                Some(cost) if cost <= q.deficit => {
                    q.deficit -= cost;
                    let (_, _, job) = q.jobs.pop_front()?;
                    q.running += 1;
                    if q.jobs.is_empty() {
                        q.deficit = 0;
                        q.in_ring = false;
                        self.ring.pop_front();
                        self.turn_open = false;
                    }
                    return Some((name, job));
                }
                Some(_) => {
                    self.ring.rotate_left(1);
                    self.turn_open = false;
                    misses += 1;
                    if misses >= self.ring.len() {
                        self.skip_idle_rounds();
                        misses = 0;
                    }
                }
            }
        }
    }

    /// After a whole round in which no head job fit, credits every tenant at once with the
    /// rounds that would pass before the first one fits (so large costs do not spin).
    fn skip_idle_rounds(&mut self) {
        let mut rounds = u64::MAX;
        for name in &self.ring {
            if let Some(q) = self.queues.get(name)
                && q.running < self.max_running
                && let Some((_, cost, _)) = q.jobs.front()
            {
                let per_turn = self.quantum * q.weight;
                rounds = rounds.min(cost.saturating_sub(q.deficit).div_ceil(per_turn));
            }
        }
        if rounds > 1 && rounds != u64::MAX {
            for name in &self.ring {
                if let Some(q) = self.queues.get_mut(name) {
                    let per_turn = self.quantum * q.weight;
                    q.deficit = q.deficit.saturating_add((rounds - 1) * per_turn);
                }
            }
        }
    }

    /// A job of `tenant` returned by [`Drr::pop`] has finished (or was never started).
    pub fn finished(&mut self, tenant: &str) {
        if let Some(q) = self.queues.get_mut(tenant) {
            q.running = q.running.saturating_sub(1);
        }
        self.tidy(tenant);
    }

    /// Forgets a tenant with nothing queued or running, so the map holds active tenants only.
    fn tidy(&mut self, tenant: &str) {
        if let Some(q) = self.queues.get(tenant)
            && q.jobs.is_empty()
            && q.running == 0
            && !q.in_ring
        {
            self.queues.remove(tenant);
        }
    }

    /// Jobs `tenant` has waiting.
    pub fn depth(&self, tenant: &str) -> usize {
        self.queues.get(tenant).map_or(0, |q| q.jobs.len())
    }

    /// Jobs `tenant` has running.
    pub fn running(&self, tenant: &str) -> usize {
        self.queues.get(tenant).map_or(0, |q| q.running)
    }

    /// (tenant, waiting, running) of every tenant with something waiting or running.
    pub fn tenants(&self) -> Vec<(String, usize, usize)> {
        self.queues
            .iter()
            .map(|(t, q)| (t.clone(), q.jobs.len(), q.running))
            .collect()
    }

    /// Removes and returns every queued job.
    pub fn drain(&mut self) -> Vec<J> {
        let mut out = Vec::new();
        for q in self.queues.values_mut() {
            out.extend(q.jobs.drain(..).map(|(_, _, j)| j));
            q.in_ring = false;
        }
        self.ring.clear();
        self.turn_open = false;
        let names: Vec<String> = self.queues.keys().cloned().collect();
        for n in names {
            self.tidy(&n);
        }
        out
    }
}

struct State {
    drr: Drr<oneshot::Sender<Slot>>,
    running: usize,
    closed: bool,
}

struct Inner {
    config: SchedulerConfig,
    state: Mutex<State>,
    metrics: Option<Arc<TenantMetrics>>,
}

/// A started job's claim on one of the pool's slots; released on drop.
struct Slot {
    inner: Arc<Inner>,
    tenant: String,
    armed: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            {
                let mut st = self.inner.state.lock();
                st.running = st.running.saturating_sub(1);
                st.drr.finished(&self.tenant);
            }
            Inner::pump(&self.inner);
        }
    }
}

impl Inner {
    /// Starts queued jobs while slots are free.
    fn pump(this: &Arc<Inner>) {
        loop {
            let picks: Vec<(String, oneshot::Sender<Slot>)> = {
                let mut st = this.state.lock();
                let mut picks = Vec::new();
                while st.running < this.config.slots.max(1) {
                    match st.drr.pop() {
                        Some(p) => {
                            st.running += 1;
                            picks.push(p);
                        }
                        None => break,
                    }
                }
                picks
            };
            if picks.is_empty() {
                return;
            }
            let mut undelivered = Vec::new();
            for (tenant, tx) in picks {
                let slot = Slot {
                    inner: this.clone(),
                    tenant: tenant.clone(),
                    armed: true,
                };
                if let Err(mut slot) = tx.send(slot) {
                    // the waiter left between being picked and being told
                    slot.armed = false;
                    undelivered.push(tenant);
                }
            }
            if undelivered.is_empty() {
                return;
            }
            let mut st = this.state.lock();
            for t in undelivered {
                st.running = st.running.saturating_sub(1);
                st.drr.finished(&t);
            }
        }
    }
}

/// Removes a job from its queue if its `run` future is dropped before the job starts.
struct Queued<'a> {
    inner: &'a Inner,
    tenant: &'a str,
    id: u64,
    armed: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.state.lock().drr.cancel(self.tenant, self.id);
        }
    }
}

/// Per-tenant queues served by deficit round robin onto a bounded pool of blocking slots.
/// Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct FairScheduler {
    inner: Arc<Inner>,
}

impl FairScheduler {
    /// A scheduler with `config.slots` slots.
    pub fn new(config: SchedulerConfig) -> FairScheduler {
        FairScheduler::build(config, None)
    }

    /// A scheduler that also counts full-queue refusals in `metrics`.
    pub fn with_metrics(config: SchedulerConfig, metrics: Arc<TenantMetrics>) -> FairScheduler {
        FairScheduler::build(config, Some(metrics))
    }

    fn build(config: SchedulerConfig, metrics: Option<Arc<TenantMetrics>>) -> FairScheduler {
        FairScheduler {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    drr: Drr::new(config.quantum, config.max_queue)
                        .with_max_running(config.tenant_max_running),
                    running: 0,
                    closed: false,
                }),
                config,
                metrics,
            }),
        }
    }

    /// Runs `job` on the blocking pool once `tenant`'s turn comes. `weight` is the tenant's
    /// scheduling weight (its quota's `weight`), `cost` the job's size in cost units (e.g. 1 per
    /// search, more for an insert batch or a graph rebuild).
    ///
    /// Errors: 429 when the tenant's queue is full, Unavailable once the scheduler is closed,
    /// Internal if the job panicked.
    pub async fn run<T, F>(&self, tenant: &str, weight: u32, cost: u32, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = self.inner.state.lock();
            if st.closed {
                return Err(Error::unavailable("node is shutting down"));
            }
            st.drr.push(tenant, weight, cost, tx)
        };
        let id = match id {
            Ok(id) => id,
            Err(_) => {
                if let Some(m) = &self.inner.metrics {
                    m.throttled(tenant, "queue");
                }
                let max = self.inner.config.max_queue;
                return Err(Error::new(
                    ErrorKind::TooManyRequests {
                        retry_after_ms: self.inner.config.retry_after_ms,
                    },
                    format!(
                        "Too many requests: tenant {tenant} has {max} jobs waiting on this node, the most its queue holds"
                    ),
                ));
            }
        };
        let mut queued = Queued {
            inner: &self.inner,
            tenant,
            id,
            armed: true,
        };
        Inner::pump(&self.inner);
        let slot = rx
            .await
            .map_err(|_| Error::unavailable("node is shutting down"))?;
        queued.armed = false;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            job()
        })
        .await
        .map_err(|e| Error::internal(format!("scheduled job failed: {e}")))
    }

    /// Jobs `tenant` has waiting.
    pub fn queue_depth(&self, tenant: &str) -> usize {
        self.inner.state.lock().drr.depth(tenant)
    }

    /// Jobs `tenant` has running.
    pub fn running_of(&self, tenant: &str) -> usize {
        self.inner.state.lock().drr.running(tenant)
    }

    /// Jobs running on the pool.
    pub fn running(&self) -> usize {
        self.inner.state.lock().running
    }

    /// (tenant, waiting, running) for every tenant with work, e.g. for queue-depth gauges.
    pub fn depths(&self) -> Vec<(String, usize, usize)> {
        self.inner.state.lock().drr.tenants()
    }

    /// Refuses new jobs and fails the waiting ones with Unavailable; running jobs finish.
    pub fn close(&self) {
        let dropped = {
            let mut st = self.inner.state.lock();
            st.closed = true;
            st.drr.drain()
        };
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Pops everything, finishing each job at once (one slot), and returns the tenants in order.
    fn serve<J>(d: &mut Drr<J>, n: usize) -> Vec<String> {
        let mut order = Vec::new();
        for _ in 0..n {
            let Some((t, _)) = d.pop() else { break };
            d.finished(&t);
            order.push(t);
        }
        order
    }

    /// The share of `tenant` in the prefix of `order` in which every tenant of `both` was
    /// still backlogged (up to the last job of whichever drains first).
    fn share_while_backlogged(order: &[String], tenant: &str, costs: &[(&str, u64)]) -> f64 {
        let last = |t: &str| order.iter().rposition(|x| x == t).unwrap_or(0);
        let end = costs.iter().map(|(t, _)| last(t)).min().unwrap_or(0);
        let cost = |t: &str| costs.iter().find(|(x, _)| *x == t).map_or(1, |(_, c)| *c);
        let prefix = &order[..=end];
        let total: u64 = prefix.iter().map(|t| cost(t)).sum();
        let mine: u64 = prefix
            .iter()
            .filter(|t| *t == tenant)
            .map(|t| cost(t))
            .sum();
        mine as f64 / total as f64
    }

    #[test]
    fn drr_serves_in_proportion_to_weights_whatever_the_backlog() {
        for (wa, wb) in [(1u32, 1u32), (1, 3), (3, 1), (2, 5)] {
            let mut d: Drr<()> = Drr::new(1, 100_000);
            // a floods with 100x the work of b
            for _ in 0..3000 {
                d.push("a", wa, 1, ()).expect("room");
            }
            for _ in 0..30 {
                d.push("b", wb, 1, ()).expect("room");
            }
            let order = serve(&mut d, 3030);
            assert_eq!(order.len(), 3030);
            let share_b = share_while_backlogged(&order, "b", &[("a", 1), ("b", 1)]);
            let want = f64::from(wb) / f64::from(wa + wb);
            assert!(
                (share_b - want).abs() < 0.05,
                "weights {wa}:{wb}: b got {share_b:.3}, want {want:.3}"
            );
        }
    }

    #[test]
    fn drr_accounts_for_job_cost() {
        let mut d: Drr<()> = Drr::new(1, 100_000);
        for _ in 0..1000 {
            d.push("heavy", 1, 10, ()).expect("room");
        }
        for _ in 0..1000 {
            d.push("light", 1, 1, ()).expect("room");
        }
        let order = serve(&mut d, 2000);
        let share = share_while_backlogged(&order, "light", &[("heavy", 10), ("light", 1)]);
        assert!(
            (share - 0.5).abs() < 0.05,
            "light got {share:.3} of the cost"
        );
        // and large costs with a small quantum do not spin: 1000 jobs served
        assert_eq!(order.len(), 2000);
    }

    #[test]
    fn drr_bounds_queues_cancels_and_forgets_idle_tenants() {
        let mut d: Drr<u32> = Drr::new(1, 2);
        let a1 = d.push("a", 1, 1, 1).expect("room");
        d.push("a", 1, 1, 2).expect("room");
        assert_eq!(d.push("a", 1, 1, 3), Err(3), "queue of 2 is full");
        d.push("b", 1, 1, 4).expect("b has its own queue");
        assert!(d.cancel("a", a1));
        assert!(!d.cancel("a", a1), "already gone");
        assert_eq!(d.depth("a"), 1);
        let got: Vec<u32> = std::iter::from_fn(|| d.pop().map(|(_, j)| j)).collect();
        assert_eq!(got, vec![2, 4]);
        assert_eq!(d.running("a"), 1);
        d.finished("a");
        d.finished("b");
        assert!(d.tenants().is_empty(), "nothing kept for idle tenants");
    }

    /// Polls `cond` until it holds (the scheduler's tasks run concurrently with the test).
    async fn until(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..5000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// Occupies the scheduler's only slot until the returned sender is dropped or sent to.
    async fn block_the_pool(
        s: &FairScheduler,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let s2 = s.clone();
        let h = tokio::spawn(async move {
            s2.run("gate", 1, 1, move || {
                let _ = rx.recv();
            })
            .await
            .expect("gate job runs");
        });
        until("the gate job to start", || s.running() == 1).await;
        (tx, h)
    }

    #[test]
    fn the_scheduler_and_its_futures_can_cross_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let s = FairScheduler::new(SchedulerConfig::default());
        send_sync(&s);
        let fut = s.run("a", 1, 1, || 1);
        send(&fut);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_tenants_one_flooding_are_served_by_weight() {
        let s = FairScheduler::new(SchedulerConfig {
            slots: 1,
            max_queue: 10_000,
            quantum: 1,
            retry_after_ms: 1000,
            tenant_max_running: 0,
        });
        let (gate, gate_task) = block_the_pool(&s).await;

        tracing::info!("flood: a queues 100x the work of b, b weighs 3x a");
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut tasks = Vec::new();
        for (tenant, weight, n) in [("a", 1u32, 2000usize), ("b", 3, 20)] {
            for _ in 0..n {
                let (s, log) = (s.clone(), log.clone());
                tasks.push(tokio::spawn(async move {
                    s.run(tenant, weight, 1, move || {
                        log.lock().push(tenant.to_owned())
                    })
                    .await
                }));
            }
        }
        until("every job to be queued", || {
            s.queue_depth("a") == 2000 && s.queue_depth("b") == 20
        })
        .await;

        tracing::info!("open the pool and let both drain");
        gate.send(()).expect("gate waits");
        gate_task.await.expect("gate task");
        for t in tasks {
            t.await.expect("task").expect("job ran");
        }
        let order = log.lock().clone();
        assert_eq!(order.len(), 2020);
        let share_b = share_while_backlogged(&order, "b", &[("a", 1), ("b", 1)]);
        assert!(
            (share_b - 0.75).abs() < 0.05,
            "b got {share_b:.3} of the pool while both were backlogged"
        );
        assert_eq!(s.running(), 0);
        assert!(s.depths().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_a_429_for_that_tenant_only() {
        let s = FairScheduler::new(SchedulerConfig {
            slots: 1,
            max_queue: 2,
            quantum: 1,
            retry_after_ms: 250,
            tenant_max_running: 0,
        });
        let (gate, gate_task) = block_the_pool(&s).await;
        let mut queued = Vec::new();
        for _ in 0..2 {
            let s = s.clone();
            queued.push(tokio::spawn(async move { s.run("a", 1, 1, || 7).await }));
        }
        until("two jobs queued", || s.queue_depth("a") == 2).await;
        let e = s.run("a", 1, 1, || 7).await.expect_err("queue full");
        assert_eq!(
            e.kind,
            ErrorKind::TooManyRequests {
                retry_after_ms: 250
            }
        );
        assert!(e.message.contains("tenant a"), "{}", e.message);

        let s2 = s.clone();
        let b = tokio::spawn(async move { s2.run("b", 1, 1, || 8).await });
        until("b queued", || s.queue_depth("b") == 1).await;

        gate.send(()).expect("gate waits");
        gate_task.await.expect("gate");
        for q in queued {
            assert_eq!(q.await.expect("task").expect("ran"), 7);
        }
        assert_eq!(b.await.expect("task").expect("ran"), 8);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_waiters_leak_no_slot_and_no_queue_entry() {
        let s = FairScheduler::new(SchedulerConfig {
            slots: 1,
            max_queue: 10,
            quantum: 1,
            retry_after_ms: 1000,
            tenant_max_running: 0,
        });
        let (gate, gate_task) = block_the_pool(&s).await;

        tracing::info!("a waiter dropped while queued leaves the queue");
        let s2 = s.clone();
        let waiting = tokio::spawn(async move { s2.run("a", 1, 1, || ()).await });
        until("a queued", || s.queue_depth("a") == 1).await;
        waiting.abort();
        until("a's job to leave the queue", || s.queue_depth("a") == 0).await;

        tracing::info!("a waiter dropped while its job runs: the slot is held until it returns");
        gate.send(()).expect("gate waits");
        gate_task.await.expect("gate");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let s3 = s.clone();
        let running = tokio::spawn(async move {
            s3.run("a", 1, 1, move || {
                let _ = rx.recv();
            })
            .await
        });
        until("a's job to start", || s.running() == 1).await;
        running.abort();
        let _ = running.await;
        assert_eq!(s.running(), 1, "the job still runs and holds its slot");
        tx.send(()).expect("job waits");
        until("the slot to be free", || s.running() == 0).await;

        tracing::info!("the pool still works");
        assert_eq!(s.run("b", 1, 1, || 5).await.expect("runs"), 5);
        let e = s
            .run("b", 1, 1, || -> u32 { panic!("boom") })
            .await
            .expect_err("a panicking job is an error");
        assert_eq!(e.kind, ErrorKind::Internal);
        assert_eq!(s.running(), 0, "and frees its slot");
        assert!(s.depths().is_empty());

        s.close();
        let e = s.run("b", 1, 1, || 5).await.expect_err("closed");
        assert_eq!(e.kind, ErrorKind::Unavailable);
    }

    #[test]
    fn a_capped_tenant_leaves_slots_to_others() {
        let mut d: Drr<u32> = Drr::new(1, 100).with_max_running(1);
        for i in 0..10 {
            d.push("flood", 1, 1, i).expect("queued");
        }
        assert_eq!(d.pop().map(|(t, _)| t), Some("flood".to_owned()));
        assert!(
            d.pop().is_none(),
            "the flood holds its one slot: nothing else to start"
        );
        d.push("calm", 1, 1, 99).expect("queued");
        assert_eq!(
            d.pop(),
            Some(("calm".to_owned(), 99)),
            "calm starts at once"
        );
        d.finished("flood");
        assert_eq!(d.pop().map(|(t, _)| t), Some("flood".to_owned()));
    }
}
