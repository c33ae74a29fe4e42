//! `tessera`: the command line. Parses flags and calls `tessera_node::start`.

use clap::{Parser, Subcommand};
use tessera_node::config::{NodeConfig, ServeArgs};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "tessera: a multi-tenant vector search cluster with a Qdrant-compatible API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (a single node with embedded metadata by default; no other service needed)
    Serve(Box<ServeArgs>),
    /// Mint or inspect JWTs for tests and operators (HS256, RS256, ES256, EdDSA)
    Token(Box<tessera_node::auth::cli::TokenArgs>),
    /// Make the cluster CA and node certificates for the node-to-node transport (mutual TLS)
    Cert(tessera_node::cert_cli::CertArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Token(args) => tessera_node::auth::cli::run_token(*args),
        Command::Cert(args) => tessera_node::cert_cli::run_cert(args),
        Command::Serve(args) => {
            let config = NodeConfig::from_args(&args)?;
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log)?)
                .with_writer(std::io::stderr)
                .init();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let running = tessera_node::start(config, shutdown_signal()).await?;
                running.serve.await??;
                Ok(())
            })
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
