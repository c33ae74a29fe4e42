//! Per-tenant quotas, admission and fair scheduling (issue 5), as building blocks for the router
//! and the admin API.
//!
//! * [`limits`]: a tenant's [`Quota`], the admin's [`QuotaPatch`], the config's [`QuotaDefaults`].
//! * [`metrics`]: [`TenantMetrics`], per-tenant metrics whose `tenant` label is bounded by
//!   [`TenantLabels`] (the busiest N by name, the rest under `_other`).

pub mod limits;
pub mod metrics;

pub use limits::{Quota, QuotaDefaults, QuotaPatch};
pub use metrics::{Op, Outcome, TenantGauges, TenantLabels, TenantMetrics};
