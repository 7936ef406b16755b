//! The enclave's side of the link: accept gateway connections, answer every request.
//!
//! Per connection: one reader (decodes frames, enforces the handshake, spawns a task per
//! request) and one writer (sends replies in completion order; ids pair them up). The number
//! of requests in flight per connection is bounded, so a gateway that stops reading stalls
//! its own connection instead of growing the enclave's memory; a reply that cannot be
//! written within [`WRITE_TIMEOUT`], or a request frame left unfinished for
//! [`FRAME_STALL_LIMIT`], closes the connection.

use std::{sync::Arc, time::Duration};

use keyward_proto::{
    CONNECTION_ERROR_ID, EnclaveInfo, ErrorCode, ErrorReply, FRAME_STALL_LIMIT, FrameError, HelloReply, MAX_FRAME_LEN,
    PROTOCOL_VERSION, Reply, Request, RequestFrame, Response, ResponseFrame, WriterEnd, decode, decode_request_id,
    encode, read_frame_within, write_frames,
};
use keyward_transport::{BoxConnection, Listener};
use tokio::sync::{Semaphore, mpsc};

use crate::vault::Vault;

/// Requests one connection may have in flight.
const MAX_IN_FLIGHT: usize = 1024;
/// How long a single reply may take to write before the peer is considered stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(listener: Listener, vault: Arc<Vault>, info: EnclaveInfo) -> anyhow::Result<()> {
    let info = Arc::new(info);
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tracing::info!(%peer, "gateway connected");
        let vault = vault.clone();
        let info = info.clone();
        tokio::spawn(async move {
            let reason = serve_connection(conn, vault, info).await;
            tracing::info!(%peer, %reason, "gateway connection closed");
        });
    }
}

async fn serve_connection(conn: BoxConnection, vault: Arc<Vault>, info: Arc<EnclaveInfo>) -> String {
    let (mut reader, writer) = tokio::io::split(conn);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT);
    let writer_task = tokio::spawn(async move {
        match write_frames(writer, rx, WRITE_TIMEOUT).await {
            WriterEnd::Done => {}
            WriterEnd::Failed(e) => tracing::info!(error = %e, "cannot write to the gateway; closing"),
            WriterEnd::Stalled(t) => {
                tracing::warn!("gateway stopped reading replies for {t:?}; closing the connection")
            }
        }
    });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut greeted = false;

    let reason = loop {
        let read = tokio::select! {
            read = read_frame_within(&mut reader, MAX_FRAME_LEN, FRAME_STALL_LIMIT) => read,
            () = tx.closed() => break "reply writer stopped".to_owned(),
        };
        let body = match read {
            Ok(body) => body,
            Err(FrameError::Closed) => break "closed by gateway".to_owned(),
            Err(e @ (FrameError::TooLarge { .. } | FrameError::Stalled(_))) => {
                send_connection_error(&tx, ErrorCode::BadRequest, &e.to_string()).await;
                break e.to_string();
            }
            Err(e) => break e.to_string(),
        };
        let frame: RequestFrame = match decode(&body) {
            Ok(frame) => frame,
            Err(e) => match decode_request_id(&body) {
                Some(id) if id != CONNECTION_ERROR_ID => {
                    let reply = Reply::Err(ErrorReply::new(ErrorCode::BadRequest, format!("unreadable request: {e}")));
                    if send(&tx, id, reply).await.is_err() {
                        break "writer gone".to_owned();
                    }
                    continue;
                }
                _ => {
                    send_connection_error(&tx, ErrorCode::BadRequest, &e.to_string()).await;
                    break format!("undecodable frame: {e}");
                }
            },
        };
        if !greeted {
            let Request::Hello(hello) = frame.request else {
                let reply =
                    Reply::Err(ErrorReply::new(ErrorCode::HandshakeRequired, "the first request must be Hello"));
                let _ = send(&tx, frame.id, reply).await;
                break "request before Hello".to_owned();
            };
            if hello.protocol_version != PROTOCOL_VERSION {
                let message = format!(
                    "protocol version {} is not supported; this enclave speaks {PROTOCOL_VERSION}",
                    hello.protocol_version
                );
                let _ = send(&tx, frame.id, Reply::Err(ErrorReply::new(ErrorCode::VersionMismatch, &message))).await;
                break message;
            }
            greeted = true;
            let reply =
                HelloReply { protocol_version: PROTOCOL_VERSION, info: (*info).clone(), status: vault.status() };
            if send(&tx, frame.id, Reply::Ok(Response::Hello(reply))).await.is_err() {
                break "writer gone".to_owned();
            }
            continue;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break "shutting down".to_owned() };
        let vault = vault.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let id = frame.id;
            // The handler runs in its own task so that even a panic produces a reply.
            let reply = match tokio::spawn(handle(vault, frame.request)).await {
                Ok(Ok(response)) => Reply::Ok(response),
                Ok(Err(error)) => Reply::Err(error),
                Err(_) => Reply::Err(ErrorReply::new(ErrorCode::Internal, "request handler failed unexpectedly")),
            };
            let _ = send(&tx, id, reply).await;
            drop(permit);
        });
    };
    drop(tx);
    // Let queued replies (such as a connection error) go out before closing.
    let _ = tokio::time::timeout(WRITE_TIMEOUT, writer_task).await;
    reason
}

async fn handle(vault: Arc<Vault>, request: Request) -> Result<Response, ErrorReply> {
    match request {
        Request::Hello(_) => Err(ErrorReply::new(ErrorCode::BadRequest, "Hello was already exchanged")),
        Request::Provision(p) => vault.provision(p).await.map(Response::Provisioned),
        Request::Commit(c) => vault.commit(c).await.map(Response::Status),
        Request::Unseal(u) => vault.unseal(u).await.map(Response::Status),
        Request::Rotate(r) => vault.rotate(r).await.map(Response::Rotated),
        Request::Sign(s) => vault.sign(&s).map(Response::Signature),
        Request::SignBatch(items) => vault.sign_batch(&items).map(Response::Signatures),
        Request::PublicKey => vault.public_key().map(Response::PublicKey),
        Request::Status => Ok(Response::Status(vault.status())),
        Request::Attest(a) => vault.attest(&a).map(Response::Attestation),
        _ => Err(ErrorReply::new(ErrorCode::BadRequest, "request not supported by this enclave")),
    }
}

async fn send(tx: &mpsc::Sender<Vec<u8>>, id: u64, reply: Reply) -> Result<(), ()> {
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

async fn send_connection_error(tx: &mpsc::Sender<Vec<u8>>, code: ErrorCode, message: &str) {
    let _ = send(tx, CONNECTION_ERROR_ID, Reply::Err(ErrorReply::new(code, message))).await;
}
