//! Keyring operations that are not signatures: encryption with associated data, rewrapping,
//! data keys, MACs and random bytes. The gateway sends the stored row of every key version the
//! operation needs; plaintext travels only in [`SecretBytes`], zeroized on drop and redacted in
//! `Debug`.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::WrappedKey;

/// Largest plaintext (or ciphertext, or MAC message) one request carries on the link: 1 MiB.
pub const MAX_CRYPT_PAYLOAD_LEN: usize = 1 << 20;
/// Most random bytes one request returns.
pub const MAX_RANDOM_LEN: usize = 1024;

/// Bytes that are secret (plaintext, data keys, random bytes): zeroized on drop, never shown.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SecretBytes(#[serde(with = "secret_bytes")] pub Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {}])", self.0.len())
    }
}

mod secret_bytes {
    use serde::{Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer>(bytes: &Zeroizing<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::serialize(bytes.as_slice(), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<Vec<u8>>, D::Error> {
        serde_bytes::deserialize::<Vec<u8>, D>(d).map(Zeroizing::new)
    }
}

/// What a data key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataKeySpec {
    /// 32 random bytes (an AES-256 key).
    Aes256,
    /// An RSA-2048 key pair; the secret is its PKCS#8 DER private key.
    Rsa2048,
    /// A P-256 key pair; the secret is its PKCS#8 DER private key.
    P256,
}

impl DataKeySpec {
    /// Every spec.
    pub const ALL: [DataKeySpec; 3] = [DataKeySpec::Aes256, DataKeySpec::Rsa2048, DataKeySpec::P256];

    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            DataKeySpec::Aes256 => "aes-256",
            DataKeySpec::Rsa2048 => "rsa-2048",
            DataKeySpec::P256 => "p256",
        }
    }

    /// The spec an API name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// An operation on one key version (`row`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCrypt {
    /// The stored row of the version to use (for decryption: the version the ciphertext names).
    pub row: WrappedKey,
    /// What to do.
    pub op: CryptOp,
    /// The principal's signed request (required when the enclave has owners).
    #[serde(default)]
    pub auth: Option<Box<crate::Authorization>>,
}

/// The operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CryptOp {
    /// Encrypt `plaintext` (aes256-gcm keys), binding `associated_data`.
    Encrypt {
        plaintext: SecretBytes,
        #[serde(with = "serde_bytes")]
        associated_data: Vec<u8>,
    },
    /// Decrypt a ciphertext made by `Encrypt` (or a wrapped data key).
    Decrypt {
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
        #[serde(with = "serde_bytes")]
        associated_data: Vec<u8>,
    },
    /// Decrypt with `row` (the ciphertext's version) and encrypt again with `to` (the
    /// latest), the plaintext never leaving the enclave.
    Rewrap {
        to: Box<WrappedKey>,
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
        #[serde(with = "serde_bytes")]
        associated_data: Vec<u8>,
    },
    /// A new data key, wrapped (encrypted) under the key; its plaintext only when asked.
    DataKey {
        spec: DataKeySpec,
        plaintext: bool,
        #[serde(with = "serde_bytes")]
        associated_data: Vec<u8>,
    },
    /// HMAC-SHA256 of `message` (hmac-sha256 keys).
    Mac {
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
    },
    /// Whether `mac` is the HMAC-SHA256 of `message` (compared in constant time).
    VerifyMac {
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
        #[serde(with = "serde_bytes")]
        mac: Vec<u8>,
    },
    /// A new stream under the key version: the enclave picks its salt and answers with the
    /// stream header (`StreamHeader`).
    BeginStream,
    /// Seal a caller's secret with a `secret` key, binding `associated_data` (answered with
    /// `Ciphertext`).
    SealSecret {
        secret: SecretBytes,
        #[serde(with = "serde_bytes")]
        associated_data: Vec<u8>,
    },
    /// Sign every input of a PSBT (BIP 174) that names a child of the key (`bip32` keys);
    /// answered with `SignedPsbt`.
    SignPsbt {
        #[serde(with = "serde_bytes")]
        psbt: Vec<u8>,
    },
    /// The ECDH secret of the key (x25519, p256) and a peer's public key (raw X25519, or
    /// SEC1), answered with `Plaintext`.
    DeriveSharedSecret {
        #[serde(with = "serde_bytes")]
        peer_public_key: Vec<u8>,
    },
    /// Open a content key wrapped to the key with JOSE's ECDH-ES+A256KW (answered with
    /// `Plaintext`).
    JoseUnwrap {
        #[serde(with = "serde_bytes")]
        epk: Vec<u8>,
        #[serde(with = "serde_bytes")]
        encrypted_key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        apu: Vec<u8>,
        #[serde(with = "serde_bytes")]
        apv: Vec<u8>,
    },
    /// Open a secret `SealSecret` sealed (answered with `Plaintext`).
    OpenSecret {
        #[serde(with = "serde_bytes")]
        sealed: Vec<u8>,
        #[serde(with = "serde_bytes")]
        associated_data: Vec<u8>,
    },
    /// Seal segment `index` of the stream `header` begins (`last` for its final segment).
    SealSegment {
        #[serde(with = "serde_bytes")]
        header: Vec<u8>,
        #[serde(with = "serde_bytes")]
        associated_data: Vec<u8>,
        index: u32,
        last: bool,
        plaintext: SecretBytes,
        /// With owners: the ticket `BeginSeal` answered (segments in order, one at a time).
        #[serde(default)]
        ticket: Option<StreamTicket>,
    },
    /// Open segment `index` of a stream; answered with its plaintext only if it is that
    /// segment of that stream.
    OpenSegment {
        #[serde(with = "serde_bytes")]
        header: Vec<u8>,
        #[serde(with = "serde_bytes")]
        associated_data: Vec<u8>,
        index: u32,
        last: bool,
        #[serde(with = "serde_bytes")]
        sealed: Vec<u8>,
        /// With owners: the ticket `BeginOpen` answered.
        #[serde(default)]
        ticket: Option<StreamTicket>,
    },
    /// A signed stream encryption (with owners): like `BeginStream`, for a stream whose
    /// plaintext has this SHA-256 and these associated data, as the principal signed; answered
    /// with `SealTicket`. The enclave seals the last segment only if the segments it sealed,
    /// in order, hash to `plaintext_sha256`.
    BeginSeal {
        #[serde(with = "serde_bytes")]
        associated_data: Vec<u8>,
        #[serde(with = "serde_bytes")]
        plaintext_sha256: Vec<u8>,
    },
    /// A signed stream decryption (with owners) of the stream `header` begins, with these
    /// associated data; answered with `StreamTicket`.
    BeginOpen {
        #[serde(with = "serde_bytes")]
        header: Vec<u8>,
        #[serde(with = "serde_bytes")]
        associated_data: Vec<u8>,
    },
}

/// What lets the segments of one signed stream through without a signature each: issued by
/// the enclave for the stream a principal signed (its header, associated data and, to seal,
/// the plaintext's SHA-256), authenticated with a key only that enclave holds, until
/// `expires` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamTicket {
    pub expires: u64,
    /// To seal: the SHA-256 the plaintext must have; empty to open.
    #[serde(with = "serde_bytes")]
    pub plaintext_sha256: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub mac: Vec<u8>,
}

impl CryptOp {
    /// The operation's name in logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            CryptOp::Encrypt { .. } => "encrypt",
            CryptOp::Decrypt { .. } => "decrypt",
            CryptOp::Rewrap { .. } => "rewrap",
            CryptOp::DataKey { .. } => "datakey",
            CryptOp::Mac { .. } => "hmac",
            CryptOp::VerifyMac { .. } => "verify-hmac",
            CryptOp::BeginStream => "begin-stream",
            CryptOp::SealSegment { .. } => "seal-segment",
            CryptOp::OpenSegment { .. } => "open-segment",
            CryptOp::SealSecret { .. } => "seal-secret",
            CryptOp::SignPsbt { .. } => "sign-psbt",
            CryptOp::DeriveSharedSecret { .. } => "derive-shared-secret",
            CryptOp::JoseUnwrap { .. } => "unwrap",
            CryptOp::OpenSecret { .. } => "open-secret",
            CryptOp::BeginSeal { .. } => "begin-seal",
            CryptOp::BeginOpen { .. } => "begin-open",
        }
    }
}

/// The answers, one per operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CryptOutput {
    /// `Encrypt`, `Rewrap`: the self-describing ciphertext.
    Ciphertext(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `Decrypt`.
    Plaintext(SecretBytes),
    /// `DataKey`.
    DataKey {
        /// The data key (secret part) encrypted under the key, as `Encrypt` would.
        #[serde(with = "serde_bytes")]
        wrapped: Vec<u8>,
        /// The data key in the clear, when asked for.
        plaintext: Option<SecretBytes>,
        /// The public key (SPKI DER) of a key-pair data key.
        #[serde(with = "serde_bytes")]
        public_key: Vec<u8>,
    },
    /// `Mac`.
    Mac(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `SignPsbt`: the PSBT with the key's partial signatures, and which inputs it signed.
    SignedPsbt {
        #[serde(with = "serde_bytes")]
        psbt: Vec<u8>,
        inputs: Vec<u32>,
    },
    /// `VerifyMac`.
    Valid(bool),
    /// `BeginStream`: the stream's header.
    StreamHeader(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `BeginSeal`: the stream's header and the ticket its segments carry.
    SealTicket {
        #[serde(with = "serde_bytes")]
        header: Vec<u8>,
        ticket: StreamTicket,
    },
    /// `BeginOpen`: the ticket the stream's segments carry.
    StreamTicket(StreamTicket),
}

/// Where random bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RandomSource {
    /// The Nitro Secure Module.
    Nsm,
    /// KMS `GenerateRandom`, answered to the enclave's attested RSA key.
    Kms,
}

/// Random bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomRequest {
    /// How many (1 to [`MAX_RANDOM_LEN`]).
    pub bytes: u16,
    /// From where.
    pub source: RandomSource,
    /// Credentials for KMS (`Kms` only).
    pub credentials: Option<crate::AwsCredentials>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bytes_never_show_in_debug_and_travel_as_bytes() {
        let secret = SecretBytes::new(b"the plaintext".to_vec());
        let shown = format!("{:?}", CryptOp::Encrypt { plaintext: secret.clone(), associated_data: vec![] });
        assert!(shown.contains("redacted") && !shown.contains("plaintext\""), "{shown}");
        assert!(!shown.contains("116, 104, 101"), "no byte list either: {shown}");
        let encoded = crate::encode(&secret).unwrap();
        assert!(encoded.len() < 20, "a CBOR byte string, not a list of integers");
        assert_eq!(crate::decode::<SecretBytes>(&encoded[4..]).unwrap(), secret);
    }

    #[test]
    fn data_key_specs_have_stable_names() {
        for spec in DataKeySpec::ALL {
            assert_eq!(DataKeySpec::parse(spec.as_str()), Some(spec));
        }
        assert_eq!(DataKeySpec::parse("AES_256"), None);
    }
}
