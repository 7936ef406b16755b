//! Streamed encryption: data of any size in authenticated segments, each sealed and opened on
//! its own, so neither the gateway nor the enclave ever holds more than a segment.
//!
//! ```text
//! header   byte 0 format (2) · bytes 1..5 key version · bytes 5..9 segment length · bytes 9..41 salt
//! segment  AES-256-GCM of up to `segment length` bytes, then its 16-byte tag
//! ```
//!
//! Each stream has its own AES key, derived with HKDF-SHA256 from the key version's secret,
//! the stream's random salt, the key name, the header and the caller's associated data. Segment
//! `i`'s nonce is `i` (big-endian, 11 bytes) followed by 1 for the last segment and 0 for the
//! others (the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár). So a segment
//! opens only at its own position of its own stream; a dropped, repeated, swapped or
//! reordered segment, a stream cut at a segment boundary, or one extended past its end, fails.

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    hkdf,
};
use keyward_proto::{KeyName, KeyType, KeyVersion};
use zeroize::Zeroizing;

use crate::{CiphertextError, KeyMaterial, KeyringError, TAG_LEN};

/// The stream format this build writes.
pub const STREAM_FORMAT: u8 = 2;
/// Plaintext bytes per segment this build writes.
pub const STREAM_SEGMENT_LEN: u32 = 64 * 1024;
/// Largest segment length a stream header may name (so a reader's buffer stays bounded).
pub const MAX_STREAM_SEGMENT_LEN: u32 = 1 << 20;
/// Length of the stream header.
pub const STREAM_HEADER_LEN: usize = 1 + 4 + 4 + 32;

const DOMAIN: &[u8] = b"keyward stream v1\0";

/// A stream's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHeader {
    /// The key version that encrypts the stream.
    pub version: KeyVersion,
    /// Plaintext bytes per segment (the last may hold fewer).
    pub segment_len: u32,
    /// Random per stream: makes each stream's key its own.
    pub salt: [u8; 32],
}

impl StreamHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; STREAM_HEADER_LEN] {
        let mut out = [0u8; STREAM_HEADER_LEN];
        out[0] = STREAM_FORMAT;
        out[1..5].copy_from_slice(&self.version.get().to_be_bytes());
        out[5..9].copy_from_slice(&self.segment_len.to_be_bytes());
        out[9..].copy_from_slice(&self.salt);
        out
    }

    /// Reads a header (the first [`STREAM_HEADER_LEN`] bytes of a stream).
    pub fn parse(bytes: &[u8]) -> Result<Self, CiphertextError> {
        let malformed = |reason: String| CiphertextError::Malformed(reason);
        if bytes.len() < STREAM_HEADER_LEN {
            return Err(malformed(format!(
                "a streamed ciphertext starts with a {STREAM_HEADER_LEN}-byte header; this one has {} bytes",
                bytes.len()
            )));
        }
        if bytes[0] != STREAM_FORMAT {
            return Err(malformed(format!(
                "stream format {} is not one this build reads (it writes {STREAM_FORMAT})",
                bytes[0]
            )));
        }
        let version = KeyVersion::new(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))
            .ok_or_else(|| malformed("the stream names key version 0".into()))?;
        let segment_len = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        if segment_len == 0 || segment_len > MAX_STREAM_SEGMENT_LEN {
            return Err(malformed(format!(
                "the stream's segments are {segment_len} bytes; 1 to {MAX_STREAM_SEGMENT_LEN} are read"
            )));
        }
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&bytes[9..STREAM_HEADER_LEN]);
        Ok(StreamHeader { version, segment_len, salt })
    }

    /// Bytes of one full sealed segment.
    pub fn sealed_segment_len(&self) -> usize {
        self.segment_len as usize + TAG_LEN
    }
}

/// HKDF's output length for an AES-256 key.
struct KeyLen;

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        32
    }
}

fn stream_key(
    material: &KeyMaterial,
    name: &KeyName,
    header: &StreamHeader,
    associated_data: &[u8],
) -> Result<LessSafeKey, KeyringError> {
    let secret = match (material.key_type(), material.symmetric()) {
        (KeyType::Aes256Gcm, Some(secret)) => secret,
        (other, _) => return Err(KeyringError::UnsupportedOperation(format!("a {other} key does not encrypt"))),
    };
    let encoded = header.encode();
    let name_len = [name.as_str().len() as u8];
    let info = [DOMAIN, &name_len, name.as_str().as_bytes(), &encoded, associated_data];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &header.salt).extract(secret);
    let okm = prk.expand(&info, KeyLen).map_err(|_| KeyringError::BadInput("cannot derive the stream key".into()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    okm.fill(key.as_mut()).map_err(|_| KeyringError::BadInput("cannot derive the stream key".into()))?;
    let key =
        UnboundKey::new(&AES_256_GCM, key.as_ref()).map_err(|_| KeyringError::InvalidSecret(KeyType::Aes256Gcm))?;
    Ok(LessSafeKey::new(key))
}

fn nonce(index: u32, last: bool) -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[7..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    Nonce::assume_unique_for_key(nonce)
}

/// Seals segment `index` of a stream (`last` for its final segment).
pub fn seal_segment(
    material: &KeyMaterial,
    name: &KeyName,
    header: &StreamHeader,
    associated_data: &[u8],
    index: u32,
    last: bool,
    plaintext: &[u8],
) -> Result<Vec<u8>, KeyringError> {
    if plaintext.len() > header.segment_len as usize || (!last && plaintext.len() != header.segment_len as usize) {
        return Err(KeyringError::BadInput(format!(
            "segment {index} holds {} bytes; every segment but the last holds exactly {}",
            plaintext.len(),
            header.segment_len
        )));
    }
    let key = stream_key(material, name, header, associated_data)?;
    let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(nonce(index, last), Aad::empty(), &mut out)
        .map_err(|_| KeyringError::BadInput("the segment is too large for AES-GCM".into()))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Opens segment `index` of a stream; nothing of it is returned unless its tag verifies at
/// that position (and as the last segment when `last`).
pub fn open_segment(
    material: &KeyMaterial,
    name: &KeyName,
    header: &StreamHeader,
    associated_data: &[u8],
    index: u32,
    last: bool,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    let refused = || {
        KeyringError::Ciphertext(CiphertextError::DoesNotOpen { name: name.to_string(), version: header.version.get() })
    };
    let full = header.sealed_segment_len();
    if sealed.len() < TAG_LEN || sealed.len() > full || (!last && sealed.len() != full) {
        return Err(refused());
    }
    let key = stream_key(material, name, header, associated_data)?;
    let mut buffer = Zeroizing::new(sealed.to_vec());
    let opened =
        key.open_in_place(nonce(index, last), Aad::empty(), buffer.as_mut_slice()).map_err(|_| refused())?.len();
    buffer.truncate(opened);
    Ok(buffer)
}

#[cfg(test)]
mod tests;
