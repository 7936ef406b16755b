//! keyward-devkms: development and test tooling around a local KMS emulator. Never part of
//! a production deployment.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use keyward_attest::RootCertificate;
use keyward_devkms::{server, setup, upstream};

#[derive(Debug, Parser)]
#[command(name = "keyward-devkms", version, about = "Development KMS tooling for keyward (never for production)")]
struct Cli {
    /// The KMS emulator (LocalStack or moto).
    #[arg(long, env = "KEYWARD_DEVKMS_UPSTREAM", default_value = "http://127.0.0.1:4566", global = true)]
    upstream: String,
    /// Region of the emulator's keys (for requests that carry no SigV4 credential scope).
    #[arg(long, default_value = "us-east-1", global = true)]
    region: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the development key and alias if absent, optionally install a key policy, and
    /// print the key ARN.
    Setup {
        #[arg(long, default_value = "alias/keyward-enclave-master-key")]
        alias: String,
        /// Key policy JSON to install.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Create the key from the id and material kept in this file (created on first use),
        /// so a restarted LocalStack has the same key again.
        #[arg(long)]
        stable_key: Option<PathBuf>,
    },
    /// Print the development NSM's root certificate (PEM) for `serve --root`, creating the
    /// development PKI in PKI_DIR if there is none yet.
    DevRoot {
        #[arg(long)]
        pki_dir: PathBuf,
    },
    /// Run the attesting dev KMS: a KMS endpoint on loopback that verifies Recipient
    /// attestation documents, enforces key policies and answers with CiphertextForRecipient,
    /// in front of the emulator. Prints `listening on http://ADDR` once it accepts requests.
    Serve {
        /// Loopback address to listen on (port 0 picks a free port).
        #[arg(long)]
        listen: SocketAddr,
        /// PEM root certificate that attestation documents must chain to (the mock NSM's
        /// development root).
        #[arg(long)]
        root: PathBuf,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    keyward_telemetry::init();
    // reqwest is built without a TLS provider of its own (one crypto library, aws-lc-rs, for
    // the whole workspace); when a workspace build enables its rustls feature it needs one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward-devkms: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let upstream = upstream::Upstream::new(&cli.upstream, &cli.region)?;
    match cli.command {
        Command::Setup { alias, policy, stable_key } => {
            let arn = setup::setup(&upstream, &alias, policy.as_deref(), stable_key.as_deref()).await?;
            println!("{arn}");
        }
        Command::DevRoot { pki_dir } => {
            print!("{}", keyward_attest::MockNsm::root_pem(&pki_dir)?);
        }
        Command::Serve { listen, root } => {
            let pem = std::fs::read_to_string(&root)
                .with_context(|| format!("reading root certificate {}", root.display()))?;
            let root =
                RootCertificate::from_pem(&pem).with_context(|| format!("root certificate {}", root.display()))?;
            let listener = server::bind(listen).await?;
            let address = listener.local_addr()?;
            tracing::warn!(%address, upstream = upstream.url(), "attesting dev KMS: for development and tests only");
            // Tests and scripts wait for this line (and learn the port from it).
            let mut stdout = std::io::stdout();
            writeln!(stdout, "listening on http://{address}")?;
            stdout.flush()?;
            let proxy = Arc::new(server::Proxy::new(upstream, root));
            server::serve(listener, proxy, shutdown_signal()).await?;
        }
    }
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C. If the handlers cannot be installed the server runs until
/// killed.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = interrupt.await;
        }
    }
}
