//! keyward enclave binary: configuration, wiring and the main loop.

mod attestations;
mod config;
mod datakey;
mod gate;
mod server;
mod tls;
mod tls_api;

use std::sync::Arc;

// Only the development NSM's code paths add context to errors here.
#[cfg(feature = "mock-nsm")]
use anyhow::Context;
use clap::Parser;
use keyward_attest::Nsm;
use keyward_kms::{KmsClient, RelayHttpClient, TlsRoots};
use keyward_proto::{EnclaveInfo, NsmKind};
use keyward_transport::Listener;

use crate::config::{Cli, Command, Config, NsmChoice};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    keyward_telemetry::init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("enclave: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Measure) = cli.command {
        return measure();
    }
    let config = Config::from_args(cli.run)?;
    let nsm = open_nsm(&config)?;
    let roots = config.kms_endpoint.is_tls().then(TlsRoots::amazon);
    let http = RelayHttpClient::new(config.kms_relay.clone(), config.kms_endpoint.clone(), roots)?;
    let kms = KmsClient::new(config.kms_endpoint.clone(), config.kms_region.clone(), http);
    let info = EnclaveInfo {
        software_version: env!("CARGO_PKG_VERSION").to_owned(),
        nsm: match nsm.kind() {
            keyward_attest::NsmKind::Nitro => NsmKind::Nitro,
            keyward_attest::NsmKind::Mock => NsmKind::Mock,
        },
        kms_key_id: config.kms_key_id.clone(),
        kms_region: config.kms_region.clone(),
        kms_endpoint: config.kms_endpoint.url().to_owned(),
        attestation: config.attestation,
        authorization: None,
    };
    let keys = Arc::new(datakey::DataKeys {
        kms,
        key_id: config.kms_key_id.clone(),
        attestation: config.attestation,
        nsm: nsm.clone(),
    });
    let pinned = keyward_custody::Pinned { key_id: config.kms_key_id.clone(), region: config.kms_region.clone() };
    let keyring = Arc::new(
        keyward_custody::Keyring::new(
            keys.clone(),
            Arc::new(datakey::NsmRandom(nsm.clone())),
            pinned.clone(),
            config.key_cache,
        )
        .map_err(|e| anyhow::anyhow!("no randomness for the transfer key: {e}"))?,
    );
    let master = Arc::new(keyward_custody::Master::new(keys, Arc::new(datakey::NsmRandom(nsm.clone())), pinned));
    let authorizer = match config.owners.clone() {
        Some(owners) => {
            let authorizer = keyward_custody::Authorizer::with_new_audit_key(owners, &datakey::NsmRandom(nsm.clone()))
                .map_err(|e| anyhow::anyhow!("--owner: {e}"))?;
            tracing::info!(
                owners = ?authorizer.owner_ids(),
                quorum = authorizer.quorum(),
                audit_public_key = %hex::encode(authorizer.audit_public_key()),
                "authorization on: key operations need a principal's signed request"
            );
            Some(Arc::new(authorizer))
        }
        None => None,
    };
    let info = EnclaveInfo { authorization: authorizer.as_ref().map(|a| a.info()), ..info };
    let attestations = attestations::Attestations::new(nsm);
    let listener = Listener::bind(&config.listen).await?;
    tracing::info!(
        event = keyward_telemetry::event::ENCLAVE_LISTENING,
        listen = %listener.local_address(),
        kms_relay = %config.kms_relay,
        kms_endpoint = %config.kms_endpoint,
        kms_key_id = %config.kms_key_id,
        attestation = config.attestation,
        nsm = ?info.nsm,
        gateway_key = %config.gateway_key,
        "enclave ready for the gateway"
    );
    let link = Arc::new(server::Link {
        core: keyward_custody::EnclaveCore { master, keyring, authorizer },
        attestations,
        info,
        gateway_key: config.gateway_key,
    });
    if let Some(tls) = &config.tls {
        let identity = Arc::new(tls::TlsIdentity::generate(&tls.names)?);
        let server_config = identity.server_config(&tls.clients)?;
        let tls_listener = Listener::bind(&tls.listen).await?;
        tracing::info!(
            event = keyward_telemetry::event::ENCLAVE_LISTENING,
            tls_listen = %tls_listener.local_address(),
            spki_sha256 = %hex::encode(identity.spki_sha256),
            client_keys = tls.clients.api.len(),
            admin_keys = tls.clients.admin.len(),
            host_store = %tls.host_store,
            "enclave TLS API listening; its key was born in this process"
        );
        let host = gateway::host_store::HostClient::new(tls.host_store.clone());
        let clients = tls.clients.clone();
        let link = link.clone();
        tokio::spawn(async move {
            if let Err(e) = tls_api::serve(tls_listener, link, identity, server_config, host, clients).await {
                tracing::error!("TLS API stopped: {e:#}");
            }
        });
    }
    tokio::select! {
        result = server::serve(listener, link) => result,
        _ = shutdown_signal() => {
            tracing::info!("shutting down; the master key leaves memory with this process");
            Ok(())
        }
    }
}

fn open_nsm(config: &Config) -> anyhow::Result<Arc<dyn Nsm>> {
    match config.nsm {
        NsmChoice::Nitro => Ok(Arc::new(keyward_attest::NitroNsm::open()?)),
        #[cfg(feature = "mock-nsm")]
        NsmChoice::Mock => {
            let binary = std::env::current_exe().context("locating the running enclave binary")?;
            tracing::warn!(pki = %config.mock_nsm_dir.display(), "using the DEVELOPMENT NSM: attestation documents are signed by a local test PKI");
            Ok(Arc::new(keyward_attest::MockNsm::open(&config.mock_nsm_dir, &binary)?))
        }
        #[cfg(not(feature = "mock-nsm"))]
        NsmChoice::Mock => {
            anyhow::bail!("this enclave build has no development NSM (built without the mock-nsm feature)")
        }
    }
}

/// The development NSM's PCRs of this very binary, shaped like `nitro-cli build-enclave`'s
/// output so the same policy tooling reads both.
#[cfg(feature = "mock-nsm")]
fn measure() -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("locating the running enclave binary")?;
    let m = keyward_attest::mock_measurements(&binary)?;
    let json = serde_json::json!({
        "Measurements": {
            "HashAlgorithm": "Sha384 { ... }",
            "PCR0": m.pcr0.to_hex(),
            "PCR1": m.pcr1.to_hex(),
            "PCR2": m.pcr2.to_hex(),
        }
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

#[cfg(not(feature = "mock-nsm"))]
fn measure() -> anyhow::Result<()> {
    anyhow::bail!("this enclave build has no development NSM; measure the EIF with `nitro-cli describe-eif`")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the process still stops on SIGTERM/SIGINT, just abruptly.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
