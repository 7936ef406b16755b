//! Streamed encryption and decryption (`application/octet-stream` bodies of any size on
//! `/v1/keys/{name}/encrypt` and `/decrypt`; associated data in the
//! `X-Keyward-Associated-Data` header, base64). The body is cut into segments of
//! [`STREAM_SEGMENT_LEN`] bytes, each sealed or opened by the enclave on its own (format in
//! `keyward_keyring::stream`), a few in flight at once; neither process holds more than a few
//! segments, whatever the size.
//!
//! With owners, a stream is a signed request too: the principal signs the JSON in
//! `X-Keyward-Stream-Request` (`StreamEncryptBody`: the associated data and the plaintext's
//! SHA-256; `StreamDecryptBody`: the header and the associated data), the enclave checks it
//! once and answers with a ticket every segment carries (docs/authorization.md, streams).
//!
//! Decryption checks the header and opens the first segment before answering, so most bad
//! input gets a 4xx JSON answer. A segment that fails later (a stream cut, spliced or altered
//! after its start) aborts the response: the client sees a broken transfer, never a complete
//! one. Plaintext of the segments before it has been sent by then, so clients must treat a
//! broken transfer as a failure and discard what they got.

use std::{collections::VecDeque, sync::Arc};

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, HeaderValue, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use futures_util::StreamExt;
use keyward_client::crypt::{STREAM_REQUEST_HEADER, StreamEncryptBody};
use keyward_keyring::{STREAM_HEADER_LEN, StreamHeader, TAG_LEN};
use keyward_proto::{Authorization, CryptOp, CryptOutput, KeyCrypt, Request, SecretBytes, StreamTicket, WrappedKey};
use tokio::sync::mpsc;

use crate::{
    api::AppState,
    errors::ApiError,
    keys_api::{KEY_TIMEOUT, keyring_link, signing_row},
    keys_crypt::{crypt_via, decryption_row_for},
    link::{EnclaveLink, unexpected_reply},
    signed,
};

/// The header that carries a stream's associated data (base64).
pub const ASSOCIATED_DATA_HEADER: &str = "x-keyward-associated-data";
/// The header that names the key version of a stream's answer.
pub const KEY_VERSION_HEADER: &str = "x-keyward-key-version";
/// Segments sent to the enclave at once (a signed encryption: one, the enclave hashes them in
/// order).
const IN_FLIGHT: usize = 4;
/// Answer chunks queued for the client before reading more of the request stops.
const QUEUED: usize = 4;

/// Whether the request carries a stream.
pub fn is_stream(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/octet-stream"))
}

fn associated_data(headers: &HeaderMap) -> Result<Vec<u8>, ApiError> {
    match headers.get(ASSOCIATED_DATA_HEADER) {
        None => Ok(Vec::new()),
        Some(value) => {
            value.to_str().ok().and_then(|v| STANDARD.decode(v).ok()).filter(|v| v.len() <= 64 * 1024).ok_or_else(
                || {
                    ApiError::invalid(
                        "invalid_base64",
                        format!("{ASSOCIATED_DATA_HEADER} must be base64 of at most 64 KiB"),
                    )
                },
            )
        }
    }
}

/// The request body, read into whole segments.
struct Segments {
    body: axum::body::BodyDataStream,
    buffer: Vec<u8>,
    ended: bool,
}

impl Segments {
    fn new(body: Body) -> Self {
        Segments { body: body.into_data_stream(), buffer: Vec::new(), ended: false }
    }

    /// Reads until more than `len` bytes are buffered or the body ends.
    async fn fill(&mut self, len: usize) -> Result<(), ApiError> {
        while !self.ended && self.buffer.len() <= len {
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    return Err(ApiError::invalid("body_interrupted", format!("the request body broke off: {e}")));
                }
                None => self.ended = true,
            }
        }
        Ok(())
    }

    /// The next `len` bytes, and whether they are the last: `None` once the body is used up.
    async fn next(&mut self, len: usize, first: bool) -> Result<Option<(Vec<u8>, bool)>, ApiError> {
        self.fill(len).await?;
        if self.buffer.is_empty() && self.ended && !first {
            return Ok(None);
        }
        let take = self.buffer.len().min(len);
        let rest = self.buffer.split_off(take);
        let segment = std::mem::replace(&mut self.buffer, rest);
        Ok(Some((segment, self.ended && self.buffer.is_empty())))
    }
}

async fn call(link: &EnclaveLink, row: WrappedKey, op: CryptOp) -> Result<CryptOutput, ApiError> {
    match link.call(Request::KeyCrypt(Box::new(KeyCrypt { row, op, auth: None })), KEY_TIMEOUT).await {
        Ok(keyward_proto::Response::Crypt(output)) => Ok(output),
        Ok(other) => Err(ApiError::from_link(unexpected_reply("KeyCrypt", &other))),
        Err(e) => Err(ApiError::from_link(e)),
    }
}

fn streamed(version: u32, chunks: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Response {
    let body = Body::from_stream(futures_util::stream::unfold(chunks, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(KEY_VERSION_HEADER, HeaderValue::from(version));
    response
}

fn broken(e: &ApiError) -> std::io::Error {
    std::io::Error::other(format!("{}: {}", e.code, e.message))
}

/// The segment operations of one stream, `width` at a time, answers in order.
struct Pipeline {
    link: Arc<EnclaveLink>,
    row: WrappedKey,
    width: usize,
    pending: VecDeque<tokio::task::JoinHandle<Result<CryptOutput, ApiError>>>,
}

impl Pipeline {
    fn push(&mut self, op: CryptOp) {
        let (link, row) = (self.link.clone(), self.row.clone());
        self.pending.push_back(tokio::spawn(async move { call(&link, row, op).await }));
    }

    /// The oldest answer, when `IN_FLIGHT` are pending (or `all`).
    async fn ready(&mut self, all: bool) -> Option<Result<CryptOutput, ApiError>> {
        if self.pending.len() < self.width && !all {
            return None;
        }
        let handle = self.pending.pop_front()?;
        Some(handle.await.unwrap_or_else(|_| Err(ApiError::internal("a segment task failed"))))
    }
}

/// Segment bytes out of an answer.
fn segment_bytes(output: CryptOutput) -> Result<Bytes, ApiError> {
    match output {
        CryptOutput::Ciphertext(c) => Ok(Bytes::from(c)),
        CryptOutput::Plaintext(p) => Ok(Bytes::copy_from_slice(p.expose())),
        _ => Err(ApiError::new(StatusCode::BAD_GATEWAY, "enclave_protocol", "unexpected segment answer")),
    }
}

fn invalid_request(message: impl Into<String>) -> ApiError {
    ApiError::invalid("invalid_stream_request", message)
}

/// A stream's signed request: the principal's headers over the JSON in
/// `X-Keyward-Stream-Request` (the HTTP body is the stream itself), and that JSON.
fn stream_auth(headers: &HeaderMap, name: &str) -> Result<Option<(Authorization, Vec<u8>)>, ApiError> {
    let request =
        match headers.get(STREAM_REQUEST_HEADER) {
            None => None,
            Some(value) => Some(
                value.to_str().ok().and_then(|v| STANDARD.decode(v).ok()).filter(|v| v.len() <= 64 * 1024).ok_or_else(
                    || invalid_request(format!("{STREAM_REQUEST_HEADER} must be base64 of at most 64 KiB")),
                )?,
            ),
        };
    let signed_bytes = Bytes::from(request.clone().unwrap_or_default());
    match (signed::authorization(headers, signed::keystore_of(name), &signed_bytes)?, request) {
        (None, None) => Ok(None),
        (Some(auth), Some(request)) => Ok(Some((auth, request))),
        (Some(_), None) => {
            Err(invalid_request(format!("a signed stream carries its request in {STREAM_REQUEST_HEADER}")))
        }
        (None, Some(_)) => Err(invalid_request(format!("{STREAM_REQUEST_HEADER} without a principal's signature"))),
    }
}

/// The header of a new stream and, when it is signed, its ticket (then sealed one segment at
/// a time).
async fn begin_seal(
    app: &AppState,
    link: &EnclaveLink,
    row: &WrappedKey,
    associated_data: &[u8],
    signed: Option<(Authorization, Vec<u8>)>,
) -> Result<(Vec<u8>, Option<StreamTicket>), ApiError> {
    let Some((auth, request)) = signed else {
        return match crypt_via(app, link, row.clone(), CryptOp::BeginStream, None).await? {
            CryptOutput::StreamHeader(header) => Ok((header, None)),
            _ => Err(ApiError::new(StatusCode::BAD_GATEWAY, "enclave_protocol", "unexpected stream answer")),
        };
    };
    let request: StreamEncryptBody = serde_json::from_slice(&request)
        .map_err(|e| invalid_request(format!("{STREAM_REQUEST_HEADER} is not a stream to encrypt: {e}")))?;
    let plaintext_sha256 = hex::decode(&request.plaintext_sha256_hex)
        .ok()
        .filter(|d| d.len() == 32)
        .ok_or_else(|| invalid_request("plaintext_sha256_hex is 64 hex digits"))?;
    // The associated data are the header's; the enclave compares them with the signed ones.
    let op = CryptOp::BeginSeal { associated_data: associated_data.to_vec(), plaintext_sha256 };
    match crypt_via(app, link, row.clone(), op, Some(auth)).await? {
        CryptOutput::SealTicket { header, ticket } => Ok((header, Some(ticket))),
        // An enclave without owners checks nothing and issues no ticket.
        CryptOutput::StreamHeader(header) => Ok((header, None)),
        _ => Err(ApiError::new(StatusCode::BAD_GATEWAY, "enclave_protocol", "unexpected stream answer")),
    }
}

/// The ticket of a signed decryption of the stream `header` begins.
async fn begin_open(
    app: &AppState,
    link: &EnclaveLink,
    row: &WrappedKey,
    header: &[u8],
    associated_data: &[u8],
    signed: Option<(Authorization, Vec<u8>)>,
) -> Result<Option<StreamTicket>, ApiError> {
    let Some((auth, _)) = signed else { return Ok(None) };
    let op = CryptOp::BeginOpen { header: header.to_vec(), associated_data: associated_data.to_vec() };
    match crypt_via(app, link, row.clone(), op, Some(auth)).await? {
        CryptOutput::StreamTicket(ticket) => Ok(Some(ticket)),
        CryptOutput::Valid(true) => Ok(None),
        _ => Err(ApiError::new(StatusCode::BAD_GATEWAY, "enclave_protocol", "unexpected stream answer")),
    }
}

pub async fn encrypt(app: &AppState, name: &str, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let associated_data = associated_data(headers)?;
    let signed = stream_auth(headers, name)?;
    let (_, row) = signing_row(app, name, None).await?;
    let version = row.identity.version.get();
    let link = keyring_link(app)?;
    let (header, ticket) = begin_seal(app, &link, &row, &associated_data, signed).await?;
    let parsed = StreamHeader::parse(&header).map_err(|e| ApiError::internal(format!("the enclave's header: {e}")))?;
    let width = if ticket.is_some() { 1 } else { IN_FLIGHT };
    let (tx, rx) = mpsc::channel(QUEUED);
    tokio::spawn(async move {
        let mut pipeline = Pipeline { link, row, width, pending: VecDeque::new() };
        let result = async {
            tx.send(Ok(Bytes::copy_from_slice(&header))).await.map_err(|_| ApiError::internal("client gone"))?;
            let mut segments = Segments::new(body);
            let mut index = 0u32;
            while let Some((plaintext, last)) = segments.next(parsed.segment_len as usize, index == 0).await? {
                pipeline.push(CryptOp::SealSegment {
                    header: header.clone(),
                    associated_data: associated_data.clone(),
                    index,
                    last,
                    plaintext: SecretBytes::new(plaintext),
                    ticket: ticket.clone(),
                });
                index =
                    index.checked_add(1).ok_or_else(|| ApiError::invalid("payload_too_large", "too many segments"))?;
                while let Some(answer) = pipeline.ready(last).await {
                    tx.send(Ok(segment_bytes(answer?)?)).await.map_err(|_| ApiError::internal("client gone"))?;
                }
                if last {
                    break;
                }
            }
            Ok::<(), ApiError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(code = e.code, "streamed encryption stopped: {}", e.message);
            let _ = tx.send(Err(broken(&e))).await;
        }
    });
    Ok(streamed(version, rx))
}

pub async fn decrypt(app: &AppState, name: &str, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let associated_data = associated_data(headers)?;
    let signed = stream_auth(headers, name)?;
    let mut segments = Segments::new(body);
    let header = match segments.next(STREAM_HEADER_LEN, true).await? {
        Some((header, _)) => header,
        None => Vec::new(),
    };
    let parsed = StreamHeader::parse(&header).map_err(|e| ApiError::invalid("ciphertext_malformed", e.to_string()))?;
    let row = decryption_row_for(app, name, parsed.version).await?;
    let link = keyring_link(app)?;
    let ticket = begin_open(app, &link, &row, &header, &associated_data, signed).await?;
    let sealed_len = parsed.sealed_segment_len();
    let open = move |index: u32, last: bool, sealed: Vec<u8>| CryptOp::OpenSegment {
        header: header.clone(),
        associated_data: associated_data.clone(),
        index,
        last,
        sealed,
        ticket: ticket.clone(),
    };
    // The first segment is opened before answering: a wrong key, associated data or an
    // altered start is a 4xx, with nothing sent.
    let (first, last) = segments.next(sealed_len, true).await?.unwrap_or_default();
    if first.len() < TAG_LEN {
        return Err(ApiError::invalid("decryption_failed", "the stream has no complete segment"));
    }
    let opened = segment_bytes(call(&link, row.clone(), open(0, last, first)).await?)?;
    let version = parsed.version.get();
    let (tx, rx) = mpsc::channel(QUEUED);
    tokio::spawn(async move {
        let mut pipeline = Pipeline { link, row, width: IN_FLIGHT, pending: VecDeque::new() };
        let result = async {
            tx.send(Ok(opened)).await.map_err(|_| ApiError::internal("client gone"))?;
            if last {
                return Ok(());
            }
            let mut index = 1u32;
            loop {
                let Some((sealed, last)) = segments.next(sealed_len, false).await? else {
                    // Only a segment marked last ends a stream: this one was cut.
                    return Err(ApiError::invalid("decryption_failed", "the stream ends without its last segment"));
                };
                pipeline.push(open(index, last, sealed));
                index += 1;
                while let Some(answer) = pipeline.ready(last).await {
                    tx.send(Ok(segment_bytes(answer?)?)).await.map_err(|_| ApiError::internal("client gone"))?;
                }
                if last {
                    return Ok(());
                }
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(code = e.code, "streamed decryption stopped: {}", e.message);
            let _ = tx.send(Err(broken(&e))).await;
        }
    });
    Ok(streamed(version, rx))
}
