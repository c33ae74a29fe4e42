//! Cluster certificates: a cluster CA and the node certificates it signs, and the files that hold
//! them. Mutual TLS between nodes trusts exactly this CA, so a process without a certificate from it
//! can neither call a node nor be called as one.
//!
//! ```text
//! CA dir:  ca.pem (CA certificate), ca.key (CA private key, 0600)
//! TLS dir: ca.pem (CA certificate), node.pem (node certificate), node.key (node private key, 0600)
//! ```
//!
//! The CA's subject is fixed ([`CA_COMMON_NAME`]): rcgen (without its x509 parser) rebuilds the
//! issuer from our own parameters, and loading a CA dir checks that a certificate signed that way
//! verifies against `ca.pem`, so a CA made by another tool is refused with a clear error instead of
//! producing node certificates nobody accepts.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;

use crate::error::{Error, ErrorKind, Result};

/// The name every node certificate carries and every client verifies, so peers can be dialled by
/// IP address without knowing each other's names.
pub const SERVER_NAME: &str = "tessera-node";
/// Common name of the cluster CA (fixed: see the module doc).
pub const CA_COMMON_NAME: &str = "tessera cluster CA";
/// File name of the CA certificate, in both the CA dir and the TLS dir.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key, in the CA dir only.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the node certificate in the TLS dir.
pub const NODE_CERT_FILE: &str = "node.pem";
/// File name of the node private key in the TLS dir.
pub const NODE_KEY_FILE: &str = "node.key";
/// Largest PEM file we read: certificates and keys are a few KiB.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// The one rustls crypto provider of tessera (ring). Configs are always built with it explicitly,
/// never through a process default (two providers in one binary make rustls panic).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "tessera");
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn cert_err(e: rcgen::Error) -> Error {
    Error::internal(format!("certificate generation: {e}"))
}

/// A cluster CA held in memory: its certificate and signing key. Signs node certificates.
pub struct ClusterCa {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Makes a new self-signed cluster CA with an ECDSA P-256 key.
    pub fn generate() -> Result<ClusterCa> {
        let key = KeyPair::generate().map_err(cert_err)?;
        let params = ca_params()?;
        let cert = params.self_signed(&key).map_err(cert_err)?.der().clone();
        let issuer = Issuer::new(params, key);
        Ok(ClusterCa { cert, issuer })
    }

    /// The CA certificate (DER), the trust root of every node.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert)
    }

    /// Signs a certificate for node `name`, usable as both TLS server and client certificate.
    /// Its names: `name`, [`SERVER_NAME`], `localhost`, `127.0.0.1`, `::1` and every `hosts` entry
    /// (DNS names or IP addresses).
    pub fn issue_node(&self, name: &str, hosts: &[String]) -> Result<NodeTls> {
        check_host("node name", name)?;
        for host in hosts {
            check_host("host", host)?;
        }
        let mut sans = vec![name.to_owned(), SERVER_NAME.to_owned()];
        sans.extend(["localhost", "127.0.0.1", "::1"].map(str::to_owned));
        sans.extend(hosts.iter().cloned());
        let mut seen = BTreeSet::new();
        sans.retain(|s| seen.insert(s.clone()));
        let mut params = CertificateParams::new(sans)
            .map_err(|e| Error::bad_request(format!("invalid node name or host: {e}")))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "tessera");
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(cert_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err)?;
        Ok(NodeTls {
            ca: self.cert.clone(),
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// Writes `ca.pem` and `ca.key` (0600, atomically) into `dir`, creating it. Refuses to replace
    /// an existing `ca.key` unless `force`.
    pub fn write_dir(&self, dir: &Path, force: bool) -> Result<()> {
        prepare_dir(dir, &[CA_KEY_FILE], force)?;
        let key_pem = self.issuer.key().serialize_pem();
        write_atomic(&dir.join(CA_KEY_FILE), key_pem.as_bytes(), true)?;
        write_atomic(&dir.join(CA_CERT_FILE), self.cert_pem().as_bytes(), false)
    }

    /// Reads a CA dir written by [`ClusterCa::write_dir`] and checks that the key signs
    /// certificates that `ca.pem` verifies.
    pub fn load_dir(dir: &Path) -> Result<ClusterCa> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert = read_cert(&cert_path)?;
        let key_pem = String::from_utf8(read_limited(&key_path)?)
            .map_err(|_| bad_file(&key_path, "not a PEM file"))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| bad_file(&key_path, &format!("not a usable private key: {e}")))?;
        let ca = ClusterCa {
            cert,
            issuer: Issuer::new(ca_params()?, key),
        };
        let probe = ca.issue_node("probe", &[])?;
        verify_chain(&probe.ca, &probe.cert).map_err(|e| {
            bad_file(
                &key_path,
                &format!(
                    "does not sign certificates that {} verifies (not made by `tessera cert ca`?): {}",
                    cert_path.display(),
                    e.message
                ),
            )
        })?;
        Ok(ca)
    }
}

/// What a node needs for mutual TLS: the cluster CA certificate (trust root), its own certificate
/// signed by that CA, and its private key.
pub struct NodeTls {
    /// The cluster CA certificate.
    pub ca: CertificateDer<'static>,
    /// This node's certificate.
    pub cert: CertificateDer<'static>,
    /// This node's private key (PKCS#8).
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl Clone for NodeTls {
    fn clone(&self) -> Self {
        NodeTls {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeTls").finish_non_exhaustive()
    }
}

impl NodeTls {
    /// The private key in the form rustls takes.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// Writes `ca.pem`, `node.pem` and `node.key` (0600, atomically) into `dir`, creating it.
    /// Refuses to replace an existing `node.key` unless `force`.
    pub fn write_dir(&self, dir: &Path, force: bool) -> Result<()> {
        prepare_dir(dir, &[NODE_KEY_FILE], force)?;
        let key_pem = pem_encode("PRIVATE KEY", self.key.secret_pkcs8_der());
        write_atomic(&dir.join(NODE_KEY_FILE), key_pem.as_bytes(), true)?;
        write_atomic(
            &dir.join(NODE_CERT_FILE),
            pem_encode("CERTIFICATE", &self.cert).as_bytes(),
            false,
        )?;
        write_atomic(
            &dir.join(CA_CERT_FILE),
            pem_encode("CERTIFICATE", &self.ca).as_bytes(),
            false,
        )
    }

    /// Reads a TLS dir written by [`NodeTls::write_dir`] and checks that `node.pem` is signed by
    /// `ca.pem` for both server and client use and that `node.key` is a usable key.
    pub fn load_dir(dir: &Path) -> Result<NodeTls> {
        let ca_path = dir.join(CA_CERT_FILE);
        let cert_path = dir.join(NODE_CERT_FILE);
        let key_path = dir.join(NODE_KEY_FILE);
        let ca = read_cert(&ca_path)?;
        let cert = read_cert(&cert_path)?;
        let key = match PrivateKeyDer::from_pem_slice(&read_limited(&key_path)?) {
            Ok(PrivateKeyDer::Pkcs8(k)) => k,
            Ok(_) => return Err(bad_file(&key_path, "not a PKCS#8 private key")),
            Err(e) => return Err(bad_file(&key_path, &format!("no private key: {e}"))),
        };
        crypto_provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(key.clone_key()))
            .map_err(|e| bad_file(&key_path, &format!("not a usable private key: {e}")))?;
        verify_chain(&ca, &cert).map_err(|e| {
            bad_file(
                &cert_path,
                &format!("not signed by {}: {}", ca_path.display(), e.message),
            )
        })?;
        Ok(NodeTls { ca, cert, key })
    }
}

/// Checks that `cert` chains to `ca` and is valid now as a server certificate for
/// [`SERVER_NAME`] and as a client certificate.
pub fn verify_chain(ca: &CertificateDer<'static>, cert: &CertificateDer<'static>) -> Result<()> {
    let provider = crypto_provider();
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| Error::bad_request(format!("CA certificate: {e}")))?;
    let roots = Arc::new(roots);
    let now = UnixTime::now();
    let server_name = ServerName::try_from(SERVER_NAME)
        .map_err(|e| Error::internal(format!("server name: {e}")))?;
    let server = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| Error::internal(format!("server verifier: {e}")))?;
    server
        .verify_server_cert(cert, &[], &server_name, &[], now)
        .map_err(|e| Error::bad_request(format!("as server certificate: {e}")))?;
    let client = WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| Error::internal(format!("client verifier: {e}")))?;
    client
        .verify_client_cert(cert, &[], now)
        .map_err(|e| Error::bad_request(format!("as client certificate: {e}")))?;
    Ok(())
}

/// A node name or host must be an IP address or a DNS-like name (letters, digits, `-`, `.`).
fn check_host(what: &str, s: &str) -> Result<()> {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "invalid {what} {s:?}: use an IP address or a name of letters, digits, '-' and '.'"
        )))
    }
}

fn bad_file(path: &Path, what: &str) -> Error {
    Error::bad_request(format!("{}: {what}", path.display()))
}

fn read_limited(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("read", path, e))?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(bad_file(path, "too large for a PEM file"));
    }
    std::fs::read(path).map_err(|e| Error::io("read", path, e))
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(&read_limited(path)?)
        .map_err(|e| bad_file(path, &format!("no certificate: {e}")))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Creates `dir` and refuses when one of `keys` exists there and `force` is off.
fn prepare_dir(dir: &Path, keys: &[&str], force: bool) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    if !force {
        for key in keys {
            let path = dir.join(key);
            if path.exists() {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{} already exists (refusing to overwrite a key; use --force)",
                        path.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsynced and renamed,
/// so a crash leaves either the old file or the new one. Secret files are created with mode 0600.
fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{file_name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let _ = secret;
    let result = (|| {
        // a stale temporary file may carry wider permissions: start from a fresh one
        let _ = std::fs::remove_file(&tmp);
        let mut file = options
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        file.write_all(bytes)
            .map_err(|e| Error::io("write", &tmp, e))?;
        file.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_and_node_round_trip_through_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ClusterCa::generate().expect("generate ca");
        let ca_dir = dir.path().join("ca");
        ca.write_dir(&ca_dir, false).expect("write ca");
        let loaded = ClusterCa::load_dir(&ca_dir).expect("load ca");
        assert_eq!(loaded.cert_der(), ca.cert_der());

        let node = loaded
            .issue_node("node-1", &["10.0.0.7".into(), "n1.example".into()])
            .expect("issue node");
        verify_chain(&node.ca, &node.cert).expect("node chains to ca");
        let tls_dir = dir.path().join("tls");
        node.write_dir(&tls_dir, false).expect("write node");
        let back = NodeTls::load_dir(&tls_dir).expect("load node");
        assert_eq!(back.cert, node.cert);
        assert_eq!(back.ca, node.ca);
        assert_eq!(back.key.secret_pkcs8_der(), node.key.secret_pkcs8_der());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [ca_dir.join(CA_KEY_FILE), tls_dir.join(NODE_KEY_FILE)] {
                let mode = std::fs::metadata(&p).expect("stat").permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", p.display());
            }
        }

        // keys are never overwritten by accident
        let again = ca.issue_node("node-1", &[]).expect("issue");
        let err = again.write_dir(&tls_dir, false).expect_err("refuses");
        assert_eq!(err.kind, ErrorKind::AlreadyExists);
        again.write_dir(&tls_dir, true).expect("force overwrites");
        let err = ca.write_dir(&ca_dir, false).expect_err("refuses");
        assert_eq!(err.kind, ErrorKind::AlreadyExists);
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = NodeTls::load_dir(dir.path()).expect_err("empty dir");
        assert!(err.message.contains(CA_CERT_FILE), "{}", err.message);

        // a node certificate from another CA is refused, naming node.pem
        let ca1 = ClusterCa::generate().expect("ca1");
        let ca2 = ClusterCa::generate().expect("ca2");
        let mut node = ca2.issue_node("n", &[]).expect("issue");
        node.ca = ca1.cert_der().clone();
        node.write_dir(dir.path(), false).expect("write");
        let err = NodeTls::load_dir(dir.path()).expect_err("foreign chain");
        assert!(err.message.contains(NODE_CERT_FILE), "{}", err.message);

        // garbage key file
        std::fs::write(dir.path().join(NODE_KEY_FILE), "not a key").expect("write");
        let err = NodeTls::load_dir(dir.path()).expect_err("bad key");
        assert!(err.message.contains(NODE_KEY_FILE), "{}", err.message);

        // a CA key that does not match ca.pem
        let ca_dir = dir.path().join("ca");
        ca1.write_dir(&ca_dir, false).expect("write ca1");
        std::fs::write(ca_dir.join(CA_CERT_FILE), ca2.cert_pem()).expect("swap cert");
        let err = ClusterCa::load_dir(&ca_dir).expect_err("mismatch");
        assert!(err.message.contains(CA_KEY_FILE), "{}", err.message);
    }

    #[test]
    fn bad_names_are_refused() {
        let ca = ClusterCa::generate().expect("ca");
        assert!(ca.issue_node("", &[]).is_err());
        assert!(ca.issue_node("bad name with spaces", &[]).is_err());
    }

    #[test]
    fn pem_encoding_matches_rcgen() {
        let key = KeyPair::generate().expect("key");
        assert_eq!(
            pem_encode("PRIVATE KEY", &key.serialize_der()).replace("\r\n", "\n"),
            key.serialize_pem().replace("\r\n", "\n")
        );
    }
}
