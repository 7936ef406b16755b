//! KMS `CiphertextForRecipient`: CMS (RFC 5652) EnvelopedData addressed to an
//! enclave's ephemeral RSA key.
//!
//! When the enclave passes a `Recipient` (an attestation document carrying a
//! fresh RSA-2048 public key) to KMS, KMS does not return the plaintext but a
//! BER-encoded ContentInfo/EnvelopedData: the plaintext encrypted with a random
//! AES-256-CBC key (CEK), the CEK wrapped with RSAES-OAEP-SHA256/MGF1-SHA256.
//!
//! Accepted shapes (everything else is refused):
//! - real KMS: BER with indefinite lengths, EnvelopedData v2, one
//!   KeyTransRecipientInfo v2 whose rid is `[0]` subjectKeyIdentifier =
//!   SHA-256 of the recipient SubjectPublicKeyInfo DER, encryptedContent as a
//!   constructed (chunked) or primitive `[0]`;
//! - LocalStack: DER, EnvelopedData v0, KeyTransRecipientInfo v0 whose rid is
//!   an issuerAndSerialNumber placeholder (`CN=recipient`, serial 1) and a
//!   primitive `[0]` encryptedContent.
//!
//! CBC without a MAC is malleable: someone who can alter the blob in transit
//! can flip plaintext bits (via the IV) without detection. The blob's
//! integrity therefore rests on the TLS session to KMS, which the enclave
//! terminates itself.

mod ber;
mod encode;
mod key;
mod parse;

use zeroize::Zeroizing;

pub use ber::MAX_DEPTH;
pub use encode::{MAX_PLAINTEXT_LEN, encrypt_for_recipient};
pub use key::RecipientKey;
pub use parse::parse;

/// Largest input [`parse`] looks at. KMS plaintexts are at most 4 KiB, so
/// real blobs stay under 6 KiB; anything much larger is not from KMS.
pub const MAX_INPUT_LEN: usize = 64 * 1024;

// OID content octets (DER; BER has no alternative encoding for OIDs).
const OID_ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const OID_RSAES_OAEP: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07];
const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];

const OAEP_SUPPORTED: &str = "RSAES-OAEP with SHA-256 and MGF1-SHA-256";

/// Why a `CiphertextForRecipient` could not be parsed or decrypted, or a key
/// could not be loaded. Messages name what failed and never carry secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CmsError {
    /// The input is longer than [`MAX_INPUT_LEN`].
    #[error("CMS input is {len} bytes, more than the {max}-byte limit")]
    InputTooLarge { len: usize, max: usize },
    /// Not valid BER: truncated, a length running past its container, a bad
    /// identifier or length form, or a misplaced end-of-contents marker.
    #[error("malformed BER at offset {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    /// Constructed elements nest deeper than [`MAX_DEPTH`].
    #[error("BER nesting deeper than {max} levels")]
    TooDeep { max: usize },
    /// Bytes follow the ContentInfo; KMS blobs end exactly there.
    #[error("{count} trailing bytes after the ContentInfo")]
    TrailingBytes { count: usize },
    /// A well-formed element is missing, surplus, or has a different tag than
    /// the CMS structure requires at that position.
    #[error("unexpected or missing element at offset {offset}: expected {expected}")]
    UnexpectedElement { offset: usize, expected: &'static str },
    /// A content type is not the one required (envelopedData outside, data inside).
    #[error("unsupported content type in {field}")]
    UnsupportedContentType { field: &'static str },
    /// An algorithm identifier or its parameters are not the ones KMS uses.
    #[error("unsupported {field}: only {supported} is accepted")]
    UnsupportedAlgorithm { field: &'static str, supported: &'static str },
    /// A version number, or a version/recipient-identifier combination, that
    /// neither KMS (v2 with a subjectKeyIdentifier) nor LocalStack (v0 with an
    /// issuerAndSerialNumber) produces.
    #[error("unsupported {structure} version {version}")]
    UnsupportedVersion { structure: &'static str, version: u8 },
    /// An optional field that KMS never sends is present.
    #[error("unsupported optional field {field}")]
    UnsupportedField { field: &'static str },
    /// Not exactly one RecipientInfo.
    #[error("expected exactly one RecipientInfo, found {count}")]
    RecipientCount { count: usize },
    /// The RecipientInfo is not a KeyTransRecipientInfo (e.g. key agreement).
    #[error("RecipientInfo is not a KeyTransRecipientInfo")]
    UnsupportedRecipientType,
    /// The AES-256-CBC IV is not 16 bytes.
    #[error("AES-256-CBC IV is {len} bytes, expected 16")]
    InvalidIv { len: usize },
    /// EncryptedContentInfo has no encryptedContent.
    #[error("encryptedContent is absent")]
    MissingEncryptedContent,
    /// The ciphertext is empty or not made of whole AES blocks.
    #[error("encryptedContent is {len} bytes, not a positive multiple of 16")]
    InvalidEncryptedContentLength { len: usize },
    /// The subjectKeyIdentifier does not match this key: the blob was made
    /// for another recipient.
    #[error("the blob is addressed to a different recipient key (subjectKeyIdentifier mismatch)")]
    RecipientMismatch,
    /// The encryptedKey length differs from this RSA key's modulus length.
    #[error("encryptedKey is {len} bytes, expected {expected} for this RSA key")]
    EncryptedKeyLength { len: usize, expected: usize },
    /// The unwrapped content-encryption key is not an AES-256 key.
    #[error("unwrapped content-encryption key is {len} bytes, expected 32")]
    InvalidCekLength { len: usize },
    /// RSA-OAEP unwrap, or AES-CBC decryption and padding removal, failed.
    /// Deliberately says nothing more, so it cannot serve as an oracle.
    #[error("decryption failed")]
    DecryptionFailed,
    /// A private key (PEM, PKCS#8 or PKCS#1) could not be loaded.
    #[error("invalid RSA private key: {reason}")]
    InvalidPrivateKey { reason: &'static str },
    /// The recipient public key is not an RSA SubjectPublicKeyInfo aws-lc accepts.
    #[error("invalid recipient public key: not an acceptable RSA SubjectPublicKeyInfo")]
    InvalidRecipientPublicKey,
    /// The plaintext given to [`encrypt_for_recipient`] exceeds [`MAX_PLAINTEXT_LEN`].
    #[error("plaintext is {len} bytes, more than the {max}-byte limit")]
    PlaintextTooLarge { len: usize, max: usize },
    /// aws-lc failed during key generation, random generation or encryption.
    #[error("cryptographic backend failure during {operation}")]
    Crypto { operation: &'static str },
}

/// How the recipient is identified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecipientId {
    /// `[0]` subjectKeyIdentifier; from KMS it is SHA-256 of the SPKI DER.
    SubjectKeyIdentifier(Vec<u8>),
    /// issuerAndSerialNumber (LocalStack sends a placeholder).
    IssuerAndSerialNumber {
        /// The issuer Name exactly as encoded.
        issuer: Vec<u8>,
        /// Content octets of the serial number INTEGER.
        serial: Vec<u8>,
    },
}

/// How encryptedContent was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentForm {
    /// Primitive `[0]` IMPLICIT OCTET STRING.
    Primitive,
    /// Constructed `[0]` made of this many OCTET STRING segments.
    Constructed { segments: usize },
}

/// The parsed EnvelopedData: ciphertexts and public metadata only.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvelopedData {
    /// EnvelopedData version (2 from KMS, 0 from LocalStack).
    pub version: u8,
    /// KeyTransRecipientInfo version (2 with an SKI, 0 with issuerAndSerialNumber).
    pub recipient_version: u8,
    pub recipient: RecipientId,
    /// The RSA-OAEP-wrapped content-encryption key.
    pub encrypted_key: Vec<u8>,
    pub iv: [u8; 16],
    /// The AES-256-CBC ciphertext, segments concatenated.
    pub encrypted_content: Vec<u8>,
    pub content_form: ContentForm,
}

/// Parses a `CiphertextForRecipient`, checks it is addressed to `key` (when
/// the rid is a subjectKeyIdentifier: SHA-256 of `key`'s SPKI DER), unwraps
/// the CEK with RSA-OAEP-SHA256, decrypts AES-256-CBC and strips the PKCS#7
/// padding.
///
/// An issuerAndSerialNumber rid (LocalStack) names no real certificate, so
/// there is nothing to compare; OAEP decryption with `key` still only
/// succeeds for a CEK wrapped to `key`'s public half.
pub fn decrypt_for_recipient(ber: &[u8], key: &RecipientKey) -> Result<Zeroizing<Vec<u8>>, CmsError> {
    let enveloped = parse(ber)?;
    match &enveloped.recipient {
        RecipientId::SubjectKeyIdentifier(ski) => {
            if ski.as_slice() != key.subject_key_identifier() {
                return Err(CmsError::RecipientMismatch);
            }
        }
        RecipientId::IssuerAndSerialNumber { .. } => {}
    }
    decrypt_enveloped(&enveloped, key)
}

/// The decryption half of [`decrypt_for_recipient`], without the rid check.
fn decrypt_enveloped(enveloped: &EnvelopedData, key: &RecipientKey) -> Result<Zeroizing<Vec<u8>>, CmsError> {
    let cek = key.unwrap_cek(&enveloped.encrypted_key)?;
    key::aes256_cbc_decrypt(&cek, &enveloped.iv, &enveloped.encrypted_content)
}

#[cfg(test)]
mod tests;
