//! Routing of data requests: which shards a request may touch, the fan-out to them, and the merge
//! of their answers. A request names shard keys (tenants); only those keys' shards are called.
//!
//! The router sits above the catalog and the peer link: it reads placement from the catalog's
//! metadata view and calls shards through [`fanout`] (local serving or the link); access decides
//! what a request may touch, [`merge`] puts the shards' answers together.
//!
//! Every data request passes through the router actor ([`RouterActor`]): it takes the caller's
//! tenant context, refuses suspended tenants, decides the request's [`Scope`] (only the shards
//! and points the caller may reach, see [`crate::access`]) and hands the fan-out to a task of
//! its own, so requests never wait for each other in the actor. Credentials are verified before
//! the actor, on the request's own task (signature checks cost up to ~200 µs and must not
//! serialise), so the actor's messages carry a verified [`Principal`].

mod fanout;
mod merge;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use tessera_cluster::{Error, ErrorKind, Result};
use tessera_shard::actor::{NewPoint, Selector, WriteOp};
use tessera_shard::filter::Filter;
use tessera_shard::point::{Payload, PointId};
use tessera_shard::store::{Hit, PayloadSelector, Record, SearchParams};

use self::fanout::{Reach, read_all, replies, write_all};
use self::merge::{groups, merge_hits, merge_pages, records_in_order, shard_for};
use crate::access::{self, Need, Scope};
use crate::catalog::Catalog;
pub use crate::context::{
    Cost, KeySelector, Keyed, PointsWrite, ReadConsistency, RequestContext, Target,
};
use crate::peer::Link;
use crate::quota::Quotas;
use crate::replication::Replication;
use crate::shard_rpc::{ReadOp, ReadReply};

/// The request context under the name the API uses.
pub type Ctx = RequestContext;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Job = Box<dyn FnOnce(Result<Scope>) -> BoxFuture + Send>;

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
            ctx.note.deny(ctx.principal.tenant.as_deref(), &sel);
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
    // a collection's name or one of its aliases
    let c = state
        .lookup(collection)
        .ok_or_else(|| access::missing_collection(collection))?;
    let mut scope = access::scope_named(&ctx.principal, c, collection, sel, need)?;
    // The tenant a request is attributed to: the caller's, else the one shard key it reaches.
    let tenant = match &ctx.principal.tenant {
        // the node's own lookups (value_exists) belong to no tenant
        _ if ctx.internal => None,
        Some(t) => Some(t.clone()),
        None => {
            let mut keys = scope.targets.iter().map(|target| target.key.as_ref());
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
    ctx.note.set_scope(tenant.as_deref(), &scope.targets);
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
    scope.consistency = ctx.consistency;
    let me = catalog.node_id;
    let link = catalog.link().map(|l| &**l);
    scope.nodes = scope
        .targets
        .iter()
        .filter_map(|target| {
            let shard = c.shards.get(&target.shard)?;
            let nodes = match need {
                Need::Write => vec![shard.primary()?],
                Need::Read => readers(shard, me, link),
            };
            Some((target.shard, nodes))
        })
        .collect();
    Ok(scope)
}

/// Spreads reads over a shard's in-sync replicas.
static READ_TURN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The replicas a read of `shard` may use, best first: the in-sync ones, this node's first,
/// then those on reachable nodes in turn (balanced), then the rest. A shard with no in-sync
/// replica answers from its primary, which refuses (503) until one is back.
pub(crate) fn readers(
    shard: &tessera_cluster::meta::ShardMeta,
    me: tessera_cluster::meta::NodeId,
    link: Option<&Link>,
) -> Vec<tessera_cluster::meta::NodeId> {
    let mut in_sync: Vec<_> = shard.in_sync().collect();
    if in_sync.is_empty() {
        return shard.primary().into_iter().collect();
    }
    if in_sync.len() > 1 {
        let turn = READ_TURN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = in_sync.len();
        in_sync.rotate_left(turn % n);
    }
    let up = |n: &tessera_cluster::meta::NodeId| link.is_none_or(|l| l.check_up(*n).is_ok());
    let mut out = Vec::with_capacity(in_sync.len());
    out.extend(in_sync.iter().copied().filter(|n| *n == me));
    out.extend(in_sync.iter().copied().filter(|n| *n != me && up(n)));
    out.extend(in_sync.iter().copied().filter(|n| *n != me && !up(n)));
    out
}

/// A stored record as the caller names it (its id mapped out of the caller's id space).
fn record_out(scope: &Scope, mut r: Record) -> Record {
    r.id = scope.id_out(r.id);
    r
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
    /// The replica sets (writes go to primaries, reads to in-sync replicas).
    pub replication: Arc<Replication>,
    actor: ActorRef<RouterMsg>,
}

impl Router {
    /// Spawns the router actor.
    pub async fn start(
        catalog: Arc<Catalog>,
        quotas: Arc<Quotas>,
        link: Option<Arc<Link>>,
        replication: Arc<Replication>,
    ) -> Result<Router> {
        let (actor, _handle) = Actor::spawn(None, RouterActor, (catalog.clone(), quotas.clone()))
            .await
            .map_err(|e| Error::internal(format!("start router actor: {e}")))?;
        Ok(Router {
            catalog,
            quotas,
            link,
            replication,
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
            replication: self.replication.clone(),
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
        update_filter: Option<Filter>,
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
                    p.id = scope.id_in(&p.id);
                }
                let mut per_shard: BTreeMap<Target, Vec<NewPoint>> = BTreeMap::new();
                for (key, shards) in groups(&scope.targets) {
                    for p in &points {
                        per_shard
                            .entry(Target::new(shard_for(&shards, &p.id), key.clone()))
                            .or_default()
                            .push(p.clone());
                    }
                }
                // an existing point outside the caller's scope, or not matching the caller's
                // update_filter, is left as it is
                let guard = scope.narrow(scope.filter_in(update_filter));
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
                        let ids: Vec<PointId> = ids.iter().map(|id| scope.id_in(id)).collect();
                        let mut per_shard: BTreeMap<Target, Vec<PointId>> = BTreeMap::new();
                        for (key, shards) in groups(&scope.targets) {
                            for id in &ids {
                                per_shard
                                    .entry(Target::new(shard_for(&shards, id), key.clone()))
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
                        let f = scope.narrow(scope.filter_in(Some(f))).unwrap_or_default();
                        for target in scope.targets.iter().cloned() {
                            jobs.push((target, make(Selector::Filter(f.clone()))));
                        }
                    }
                }
                write_all(&cat, &scope, jobs)
                    .await
                    .map_err(|e| scope.error_out(e))
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
                let ids: Vec<PointId> = ids.iter().map(|id| scope.id_in(id)).collect();
                let op = ReadOp::Retrieve {
                    ids: ids.clone(),
                    filter,
                    with_payload,
                    with_vector,
                };
                let space = scope.clone();
                let parts = replies(read_all(&cat, scope, op).await?, ReadReply::into_records)?;
                // answer in the order asked; the same id under two shard keys is two points
                Ok(records_in_order(parts, &ids)
                    .into_iter()
                    .map(|(k, r)| (k, record_out(&space, r)))
                    .collect())
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
                let filter = scope.narrow(scope.filter_in(filter));
                let op = ReadOp::Scroll {
                    offset: offset.map(|o| scope.id_in(&o)),
                    limit,
                    filter,
                    with_payload,
                    with_vector,
                };
                let space = scope.clone();
                let parts = replies(read_all(&cat, scope, op).await?, ReadReply::into_page)?;
                let (records, next) = merge_pages(parts, limit);
                let records = records
                    .into_iter()
                    .map(|(k, r)| (k, record_out(&space, r)))
                    .collect();
                Ok((records, next.map(|n| space.id_out(n))))
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
                let filter = scope.narrow(scope.filter_in(filter));
                let parts = read_all(&cat, scope, ReadOp::Count { filter }).await?;
                let counts = replies(parts, ReadReply::into_count)?;
                Ok(counts.into_iter().map(|(_, count)| count).sum())
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
                    id: scope.id_in(&id),
                    filter,
                };
                let parts = read_all(&cat, scope, op).await?;
                parts
                    .into_iter()
                    .find_map(|(_, reply)| reply.into_vector().flatten())
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
                params.filter = scope.narrow(scope.filter_in(params.filter.take()));
                params.exclude = params.exclude.take().map(|id| scope.id_in(&id));
                let k = params.k;
                let space = scope.clone();
                let parts = read_all(&cat, scope, ReadOp::Search(params)).await?;
                let parts = replies(parts, ReadReply::into_hits)?;
                Ok(merge_hits(parts, k, offset)
                    .into_iter()
                    .map(|(k, mut h)| {
                        h.record = record_out(&space, h.record);
                        (k, h)
                    })
                    .collect())
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
