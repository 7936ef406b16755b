//! Small typed values that cross the link. Sizes are enforced by the types themselves, so a
//! decoded message can only hold well-formed lengths.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Identifies one enclave (and its one master key row).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnclaveId(pub u32);

impl fmt::Display for EnclaveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A SEC1 compressed secp256k1 public key (33 bytes). Curve membership is checked where the
/// key is used (the seal crate); here only the length is guaranteed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CompressedPublicKey(#[serde(with = "serde_bytes")] pub [u8; 33]);

impl CompressedPublicKey {
    /// Parses a 33-byte slice; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// Lower-case hex of the 33 bytes.
    pub fn to_hex(&self) -> String {
        hex_lower(&self.0)
    }
}

impl fmt::Debug for CompressedPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompressedPublicKey({})", self.to_hex())
    }
}

/// A 32-byte message digest to be signed. keyward signs digests, never raw messages, so
/// the caller chooses the hash (SHA-256, Keccak-256, a BIP340 tagged hash, ...).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", hex_lower(&self.0))
    }
}

/// Signature scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// ECDSA over secp256k1 (RFC 6979 nonces, low-S), 64-byte compact `r || s` plus a
    /// recovery id.
    Ecdsa,
    /// BIP340 Schnorr, 64 bytes, verified against the x-only public key.
    Bip340,
}

impl Scheme {
    /// The name used on the wire and in the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Ecdsa => "ecdsa",
            Scheme::Bip340 => "bip340",
        }
    }
}

/// AWS credentials handed to the enclave for one KMS operation. The enclave uses them to
/// sign its own KMS request and drops them afterwards.
///
/// Equality exists so whole messages can be compared in round-trip tests; nothing compares
/// credentials on a path where timing matters.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsCredentials {
    /// Access key id (not secret on its own, but only logged by its first characters).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Zeroizing<String>,
    /// Session token for temporary (instance-role) credentials.
    pub session_token: Option<Zeroizing<String>>,
    /// Expiry as Unix seconds, when the credentials are temporary.
    pub expires_at: Option<u64>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id.get(..4).unwrap_or("?"))
            .field("secret_access_key", &"[redacted]")
            .field("session_token", &self.session_token.as_ref().map(|_| "[redacted]"))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A sealed master key: exactly the columns of an `enclave_master_keys` row. Everything in
/// it is ciphertext or public, which is why the gateway may store and log it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    /// The enclave this key belongs to; bound into the seal and the KMS encryption context.
    pub enclave_id: EnclaveId,
    /// The data key as encrypted by KMS (`CiphertextBlob`).
    #[serde(with = "serde_bytes")]
    pub kms_encrypted_dek: Vec<u8>,
    /// The secp256k1 private key sealed with AES-256-GCM under the data key.
    #[serde(with = "serde_bytes")]
    pub encrypted_private_key: Vec<u8>,
    /// The master public key.
    pub public_key: CompressedPublicKey,
    /// ARN of the KMS key that encrypted the data key.
    pub kms_key_id: String,
    /// Data-key generation; bumped by every rotation.
    pub key_epoch: u32,
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedKey")
            .field("enclave_id", &self.enclave_id)
            .field("kms_encrypted_dek_len", &self.kms_encrypted_dek.len())
            .field("encrypted_private_key_len", &self.encrypted_private_key.len())
            .field("public_key", &self.public_key)
            .field("kms_key_id", &self.kms_key_id)
            .field("key_epoch", &self.key_epoch)
            .finish()
    }
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_never_shows_secrets() {
        let creds = AwsCredentials {
            access_key_id: "AKIAEXAMPLEKEYID".into(),
            secret_access_key: Zeroizing::new("wJalrXUtnFEMI-SECRET".into()),
            session_token: Some(Zeroizing::new("SESSION-TOKEN-SECRET".into())),
            expires_at: Some(1),
        };
        let shown = format!("{creds:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(!shown.contains("EXAMPLEKEYID"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn fixed_size_fields_reject_other_lengths_on_decode() {
        let long = serde_cbor::to_vec(&serde_bytes::Bytes::new(&[2u8; 34])).unwrap();
        assert!(serde_cbor::from_slice::<CompressedPublicKey>(&long).is_err());
        let short = serde_cbor::to_vec(&serde_bytes::Bytes::new(&[0u8; 31])).unwrap();
        assert!(serde_cbor::from_slice::<Digest>(&short).is_err());
        let ok = serde_cbor::to_vec(&serde_bytes::Bytes::new(&[0u8; 32])).unwrap();
        assert_eq!(serde_cbor::from_slice::<Digest>(&ok).unwrap().0, [0u8; 32]);
    }
}
