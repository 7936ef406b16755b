//! The KMS relay: the enclave's only way out. It forwards bytes to exactly one target, the
//! configured KMS endpoint, and never parses or logs what passes through (in production it
//! is TLS that ends inside the enclave).
//!
//! Over vsock the relay takes connections only from the configured enclaves' CIDs, so no
//! process on the instance can hold its slots. On any transport the connections are capped,
//! and one that is idle, stops reading or simply lasts too long is closed ([`Limits`],
//! `relay:` in the config). A refused target is logged quoted and shortened: it is the
//! connecting peer's text.

use std::{sync::Arc, time::Duration};

use keyward_telemetry::event;
use keyward_transport::{CopyLimits, Listener, relay_accept, relay_copy, relay_deny, relay_read_target};
use tokio::{net::TcpStream, sync::Semaphore};

/// Time an enclave has to name its target after connecting.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to reach the KMS endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much the relay takes on, and from whom.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections at once (an enclave uses one per KMS call in flight); more are dropped.
    pub max_connections: usize,
    /// A relayed connection with no traffic either way (or a write not taken) for this long is
    /// closed.
    pub idle_timeout: Duration,
    /// A relayed connection is closed after this long, busy or not.
    pub lifetime: Duration,
    /// vsock CIDs that may connect (the configured enclaves'); `None` on TCP and Unix sockets.
    pub vsock_cids: Option<Vec<u32>>,
}

pub async fn serve(listener: Listener, target: String, limits: Limits) {
    let target = Arc::new(target);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let max = limits.max_connections;
    let copy_limits = CopyLimits { idle: limits.idle_timeout, lifetime: limits.lifetime };
    loop {
        let (mut conn, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "relay accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let (Some(allowed), Some(cid)) = (&limits.vsock_cids, peer.vsock_cid())
            && !allowed.contains(&cid)
        {
            tracing::warn!(event = event::RELAY_REFUSED, reason = "peer", %peer, "relay: a peer that is not a configured enclave connected; dropped");
            drop(conn);
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(event = event::RELAY_REFUSED, reason = "capacity", %peer, "relay: {max} connections are open already; connection dropped");
            drop(conn);
            continue;
        };
        let target = target.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let requested = match tokio::time::timeout(HANDSHAKE_TIMEOUT, relay_read_target(&mut conn)).await {
                Ok(Ok(requested)) => requested,
                Ok(Err(e)) => {
                    tracing::warn!(event = event::RELAY_REFUSED, reason = "handshake", %peer, error = %e, "relay: bad handshake; connection dropped");
                    return;
                }
                Err(_) => {
                    tracing::warn!(event = event::RELAY_REFUSED, reason = "handshake", %peer, "relay: no handshake within {HANDSHAKE_TIMEOUT:?}; connection dropped");
                    return;
                }
            };
            if requested != *target {
                // The peer chose this text: quoted (escaping control characters) and shortened.
                let shown: String = requested.chars().take(120).collect();
                tracing::warn!(event = event::RELAY_REFUSED, reason = "target", %peer, requested = ?shown, allowed = %target, "relay: refused a connection to a target other than the configured KMS endpoint");
                let _ = relay_deny(&mut conn, &format!("only {target} is allowed")).await;
                return;
            }
            let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.as_str())).await {
                Ok(Ok(upstream)) => upstream,
                Ok(Err(e)) => {
                    tracing::warn!(%target, error = %e, "relay: KMS endpoint unreachable");
                    let _ = relay_deny(&mut conn, &format!("{target} unreachable: {e}")).await;
                    return;
                }
                Err(_) => {
                    tracing::warn!(%target, "relay: KMS endpoint did not accept within {CONNECT_TIMEOUT:?}");
                    let _ = relay_deny(&mut conn, &format!("{target} timed out")).await;
                    return;
                }
            };
            let _ = upstream.set_nodelay(true);
            if relay_accept(&mut conn).await.is_err() {
                return;
            }
            match relay_copy(conn, upstream, copy_limits).await {
                Ok((up, down)) => tracing::debug!(%peer, up, down, "relay: connection finished"),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    tracing::info!(event = event::RELAY_REFUSED, reason = "idle", %peer, "relay: closed a connection: {e}")
                }
                Err(e) => tracing::debug!(%peer, error = %e, "relay: connection ended"),
            }
        });
    }
}
