//! Test keys: Ed25519 and P-256 pairs from rcgen (generated once per test process), the RSA pair
//! committed under `testdata/` (see its README), and their JWKs built independently of
//! jsonwebtoken's own JWK code.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

pub(crate) const RSA_PRIVATE_PEM: &str = include_str!("testdata/rsa_private.pem");
pub(crate) const RSA_PUBLIC_PEM: &str = include_str!("testdata/rsa_public.pem");
pub(crate) const RSA_ATTACKER_PRIVATE_PEM: &str = include_str!("testdata/rsa_attacker_private.pem");
pub(crate) const RSA_JWKS: &str = include_str!("testdata/rsa_jwks.json");
pub(crate) const RSA_KID: &str = "rsa-test-1";

pub(crate) fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A generated key pair: its private key (PKCS#8 PEM) and its raw public key.
pub(crate) struct Pair {
    pub private_pem: String,
    pub public_pem: String,
    pub public_raw: Vec<u8>,
}

impl Pair {
    pub fn ed25519() -> Pair {
        Pair::generate(&rcgen::PKCS_ED25519)
    }

    pub fn p256() -> Pair {
        Pair::generate(&rcgen::PKCS_ECDSA_P256_SHA256)
    }

    fn generate(alg: &'static rcgen::SignatureAlgorithm) -> Pair {
        let kp = rcgen::KeyPair::generate_for(alg).expect("rcgen generates ed25519 and p-256");
        Pair {
            private_pem: kp.serialize_pem(),
            public_pem: kp.public_key_pem(),
            public_raw: kp.public_key_raw().to_vec(),
        }
    }

    pub fn ed_encoding(&self) -> EncodingKey {
        EncodingKey::from_ed_pem(self.private_pem.as_bytes()).expect("rcgen pkcs8 ed25519")
    }

    pub fn ec_encoding(&self) -> EncodingKey {
        EncodingKey::from_ec_pem(self.private_pem.as_bytes()).expect("rcgen pkcs8 p-256")
    }

    pub fn ed_jwk(&self, kid: &str) -> Value {
        assert_eq!(self.public_raw.len(), 32, "raw ed25519 public key");
        json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig",
               "x": b64u(&self.public_raw)})
    }

    pub fn ec_jwk(&self, kid: &str) -> Value {
        assert_eq!(self.public_raw.len(), 65, "uncompressed p-256 point");
        json!({"kty": "EC", "crv": "P-256", "kid": kid,
               "x": b64u(&self.public_raw[1..33]), "y": b64u(&self.public_raw[33..])})
    }
}

pub(crate) struct TestKeys {
    pub ed: Pair,
    pub ec: Pair,
}

impl TestKeys {
    pub fn get() -> &'static TestKeys {
        static KEYS: OnceLock<TestKeys> = OnceLock::new();
        KEYS.get_or_init(|| TestKeys {
            ed: Pair::ed25519(),
            ec: Pair::p256(),
        })
    }

    pub fn ed_jwk(&self, kid: &str) -> Value {
        self.ed.ed_jwk(kid)
    }

    pub fn ec_jwk(&self, kid: &str) -> Value {
        self.ec.ec_jwk(kid)
    }

    pub fn rsa_jwk(&self) -> Value {
        let doc: Value = serde_json::from_str(RSA_JWKS).expect("testdata/rsa_jwks.json is JSON");
        doc["keys"][0].clone()
    }

    pub fn rsa_encoding(&self) -> EncodingKey {
        EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).expect("testdata rsa key")
    }

    pub fn rsa_attacker_encoding(&self) -> EncodingKey {
        EncodingKey::from_rsa_pem(RSA_ATTACKER_PRIVATE_PEM.as_bytes()).expect("testdata rsa key")
    }

    /// `ed-1`, `ec-1` and `rsa-test-1`.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.ed_jwk("ed-1"), self.ec_jwk("ec-1"), self.rsa_jwk()]})
    }
}

/// Signs `claims` (any JSON) under `header`.
pub(crate) fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).expect("test token encodes")
}

/// A header with `alg` and optional `kid`.
pub(crate) fn header(alg: jsonwebtoken::Algorithm, kid: Option<&str>) -> Header {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    h
}

/// A token from raw header and payload JSON text, signed with HMAC-SHA256 over `secret`
/// (for headers jsonwebtoken would not produce, such as `alg: none`).
pub(crate) fn raw_hs256(header: &str, payload: &str, secret: &[u8]) -> String {
    let message = format!("{}.{}", b64u(header.as_bytes()), b64u(payload.as_bytes()));
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret),
        jsonwebtoken::Algorithm::HS256,
    )
    .expect("hmac signs");
    format!("{message}.{sig}")
}
