//! Authorization: what an authenticated caller may reach in a collection. Pure functions over the
//! [`Principal`] and the collection's metadata; the router applies their answer to every request.
//! This is also where a request's shard keys become the shards it may touch ([`targets`]), so
//! every "not found" a data request can get is decided here, with one function per message
//! ([`missing_collection`], [`missing_key`]).
//!
//! Architecture invariants:
//! - Anything outside the caller's collections or tenant is answered exactly as a missing thing
//!   (404, same message), never 403: no enumeration of collections, shard keys or point ids.
//! - A caller with a tenant (from its token, or narrowed by `X-Tenant-Id`) reaches only that
//!   tenant's data: in a custom-sharded collection only the shard key of the tenant's name, in a
//!   payload-partitioned (auto-sharded) collection only points whose tenant field holds the
//!   tenant; its filters are ANDed with that condition and its writes stamped with it.
//! - In a payload-partitioned collection the tenant field is the token's `access[].payload`
//!   binding, else the collection's payload index marked `is_tenant`. A collection with neither
//!   is not partitioned, so a tenant caller cannot see it at all.

use std::collections::BTreeMap;

use serde_json::Value;
use tessera_cluster::meta::{
    CollectionMeta, NodeId, PayloadSchemaType, ShardId, ShardKey, ShardingMethod,
};
use tessera_cluster::{Error, ErrorKind, Result};
use tessera_shard::filter::{Condition, FieldCondition, Filter, JsonPath, Match, MatchValue};
use tessera_shard::point::PointId;

use crate::auth::Principal;
use crate::context::{KeySelector, Target};

/// What a request does to a collection's points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
}

/// The tenant's part of a payload-partitioned collection: the payload field and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    pub field: String,
    pub value: Value,
}

impl Partition {
    /// The condition a point of this tenant satisfies.
    pub fn filter(&self) -> Filter {
        let m = match &self.value {
            Value::Bool(b) => MatchValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => MatchValue::Integer(i),
                None => MatchValue::Keyword(n.to_string()),
            },
            Value::String(s) => MatchValue::Keyword(s.clone()),
            other => MatchValue::Keyword(other.to_string()),
        };
        Filter::new_must(Condition::Field(FieldCondition::new_match(
            JsonPath::key(self.field.clone()),
            Match::Value(m),
        )))
    }
}

/// A tenant's own id space in a payload-partitioned collection: the ids a tenant-bound caller
/// names are stored as ids of its own (`tenant:<value as JSON>/n:<20 digits>`, `/u:<uuid>`,
/// `/x:<string>`), so tenant A's point 21 and tenant B's point 21 are two points, and neither can
/// tell that the other exists. Callers without a tenant (admins) see and name the stored ids.
/// The encoding sorts as the ids do (numbers, then UUIDs, then strings, each in order), so scroll
/// order and offsets are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct IdSpace {
    prefix: String,
}

impl IdSpace {
    fn of(partition: &Partition) -> IdSpace {
        IdSpace {
            prefix: format!("tenant:{}/", partition.value),
        }
    }

    /// The stored id of the caller's id.
    pub fn inward(&self, id: &PointId) -> PointId {
        PointId::Str(match id {
            PointId::Num(n) => format!("{}n:{n:020}", self.prefix),
            PointId::Uuid(u) => format!("{}u:{u}", self.prefix),
            PointId::Str(s) => format!("{}x:{s}", self.prefix),
        })
    }

    /// The caller's id of a stored one; an id outside the space (never returned: every read
    /// of the tenant is narrowed to its partition) comes back as it is.
    pub fn outward(&self, id: PointId) -> PointId {
        let PointId::Str(s) = &id else { return id };
        let Some(rest) = s.strip_prefix(&self.prefix) else {
            return id;
        };
        if let Some(n) = rest.strip_prefix("n:").and_then(|n| n.parse().ok()) {
            return PointId::Num(n);
        }
        if let Some(u) = rest.strip_prefix("u:") {
            return PointId::Uuid(u.to_owned());
        }
        if let Some(x) = rest.strip_prefix("x:") {
            return PointId::Str(x.to_owned());
        }
        id
    }

    /// The filter with every `has_id` naming stored ids.
    pub fn filter_inward(&self, mut f: Filter) -> Filter {
        let map = |conds: &mut Vec<Condition>| {
            for c in conds.iter_mut() {
                self.condition_inward(c);
            }
        };
        map(&mut f.must);
        map(&mut f.should);
        map(&mut f.must_not);
        if let Some(m) = &mut f.min_should {
            map(&mut m.conditions);
        }
        f
    }

    fn condition_inward(&self, c: &mut Condition) {
        match c {
            Condition::HasId(ids) => {
                *ids = ids.iter().map(|id| self.inward(id)).collect();
            }
            Condition::Nested { filter, .. } | Condition::Filter(filter) => {
                *filter = self.filter_inward(std::mem::take(filter));
            }
            Condition::Field(_)
            | Condition::IsEmpty(_)
            | Condition::IsNull(_)
            | Condition::HasVector(_) => {}
        }
    }
}

/// What one request may touch in one collection.
#[derive(Debug, Clone)]
pub struct Scope {
    pub uid: u64,
    pub dim: usize,
    pub targets: Vec<Target>,
    /// Payload-partitioned collection and a tenant caller: the tenant's condition, ANDed into
    /// every filter and stamped into every written payload.
    pub partition: Option<Partition>,
    /// The caller's own id space (a tenant in a payload-partitioned collection with id
    /// spaces): every id it names is mapped in, every id it is answered with mapped out.
    pub ids: Option<IdSpace>,
    /// The tenant the request is attributed to (quotas, scheduling, audit): the caller's, else
    /// the one shard key it reaches. Set by the router.
    pub tenant: Option<String>,
    /// The nodes to call for each target shard, best first: a write's primary; a read's
    /// in-sync replicas, this node's first. Set by the router.
    pub nodes: BTreeMap<ShardId, Vec<NodeId>>,
    /// The read consistency asked for. Set by the router.
    pub consistency: crate::context::ReadConsistency,
}

impl Scope {
    /// A caller's id as stored.
    pub fn id_in(&self, id: &PointId) -> PointId {
        match &self.ids {
            Some(space) => space.inward(id),
            None => id.clone(),
        }
    }

    /// A stored id as the caller names it.
    pub fn id_out(&self, id: PointId) -> PointId {
        match &self.ids {
            Some(space) => space.outward(id),
            None => id,
        }
    }

    /// An error as the caller may see it: a stored id a shard named ("No point with id .. found")
    /// named as the caller's id.
    pub fn error_out(&self, mut e: Error) -> Error {
        if self.ids.is_some()
            && let Some(stored) = e
                .message
                .strip_prefix("No point with id ")
                .and_then(|rest| rest.strip_suffix(" found"))
        {
            let id = self.id_out(PointId::Str(stored.to_owned()));
            e.message = format!("No point with id {id} found");
        }
        e
    }

    /// A caller's filter with its `has_id` ids as stored.
    pub fn filter_in(&self, filter: Option<Filter>) -> Option<Filter> {
        match (&self.ids, filter) {
            (Some(space), Some(f)) => Some(space.filter_inward(f)),
            (_, f) => f,
        }
    }

    /// The request's filter narrowed to the caller's scope.
    pub fn narrow(&self, filter: Option<Filter>) -> Option<Filter> {
        match (&self.partition, filter) {
            (None, f) => f,
            (Some(p), None) => Some(p.filter()),
            (Some(p), Some(f)) => Some(p.filter().and(f)),
        }
    }
}

/// The answer for a collection the caller may not see: the same as for a missing one.
pub fn missing_collection(name: &str) -> Error {
    tessera_cluster::meta::missing_collection(name)
}

/// The answer for a shard key the caller may not reach: the same as for a missing one.
pub fn missing_key(key: &ShardKey) -> Error {
    tessera_cluster::meta::missing_key(key)
}

/// The shards a request naming `selector` may touch in `collection`, before the caller's tenant
/// is applied ([`scope`] does that): every shard for no key (reads), the named keys' shards, or
/// the fallback's when a target key is missing. A key that does not exist is [`missing_key`].
pub fn targets(
    collection: &CollectionMeta,
    selector: &KeySelector,
    write: bool,
) -> Result<Vec<Target>> {
    match collection.params.sharding_method {
        ShardingMethod::Auto => match selector {
            KeySelector::All => Ok(collection
                .shards
                .keys()
                .map(|shard| Target::new(*shard, None))
                .collect()),
            KeySelector::Keys(_) | KeySelector::Fallback { .. } => Err(Error::bad_request(
                "Shard key specified, but the collection uses sharding_method auto",
            )),
        },
        ShardingMethod::Custom => {
            let keys: Vec<ShardKey> = match selector {
                KeySelector::All if write => {
                    return Err(Error::bad_request(
                        "Shard key must be specified for a write to a collection with custom sharding",
                    ));
                }
                KeySelector::All => {
                    return Ok(collection
                        .shards
                        .values()
                        .map(|shard| Target::new(shard.id, shard.key.clone()))
                        .collect());
                }
                KeySelector::Keys(keys) => keys.clone(),
                KeySelector::Fallback { target, fallback } => {
                    if target
                        .iter()
                        .all(|key| collection.shard_keys.contains_key(key))
                    {
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
            for key in keys {
                let shards = collection
                    .shards_of_key(&key)
                    .ok_or_else(|| missing_key(&key))?;
                out.extend(
                    shards
                        .iter()
                        .map(|shard| Target::new(*shard, Some(key.clone()))),
                );
            }
            out.sort();
            out.dedup();
            Ok(out)
        }
    }
}

/// The shard key that is `tenant` in a custom-sharded collection (a string key of that name, or
/// a numeric key whose decimal form it is), if it exists.
pub fn tenant_key(collection: &CollectionMeta, tenant: &str) -> Option<ShardKey> {
    let as_str = ShardKey::Str(tenant.to_owned());
    if collection.shard_keys.contains_key(&as_str) {
        return Some(as_str);
    }
    let n: u64 = tenant.parse().ok()?;
    (n.to_string() == tenant && collection.shard_keys.contains_key(&ShardKey::Num(n)))
        .then_some(ShardKey::Num(n))
}

/// The tenant's partition of a payload-partitioned collection, if the collection is one for
/// this caller.
pub fn partition(
    principal: &Principal,
    collection: &CollectionMeta,
    tenant: &str,
) -> Option<Partition> {
    if let Some((field, value)) = &principal.payload_binding {
        return Some(Partition {
            field: field.clone(),
            value: value.clone(),
        });
    }
    index_partition(collection, tenant)
}

/// The tenant's partition by the collection's `is_tenant` payload index (what the tenant's
/// stored points carry, whatever token wrote them), if the collection has one.
pub fn index_partition(collection: &CollectionMeta, tenant: &str) -> Option<Partition> {
    if collection.params.sharding_method != ShardingMethod::Auto {
        return None;
    }
    let (field, index) = collection
        .payload_indexes
        .iter()
        .find(|(_, ix)| ix.is_tenant)?;
    let value = match index.schema {
        // a tenant id is a string compared exactly: only the canonical decimal form of an
        // integer names it (`07`, `+7` and ` 7` are not tenant 7, and reach nothing here)
        PayloadSchemaType::Integer => {
            let n = tenant
                .parse::<i64>()
                .ok()
                .filter(|n| n.to_string() == tenant)?;
            Value::from(n)
        }
        _ => Value::String(tenant.to_owned()),
    };
    Some(Partition {
        field: field.clone(),
        value,
    })
}

/// Whether the caller may know that collection `c` exists.
pub fn visible(principal: &Principal, collection: &CollectionMeta) -> bool {
    if !principal.can_read(&collection.name) {
        return false;
    }
    match &principal.tenant {
        None => true,
        Some(t) => match collection.params.sharding_method {
            ShardingMethod::Custom => tenant_key(collection, t).is_some(),
            ShardingMethod::Auto => partition(principal, collection, t).is_some(),
        },
    }
}

/// Refuses a caller who may see the collection but not write to it.
pub fn check_write(principal: &Principal, collection: &CollectionMeta) -> Result<()> {
    if principal.can_write(&collection.name) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Forbidden,
            format!(
                "Forbidden: write access to collection `{}` is required",
                collection.name
            ),
        ))
    }
}

/// Refuses a caller without manage rights (collection and shard-key changes, admin calls).
pub fn check_manage(principal: &Principal) -> Result<()> {
    if principal.can_manage() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Forbidden,
            "Forbidden: manage access is required",
        ))
    }
}

/// Refuses a caller without global read rights (cluster-wide information such as /cluster and
/// /metrics). Callers bound to a tenant have none.
pub fn check_global_read(principal: &Principal) -> Result<()> {
    if principal.sees_all_collections() && principal.tenant.is_none() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Forbidden,
            "Forbidden: global read access is required",
        ))
    }
}

/// The shard keys of the collection the caller may know of.
pub fn visible_keys(principal: &Principal, collection: &CollectionMeta) -> Vec<ShardKey> {
    match &principal.tenant {
        None => collection.shard_keys.keys().cloned().collect(),
        Some(t) => tenant_key(collection, t).into_iter().collect(),
    }
}

/// [`scope`] for a request that named the collection `given` (the collection's name or one of
/// its aliases): a collection the caller may not reach is missing under the name it was asked
/// by, so an alias never tells what it points at.
pub fn scope_named(
    principal: &Principal,
    collection: &CollectionMeta,
    given: &str,
    selector: &KeySelector,
    need: Need,
) -> Result<Scope> {
    scope(principal, collection, selector, need).map_err(|e| {
        if given != collection.name && e == missing_collection(&collection.name) {
            missing_collection(given)
        } else {
            e
        }
    })
}

/// The shards a request may touch and the condition its points must satisfy, or the error to
/// answer. A key the caller names outside its tenant is answered as a missing key.
pub fn scope(
    principal: &Principal,
    collection: &CollectionMeta,
    selector: &KeySelector,
    need: Need,
) -> Result<Scope> {
    if !visible(principal, collection) {
        return Err(missing_collection(&collection.name));
    }
    if need == Need::Write {
        check_write(principal, collection)?;
    }
    let write = need == Need::Write;
    let mut partition_of = None;
    let targets = match (&principal.tenant, collection.params.sharding_method) {
        (None, _) => targets(collection, selector, write)?,
        (Some(t), ShardingMethod::Custom) => {
            let own =
                tenant_key(collection, t).ok_or_else(|| missing_collection(&collection.name))?;
            let only_own = |keys: &[ShardKey]| -> Result<()> {
                match keys.iter().find(|k| **k != own) {
                    Some(other) => Err(missing_key(other)),
                    None => Ok(()),
                }
            };
            match selector {
                KeySelector::All => {}
                KeySelector::Keys(keys) => only_own(keys)?,
                KeySelector::Fallback { target, fallback } => {
                    // The caller's view holds only its own key: a target naming another key
                    // does not exist there, so the fallback is taken.
                    if target.is_empty() || target.iter().any(|k| *k != own) {
                        only_own(std::slice::from_ref(fallback))?;
                    }
                }
            }
            targets(collection, &KeySelector::Keys(vec![own]), write)?
        }
        (Some(t), ShardingMethod::Auto) => {
            partition_of = Some(
                partition(principal, collection, t)
                    .ok_or_else(|| missing_collection(&collection.name))?,
            );
            targets(collection, selector, write)?
        }
    };
    let ids = partition_of
        .as_ref()
        .filter(|_| collection.tenant_id_spaces)
        .map(IdSpace::of);
    Ok(Scope {
        uid: collection.uid,
        dim: collection.params.dim,
        targets,
        partition: partition_of,
        ids,
        tenant: None,
        nodes: Default::default(),
        consistency: Default::default(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tessera_cluster::meta::*;

    use crate::auth::{Access, AccessSpec, AuthMethod, TenantSource};

    /// A collection with one single-shard key per name (custom) or one shard (auto).
    pub(crate) fn collection(method: ShardingMethod, keys: &[&str]) -> CollectionMeta {
        let mut st = MetadataState::default();
        let auto = method == ShardingMethod::Auto;
        st.apply(
            1,
            &Command::CreateCollection {
                name: "c".into(),
                uid: 7,
                params: CollectionParams {
                    dim: 2,
                    distance: Distance::Dot,
                    sharding_method: method,
                    shard_number: 1,
                    replication_factor: 1,
                    write_consistency_factor: 1,
                    hnsw: HnswParams::default(),
                    on_disk_payload: false,
                },
                shards: if auto {
                    vec![ShardPlacement {
                        id: 0,
                        nodes: vec![1],
                    }]
                } else {
                    vec![]
                },
            },
        )
        .expect("create");
        for (i, k) in keys.iter().enumerate() {
            st.apply(
                2 + i as u64,
                &Command::CreateShardKey {
                    collection: "c".into(),
                    key: ShardKey::Str((*k).into()),
                    shards: vec![ShardPlacement {
                        id: i as u32,
                        nodes: vec![1],
                    }],
                },
            )
            .expect("key");
        }
        st.collections["c"].clone()
    }

    fn tenant(t: &str, access: AccessSpec) -> Principal {
        let mut p = Principal::manage(AuthMethod::ApiKey);
        p.access = access;
        p.tenant = Some(t.into());
        p.tenant_source = Some(TenantSource::Claim("tenant_id".into()));
        p
    }

    fn key(k: &str) -> ShardKey {
        ShardKey::Str(k.into())
    }

    #[test]
    fn a_tenant_is_pinned_to_its_key() {
        let c = collection(ShardingMethod::Custom, &["a", "b"]);
        let b = tenant("b", AccessSpec::Global(Access::ReadWrite));
        let s = scope(&b, &c, &KeySelector::All, Need::Read).expect("own key");
        assert_eq!(s.targets, vec![Target::new(1, Some(key("b")))]);
        let s = scope(&b, &c, &KeySelector::All, Need::Write).expect("write pinned");
        assert_eq!(s.targets, vec![Target::new(1, Some(key("b")))]);
        for sel in [
            KeySelector::Keys(vec![key("a")]),
            KeySelector::Keys(vec![key("b"), key("a")]),
            KeySelector::Fallback {
                target: vec![key("a")],
                fallback: key("a"),
            },
        ] {
            let e = scope(&b, &c, &sel, Need::Read).expect_err("other key");
            assert_eq!(e.kind, ErrorKind::NotFound);
            assert_eq!(e.message, super::missing_key(&key("a")).message);
        }
        let fb = KeySelector::Fallback {
            target: vec![key("a")],
            fallback: key("b"),
        };
        let s = scope(&b, &c, &fb, Need::Write).expect("fallback to own key");
        assert_eq!(s.targets, vec![Target::new(1, Some(key("b")))]);
        assert_eq!(visible_keys(&b, &c), vec![key("b")]);
    }

    #[test]
    fn a_tenant_without_a_key_sees_no_collection() {
        let c = collection(ShardingMethod::Custom, &["a"]);
        let z = tenant("z", AccessSpec::Global(Access::ReadWrite));
        assert!(!visible(&z, &c));
        let e = scope(&z, &c, &KeySelector::All, Need::Read).expect_err("invisible");
        assert_eq!(e.message, super::missing_collection("c").message);
    }

    #[test]
    fn per_collection_access_hides_other_collections() {
        let c = collection(ShardingMethod::Custom, &["a"]);
        let mut p = Principal::manage(AuthMethod::ApiKey);
        p.access = AccessSpec::PerCollection(BTreeMap::from([("other".into(), Access::Read)]));
        assert!(!visible(&p, &c));
        p.access = AccessSpec::PerCollection(BTreeMap::from([("c".into(), Access::Read)]));
        assert!(visible(&p, &c));
        let e =
            scope(&p, &c, &KeySelector::Keys(vec![key("a")]), Need::Write).expect_err("read only");
        assert_eq!(e.kind, ErrorKind::Forbidden);
    }

    #[test]
    fn integer_partitions_take_only_canonical_tenant_ids() {
        let mut c = collection(ShardingMethod::Auto, &[]);
        c.payload_indexes.insert(
            "org".into(),
            PayloadIndex {
                schema: PayloadSchemaType::Integer,
                is_tenant: true,
            },
        );
        let seven = tenant("7", AccessSpec::Global(Access::ReadWrite));
        let part = partition(&seven, &c, "7").expect("tenant 7");
        assert_eq!(part.value, Value::from(7));
        for alias in ["07", "+7", " 7", "7 ", "7.0", "acme"] {
            let t = tenant(alias, AccessSpec::Global(Access::ReadWrite));
            assert!(
                partition(&t, &c, alias).is_none(),
                "{alias:?} is not tenant 7"
            );
            assert!(!visible(&t, &c), "{alias:?} sees nothing of the collection");
        }
    }

    #[test]
    fn payload_partition_comes_from_binding_or_tenant_index() {
        let mut c = collection(ShardingMethod::Auto, &[]);
        let mut b = tenant("b", AccessSpec::Global(Access::ReadWrite));
        assert!(!visible(&b, &c), "not partitioned: invisible to tenants");
        c.payload_indexes.insert(
            "group_id".into(),
            PayloadIndex {
                schema: PayloadSchemaType::Keyword,
                is_tenant: true,
            },
        );
        let s = scope(&b, &c, &KeySelector::All, Need::Read).expect("partitioned");
        let part = s.partition.clone().expect("partition");
        assert_eq!(part.field, "group_id");
        assert_eq!(part.value, Value::from("b"));
        let mine = serde_json::from_value(serde_json::json!({"group_id": "b"})).expect("map");
        let theirs = serde_json::from_value(serde_json::json!({"group_id": "a"})).expect("map");
        let id = tessera_shard::point::PointId::Num(1);
        let f = s.narrow(None).expect("narrowed");
        assert!(f.matches(&id, &mine));
        assert!(!f.matches(&id, &theirs));
        // a widening filter cannot get out: should-clauses are ANDed with the tenant's condition
        let wide = tessera_shard::filter::parse_filter(&serde_json::json!({
            "should": [{"key": "group_id", "match": {"value": "a"}}, {"is_empty": {"key": "x"}}]
        }))
        .expect("filter");
        let f = s.narrow(Some(wide)).expect("narrowed");
        assert!(!f.matches(&id, &theirs));

        b.payload_binding = Some(("org".into(), Value::from(5)));
        let s = scope(&b, &c, &KeySelector::All, Need::Read).expect("bound");
        assert_eq!(
            s.partition,
            Some(Partition {
                field: "org".into(),
                value: Value::from(5)
            })
        );
    }

    #[test]
    fn a_key_reaches_only_its_shards() {
        let c = collection(ShardingMethod::Custom, &["a", "b"]);
        let a = key("a");
        let t = targets(&c, &KeySelector::Keys(vec![a.clone()]), false).expect("targets");
        assert_eq!(t, vec![Target::new(0, Some(a.clone()))]);
        assert!(targets(&c, &KeySelector::All, true).is_err());
        assert_eq!(targets(&c, &KeySelector::All, false).expect("all").len(), 2);
        let missing = targets(&c, &KeySelector::Keys(vec![key("zz")]), false);
        let e = missing.expect_err("missing");
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.message, super::missing_key(&key("zz")).message);
        let fb = KeySelector::Fallback {
            target: vec![key("zz")],
            fallback: a.clone(),
        };
        assert_eq!(
            targets(&c, &fb, true).expect("fallback"),
            vec![Target::new(0, Some(a))]
        );
    }

    #[test]
    fn targets_of_several_keys_are_sorted_and_unique() {
        let c = collection(ShardingMethod::Custom, &["a", "b"]);
        let t = targets(
            &c,
            &KeySelector::Keys(vec![key("b"), key("a"), key("b")]),
            true,
        )
        .expect("targets");
        assert_eq!(
            t,
            vec![
                Target::new(0, Some(key("a"))),
                Target::new(1, Some(key("b")))
            ]
        );
        let e = targets(&c, &KeySelector::Keys(vec![]), false).expect_err("no key");
        assert_eq!(e.kind, ErrorKind::BadRequest);
    }

    #[test]
    fn an_auto_collection_takes_no_key() {
        let c = collection(ShardingMethod::Auto, &[]);
        assert_eq!(
            targets(&c, &KeySelector::All, true).expect("all shards"),
            vec![Target::new(0, None)]
        );
        let e = targets(&c, &KeySelector::Keys(vec![key("a")]), false).expect_err("a key");
        assert_eq!(e.kind, ErrorKind::BadRequest);
    }

    #[test]
    fn unbound_callers_reach_what_they_name() {
        let c = collection(ShardingMethod::Custom, &["a", "b"]);
        let p = Principal::manage(AuthMethod::ApiKey);
        let s = scope(&p, &c, &KeySelector::All, Need::Read).expect("all");
        assert_eq!(s.targets.len(), 2);
        assert!(s.partition.is_none());
        assert_eq!(visible_keys(&p, &c).len(), 2);
    }
}
