//! Node configuration: defaults, then a TOML file, then `TESSERA_*` environment variables, then
//! command-line flags (clap merges the last two), validated into an immutable [`NodeConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

use crate::auth::{Access, AuthConfig};
use tessera_cluster::quota::{Quota, QuotaDefaults};

/// Settings of `tessera serve`; each is also a config-file key and a `TESSERA_*` variable.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML config file (keys as the long flags, with underscores)
    #[arg(long, env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:6333]
    #[arg(long, env = "TESSERA_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// gRPC listen address (Qdrant's gRPC API), or `off` [default: the HTTP address's IP with
    /// the next port, 127.0.0.1:6334 for the default HTTP address]
    #[arg(long, env = "TESSERA_GRPC_ADDR")]
    pub grpc_addr: Option<String>,
    /// PEM certificate chain the REST and gRPC listeners serve TLS with (with --tls-key)
    /// [default: none, plain TCP]
    #[arg(long, env = "TESSERA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "TESSERA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Data directory [default: ./data]
    #[arg(long, env = "TESSERA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter, e.g. info or tessera=debug [default: info]
    #[arg(long, env = "TESSERA_LOG")]
    pub log: Option<String>,
    /// Largest accepted HTTP request body in bytes [default: 33554432]
    #[arg(long, env = "TESSERA_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// A client must send a request's headers within this long (it also bounds how long an idle
    /// keep-alive connection stays open) [default: 30000]
    #[arg(long, env = "TESSERA_HTTP_HEADER_TIMEOUT_MS")]
    pub http_header_timeout_ms: Option<u64>,
    /// A client must send a request's whole body within this long [default: 30000]
    #[arg(long, env = "TESSERA_HTTP_BODY_TIMEOUT_MS")]
    pub http_body_timeout_ms: Option<u64>,
    /// Open HTTP connections at most; more wait in the listen backlog until one closes
    /// [default: 1024]
    #[arg(long, env = "TESSERA_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
    /// Largest `limit` a search, scroll or query may ask for [default: 10000]
    #[arg(long, env = "TESSERA_MAX_LIMIT")]
    pub max_limit: Option<usize>,
    /// Most points one write batch may carry [default: 10000]
    #[arg(long, env = "TESSERA_MAX_BATCH_POINTS")]
    pub max_batch_points: Option<usize>,
    /// Points a shard's unindexed tail holds before it gets an HNSW graph [default: 5000]
    #[arg(long, env = "TESSERA_INDEXING_THRESHOLD")]
    pub indexing_threshold: Option<usize>,
    /// Concurrent searches/reads on this node [default: number of cores]
    #[arg(long, env = "TESSERA_READ_THREADS")]
    pub read_threads: Option<usize>,
    /// Concurrent background index builds on this node [default: 1]
    #[arg(long, env = "TESSERA_BUILD_THREADS")]
    pub build_threads: Option<usize>,
    /// Full-manage API key; also the HS256 secret of JWTs. Prefer the env var or the config
    /// file: flags are visible to other local users [default: none, no authentication]
    #[arg(long, env = "TESSERA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Global read-only API key
    #[arg(long, env = "TESSERA_READ_ONLY_API_KEY", hide_env_values = true)]
    pub read_only_api_key: Option<String>,
    /// Accept JWTs (HS256 with the api key; RS256/ES256/EdDSA from the JWKS) [default: false]
    #[arg(long, env = "TESSERA_JWT_RBAC", num_args = 0..=1, default_missing_value = "true")]
    pub jwt_rbac: Option<bool>,
    /// JWKS file with the public keys of asymmetric JWTs, chosen by kid; reloaded on SIGHUP and
    /// when it changes
    #[arg(long = "jwks", env = "TESSERA_JWKS")]
    pub jwks_path: Option<PathBuf>,
    /// Required `iss` of JWTs [default: not checked]
    #[arg(long, env = "TESSERA_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of JWTs [default: not checked]
    #[arg(long, env = "TESSERA_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Claims that carry the tenant, first present wins, comma-separated [default: tenant_id]
    #[arg(long, env = "TESSERA_TENANT_CLAIMS", value_delimiter = ',')]
    pub tenant_claims: Option<Vec<String>>,
    /// What a JWT without `access` (and `roles`) may do: manage (as in Qdrant) or none
    /// [default: manage]
    #[arg(long, env = "TESSERA_JWT_ABSENT_ACCESS")]
    pub jwt_absent_access: Option<String>,
    /// Accept JWTs without `exp`, which never expire (Qdrant does); a deliberate choice, since
    /// such a token can only be revoked by rotating its key [default: false, exp required]
    #[arg(long, env = "TESSERA_JWT_ALLOW_NO_EXP", num_args = 0..=1, default_missing_value = "true")]
    pub jwt_allow_no_exp: Option<bool>,
    /// Audit log: `stdout` or a file path [default: off]
    #[arg(long, env = "TESSERA_AUDIT_LOG")]
    pub audit_log: Option<String>,
    /// This node's id in the cluster, unique and stable across restarts [default: the id
    /// recorded in the data dir, else a new random one, then recorded there]
    #[arg(long, env = "TESSERA_NODE_ID")]
    pub node_id: Option<u64>,
    /// UDP address of the node-to-node QUIC transport; setting it runs the node as a cluster
    /// member (with --bootstrap or --join) [default: none, a single node]
    #[arg(long, env = "TESSERA_P2P_ADDR")]
    pub p2p_addr: Option<SocketAddr>,
    /// Directory with ca.pem, node.pem and node.key (`tessera cert`), for the mutual TLS of the
    /// transport; required with --p2p-addr
    #[arg(long, env = "TESSERA_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Start a new cluster with this node as its first voter (harmless on restart)
    #[arg(long, env = "TESSERA_BOOTSTRAP", num_args = 0..=1, default_missing_value = "true")]
    pub bootstrap: Option<bool>,
    /// Join the cluster of the node at this p2p address (on first start; a restarted member
    /// rejoins by itself)
    #[arg(long, env = "TESSERA_JOIN")]
    pub join: Option<SocketAddr>,
    /// Metadata voters the cluster grows to; nodes that join beyond it stay learners [default: 3]
    #[arg(long, env = "TESSERA_MAX_VOTERS")]
    pub max_voters: Option<usize>,
    /// A shared secret a node must present to join; give every node the same one. Prefer the
    /// env var or the file: flags are visible to other local users [default: none, any
    /// certificate of the cluster CA may join]
    #[arg(long, env = "TESSERA_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Seconds a node may be unreachable (or out of the membership) before its shard replicas
    /// are rebuilt on other nodes, to keep each shard's replication factor [default: 60]
    #[arg(long, env = "TESSERA_REPLICA_TIMEOUT")]
    pub replica_timeout: Option<u64>,
    /// Let the metadata leader move shard replicas onto less loaded nodes by itself (every 10 s,
    /// a few moves at a time, while every member is reachable), as `POST /admin/rebalance`
    /// does on request [default: false]
    #[arg(long, env = "TESSERA_AUTO_REBALANCE", num_args = 0..=1, default_missing_value = "true")]
    pub auto_rebalance: Option<bool>,
    /// MiB per second a shard copy onto this node reads from its source at most, so that
    /// transfers leave room for searches [default: 64]
    #[arg(long, env = "TESSERA_TRANSFER_RATE")]
    pub transfer_rate: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// Format version of the file; only 1 exists.
    version: Option<u32>,
    http_addr: Option<SocketAddr>,
    grpc_addr: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    log: Option<String>,
    max_body_bytes: Option<usize>,
    http_header_timeout_ms: Option<u64>,
    http_body_timeout_ms: Option<u64>,
    http_max_connections: Option<usize>,
    max_limit: Option<usize>,
    max_batch_points: Option<usize>,
    indexing_threshold: Option<usize>,
    read_threads: Option<usize>,
    build_threads: Option<usize>,
    api_key: Option<String>,
    read_only_api_key: Option<String>,
    jwt_rbac: Option<bool>,
    jwks_path: Option<PathBuf>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    tenant_claims: Option<Vec<String>>,
    jwt_absent_access: Option<String>,
    jwt_allow_no_exp: Option<bool>,
    /// Role name -> access (`r`, `rw` or `m`) for tokens' `roles` claim.
    roles: Option<std::collections::BTreeMap<String, String>>,
    audit_log: Option<String>,
    /// Default per-tenant quotas (`[quota]` table); tenants' own are set over the admin API.
    quota: Option<QuotaDefaults>,
    node_id: Option<u64>,
    p2p_addr: Option<SocketAddr>,
    tls_dir: Option<PathBuf>,
    bootstrap: Option<bool>,
    join: Option<SocketAddr>,
    max_voters: Option<usize>,
    join_token: Option<String>,
    replica_timeout: Option<u64>,
    auto_rebalance: Option<bool>,
    transfer_rate: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub http_addr: SocketAddr,
    /// None: no gRPC listener.
    pub grpc_addr: Option<SocketAddr>,
    /// The certificate and key of the client-facing listeners; None: plain TCP.
    pub api_tls: Option<TlsFiles>,
    pub data_dir: PathBuf,
    pub log: String,
    pub max_body_bytes: usize,
    /// Slow clients: how long a request's headers and its body may take to arrive, and how many
    /// connections may be open at once.
    pub http_header_timeout_ms: u64,
    pub http_body_timeout_ms: u64,
    pub http_max_connections: usize,
    pub max_limit: usize,
    pub max_batch_points: usize,
    pub indexing_threshold: usize,
    pub read_threads: usize,
    pub build_threads: usize,
    pub auth: AuthConfig,
    /// `stdout`, a file path, or None (off).
    pub audit_log: Option<String>,
    /// Quota of every tenant without one of its own.
    pub quota: Quota,
    /// The node's id. [`crate::start`] settles it against the data dir before anything uses it.
    pub node_id: u64,
    /// No id was given (flag, environment or file): the data dir's recorded id, or a new random
    /// one, replaces `node_id` when the node starts (see [`crate::identity`]).
    pub node_id_from_data_dir: bool,
    /// Cluster mode: the transport's address, TLS dir, and how to find the cluster.
    pub cluster: Option<ClusterConfig>,
}

/// How a cluster member reaches its peers and its cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub p2p_addr: SocketAddr,
    pub tls_dir: PathBuf,
    pub bootstrap: bool,
    pub join: Option<SocketAddr>,
    pub max_voters: usize,
    /// The secret a joining node must present (see [`JoinToken`]); None: any certificate of
    /// the cluster CA may join.
    pub join_token: Option<JoinToken>,
    /// How long a node may be unreachable before its replicas are rebuilt elsewhere.
    pub replica_timeout: std::time::Duration,
    /// Whether the metadata leader rebalances replicas by itself.
    pub auto_rebalance: bool,
    /// Bytes per second a copy onto this node transfers at most.
    pub transfer_rate: u64,
}

/// A PEM certificate chain and key the client-facing listeners (REST and gRPC) serve TLS with.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The join secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken(pub String);

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinToken([redacted])")
    }
}

impl JoinToken {
    /// Compares in time independent of where the tokens differ.
    pub fn matches(&self, presented: Option<&str>) -> bool {
        let Some(presented) = presented else {
            return false;
        };
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        let mut diff = a.len() ^ b.len();
        for i in 0..a.len().max(b.len()) {
            diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

/// The gRPC address: as given (`off`: none), else the HTTP address's IP with the next port, as
/// Qdrant pairs 6333 and 6334 (an ephemeral HTTP port gives an ephemeral gRPC one).
fn grpc_addr(given: Option<String>, http_addr: SocketAddr) -> anyhow::Result<Option<SocketAddr>> {
    match given.as_deref().map(str::trim) {
        Some("off") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            anyhow::anyhow!("grpc_addr must be an address (ip:port) or off, not {text}")
        }),
        None => {
            let port = match http_addr.port() {
                0 => 0,
                p => p.checked_add(1).ok_or_else(|| {
                    anyhow::anyhow!("the HTTP port is the last one: give --grpc-addr (or off)")
                })?,
            };
            Ok(Some(SocketAddr::new(http_addr.ip(), port)))
        }
    }
}

impl NodeConfig {
    /// Defaults for a node listening on `http_addr` with data in `data_dir` (harnesses start here).
    pub fn new(http_addr: SocketAddr, data_dir: &Path) -> NodeConfig {
        NodeConfig {
            http_addr,
            grpc_addr: None,
            api_tls: None,
            data_dir: data_dir.to_path_buf(),
            log: "info".into(),
            max_body_bytes: 32 << 20,
            http_header_timeout_ms: 30_000,
            http_body_timeout_ms: 30_000,
            http_max_connections: 1024,
            max_limit: 10_000,
            max_batch_points: 10_000,
            indexing_threshold: 5_000,
            read_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            build_threads: 1,
            auth: AuthConfig::default(),
            audit_log: None,
            quota: Quota::default(),
            node_id: 1,
            node_id_from_data_dir: false,
            cluster: None,
        }
    }

    pub fn from_args(args: &ServeArgs) -> anyhow::Result<NodeConfig> {
        let file: ConfigFile = match &args.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("read config file {}", p.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parse config file {}", p.display()))?
            }
            None => ConfigFile::default(),
        };
        if let Some(v) = file.version
            && v != 1
        {
            bail!("config file version {v} is not supported (expected 1)");
        }
        let d = NodeConfig::new(([127, 0, 0, 1], 6333).into(), Path::new("./data"));
        let mut auth = AuthConfig {
            api_key: args.api_key.clone().or(file.api_key),
            read_only_api_key: args.read_only_api_key.clone().or(file.read_only_api_key),
            jwt_rbac: args.jwt_rbac.or(file.jwt_rbac).unwrap_or(false),
            jwks_path: args.jwks_path.clone().or(file.jwks_path),
            issuer: args.jwt_issuer.clone().or(file.jwt_issuer),
            audience: args.jwt_audience.clone().or(file.jwt_audience),
            require_exp: !args
                .jwt_allow_no_exp
                .or(file.jwt_allow_no_exp)
                .unwrap_or(false),
            ..AuthConfig::default()
        };
        if let Some(claims) = args.tenant_claims.clone().or(file.tenant_claims) {
            auth.tenant_claims = claims;
        }
        match args
            .jwt_absent_access
            .clone()
            .or(file.jwt_absent_access)
            .as_deref()
        {
            None | Some("manage") => auth.absent_access_means_manage = true,
            Some("none") => auth.absent_access_means_manage = false,
            Some(other) => bail!("jwt_absent_access must be manage or none, not {other}"),
        }
        if let Some(roles) = file.roles {
            auth.roles = roles
                .into_iter()
                .map(|(name, level)| {
                    let access = match level.as_str() {
                        "r" => Access::Read,
                        "rw" => Access::ReadWrite,
                        "m" => Access::Manage,
                        other => bail!("role {name}: access must be r, rw or m, not {other}"),
                    };
                    Ok((name, access))
                })
                .collect::<anyhow::Result<_>>()?;
        }
        let http_addr = args.http_addr.or(file.http_addr).unwrap_or(d.http_addr);
        let grpc_addr = grpc_addr(args.grpc_addr.clone().or(file.grpc_addr), http_addr)?;
        let api_tls = match (
            args.tls_cert.clone().or(file.tls_cert),
            args.tls_key.clone().or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        let cfg = NodeConfig {
            http_addr,
            grpc_addr,
            api_tls,
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(d.data_dir),
            log: args.log.clone().or(file.log).unwrap_or(d.log),
            max_body_bytes: args
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(d.max_body_bytes),
            http_header_timeout_ms: args
                .http_header_timeout_ms
                .or(file.http_header_timeout_ms)
                .unwrap_or(d.http_header_timeout_ms),
            http_body_timeout_ms: args
                .http_body_timeout_ms
                .or(file.http_body_timeout_ms)
                .unwrap_or(d.http_body_timeout_ms),
            http_max_connections: args
                .http_max_connections
                .or(file.http_max_connections)
                .unwrap_or(d.http_max_connections),
            max_limit: args.max_limit.or(file.max_limit).unwrap_or(d.max_limit),
            max_batch_points: args
                .max_batch_points
                .or(file.max_batch_points)
                .unwrap_or(d.max_batch_points),
            indexing_threshold: args
                .indexing_threshold
                .or(file.indexing_threshold)
                .unwrap_or(d.indexing_threshold),
            read_threads: args
                .read_threads
                .or(file.read_threads)
                .unwrap_or(d.read_threads),
            build_threads: args
                .build_threads
                .or(file.build_threads)
                .unwrap_or(d.build_threads),
            auth,
            audit_log: args.audit_log.clone().or(file.audit_log),
            quota: match &file.quota {
                Some(q) => q.quota().map_err(|e| anyhow::anyhow!("[quota]: {e}"))?,
                None => Quota::default(),
            },
            node_id: args.node_id.or(file.node_id).unwrap_or(d.node_id),
            node_id_from_data_dir: args.node_id.or(file.node_id).is_none(),
            cluster: match args.p2p_addr.or(file.p2p_addr) {
                None => {
                    if args.join.or(file.join).is_some()
                        || args.bootstrap.or(file.bootstrap).unwrap_or(false)
                        || args.tls_dir.is_some()
                        || file.tls_dir.is_some()
                    {
                        bail!("--bootstrap, --join and --tls-dir need --p2p-addr");
                    }
                    None
                }
                Some(p2p_addr) => Some(ClusterConfig {
                    p2p_addr,
                    tls_dir: args
                        .tls_dir
                        .clone()
                        .or(file.tls_dir)
                        .ok_or_else(|| anyhow::anyhow!("--p2p-addr needs --tls-dir"))?,
                    bootstrap: args.bootstrap.or(file.bootstrap).unwrap_or(false),
                    join: args.join.or(file.join),
                    max_voters: args.max_voters.or(file.max_voters).unwrap_or(3),
                    join_token: args
                        .join_token
                        .clone()
                        .or(file.join_token)
                        .filter(|t| !t.is_empty())
                        .map(JoinToken),
                    replica_timeout: std::time::Duration::from_secs(
                        args.replica_timeout.or(file.replica_timeout).unwrap_or(60),
                    ),
                    auto_rebalance: args.auto_rebalance.or(file.auto_rebalance).unwrap_or(false),
                    transfer_rate: args
                        .transfer_rate
                        .or(file.transfer_rate)
                        .unwrap_or(64)
                        .saturating_mul(1 << 20),
                }),
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_body_bytes < 1024 {
            bail!("max_body_bytes must be at least 1024");
        }
        if let Some(c) = &self.cluster
            && c.replica_timeout.is_zero()
        {
            bail!("replica_timeout must be at least 1 second");
        }
        if let Some(c) = &self.cluster
            && c.transfer_rate == 0
        {
            bail!("transfer_rate must be at least 1 (MiB per second)");
        }
        if self.http_header_timeout_ms == 0 || self.http_body_timeout_ms == 0 {
            bail!("http_header_timeout_ms and http_body_timeout_ms must be positive");
        }
        if self.http_max_connections == 0 {
            bail!("http_max_connections must be positive");
        }
        if self.max_limit == 0 || self.max_batch_points == 0 {
            bail!("max_limit and max_batch_points must be positive");
        }
        if self.indexing_threshold < 16 {
            bail!("indexing_threshold must be at least 16");
        }
        if self.read_threads == 0 || self.build_threads == 0 {
            bail!("read_threads and build_threads must be positive");
        }
        if self.auth.jwt_rbac && self.auth.api_key.is_none() && self.auth.jwks_path.is_none() {
            bail!("jwt_rbac needs an api_key (HS256) or a jwks file (RS256/ES256/EdDSA)");
        }
        if self.node_id == 0 {
            bail!("node_id must be positive");
        }
        if let Some(c) = &self.cluster {
            if c.bootstrap && c.join.is_some() {
                bail!("--bootstrap and --join exclude each other");
            }
            if c.max_voters == 0 {
                bail!("max_voters must be positive");
            }
        }
        if self.auth.tenant_claims.iter().any(|c| c.trim().is_empty()) {
            bail!("tenant_claims must name claims");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_match_exactly_and_never_print() {
        let token = JoinToken("s3cret".into());
        assert!(token.matches(Some("s3cret")));
        for wrong in [
            None,
            Some(""),
            Some("s3cre"),
            Some("s3crets"),
            Some("S3cret"),
        ] {
            assert!(!token.matches(wrong), "{wrong:?}");
        }
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn the_example_config_in_deploy_parses() {
        let text = include_str!("../../deploy/tessera.toml");
        let file: ConfigFile =
            toml::from_str(text).expect("deploy/tessera.toml matches the config keys");
        assert_eq!(file.version, Some(1));
    }

    #[test]
    fn grpc_listens_next_to_http_unless_told_otherwise() {
        let http: SocketAddr = "127.0.0.1:6333".parse().expect("addr");
        let next = grpc_addr(None, http).expect("derived");
        assert_eq!(next, Some("127.0.0.1:6334".parse().expect("addr")));
        let defaults = NodeConfig::from_args(&ServeArgs::default()).expect("defaults");
        assert_eq!(
            defaults.grpc_addr, next,
            "a node started with no flag serves gRPC on 6334"
        );
        let ephemeral: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        assert_eq!(
            grpc_addr(None, ephemeral).expect("derived"),
            Some(ephemeral)
        );
        assert_eq!(grpc_addr(Some("off".into()), http).expect("off"), None);
        assert_eq!(
            grpc_addr(Some("127.0.0.1:7000".into()), http).expect("given"),
            Some("127.0.0.1:7000".parse().expect("addr"))
        );
        assert!(grpc_addr(Some("nonsense".into()), http).is_err());
        let last: SocketAddr = "127.0.0.1:65535".parse().expect("addr");
        assert!(
            grpc_addr(None, last).is_err(),
            "no port after the last: refuse, never wrap"
        );
        let half = ServeArgs {
            tls_cert: Some("cert.pem".into()),
            ..ServeArgs::default()
        };
        assert!(
            NodeConfig::from_args(&half).is_err(),
            "a certificate without a key"
        );
    }

    #[test]
    fn file_fills_what_flags_leave_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.toml");
        std::fs::write(
            &p,
            "version = 1\nmax_limit = 77\nhttp_addr = \"127.0.0.1:7000\"\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(p.clone()),
            http_addr: Some("127.0.0.1:7001".parse().expect("addr")),
            ..Default::default()
        };
        let cfg = NodeConfig::from_args(&args).expect("config");
        assert_eq!(cfg.max_limit, 77);
        assert_eq!(cfg.http_addr.port(), 7001);
        std::fs::write(&p, "max_limt = 3\n").expect("write");
        assert!(NodeConfig::from_args(&args).is_err());
    }
}
