//! The route table: every endpoint once, with its method and path, its handler and the
//! [`Operation`] it is. The axum router and the middlewares are both built from this table, so
//! a route cannot be served without an audit name and a quota class, and the match in
//! [`Operation::quota_class`] has no wildcard arm: a new operation does not compile until
//! somebody decides whether it is metered.
//!
//! Adding an endpoint: a variant of [`Operation`] (the compiler then asks for its audit name,
//! quota class and whether it is public), one row in [`table`], one handler, and its JSON types
//! under `api/json/`.

use std::collections::HashMap;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

use super::{
    AppState, admin, aliases, batch, collections, facet, groups, matrix, points, query, service,
    shard_keys,
};
use crate::quota::Op as QuotaOp;

/// What a request does, as the audit log names it and as quotas meter it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    ServiceInfo,
    Health,
    Live,
    Ready,
    Metrics,
    ClusterInfo,
    RemovePeer,
    ListCollections,
    CreateCollection,
    GetCollection,
    DeleteCollection,
    UpdateCollection,
    CollectionExists,
    CollectionCluster,
    UpdateAliases,
    CollectionAliases,
    ListAliases,
    CreateShardKey,
    ListShardKeys,
    DeleteShardKey,
    CreatePayloadIndex,
    DeletePayloadIndex,
    Upsert,
    Retrieve,
    GetPoint,
    DeletePoints,
    Scroll,
    Count,
    Facet,
    Query,
    QueryBatch,
    Search,
    SearchBatch,
    SearchGroups,
    QueryGroups,
    Recommend,
    RecommendBatch,
    Discover,
    DiscoverBatch,
    RecommendGroups,
    MatrixPairs,
    MatrixOffsets,
    SetPayload,
    OverwritePayload,
    DeletePayload,
    ClearPayload,
    UpdateBatch,
    TenantInfo,
    SuspendTenant,
    ResumeTenant,
    TenantQuota,
    SetTenantQuota,
    TenantUsage,
    CollectionReplicas,
    UpdateCollectionCluster,
    Rebalance,
}

impl Operation {
    /// The operation's name in the audit log.
    pub fn audit_name(self) -> &'static str {
        match self {
            Operation::ServiceInfo => "service.info",
            Operation::Health => "service.health",
            Operation::Live => "service.live",
            Operation::Ready => "service.ready",
            Operation::Metrics => "metrics",
            Operation::ClusterInfo => "cluster.info",
            Operation::RemovePeer => "cluster.remove_peer",
            Operation::ListCollections => "collections.list",
            Operation::CreateCollection => "collection.create",
            Operation::GetCollection => "collection.info",
            Operation::DeleteCollection => "collection.delete",
            Operation::UpdateCollection => "collection.update",
            Operation::CollectionExists => "collection.exists",
            Operation::CollectionCluster => "collection.cluster",
            Operation::UpdateAliases => "aliases.update",
            Operation::CollectionAliases => "collection.aliases",
            Operation::ListAliases => "aliases.list",
            Operation::CreateShardKey => "shard_key.create",
            Operation::ListShardKeys => "shard_key.list",
            Operation::DeleteShardKey => "shard_key.delete",
            Operation::CreatePayloadIndex => "payload_index.create",
            Operation::DeletePayloadIndex => "payload_index.delete",
            Operation::Upsert => "points.upsert",
            Operation::Retrieve => "points.retrieve",
            Operation::GetPoint => "points.get",
            Operation::DeletePoints => "points.delete",
            Operation::Scroll => "points.scroll",
            Operation::Count => "points.count",
            Operation::Facet => "points.facet",
            Operation::Query => "points.query",
            Operation::QueryBatch => "points.query_batch",
            Operation::Search => "points.search",
            Operation::SearchBatch => "points.search_batch",
            Operation::SearchGroups => "points.search_groups",
            Operation::QueryGroups => "points.query_groups",
            Operation::Recommend => "points.recommend",
            Operation::RecommendBatch => "points.recommend_batch",
            Operation::Discover => "points.discover",
            Operation::DiscoverBatch => "points.discover_batch",
            Operation::RecommendGroups => "points.recommend_groups",
            Operation::MatrixPairs => "points.matrix_pairs",
            Operation::MatrixOffsets => "points.matrix_offsets",
            Operation::SetPayload => "payload.set",
            Operation::OverwritePayload => "payload.overwrite",
            Operation::DeletePayload => "payload.delete",
            Operation::ClearPayload => "payload.clear",
            Operation::UpdateBatch => "points.batch",
            Operation::TenantInfo => "tenant.info",
            Operation::SuspendTenant => "tenant.suspend",
            Operation::ResumeTenant => "tenant.resume",
            Operation::TenantQuota => "tenant.quota",
            Operation::SetTenantQuota => "tenant.set_quota",
            Operation::TenantUsage => "tenant.usage",
            Operation::CollectionReplicas => "collection.replicas",
            Operation::UpdateCollectionCluster => "collection.update_cluster",
            Operation::Rebalance => "cluster.rebalance",
        }
    }

    /// The quota class: reads and searches take the read bucket (and a concurrent search
    /// place), writes the write buckets; `None` is not metered.
    pub fn quota_class(self) -> Option<QuotaOp> {
        match self {
            Operation::Query
            | Operation::QueryBatch
            | Operation::Search
            | Operation::SearchBatch
            | Operation::SearchGroups
            | Operation::QueryGroups
            | Operation::Recommend
            | Operation::RecommendBatch
            | Operation::Discover
            | Operation::DiscoverBatch
            | Operation::RecommendGroups
            | Operation::MatrixPairs
            | Operation::MatrixOffsets => Some(QuotaOp::Search),
            Operation::Retrieve
            | Operation::GetPoint
            | Operation::Scroll
            | Operation::Count
            | Operation::Facet => Some(QuotaOp::Read),
            Operation::Upsert
            | Operation::DeletePoints
            | Operation::SetPayload
            | Operation::OverwritePayload
            | Operation::DeletePayload
            | Operation::ClearPayload
            | Operation::UpdateBatch => Some(QuotaOp::Write),
            Operation::ServiceInfo
            | Operation::Health
            | Operation::Live
            | Operation::Ready
            | Operation::Metrics
            | Operation::ClusterInfo
            | Operation::RemovePeer
            | Operation::ListCollections
            | Operation::CreateCollection
            | Operation::GetCollection
            | Operation::DeleteCollection
            | Operation::UpdateCollection
            | Operation::CollectionExists
            | Operation::CollectionCluster
            | Operation::UpdateAliases
            | Operation::CollectionAliases
            | Operation::ListAliases
            | Operation::CreateShardKey
            | Operation::ListShardKeys
            | Operation::DeleteShardKey
            | Operation::CreatePayloadIndex
            | Operation::DeletePayloadIndex
            | Operation::TenantInfo
            | Operation::SuspendTenant
            | Operation::ResumeTenant
            | Operation::TenantQuota
            | Operation::SetTenantQuota
            | Operation::TenantUsage
            | Operation::CollectionReplicas
            | Operation::UpdateCollectionCluster
            | Operation::Rebalance => None,
        }
    }

    /// Whether the route answers without credentials (health and the banner, as in Qdrant).
    /// Public routes are neither authenticated nor audited.
    pub fn is_public(self) -> bool {
        match self {
            Operation::ServiceInfo | Operation::Health | Operation::Live | Operation::Ready => true,
            Operation::Metrics
            | Operation::ClusterInfo
            | Operation::RemovePeer
            | Operation::ListCollections
            | Operation::CreateCollection
            | Operation::GetCollection
            | Operation::DeleteCollection
            | Operation::UpdateCollection
            | Operation::CollectionExists
            | Operation::CollectionCluster
            | Operation::UpdateAliases
            | Operation::CollectionAliases
            | Operation::ListAliases
            | Operation::CreateShardKey
            | Operation::ListShardKeys
            | Operation::DeleteShardKey
            | Operation::CreatePayloadIndex
            | Operation::DeletePayloadIndex
            | Operation::Upsert
            | Operation::Retrieve
            | Operation::GetPoint
            | Operation::DeletePoints
            | Operation::Scroll
            | Operation::Count
            | Operation::Facet
            | Operation::Query
            | Operation::QueryBatch
            | Operation::Search
            | Operation::SearchBatch
            | Operation::SearchGroups
            | Operation::QueryGroups
            | Operation::Recommend
            | Operation::RecommendBatch
            | Operation::Discover
            | Operation::DiscoverBatch
            | Operation::RecommendGroups
            | Operation::MatrixPairs
            | Operation::MatrixOffsets
            | Operation::SetPayload
            | Operation::OverwritePayload
            | Operation::DeletePayload
            | Operation::ClearPayload
            | Operation::UpdateBatch
            | Operation::TenantInfo
            | Operation::SuspendTenant
            | Operation::ResumeTenant
            | Operation::TenantQuota
            | Operation::SetTenantQuota
            | Operation::TenantUsage
            | Operation::CollectionReplicas
            | Operation::UpdateCollectionCluster
            | Operation::Rebalance => false,
        }
    }
}

/// One row of the table.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub operation: Operation,
    pub handler: MethodRouter<AppState>,
}

/// Every endpoint. The paths are also the `route` label of the HTTP metrics, so their parameter
/// names (`{c}` collection, `{t}` tenant) stay as dashboards know them; `{c}` is the one the
/// middleware reads for 404s and the audit line. One row a line, so the table reads as one.
#[rustfmt::skip]
pub fn table() -> Vec<Route> {
    use Operation as Op;
    vec![
        row(Method::GET, "/", Op::ServiceInfo, service::root),
        row(Method::GET, "/healthz", Op::Health, service::health),
        row(Method::GET, "/livez", Op::Live, service::health),
        row(Method::GET, "/readyz", Op::Ready, service::ready),
        row(Method::GET, "/metrics", Op::Metrics, service::metrics),
        row(Method::GET, "/cluster", Op::ClusterInfo, service::cluster),
        row(Method::DELETE, "/cluster/peer/{id}", Op::RemovePeer, service::remove_peer),
        row(Method::GET, "/collections", Op::ListCollections, collections::list),
        row(Method::PUT, "/collections/{c}", Op::CreateCollection, collections::create),
        row(Method::GET, "/collections/{c}", Op::GetCollection, collections::info),
        row(Method::DELETE, "/collections/{c}", Op::DeleteCollection, collections::delete),
        row(Method::PATCH, "/collections/{c}", Op::UpdateCollection, collections::update),
        row(Method::GET, "/collections/{c}/exists", Op::CollectionExists, collections::exists),
        row(Method::POST, "/collections/aliases", Op::UpdateAliases, aliases::update),
        row(Method::GET, "/collections/{c}/aliases", Op::CollectionAliases, aliases::of_collection),
        row(Method::GET, "/aliases", Op::ListAliases, aliases::list),
        row(Method::GET, "/collections/{c}/cluster", Op::CollectionCluster, shard_keys::collection_cluster),
        row(Method::POST, "/collections/{c}/cluster", Op::UpdateCollectionCluster, shard_keys::update_cluster),
        row(Method::PUT, "/collections/{c}/shards", Op::CreateShardKey, shard_keys::create),
        row(Method::GET, "/collections/{c}/shards", Op::ListShardKeys, shard_keys::list),
        row(Method::POST, "/collections/{c}/shards/delete", Op::DeleteShardKey, shard_keys::delete),
        row(Method::PUT, "/collections/{c}/index", Op::CreatePayloadIndex, collections::create_index),
        row(Method::DELETE, "/collections/{c}/index/{field}", Op::DeletePayloadIndex, collections::delete_index),
        row(Method::PUT, "/collections/{c}/points", Op::Upsert, points::upsert),
        row(Method::POST, "/collections/{c}/points", Op::Retrieve, points::retrieve),
        row(Method::GET, "/collections/{c}/points/{id}", Op::GetPoint, points::get),
        row(Method::POST, "/collections/{c}/points/delete", Op::DeletePoints, points::delete),
        row(Method::POST, "/collections/{c}/points/scroll", Op::Scroll, points::scroll),
        row(Method::POST, "/collections/{c}/points/count", Op::Count, points::count),
        row(Method::POST, "/collections/{c}/facet", Op::Facet, facet::facet),
        row(Method::POST, "/collections/{c}/points/query", Op::Query, query::query),
        row(Method::POST, "/collections/{c}/points/query/batch", Op::QueryBatch, query::query_batch),
        row(Method::POST, "/collections/{c}/points/search", Op::Search, query::search),
        row(Method::POST, "/collections/{c}/points/search/batch", Op::SearchBatch, query::search_batch),
        row(Method::POST, "/collections/{c}/points/search/groups", Op::SearchGroups, groups::search_groups),
        row(Method::POST, "/collections/{c}/points/query/groups", Op::QueryGroups, groups::query_groups),
        row(Method::POST, "/collections/{c}/points/recommend", Op::Recommend, query::recommend),
        row(Method::POST, "/collections/{c}/points/recommend/batch", Op::RecommendBatch, query::recommend_batch),
        row(Method::POST, "/collections/{c}/points/recommend/groups", Op::RecommendGroups, groups::recommend_groups),
        row(Method::POST, "/collections/{c}/points/discover", Op::Discover, query::discover),
        row(Method::POST, "/collections/{c}/points/discover/batch", Op::DiscoverBatch, query::discover_batch),
        row(Method::POST, "/collections/{c}/points/search/matrix/pairs", Op::MatrixPairs, matrix::pairs),
        row(Method::POST, "/collections/{c}/points/search/matrix/offsets", Op::MatrixOffsets, matrix::offsets),
        row(Method::POST, "/collections/{c}/points/payload", Op::SetPayload, points::set_payload),
        row(Method::PUT, "/collections/{c}/points/payload", Op::OverwritePayload, points::overwrite_payload),
        row(Method::POST, "/collections/{c}/points/payload/delete", Op::DeletePayload, points::delete_payload),
        row(Method::POST, "/collections/{c}/points/payload/clear", Op::ClearPayload, points::clear_payload),
        row(Method::POST, "/collections/{c}/points/batch", Op::UpdateBatch, batch::update_batch),
        row(Method::GET, "/admin/tenants/{t}", Op::TenantInfo, admin::tenant),
        row(Method::POST, "/admin/tenants/{t}/suspend", Op::SuspendTenant, admin::suspend),
        row(Method::POST, "/admin/tenants/{t}/resume", Op::ResumeTenant, admin::resume),
        row(Method::GET, "/admin/tenants/{t}/quota", Op::TenantQuota, admin::quota),
        row(Method::PUT, "/admin/tenants/{t}/quota", Op::SetTenantQuota, admin::set_quota),
        row(Method::GET, "/admin/tenants/{t}/usage", Op::TenantUsage, admin::usage),
        row(Method::GET, "/admin/collections/{c}/replicas", Op::CollectionReplicas, admin::replicas),
        row(Method::POST, "/admin/rebalance", Op::Rebalance, admin::rebalance),
    ]
}

fn row<H, T>(method: Method, path: &'static str, operation: Operation, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone())
        .expect("the table names only methods axum can route (GET, PUT, POST, DELETE, PATCH)");
    Route {
        method,
        path,
        operation,
        handler: on(filter, handler),
    }
}

/// The operation of a request, looked up by its method and the route axum matched (the
/// table's path). Built once from [`table`], so it cannot disagree with the routes served.
pub struct Operations(HashMap<(Method, &'static str), Operation>);

impl Operations {
    pub fn of(table: &[Route]) -> Operations {
        Operations(
            table
                .iter()
                .map(|r| ((r.method.clone(), r.path), r.operation))
                .collect(),
        )
    }

    /// `None` for a method the route does not serve (axum answers 405; audited as "other").
    pub fn get(&self, method: &Method, matched_path: &str) -> Option<Operation> {
        self.0.get(&(method.clone(), matched_path)).copied()
    }
}

/// The name of the path parameter that names a collection.
pub const COLLECTION_PARAM: &str = "c";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_route_is_listed_once_and_every_operation_has_a_distinct_name() {
        let table = table();
        let mut seen = HashSet::new();
        for r in &table {
            assert!(
                seen.insert((r.method.clone(), r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
        }
        let names: HashSet<_> = table.iter().map(|r| r.operation.audit_name()).collect();
        let ops: HashSet<_> = table.iter().map(|r| r.operation).collect();
        assert_eq!(names.len(), ops.len(), "two operations share an audit name");
        assert_eq!(Operations::of(&table).0.len(), table.len());
    }

    #[test]
    fn points_operations_are_metered_and_public_routes_are_the_service_ones() {
        for r in table() {
            let metered = r.operation.quota_class().is_some();
            // Qdrant's facet counts points but is not under /points
            assert_eq!(
                metered,
                r.path.starts_with("/collections/{c}/points") || r.path == "/collections/{c}/facet",
                "{} {}",
                r.method,
                r.path
            );
            assert_eq!(
                r.operation.is_public(),
                ["/", "/healthz", "/livez", "/readyz"].contains(&r.path),
                "{}",
                r.path
            );
        }
    }
}
