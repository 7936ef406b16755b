//! The enclave's TLS API, passed through: each client TCP connection is joined to a new
//! connection to the enclave's TLS listener and bytes are copied both ways, never parsed,
//! never logged. TLS ends inside the enclave, so the host sees ciphertext, sizes and timing
//! only (docs/security.md). The copy is capped like the KMS relay's: connections at once, idle
//! time and lifetime (`enclave_tls:` in the config).

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use keyward_telemetry::event;
use keyward_transport::{Address, CopyLimits, connect, relay_copy};
use serde::Deserialize;
use tokio::sync::Semaphore;

/// Time allowed to reach the enclave's TLS listener.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `enclave_tls:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// Where clients connect (TCP), e.g. `127.0.0.1:8443`.
    pub listen: String,
    /// The enclave's TLS listener (`vsock://<cid>:5443` in production).
    pub enclave: String,
    /// Where the enclave's TLS API reaches the database through the gateway
    /// (`vsock://any:5444` in production; src/host_store.rs).
    pub store_listen: String,
    /// Connections at once (default 1024); more are closed as they arrive.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a connection may carry no traffic before it is closed (default 300).
    #[serde(default = "default_idle_seconds")]
    pub idle_timeout_seconds: u64,
    /// Seconds a connection may last, busy or not (default 86400).
    #[serde(default = "default_lifetime_seconds")]
    pub lifetime_seconds: u64,
}

fn default_max_connections() -> usize {
    1024
}

fn default_idle_seconds() -> u64 {
    300
}

fn default_lifetime_seconds() -> u64 {
    86_400
}

/// `enclave_tls:` checked.
#[derive(Debug, Clone)]
pub struct Passthrough {
    pub listen: String,
    pub enclave: Address,
    pub store_listen: Address,
    pub max_connections: usize,
    pub limits: CopyLimits,
}

impl Section {
    pub fn validate(self) -> anyhow::Result<Passthrough> {
        if self.max_connections == 0 || self.idle_timeout_seconds == 0 || self.lifetime_seconds == 0 {
            anyhow::bail!("enclave_tls.max_connections, idle_timeout_seconds and lifetime_seconds must be at least 1");
        }
        Ok(Passthrough {
            enclave: self.enclave.parse().context("enclave_tls.enclave")?,
            store_listen: self.store_listen.parse().context("enclave_tls.store_listen")?,
            listen: self.listen,
            max_connections: self.max_connections,
            limits: CopyLimits {
                idle: Duration::from_secs(self.idle_timeout_seconds),
                lifetime: Duration::from_secs(self.lifetime_seconds),
            },
        })
    }
}

/// Binds `listen` and passes connections through for as long as the process runs.
pub async fn start(config: &Passthrough) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("enclave_tls.listen {}", config.listen))?;
    tracing::info!(event = event::FRONT_DOOR_LISTENING, front_door = "enclave_tls", listen = %listener.local_addr()?, enclave = %config.enclave, "enclave TLS API passed through (TLS ends in the enclave)");
    tokio::spawn(serve(listener, config.clone()));
    Ok(())
}

async fn serve(listener: tokio::net::TcpListener, config: Passthrough) {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let enclave = Arc::new(config.enclave);
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(front_door = "enclave_tls", "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(event = event::PEER_REFUSED, front_door = "enclave_tls", %peer, "{} connections are open already; closed a new one", config.max_connections);
            continue;
        };
        let _ = client.set_nodelay(true);
        let (enclave, limits) = (enclave.clone(), config.limits);
        tokio::spawn(async move {
            let _slot = slot;
            let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&enclave)).await {
                Ok(Ok(upstream)) => upstream,
                Ok(Err(e)) => {
                    tracing::warn!(front_door = "enclave_tls", %enclave, "the enclave's TLS listener is unreachable: {e}");
                    return;
                }
                Err(_) => {
                    tracing::warn!(front_door = "enclave_tls", %enclave, "the enclave's TLS listener did not accept within {CONNECT_TIMEOUT:?}");
                    return;
                }
            };
            match relay_copy(client, upstream, limits).await {
                Ok((up, down)) => tracing::debug!(%peer, up, down, "enclave TLS connection finished"),
                Err(e) => tracing::debug!(%peer, "enclave TLS connection ended: {e}"),
            }
        });
    }
}
