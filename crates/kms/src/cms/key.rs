//! The enclave's ephemeral RSA recipient key and the symmetric primitives.

use std::fmt;

use aws_lc_rs::cipher::{
    AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rsa::{KeyPair, KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use zeroize::Zeroizing;

use super::CmsError;

/// Length of an AES-256 content-encryption key.
pub(super) const CEK_LEN: usize = 32;

/// A fresh RSA-2048 key pair for one KMS call; the private half never leaves
/// the enclave (and is never printed: `Debug` shows `[redacted]`).
pub struct RecipientKey {
    private: OaepPrivateDecryptingKey,
    spki_der: Vec<u8>,
    ski: [u8; 32],
}

impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientKey")
            .field("bits", &self.private.key_size_bits())
            .field("ski", &Hex(&self.ski))
            .field("private", &"[redacted]")
            .finish()
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl RecipientKey {
    /// Generates a fresh RSA-2048 key.
    pub fn generate() -> Result<Self, CmsError> {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048)
            .map_err(|_| CmsError::Crypto { operation: "RSA key generation" })?;
        Self::from_private(private)
    }

    /// Loads a PKCS#8 `PrivateKeyInfo` DER (RSA, 2048 to 8192 bits).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CmsError> {
        let private = PrivateDecryptingKey::from_pkcs8(der)
            .map_err(|_| CmsError::InvalidPrivateKey { reason: "not an acceptable RSA PKCS#8 key" })?;
        Self::from_private(private)
    }

    /// Loads a PKCS#1 `RSAPrivateKey` DER.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, CmsError> {
        // aws-lc only reads PKCS#1 through its signing key type; re-export
        // as PKCS#8 (a buffer aws-lc zeroes on drop) to get a decrypting key.
        let pair = KeyPair::from_der(der)
            .map_err(|_| CmsError::InvalidPrivateKey { reason: "not an acceptable RSA PKCS#1 key" })?;
        let pkcs8 = pair.as_der().map_err(|_| CmsError::Crypto { operation: "PKCS#8 encoding" })?;
        Self::from_pkcs8_der(pkcs8.as_ref())
    }

    /// Loads a PEM private key: `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY`
    /// (PKCS#1), unencrypted. Meant for tests and fixtures.
    pub fn from_pem(pem: &str) -> Result<Self, CmsError> {
        let (label, body) = pem_body(pem)?;
        let der = decode_base64(body)?;
        match label {
            "PRIVATE KEY" => Self::from_pkcs8_der(&der),
            "RSA PRIVATE KEY" => Self::from_pkcs1_der(&der),
            _ => Err(CmsError::InvalidPrivateKey { reason: "unsupported PEM label" }),
        }
    }

    fn from_private(private: PrivateDecryptingKey) -> Result<Self, CmsError> {
        let spki_der = private
            .public_key()
            .as_der()
            .map_err(|_| CmsError::Crypto { operation: "SubjectPublicKeyInfo encoding" })?
            .as_ref()
            .to_vec();
        let ski = sha256(&spki_der);
        let private = OaepPrivateDecryptingKey::new(private)
            .map_err(|_| CmsError::InvalidPrivateKey { reason: "not usable for RSA-OAEP" })?;
        Ok(RecipientKey { private, spki_der, ski })
    }

    /// The public key as SubjectPublicKeyInfo DER, for the attestation
    /// document's `public_key` field.
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        self.spki_der.clone()
    }

    /// SHA-256 of the SPKI DER: the subjectKeyIdentifier KMS puts in the rid.
    pub fn subject_key_identifier(&self) -> [u8; 32] {
        self.ski
    }

    /// RSA-OAEP-SHA256 unwrap of the content-encryption key.
    pub(super) fn unwrap_cek(&self, encrypted_key: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
        let expected = self.private.key_size_bytes();
        if encrypted_key.len() != expected {
            return Err(CmsError::EncryptedKeyLength { len: encrypted_key.len(), expected });
        }
        let mut out = Zeroizing::new(vec![0u8; self.private.min_output_size()]);
        let len = self
            .private
            .decrypt(&OAEP_SHA256_MGF1SHA256, encrypted_key, &mut out, None)
            .map_err(|_| CmsError::DecryptionFailed)?
            .len();
        if len != CEK_LEN {
            return Err(CmsError::InvalidCekLength { len });
        }
        out.truncate(len);
        Ok(out)
    }
}

pub(super) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // A SHA-256 digest is always 32 bytes, so the lengths match.
    out.copy_from_slice(digest(&SHA256, data).as_ref());
    out
}

/// AES-256-CBC decryption and PKCS#7 unpadding; every failure is the same
/// [`CmsError::DecryptionFailed`] so padding errors leak nothing.
pub(super) fn aes256_cbc_decrypt(cek: &[u8], iv: &[u8; 16], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
    let key = UnboundCipherKey::new(&AES_256, cek)
        .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
        .map_err(|_| CmsError::DecryptionFailed)?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let len = key
        .decrypt(&mut buf, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| CmsError::DecryptionFailed)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// AES-256-CBC encryption with PKCS#7 padding under a caller-chosen IV.
pub(super) fn aes256_cbc_encrypt(cek: &[u8], iv: &[u8; 16], plaintext: &[u8]) -> Result<Vec<u8>, CmsError> {
    let crypto = |_| CmsError::Crypto { operation: "AES-256-CBC encryption" };
    let key = UnboundCipherKey::new(&AES_256, cek).and_then(PaddedBlockEncryptingKey::cbc_pkcs7).map_err(crypto)?;
    // Room for the padding up front, so no reallocation leaves a plaintext
    // copy behind; the buffer holds ciphertext once this returns.
    let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + 16));
    buf.extend_from_slice(plaintext);
    key.less_safe_encrypt(&mut *buf, EncryptionContext::Iv128(FixedLength::from(iv))).map_err(crypto)?;
    Ok(buf.to_vec())
}

/// Splits a PEM document into its label and base64 body.
fn pem_body(pem: &str) -> Result<(&str, &str), CmsError> {
    let bad = CmsError::InvalidPrivateKey { reason: "not a PEM document" };
    let (_, after_begin) = pem.split_once("-----BEGIN ").ok_or(bad.clone())?;
    let (label, rest) = after_begin.split_once("-----").ok_or(bad.clone())?;
    let end_marker = format!("-----END {label}-----");
    let (body, _) = rest.split_once(end_marker.as_str()).ok_or(bad)?;
    Ok((label, body))
}

/// Standard base64 with optional padding; whitespace is skipped. Any other
/// character (e.g. the headers of an encrypted PEM) is refused.
fn decode_base64(text: &str) -> Result<Zeroizing<Vec<u8>>, CmsError> {
    let bad = CmsError::InvalidPrivateKey { reason: "invalid base64 in PEM body" };
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 4 * 3 + 3));
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut symbols = 0usize;
    let mut padding = 0usize;
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return Err(bad),
        };
        if padding > 0 {
            return Err(bad);
        }
        symbols += 1;
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone trailing symbol carries no whole byte; padding, when present,
    // must complete the last quantum.
    if symbols % 4 == 1 || padding > 2 || (padding > 0 && !(symbols + padding).is_multiple_of(4)) {
        return Err(bad);
    }
    Ok(out)
}
