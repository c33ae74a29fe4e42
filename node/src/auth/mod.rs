//! Authentication: who is calling, with which rights, bound to which tenant.
//!
//! A pure core with no HTTP types: the edge hands [`Authenticator::authenticate`] the credential
//! header values as `&str` ([`Credential::from_headers`]), the `X-Tenant-Id` header and the clock,
//! and gets back a [`Principal`] or an [`AuthError`].
//!
//! Credentials, as in Qdrant: a static `api_key` (full manage) and `read_only_api_key` (global
//! read); with `jwt_rbac`, JWTs signed HS256 with the `api_key` (Qdrant tokens work unchanged) or
//! RS256 / ES256 / EdDSA with a public key from a JWKS file, chosen by `kid`.
//!
//! Architecture invariants:
//! - A public key is never used as an HMAC secret: the HMAC secret is the `api_key` and nothing
//!   else, a JWKS never supplies symmetric keys, and a token's `alg` must equal the algorithm of
//!   the key its `kid` names.
//! - Keys embedded in a token (`jwk`, `jku`, `x5u`, `x5c` headers) are never used.
//! - An `X-Tenant-Id` header never widens access: it selects among the tenants a verified token
//!   lists, or narrows an unbound principal to one tenant.
//! - Error messages never contain the credential or any part of it.
//!
//! Errors at the edge: [`AuthError::Missing`] and [`AuthError::Invalid`] are 401,
//! [`AuthError::TenantNotAllowed`] is 404 (same body as a missing thing),
//! [`AuthError::TenantRequired`] is 400.

mod authenticator;
mod claims;
pub mod cli;
mod keys;
mod principal;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub use self::authenticator::{AuthConfigError, Authenticator};
pub use self::keys::{JwksError, JwksReport};
pub use self::principal::{Access, AccessSpec, AuthMethod, Principal, TenantSource, ValueExists};

/// Default clock skew allowed on `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Default largest credential (header value) accepted, in bytes; longer ones are refused unparsed.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Largest JWKS file read, in bytes.
pub const MAX_JWKS_FILE_BYTES: u64 = 1 << 20;
/// Largest tenant id accepted from a claim or from `X-Tenant-Id`, in bytes.
pub const MAX_TENANT_ID_BYTES: usize = 256;
/// Most entries accepted in an `orgs` claim.
pub const MAX_ORGS: usize = 1024;

/// Authentication settings (config keys `api_key`, `read_only_api_key`, `jwt_rbac`, `jwks_path`,
/// ...). Built by the node's config layer; validated by [`Authenticator::new`].
#[derive(Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Full-manage static key; also the HS256 secret of JWTs (as in Qdrant).
    pub api_key: Option<String>,
    /// Global read-only static key.
    pub read_only_api_key: Option<String>,
    /// Accept JWTs (in `api-key` or `Authorization: Bearer`).
    pub jwt_rbac: bool,
    /// JWKS file with the public keys of RS256 / ES256 / EdDSA tokens, chosen by `kid`.
    pub jwks_path: Option<PathBuf>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud` (a string or one element of a list). When unset,
    /// a token's `aud` is not checked.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Refuse tokens without `exp`: a leaked token that never expires is a key that can only be
    /// revoked by rotating the secret. On by default; `jwt_allow_no_exp` turns it off (Qdrant's
    /// behaviour) as a deliberate choice.
    pub require_exp: bool,
    /// Claim names that carry the tenant, first present wins (`tenant_id`, `org_id`, ...).
    pub tenant_claims: Vec<String>,
    /// A token without `access` (and without `roles`) gets global manage, as in Qdrant; when
    /// false it gets nothing. Tenant-bound tokens are capped at read-write either way.
    pub absent_access_means_manage: bool,
    /// What each name in a token's `roles` claim grants (globally).
    pub roles: BTreeMap<String, Access>,
    /// Credentials longer than this are refused before parsing.
    pub max_token_bytes: usize,
}

impl AuthConfig {
    /// viewer: read; editor: read and write; admin: manage.
    pub fn default_roles() -> BTreeMap<String, Access> {
        BTreeMap::from([
            ("viewer".to_owned(), Access::Read),
            ("editor".to_owned(), Access::ReadWrite),
            ("admin".to_owned(), Access::Manage),
        ])
    }

    /// Whether any credential is configured; when none is, every caller gets full manage
    /// (the single-node default).
    pub fn is_enabled(&self) -> bool {
        self.api_key.is_some()
            || self.read_only_api_key.is_some()
            || (self.jwt_rbac && self.jwks_path.is_some())
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            api_key: None,
            read_only_api_key: None,
            jwt_rbac: false,
            jwks_path: None,
            issuer: None,
            audience: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            require_exp: true,
            tenant_claims: vec!["tenant_id".to_owned()],
            absent_access_means_manage: true,
            roles: AuthConfig::default_roles(),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }
}

/// Secrets are redacted.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |k: &Option<String>| k.as_ref().map(|_| "[redacted]");
        f.debug_struct("AuthConfig")
            .field("api_key", &redact(&self.api_key))
            .field("read_only_api_key", &redact(&self.read_only_api_key))
            .field("jwt_rbac", &self.jwt_rbac)
            .field("jwks_path", &self.jwks_path)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .field("require_exp", &self.require_exp)
            .field("tenant_claims", &self.tenant_claims)
            .field(
                "absent_access_means_manage",
                &self.absent_access_means_manage,
            )
            .field("roles", &self.roles)
            .field("max_token_bytes", &self.max_token_bytes)
            .finish()
    }
}

/// The credential a request carries, as header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// The `api-key` header: a static key, or a JWT with `jwt_rbac`.
    ApiKeyHeader(&'a str),
    /// The token of `Authorization: Bearer <token>`: a static key, or a JWT with `jwt_rbac`.
    Bearer(&'a str),
    None,
}

impl<'a> Credential<'a> {
    /// Picks the credential from the `api-key` and `Authorization` header values; `api-key`
    /// wins when both are present (as in Qdrant). An `Authorization` header with another scheme
    /// than `Bearer` carries no credential.
    pub fn from_headers(api_key: Option<&'a str>, authorization: Option<&'a str>) -> Self {
        if let Some(key) = api_key {
            return Credential::ApiKeyHeader(key.trim());
        }
        let Some(auth) = authorization.map(str::trim) else {
            return Credential::None;
        };
        match auth.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                Credential::Bearer(token.trim())
            }
            Some(_) | None => Credential::None,
        }
    }

    fn value(self) -> Option<&'a str> {
        match self {
            Credential::ApiKeyHeader(v) | Credential::Bearer(v) => Some(v),
            Credential::None => None,
        }
    }
}

/// Why a request was not authenticated. Messages name the reason, never the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential, while one is required (401).
    #[error("missing credentials: send an api-key header or Authorization: Bearer")]
    Missing,
    /// A credential that is not accepted (401).
    #[error("invalid credentials: {0}")]
    Invalid(String),
    /// `X-Tenant-Id` names a tenant the credential does not list (404 at the edge, as for any
    /// thing outside the caller's tenant).
    #[error("tenant not found")]
    TenantNotAllowed,
    /// The token lists several tenants (`orgs`) and the request chose none with `X-Tenant-Id`
    /// (400).
    #[error("the token lists several tenants: choose one with the X-Tenant-Id header")]
    TenantRequired,
}

impl AuthError {
    fn invalid(reason: &str) -> Self {
        AuthError::Invalid(reason.to_owned())
    }
}

/// Equality whose time does not depend on where the inputs differ (it does depend on their
/// lengths, which is public: the configured key's length is not a secret worth the cost).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod test_keys;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_from_headers() {
        assert_eq!(
            Credential::from_headers(Some("k"), Some("Bearer t")),
            Credential::ApiKeyHeader("k")
        );
        assert_eq!(
            Credential::from_headers(None, Some("Bearer  t ")),
            Credential::Bearer("t")
        );
        assert_eq!(
            Credential::from_headers(None, Some("bearer t")),
            Credential::Bearer("t")
        );
        assert_eq!(
            Credential::from_headers(None, Some("Basic dTpw")),
            Credential::None
        );
        assert_eq!(
            Credential::from_headers(None, Some("Bearer")),
            Credential::None
        );
        assert_eq!(Credential::from_headers(None, None), Credential::None);
    }

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn debug_redacts_keys() {
        let config = AuthConfig {
            api_key: Some("super-secret".into()),
            read_only_api_key: Some("other-secret".into()),
            ..AuthConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("super-secret"));
        assert!(!shown.contains("other-secret"));
        assert!(shown.contains("[redacted]"));
    }
}
