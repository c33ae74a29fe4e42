//! Per-tenant quotas, admission and fair scheduling (issue 5), as building blocks for the router
//! and the admin API.
//!
//! * [`limits`]: a tenant's [`Quota`], the admin's [`QuotaPatch`], the config's [`QuotaDefaults`].

pub mod limits;

pub use limits::{Quota, QuotaDefaults, QuotaPatch};
