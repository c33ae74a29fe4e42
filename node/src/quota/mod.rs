//! Per-tenant quotas, admission and fair scheduling (issue 5), as building blocks for the router
//! and the admin API.
//!
//! * [`limits`]: a tenant's [`Quota`], a [`QuotaPatch`] changing it, the config's [`QuotaDefaults`]
//!   (their JSON shapes are the admin API's, in `api/json/admin.rs`).
//! * [`admission`]: [`Admission`], the cheap checks before any parsing or queueing: token buckets
//!   (governor) for read and write requests and write bytes, concurrent searches, batch size,
//!   `limit`, stored points and bytes; and the [`Usage`] the usage endpoint returns.
//! * [`scheduler`]: [`FairScheduler`], per-tenant queues served by deficit round robin onto a
//!   bounded pool of blocking slots, so one tenant's flood waits in its own queue.
//! * [`metrics`]: [`TenantMetrics`], per-tenant metrics whose `tenant` label is bounded by
//!   [`TenantLabels`] (the busiest N by name, the rest under `_other`).
//! * [`clock`]: [`TokioClock`], the buckets' time source, which follows tokio's (pausable) clock.
//!
//! A request goes: `admit_read`/`admit_write` (429/413) → parse → `check_batch`/`check_limit`
//! (400) → `check_storage` for writes (507) → CPU work through `FairScheduler::run` (429 when
//! the tenant's queue is full) → `TenantMetrics::request`.

pub mod admission;
pub mod clock;
/// The limits live in the cluster crate: they are stored in the replicated metadata.
pub use tessera_cluster::quota as limits;
pub mod metrics;
pub mod scheduler;

pub use admission::{
    Admission, CONCURRENCY_RETRY_AFTER_MS, QuotaClock, ReadPermit, RequestCounts, StorageUsage,
    Usage,
};
pub use clock::TokioClock;
pub use limits::{Quota, QuotaDefaults, QuotaPatch};
pub use metrics::{Op, Outcome, TenantGauges, TenantLabels, TenantMetrics};
pub use scheduler::{Drr, FairScheduler, SchedulerConfig};
pub mod node;
pub use node::Quotas;
