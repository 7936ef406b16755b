//! Where the seed systems' front doors listen: TCP, or a Unix socket whose peers' user ids
//! (`SO_PEERCRED`, recorded by the kernel) are checked against an allow-list before a byte
//! of HTTP is read.

use std::{collections::BTreeSet, io, sync::Arc, time::Duration};

use keyward_telemetry::event;
use keyward_transport::{BoxConnection, Listener, Peer};

/// A Unix socket's file mode: its owner and group may connect; the allow-list decides.
pub const SHARED_SOCKET_MODE: u32 = 0o660;

/// A listener for axum that drops Unix peers whose user id is not allowed.
pub struct CheckedListener {
    inner: Listener,
    /// Which front door, for the logs.
    name: &'static str,
    /// User ids allowed on a Unix socket (TCP peers are not checked here).
    allowed_uids: Arc<BTreeSet<u32>>,
}

impl CheckedListener {
    pub fn new(inner: Listener, name: &'static str, allowed_uids: Arc<BTreeSet<u32>>) -> Self {
        CheckedListener { inner, name, allowed_uids }
    }

    /// Whether `peer` may talk to this front door.
    fn admits(&self, peer: &Peer) -> bool {
        match peer {
            Peer::Unix { uid, .. } => self.allowed_uids.contains(uid),
            Peer::Tcp(_) | Peer::Vsock { .. } => true,
        }
    }
}

impl axum::serve::Listener for CheckedListener {
    type Io = BoxConnection;
    type Addr = String;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((io, peer)) if self.admits(&peer) => return (io, peer.to_string()),
                Ok((io, peer)) => {
                    tracing::warn!(event = event::PEER_REFUSED, front_door = self.name, %peer, "refused a peer whose user id is not in allowed_uids");
                    drop(io);
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, as axum's own listeners do.
                    tracing::warn!(front_door = self.name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.inner.local_address().to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use keyward_transport::Address;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Serves "hi" on a Unix socket allowing `allowed`, and returns what one HTTP request
    /// from this process reads back.
    async fn answer_with_allowed(allowed: impl Fn(u32) -> BTreeSet<u32>) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.sock");
        let address = Address::Unix(path.clone());
        let inner = Listener::bind_with_mode(&address, SHARED_SOCKET_MODE).await.unwrap();
        let own = std::fs::metadata(&path).unwrap().uid();
        let listener = CheckedListener::new(inner, "test", Arc::new(allowed(own)));
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut conn = keyward_transport::connect(&address).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        // A refused peer sees its connection closed: EOF (or a reset) and no bytes.
        let _ = conn.read_to_end(&mut answer).await;
        server.abort();
        answer
    }

    #[tokio::test]
    async fn an_allowed_user_is_served() {
        let answer = answer_with_allowed(|own| BTreeSet::from([own])).await;
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
        assert!(answer.ends_with(b"hi"));
    }

    #[tokio::test]
    async fn another_user_is_refused_before_any_http() {
        let answer = answer_with_allowed(|own| BTreeSet::from([own.wrapping_add(1)])).await;
        assert!(answer.is_empty(), "a refused peer got {}", String::from_utf8_lossy(&answer));
    }
}
