//! The node's quota machinery in one place: admission, the fair scheduler and per-tenant
//! metrics, loaded from the metadata's tenant settings and kept in step with them.

use std::sync::Arc;
use std::time::Duration;

use tessera_cluster::Result;
use tessera_cluster::meta::{MetadataState, ShardKey};
use tessera_shard::manager::ShardManager;

use super::{
    Admission, FairScheduler, Quota, SchedulerConfig, StorageUsage, TenantGauges, TenantMetrics,
};

/// Tenants named by the per-tenant metrics before the rest are summed under `_other`.
pub const NAMED_TENANTS: usize = 100;
/// How often gauges are published and idle tenants forgotten.
const UPKEEP: Duration = Duration::from_secs(10);
/// A tenant idle this long is forgotten by the limiters (its quota stays in metadata).
const IDLE: Duration = Duration::from_secs(300);

pub struct Quotas {
    pub admission: Admission,
    pub scheduler: FairScheduler,
    pub metrics: Arc<TenantMetrics>,
}

impl Quotas {
    /// Node defaults from config; `slots` is the size of the CPU pool searches run on.
    pub fn new(defaults: Quota, slots: usize) -> Result<Quotas> {
        let metrics = Arc::new(TenantMetrics::new(NAMED_TENANTS));
        Ok(Quotas {
            admission: Admission::new(defaults)?.with_metrics(metrics.clone()),
            scheduler: FairScheduler::with_metrics(
                SchedulerConfig {
                    slots: slots.max(1),
                    // a tenant never holds every slot: another tenant's query starts at once
                    tenant_max_running: slots.saturating_sub(1).max(1),
                    ..SchedulerConfig::default()
                },
                metrics.clone(),
            ),
            metrics,
        })
    }

    /// Makes the limiters follow the tenants' quotas in the metadata.
    pub fn follow(&self, state: &MetadataState) -> Result<()> {
        for (tenant, _) in self.admission.overrides() {
            if state.tenants.get(&tenant).is_none_or(|t| t.quota.is_none()) {
                self.admission.clear_quota(&tenant)?;
            }
        }
        for (tenant, settings) in &state.tenants {
            if let Some(q) = &settings.quota {
                self.admission.set_quota(tenant, q.clone())?;
            }
        }
        Ok(())
    }

    /// Points and bytes stored by `tenant` on this node: the replicas of its shard key in every
    /// custom-sharded collection. (Points of a tenant in a payload-partitioned collection are
    /// not attributed to it.)
    pub fn storage_of(state: &MetadataState, shards: &ShardManager, tenant: &str) -> StorageUsage {
        let mut usage = StorageUsage::default();
        for c in state.collections.values() {
            // a shared collection: the tenant's points are those of its partition, in every shard
            if let Some(partition) = crate::access::index_partition(c, tenant) {
                let filter = partition.filter();
                for id in c.shards.keys() {
                    if let Some(d) = shards.data((c.uid, *id)) {
                        let st = d.stats();
                        let mine = d.count(Some(&filter)) as u64;
                        usage.points += mine;
                        // bytes in proportion to the tenant's share of the shard's points
                        usage.bytes += st.stored_bytes * mine / (st.points as u64).max(1);
                    }
                }
                continue;
            }
            let key = crate::access::tenant_key(c, tenant);
            let Some(ids) = key.as_ref().and_then(|k: &ShardKey| c.shards_of_key(k)) else {
                continue;
            };
            for id in ids {
                if let Some(d) = shards.data((c.uid, *id)) {
                    let st = d.stats();
                    usage.points += st.points as u64;
                    usage.bytes += st.stored_bytes;
                }
            }
        }
        usage
    }

    /// Publishes per-tenant gauges and forgets idle tenants, every few seconds, forever.
    pub fn spawn_upkeep(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(UPKEEP).await;
                let Some(q) = me.upgrade() else { return };
                q.metrics.upkeep();
                let depths = q.scheduler.depths();
                let usage = q.admission.usage_all();
                let rows: Vec<(String, TenantGauges)> = usage
                    .iter()
                    .map(|u| {
                        let depth = depths
                            .iter()
                            .find(|(t, _, _)| *t == u.tenant)
                            .map(|(_, waiting, _)| *waiting as u64)
                            .unwrap_or(0);
                        (
                            u.tenant.clone(),
                            TenantGauges {
                                points: u.points,
                                bytes: u.bytes,
                                queue_depth: depth,
                            },
                        )
                    })
                    .collect();
                q.metrics
                    .publish_gauges(rows.iter().map(|(t, g)| (t.as_str(), *g)));
                q.admission.cleanup_idle(IDLE);
            }
        });
    }
}
