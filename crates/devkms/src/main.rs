//! keyward-devkms: development and test tooling around a local KMS emulator. Never part of
//! a production deployment.

mod setup;
mod upstream;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "keyward-devkms", version, about = "Development KMS tooling for keyward (never for production)")]
struct Cli {
    /// The KMS emulator (LocalStack or moto).
    #[arg(long, env = "KEYWARD_DEVKMS_UPSTREAM", default_value = "http://127.0.0.1:4566", global = true)]
    upstream: String,
    /// Region of the emulator's keys.
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
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // reqwest is built without a TLS provider of its own (one crypto library, aws-lc-rs, for
    // the whole workspace); when a workspace build enables its rustls feature it needs one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let upstream = upstream::Upstream::new(&cli.upstream, &cli.region);
    let result = match cli.command {
        Command::Setup { alias, policy } => setup::setup(&upstream, &alias, policy.as_deref()).await.map(|arn| println!("{arn}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward-devkms: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
