//! What an authenticated caller may do: plain data and the permission checks over it.

use std::collections::BTreeMap;

use jsonwebtoken::Algorithm;

/// An access level, ordered: each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Read points and collection info (Qdrant `r`).
    Read,
    /// Read, and write points (Qdrant `rw`; per collection, no create/delete of collections).
    ReadWrite,
    /// Everything, including creating and deleting collections and admin calls (Qdrant `m`).
    Manage,
}

/// Where a principal's rights apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessSpec {
    /// Every collection at this level.
    Global(Access),
    /// Only these collections, each at `Read` or `ReadWrite`; empty means nothing at all.
    PerCollection(BTreeMap<String, Access>),
}

impl AccessSpec {
    /// No access anywhere.
    pub fn nothing() -> Self {
        AccessSpec::PerCollection(BTreeMap::new())
    }

    /// The same spec with every level lowered to at most `max`. Per-collection entries never
    /// exceed `ReadWrite`.
    pub fn capped(self, max: Access) -> Self {
        match self {
            AccessSpec::Global(level) => AccessSpec::Global(level.min(max)),
            AccessSpec::PerCollection(map) => AccessSpec::PerCollection(
                map.into_iter()
                    .map(|(c, level)| (c, level.min(max).min(Access::ReadWrite)))
                    .collect(),
            ),
        }
    }

    fn level_for(&self, collection: &str) -> Option<Access> {
        match self {
            AccessSpec::Global(level) => Some(*level),
            AccessSpec::PerCollection(map) => map.get(collection).copied(),
        }
    }
}

/// How the caller authenticated (for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// No credential is configured on this node: everyone is a full-manage caller.
    Unauthenticated,
    ApiKey,
    ReadOnlyApiKey,
    Jwt {
        alg: Algorithm,
        kid: Option<String>,
    },
}

/// Where the principal's tenant came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantSource {
    /// A tenant claim of the token (the name is the configured claim that carried it).
    Claim(String),
    /// The value of the token's `access[].payload` binding.
    Payload,
    /// `X-Tenant-Id`, chosen among the token's `orgs` list.
    Orgs,
    /// `X-Tenant-Id` sent by a principal bound to no tenant, narrowing it to that tenant. Such a
    /// principal could see every tenant anyway, so this never widens access.
    Header,
}

impl TenantSource {
    /// Whether the tenant comes from the signed token (rather than a narrowing header).
    pub fn is_token_bound(&self) -> bool {
        match self {
            TenantSource::Claim(_) | TenantSource::Payload | TenantSource::Orgs => true,
            TenantSource::Header => false,
        }
    }
}

/// Qdrant's revocation claim: the token is valid only while a point matching all `matches`
/// exists in `collection`. Carried for the router to check (from a short-lived cache).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueExists {
    pub collection: String,
    /// (payload key, value) pairs, all of which must match.
    pub matches: Vec<(String, serde_json::Value)>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// `sub` (or Qdrant's `subject`) of the token, for the audit log.
    pub subject: Option<String>,
    pub access: AccessSpec,
    /// The tenant every request of this principal is confined to; `None` means every tenant
    /// its `access` allows (an unbound, Qdrant-style principal).
    pub tenant: Option<String>,
    pub tenant_source: Option<TenantSource>,
    /// `access[].payload {field: value}`: in a payload-partitioned collection, the condition
    /// ANDed into every filter and stamped into every written payload.
    pub payload_binding: Option<(String, serde_json::Value)>,
    pub value_exists: Option<ValueExists>,
    /// The token's `roles`, as given (unknown names included).
    pub roles: Vec<String>,
    pub method: AuthMethod,
    /// The token's `exp`, if any (unix seconds).
    pub expires_at: Option<u64>,
}

impl Principal {
    /// A full-manage principal bound to no tenant.
    pub fn manage(method: AuthMethod) -> Self {
        Principal::with_access(method, AccessSpec::Global(Access::Manage))
    }

    pub(crate) fn with_access(method: AuthMethod, access: AccessSpec) -> Self {
        Principal {
            subject: None,
            access,
            tenant: None,
            tenant_source: None,
            payload_binding: None,
            value_exists: None,
            roles: Vec::new(),
            method,
            expires_at: None,
        }
    }

    /// May read points and info of `collection`.
    pub fn can_read(&self, collection: &str) -> bool {
        self.access.level_for(collection).is_some()
    }

    /// May write (upsert, update, delete) points of `collection`.
    pub fn can_write(&self, collection: &str) -> bool {
        self.access
            .level_for(collection)
            .is_some_and(|level| level >= Access::ReadWrite)
    }

    /// May create and delete collections and shard keys, and call admin endpoints. Never true
    /// for a principal bound to a tenant by its token.
    pub fn can_manage(&self) -> bool {
        self.access == AccessSpec::Global(Access::Manage) && !self.is_token_bound()
    }

    /// May list all collections (others see only those [`Principal::can_read`] allows).
    pub fn sees_all_collections(&self) -> bool {
        matches!(self.access, AccessSpec::Global(_))
    }

    /// Whether the tenant is fixed by the token itself.
    pub fn is_token_bound(&self) -> bool {
        self.tenant_source
            .as_ref()
            .is_some_and(TenantSource::is_token_bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(access: AccessSpec) -> Principal {
        Principal::with_access(AuthMethod::ApiKey, access)
    }

    #[test]
    fn permission_matrix() {
        let per = AccessSpec::PerCollection(BTreeMap::from([
            ("ro".to_owned(), Access::Read),
            ("rw".to_owned(), Access::ReadWrite),
        ]));
        // (spec, collection, read, write, manage)
        let cases = [
            (AccessSpec::Global(Access::Manage), "x", true, true, true),
            (
                AccessSpec::Global(Access::ReadWrite),
                "x",
                true,
                true,
                false,
            ),
            (AccessSpec::Global(Access::Read), "x", true, false, false),
            (per.clone(), "ro", true, false, false),
            (per.clone(), "rw", true, true, false),
            (per, "other", false, false, false),
            (AccessSpec::nothing(), "x", false, false, false),
        ];
        for (spec, c, read, write, manage) in cases {
            let p = with(spec.clone());
            assert_eq!(p.can_read(c), read, "{spec:?} read {c}");
            assert_eq!(p.can_write(c), write, "{spec:?} write {c}");
            assert_eq!(p.can_manage(), manage, "{spec:?} manage");
        }
    }

    #[test]
    fn token_bound_principals_never_manage() {
        let mut p = with(AccessSpec::Global(Access::Manage));
        p.tenant = Some("a".into());
        p.tenant_source = Some(TenantSource::Claim("tenant_id".into()));
        assert!(!p.can_manage());
        // A header only narrows: an admin narrowed to a tenant still manages.
        p.tenant_source = Some(TenantSource::Header);
        assert!(p.can_manage());
    }

    #[test]
    fn capping_lowers_levels() {
        assert_eq!(
            AccessSpec::Global(Access::Manage).capped(Access::ReadWrite),
            AccessSpec::Global(Access::ReadWrite)
        );
        assert_eq!(
            AccessSpec::Global(Access::Read).capped(Access::Manage),
            AccessSpec::Global(Access::Read)
        );
        let per = AccessSpec::PerCollection(BTreeMap::from([("c".to_owned(), Access::ReadWrite)]));
        assert_eq!(
            per.capped(Access::Read),
            AccessSpec::PerCollection(BTreeMap::from([("c".to_owned(), Access::Read)]))
        );
    }
}
