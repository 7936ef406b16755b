//! The gateway's end of one enclave connection: the handshake (version, then proof of the
//! link key), then many requests in flight, each matched to its reply by id, each with its own
//! deadline.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use keyward_proto::{
    Authenticate, CONNECTION_ERROR_ID, ErrorReply, FRAME_STALL_LIMIT, FrameError, Hello, HelloReply, MAX_FRAME_LEN,
    PROTOCOL_VERSION, Reply, Request, RequestFrame, Response, ResponseFrame, Status, WriterEnd, decode, encode,
    link_auth_message, read_frame_within, write_frames,
};
use keyward_transport::{Address, LinkKey, TransportError, connect};
use tokio::sync::{mpsc, oneshot, watch};

/// How long a queued request may wait for the socket before the link is declared stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the handshake may take.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

pub use keyward_admission::{LinkError, unexpected_reply};

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Response, LinkError>>>>>;

/// The enclave's core called in its own process (its TLS API): no connection, no encoding.
pub type LocalCall =
    Arc<dyn Fn(Request) -> std::pin::Pin<Box<dyn Future<Output = Result<Response, ErrorReply>> + Send>> + Send + Sync>;

/// One live connection to an enclave, or the enclave's own core.
pub struct EnclaveLink {
    frames: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
    closed: watch::Receiver<Option<String>>,
    /// Set for a link inside the enclave: calls go straight to the core.
    local: Option<LocalCall>,
    /// Keeps `closed` open for a local link, which never closes.
    _open: Option<watch::Sender<Option<String>>>,
}

impl std::fmt::Debug for EnclaveLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnclaveLink").field("local", &self.local.is_some()).finish_non_exhaustive()
    }
}

impl EnclaveLink {
    /// A link to the core of the enclave this code runs in.
    pub fn local(call: LocalCall) -> Arc<EnclaveLink> {
        let (frames, _) = mpsc::channel(1);
        let (open, closed) = watch::channel(None);
        Arc::new(EnclaveLink {
            frames,
            pending: Arc::default(),
            next_id: AtomicU64::new(1),
            closed,
            local: Some(call),
            _open: Some(open),
        })
    }

    /// Connects, performs the version handshake and proves the link key. Returns the link,
    /// what the enclave said about itself, and its state.
    pub async fn connect(
        address: &Address,
        key: &LinkKey,
    ) -> Result<(Arc<EnclaveLink>, HelloReply, Status), LinkError> {
        let conn = connect(address).await.map_err(|e: TransportError| LinkError::Connect(e.to_string()))?;
        let (mut reader, writer) = tokio::io::split(conn);
        let (frames, rx) = mpsc::channel(4096);
        let (closed_tx, closed) = watch::channel(None);
        let closed_tx = Arc::new(closed_tx);
        let pending: Pending = Arc::default();

        let writer_closed = closed_tx.clone();
        let writer_pending = pending.clone();
        tokio::spawn(async move {
            let reason = match write_frames(writer, rx, WRITE_TIMEOUT).await {
                WriterEnd::Done => "link dropped".to_owned(),
                WriterEnd::Failed(e) => format!("write failed: {e}"),
                WriterEnd::Stalled(t) => format!("enclave stopped reading for {t:?}"),
            };
            shut(&writer_pending, &writer_closed, reason, None);
        });

        let reader_pending = pending.clone();
        let reader_closed = closed_tx.clone();
        tokio::spawn(async move {
            let (reason, refusal) = read_replies(&mut reader, &reader_pending).await;
            shut(&reader_pending, &reader_closed, reason, refusal);
        });

        let link =
            Arc::new(EnclaveLink { frames, pending, next_id: AtomicU64::new(1), closed, local: None, _open: None });
        let hello = match link.call(Request::Hello(Hello { protocol_version: PROTOCOL_VERSION }), HELLO_TIMEOUT).await?
        {
            Response::Hello(hello) => hello,
            other => return Err(LinkError::Protocol(format!("expected Hello, got {}", other.kind()))),
        };
        let proof =
            Authenticate { public_key: key.public_key().0, signature: key.sign(&link_auth_message(&hello.challenge)) };
        let status = match link.call(Request::Authenticate(proof), HELLO_TIMEOUT).await? {
            Response::Status(status) => status,
            other => {
                return Err(LinkError::Protocol(format!("expected Status after Authenticate, got {}", other.kind())));
            }
        };
        Ok((link, hello, status))
    }

    /// Sends `request` and waits up to `timeout` for its reply.
    pub async fn call(&self, request: Request, timeout: Duration) -> Result<Response, LinkError> {
        if let Some(local) = &self.local {
            return match tokio::time::timeout(timeout, local(request)).await {
                Ok(result) => result.map_err(LinkError::Remote),
                Err(_) => Err(LinkError::Timeout(timeout)),
            };
        }
        if let Some(reason) = self.closed.borrow().clone() {
            return Err(LinkError::Closed(reason));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode(&RequestFrame { id, request }).map_err(|e| LinkError::Protocol(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        // If the link closed between the check above and the insert, nobody will answer.
        if let Some(reason) = self.closed.borrow().clone() {
            lock(&self.pending).remove(&id);
            return Err(LinkError::Closed(reason));
        }
        let outcome = tokio::time::timeout(timeout, async {
            self.frames.send(frame).await.map_err(|_| LinkError::Closed("writer stopped".into()))?;
            rx.await.map_err(|_| LinkError::Closed("connection ended".into()))?
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(LinkError::Timeout(timeout))
            }
        }
    }

    /// Resolves when the connection has ended, with the reason.
    pub async fn closed(&self) -> String {
        let mut closed = self.closed.clone();
        match closed.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "link dropped".to_owned(),
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }
}

/// Reads replies until the connection ends; returns why, and the enclave's error when it
/// closed the connection with one (so waiting requests see its code, not just "closed").
async fn read_replies<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    pending: &Pending,
) -> (String, Option<ErrorReply>) {
    loop {
        let body = match read_frame_within(reader, MAX_FRAME_LEN, FRAME_STALL_LIMIT).await {
            Ok(body) => body,
            Err(FrameError::Closed) => return ("closed by the enclave".to_owned(), None),
            Err(e) => return (e.to_string(), None),
        };
        let frame: ResponseFrame = match decode(&body) {
            Ok(frame) => frame,
            Err(e) => return (format!("undecodable reply: {e}"), None),
        };
        if frame.id == CONNECTION_ERROR_ID {
            return match frame.reply {
                Reply::Err(e) => (format!("enclave closed the connection: {e}"), Some(e)),
                Reply::Ok(_) => ("enclave closed the connection with a reply that is not an error".to_owned(), None),
            };
        }
        let Some(waiter) = lock(pending).remove(&frame.id) else {
            // The request already timed out and gave up; its late reply is dropped.
            tracing::debug!(id = frame.id, "reply for a request that is no longer waiting");
            continue;
        };
        let _ = waiter.send(match frame.reply {
            Reply::Ok(response) => Ok(response),
            Reply::Err(error) => Err(LinkError::Remote(error)),
        });
    }
}

fn shut(pending: &Pending, closed: &watch::Sender<Option<String>>, reason: String, refusal: Option<ErrorReply>) {
    closed.send_if_modified(|current| {
        if current.is_none() {
            *current = Some(reason.clone());
            true
        } else {
            false
        }
    });
    for (_, waiter) in lock(pending).drain() {
        let error = match &refusal {
            Some(reply) => LinkError::Remote(reply.clone()),
            None => LinkError::Closed(reason.clone()),
        };
        let _ = waiter.send(Err(error));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent even if a holder panicked: every operation is a single
    // insert/remove/drain.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl keyward_admission::Enclave for EnclaveLink {
    async fn call(&self, request: Request, timeout: Duration) -> Result<Response, LinkError> {
        EnclaveLink::call(self, request, timeout).await
    }
}
