//! Signed streams. A stream's segments are sealed or opened one request each, too many to
//! sign one by one, so the principal signs the stream once (`BeginSeal`: its associated data
//! and the plaintext's SHA-256; `BeginOpen`: its header and associated data), the enclave
//! checks and audits that like any signed request, and answers with a ticket: a MAC under a
//! key only this enclave holds over the key version, the header, the associated data, the
//! digest and an expiry. Each segment carries the ticket; a segment of another stream, key,
//! associated data, or after the expiry is refused.
//!
//! To seal, the enclave also hashes the plaintext it seals, in order, one segment at a time,
//! and seals the segment marked last only if the whole hashes to the signed digest: a host
//! that substitutes plaintext gets segments of a stream without its last one, which the
//! gateway and the SDK refuse to decrypt. A stream's state advances before its segment is
//! sealed, so no index is ever sealed twice; a segment refused after that (a row that does
//! not open) ends the stream. A stream is forgotten when it ends or its ticket expires; it
//! cannot begin again, since only `BeginSeal` makes a header and its ticket.

use std::collections::HashMap;

use aws_lc_rs::{constant_time, digest, hmac, rand::SystemRandom};
use keyward_proto::{CryptOp, CryptOutput, ErrorCode, ErrorReply, KeyCrypt, KeyIdentity, StreamTicket};

use super::{lock, refuse};

/// How long a ticket lets segments through (seconds).
pub const TICKET_LIFETIME: u64 = 3600;
/// Signed sealing streams tracked at once (open or finished, until their tickets expire).
pub const MAX_SEALING: usize = 65_536;
const LABEL: &[u8] = b"keyward stream ticket v1\0";
const SEAL: u8 = 1;
const OPEN: u8 = 2;

/// A sealing stream: the next index expected and the hash of the segments before it.
struct Sealing {
    next: u32,
    hash: digest::Context,
    expires: u64,
}

/// The enclave's ticket key and the sealing streams it tracks.
pub struct Streams {
    key: hmac::Key,
    sealing: std::sync::Mutex<HashMap<(String, Vec<u8>), Sealing>>,
}

fn framed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn mismatch(message: impl Into<String>) -> ErrorReply {
    refuse(ErrorCode::RequestMismatch, message)
}

impl Streams {
    /// A new ticket key from the system's randomness (the enclave's kernel, seeded by the NSM).
    pub fn new() -> Result<Self, String> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| "no randomness for the stream ticket key".to_owned())?;
        Ok(Streams { key, sealing: std::sync::Mutex::new(HashMap::new()) })
    }

    fn mac(&self, kind: u8, identity: &KeyIdentity, header: &[u8], associated_data: &[u8], t: (&[u8], u64)) -> Vec<u8> {
        let mut input = Vec::with_capacity(LABEL.len() + 64 + header.len() + associated_data.len());
        input.extend_from_slice(LABEL);
        input.push(kind);
        framed(&mut input, identity.name.as_str().as_bytes());
        input.extend_from_slice(&identity.version.get().to_be_bytes());
        framed(&mut input, header);
        framed(&mut input, associated_data);
        framed(&mut input, t.0);
        input.extend_from_slice(&t.1.to_be_bytes());
        hmac::sign(&self.key, &input).as_ref().to_vec()
    }

    /// The ticket for a stream a principal's signed `BeginSeal` or `BeginOpen` began, given
    /// the keyring's answer to it (the new header, or the checked one).
    pub fn issue(&self, request: &KeyCrypt, output: CryptOutput, now: u64) -> Result<CryptOutput, ErrorReply> {
        let identity = &request.row.identity;
        let expires = now + TICKET_LIFETIME;
        match (&request.op, output) {
            (CryptOp::BeginSeal { associated_data, plaintext_sha256 }, CryptOutput::StreamHeader(header)) => {
                if plaintext_sha256.len() != 32 {
                    return Err(refuse(ErrorCode::BadRequest, "a plaintext SHA-256 is 32 bytes"));
                }
                self.track(identity, &header, expires, now)?;
                let mac = self.mac(SEAL, identity, &header, associated_data, (plaintext_sha256, expires));
                let ticket = StreamTicket { expires, plaintext_sha256: plaintext_sha256.clone(), mac };
                Ok(CryptOutput::SealTicket { header, ticket })
            }
            (CryptOp::BeginOpen { header, associated_data }, CryptOutput::Valid(true)) => {
                let mac = self.mac(OPEN, identity, header, associated_data, (&[], expires));
                Ok(CryptOutput::StreamTicket(StreamTicket { expires, plaintext_sha256: Vec::new(), mac }))
            }
            _ => Err(refuse(ErrorCode::Internal, "a stream began without its header")),
        }
    }

    /// Starts tracking a new sealing stream, after forgetting those whose tickets expired.
    fn track(&self, identity: &KeyIdentity, header: &[u8], expires: u64, now: u64) -> Result<(), ErrorReply> {
        let mut sealing = lock(&self.sealing);
        if sealing.len() >= MAX_SEALING {
            sealing.retain(|_, s| s.expires >= now);
            if sealing.len() >= MAX_SEALING {
                return Err(refuse(ErrorCode::Busy, "too many signed streams are being sealed; try again later"));
            }
        }
        let id = (identity.name.to_string(), header.to_vec());
        let hash = digest::Context::new(&digest::SHA256);
        if sealing.insert(id, Sealing { next: 0, hash, expires }).is_some() {
            return Err(refuse(ErrorCode::Internal, "a new stream header was issued twice"));
        }
        Ok(())
    }

    /// Whether a segment may be sealed or opened: `signature_required` without a ticket,
    /// `request_mismatch` with one for another stream (or, sealing, out of order, or a last
    /// segment whose stream does not hash to the signed digest), `request_expired` after it.
    pub fn check_segment(&self, request: &KeyCrypt, now: u64) -> Result<(), ErrorReply> {
        let identity = &request.row.identity;
        let (kind, header, associated_data, ticket) = match &request.op {
            CryptOp::SealSegment { header, associated_data, ticket, .. } => (SEAL, header, associated_data, ticket),
            CryptOp::OpenSegment { header, associated_data, ticket, .. } => (OPEN, header, associated_data, ticket),
            _ => return Err(refuse(ErrorCode::Internal, "not a stream segment")),
        };
        let Some(ticket) = ticket else {
            return Err(refuse(
                ErrorCode::SignatureRequired,
                "authorization is on: a stream's segments carry the ticket its signed begin answered",
            ));
        };
        let digest_part = if kind == SEAL { ticket.plaintext_sha256.as_slice() } else { &[] };
        let expected = self.mac(kind, identity, header, associated_data, (digest_part, ticket.expires));
        if constant_time::verify_slices_are_equal(&expected, &ticket.mac).is_err() {
            return Err(mismatch("the stream ticket is not this enclave's for this stream, key and associated data"));
        }
        if now > ticket.expires {
            return Err(refuse(ErrorCode::RequestExpired, "the stream ticket has expired; begin the stream again"));
        }
        match &request.op {
            CryptOp::SealSegment { index, last, plaintext, .. } => {
                self.hash_segment(identity, header, (*index, *last), plaintext.expose(), &ticket.plaintext_sha256)
            }
            _ => Ok(()),
        }
    }

    /// Adds a segment to its stream's hash, in order; for the last one, compares the whole.
    fn hash_segment(
        &self,
        identity: &KeyIdentity,
        header: &[u8],
        (index, last): (u32, bool),
        plaintext: &[u8],
        signed: &[u8],
    ) -> Result<(), ErrorReply> {
        // Only full segments before the last (the keyring would refuse others after the hash
        // had taken them).
        let segment_len = keyward_keyring::StreamHeader::parse(header)
            .map_err(|e| refuse(ErrorCode::CiphertextMalformed, e.to_string()))?
            .segment_len as usize;
        if plaintext.len() > segment_len || (!last && plaintext.len() != segment_len) {
            return Err(refuse(ErrorCode::BadRequest, format!("a segment before the last holds {segment_len} bytes")));
        }
        let mut sealing = lock(&self.sealing);
        let id = (identity.name.to_string(), header.to_vec());
        let Some(state) = sealing.get_mut(&id) else {
            return Err(mismatch("this enclave is sealing no such signed stream: it ended, expired, or never began"));
        };
        if index != state.next {
            return Err(mismatch(format!("segments are sealed in order: {index} came, {} was next", state.next)));
        }
        let Some(next) = index.checked_add(1) else {
            return Err(refuse(ErrorCode::BadRequest, "a stream has at most 2^32 segments"));
        };
        state.hash.update(plaintext);
        state.next = next;
        if !last {
            return Ok(());
        }
        let whole = sealing.remove(&id).map(|s| s.hash.finish());
        if whole.is_none_or(|w| constant_time::verify_slices_are_equal(w.as_ref(), signed).is_err()) {
            return Err(mismatch("the plaintext sealed is not the one the principal signed (its SHA-256 differs)"));
        }
        Ok(())
    }
}
