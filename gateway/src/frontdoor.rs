//! Where the seed systems' front doors listen: TCP, or a Unix socket whose peers' user ids
//! (`SO_PEERCRED`, recorded by the kernel) are checked against an allow-list before a byte
//! of HTTP is read.

use std::{collections::BTreeSet, io, sync::Arc, time::Duration};

use keyward_telemetry::event;
use keyward_transport::{BoxConnection, Listener, Peer};

/// A Unix socket's file mode: its owner and group may connect; the allow-list decides.
pub const SHARED_SOCKET_MODE: u32 = 0o660;

/// A listener for axum that drops Unix peers whose user id is not allowed.
#[derive(Debug)]
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

/// A front door's JSON body, decoded as the seed systems' servers decode theirs (unknown
/// fields ignored). An unreadable or oversized body and bad JSON get codes; `prefix` begins
/// the door's own message for bad JSON.
pub fn json_body<T: serde::de::DeserializeOwned>(
    bytes: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    prefix: &str,
) -> Result<T, crate::errors::ApiError> {
    use crate::errors::ApiError;
    let bytes = bytes.map_err(|e| {
        let code =
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else { "invalid_body" };
        ApiError::new(e.status(), code, e.body_text())
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid("invalid_json", format!("{prefix}{e}")))
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP listener that serves mutual TLS: the server's certificate, and a client certificate
/// required and checked against a CA. Handshakes run in their own tasks, so a slow client
/// holds up nobody else.
#[derive(Debug)]
pub struct TlsListener {
    connections: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, String)>,
    local: std::net::SocketAddr,
}

/// The rustls server configuration of a front door with mutual TLS.
pub fn mutual_tls(tls: &crate::config::seeds::TlsSection) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use anyhow::Context;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("tls.cert_file {}", tls.cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .with_context(|| format!("tls.key_file {}", tls.key_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&tls.client_ca_file)
        .with_context(|| format!("tls.client_ca_file {}", tls.client_ca_file.display()))?
    {
        roots.add(ca.context("tls.client_ca_file")?).context("tls.client_ca_file: not a CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("tls.client_ca_file")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("tls.cert_file and tls.key_file do not make a certificate and its key")?;
    Ok(Arc::new(config))
}

impl TlsListener {
    /// Serves `config` on `listener`; `name` names the front door in the logs.
    pub fn new(
        listener: tokio::net::TcpListener,
        config: Arc<rustls::ServerConfig>,
        name: &'static str,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (send, connections) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(front_door = name, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if send.is_closed() {
                    return;
                }
                let (acceptor, sender) = (acceptor.clone(), send.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer.to_string())).await;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(event = event::PEER_REFUSED, front_door = name, %peer, "TLS handshake refused: {e}")
                        }
                        Err(_) => {
                            tracing::warn!(event = event::PEER_REFUSED, front_door = name, %peer, "TLS handshake timed out")
                        }
                    }
                });
            }
        });
        Ok(TlsListener { connections, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = String;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accepting task ends only with the process.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local.to_string())
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
