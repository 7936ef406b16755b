//! Request and response bodies of encryption, data keys, MACs and random bytes
//! (`/v1/keys/{name}/encrypt|decrypt|rewrap|datakey|hmac|verify-hmac|config`, `/v1/random`).
//! Binary values are standard base64.

use serde::{Deserialize, Serialize};

/// The header a signed stream's request travels in (base64 of the JSON of
/// [`StreamEncryptBody`] or [`StreamDecryptBody`]); the principal signs those bytes as the
/// request's body, since the HTTP body is the stream itself.
pub const STREAM_REQUEST_HEADER: &str = "x-keyward-stream-request";
/// Length of a stream's header, the first bytes of a streamed ciphertext.
pub const STREAM_HEADER_LEN: usize = 41;

/// A signed streamed encryption (`POST …/encrypt` with an `application/octet-stream` body):
/// the associated data (as in `X-Keyward-Associated-Data`) and the plaintext's SHA-256. The
/// enclave completes the stream only if what it sealed has that digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamEncryptBody {
    pub associated_data_b64: String,
    pub plaintext_sha256_hex: String,
}

/// A signed streamed decryption: the stream's header (its first [`STREAM_HEADER_LEN`] bytes)
/// and the associated data; the enclave opens that stream's segments only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDecryptBody {
    pub header_b64: String,
    pub associated_data_b64: String,
}

/// The signed body of sealing a secret with a `secret` key (a front door's `SealSecret`, the
/// BitGo key provider's stored `prv`). `Debug` shows the secret's length only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealSecretBody {
    pub secret_b64: String,
    pub associated_data_b64: String,
}

impl std::fmt::Debug for SealSecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealSecretBody")
            .field("secret_b64_len", &self.secret_b64.len())
            .field("associated_data_b64", &self.associated_data_b64)
            .finish()
    }
}

/// The signed body of opening a sealed secret (`OpenSecret`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSecretBody {
    pub sealed_b64: String,
    pub associated_data_b64: String,
}

/// The signed body of signing a PSBT's inputs with a `bip32` key (`SignPsbt`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignPsbtBody {
    pub psbt_b64: String,
}

/// A secret field in `Debug`: its length only.
struct Redacted(usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[redacted; {} base64 characters]", self.0)
    }
}

/// `POST /v1/keys/{name}/encrypt` (aes256-gcm keys). `Debug` shows the plaintext's length only.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encrypt {
    /// The plaintext (at most 1 MiB).
    pub plaintext_b64: String,
    /// Bound to the ciphertext: decryption needs the same bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associated_data_b64: Option<String>,
}

impl std::fmt::Debug for Encrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encrypt")
            .field("plaintext_b64", &Redacted(self.plaintext_b64.len()))
            .field("associated_data_b64", &self.associated_data_b64)
            .finish()
    }
}

/// A ciphertext (`encrypt`, `rewrap`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Encrypted {
    /// Self-describing: format, key version, nonce, AES-256-GCM ciphertext and tag.
    pub ciphertext_b64: String,
    /// The key version that encrypted it.
    pub version: u32,
}

/// `POST /v1/keys/{name}/decrypt` and `/rewrap`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decrypt {
    /// A ciphertext from `encrypt`, `rewrap` or `datakey`.
    pub ciphertext_b64: String,
    /// The associated data it was made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associated_data_b64: Option<String>,
}

/// A plaintext. `Debug` shows its length only.
#[derive(Clone, Serialize, Deserialize)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext_b64: String,
    /// The key version that decrypted it.
    pub version: u32,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted")
            .field("plaintext_b64", &Redacted(self.plaintext_b64.len()))
            .field("version", &self.version)
            .finish()
    }
}

/// `POST /v1/keys/{name}/datakey`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateDataKey {
    /// `aes-256`, `rsa-2048` or `p256`.
    pub spec: String,
    /// Whether the answer carries the data key in the clear (default: no).
    #[serde(default)]
    pub plaintext: bool,
    /// Bound to the wrapped data key: decrypting it needs the same bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associated_data_b64: Option<String>,
}

/// A data key. `Debug` shows the plaintext's length only.
#[derive(Clone, Serialize, Deserialize)]
pub struct DataKey {
    /// The spec.
    pub spec: String,
    /// The data key encrypted under the keyring key (open it with `decrypt`): 32 bytes for
    /// `aes-256`, the PKCS#8 DER private key for key pairs.
    pub ciphertext_b64: String,
    /// The data key in the clear, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_b64: Option<String>,
    /// The public key of a key pair (SPKI DER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_b64: Option<String>,
    /// The key version that wrapped it.
    pub version: u32,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("spec", &self.spec)
            .field("ciphertext_b64", &self.ciphertext_b64)
            .field("plaintext_b64", &self.plaintext_b64.as_ref().map(|p| Redacted(p.len())))
            .field("public_key_b64", &self.public_key_b64)
            .field("version", &self.version)
            .finish()
    }
}

/// `POST /v1/keys/{name}/hmac` (hmac-sha256 keys).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacRequest {
    /// The message (at most 1 MiB).
    pub message_b64: String,
}

/// An HMAC-SHA256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MacInfo {
    /// The 32-byte MAC.
    pub mac_b64: String,
    /// The key version that made it.
    pub version: u32,
}

/// `POST /v1/keys/{name}/verify-hmac`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyMac {
    /// The message.
    pub message_b64: String,
    /// The MAC to check.
    pub mac_b64: String,
    /// The key version that made it (default: the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// `POST /v1/keys/{name}/config` (admin token).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Ciphertexts of older versions are refused (`version_below_minimum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_decryption_version: Option<u32>,
}

/// `POST /v1/random`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomRequest {
    /// 1 to 1024.
    pub bytes: u32,
    /// `nsm` (default) or `kms` (KMS `GenerateRandom`, answered to the enclave's attested key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Random bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RandomBytes {
    /// The bytes.
    pub random_b64: String,
    /// Where they came from.
    pub source: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintexts_never_show_in_debug() {
        let secret = "c2VjcmV0IHBsYWludGV4dA==";
        let shown = [
            format!("{:?}", Encrypt { plaintext_b64: secret.into(), associated_data_b64: Some("YWQ=".into()) }),
            format!("{:?}", Decrypted { plaintext_b64: secret.into(), version: 3 }),
            format!(
                "{:?}",
                DataKey {
                    spec: "aes-256".into(),
                    ciphertext_b64: "Y3Q=".into(),
                    plaintext_b64: Some(secret.into()),
                    public_key_b64: None,
                    version: 1,
                }
            ),
            format!("{:?}", SealSecretBody { secret_b64: secret.into(), associated_data_b64: "YWQ=".into() }),
        ];
        for text in shown {
            assert!(!text.contains(secret), "{text}");
            assert!(text.contains("24"), "the length shows: {text}");
        }
    }
}
