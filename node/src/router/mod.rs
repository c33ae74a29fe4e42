//! Routing of data requests: which shards a request may touch, the fan-out to them, and the merge
//! of their answers. A request names shard keys (tenants); only those keys' shards are called.
//!
//! Every data request passes through the router actor ([`RouterActor`]): it takes the caller's
//! tenant context, refuses suspended tenants, decides the request's [`Scope`] (only the shards
//! and points the caller may reach, see [`crate::access`]) and hands the fan-out to a task of
//! its own, so requests never wait for each other in the actor. Credentials are verified before
//! the actor, on the request's own task (signature checks cost up to ~200 µs and must not
//! serialise), so the actor's messages carry a verified [`Principal`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use tessera_cluster::meta::{CollectionMeta, NodeId, ShardId, ShardKey, ShardingMethod};
use tessera_cluster::{Error, ErrorKind, Result};
use tessera_shard::actor::{NewPoint, Selector, WriteOp};
use tessera_shard::filter::Filter;
use tessera_shard::point::{Payload, PointId};
use tessera_shard::store::{Hit, PayloadSelector, Record, SearchParams};
use tokio::task::JoinSet;

use crate::access::{self, Need, Scope};
use crate::audit::RequestNote;
use crate::auth::Principal;
use crate::catalog::Catalog;
use crate::cluster::Link;
use crate::quota::Quotas;
use crate::remote::{ReadOp, ReadReply, ShardReply, ShardRpc, WireRead, WireWrite, run_read};

/// Which shard keys a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// No key: every shard of the collection (reads only, in a custom-sharded collection).
    All,
    Keys(Vec<ShardKey>),
    /// The target keys if they exist, else the fallback.
    Fallback {
        target: Vec<ShardKey>,
        fallback: ShardKey,
    },
}

/// A result with the shard key it came from (None in an auto-sharded collection).
pub type Keyed<T> = (Option<ShardKey>, T);

/// A shard a request goes to, with the shard key the shard must own.
pub type Target = (ShardId, Option<ShardKey>);

/// The shards a request may touch.
pub fn targets(c: &CollectionMeta, sel: &KeySelector, write: bool) -> Result<Vec<Target>> {
    match c.params.sharding_method {
        ShardingMethod::Auto => match sel {
            KeySelector::All => Ok(c.shards.keys().map(|s| (*s, None)).collect()),
            KeySelector::Keys(_) | KeySelector::Fallback { .. } => Err(Error::bad_request(
                "Shard key specified, but the collection uses sharding_method auto",
            )),
        },
        ShardingMethod::Custom => {
            let keys: Vec<ShardKey> = match sel {
                KeySelector::All if write => {
                    return Err(Error::bad_request(
                        "Shard key must be specified for a write to a collection with custom sharding",
                    ));
                }
                KeySelector::All => {
                    return Ok(c.shards.values().map(|s| (s.id, s.key.clone())).collect());
                }
                KeySelector::Keys(k) => k.clone(),
                KeySelector::Fallback { target, fallback } => {
                    if target.iter().all(|k| c.shard_keys.contains_key(k)) {
                        target.clone()
                    } else {
                        vec![fallback.clone()]
                    }
                }
            };
            if keys.is_empty() {
                return Err(Error::bad_request("shard_key must name at least one key"));
            }
            let mut out = Vec::new();
            for k in keys {
                let shards = c
                    .shards_of_key(&k)
                    .ok_or_else(|| Error::not_found(format!("Shard key {k} not found")))?;
                out.extend(shards.iter().map(|s| (*s, Some(k.clone()))));
            }
            out.sort();
            out.dedup();
            Ok(out)
        }
    }
}

/// Groups targets by shard key (None for auto sharding), each group's shards in id order.
fn groups(targets: &[Target]) -> BTreeMap<Option<ShardKey>, Vec<ShardId>> {
    let mut g: BTreeMap<Option<ShardKey>, Vec<ShardId>> = BTreeMap::new();
    for (s, k) in targets {
        g.entry(k.clone()).or_default().push(*s);
    }
    g
}

/// The shard of a group that holds `id`.
fn shard_for(shards: &[ShardId], id: &PointId) -> ShardId {
    shards[(id.stable_hash() % shards.len() as u64) as usize]
}

/// The context of one request: who is calling, and what is learnt about it on the way
/// (tenant, shard keys, admission: see [`RequestNote`]).
#[derive(Clone)]
pub struct Ctx {
    pub principal: Arc<Principal>,
    pub note: Arc<RequestNote>,
}

impl Ctx {
    /// A full-manage context for the node's own requests (revocation checks, tests).
    pub fn system() -> Ctx {
        Ctx {
            principal: Arc::new(Principal::manage(crate::auth::AuthMethod::Unauthenticated)),
            note: Arc::new(RequestNote::default()),
        }
    }
}

/// A points write that selects points by ids or filter.
#[derive(Debug, Clone)]
pub enum PointsWrite {
    Delete,
    SetPayload {
        payload: Payload,
        key: Option<String>,
    },
    OverwritePayload(Payload),
    DeletePayload(Vec<String>),
    ClearPayload,
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Job = Box<dyn FnOnce(Result<Scope>) -> BoxFuture + Send>;

/// What a request asks of its tenant's quotas beyond one request: points in a write batch,
/// the `limit` of a read, whether it adds stored data.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub batch: usize,
    pub limit: usize,
    /// Adds points (an upsert): checked against the stored points and bytes quotas.
    pub stores: bool,
}

/// One request for the router actor.
pub struct Route {
    pub ctx: Ctx,
    pub collection: String,
    pub sel: KeySelector,
    pub need: Need,
    pub cost: Cost,
    /// Runs the fan-out with the decided scope (or answers the refusal).
    job: Job,
}

pub enum RouterMsg {
    Route(Box<Route>),
}

/// The router actor: decides, then lets a task do the work.
pub struct RouterActor;

impl Actor for RouterActor {
    type Msg = RouterMsg;
    type State = (Arc<Catalog>, Arc<Quotas>);
    type Arguments = (Arc<Catalog>, Arc<Quotas>);

    async fn pre_start(
        &self,
        _me: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> std::result::Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        (catalog, quotas): &mut Self::State,
    ) -> std::result::Result<(), ActorProcessingErr> {
        let RouterMsg::Route(route) = msg;
        let Route {
            ctx,
            collection,
            sel,
            need,
            cost,
            job,
        } = *route;
        let decision = decide(catalog, quotas, &ctx, &collection, &sel, need, cost);
        if let Err(e) = &decision
            && (ctx.principal.tenant.is_some() || e.kind == ErrorKind::Forbidden)
            && matches!(e.kind, ErrorKind::NotFound | ErrorKind::Forbidden)
        {
            ctx.note.deny();
        }
        tokio::spawn(job(decision));
        Ok(())
    }
}

/// The router actor's decision for one request: the scope it may touch, or the refusal.
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of one routed request, passed apart so the actor state is borrowed"
)]
fn decide(
    catalog: &Catalog,
    quotas: &Quotas,
    ctx: &Ctx,
    collection: &str,
    sel: &KeySelector,
    need: Need,
    cost: Cost,
) -> Result<Scope> {
    let state = catalog.meta.read();
    let c = state
        .collections
        .get(collection)
        .ok_or_else(|| access::missing_collection(collection))?;
    let mut scope = access::scope(&ctx.principal, c, sel, need)?;
    // The tenant a request is attributed to: the caller's, else the one shard key it reaches.
    let tenant = match &ctx.principal.tenant {
        Some(t) => Some(t.clone()),
        None => {
            let mut keys = scope.targets.iter().map(|(_, k)| k.as_ref());
            match keys.next() {
                Some(Some(first)) if keys.all(|k| k == Some(first)) => Some(first.to_string()),
                _ => None,
            }
        }
    };
    if let Some(t) = &tenant
        && state.is_suspended(t)
    {
        return Err(Error::new(ErrorKind::Forbidden, "tenant suspended"));
    }
    ctx.note.set_scope(tenant.as_deref(), &scope);
    // Quota admission, before any queue: rates and concurrency (unless the edge admitted the
    // request already), then batch and limit, then storage for writes that add points.
    if let Some(t) = &tenant {
        let adm = &quotas.admission;
        if !ctx.note.admitted() {
            let permit = match need {
                Need::Read => Some(adm.admit_read(t)?),
                Need::Write => {
                    adm.admit_write(t, ctx.note.body_bytes())?;
                    None
                }
            };
            ctx.note.admit(t, permit);
        }
        if cost.batch > 0 {
            adm.check_batch(t, cost.batch)?;
        }
        if cost.limit > 0 {
            adm.check_limit(t, cost.limit)?;
        }
        if cost.stores {
            let q = adm.quota(t);
            if q.max_points.is_some() || q.max_bytes.is_some() {
                let usage = Quotas::storage_of(&state, &catalog.shards, t);
                let per_point = scope.dim as u64 * 4;
                let add_bytes = ctx.note.body_bytes().max(per_point * cost.batch as u64);
                adm.check_storage(t, usage, cost.batch as u64, add_bytes)?;
            }
        }
    }
    scope.tenant = tenant;
    scope.nodes = scope
        .targets
        .iter()
        .filter_map(|(id, _)| {
            let r = c.shards.get(id)?.replicas.first()?;
            Some((*id, r.node))
        })
        .collect();
    Ok(scope)
}

/// The condition a tenant's written payload must keep: its partition field may be absent (then
/// it is stamped) or equal to the tenant's value, never another.
fn check_stamp(scope: &Scope, payload: &mut Payload, stamp: bool) -> Result<()> {
    let Some(p) = &scope.partition else {
        return Ok(());
    };
    match payload.get(&p.field) {
        Some(v) if *v != p.value => Err(Error::bad_request(format!(
            "Bad request: payload field `{}` holds the tenant and cannot be set to another value",
            p.field
        ))),
        _ => {
            if stamp {
                payload.insert(p.field.clone(), p.value.clone());
            }
            Ok(())
        }
    }
}

/// The router's handle: sends each request through the actor and awaits its answer.
pub struct Router {
    pub catalog: Arc<Catalog>,
    pub quotas: Arc<Quotas>,
    /// Calls to shards on other nodes (cluster mode).
    pub link: Option<Arc<Link>>,
    actor: ActorRef<RouterMsg>,
}

impl Router {
    /// Spawns the router actor.
    pub async fn start(
        catalog: Arc<Catalog>,
        quotas: Arc<Quotas>,
        link: Option<Arc<Link>>,
    ) -> Result<Router> {
        let (actor, _handle) = Actor::spawn(None, RouterActor, (catalog.clone(), quotas.clone()))
            .await
            .map_err(|e| Error::internal(format!("start router actor: {e}")))?;
        Ok(Router {
            catalog,
            quotas,
            link,
            actor,
        })
    }

    /// Stops the router actor (requests after this fail with 503).
    pub fn stop(&self) {
        self.actor.stop(None);
    }

    /// Routes one request: the actor decides its scope, then `f` runs on a task of its own.
    async fn route<T, F, Fut>(
        &self,
        ctx: &Ctx,
        collection: &str,
        sel: &KeySelector,
        need: Need,
        cost: Cost,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Reach, Scope) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reach = Reach {
            catalog: self.catalog.clone(),
            quotas: self.quotas.clone(),
            link: self.link.clone(),
        };
        let job: Job = Box::new(move |scope: Result<Scope>| -> BoxFuture {
            Box::pin(async move {
                let r = match scope {
                    Ok(scope) => f(reach, scope).await,
                    Err(e) => Err(e),
                };
                // the caller may be gone (client disconnected); the work is done either way
                let _ = tx.send(r);
            })
        });
        self.actor
            .cast(RouterMsg::Route(Box::new(Route {
                ctx: ctx.clone(),
                collection: collection.to_owned(),
                sel: sel.clone(),
                need,
                cost,
                job,
            })))
            .map_err(|_| Error::unavailable("the router is stopped"))?;
        rx.await
            .map_err(|_| Error::internal("the router dropped the request"))?
    }

    pub async fn upsert(
        &self,
        ctx: &Ctx,
        collection: &str,
        sel: &KeySelector,
        mut points: Vec<NewPoint>,
    ) -> Result<u64> {
        let cost = Cost {
            batch: points.len(),
            stores: true,
            ..Cost::default()
        };
        self.route(
            ctx,
            collection,
            sel,
            Need::Write,
            cost,
            move |cat, scope| async move {
                for p in &mut points {
                    check_stamp(&scope, &mut p.payload, true)?;
                }
                let mut per_shard: BTreeMap<Target, Vec<NewPoint>> = BTreeMap::new();
                for (key, shards) in groups(&scope.targets) {
                    for p in &points {
                        per_shard
                            .entry((shard_for(&shards, &p.id), key.clone()))
                            .or_default()
                            .push(p.clone());
                    }
                }
                let guard = scope.narrow(None);
                let jobs = per_shard
                    .into_iter()
                    .map(|(t, pts)| {
                        let op = match &guard {
                            Some(g) => WriteOp::UpsertWhere(pts, g.clone()),
                            None => WriteOp::Upsert(pts),
                        };
                        (t, op)
                    })
                    .collect();
                write_all(&cat, &scope, jobs).await
            },
        )
        .await
    }

    /// A write that selects points by ids or filter (delete, payload changes).
    pub async fn write_selected(
        &self,
        ctx: &Ctx,
        collection: &str,
        sel: &KeySelector,
        selector: Selector,
        write: PointsWrite,
    ) -> Result<u64> {
        let cost = Cost {
            batch: match &selector {
                Selector::Ids(ids) | Selector::IdsWhere(ids, _) => ids.len(),
                Selector::Filter(_) => 0,
            },
            ..Cost::default()
        };
        self.route(
            ctx,
            collection,
            sel,
            Need::Write,
            cost,
            move |cat, scope| async move {
                let write = scoped_write(&scope, write)?;
                let make = |selector: Selector| -> WriteOp {
                    match write.clone() {
                        PointsWrite::Delete => WriteOp::Delete(selector),
                        PointsWrite::SetPayload { payload, key } => WriteOp::SetPayload {
                            selector,
                            payload,
                            key,
                        },
                        PointsWrite::OverwritePayload(payload) => {
                            WriteOp::OverwritePayload { selector, payload }
                        }
                        PointsWrite::DeletePayload(keys) => {
                            WriteOp::DeletePayload { selector, keys }
                        }
                        PointsWrite::ClearPayload => WriteOp::ClearPayload(selector),
                    }
                };
                let guard = scope.narrow(None);
                let mut jobs = Vec::new();
                match selector {
                    Selector::Ids(ids) | Selector::IdsWhere(ids, _) => {
                        let mut per_shard: BTreeMap<Target, Vec<PointId>> = BTreeMap::new();
                        for (key, shards) in groups(&scope.targets) {
                            for id in &ids {
                                per_shard
                                    .entry((shard_for(&shards, id), key.clone()))
                                    .or_default()
                                    .push(id.clone());
                            }
                        }
                        for (t, ids) in per_shard {
                            let selector = match &guard {
                                Some(g) => Selector::IdsWhere(ids, g.clone()),
                                None => Selector::Ids(ids),
                            };
                            jobs.push((t, make(selector)));
                        }
                    }
                    Selector::Filter(f) => {
                        let f = scope.narrow(Some(f)).unwrap_or_default();
                        for target in scope.targets.iter().cloned() {
                            jobs.push((target, make(Selector::Filter(f.clone()))));
                        }
                    }
                }
                write_all(&cat, &scope, jobs).await
            },
        )
        .await
    }

    pub async fn retrieve(
        &self,
        ctx: &Ctx,
        collection: &str,
        sel: &KeySelector,
        ids: Vec<PointId>,
        with_payload: PayloadSelector,
        with_vector: bool,
    ) -> Result<Vec<Keyed<Record>>> {
        let cost = Cost {
            limit: ids.len(),
            ..Cost::default()
        };
        self.route(
            ctx,
            collection,
            sel,
            Need::Read,
            cost,
            move |cat, scope| async move {
                let filter = scope.narrow(None);
                let op = ReadOp::Retrieve {
                    ids: ids.clone(),
                    filter,
                    with_payload,
                    with_vector,
                };
                let parts = replies(read_all(&cat, scope, op).await?, |r| match r {
                    ReadReply::Records(r) => Some(r),
                    _ => None,
                })?;
                // answer in the order asked; the same id under two shard keys is two points
                let mut by_id: BTreeMap<PointId, Vec<Keyed<Record>>> = BTreeMap::new();
                for (key, recs) in parts {
                    for r in recs {
                        by_id
                            .entry(r.id.clone())
                            .or_default()
                            .push((key.clone(), r));
                    }
                }
                let mut out = Vec::new();
                for id in ids.iter() {
                    if let Some(mut rs) = by_id.remove(id) {
                        rs.sort_by(|a, b| a.0.cmp(&b.0));
                        out.extend(rs);
                    }
                }
                Ok(out)
            },
        )
        .await
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one call per field of Qdrant's scroll request"
    )]
    pub async fn scroll(
        &self,
        ctx: &Ctx,
        collection: &str,
        sel: &KeySelector,
        offset: Option<PointId>,
        limit: usize,
        filter: Option<Filter>,
        with_payload: PayloadSelector,
        with_vector: bool,
    ) -> Result<(Vec<Keyed<Record>>, Option<PointId>)> {
        let cost = Cost {
            limit,
            ..Cost::default()
        };
        self.route(
            ctx,
            collection,
            sel,
            Need::Read,
            cost,
            move |cat, scope| async move {
                let filter = scope.narrow(filter);
                let op = ReadOp::Scroll {
                    offset,
                    limit,
                    filter,
                    with_payload,
                    with_vector,
                };
                let parts = replies(read_all(&cat, scope, op).await?, |r| match r {
                    ReadReply::Page(recs, next) => Some((recs, next)),
                    _ => None,
                })?;
                Ok(merge_pages(parts, limit))
            },
        )
        .await
    }

    pub async fn count(
        &self,
        ctx: &Ctx,
        collection: &str,
        sel: &KeySelector,
        filter: Option<Filter>,
    ) -> Result<usize> {
        let cost = Cost::default();
        self.route(
            ctx,
            collection,
            sel,
            Need::Read,
            cost,
            move |cat, scope| async move {
                let filter = scope.narrow(filter);
                let parts = read_all(&cat, scope, ReadOp::Count { filter }).await?;
                parts
                    .into_iter()
                    .map(|(_, r)| match r {
                        ReadReply::Count(n) => Ok(n),
                        _ => Err(wrong_reply()),
                    })
                    .sum()
            },
        )
        .await
    }

    /// The stored vector of a point (for a query by point id).
    pub async fn vector_of(
        &self,
        ctx: &Ctx,
        collection: &str,
        sel: &KeySelector,
        id: PointId,
    ) -> Result<Vec<f32>> {
        let cost = Cost::default();
        self.route(
            ctx,
            collection,
            sel,
            Need::Read,
            cost,
            move |cat, scope| async move {
                let filter = scope.narrow(None);
                let op = ReadOp::VectorOf {
                    id: id.clone(),
                    filter,
                };
                let parts = read_all(&cat, scope, op).await?;
                parts
                    .into_iter()
                    .find_map(|(_, v)| match v {
                        ReadReply::Vector(v) => v,
                        _ => None,
                    })
                    .ok_or_else(|| Error::not_found(format!("No point with id {id} found")))
            },
        )
        .await
    }

    /// Nearest points over every target shard, merged: `offset` skipped, then `limit` returned.
    pub async fn search(
        &self,
        ctx: &Ctx,
        collection: &str,
        sel: &KeySelector,
        mut params: SearchParams,
        offset: usize,
    ) -> Result<Vec<Keyed<Hit>>> {
        let cost = Cost {
            limit: params.k,
            ..Cost::default()
        };
        self.route(
            ctx,
            collection,
            sel,
            Need::Read,
            cost,
            move |cat, scope| async move {
                if params.vector.len() != scope.dim {
                    return Err(Error::bad_request(format!(
                        "Wrong input: Vector dimension error: expected dim: {}, got {}",
                        scope.dim,
                        params.vector.len()
                    )));
                }
                params.filter = scope.narrow(params.filter.take());
                let k = params.k;
                let parts = read_all(&cat, scope, ReadOp::Search(params)).await?;
                let mut hits: Vec<Keyed<Hit>> = Vec::new();
                for (key, reply) in parts {
                    let ReadReply::Hits(hs) = reply else {
                        return Err(wrong_reply());
                    };
                    hits.extend(hs.into_iter().map(|h| (key.clone(), h)));
                }
                hits.sort_by(|a, b| {
                    a.1.distance
                        .total_cmp(&b.1.distance)
                        .then_with(|| a.1.record.id.cmp(&b.1.record.id))
                        .then_with(|| a.0.cmp(&b.0))
                });
                hits.truncate(k);
                Ok(hits.into_iter().skip(offset).collect())
            },
        )
        .await
    }
}

/// A points-selector write as the caller's scope allows it: in a payload-partitioned collection
/// the tenant's field can be neither changed nor removed, and clearing a payload keeps it.
fn scoped_write(scope: &Scope, write: PointsWrite) -> Result<PointsWrite> {
    let Some(p) = &scope.partition else {
        return Ok(write);
    };
    let refuse = || {
        Error::bad_request(format!(
            "Bad request: payload field `{}` holds the tenant and cannot be changed or removed",
            p.field
        ))
    };
    Ok(match write {
        PointsWrite::Delete => PointsWrite::Delete,
        PointsWrite::SetPayload { mut payload, key } => {
            if let Some(k) = &key {
                let first = k.split(['.', '[']).next().unwrap_or(k);
                if first == p.field || first.trim_matches('"') == p.field {
                    return Err(refuse());
                }
            } else {
                check_stamp(scope, &mut payload, false)?;
            }
            PointsWrite::SetPayload { payload, key }
        }
        PointsWrite::OverwritePayload(mut payload) => {
            check_stamp(scope, &mut payload, true)?;
            PointsWrite::OverwritePayload(payload)
        }
        PointsWrite::DeletePayload(keys) => {
            if keys.contains(&p.field) {
                return Err(refuse());
            }
            PointsWrite::DeletePayload(keys)
        }
        PointsWrite::ClearPayload => {
            let mut payload = Payload::new();
            payload.insert(p.field.clone(), p.value.clone());
            PointsWrite::OverwritePayload(payload)
        }
    })
}

/// What a routed job reaches: the shards (local, or on other nodes over the cluster link),
/// and the pool its CPU work runs on.
#[derive(Clone)]
pub struct Reach {
    pub catalog: Arc<Catalog>,
    pub quotas: Arc<Quotas>,
    pub link: Option<Arc<Link>>,
}

fn wrong_reply() -> Error {
    Error::internal("a shard answered a different kind of read")
}

/// The shards' answers of one kind (`pick` unwraps it); another kind is an internal error.
fn replies<T>(
    parts: Vec<(Option<ShardKey>, ReadReply)>,
    pick: impl Fn(ReadReply) -> Option<T>,
) -> Result<Vec<(Option<ShardKey>, T)>> {
    parts
        .into_iter()
        .map(|(k, r)| pick(r).map(|v| (k, v)).ok_or_else(wrong_reply))
        .collect()
}

/// The scheduler queue of requests attributed to no tenant (e.g. an admin's read of several
/// tenants' keys at once).
pub const UNATTRIBUTED: &str = "_unattributed";

/// How long a call to a shard on another node may take before it fails (503).
pub const SHARD_CALL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

impl Reach {
    /// The node holding the replica a request uses (one replica per shard for now).
    fn node_of(&self, scope: &Scope, shard: ShardId) -> NodeId {
        scope
            .nodes
            .get(&shard)
            .copied()
            .unwrap_or(self.catalog.node_id)
    }

    fn link_to(&self, node: NodeId) -> Result<&Arc<Link>> {
        let link = self.link.as_ref().ok_or_else(|| {
            Error::unavailable(format!(
                "shard on node {node} and this node is not in a cluster"
            ))
        })?;
        link.check_up(node)?;
        Ok(link)
    }
}

async fn write_all(reach: &Reach, scope: &Scope, jobs: Vec<(Target, WriteOp)>) -> Result<u64> {
    let mut set = JoinSet::new();
    let uid = scope.uid;
    for ((shard, key), op) in jobs {
        let node = reach.node_of(scope, shard);
        if node == reach.catalog.node_id {
            let cat = reach.catalog.clone();
            set.spawn(async move { serve_write(&cat, uid, shard, key, op).await });
        } else {
            let link = reach.link_to(node)?.clone();
            let rpc = ShardRpc::Write {
                uid,
                shard,
                key,
                op: WireWrite::from_op(&op),
            };
            set.spawn(async move {
                match link.call(node, &rpc).await? {
                    ShardReply::Seq(n) => Ok(n),
                    ShardReply::Read(_) => Err(wrong_reply()),
                }
            });
        }
    }
    let mut seq = 0;
    let mut first_err = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(s)) => seq = seq.max(s),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(Error::internal(format!("write task: {e}")));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(seq),
    }
}

/// Applies a write to a replica on this node (for a local request or a remote node's).
pub async fn serve_write(
    cat: &Catalog,
    uid: u64,
    shard: ShardId,
    key: Option<ShardKey>,
    op: WriteOp,
) -> Result<u64> {
    count_shard_request(key.as_ref(), "write");
    cat.shards.write((uid, shard), key.as_ref(), op).await
}

/// Runs a read on a replica on this node, through the fair scheduler under `tenant`.
pub async fn serve_read(
    cat: &Catalog,
    quotas: &Quotas,
    (uid, shard, key): (u64, ShardId, Option<ShardKey>),
    tenant: &str,
    weight: u32,
    op: Arc<ReadOp>,
) -> Result<ReadReply> {
    count_shard_request(key.as_ref(), "read");
    let data = cat.shards.reader((uid, shard), key.as_ref())?;
    quotas
        .scheduler
        .run(tenant, weight, 1, move || run_read(&data, &op))
        .await
}

/// Counts the shard requests this node serves, by shard key: the routing test reads them to
/// prove that nodes without a tenant's shards get no request for it.
fn count_shard_request(key: Option<&ShardKey>, kind: &'static str) {
    let key = key.map(|k| k.to_string()).unwrap_or_else(|| "_auto".into());
    metrics::counter!("tessera_shard_requests_total", "shard_key" => key, "kind" => kind)
        .increment(1);
}

/// Runs `op` on every target shard, concurrently: local replicas through the node's fair
/// scheduler (the CPU pool is shared across tenants by weight, so a flooding tenant waits in its
/// own queue), remote ones over the cluster link.
async fn read_all(
    reach: &Reach,
    scope: Scope,
    op: ReadOp,
) -> Result<Vec<(Option<ShardKey>, ReadReply)>> {
    let op = Arc::new(op);
    let mut set = JoinSet::new();
    let uid = scope.uid;
    let tenant = scope
        .tenant
        .clone()
        .unwrap_or_else(|| UNATTRIBUTED.to_owned());
    let weight = reach.quotas.admission.quota(&tenant).weight;
    for (shard, key) in scope.targets.iter().cloned() {
        let node = reach.node_of(&scope, shard);
        let tenant = tenant.clone();
        if node == reach.catalog.node_id {
            let (cat, quotas, op) = (reach.catalog.clone(), reach.quotas.clone(), op.clone());
            set.spawn(async move {
                let r = serve_read(
                    &cat,
                    &quotas,
                    (uid, shard, key.clone()),
                    &tenant,
                    weight,
                    op,
                )
                .await;
                r.map(|v| (key, v))
            });
        } else {
            let link = reach.link_to(node)?.clone();
            let rpc = ShardRpc::Read {
                uid,
                shard,
                key: key.clone(),
                tenant,
                weight,
                op: WireRead::from_op(&op),
            };
            set.spawn(async move {
                match link.call(node, &rpc).await? {
                    ShardReply::Read(r) => r.into_reply().map(|v| (key, v)),
                    ShardReply::Seq(_) => Err(wrong_reply()),
                }
            });
        }
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.map_err(|e| Error::internal(format!("read task: {e}")))??);
    }
    Ok(out)
}

/// Merges the shards' scroll pages into one page of `limit`, and the id that starts the next.
/// One shard's scroll page and the id that would start its next page.
type Page = (Vec<Record>, Option<PointId>);

fn merge_pages(
    parts: Vec<(Option<ShardKey>, Page)>,
    limit: usize,
) -> (Vec<Keyed<Record>>, Option<PointId>) {
    let mut all: Vec<Keyed<Record>> = Vec::new();
    let mut next: Option<PointId> = None;
    for (key, (recs, n)) in parts {
        all.extend(recs.into_iter().map(|r| (key.clone(), r)));
        if let Some(n) = n {
            next = Some(match next {
                Some(cur) if cur < n => cur,
                _ => n,
            });
        }
    }
    all.sort_by(|a, b| a.1.id.cmp(&b.1.id).then_with(|| a.0.cmp(&b.0)));
    if all.len() > limit {
        // the same id under several shard keys is one group: a page never splits it, or the
        // next page (which starts at that id) would repeat the copies already sent
        let mut cut = limit;
        if limit > 0 && all[limit].1.id == all[limit - 1].1.id {
            let id = &all[limit].1.id;
            let start = all.iter().position(|r| &r.1.id == id).unwrap_or(limit);
            cut = if start > 0 {
                start
            } else {
                all.iter().position(|r| &r.1.id != id).unwrap_or(all.len())
            };
        }
        let rest = all.split_off(cut);
        let first_rest = rest.into_iter().next().map(|r| r.1.id);
        next = match (first_rest, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    (all, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom() -> CollectionMeta {
        crate::access::tests::collection(ShardingMethod::Custom, &["a", "b"])
    }

    #[test]
    fn a_key_reaches_only_its_shards() {
        let c = custom();
        let a = ShardKey::Str("a".into());
        let t = targets(&c, &KeySelector::Keys(vec![a.clone()]), false).expect("targets");
        assert_eq!(t, vec![(0, Some(a.clone()))]);
        assert!(targets(&c, &KeySelector::All, true).is_err());
        assert_eq!(targets(&c, &KeySelector::All, false).expect("all").len(), 2);
        let missing = targets(
            &c,
            &KeySelector::Keys(vec![ShardKey::Str("zz".into())]),
            false,
        );
        assert_eq!(
            missing.expect_err("missing").kind,
            tessera_cluster::ErrorKind::NotFound
        );
        let fb = KeySelector::Fallback {
            target: vec![ShardKey::Str("zz".into())],
            fallback: a.clone(),
        };
        assert_eq!(
            targets(&c, &fb, true).expect("fallback"),
            vec![(0, Some(a))]
        );
    }
}
