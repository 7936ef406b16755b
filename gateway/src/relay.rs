//! The KMS relay: the enclave's only way out. It forwards bytes to exactly one target, the
//! configured KMS endpoint, and never parses or logs what passes through (in production it
//! is TLS that ends inside the enclave).

use std::{sync::Arc, time::Duration};

use keyward_transport::{Listener, relay_accept, relay_deny, relay_read_target};
use tokio::net::TcpStream;

/// Time an enclave has to name its target after connecting.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to reach the KMS endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(listener: Listener, target: String) {
    let target = Arc::new(target);
    loop {
        let (mut conn, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "relay accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let target = target.clone();
        tokio::spawn(async move {
            let requested = match tokio::time::timeout(HANDSHAKE_TIMEOUT, relay_read_target(&mut conn)).await {
                Ok(Ok(requested)) => requested,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "relay: bad handshake; connection dropped");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "relay: no handshake within {HANDSHAKE_TIMEOUT:?}; connection dropped");
                    return;
                }
            };
            if requested != *target {
                tracing::warn!(%peer, %requested, allowed = %target, "relay: refused a connection to a target other than the configured KMS endpoint");
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
            let mut upstream = upstream;
            match tokio::io::copy_bidirectional(&mut conn, &mut upstream).await {
                Ok((up, down)) => tracing::debug!(%peer, up, down, "relay: connection finished"),
                Err(e) => tracing::debug!(%peer, error = %e, "relay: connection ended"),
            }
        });
    }
}
