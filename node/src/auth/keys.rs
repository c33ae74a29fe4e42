//! The JWKS: public keys by `kid`, each pinned to one algorithm.
//!
//! A key that cannot be used safely is skipped with a reason (the rest of the file still loads);
//! a file that is not a JWKS at all, or names one `kid` twice, is refused whole.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use serde_json::Value;

use super::MAX_JWKS_FILE_BYTES;

/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (the verifier's own limit).
const MAX_RSA_BITS: usize = 4096;

/// One verification key.
pub(crate) struct VerifyKey {
    /// The only algorithm this key verifies.
    pub alg: Algorithm,
    pub key: DecodingKey,
    /// Signature and algorithm only; registered claims are checked by `claims`.
    pub validation: Validation,
}

/// Keys by `kid`.
#[derive(Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, VerifyKey>,
}

impl KeySet {
    pub fn get(&self, kid: &str) -> Option<&VerifyKey> {
        self.by_kid.get(kid)
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.by_kid.keys().cloned().collect();
        kids.sort();
        kids
    }
}

/// What a JWKS load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwksReport {
    /// `kid`s now accepted, sorted.
    pub loaded: Vec<String>,
    /// Keys left out: (`kid` if any, reason).
    pub skipped: Vec<(Option<String>, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("read jwks {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("jwks {path} is larger than {MAX_JWKS_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("jwks is not a JSON object with a \"keys\" list: {0}")]
    Shape(String),
    #[error("jwks names kid {0:?} twice")]
    DuplicateKid(String),
}

/// Reads and parses a JWKS file.
pub(crate) fn load_file(path: &Path) -> Result<(KeySet, JwksReport), JwksError> {
    let read_err = |source| JwksError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_JWKS_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_JWKS_FILE_BYTES {
        return Err(JwksError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    parse(&bytes)
}

/// Parses a JWKS document.
pub(crate) fn parse(bytes: &[u8]) -> Result<(KeySet, JwksReport), JwksError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| JwksError::Shape(e.to_string()))?;
    let Some(Value::Array(entries)) = doc.get("keys") else {
        return Err(JwksError::Shape("no \"keys\" list".to_owned()));
    };
    let mut set = KeySet::default();
    let mut report = JwksReport::default();
    for entry in entries {
        let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
        let jwk: Jwk = match serde_json::from_value(entry.clone()) {
            Ok(jwk) => jwk,
            Err(e) => {
                report.skipped.push((kid, format!("not a JWK: {e}")));
                continue;
            }
        };
        let Some(kid) = kid else {
            report.skipped.push((None, "no kid".to_owned()));
            continue;
        };
        match verify_key(&jwk) {
            Ok(key) => {
                if set.by_kid.insert(kid.clone(), key).is_some() {
                    return Err(JwksError::DuplicateKid(kid));
                }
            }
            Err(reason) => report.skipped.push((Some(kid), reason)),
        }
    }
    report.loaded = set.kids();
    Ok((set, report))
}

/// The key and its single algorithm, or why it is not usable.
fn verify_key(jwk: &Jwk) -> Result<VerifyKey, String> {
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_)) => {
            return Err("not a signature key (use)".to_owned());
        }
    }
    let declared = match jwk.common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::RS384) => Some(Algorithm::RS384),
        Some(KeyAlgorithm::RS512) => Some(Algorithm::RS512),
        Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
        Some(KeyAlgorithm::PS384) => Some(Algorithm::PS384),
        Some(KeyAlgorithm::PS512) => Some(Algorithm::PS512),
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(KeyAlgorithm::ES384) => Some(Algorithm::ES384),
        Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
        Some(_) => return Err("unsupported alg".to_owned()),
    };
    let bad = |e: jsonwebtoken::errors::Error| format!("bad key material: {e}");
    let (key, alg) = match &jwk.algorithm {
        AlgorithmParameters::RSA(params) => {
            let key = DecodingKey::from_rsa_components(&params.n, &params.e).map_err(bad)?;
            if let DecodingKeyKind::RsaModulusExponent { n, .. } = key.kind() {
                let first = n.iter().position(|b| *b != 0).unwrap_or(n.len());
                let bits = (n.len() - first) * 8;
                if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                    return Err(format!(
                        "RSA modulus must be {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
                    ));
                }
            }
            (key, declared.unwrap_or(Algorithm::RS256))
        }
        AlgorithmParameters::EllipticCurve(params) => {
            let (alg, coord) = match params.curve {
                EllipticCurve::P256 => (Algorithm::ES256, 32),
                EllipticCurve::P384 => (Algorithm::ES384, 48),
                _ => return Err("unsupported curve".to_owned()),
            };
            let key = DecodingKey::from_ec_components(&params.x, &params.y).map_err(bad)?;
            // SEC1 uncompressed point: 0x04 || x || y.
            if key.try_get_as_bytes().map(<[u8]>::len).ok() != Some(1 + 2 * coord) {
                return Err("EC coordinates have the wrong length".to_owned());
            }
            if declared.is_some_and(|d| d != alg) {
                return Err("alg does not match the curve".to_owned());
            }
            (key, alg)
        }
        AlgorithmParameters::OctetKeyPair(params) => {
            if params.curve != EllipticCurve::Ed25519 {
                return Err("unsupported curve".to_owned());
            }
            let key = DecodingKey::from_ed_components(&params.x).map_err(bad)?;
            // The verifier slices the first 32 bytes and would panic on fewer.
            if key.try_get_as_bytes().map(<[u8]>::len).ok() != Some(32) {
                return Err("Ed25519 key must be 32 bytes".to_owned());
            }
            (key, Algorithm::EdDSA)
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric keys are not accepted from a JWKS".to_owned());
        }
        _ => return Err("unsupported key type".to_owned()),
    };
    if let Some(declared) = declared
        && declared.family() != alg.family()
    {
        return Err("alg does not match the key type".to_owned());
    }
    let alg = declared.unwrap_or(alg);
    // Build a verifier once now, so a key that is not a valid point / modulus is skipped here
    // rather than failing every request.
    jsonwebtoken::crypto::verify("", b"probe", &key, alg).map_err(bad)?;
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    Ok(VerifyKey {
        alg,
        key,
        validation,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::test_keys::{TestKeys, b64u};

    #[test]
    fn loads_the_three_key_types_pinned_to_their_algorithm() {
        let keys = TestKeys::get();
        let (set, report) = parse(keys.jwks().to_string().as_bytes()).expect("jwks");
        assert_eq!(report.loaded, vec!["ec-1", "ed-1", "rsa-test-1"]);
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        assert_eq!(set.get("ed-1").map(|k| k.alg), Some(Algorithm::EdDSA));
        assert_eq!(set.get("ec-1").map(|k| k.alg), Some(Algorithm::ES256));
        assert_eq!(set.get("rsa-test-1").map(|k| k.alg), Some(Algorithm::RS256));
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_reason() {
        let keys = TestKeys::get();
        let ed = keys.ed_jwk("ok");
        let doc = json!({"keys": [
            ed,
            {"kty": "oct", "kid": "sym", "k": b64u(b"secret")},
            {"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": b64u(&[1u8; 16])},
            {"kty": "OKP", "crv": "Ed25519", "kid": "long", "x": b64u(&[1u8; 40])},
            {"kty": "OKP", "crv": "Ed25519", "kid": "badb64", "x": "!!!"},
            {"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": b64u(&[1u8; 32])},
            {"kty": "EC", "crv": "P-256", "kid": "offcurve", "x": b64u(&[1u8; 32]), "y": b64u(&[2u8; 32])},
            {"kty": "EC", "crv": "P-256", "kid": "es384", "alg": "ES384", "x": b64u(&[1u8; 32]), "y": b64u(&[2u8; 32])},
            {"kty": "RSA", "kid": "small", "n": b64u(&[0xff; 128]), "e": "AQAB"},
            {"kty": "RSA", "kid": "hs", "alg": "HS256", "n": b64u(&[0xff; 256]), "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": b64u(&[1u8; 32])},
            {"kty": "OKP", "crv": "Ed25519", "x": b64u(&[1u8; 32])},
            {"kty": "XYZ", "kid": "weird"},
            "not an object",
        ]});
        let (set, report) = parse(doc.to_string().as_bytes()).expect("jwks");
        assert_eq!(report.loaded, vec!["ok"]);
        assert_eq!(report.skipped.len(), 13, "{:?}", report.skipped);
        assert!(!set.contains("sym") && !set.contains("short") && !set.contains("enc"));
    }

    #[test]
    fn bad_documents_are_refused_whole() {
        assert!(matches!(parse(b"not json"), Err(JwksError::Shape(_))));
        assert!(matches!(parse(b"{}"), Err(JwksError::Shape(_))));
        assert!(matches!(
            parse(br#"{"keys": {}}"#),
            Err(JwksError::Shape(_))
        ));
        let keys = TestKeys::get();
        let doc = json!({"keys": [keys.ed_jwk("same"), keys.ec_jwk("same")]});
        assert!(matches!(
            parse(doc.to_string().as_bytes()),
            Err(JwksError::DuplicateKid(kid)) if kid == "same"
        ));
        let (set, report) = parse(br#"{"keys": []}"#).expect("empty");
        assert!(report.loaded.is_empty() && set.kids().is_empty());
    }

    #[test]
    fn file_errors_name_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.json");
        let err = load_file(&missing).err().expect("missing file");
        assert!(err.to_string().contains("missing.json"), "{err}");
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; MAX_JWKS_FILE_BYTES as usize + 1]).expect("write");
        assert!(matches!(load_file(&big), Err(JwksError::TooLarge { .. })));
    }
}
