//! The enclave's side of the link: admit connections, authenticate the gateway, answer every
//! request.
//!
//! A connection starts unauthenticated: the peer sends `Hello`, receives a fresh challenge,
//! and must answer it with `Authenticate`, a signature by a link key this enclave's (measured)
//! configuration lists, within [`AUTH_DEADLINE`]. Anything else, or a wrong proof, gets
//! [`ErrorCode::Unauthenticated`] and the connection is closed. The [`Gate`] bounds waiting and
//! authenticated connections.
//!
//! Once authenticated, per connection: one reader (decodes frames, spawns a task per request)
//! and one writer (sends replies in completion order; ids pair them up). The number of requests
//! in flight per connection is bounded, so a gateway that stops reading stalls its own
//! connection instead of growing the enclave's memory; a reply that cannot be written within
//! [`WRITE_TIMEOUT`], or a request frame left unfinished for [`FRAME_STALL_LIMIT`], closes the
//! connection.

use std::{sync::Arc, time::Duration};

use keyward_custody::EnclaveCore;
use keyward_proto::{
    CONNECTION_ERROR_ID, EnclaveInfo, ErrorCode, ErrorReply, FRAME_STALL_LIMIT, FrameError, HelloReply, MAX_FRAME_LEN,
    PROTOCOL_VERSION, Reply, Request, RequestFrame, Response, ResponseFrame, WriterEnd, decode, decode_request_id,
    encode, link_auth_message, read_frame_within, write_frames,
};
use keyward_telemetry::event;
use keyward_transport::{BoxConnection, LinkPublicKey, Listener};
use tokio::{
    io::ReadHalf,
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
};

use crate::{
    attestations::Attestations,
    gate::{Gate, MAX_AUTHENTICATED, MAX_PENDING, Pending},
};

/// Requests one connection may have in flight.
const MAX_IN_FLIGHT: usize = 1024;
/// How long a single reply may take to write before the peer is considered stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time from connecting to a successful `Authenticate`.
pub const AUTH_DEADLINE: Duration = Duration::from_secs(5);
/// Largest frame before authentication (`Hello` and `Authenticate` take about a hundred
/// bytes): an unauthenticated peer cannot make the enclave buffer a megabyte.
const MAX_UNAUTHENTICATED_FRAME_LEN: usize = 4096;

/// The enclave's master key and keyring, with their KMS seam.
pub type Core = EnclaveCore<Arc<crate::datakey::DataKeys>>;

/// What every connection needs.
pub struct Link {
    pub core: Core,
    pub attestations: Attestations,
    pub info: EnclaveInfo,
    /// The gateway link key this enclave accepts (from its measured configuration).
    pub gateway_key: LinkPublicKey,
}

pub async fn serve(listener: Listener, link: Arc<Link>) -> anyhow::Result<()> {
    let gate = Gate::new(MAX_PENDING, MAX_AUTHENTICATED);
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tracing::info!(event = event::LINK_CONNECTED, %peer, "peer connected; awaiting authentication");
        let pending = gate.admit();
        let (link, gate) = (link.clone(), gate.clone());
        tokio::spawn(async move {
            let reason = serve_connection(conn, &link, &gate, pending).await;
            tracing::info!(event = event::LINK_CLOSED, %peer, %reason, "link connection closed");
        });
    }
}

type Replies = mpsc::Sender<Vec<u8>>;

async fn serve_connection(conn: BoxConnection, link: &Arc<Link>, gate: &Gate, pending: Pending) -> String {
    let (mut reader, writer) = tokio::io::split(conn);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT);
    let writer_task = tokio::spawn(async move {
        match write_frames(writer, rx, WRITE_TIMEOUT).await {
            WriterEnd::Done => {}
            WriterEnd::Failed(e) => tracing::info!(error = %e, "cannot write to the peer; closing"),
            WriterEnd::Stalled(t) => {
                tracing::warn!("peer stopped reading replies for {t:?}; closing the connection")
            }
        }
    });
    let reason = match authenticate(&mut reader, &tx, link, gate, pending).await {
        Ok(slot) => serve_requests(&mut reader, &tx, link, slot).await,
        Err(reason) => reason,
    };
    drop(tx);
    // Let queued replies (such as a connection error) go out before closing.
    let _ = tokio::time::timeout(WRITE_TIMEOUT, writer_task).await;
    reason
}

/// The handshake: `Hello` → challenge, `Authenticate` → status. Returns the authenticated
/// connection's slot, or why the connection ends.
async fn authenticate(
    reader: &mut ReadHalf<BoxConnection>,
    tx: &Replies,
    link: &Link,
    gate: &Gate,
    mut pending: Pending,
) -> Result<OwnedSemaphorePermit, String> {
    let deadline = tokio::time::Instant::now() + AUTH_DEADLINE;
    let mut challenge: Option<[u8; 32]> = None;
    loop {
        let incoming = tokio::select! {
            incoming = tokio::time::timeout_at(deadline, next_request(reader, tx, MAX_UNAUTHENTICATED_FRAME_LEN)) => incoming,
            () = pending.evicted() => {
                let message = "too many connections are waiting to authenticate; this one was closed to make room";
                tracing::warn!(event = event::LINK_REFUSED, code = ErrorCode::TooManyConnections.as_str(), "{message}");
                refuse(tx, CONNECTION_ERROR_ID, ErrorCode::TooManyConnections, message).await;
                return Err(message.to_owned());
            }
        };
        let frame = match incoming {
            Err(_) => {
                let message = format!("not authenticated within {AUTH_DEADLINE:?}");
                tracing::warn!(event = event::LINK_REFUSED, code = ErrorCode::Unauthenticated.as_str(), "{message}");
                refuse(tx, CONNECTION_ERROR_ID, ErrorCode::Unauthenticated, &message).await;
                return Err(message);
            }
            Ok(Incoming::Request(frame)) => frame,
            Ok(Incoming::Unreadable { id, error }) => {
                let message = format!("unreadable request before authentication: {error}");
                refuse(tx, id, ErrorCode::Unauthenticated, &message).await;
                return Err(message);
            }
            Ok(Incoming::End(reason)) => return Err(reason),
        };
        match (frame.request, challenge) {
            (Request::Hello(hello), None) => {
                if hello.protocol_version != PROTOCOL_VERSION {
                    let message = format!(
                        "protocol version {} is not supported; this enclave speaks {PROTOCOL_VERSION}",
                        hello.protocol_version
                    );
                    let _ = send(tx, frame.id, Reply::Err(ErrorReply::new(ErrorCode::VersionMismatch, &message))).await;
                    return Err(message);
                }
                let mut fresh = [0u8; 32];
                if getrandom::fill(&mut fresh).is_err() {
                    let message = "no randomness for a link challenge";
                    refuse(tx, frame.id, ErrorCode::Internal, message).await;
                    return Err(message.to_owned());
                }
                challenge = Some(fresh);
                let reply =
                    HelloReply { protocol_version: PROTOCOL_VERSION, info: link.info.clone(), challenge: fresh };
                if send(tx, frame.id, Reply::Ok(Response::Hello(reply))).await.is_err() {
                    return Err("writer gone".to_owned());
                }
            }
            (Request::Authenticate(proof), Some(challenge)) => {
                let key = LinkPublicKey(proof.public_key);
                let listed = key == link.gateway_key;
                if !(listed && key.verifies(&link_auth_message(&challenge), &proof.signature)) {
                    let why = if listed {
                        "its signature does not verify"
                    } else {
                        "its key is not the gateway key this enclave accepts"
                    };
                    tracing::warn!(event = event::LINK_REFUSED, code = ErrorCode::Unauthenticated.as_str(), public_key = %key, "refused a link authentication: {why}");
                    let message = format!("link authentication failed: {why}");
                    refuse(tx, frame.id, ErrorCode::Unauthenticated, &message).await;
                    return Err(message);
                }
                let Some(slot) = gate.authenticated(pending) else {
                    let message = format!("the enclave already serves {MAX_AUTHENTICATED} authenticated connections");
                    tracing::warn!(
                        event = event::LINK_REFUSED,
                        code = ErrorCode::TooManyConnections.as_str(),
                        "{message}"
                    );
                    refuse(tx, frame.id, ErrorCode::TooManyConnections, &message).await;
                    return Err(message);
                };
                tracing::info!(event = event::LINK_AUTHENTICATED, public_key = %key, "gateway authenticated");
                if send(tx, frame.id, Reply::Ok(Response::Status(link.core.master.status()))).await.is_err() {
                    return Err("writer gone".to_owned());
                }
                return Ok(slot);
            }
            (Request::Hello(_), Some(_)) => {
                let message = "Hello was already exchanged; answer the challenge with Authenticate";
                refuse(tx, frame.id, ErrorCode::Unauthenticated, message).await;
                return Err(message.to_owned());
            }
            (_, None) => {
                let message = "the first request must be Hello";
                refuse(tx, frame.id, ErrorCode::HandshakeRequired, message).await;
                return Err(message.to_owned());
            }
            (_, Some(_)) => {
                let message = "not authenticated: answer the challenge with Authenticate first";
                tracing::warn!(
                    event = event::LINK_REFUSED,
                    code = ErrorCode::Unauthenticated.as_str(),
                    "refused a request from an unauthenticated peer"
                );
                refuse(tx, frame.id, ErrorCode::Unauthenticated, message).await;
                return Err(message.to_owned());
            }
        }
    }
}

async fn serve_requests(
    reader: &mut ReadHalf<BoxConnection>,
    tx: &Replies,
    link: &Arc<Link>,
    _slot: OwnedSemaphorePermit,
) -> String {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let frame = match next_request(reader, tx, MAX_FRAME_LEN).await {
            Incoming::Request(frame) => frame,
            Incoming::Unreadable { id, error } => {
                let reply = Reply::Err(ErrorReply::new(ErrorCode::BadRequest, format!("unreadable request: {error}")));
                if send(tx, id, reply).await.is_err() {
                    return "writer gone".to_owned();
                }
                continue;
            }
            Incoming::End(reason) => return reason,
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return "shutting down".to_owned() };
        let link = link.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let id = frame.id;
            // The handler runs in its own task so that even a panic produces a reply.
            let reply = match tokio::spawn(async move { handle(&link, frame.request).await }).await {
                Ok(Ok(response)) => Reply::Ok(response),
                Ok(Err(error)) => Reply::Err(error),
                Err(_) => Reply::Err(ErrorReply::new(ErrorCode::Internal, "request handler failed unexpectedly")),
            };
            let _ = send(&tx, id, reply).await;
            drop(permit);
        });
    }
}

enum Incoming {
    Request(RequestFrame),
    /// A frame that does not decode but names its request id: answer it, keep the connection.
    Unreadable {
        id: u64,
        error: String,
    },
    /// The connection ends (a connection error has been queued where one is due).
    End(String),
}

async fn next_request(reader: &mut ReadHalf<BoxConnection>, tx: &Replies, max_len: usize) -> Incoming {
    let read = tokio::select! {
        read = read_frame_within(reader, max_len, FRAME_STALL_LIMIT) => read,
        () = tx.closed() => return Incoming::End("reply writer stopped".to_owned()),
    };
    let body = match read {
        Ok(body) => body,
        Err(FrameError::Closed) => return Incoming::End("closed by the peer".to_owned()),
        Err(e @ (FrameError::TooLarge { .. } | FrameError::Stalled(_))) => {
            refuse(tx, CONNECTION_ERROR_ID, ErrorCode::BadRequest, &e.to_string()).await;
            return Incoming::End(e.to_string());
        }
        Err(e) => return Incoming::End(e.to_string()),
    };
    match decode::<RequestFrame>(&body) {
        Ok(frame) => Incoming::Request(frame),
        Err(e) => match decode_request_id(&body) {
            Some(id) if id != CONNECTION_ERROR_ID => Incoming::Unreadable { id, error: e.to_string() },
            _ => {
                refuse(tx, CONNECTION_ERROR_ID, ErrorCode::BadRequest, &e.to_string()).await;
                Incoming::End(format!("undecodable frame: {e}"))
            }
        },
    }
}

pub(crate) async fn handle(link: &Link, request: Request) -> Result<Response, ErrorReply> {
    match request {
        Request::Attest(a) => link
            .attestations
            .for_gateway(
                a,
                link.core.master.committed_public_key(),
                link.core.authorizer.as_deref().map(|a| a.audit_public_key()),
                link.core.keyring.transfer_public_key(),
            )
            .await
            .map(Response::Attestation),
        other => link.core.handle(other).await,
    }
}

async fn send(tx: &Replies, id: u64, reply: Reply) -> Result<(), ()> {
    let frame = match encode(&ResponseFrame { id, reply }) {
        Ok(frame) => frame,
        Err(e) => {
            // Only an impossible oversize reply gets here; answer with a small error instead.
            let reply = Reply::Err(ErrorReply::new(ErrorCode::Internal, format!("reply could not be encoded: {e}")));
            encode(&ResponseFrame { id, reply }).map_err(|_| ())?
        }
    };
    tx.send(frame).await.map_err(|_| ())
}

/// Queues an error reply; the caller then closes the connection.
async fn refuse(tx: &Replies, id: u64, code: ErrorCode, message: &str) {
    let _ = send(tx, id, Reply::Err(ErrorReply::new(code, message))).await;
}
