//! Per-tenant quotas, admission and fair scheduling: being built.
