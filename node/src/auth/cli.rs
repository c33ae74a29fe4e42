//! `tessera token`: mint tokens for tests and operators, inspect a token against a
//! configuration, and print the JWKS entry of a private key.
//!
//! ```text
//! tessera token --secret $TESSERA_API_KEY --tenant acme --access rw --collection docs
//! tessera token --private-key ed25519.pem --kid k1 --orgs a,b --access r
//! tessera token jwk --private-key ed25519.pem --kid k1 > jwks.json
//! tessera token inspect <TOKEN|-> --jwks jwks.json
//! ```

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::rust_crypto;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::{AuthConfig, Authenticator, Credential, DEFAULT_LEEWAY_SECS, Principal};

/// `tessera token`: mint a token (flags below), or a subcommand.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: Option<TokenCommand>,
    #[command(flatten)]
    pub mint: MintArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Show a token's header and claims (unverified) and whether this configuration accepts it
    Inspect(InspectArgs),
    /// Print the public JWKS of a private key (a file for jwks_path)
    Jwk(JwkArgs),
}

/// Claims and key of a new token. Prints the token.
#[derive(Debug, Default, clap::Args)]
pub struct MintArgs {
    /// HMAC secret: the node's api_key (HS256)
    #[arg(
        long,
        env = "TESSERA_TOKEN_SECRET",
        hide_env_values = true,
        conflicts_with = "private_key"
    )]
    pub secret: Option<String>,
    /// PEM private key: RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA). RSA signing in this build
    /// has a timing side channel (RUSTSEC-2023-0071): mint RSA tokens only on trusted machines
    #[arg(long, value_name = "FILE", requires = "kid")]
    pub private_key: Option<PathBuf>,
    /// Key id in the header; the node picks the JWKS key by it
    #[arg(long)]
    pub kid: Option<String>,
    /// Signature algorithm [default: HS256 with --secret, else the key's]
    #[arg(long)]
    pub alg: Option<String>,
    /// Subject (sub), for the audit log
    #[arg(long)]
    pub sub: Option<String>,
    /// Tenant the token is bound to (claim named by --tenant-claim)
    #[arg(long)]
    pub tenant: Option<String>,
    /// Claim that carries --tenant
    #[arg(long, default_value = "tenant_id")]
    pub tenant_claim: String,
    /// Access: r or m globally, or r or rw with --collection [absent: Qdrant's default, manage]
    #[arg(long)]
    pub access: Option<String>,
    /// A collection --access applies to (repeatable)
    #[arg(long = "collection", value_name = "COLLECTION")]
    pub collections: Vec<String>,
    /// Seconds until the token expires
    #[arg(long, default_value_t = 3600)]
    pub exp_in_secs: u64,
    /// Leave out exp (the token never expires)
    #[arg(long)]
    pub no_exp: bool,
    /// Issuer (iss)
    #[arg(long)]
    pub iss: Option<String>,
    /// Audience (aud)
    #[arg(long)]
    pub aud: Option<String>,
    /// Tenants the bearer may choose among with X-Tenant-Id, comma-separated
    #[arg(long, value_delimiter = ',')]
    pub orgs: Vec<String>,
    /// Roles, comma-separated (viewer, editor, admin by default)
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Any claim, KEY=JSON (repeatable, applied last; a value that is not JSON is a string)
    #[arg(long = "claim", value_name = "KEY=JSON")]
    pub claims: Vec<String>,
}

/// A token checked against a configuration given by flags (or the node's environment).
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The token; - reads it from stdin
    pub token: String,
    /// The node's api_key (HS256 secret)
    #[arg(
        long,
        visible_alias = "api-key",
        env = "TESSERA_API_KEY",
        hide_env_values = true
    )]
    pub secret: Option<String>,
    /// The node's JWKS file
    #[arg(long, value_name = "FILE", env = "TESSERA_JWKS")]
    pub jwks: Option<PathBuf>,
    /// Required issuer
    #[arg(long)]
    pub iss: Option<String>,
    /// Required audience
    #[arg(long)]
    pub aud: Option<String>,
    /// Clock skew allowed on exp and nbf
    #[arg(long, default_value_t = DEFAULT_LEEWAY_SECS)]
    pub leeway_secs: u64,
    /// Accept tokens without exp, as a node started with --jwt-allow-no-exp does
    #[arg(long)]
    pub allow_no_exp: bool,
    /// Claims that carry the tenant (repeatable) [default: tenant_id]
    #[arg(long = "tenant-claim", value_name = "CLAIM")]
    pub tenant_claims: Vec<String>,
    /// A token without access grants nothing (instead of manage)
    #[arg(long)]
    pub absent_access_means_nothing: bool,
    /// The X-Tenant-Id header the request would carry
    #[arg(long)]
    pub x_tenant_id: Option<String>,
}

/// The public JWKS of a private key.
#[derive(Debug, clap::Args)]
pub struct JwkArgs {
    /// PEM private key (RSA, P-256 or Ed25519)
    #[arg(long, value_name = "FILE")]
    pub private_key: PathBuf,
    /// Key id tokens will name
    #[arg(long)]
    pub kid: String,
    /// Algorithm [default: the key's]
    #[arg(long)]
    pub alg: Option<String>,
}

/// Runs `tessera token ...`, printing to stdout.
pub fn run_token(args: TokenArgs) -> anyhow::Result<()> {
    let now = unix_now()?;
    let mut out = std::io::stdout().lock();
    match args.command {
        None => writeln!(out, "{}", mint(&args.mint, now)?)?,
        Some(TokenCommand::Jwk(jwk_args)) => {
            writeln!(out, "{}", serde_json::to_string_pretty(&jwks(&jwk_args)?)?)?;
        }
        Some(TokenCommand::Inspect(mut inspect_args)) => {
            if inspect_args.token == "-" {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("read token from stdin")?;
                inspect_args.token = line.trim().to_owned();
            }
            let report = inspect(&inspect_args, now)?;
            writeln!(out, "header:\n{}", pretty(&report.header))?;
            writeln!(out, "claims:\n{}", pretty(&report.claims))?;
            for (name, at) in [("exp", "expires"), ("nbf", "valid from")] {
                if let Some(t) = report.claims.get(name).and_then(Value::as_u64) {
                    writeln!(out, "{at}: {}", relative(t, now))?;
                }
            }
            match report.verdict {
                Verdict::Accepted(principal) => {
                    writeln!(out, "accepted: {}", describe(&principal))?;
                }
                Verdict::Unverified => writeln!(
                    out,
                    "not verified: give --secret or --jwks (or TESSERA_API_KEY / TESSERA_JWKS)"
                )?,
                Verdict::Rejected(reason) => bail!("token rejected: {reason}"),
            }
        }
    }
    Ok(())
}

fn unix_now() -> anyhow::Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock is before 1970")?
        .as_secs())
}

/// Builds and signs a token.
pub fn mint(args: &MintArgs, now: u64) -> anyhow::Result<String> {
    let alg = args.alg.as_deref().map(parse_alg).transpose()?;
    let (key, alg) = match (&args.secret, &args.private_key) {
        (Some(secret), None) => {
            let alg = alg.unwrap_or(Algorithm::HS256);
            if alg.family() != AlgorithmFamily::Hmac {
                bail!("--secret signs HS256/HS384/HS512, not {alg:?}");
            }
            (EncodingKey::from_secret(secret.as_bytes()), alg)
        }
        (None, Some(path)) => signing_key(path, alg)?,
        (Some(_), Some(_)) => bail!("give --secret or --private-key, not both"),
        (None, None) => bail!("give --secret (HS256) or --private-key (RS256/ES256/EdDSA)"),
    };
    let mut header = Header::new(alg);
    header.kid = args.kid.clone();
    jsonwebtoken::encode(&header, &claims(args, now)?, &key).context("sign token")
}

fn claims(args: &MintArgs, now: u64) -> anyhow::Result<Map<String, Value>> {
    let mut claims = Map::new();
    claims.insert("iat".into(), json!(now));
    if !args.no_exp {
        claims.insert("exp".into(), json!(now.saturating_add(args.exp_in_secs)));
    }
    let strings = [
        ("sub", &args.sub),
        ("iss", &args.iss),
        ("aud", &args.aud),
        (args.tenant_claim.as_str(), &args.tenant),
    ];
    for (name, value) in strings {
        if let Some(value) = value {
            claims.insert(name.to_owned(), json!(value));
        }
    }
    let access = match (args.access.as_deref(), args.collections.is_empty()) {
        (None, true) => None,
        (Some(mode @ ("r" | "m")), true) => Some(json!(mode)),
        (Some("rw"), true) => bail!("rw is per collection: add --collection"),
        (mode @ (None | Some("r" | "rw")), false) => {
            let mode = mode.unwrap_or("r");
            let rules: Vec<Value> = args
                .collections
                .iter()
                .map(|c| json!({"collection": c, "access": mode}))
                .collect();
            Some(Value::Array(rules))
        }
        (Some("m"), false) => bail!("m is global: drop --collection"),
        (Some(other), _) => bail!("--access must be r, rw or m, not {other:?}"),
    };
    if let Some(access) = access {
        claims.insert("access".into(), access);
    }
    if !args.orgs.is_empty() {
        claims.insert("orgs".into(), json!(args.orgs));
    }
    if !args.roles.is_empty() {
        claims.insert("roles".into(), json!(args.roles));
    }
    for claim in &args.claims {
        let Some((key, raw)) = claim.split_once('=') else {
            bail!("--claim {claim:?} is not KEY=JSON");
        };
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        claims.insert(key.to_owned(), value);
    }
    Ok(claims)
}

fn parse_alg(name: &str) -> anyhow::Result<Algorithm> {
    Algorithm::from_str(name).map_err(|_| anyhow::anyhow!("unknown --alg {name:?}"))
}

/// The private key in `path` and the algorithm it signs with (`alg`, or the key's natural one).
fn signing_key(path: &Path, alg: Option<Algorithm>) -> anyhow::Result<(EncodingKey, Algorithm)> {
    let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let from = |family: AlgorithmFamily| match family {
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(&pem),
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&pem),
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&pem),
        AlgorithmFamily::Hmac => Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into()),
    };
    let not_a_key = || {
        format!(
            "{} is not a PEM RSA, P-256 or Ed25519 private key",
            path.display()
        )
    };
    if let Some(alg) = alg {
        if alg.family() == AlgorithmFamily::Hmac {
            bail!("{alg:?} needs --secret, not --private-key");
        }
        let key = from(alg.family()).with_context(not_a_key)?;
        return Ok((key, alg));
    }
    if let Ok(key) = from(AlgorithmFamily::Ed) {
        return Ok((key, Algorithm::EdDSA));
    }
    if let Ok(key) = from(AlgorithmFamily::Ec) {
        // P-256 or P-384: whichever signs.
        for alg in [Algorithm::ES256, Algorithm::ES384] {
            if jsonwebtoken::crypto::sign(b"probe", &key, alg).is_ok() {
                return Ok((key, alg));
            }
        }
        bail!("{}: unsupported EC curve", path.display());
    }
    let key = from(AlgorithmFamily::Rsa).with_context(not_a_key)?;
    Ok((key, Algorithm::RS256))
}

/// `{"keys": [<public JWK of the private key>]}`.
pub fn jwks(args: &JwkArgs) -> anyhow::Result<Value> {
    let alg = args.alg.as_deref().map(parse_alg).transpose()?;
    let (key, alg) = signing_key(&args.private_key, alg)?;
    let mut jwk = match alg {
        // jsonwebtoken derives Ed25519 JWKs only from 48-byte PKCS#8 v1 keys; ring and rcgen
        // write v2 (with the public key inside), so derive the public key through the provider.
        Algorithm::EdDSA => {
            let public = (rust_crypto::DEFAULT_PROVIDER
                .key_utils
                .ed_pub_components_from_private_key)(
                key.as_bytes(), &EllipticCurve::Ed25519
            )
            .context("public key of the Ed25519 private key")?;
            Jwk {
                common: CommonParameters {
                    key_algorithm: Some(KeyAlgorithm::EdDSA),
                    ..CommonParameters::default()
                },
                algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: URL_SAFE_NO_PAD.encode(public),
                }),
            }
        }
        _ => Jwk::from_encoding_key(&key, alg).context("public key of the private key")?,
    };
    jwk.common.key_id = Some(args.kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(json!({ "keys": [jwk] }))
}

/// What `inspect` found.
#[derive(Debug)]
pub struct InspectReport {
    /// The header as sent (unverified).
    pub header: Value,
    /// The claims as sent (unverified).
    pub claims: Value,
    pub verdict: Verdict,
}

#[derive(Debug)]
pub enum Verdict {
    Accepted(Box<Principal>),
    Rejected(String),
    /// No key to verify with was given.
    Unverified,
}

/// Decodes the token without verifying it, then authenticates it under the given configuration.
pub fn inspect(args: &InspectArgs, now: u64) -> anyhow::Result<InspectReport> {
    let token = args.token.trim();
    let mut parts = token.split('.');
    let mut segment = |what: &str| -> anyhow::Result<Value> {
        let part = parts
            .next()
            .with_context(|| format!("not a JWT: no {what}"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .with_context(|| format!("not a JWT: {what} is not base64url"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("not a JWT: {what} is not JSON"))
    };
    let header = segment("header")?;
    let claims = segment("claims")?;
    if args.secret.is_none() && args.jwks.is_none() {
        return Ok(InspectReport {
            header,
            claims,
            verdict: Verdict::Unverified,
        });
    }
    let config = AuthConfig {
        api_key: args.secret.clone(),
        jwt_rbac: true,
        jwks_path: args.jwks.clone(),
        issuer: args.iss.clone(),
        audience: args.aud.clone(),
        leeway_secs: args.leeway_secs,
        require_exp: !args.allow_no_exp,
        tenant_claims: if args.tenant_claims.is_empty() {
            AuthConfig::default().tenant_claims
        } else {
            args.tenant_claims.clone()
        },
        absent_access_means_manage: !args.absent_access_means_nothing,
        ..AuthConfig::default()
    };
    let auth = Authenticator::new(config).context("configuration")?;
    let verdict =
        match auth.authenticate(Credential::Bearer(token), args.x_tenant_id.as_deref(), now) {
            Ok(principal) => Verdict::Accepted(Box::new(principal)),
            Err(e) => Verdict::Rejected(e.to_string()),
        };
    Ok(InspectReport {
        header,
        claims,
        verdict,
    })
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn relative(t: u64, now: u64) -> String {
    if t >= now {
        format!("{t} (in {} s)", t - now)
    } else {
        format!("{t} ({} s ago)", now - t)
    }
}

fn describe(p: &Principal) -> String {
    format!(
        "access {:?}, tenant {:?}, subject {:?}, method {:?}",
        p.access, p.tenant, p.subject, p.method
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::auth::test_keys::{RSA_KID, RSA_PRIVATE_PEM, TestKeys};
    use crate::auth::{Access, AccessSpec, AuthError, TenantSource};

    const NOW: u64 = 1_800_000_000;

    /// The shape main.rs will have.
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Subcommand)]
    enum Command {
        Token(TokenArgs),
    }

    fn parse(args: &[&str]) -> TokenArgs {
        let argv = ["tessera", "token"].iter().chain(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Token(t),
            }) => t,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    fn authenticator(
        secret: Option<&str>,
        jwks: Option<&Value>,
    ) -> (Authenticator, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let jwks_path = jwks.map(|doc| {
            let path = dir.path().join("jwks.json");
            std::fs::write(&path, doc.to_string()).expect("write jwks");
            path
        });
        let auth = Authenticator::new(AuthConfig {
            api_key: secret.map(str::to_owned),
            jwt_rbac: true,
            jwks_path,
            ..AuthConfig::default()
        })
        .expect("config");
        (auth, dir)
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn mints_hs256_tokens_the_node_accepts() {
        let args = parse(&[
            "--secret",
            "s3cret",
            "--sub",
            "alice",
            "--tenant",
            "acme",
            "--access",
            "rw",
            "--collection",
            "docs",
            "--collection",
            "notes",
            "--claim",
            "team=\"blue\"",
            "--claim",
            "level=3",
        ]);
        assert!(args.command.is_none());
        let token = mint(&args.mint, NOW).expect("mint");
        let (auth, _dir) = authenticator(Some("s3cret"), None);
        let p = auth
            .authenticate(Credential::Bearer(&token), None, NOW + 10)
            .expect("accepted");
        assert_eq!(p.subject.as_deref(), Some("alice"));
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        assert!(p.can_write("docs") && p.can_write("notes") && !p.can_read("other"));
        assert_eq!(p.expires_at, Some(NOW + 3600));
        let report =
            inspect(&InspectArgs::try_from_token(&token, Some("s3cret")), NOW).expect("inspect");
        assert_eq!(report.claims["team"], json!("blue"));
        assert_eq!(report.claims["level"], json!(3));
        assert_eq!(report.header["alg"], json!("HS256"));
        assert!(matches!(report.verdict, Verdict::Accepted(_)));

        // Expired by then.
        assert!(
            auth.authenticate(Credential::Bearer(&token), None, NOW + 3600 + 31)
                .is_err()
        );
    }

    #[test]
    fn mints_orgs_roles_and_global_access() {
        let args = parse(&[
            "--secret", "k", "--orgs", "a,b", "--roles", "viewer", "--no-exp", "--iss", "me",
            "--aud", "you",
        ]);
        let token = mint(&args.mint, NOW).expect("mint");
        let (strict, _dir) = authenticator(Some("k"), None);
        assert_eq!(
            strict.authenticate(Credential::Bearer(&token), Some("b"), NOW),
            Err(AuthError::invalid("token has no exp")),
            "a node refuses tokens without exp unless told otherwise"
        );
        let auth = Authenticator::new(AuthConfig {
            api_key: Some("k".into()),
            jwt_rbac: true,
            require_exp: false,
            ..AuthConfig::default()
        })
        .expect("config");
        let p = auth
            .authenticate(Credential::Bearer(&token), Some("b"), NOW + 1_000_000)
            .expect("no exp");
        assert_eq!(p.tenant_source, Some(TenantSource::Orgs));
        assert_eq!(p.access, AccessSpec::Global(Access::Read));
        assert_eq!(
            auth.authenticate(Credential::Bearer(&token), Some("c"), NOW),
            Err(AuthError::TenantNotAllowed)
        );
        for bad in [
            &["--secret", "k", "--access", "rw"][..],
            &["--secret", "k", "--access", "m", "--collection", "c"],
            &["--secret", "k", "--access", "x"],
            &["--secret", "k", "--claim", "novalue"],
            &["--secret", "k", "--alg", "RS256"],
            &["--secret", "k", "--alg", "none"],
            &[],
        ] {
            assert!(mint(&parse(bad).mint, NOW).is_err(), "{bad:?}");
        }
        // Clap refuses these before minting.
        assert!(Cli::try_parse_from(["tessera", "token", "--private-key", "k.pem"]).is_err());
        assert!(
            Cli::try_parse_from([
                "tessera",
                "token",
                "--secret",
                "k",
                "--private-key",
                "f",
                "--kid",
                "x"
            ])
            .is_err()
        );
    }

    #[test]
    fn mints_asymmetric_tokens_that_verify_against_the_printed_jwks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = TestKeys::get();
        let files = [
            ("ed.pem", keys.ed.private_pem.as_str(), "ed-k", "EdDSA"),
            ("ec.pem", keys.ec.private_pem.as_str(), "ec-k", "ES256"),
            ("rsa.pem", RSA_PRIVATE_PEM, "rsa-k", "RS256"),
        ];
        let mut jwk_entries = Vec::new();
        let mut tokens = Vec::new();
        for (file, pem, kid, alg) in files {
            let path = dir.path().join(file);
            std::fs::write(&path, pem).expect("write key");
            let path = path.to_str().expect("utf-8 temp path");
            let jwk_args = match parse(&["jwk", "--private-key", path, "--kid", kid]).command {
                Some(TokenCommand::Jwk(a)) => a,
                other => panic!("{other:?}"),
            };
            let doc = jwks(&jwk_args).expect("jwk");
            jwk_entries.push(doc["keys"][0].clone());
            let args = parse(&[
                "--private-key",
                path,
                "--kid",
                kid,
                "--tenant",
                "t",
                "--access",
                "r",
            ]);
            let token = mint(&args.mint, NOW).expect("mint");
            assert_eq!(
                jsonwebtoken::decode_header(&token).expect("header").alg,
                parse_alg(alg).expect("alg")
            );
            tokens.push(token);
        }
        // jsonwebtoken's RSA JWK agrees with the fixture made independently by Python.
        let fixture = TestKeys::get().rsa_jwk();
        assert_eq!(jwk_entries[2]["n"], fixture["n"]);
        assert_eq!(jwk_entries[2]["e"], fixture["e"]);

        let (auth, _keep) = authenticator(None, Some(&json!({ "keys": jwk_entries })));
        assert_eq!(auth.jwks_kids(), vec!["ec-k", "ed-k", "rsa-k"]);
        for token in &tokens {
            let p = auth
                .authenticate(Credential::Bearer(token), None, NOW)
                .expect("accepted");
            assert_eq!(p.tenant.as_deref(), Some("t"));
            assert!(p.can_read("c") && !p.can_write("c"));
        }
        // The fixture kid is not the minted one: same key, different kid.
        assert_ne!(RSA_KID, "rsa-k");
    }

    #[test]
    fn inspect_reports_why_not() {
        let token = mint(&parse(&["--secret", "right", "--access", "r"]).mint, NOW).expect("mint");
        let report =
            inspect(&InspectArgs::try_from_token(&token, Some("wrong")), NOW).expect("inspect");
        assert!(matches!(&report.verdict, Verdict::Rejected(r) if r.contains("bad signature")));
        let report = inspect(&InspectArgs::try_from_token(&token, None), NOW).expect("inspect");
        assert!(matches!(report.verdict, Verdict::Unverified));
        assert_eq!(report.claims["access"], json!("r"));
        // An alg-none token still shows its header.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"access":"m"}"#)
        );
        let report = inspect(&InspectArgs::try_from_token(&none, Some("k")), NOW).expect("inspect");
        assert_eq!(report.header["alg"], json!("none"));
        assert!(matches!(report.verdict, Verdict::Rejected(_)));
        assert!(inspect(&InspectArgs::try_from_token("garbage", Some("k")), NOW).is_err());

        let args = parse(&["inspect", "-", "--jwks", "/x.json", "--x-tenant-id", "t"]);
        assert!(matches!(args.command, Some(TokenCommand::Inspect(a)) if a.token == "-"));
    }

    impl InspectArgs {
        fn try_from_token(token: &str, secret: Option<&str>) -> InspectArgs {
            InspectArgs {
                token: token.to_owned(),
                secret: secret.map(str::to_owned),
                jwks: None,
                iss: None,
                aud: None,
                leeway_secs: DEFAULT_LEEWAY_SECS,
                allow_no_exp: true,
                tenant_claims: Vec::new(),
                absent_access_means_nothing: false,
                x_tenant_id: None,
            }
        }
    }
}
