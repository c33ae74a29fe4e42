//! Node configuration: defaults, then a TOML file, then `TESSERA_*` environment variables, then
//! command-line flags (clap merges the last two), validated into an immutable [`NodeConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

/// Settings of `tessera serve`; each is also a config-file key and a `TESSERA_*` variable.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML config file (keys as the long flags, with underscores)
    #[arg(long, env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:6333]
    #[arg(long, env = "TESSERA_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Data directory [default: ./data]
    #[arg(long, env = "TESSERA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter, e.g. info or tessera=debug [default: info]
    #[arg(long, env = "TESSERA_LOG")]
    pub log: Option<String>,
    /// Largest accepted HTTP request body in bytes [default: 33554432]
    #[arg(long, env = "TESSERA_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// Format version of the file; only 1 exists.
    version: Option<u32>,
    http_addr: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    log: Option<String>,
    max_body_bytes: Option<usize>,
    max_limit: Option<usize>,
    max_batch_points: Option<usize>,
    indexing_threshold: Option<usize>,
    read_threads: Option<usize>,
    build_threads: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log: String,
    pub max_body_bytes: usize,
    pub max_limit: usize,
    pub max_batch_points: usize,
    pub indexing_threshold: usize,
    pub read_threads: usize,
    pub build_threads: usize,
}

impl NodeConfig {
    /// Defaults for a node listening on `http_addr` with data in `data_dir` (harnesses start here).
    pub fn new(http_addr: SocketAddr, data_dir: &Path) -> NodeConfig {
        NodeConfig {
            http_addr,
            data_dir: data_dir.to_path_buf(),
            log: "info".into(),
            max_body_bytes: 32 << 20,
            max_limit: 10_000,
            max_batch_points: 10_000,
            indexing_threshold: 5_000,
            read_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            build_threads: 1,
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
        let cfg = NodeConfig {
            http_addr: args.http_addr.or(file.http_addr).unwrap_or(d.http_addr),
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
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_body_bytes < 1024 {
            bail!("max_body_bytes must be at least 1024");
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_in_deploy_parses() {
        let text = include_str!("../../deploy/tessera.toml");
        let file: ConfigFile =
            toml::from_str(text).expect("deploy/tessera.toml matches the config keys");
        assert_eq!(file.version, Some(1));
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
