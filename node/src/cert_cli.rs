//! `tessera cert`: make the cluster CA and the node certificates it signs, the credentials of
//! the node-to-node transport (QUIC with mutual TLS).
//!
//! ```text
//! tessera cert ca --out ca/
//! tessera cert node --ca-dir ca/ --out node1-tls/ --name node1 --host 10.0.0.11
//! ```
//!
//! Key files are written with mode 0600 and never overwritten unless `--force` is given.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use tessera_cluster::transport::certs::{
    CA_CERT_FILE, CA_KEY_FILE, ClusterCa, NODE_CERT_FILE, NODE_KEY_FILE, NodeTls,
};

/// `tessera cert`: one of the subcommands below.
#[derive(Debug, clap::Args)]
pub struct CertArgs {
    #[command(subcommand)]
    pub command: CertCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CertCommand {
    /// Make a new cluster CA (writes ca.pem and ca.key into --out)
    Ca(CaArgs),
    /// Make a node certificate signed by the cluster CA (writes ca.pem, node.pem, node.key)
    Node(NodeArgs),
}

/// Where to put a new cluster CA.
#[derive(Debug, clap::Args)]
pub struct CaArgs {
    /// Directory for ca.pem and ca.key (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace an existing ca.key (every node certificate it signed stops being trusted)
    #[arg(long)]
    pub force: bool,
}

/// Which node certificate to make, and with which CA.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Directory holding the cluster CA (ca.pem and ca.key)
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Directory for ca.pem, node.pem and node.key (created if missing); the node's tls_dir
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Node name, carried in the certificate (letters, digits, '-' and '.')
    #[arg(long)]
    pub name: String,
    /// Extra DNS name or IP address of the node (repeatable); localhost, 127.0.0.1 and ::1 are
    /// always included
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Replace an existing node.key
    #[arg(long)]
    pub force: bool,
}

/// Runs `tessera cert ...` and says on stdout what it wrote.
pub fn run_cert(args: CertArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match args.command {
        CertCommand::Ca(a) => {
            let ca = ClusterCa::generate().context("generate the cluster CA")?;
            ca.write_dir(&a.out, a.force)
                .with_context(|| format!("write the cluster CA into {}", a.out.display()))?;
            writeln!(
                out,
                "wrote {} and {} (keep {} secret: it can admit any process to the cluster)",
                a.out.join(CA_CERT_FILE).display(),
                a.out.join(CA_KEY_FILE).display(),
                CA_KEY_FILE
            )?;
        }
        CertCommand::Node(a) => {
            let ca = ClusterCa::load_dir(&a.ca_dir)
                .with_context(|| format!("load the cluster CA from {}", a.ca_dir.display()))?;
            let node = ca
                .issue_node(&a.name, &a.hosts)
                .with_context(|| format!("issue a certificate for node {}", a.name))?;
            node.write_dir(&a.out, a.force)
                .with_context(|| format!("write the node certificate into {}", a.out.display()))?;
            // read back what was written: the node will load exactly this
            NodeTls::load_dir(&a.out)
                .with_context(|| format!("check the files in {}", a.out.display()))?;
            writeln!(
                out,
                "wrote {}, {} and {} for node {}",
                a.out.join(CA_CERT_FILE).display(),
                a.out.join(NODE_CERT_FILE).display(),
                a.out.join(NODE_KEY_FILE).display(),
                a.name
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_then_node_then_refuse_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_dir = dir.path().join("ca");
        let tls_dir = dir.path().join("n1");
        run_cert(CertArgs {
            command: CertCommand::Ca(CaArgs {
                out: ca_dir.clone(),
                force: false,
            }),
        })
        .expect("ca");
        let node = |force| {
            run_cert(CertArgs {
                command: CertCommand::Node(NodeArgs {
                    ca_dir: ca_dir.clone(),
                    out: tls_dir.clone(),
                    name: "n1".into(),
                    hosts: vec!["10.1.2.3".into()],
                    force,
                }),
            })
        };
        node(false).expect("node");
        NodeTls::load_dir(&tls_dir).expect("loads");
        let err = node(false).expect_err("refuses to overwrite node.key");
        assert!(format!("{err:#}").contains("--force"), "{err:#}");
        node(true).expect("force");
        let err = run_cert(CertArgs {
            command: CertCommand::Ca(CaArgs {
                out: ca_dir.clone(),
                force: false,
            }),
        })
        .expect_err("refuses to overwrite ca.key");
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    }
}
