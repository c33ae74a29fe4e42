//! [`Authenticator`]: credentials in, [`Principal`] out.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use parking_lot::RwLock;

use super::claims::{self, Claims};
use super::keys::{self, JwksError, JwksReport, KeySet};
use super::principal::{Access, AccessSpec, AuthMethod, Principal};
use super::{AuthConfig, AuthError, Credential, ct_eq};

/// A configuration [`Authenticator::new`] refuses.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("{0} must not be empty")]
    EmptyKey(&'static str),
    #[error("api_key and read_only_api_key must differ")]
    SameKeys,
    #[error("jwt_rbac needs an api_key (HS256 secret) or a jwks_path")]
    JwtRbacWithoutKeys,
    /// Without jwt_rbac these would be ignored, and a node meant to take only JWTs would be open.
    #[error("jwks_path, issuer and audience need jwt_rbac")]
    JwtSettingsWithoutJwtRbac,
    #[error("tenant claim names must not be empty")]
    EmptyTenantClaim,
    #[error("max_token_bytes must be at least 64")]
    TokenLimitTooSmall,
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

/// The HMAC key: the `api_key`, as in Qdrant.
struct HmacKey {
    key: DecodingKey,
    validation: Validation,
}

/// Verifies credentials against the configured keys. Shared by all requests (`Arc`); the
/// JWKS is swapped whole by [`Authenticator::reload_jwks`] while requests keep the set they
/// started with.
pub struct Authenticator {
    config: AuthConfig,
    hmac: Option<HmacKey>,
    jwks: RwLock<Arc<KeySet>>,
}

impl Authenticator {
    /// Validates `config` and loads the JWKS file if one is configured.
    pub fn new(config: AuthConfig) -> Result<Authenticator, AuthConfigError> {
        if config.api_key.as_deref() == Some("") {
            return Err(AuthConfigError::EmptyKey("api_key"));
        }
        if config.read_only_api_key.as_deref() == Some("") {
            return Err(AuthConfigError::EmptyKey("read_only_api_key"));
        }
        if config.api_key.is_some() && config.api_key == config.read_only_api_key {
            return Err(AuthConfigError::SameKeys);
        }
        if config.jwt_rbac && config.api_key.is_none() && config.jwks_path.is_none() {
            return Err(AuthConfigError::JwtRbacWithoutKeys);
        }
        let jwt_settings =
            config.jwks_path.is_some() || config.issuer.is_some() || config.audience.is_some();
        if jwt_settings && !config.jwt_rbac {
            return Err(AuthConfigError::JwtSettingsWithoutJwtRbac);
        }
        if config.tenant_claims.iter().any(String::is_empty) {
            return Err(AuthConfigError::EmptyTenantClaim);
        }
        if config.max_token_bytes < 64 {
            return Err(AuthConfigError::TokenLimitTooSmall);
        }
        let hmac = match (&config.api_key, config.jwt_rbac) {
            (Some(secret), true) => {
                let mut validation = Validation::new(Algorithm::HS256);
                validation.algorithms = AlgorithmFamily::Hmac.algorithms().to_vec();
                validation.required_spec_claims.clear();
                validation.validate_exp = false;
                validation.validate_nbf = false;
                validation.validate_aud = false;
                Some(HmacKey {
                    key: DecodingKey::from_secret(secret.as_bytes()),
                    validation,
                })
            }
            (Some(_) | None, _) => None,
        };
        let jwks = match (&config.jwks_path, config.jwt_rbac) {
            (Some(path), true) => keys::load_file(path)?.0,
            (Some(_) | None, _) => KeySet::default(),
        };
        Ok(Authenticator {
            config,
            hmac,
            jwks: RwLock::new(Arc::new(jwks)),
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Whether credentials are required at all.
    pub fn is_enabled(&self) -> bool {
        self.config.is_enabled()
    }

    /// Re-reads the JWKS file and swaps the key set in one step. On error the previous keys
    /// stay in force. Without a `jwks_path` (or without `jwt_rbac`) there is nothing to do.
    pub fn reload_jwks(&self) -> Result<JwksReport, JwksError> {
        let Some(path) = self
            .config
            .jwks_path
            .as_ref()
            .filter(|_| self.config.jwt_rbac)
        else {
            return Ok(JwksReport::default());
        };
        let (set, report) = keys::load_file(path)?;
        *self.jwks.write() = Arc::new(set);
        Ok(report)
    }

    /// Replaces the key set from a JWKS document in memory.
    #[cfg(test)]
    pub(crate) fn set_jwks(&self, doc: &[u8]) -> Result<JwksReport, JwksError> {
        let (set, report) = keys::parse(doc)?;
        *self.jwks.write() = Arc::new(set);
        Ok(report)
    }

    /// The `kid`s currently accepted, sorted.
    pub fn jwks_kids(&self) -> Vec<String> {
        self.jwks.read().kids()
    }

    /// Who is calling. `x_tenant_id` is the `X-Tenant-Id` header; `now_unix` the current time
    /// in unix seconds (for `exp` / `nbf`).
    pub fn authenticate(
        &self,
        credential: Credential<'_>,
        x_tenant_id: Option<&str>,
        now_unix: u64,
    ) -> Result<Principal, AuthError> {
        if !self.config.is_enabled() {
            let principal = Principal::manage(AuthMethod::Unauthenticated);
            return claims::bind_tenant(principal, None, None, x_tenant_id);
        }
        let value = match credential.value() {
            Some(value) if !value.is_empty() => value,
            Some(_) | None => return Err(AuthError::Missing),
        };
        if value.len() > self.config.max_token_bytes {
            return Err(AuthError::invalid("credential too large"));
        }
        let is = |key: &Option<String>| {
            key.as_ref()
                .is_some_and(|k| ct_eq(value.as_bytes(), k.as_bytes()))
        };
        let static_key = if is(&self.config.api_key) {
            Some(Principal::manage(AuthMethod::ApiKey))
        } else if is(&self.config.read_only_api_key) {
            Some(Principal::with_access(
                AuthMethod::ReadOnlyApiKey,
                AccessSpec::Global(Access::Read),
            ))
        } else {
            None
        };
        if let Some(principal) = static_key {
            return claims::bind_tenant(principal, None, None, x_tenant_id);
        }
        if !self.config.jwt_rbac {
            return Err(AuthError::invalid("unknown api key"));
        }
        self.authenticate_jwt(value, x_tenant_id, now_unix)
    }

    fn authenticate_jwt(
        &self,
        token: &str,
        x_tenant_id: Option<&str>,
        now: u64,
    ) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::invalid("malformed token or unsupported alg"))?;
        if header.crit.is_some() {
            return Err(AuthError::invalid("unsupported critical header"));
        }
        // Hold this key set for the whole verification, even if a reload swaps it meanwhile.
        let jwks = Arc::clone(&self.jwks.read());
        let (key, validation) = match header.alg.family() {
            AlgorithmFamily::Hmac => {
                // Algorithm confusion: never verify an HMAC over a public key.
                if header.kid.as_deref().is_some_and(|kid| jwks.contains(kid)) {
                    return Err(AuthError::invalid(
                        "alg does not match the key named by kid",
                    ));
                }
                let hmac = self
                    .hmac
                    .as_ref()
                    .ok_or_else(|| AuthError::invalid("HMAC tokens need an api_key"))?;
                (&hmac.key, &hmac.validation)
            }
            AlgorithmFamily::Rsa | AlgorithmFamily::Ec | AlgorithmFamily::Ed => {
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| AuthError::invalid("token has no kid"))?;
                let entry = jwks
                    .get(kid)
                    .ok_or_else(|| AuthError::invalid("unknown kid"))?;
                if entry.alg != header.alg {
                    return Err(AuthError::invalid(
                        "alg does not match the key named by kid",
                    ));
                }
                (&entry.key, &entry.validation)
            }
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
            AuthError::invalid(match e.kind() {
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "alg not allowed",
                ErrorKind::Json(_) => "claims are not a JSON object",
                _ => "malformed token",
            })
        })?;
        // the signature holds; the claims must also mean one thing to every JSON reader
        let payload = token
            .split('.')
            .nth(1)
            .and_then(|segment| {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(segment)
                    .ok()
            })
            .ok_or_else(|| AuthError::invalid("malformed token"))?;
        claims::refuse_repeated_claims(&payload)?;
        let exp = claims::check_registered(&data.claims, &self.config, now)?;
        let method = AuthMethod::Jwt {
            alg: header.alg,
            kid: header.kid,
        };
        claims::principal_from_claims(&data.claims, &self.config, method, exp, x_tenant_id)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;
    use crate::auth::TenantSource;
    use crate::auth::test_keys::{
        Pair, RSA_KID, RSA_PUBLIC_PEM, TestKeys, b64u, header, raw_hs256, sign,
    };

    const NOW: u64 = 1_800_000_000;
    const SECRET: &str = "test-api-key-0123456789abcdef";
    const READ_ONLY: &str = "test-read-only-key-0123456789";

    fn config() -> AuthConfig {
        AuthConfig {
            api_key: Some(SECRET.into()),
            read_only_api_key: Some(READ_ONLY.into()),
            jwt_rbac: true,
            // most tests here are about other claims; the default (exp required) has its own
            require_exp: false,
            ..AuthConfig::default()
        }
    }

    /// HS256 with `SECRET`, and the JWKS of [`TestKeys`].
    fn authenticator() -> Authenticator {
        authenticator_with(config())
    }

    fn authenticator_with(config: AuthConfig) -> Authenticator {
        let auth = Authenticator::new(config).expect("test config is valid");
        let report = auth
            .set_jwks(TestKeys::get().jwks().to_string().as_bytes())
            .expect("test jwks");
        assert_eq!(report.loaded.len(), 3);
        auth
    }

    fn hs256(claims: &Value) -> String {
        sign(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
    }

    fn eddsa(claims: &Value) -> String {
        sign(
            &header(Algorithm::EdDSA, Some("ed-1")),
            claims,
            &TestKeys::get().ed.ed_encoding(),
        )
    }

    fn bearer(auth: &Authenticator, token: &str) -> Result<Principal, AuthError> {
        auth.authenticate(Credential::Bearer(token), None, NOW)
    }

    /// Refused with 401, and the message shows no part of the token.
    #[track_caller]
    fn refused(auth: &Authenticator, token: &str) -> String {
        let err = match bearer(auth, token) {
            Ok(p) => panic!("accepted an attack token: {p:?}"),
            Err(AuthError::Invalid(reason)) => reason,
            Err(other) => panic!("expected Invalid, got {other:?}"),
        };
        for part in token.split('.').filter(|p| p.len() >= 8) {
            assert!(!err.contains(part), "error {err:?} echoes the token");
        }
        err
    }

    #[test]
    fn no_auth_configured_means_full_manage() {
        let auth = Authenticator::new(AuthConfig::default()).expect("default");
        assert!(!auth.is_enabled());
        for cred in [
            Credential::None,
            Credential::Bearer("anything"),
            Credential::ApiKeyHeader(""),
        ] {
            let p = auth.authenticate(cred, None, NOW).expect("open node");
            assert!(p.can_manage());
            assert_eq!(p.method, AuthMethod::Unauthenticated);
        }
        let p = auth
            .authenticate(Credential::None, Some("t1"), NOW)
            .expect("narrowed");
        assert_eq!(p.tenant.as_deref(), Some("t1"));
        assert_eq!(p.tenant_source, Some(TenantSource::Header));
    }

    #[test]
    fn static_keys() {
        let auth = authenticator();
        assert_eq!(
            auth.authenticate(Credential::None, None, NOW),
            Err(AuthError::Missing)
        );
        assert_eq!(
            auth.authenticate(Credential::ApiKeyHeader(""), None, NOW),
            Err(AuthError::Missing)
        );
        let p = auth
            .authenticate(Credential::ApiKeyHeader(SECRET), None, NOW)
            .expect("api key");
        assert!(p.can_manage());
        assert_eq!(p.method, AuthMethod::ApiKey);
        let p = bearer(&auth, SECRET).expect("api key as bearer");
        assert!(p.can_manage());
        let p = auth
            .authenticate(Credential::ApiKeyHeader(READ_ONLY), None, NOW)
            .expect("read-only key");
        assert!(p.can_read("c") && !p.can_write("c") && !p.can_manage());
        assert_eq!(p.method, AuthMethod::ReadOnlyApiKey);
        refused(&auth, "wrong-key");
        refused(&auth, &SECRET[..SECRET.len() - 1]);
        refused(&auth, &format!("{SECRET}x"));

        // Without jwt_rbac a valid JWT is just an unknown key.
        let plain = Authenticator::new(AuthConfig {
            jwt_rbac: false,
            ..config()
        })
        .expect("plain");
        assert!(bearer(&plain, SECRET).is_ok());
        refused(&plain, &hs256(&json!({"access": "m"})));
    }

    #[test]
    fn accepts_hs256_qdrant_tokens() {
        let auth = authenticator();
        let p = bearer(&auth, &hs256(&json!({"access": "r"}))).expect("hs256 r");
        assert!(p.can_read("c") && !p.can_write("c"));
        assert!(matches!(
            p.method,
            AuthMethod::Jwt {
                alg: Algorithm::HS256,
                kid: None
            }
        ));
        let p = auth
            .authenticate(
                Credential::ApiKeyHeader(&hs256(&json!({"exp": NOW + 60}))),
                None,
                NOW,
            )
            .expect("hs256 in api-key");
        assert!(p.can_manage());
        assert_eq!(p.expires_at, Some(NOW + 60));
        // HS384 / HS512 with the same secret are fine too.
        let hs512 = sign(
            &Header::new(Algorithm::HS512),
            &json!({"access": "r"}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        assert!(bearer(&auth, &hs512).is_ok());
        // A kid that names no JWKS key does not matter to an HMAC token.
        let with_kid = sign(
            &header(Algorithm::HS256, Some("hmac-v2")),
            &json!({}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        assert!(bearer(&auth, &with_kid).is_ok());
    }

    #[test]
    fn accepts_eddsa_es256_rs256_from_the_jwks() {
        let auth = authenticator();
        let keys = TestKeys::get();
        let claims = json!({"sub": "alice", "tenant_id": "acme", "exp": NOW + 600});

        let p = bearer(&auth, &eddsa(&claims)).expect("eddsa");
        assert_eq!(p.subject.as_deref(), Some("alice"));
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        assert!(
            matches!(&p.method, AuthMethod::Jwt { alg: Algorithm::EdDSA, kid: Some(k) } if k == "ed-1")
        );

        let es = sign(
            &header(Algorithm::ES256, Some("ec-1")),
            &claims,
            &keys.ec.ec_encoding(),
        );
        assert_eq!(
            bearer(&auth, &es).expect("es256").tenant.as_deref(),
            Some("acme")
        );

        let rs = sign(
            &header(Algorithm::RS256, Some(RSA_KID)),
            &claims,
            &keys.rsa_encoding(),
        );
        assert_eq!(
            bearer(&auth, &rs).expect("rs256").tenant.as_deref(),
            Some("acme")
        );
    }

    #[test]
    fn refuses_alg_none_and_unknown_algs() {
        let auth = authenticator();
        let payload = b64u(br#"{"access":"m"}"#);
        for alg in ["none", "None", "NONE", "nOnE", "HS999", "ES512", ""] {
            let head = b64u(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            refused(&auth, &format!("{head}.{payload}."));
            refused(&auth, &format!("{head}.{payload}.c2lnbmF0dXJl"));
        }
        // No alg at all.
        refused(&auth, &format!("{}.{payload}.", b64u(br#"{"typ":"JWT"}"#)));
    }

    #[test]
    fn refuses_algorithm_confusion() {
        let auth = authenticator();
        let keys = TestKeys::get();
        let claims = json!({"access": "m"});
        // The classic attack: HS256 "signed" with a public key the server holds, as text or raw.
        let public_secrets: [(&str, Vec<u8>); 4] = [
            (RSA_KID, RSA_PUBLIC_PEM.as_bytes().to_vec()),
            ("ed-1", keys.ed.public_pem.as_bytes().to_vec()),
            ("ed-1", keys.ed.public_raw.clone()),
            ("ec-1", keys.ec.public_raw.clone()),
        ];
        for (kid, secret) in &public_secrets {
            let with_kid = sign(
                &header(Algorithm::HS256, Some(kid)),
                &claims,
                &EncodingKey::from_secret(secret),
            );
            let reason = refused(&auth, &with_kid);
            assert!(reason.contains("alg does not match"), "{reason}");
            // Without a kid it is checked against the api_key, and fails.
            let without = sign(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(secret),
            );
            assert_eq!(refused(&auth, &without), "bad signature");
        }
        // Even the real HMAC secret cannot be used with a kid that names a public key.
        let real_secret = sign(
            &header(Algorithm::HS256, Some("ed-1")),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        refused(&auth, &real_secret);
        // An asymmetric alg must match the key type of the kid: an EdDSA signature under the
        // EC key's kid, and an RS256 header on the EC key.
        let ed_as_ec = sign(
            &header(Algorithm::EdDSA, Some("ec-1")),
            &claims,
            &keys.ed.ed_encoding(),
        );
        refused(&auth, &ed_as_ec);
        let rs_as_ec = sign(
            &header(Algorithm::RS256, Some("ec-1")),
            &claims,
            &keys.rsa_encoding(),
        );
        refused(&auth, &rs_as_ec);
        let ps_on_rs = sign(
            &header(Algorithm::PS256, Some(RSA_KID)),
            &claims,
            &keys.rsa_encoding(),
        );
        refused(&auth, &ps_on_rs);
        // With no api_key there is no HMAC key at all.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, keys.jwks().to_string()).expect("write jwks");
        let jwks_only = Authenticator::new(AuthConfig {
            jwt_rbac: true,
            jwks_path: Some(path),
            require_exp: false,
            ..AuthConfig::default()
        })
        .expect("jwks only");
        assert!(jwks_only.is_enabled());
        refused(&jwks_only, &hs256(&claims));
        assert!(bearer(&jwks_only, &eddsa(&claims)).is_ok());
    }

    #[test]
    fn refuses_unknown_or_missing_kid_and_embedded_keys() {
        let auth = authenticator();
        let keys = TestKeys::get();
        let claims = json!({"access": "m"});
        let unknown = sign(
            &header(Algorithm::EdDSA, Some("ed-9")),
            &claims,
            &keys.ed.ed_encoding(),
        );
        assert_eq!(refused(&auth, &unknown), "unknown kid");
        let no_kid = sign(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &keys.ed.ed_encoding(),
        );
        assert_eq!(refused(&auth, &no_kid), "token has no kid");
        // An attacker's key embedded in the header is never used.
        let attacker = Pair::ed25519();
        let mut embedded = header(Algorithm::EdDSA, Some("attacker"));
        embedded.jwk = Some(serde_json::from_value(attacker.ed_jwk("attacker")).expect("jwk"));
        refused(&auth, &sign(&embedded, &claims, &attacker.ed_encoding()));
        let mut jku = header(Algorithm::EdDSA, Some("ed-1"));
        jku.jku = Some("https://attacker.example/jwks.json".into());
        refused(&auth, &sign(&jku, &claims, &attacker.ed_encoding()));
        // crit names extensions we do not understand.
        let mut crit = header(Algorithm::EdDSA, Some("ed-1"));
        crit.crit = Some(vec!["exp".into()]);
        refused(&auth, &sign(&crit, &claims, &keys.ed.ed_encoding()));
    }

    #[test]
    fn refuses_tokens_signed_by_other_keys() {
        let auth = authenticator();
        let keys = TestKeys::get();
        let claims = json!({"access": "m"});
        let other_ed = Pair::ed25519();
        let other_ec = Pair::p256();
        for token in [
            sign(
                &header(Algorithm::EdDSA, Some("ed-1")),
                &claims,
                &other_ed.ed_encoding(),
            ),
            sign(
                &header(Algorithm::ES256, Some("ec-1")),
                &claims,
                &other_ec.ec_encoding(),
            ),
            sign(
                &header(Algorithm::RS256, Some(RSA_KID)),
                &claims,
                &keys.rsa_attacker_encoding(),
            ),
            sign(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"not-the-api-key"),
            ),
            // The read-only key is not an HMAC secret.
            sign(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(READ_ONLY.as_bytes()),
            ),
        ] {
            assert_eq!(refused(&auth, &token), "bad signature");
        }
    }

    #[test]
    fn refuses_tampered_tokens() {
        let auth = authenticator();
        for token in [
            hs256(&json!({"access": "r"})),
            eddsa(&json!({"access": "r"})),
        ] {
            assert!(bearer(&auth, &token).is_ok());
            let parts: Vec<&str> = token.split('.').collect();
            let [head, _, sig] = parts[..] else {
                panic!("three segments");
            };
            let forged = b64u(br#"{"access":"m"}"#);
            assert_eq!(
                refused(&auth, &format!("{head}.{forged}.{sig}")),
                "bad signature"
            );
            // Signature stripped, or borrowed from the header.
            refused(&auth, &format!("{head}.{forged}."));
            refused(&auth, &format!("{head}.{forged}.{head}"));
            // A flipped signature character.
            let mut bad_sig = sig.to_owned();
            let last = bad_sig.pop().map(|c| if c == 'A' { 'B' } else { 'A' });
            bad_sig.extend(last);
            refused(&auth, &format!("{head}.{}.{bad_sig}", parts[1]));
        }
    }

    #[test]
    fn refuses_malformed_tokens() {
        let auth = authenticator();
        let good = hs256(&json!({}));
        let parts: Vec<&str> = good.split('.').collect();
        let (head, payload, sig) = (parts[0], parts[1], parts[2]);
        for token in [
            "garbage".to_owned(),
            "a.b".to_owned(),
            format!("{head}.{payload}"),
            "..".to_owned(),
            "...".to_owned(),
            format!("{head}.{payload}.{sig}.{sig}"),
            "!!!.@@@.###".to_owned(),
            format!("{head}.{payload}.***"),
            format!("{}.{payload}.{sig}", b64u(b"{not json")),
            format!("{}.{payload}.{sig}", b64u(b"[]")),
            format!("{head}.{payload} .{sig}"),
            format!("{head}.%%%.{sig}"),
            format!(" {good}"),
            "\u{0}\u{1}".to_owned(),
            "ééé.ééé.ééé".to_owned(),
        ] {
            refused(&auth, &token);
        }
        // Correctly signed, but the claims are not a JSON object.
        let h = r#"{"alg":"HS256","typ":"JWT"}"#;
        for payload in ["{not json", "[1,2]", "\"str\"", "null", "42", ""] {
            refused(&auth, &raw_hs256(h, payload, SECRET.as_bytes()));
        }
        assert!(bearer(&auth, &raw_hs256(h, "{}", SECRET.as_bytes())).is_ok());
    }

    #[test]
    fn refuses_oversized_tokens_before_parsing() {
        let auth = authenticator();
        let token_with = |pad: usize| hs256(&json!({"access": "r", "pad": "x".repeat(pad)}));
        // A validly signed token just under the limit passes; one just over does not.
        let base = token_with(0).len();
        let mut pad = (8192 - base) * 3 / 4;
        while token_with(pad).len() > 8192 {
            pad -= 1;
        }
        let fits = token_with(pad);
        assert!(fits.len() > 8188, "{}", fits.len());
        assert!(bearer(&auth, &fits).is_ok());
        let just_over = token_with(pad + 3);
        assert!(just_over.len() > 8192, "{}", just_over.len());
        assert_eq!(refused(&auth, &just_over), "credential too large");
        let over = token_with(8192);
        assert!(over.len() > 8192);
        assert_eq!(refused(&auth, &over), "credential too large");
        assert_eq!(refused(&auth, &"a".repeat(8193)), "credential too large");
        assert_eq!(
            refused(&auth, &"a.".repeat(100_000)),
            "credential too large"
        );
    }

    #[test]
    fn checks_exp_nbf_iss_aud() {
        let auth = authenticator();
        assert!(bearer(&auth, &eddsa(&json!({"exp": NOW - 30}))).is_ok());
        assert_eq!(
            refused(&auth, &eddsa(&json!({"exp": NOW - 31}))),
            "token expired"
        );
        assert_eq!(
            refused(&auth, &hs256(&json!({"exp": NOW - 3600}))),
            "token expired"
        );
        assert!(bearer(&auth, &eddsa(&json!({"nbf": NOW + 30}))).is_ok());
        refused(&auth, &eddsa(&json!({"nbf": NOW + 31})));
        refused(&auth, &hs256(&json!({"exp": "never"})));
        // aud is not checked unless configured (jsonwebtoken would refuse these by default).
        assert!(bearer(&auth, &hs256(&json!({"aud": "someone"}))).is_ok());
        assert!(bearer(&auth, &eddsa(&json!({"aud": ["a", "b"]}))).is_ok());

        let strict = authenticator_with(AuthConfig {
            issuer: Some("https://idp.example".into()),
            audience: Some("tessera".into()),
            ..config()
        });
        let ok = json!({"iss": "https://idp.example", "aud": "tessera"});
        assert!(bearer(&strict, &eddsa(&ok)).is_ok());
        assert!(bearer(&strict, &hs256(&ok)).is_ok());
        for bad in [
            json!({"iss": "https://evil.example", "aud": "tessera"}),
            json!({"iss": "https://idp.example", "aud": "other"}),
            json!({"iss": "https://idp.example", "aud": ["other", "more"]}),
            json!({"aud": "tessera"}),
            json!({"iss": "https://idp.example"}),
        ] {
            refused(&strict, &eddsa(&bad));
            refused(&strict, &hs256(&bad));
        }
        let require_exp = authenticator_with(AuthConfig {
            require_exp: true,
            ..config()
        });
        assert_eq!(
            refused(&require_exp, &hs256(&json!({}))),
            "token has no exp"
        );
    }

    #[test]
    fn jwks_reload_rotates_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jwks.json");
        let old = Pair::ed25519();
        let new = Pair::ed25519();
        let write = |keys: Vec<Value>| {
            std::fs::write(&path, json!({ "keys": keys }).to_string()).expect("write jwks")
        };
        write(vec![old.ed_jwk("k-old")]);
        let auth = Authenticator::new(AuthConfig {
            jwks_path: Some(path.clone()),
            ..config()
        })
        .expect("loads jwks");
        let token = |pair: &Pair, kid: &str| {
            sign(
                &header(Algorithm::EdDSA, Some(kid)),
                &json!({"access": "r"}),
                &pair.ed_encoding(),
            )
        };
        let (old_token, new_token) = (token(&old, "k-old"), token(&new, "k-new"));
        assert!(bearer(&auth, &old_token).is_ok());
        assert_eq!(refused(&auth, &new_token), "unknown kid");

        // Rotation, phase 1: both keys.
        write(vec![old.ed_jwk("k-old"), new.ed_jwk("k-new")]);
        let report = auth.reload_jwks().expect("reload");
        assert_eq!(report.loaded, vec!["k-new", "k-old"]);
        assert!(bearer(&auth, &old_token).is_ok());
        assert!(bearer(&auth, &new_token).is_ok());

        // Phase 2: the old key removed.
        write(vec![new.ed_jwk("k-new")]);
        auth.reload_jwks().expect("reload");
        assert_eq!(auth.jwks_kids(), vec!["k-new"]);
        assert_eq!(refused(&auth, &old_token), "unknown kid");
        assert!(bearer(&auth, &new_token).is_ok());

        // A broken file keeps the keys in force.
        std::fs::write(&path, "{ not json").expect("write");
        assert!(auth.reload_jwks().is_err());
        assert!(bearer(&auth, &new_token).is_ok());
        std::fs::remove_file(&path).expect("remove");
        assert!(auth.reload_jwks().is_err());
        assert!(bearer(&auth, &new_token).is_ok());

        // The same kid with a new key: the old signature no longer verifies.
        let replaced = Pair::ed25519();
        write(vec![replaced.ed_jwk("k-new")]);
        auth.reload_jwks().expect("reload");
        assert_eq!(refused(&auth, &new_token), "bad signature");
    }

    #[test]
    fn orgs_and_tenant_header_through_tokens() {
        let auth = authenticator();
        let orgs = eddsa(&json!({"sub": "u", "orgs": ["a", "b"], "access": "r"}));
        let with = |h: Option<&str>| auth.authenticate(Credential::Bearer(&orgs), h, NOW);
        assert_eq!(with(Some("b")).expect("b").tenant.as_deref(), Some("b"));
        assert_eq!(with(Some("c")), Err(AuthError::TenantNotAllowed));
        assert_eq!(with(None), Err(AuthError::TenantRequired));
        // A header alone is never trusted: a key-less request is still Missing, and a token bound
        // to another tenant cannot switch.
        assert_eq!(
            auth.authenticate(Credential::None, Some("a"), NOW),
            Err(AuthError::Missing)
        );
        let bound = hs256(&json!({"tenant_id": "a"}));
        assert_eq!(
            auth.authenticate(Credential::Bearer(&bound), Some("b"), NOW),
            Err(AuthError::TenantNotAllowed)
        );
        // The api key is unbound: the header narrows it.
        let p = auth
            .authenticate(Credential::ApiKeyHeader(SECRET), Some("a"), NOW)
            .expect("narrowed");
        assert_eq!(p.tenant.as_deref(), Some("a"));
        assert!(p.can_manage());
    }

    #[test]
    fn config_is_validated() {
        let bad = [
            AuthConfig {
                api_key: Some(String::new()),
                ..AuthConfig::default()
            },
            AuthConfig {
                api_key: Some("k".into()),
                read_only_api_key: Some("k".into()),
                ..AuthConfig::default()
            },
            AuthConfig {
                jwt_rbac: true,
                ..AuthConfig::default()
            },
            AuthConfig {
                tenant_claims: vec![String::new()],
                ..AuthConfig::default()
            },
            AuthConfig {
                max_token_bytes: 10,
                ..AuthConfig::default()
            },
            AuthConfig {
                jwt_rbac: true,
                jwks_path: Some("/nonexistent/jwks.json".into()),
                ..AuthConfig::default()
            },
            // A JWKS without jwt_rbac would leave the node open.
            AuthConfig {
                jwks_path: Some("/etc/jwks.json".into()),
                ..AuthConfig::default()
            },
            AuthConfig {
                api_key: Some("k".into()),
                audience: Some("tessera".into()),
                ..AuthConfig::default()
            },
        ];
        for config in bad {
            assert!(Authenticator::new(config.clone()).is_err(), "{config:?}");
        }
    }

    #[test]
    fn authenticator_is_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Authenticator>();
        shared::<Principal>();
    }

    /// Median cost of one `authenticate` call; printed, not asserted. Run with `--release
    /// --nocapture` for meaningful figures.
    #[test]
    fn authenticate_cost_is_printed() {
        let auth = authenticator();
        let claims = json!({"sub": "bench", "tenant_id": "acme", "exp": NOW + 3600,
                            "access": [{"collection": "docs", "access": "rw"}]});
        let rs = sign(
            &header(Algorithm::RS256, Some(RSA_KID)),
            &claims,
            &TestKeys::get().rsa_encoding(),
        );
        let es = sign(
            &header(Algorithm::ES256, Some("ec-1")),
            &claims,
            &TestKeys::get().ec.ec_encoding(),
        );
        let cases = [
            ("api key", SECRET.to_owned()),
            ("HS256", hs256(&claims)),
            ("EdDSA", eddsa(&claims)),
            ("ES256", es),
            ("RS256", rs),
        ];
        for (name, token) in &cases {
            let iterations = if cfg!(debug_assertions) { 50 } else { 2000 };
            let mut samples = Vec::with_capacity(iterations);
            for _ in 0..iterations {
                let start = Instant::now();
                let p = auth.authenticate(Credential::Bearer(token), None, NOW);
                samples.push(start.elapsed());
                assert!(p.is_ok(), "{name}");
            }
            samples.sort();
            eprintln!(
                "authenticate {name}: median {:.2} us over {iterations} ({})",
                samples[iterations / 2].as_secs_f64() * 1e6,
                if cfg!(debug_assertions) {
                    "debug build"
                } else {
                    "release build"
                },
            );
        }
    }
}
