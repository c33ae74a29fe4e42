//! The context of one data request and the plain words every layer above speaks: who calls
//! ([`RequestContext`]), what is learnt about the call on the way ([`RequestNote`]), which shard
//! keys it names ([`KeySelector`]), which shards it goes to ([`Target`]) and what it costs
//! ([`Cost`]).
//!
//! These types live at the bottom of the node so that access, quota, the shard RPC, the catalog,
//! the router, the audit log and the API can all use them without importing one another.
//!
//! Architecture invariant: this module imports no other module of the node except `auth` (for
//! the verified [`Principal`]); it holds data, not decisions.

use std::sync::Arc;

use parking_lot::Mutex;
use tessera_cluster::meta::{ShardId, ShardKey};
use tessera_shard::point::Payload;

use crate::auth::{AuthMethod, Principal};

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

/// A shard a request goes to, with the shard key the shard must own (None in an auto-sharded
/// collection). The serving replica re-checks the key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub shard: ShardId,
    pub key: Option<ShardKey>,
}

impl Target {
    pub fn new(shard: ShardId, key: Option<ShardKey>) -> Target {
        Target { shard, key }
    }
}

/// A result with the shard key it came from (None in an auto-sharded collection).
pub type Keyed<T> = (Option<ShardKey>, T);

/// The context of one request: who is calling, and what is learnt about it on the way
/// (tenant, shard keys, admission: see [`RequestNote`]).
#[derive(Clone)]
pub struct RequestContext {
    pub principal: Arc<Principal>,
    pub note: Arc<RequestNote>,
    /// The node's own request (a `value_exists` lookup): attributed to no tenant, so no tenant's
    /// suspension or quota applies to it, whichever shard keys it reads.
    pub internal: bool,
    /// How many of a shard's in-sync replicas a read consults (Qdrant's `consistency`).
    pub consistency: ReadConsistency,
}

/// Qdrant's read `consistency`: how many in-sync replicas of each shard a read asks, and which
/// values it returns. `Factor(n)`: ask n, return what all n have; `Quorum`: ask a majority,
/// return what all of them have; `Majority`: ask all, return what a majority has; `All`: ask all,
/// return what all have. A read that cannot get as many answers is refused (503).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadConsistency {
    #[default]
    One,
    Factor(usize),
    Majority,
    Quorum,
    All,
}

impl ReadConsistency {
    /// Parses the `consistency` query parameter's value.
    pub fn parse(text: &str) -> Option<ReadConsistency> {
        match text {
            "majority" => Some(ReadConsistency::Majority),
            "quorum" => Some(ReadConsistency::Quorum),
            "all" => Some(ReadConsistency::All),
            n => match n.parse::<usize>() {
                Ok(1) => Some(ReadConsistency::One),
                Ok(n) if n > 1 => Some(ReadConsistency::Factor(n)),
                _ => None,
            },
        }
    }

    /// With `in_sync` replicas: how many to ask, and in how many answers a value must be to be
    /// returned. None: more are asked for than there are.
    pub fn plan(self, in_sync: usize) -> Option<(usize, usize)> {
        let majority = in_sync / 2 + 1;
        let (ask, keep) = match self {
            ReadConsistency::One => (1, 1),
            ReadConsistency::Factor(n) => (n, n),
            ReadConsistency::Quorum => (majority, majority),
            ReadConsistency::Majority => (in_sync, majority),
            ReadConsistency::All => (in_sync, in_sync),
        };
        (ask <= in_sync.max(1)).then_some((ask.max(1), keep.max(1)))
    }
}

impl RequestContext {
    /// A caller's request.
    pub fn of(principal: Principal) -> RequestContext {
        RequestContext {
            principal: Arc::new(principal),
            note: Arc::new(RequestNote::default()),
            internal: false,
            consistency: ReadConsistency::One,
        }
    }
}

impl RequestContext {
    /// A full-manage context for the node's own requests (revocation checks, tests).
    pub fn system() -> RequestContext {
        RequestContext {
            principal: Arc::new(Principal::manage(AuthMethod::Unauthenticated)),
            note: Arc::new(RequestNote::default()),
            internal: true,
            consistency: ReadConsistency::One,
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

/// What a request asks of its tenant's quotas beyond one request: points in a write batch,
/// the `limit` of a read, whether it adds stored data.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub batch: usize,
    pub limit: usize,
    /// Adds points (an upsert): checked against the stored points and bytes quotas.
    pub stores: bool,
}

/// What the edge and the router learnt about a request: for its audit line, its per-tenant
/// metrics, and its admission (a request is admitted once, at the edge when its tenant is known
/// from the token, else by the router once the shard key it names is known).
#[derive(Default)]
pub struct RequestNote {
    inner: Mutex<NoteInner>,
}

#[derive(Default)]
struct NoteInner {
    tenant: Option<String>,
    shard_keys: Option<String>,
    denied: bool,
    admitted: bool,
    /// Held while the request runs: the tenant's concurrent-search place (a quota permit,
    /// released when the request's note is dropped).
    permit: Option<Box<dyn Send + Sync>>,
    /// The request body's size (Content-Length), for the write-bytes quota.
    body_bytes: u64,
}

impl RequestNote {
    /// The tenant the request is attributed to and the shards (with their keys) it reaches.
    pub fn set_scope(&self, tenant: Option<&str>, targets: &[Target]) {
        let mut keys: Vec<String> = targets
            .iter()
            .filter_map(|target| target.key.as_ref().map(|k| k.to_string()))
            .collect();
        keys.dedup();
        let mut inner = self.inner.lock();
        if inner.tenant.is_none() {
            inner.tenant = tenant.map(str::to_owned);
        }
        if !keys.is_empty() {
            inner.shard_keys = Some(keys.join(","));
        }
    }

    /// The request was refused by authorization (outside the caller's scope or rights); the
    /// audit line names the tenant and the shard keys the request asked for.
    pub fn deny(&self, tenant: Option<&str>, named: &KeySelector) {
        let keys: Vec<String> = match named {
            KeySelector::All => Vec::new(),
            KeySelector::Keys(keys) => keys.iter().map(ToString::to_string).collect(),
            KeySelector::Fallback { target, fallback } => target
                .iter()
                .chain(std::iter::once(fallback))
                .map(ToString::to_string)
                .collect(),
        };
        let mut inner = self.inner.lock();
        inner.denied = true;
        if inner.tenant.is_none() {
            inner.tenant = tenant.map(str::to_owned);
        }
        if inner.shard_keys.is_none() && !keys.is_empty() {
            inner.shard_keys = Some(keys.join(","));
        }
    }

    /// Marks the request admitted by quotas, keeping its permit (if any) until it ends.
    pub fn admit<P: Send + Sync + 'static>(&self, tenant: &str, permit: Option<P>) {
        let mut inner = self.inner.lock();
        inner.admitted = true;
        inner.permit = permit.map(|p| Box::new(p) as Box<dyn Send + Sync>);
        if inner.tenant.is_none() {
            inner.tenant = Some(tenant.to_owned());
        }
    }

    pub fn admitted(&self) -> bool {
        self.inner.lock().admitted
    }

    pub fn set_body_bytes(&self, bytes: u64) {
        self.inner.lock().body_bytes = bytes;
    }

    pub fn body_bytes(&self) -> u64 {
        self.inner.lock().body_bytes
    }

    pub fn denied(&self) -> bool {
        self.inner.lock().denied
    }

    pub fn tenant(&self) -> Option<String> {
        self.inner.lock().tenant.clone()
    }

    pub fn shard_keys(&self) -> Option<String> {
        self.inner.lock().shard_keys.clone()
    }
}
