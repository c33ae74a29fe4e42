//! From verified claims to a [`Principal`]: registered-claim checks (`exp`, `nbf`, `iss`, `aud`),
//! Qdrant's `access` / `value_exists`, `roles`, and the tenant (tenant claims, `access[].payload`,
//! `orgs` + `X-Tenant-Id`). Pure functions over JSON; the signature is checked before this runs.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::principal::{Access, AccessSpec, AuthMethod, Principal, TenantSource, ValueExists};
use super::{AuthConfig, AuthError, MAX_ORGS, MAX_TENANT_ID_BYTES};

pub(crate) type Claims = Map<String, Value>;

/// Refuses a claims document (the JWT's decoded payload) that repeats a key in any object.
/// JSON parsers disagree on repeated keys (first wins, last wins, error), so a token that
/// says `tenant_id` twice means different tenants to different readers: it is refused.
pub(crate) fn refuse_repeated_claims(payload_json: &[u8]) -> Result<(), AuthError> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(payload_json);
    UniqueKeys
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| {
            if e.is_data() {
                AuthError::invalid("token repeats a claim")
            } else {
                AuthError::invalid("claims are not a JSON object")
            }
        })
}

/// Walks a JSON document, failing on the first object that repeats a key.
struct UniqueKeys;

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueKeys)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(serde::de::Error::custom("repeated key"));
            }
            map.next_value_seed(UniqueKeys)?;
        }
        Ok(())
    }
}

/// Checks `exp` and `nbf` (with leeway) against `now`, and `iss` / `aud` when configured.
/// Returns `exp`.
pub(crate) fn check_registered(
    claims: &Claims,
    config: &AuthConfig,
    now: u64,
) -> Result<Option<u64>, AuthError> {
    let leeway = config.leeway_secs;
    let exp = numeric_date(claims, "exp")?;
    match exp {
        Some(exp) if exp.saturating_add(leeway) < now => {
            return Err(AuthError::invalid("token expired"));
        }
        Some(_) => {}
        None if config.require_exp => return Err(AuthError::invalid("token has no exp")),
        None => {}
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(AuthError::invalid("token not valid yet (nbf)"));
    }
    if let Some(want) = &config.issuer {
        match claims.get("iss") {
            Some(Value::String(iss)) if iss == want => {}
            None | Some(Value::Null) => return Err(AuthError::invalid("token has no iss")),
            Some(_) => return Err(AuthError::invalid("iss does not match")),
        }
    }
    // With no audience configured, `aud` is not checked (unlike jsonwebtoken's default, which
    // refuses every token that carries one).
    if let Some(want) = &config.audience {
        let matches = match claims.get("aud") {
            None | Some(Value::Null) => return Err(AuthError::invalid("token has no aud")),
            Some(Value::String(aud)) => aud == want,
            Some(Value::Array(auds)) => {
                let mut found = false;
                for aud in auds {
                    match aud {
                        Value::String(aud) => found |= aud == want,
                        _ => return Err(AuthError::invalid("aud must be strings")),
                    }
                }
                found
            }
            Some(_) => return Err(AuthError::invalid("aud must be strings")),
        };
        if !matches {
            return Err(AuthError::invalid("aud does not match"));
        }
    }
    Ok(exp)
}

fn numeric_date(claims: &Claims, name: &str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(secs) = n.as_u64() {
                return Ok(Some(secs));
            }
            match n.as_f64() {
                // Fractional seconds are allowed by RFC 7519; truncate.
                Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(Some(f as u64)),
                Some(_) | None => Err(AuthError::Invalid(format!("{name} is out of range"))),
            }
        }
        Some(_) => Err(AuthError::Invalid(format!("{name} must be a number"))),
    }
}

/// Maps verified claims to a principal and resolves its tenant with `x_tenant_id`.
pub(crate) fn principal_from_claims(
    claims: &Claims,
    config: &AuthConfig,
    method: AuthMethod,
    expires_at: Option<u64>,
    x_tenant_id: Option<&str>,
) -> Result<Principal, AuthError> {
    let subject = subject(claims)?;
    let roles = roles(claims)?;
    let role_level = roles.as_ref().map(|names| {
        names
            .iter()
            .filter_map(|name| config.roles.get(name).copied())
            .max()
    });
    let (access, payload_binding) = match claims.get("access") {
        None | Some(Value::Null) => {
            let access = match role_level {
                Some(Some(level)) => AccessSpec::Global(level),
                Some(None) => AccessSpec::nothing(),
                None if config.absent_access_means_manage => AccessSpec::Global(Access::Manage),
                None => AccessSpec::nothing(),
            };
            (access, None)
        }
        Some(value) => {
            let (access, binding) = parse_access(value)?;
            // Both `access` and `roles`: each must allow.
            let access = match role_level {
                Some(Some(level)) => access.capped(level),
                Some(None) => AccessSpec::nothing(),
                None => access,
            };
            (access, binding)
        }
    };
    let value_exists = value_exists(claims)?;

    let claimed = tenant_claim(claims, &config.tenant_claims)?;
    let from_payload = payload_binding
        .as_ref()
        .map(|(_, value)| tenant_value(value, "the payload binding"))
        .transpose()?;
    let bound = match (claimed, from_payload) {
        (Some((tenant, name)), Some(payload)) => {
            if tenant != payload {
                return Err(AuthError::invalid(
                    "the tenant claim and the payload binding disagree",
                ));
            }
            Some((tenant, TenantSource::Claim(name)))
        }
        (Some((tenant, name)), None) => Some((tenant, TenantSource::Claim(name))),
        (None, Some(payload)) => Some((payload, TenantSource::Payload)),
        (None, None) => None,
    };
    let orgs = orgs(claims)?;

    let mut principal = Principal::with_access(method, access);
    principal.subject = subject;
    principal.payload_binding = payload_binding;
    principal.value_exists = value_exists;
    principal.roles = roles.unwrap_or_default();
    principal.expires_at = expires_at;
    bind_tenant(principal, bound, orgs.as_deref(), x_tenant_id)
}

/// Sets the principal's tenant from what the token binds (`bound`), the tenants it lists
/// (`orgs`) and the `X-Tenant-Id` header. A token-bound principal is capped at read-write.
pub(crate) fn bind_tenant(
    mut principal: Principal,
    bound: Option<(String, TenantSource)>,
    orgs: Option<&[String]>,
    x_tenant_id: Option<&str>,
) -> Result<Principal, AuthError> {
    if let Some(header) = x_tenant_id
        && (header.is_empty() || header.len() > MAX_TENANT_ID_BYTES)
    {
        return Err(AuthError::TenantNotAllowed);
    }
    let resolved = match (bound, orgs) {
        (Some((tenant, source)), orgs) => {
            if let Some(orgs) = orgs
                && !orgs.contains(&tenant)
            {
                return Err(AuthError::invalid("the tenant claim is not among orgs"));
            }
            match (x_tenant_id, orgs, &source) {
                (None, _, _) => Some((tenant, source)),
                (Some(header), _, _) if header == tenant => Some((tenant, source)),
                // the tenant claim is the default org; the header switches to another org the
                // token lists. A payload binding is not an org list: it never switches.
                (Some(header), Some(orgs), TenantSource::Claim(_))
                    if orgs.iter().any(|org| org == header) =>
                {
                    Some((header.to_owned(), TenantSource::Orgs))
                }
                (Some(_), _, _) => return Err(AuthError::TenantNotAllowed),
            }
        }
        (None, Some(orgs)) => match (x_tenant_id, orgs) {
            (Some(header), orgs) => {
                if !orgs.iter().any(|org| org == header) {
                    return Err(AuthError::TenantNotAllowed);
                }
                Some((header.to_owned(), TenantSource::Orgs))
            }
            (None, []) => return Err(AuthError::invalid("orgs lists no tenant")),
            (None, [only]) => Some((only.clone(), TenantSource::Orgs)),
            (None, [_, _, ..]) => return Err(AuthError::TenantRequired),
        },
        (None, None) => x_tenant_id.map(|header| (header.to_owned(), TenantSource::Header)),
    };
    if let Some((tenant, source)) = resolved {
        if source.is_token_bound() {
            principal.access = principal.access.capped(Access::ReadWrite);
        }
        principal.tenant = Some(tenant);
        principal.tenant_source = Some(source);
    }
    Ok(principal)
}

/// Qdrant's `access`: `"r"`, `"m"`, or `[{collection, access: "r"|"rw", payload?}]`.
/// Returns the spec and the payload binding (one field, the same in every rule that has one;
/// it then applies to every collection of the token).
fn parse_access(value: &Value) -> Result<(AccessSpec, Option<(String, Value)>), AuthError> {
    const SHAPE: &str = "access must be \"r\", \"m\" or a list of {collection, access}";
    match value {
        Value::String(mode) => match mode.as_str() {
            "r" => Ok((AccessSpec::Global(Access::Read), None)),
            "m" => Ok((AccessSpec::Global(Access::Manage), None)),
            _ => Err(AuthError::invalid(SHAPE)),
        },
        Value::Array(rules) => {
            let mut map = BTreeMap::new();
            let mut binding: Option<(String, Value)> = None;
            for rule in rules {
                let Value::Object(rule) = rule else {
                    return Err(AuthError::invalid(SHAPE));
                };
                let collection = match rule.get("collection") {
                    Some(Value::String(c)) if !c.is_empty() => c.clone(),
                    _ => return Err(AuthError::invalid("access rule without a collection")),
                };
                let level = match rule.get("access").and_then(Value::as_str) {
                    Some("r") => Access::Read,
                    Some("rw") => Access::ReadWrite,
                    _ => {
                        return Err(AuthError::invalid(
                            "a collection's access must be \"r\" or \"rw\"",
                        ));
                    }
                };
                if map.insert(collection, level).is_some() {
                    return Err(AuthError::invalid("a collection appears twice in access"));
                }
                match rule.get("payload") {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(payload)) => {
                        let mut fields = payload.iter();
                        let (Some((field, value)), None) = (fields.next(), fields.next()) else {
                            return Err(AuthError::invalid(
                                "a payload binding must name exactly one field",
                            ));
                        };
                        let this = (field.clone(), value.clone());
                        match &binding {
                            Some(previous) if *previous != this => {
                                return Err(AuthError::invalid(
                                    "access rules bind different payloads",
                                ));
                            }
                            Some(_) => {}
                            None => binding = Some(this),
                        }
                    }
                    Some(_) => return Err(AuthError::invalid("payload must be an object")),
                }
            }
            Ok((AccessSpec::PerCollection(map), binding))
        }
        _ => Err(AuthError::invalid(SHAPE)),
    }
}

fn subject(claims: &Claims) -> Result<Option<String>, AuthError> {
    for name in ["sub", "subject"] {
        match claims.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => return Ok(Some(s.clone())),
            Some(_) => return Err(AuthError::Invalid(format!("{name} must be a string"))),
        }
    }
    Ok(None)
}

fn roles(claims: &Claims) -> Result<Option<Vec<String>>, AuthError> {
    const SHAPE: &str = "roles must be a list of strings";
    match claims.get("roles") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(role)) => Ok(Some(vec![role.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(role) => Ok(role.clone()),
                _ => Err(AuthError::invalid(SHAPE)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(AuthError::invalid(SHAPE)),
    }
}

fn orgs(claims: &Claims) -> Result<Option<Vec<String>>, AuthError> {
    const SHAPE: &str = "orgs must be a list of tenant ids";
    match claims.get("orgs") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.len() <= MAX_ORGS => items
            .iter()
            .map(|item| match item {
                Value::String(_) | Value::Number(_) => tenant_value(item, "orgs"),
                _ => Err(AuthError::invalid(SHAPE)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(AuthError::invalid(SHAPE)),
    }
}

fn value_exists(claims: &Claims) -> Result<Option<ValueExists>, AuthError> {
    const SHAPE: &str = "value_exists must be {collection, matches: [{key, value}]}";
    let object = match claims.get("value_exists") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(object)) => object,
        Some(_) => return Err(AuthError::invalid(SHAPE)),
    };
    let (Some(Value::String(collection)), Some(Value::Array(matches))) =
        (object.get("collection"), object.get("matches"))
    else {
        return Err(AuthError::invalid(SHAPE));
    };
    let matches = matches
        .iter()
        .map(|m| match (m.get("key"), m.get("value")) {
            (Some(Value::String(key)), Some(value)) => Ok((key.clone(), value.clone())),
            _ => Err(AuthError::invalid(SHAPE)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(ValueExists {
        collection: collection.clone(),
        matches,
    }))
}

/// The first configured tenant claim present, with its name. Two present claims that disagree
/// are refused.
fn tenant_claim(claims: &Claims, names: &[String]) -> Result<Option<(String, String)>, AuthError> {
    let mut found: Option<(String, String)> = None;
    for name in names {
        match claims.get(name) {
            None | Some(Value::Null) => {}
            Some(value) => {
                let tenant = tenant_value(value, name)?;
                match &found {
                    Some((first, _)) if *first != tenant => {
                        return Err(AuthError::invalid("tenant claims disagree"));
                    }
                    Some(_) => {}
                    None => found = Some((tenant, name.clone())),
                }
            }
        }
    }
    Ok(found)
}

/// A tenant id: a non-empty string of at most [`MAX_TENANT_ID_BYTES`], or an integer (a
/// custom shard key may be either).
fn tenant_value(value: &Value, what: &str) -> Result<String, AuthError> {
    let tenant = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => {
            return Err(AuthError::Invalid(format!(
                "{what} must be a string or an integer"
            )));
        }
    };
    if tenant.is_empty() || tenant.len() > MAX_TENANT_ID_BYTES {
        return Err(AuthError::Invalid(format!(
            "{what} must be 1 to {MAX_TENANT_ID_BYTES} bytes"
        )));
    }
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn claims(v: Value) -> Claims {
        match v {
            Value::Object(map) => map,
            _ => panic!("test claims must be an object"),
        }
    }

    fn jwt() -> AuthMethod {
        AuthMethod::Jwt {
            alg: Algorithm::HS256,
            kid: None,
        }
    }

    fn principal(v: Value, header: Option<&str>) -> Result<Principal, AuthError> {
        principal_with(&AuthConfig::default(), v, header)
    }

    fn principal_with(
        config: &AuthConfig,
        v: Value,
        header: Option<&str>,
    ) -> Result<Principal, AuthError> {
        principal_from_claims(&claims(v), config, jwt(), None, header)
    }

    fn per(entries: &[(&str, Access)]) -> AccessSpec {
        AccessSpec::PerCollection(entries.iter().map(|(c, a)| ((*c).to_owned(), *a)).collect())
    }

    fn invalid(r: Result<Principal, AuthError>) -> bool {
        matches!(r, Err(AuthError::Invalid(_)))
    }

    #[test]
    fn repeated_claims_are_refused_at_any_depth() {
        let repeated = |doc: &str| refuse_repeated_claims(doc.as_bytes());
        assert_eq!(repeated(r#"{"tenant_id":"a","exp":1}"#), Ok(()));
        assert_eq!(repeated(r#"{"a":{"b":1},"c":[{"b":2},{"b":3}]}"#), Ok(()));
        for bad in [
            r#"{"tenant_id":"a","tenant_id":"b"}"#,
            r#"{"access":[{"collection":"c","access":"r","access":"rw"}]}"#,
            r#"{"x":{"y":1,"y":1}}"#,
        ] {
            assert_eq!(
                repeated(bad),
                Err(AuthError::invalid("token repeats a claim")),
                "{bad}"
            );
        }
        for garbage in ["", "{", "[1,2", "{} trailing"] {
            assert_eq!(
                repeated(garbage),
                Err(AuthError::invalid("claims are not a JSON object")),
                "{garbage}"
            );
        }
    }

    #[test]
    fn qdrant_access_shapes() {
        let p = principal(json!({"access": "r"}), None).expect("r");
        assert_eq!(p.access, AccessSpec::Global(Access::Read));
        assert!(p.can_read("any") && !p.can_write("any") && !p.can_manage());

        let p = principal(json!({"access": "m"}), None).expect("m");
        assert!(p.can_manage() && p.can_write("any"));

        let p = principal(
            json!({"access": [{"collection": "a", "access": "r"}, {"collection": "b", "access": "rw"}]}),
            None,
        )
        .expect("list");
        assert_eq!(
            p.access,
            per(&[("a", Access::Read), ("b", Access::ReadWrite)])
        );
        assert!(p.can_read("a") && !p.can_write("a"));
        assert!(p.can_read("b") && p.can_write("b"));
        assert!(!p.can_read("c") && !p.can_manage() && !p.sees_all_collections());

        // Absent access: manage, as in Qdrant; or nothing when so configured.
        let p = principal(json!({"sub": "x"}), None).expect("absent");
        assert!(p.can_manage());
        let strict = AuthConfig {
            absent_access_means_manage: false,
            ..AuthConfig::default()
        };
        let p = principal_with(&strict, json!({}), None).expect("absent, strict");
        assert!(!p.can_read("a"));

        let p = principal(json!({"access": []}), None).expect("empty list");
        assert!(!p.can_read("a"));
    }

    #[test]
    fn malformed_access_is_refused() {
        for bad in [
            json!("rw"),
            json!("x"),
            json!(1),
            json!({"collection": "a"}),
            json!([{"collection": "a", "access": "m"}]),
            json!([{"collection": "a"}]),
            json!([{"access": "r"}]),
            json!([{"collection": "", "access": "r"}]),
            json!([{"collection": "a", "access": "r"}, {"collection": "a", "access": "rw"}]),
            json!(["a"]),
            json!([{"collection": "a", "access": "r", "payload": "t"}]),
            json!([{"collection": "a", "access": "r", "payload": {}}]),
            json!([{"collection": "a", "access": "r", "payload": {"x": 1, "y": 2}}]),
            json!([
                {"collection": "a", "access": "r", "payload": {"t": "1"}},
                {"collection": "b", "access": "r", "payload": {"t": "2"}}
            ]),
        ] {
            assert!(
                invalid(principal(json!({ "access": bad.clone() }), None)),
                "{bad}"
            );
        }
    }

    #[test]
    fn payload_binding_binds_the_tenant() {
        let p = principal(
            json!({"access": [{"collection": "docs", "access": "rw", "payload": {"group_id": "user_1"}}]}),
            None,
        )
        .expect("payload");
        assert_eq!(
            p.payload_binding,
            Some(("group_id".to_owned(), json!("user_1")))
        );
        assert_eq!(p.tenant.as_deref(), Some("user_1"));
        assert_eq!(p.tenant_source, Some(TenantSource::Payload));
        assert!(p.can_write("docs") && !p.can_manage());

        // Integers are tenant ids too (a shard key may be an integer); floats are not.
        let p = principal(
            json!({"access": [{"collection": "d", "access": "r", "payload": {"org": 7}}]}),
            None,
        )
        .expect("int payload");
        assert_eq!(p.tenant.as_deref(), Some("7"));
        assert!(invalid(principal(
            json!({"access": [{"collection": "d", "access": "r", "payload": {"org": 7.5}}]}),
            None
        )));

        // The same binding in several rules is fine; a claim must agree with it.
        let same = json!([
            {"collection": "a", "access": "r", "payload": {"t": "x"}},
            {"collection": "b", "access": "rw", "payload": {"t": "x"}}
        ]);
        assert!(principal(json!({ "access": same.clone() }), None).is_ok());
        assert!(principal(json!({"access": same.clone(), "tenant_id": "x"}), None).is_ok());
        assert!(invalid(principal(
            json!({"access": same, "tenant_id": "y"}),
            None
        )));
    }

    #[test]
    fn tenant_claims_are_configurable() {
        let p = principal(json!({"tenant_id": "acme"}), None).expect("tenant_id");
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        assert_eq!(
            p.tenant_source,
            Some(TenantSource::Claim("tenant_id".into()))
        );
        // Absent access means manage, but a token-bound principal is capped at read-write.
        assert_eq!(p.access, AccessSpec::Global(Access::ReadWrite));
        assert!(!p.can_manage() && p.can_write("c"));

        // org_id is not a tenant claim unless configured.
        let p = principal(json!({"org_id": "acme"}), None).expect("unconfigured");
        assert_eq!(p.tenant, None);
        let config = AuthConfig {
            tenant_claims: vec!["tenant_id".into(), "org_id".into()],
            ..AuthConfig::default()
        };
        let p = principal_with(&config, json!({"org_id": "acme"}), None).expect("org_id");
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        assert!(principal_with(&config, json!({"org_id": "a", "tenant_id": "a"}), None).is_ok());
        assert!(invalid(principal_with(
            &config,
            json!({"org_id": "a", "tenant_id": "b"}),
            None
        )));

        for bad in [
            json!(""),
            json!(true),
            json!(["a"]),
            json!({"a": 1}),
            json!("x".repeat(MAX_TENANT_ID_BYTES + 1)),
        ] {
            assert!(invalid(principal(json!({ "tenant_id": bad }), None)));
        }
    }

    #[test]
    fn orgs_and_the_tenant_header() {
        let orgs = json!({"orgs": ["a", "b"], "access": "r"});
        let p = principal(orgs.clone(), Some("a")).expect("a listed");
        assert_eq!(p.tenant.as_deref(), Some("a"));
        assert_eq!(p.tenant_source, Some(TenantSource::Orgs));
        assert!(p.can_read("c") && !p.can_write("c"));
        let p = principal(orgs.clone(), Some("b")).expect("b listed");
        assert_eq!(p.tenant.as_deref(), Some("b"));

        assert_eq!(
            principal(orgs.clone(), Some("c")),
            Err(AuthError::TenantNotAllowed)
        );
        assert_eq!(
            principal(orgs.clone(), Some("")),
            Err(AuthError::TenantNotAllowed)
        );
        assert_eq!(principal(orgs, None), Err(AuthError::TenantRequired));

        // A single org needs no header.
        let p = principal(json!({"orgs": ["a"]}), None).expect("single org");
        assert_eq!(p.tenant.as_deref(), Some("a"));
        assert!(!p.can_manage());
        assert!(invalid(principal(json!({"orgs": []}), None)));
        assert_eq!(
            principal(json!({"orgs": []}), Some("a")),
            Err(AuthError::TenantNotAllowed)
        );
        for bad in [json!("a,b"), json!([["a"]]), json!([null]), json!({"a": 1})] {
            assert!(invalid(principal(json!({ "orgs": bad }), Some("a"))));
        }

        // A token bound to one tenant: the header may only repeat it.
        let bound = json!({"tenant_id": "a"});
        assert!(principal(bound.clone(), Some("a")).is_ok());
        assert_eq!(
            principal(bound, Some("b")),
            Err(AuthError::TenantNotAllowed)
        );
        // ... and it must be among orgs when both are present.
        assert!(principal(json!({"tenant_id": "a", "orgs": ["a", "b"]}), None).is_ok());
        // The tenant claim is the default org; X-Tenant-Id switches among the orgs, never out.
        let both = json!({"tenant_id": "a", "orgs": ["a", "b"]});
        let p = principal(both.clone(), None).expect("default org");
        assert_eq!(p.tenant.as_deref(), Some("a"));
        let p = principal(both.clone(), Some("b")).expect("switched");
        assert_eq!(p.tenant.as_deref(), Some("b"));
        assert_eq!(p.tenant_source, Some(TenantSource::Orgs));
        assert!(p.is_token_bound());
        assert_eq!(principal(both, Some("c")), Err(AuthError::TenantNotAllowed));
        assert!(invalid(principal(
            json!({"tenant_id": "c", "orgs": ["a", "b"]}),
            None
        )));

        // A token listing no tenant: the header narrows (never widens) and is recorded as such.
        let p = principal(json!({"access": "r"}), Some("z")).expect("narrowed");
        assert_eq!(p.tenant.as_deref(), Some("z"));
        assert_eq!(p.tenant_source, Some(TenantSource::Header));
        assert!(!p.is_token_bound());
    }

    #[test]
    fn roles_map_through_config() {
        let p = principal(json!({"roles": ["viewer"]}), None).expect("viewer");
        assert_eq!(p.access, AccessSpec::Global(Access::Read));
        assert_eq!(p.roles, vec!["viewer".to_owned()]);
        let p = principal(json!({"roles": ["viewer", "editor"]}), None).expect("editor");
        assert_eq!(p.access, AccessSpec::Global(Access::ReadWrite));
        let p = principal(json!({"roles": "admin"}), None).expect("admin");
        assert!(p.can_manage());
        // Unknown roles grant nothing (not the absent-access default).
        let p = principal(json!({"roles": ["intern"]}), None).expect("unknown");
        assert!(!p.can_read("c"));
        // access and roles: both must allow.
        let p = principal(json!({"roles": ["viewer"], "access": "m"}), None).expect("capped");
        assert_eq!(p.access, AccessSpec::Global(Access::Read));
        let p = principal(
            json!({"roles": ["admin"], "access": [{"collection": "c", "access": "rw"}]}),
            None,
        )
        .expect("list");
        assert!(p.can_write("c") && !p.can_read("d"));
        assert!(invalid(principal(json!({"roles": [1]}), None)));
        assert!(invalid(principal(json!({"roles": {"a": 1}}), None)));
    }

    #[test]
    fn subject_and_value_exists() {
        let p = principal(json!({"sub": "alice"}), None).expect("sub");
        assert_eq!(p.subject.as_deref(), Some("alice"));
        let p = principal(json!({"subject": "bob"}), None).expect("subject");
        assert_eq!(p.subject.as_deref(), Some("bob"));
        assert!(invalid(principal(json!({"sub": 5}), None)));

        let p = principal(
            json!({"value_exists": {"collection": "users", "matches": [{"key": "user", "value": "alice"}]}}),
            None,
        )
        .expect("value_exists");
        assert_eq!(
            p.value_exists,
            Some(ValueExists {
                collection: "users".into(),
                matches: vec![("user".into(), json!("alice"))],
            })
        );
        for bad in [
            json!("users"),
            json!({"collection": "users"}),
            json!({"collection": "users", "matches": [{"key": "user"}]}),
            json!({"collection": 1, "matches": []}),
        ] {
            assert!(invalid(principal(json!({ "value_exists": bad }), None)));
        }
    }

    #[test]
    fn registered_claims() {
        // by default a token must expire
        assert_eq!(
            check_registered(&claims(json!({})), &AuthConfig::default(), NOW),
            Err(AuthError::invalid("token has no exp"))
        );
        let config = AuthConfig {
            require_exp: false,
            ..AuthConfig::default()
        };
        let check = |v: Value| check_registered(&claims(v), &config, NOW);
        assert_eq!(check(json!({})), Ok(None));
        assert_eq!(check(json!({"exp": NOW})), Ok(Some(NOW)));
        // Leeway is 30 s on both sides.
        assert!(check(json!({"exp": NOW - 30})).is_ok());
        assert!(check(json!({"exp": NOW - 31})).is_err());
        assert!(check(json!({"exp": (NOW - 10) as f64 + 0.5})).is_ok());
        assert!(check(json!({"nbf": NOW + 30})).is_ok());
        assert!(check(json!({"nbf": NOW + 31})).is_err());
        for bad in [json!("tomorrow"), json!(-1), json!(true), json!([1])] {
            assert!(check(json!({ "exp": bad.clone() })).is_err(), "exp {bad}");
            assert!(check(json!({ "nbf": bad.clone() })).is_err(), "nbf {bad}");
        }
        // aud and iss are not checked unless configured.
        assert!(check(json!({"aud": "elsewhere", "iss": "anyone"})).is_ok());

        let config = AuthConfig {
            issuer: Some("idp".into()),
            audience: Some("tessera".into()),
            require_exp: true,
            ..AuthConfig::default()
        };
        let check = |v: Value| check_registered(&claims(v), &config, NOW);
        let exp = NOW + 60;
        assert!(check(json!({"exp": exp, "iss": "idp", "aud": "tessera"})).is_ok());
        assert!(check(json!({"exp": exp, "iss": "idp", "aud": ["x", "tessera"]})).is_ok());
        assert!(check(json!({"iss": "idp", "aud": "tessera"})).is_err());
        assert!(check(json!({"exp": exp, "iss": "evil", "aud": "tessera"})).is_err());
        assert!(check(json!({"exp": exp, "aud": "tessera"})).is_err());
        assert!(check(json!({"exp": exp, "iss": "idp", "aud": "other"})).is_err());
        assert!(check(json!({"exp": exp, "iss": "idp", "aud": ["other"]})).is_err());
        assert!(check(json!({"exp": exp, "iss": "idp"})).is_err());
        assert!(check(json!({"exp": exp, "iss": "idp", "aud": [1]})).is_err());
        assert!(check(json!({"exp": exp, "iss": ["idp"], "aud": "tessera"})).is_err());
    }

    /// JSON of the shapes tokens carry: the claim names we read, with values of every kind.
    fn claim_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            prop::sample::select(vec!["a", "b", "r", "rw", "m", "07", "+7", "", "acme"])
                .prop_map(|s| json!(s)),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "collection",
                        "access",
                        "payload",
                        "matches",
                        "key",
                        "value",
                        "x",
                    ])
                    .prop_map(str::to_owned),
                    inner,
                    0..4,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    use proptest::strategy::Strategy as _;

    /// Every string and number inside `v`, as text.
    fn scalars(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Array(items) => items.iter().for_each(|i| scalars(i, out)),
            Value::Object(map) => map.values().for_each(|i| scalars(i, out)),
            Value::Null | Value::Bool(_) => {}
        }
    }

    proptest::proptest! {
        // `PROPTEST_CASES=100000 cargo test -p tessera-node --lib fuzz_` for a longer run
        #[test]
        fn fuzz_claims_never_panic_and_tenants_come_from_the_token(
            entries in proptest::collection::btree_map(
                proptest::sample::select(vec![
                    "tenant_id", "orgs", "access", "roles", "sub", "value_exists", "exp", "nbf",
                    "iss", "aud",
                ])
                .prop_map(str::to_owned),
                claim_value(),
                0..6,
            ),
            header in proptest::option::of(proptest::sample::select(vec!["a", "b", "acme", ""])),
        ) {
            let claims: Claims = entries.into_iter().collect();
            let config = AuthConfig::default();
            let _ = check_registered(&claims, &config, NOW);
            if let Ok(p) = principal_from_claims(&claims, &config, jwt(), None, header) {
                // a tenant is never made up: it is a value the token or the header carried
                if let Some(t) = &p.tenant {
                    let mut carried = Vec::new();
                    scalars(&Value::Object(claims.clone()), &mut carried);
                    proptest::prop_assert!(
                        header == Some(t.as_str()) || carried.contains(t),
                        "tenant {t} from {claims:?}"
                    );
                }
                if p.tenant_source.as_ref().is_some_and(TenantSource::is_token_bound) {
                    proptest::prop_assert!(!p.can_manage(), "a tenant-bound token never manages");
                }
            }
        }

        #[test]
        fn fuzz_repeated_claim_check_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = refuse_repeated_claims(&bytes);
        }
    }
}
