//! The keyring API's JSON shapes.
//!
//! | method | path | auth | body → answer |
//! |---|---|---|---|
//! | POST | `/v1/keys` | admin | [`CreateKey`] → 201 [`KeyInfo`] (409 `key_exists`) |
//! | POST | `/v1/keys/batch` | admin | [`CreateKeys`] → 201 [`KeyInfos`], all or nothing |
//! | GET | `/v1/keys?limit=&after=` | API | [`KeyPage`] (name order; `next_after` for the next page) |
//! | GET | `/v1/keys?public_key_hex=` | API | [`KeyPage`] of the keys with that public key |
//! | GET | `/v1/keys/{name}` | API or admin | [`KeyInfo`] |
//! | POST | `/v1/keys/{name}/rotate` | admin | [`RotateKey`] (signed requests) → [`KeyInfo`] (a new latest version) |
//! | POST | `/v1/keys/{name}/disable`, `/enable`, `/cancel-deletion` | admin | → [`KeyInfo`] |
//! | DELETE | `/v1/keys/{name}` | admin | → [`KeyInfo`] (`pending_deletion`, `deletion_due`) |
//! | POST | `/v1/keys/{name}/sign` | API | [`SignWithKey`] → [`KeySignatureInfo`] |
//! | POST | `/v1/keys/{name}/sign-batch` | API | [`SignWithKeyBatch`] → [`KeySignatureBatch`] |
//! | POST | `/v1/keys/{name}/verify` | API | [`VerifyWithKey`] → [`Verified`] |
//! | POST | `/v1/keys/{name}/import` | admin | [`ImportKey`] → 201 [`KeyInfo`] (`origin: imported`) |
//! | POST | `/v1/keys/{name}/export` | admin | [`ExportKey`] → [`ExportedKey`] (exportable keys only) |
//! | POST | `/v1/admin/keyring/rotate` | admin | → [`RootRotated`] (the root under a new KMS data key) |
//!
//! Every `/v1/keys…` path addresses the default keystore; `/v1/keystores/{id}/keys…` the same
//! for keystore `{id}`, whose keys' full names are `{id}/{name}` (docs/authorization.md).

use serde::{Deserialize, Serialize};

use crate::api::ErrorBody;

/// Create one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1 to 128 characters from `A-Z a-z 0-9 . _ -`: the name within the keystore the path
    /// names (the SDK's `create_key` takes a full name and sends this part).
    pub name: String,
    /// `secp256k1`, `ed25519`, `p256`, `aes256-gcm` or `hmac-sha256`.
    #[serde(rename = "type")]
    pub key_type: String,
    /// Whether the key may ever be exported (encrypted to a key the caller supplies).
    #[serde(default)]
    pub exportable: bool,
}

/// Create many keys at once, all or nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeys {
    /// 1 to 1,000 keys.
    pub keys: Vec<CreateKey>,
}

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// 1, 2, ...
    pub version: u32,
    /// The public key (SEC1 compressed for secp256k1 and P-256, 32 bytes for Ed25519);
    /// absent for symmetric keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_hex: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
}

/// A key's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub key_type: String,
    /// `enabled`, `disabled` or `pending_deletion` (`deleted` once the deletion is due).
    pub state: String,
    /// The version signing uses.
    pub latest_version: u32,
    /// Every version, oldest first.
    pub versions: Vec<VersionInfo>,
    /// Whether it may be exported.
    pub exportable: bool,
    /// `generated` or `imported`.
    pub origin: String,
    /// Unix seconds.
    pub created_at: u64,
    /// When a scheduled deletion takes effect (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_due: Option<u64>,
    /// Ciphertexts of older versions are refused.
    #[serde(default = "first_version")]
    pub min_decryption_version: u32,
    /// A signed state change's audit record (with owners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<AuditReceiptInfo>,
}

fn first_version() -> u32 {
    1
}

/// Several keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyInfos {
    /// In request order.
    pub keys: Vec<KeyInfo>,
}

/// A page of keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyPage {
    /// In name order.
    pub keys: Vec<KeyInfo>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// Sign with a key: a digest (`digest_hex`) or a message (`message_b64` with `hash`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignWithKey {
    /// A 32-byte digest, 64 hex characters (ECDSA, BIP340).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_hex: Option<String>,
    /// A message, base64 (at most 64 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_b64: Option<String>,
    /// For a message: `sha256`, `keccak256` or `none` (Ed25519 signs the message itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// `ecdsa` (default for secp256k1 and P-256), `bip340` (secp256k1) or `ed25519`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// `compact` (default), `der` or `ethereum` (secp256k1 ECDSA: `r‖s‖v`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The version to sign with (default: the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

#[cfg(feature = "sign-fields")]
impl SignWithKey {
    /// The fields `keyward_keyring::parse_sign_fields` reads.
    pub fn fields(&self) -> keyward_keyring::SignFields<'_> {
        keyward_keyring::SignFields {
            digest_hex: self.digest_hex.as_deref(),
            message_b64: self.message_b64.as_deref(),
            hash: self.hash.as_deref(),
            algorithm: self.algorithm.as_deref(),
            format: self.format.as_deref(),
        }
    }
}

/// A signature by a keyring key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySignatureInfo {
    /// The key.
    pub name: String,
    /// The version that signed.
    pub version: u32,
    /// The scheme.
    pub algorithm: String,
    /// The encoding.
    pub format: String,
    /// The signature, hex.
    pub signature_hex: String,
    /// The version's public key, hex.
    pub public_key_hex: String,
    /// ECDSA recovery id (secp256k1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<u8>,
    /// The audit record of a signed request (authorization on): keep it to check the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<AuditReceiptInfo>,
}

/// A key's policy (`GET` and `PUT /v1/keys/{name}/policy`): the document as its signers signed
/// it (docs/authorization.md), its version, and the receipt of the change that set it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyPolicyInfo {
    pub name: String,
    pub version: u64,
    pub policy: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<AuditReceiptInfo>,
}

/// The signed body of a key state change (`POST /v1/keys/{name}/disable`, `enable`,
/// `cancel-deletion`, `DELETE /v1/keys/{name}`): the action, so that a signature for one change
/// cannot be spent on another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyStateAction {
    /// `disable`, `enable`, `delete` or `cancel-deletion`.
    pub action: String,
    /// The version of the key's policy row the change makes: the current one plus 1 (1 when
    /// the key has none), so that the request applies once, on every enclave.
    pub version: u64,
    /// `delete` only: days until the deletion is final (1 to 3650); the enclave counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_days: Option<u32>,
}

/// The signed body of a rotation (`POST /v1/keys/{name}/rotate`): the version it makes (the
/// latest plus 1; a stale one is `key_version_conflict`), and the key's type and
/// exportability, which the new version keeps (the enclave makes no other). Unsigned
/// rotations take no body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    pub version: u32,
    #[serde(rename = "type")]
    pub key_type: String,
    pub exportable: bool,
}

/// A keystore's policy (`GET` and `PUT /v1/keystores/{id}/policy`): grants on every key of the
/// keystore and on creating keys in it, with its version and the receipt of the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeystorePolicyInfo {
    pub keystore: String,
    pub version: u64,
    pub policy: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<AuditReceiptInfo>,
}

/// An audit record's place in the enclave's chain and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReceiptInfo {
    pub seq: u64,
    /// SHA-256, hex.
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        if text.len() != 64 || !text.is_ascii() {
            return Err(D::Error::custom("a hash is 64 hex digits"));
        }
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(D::Error::custom)?;
        }
        Ok(out)
    }
}

/// Several signatures with one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignWithKeyBatch {
    /// 1 to 1,000 items.
    pub items: Vec<SignWithKey>,
}

/// One item's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeySignatureResult {
    /// Signed.
    Ok(KeySignatureInfo),
    /// This item failed; the others are unaffected.
    Err {
        /// Why.
        error: ErrorBody,
    },
}

/// Answer to [`SignWithKeyBatch`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySignatureBatch {
    /// One per item, in order.
    pub results: Vec<KeySignatureResult>,
}

/// Check a signature: what was signed and how (the fields of [`SignWithKey`]), and the
/// signature.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyWithKey {
    /// As in [`SignWithKey`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_hex: Option<String>,
    /// As in [`SignWithKey`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_b64: Option<String>,
    /// As in [`SignWithKey`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// As in [`SignWithKey`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// As in [`SignWithKey`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The version to check against (default: the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The signature, hex.
    pub signature_hex: String,
}

impl VerifyWithKey {
    /// The signing fields, to parse as a [`SignWithKey`] is parsed.
    pub fn signed(&self) -> SignWithKey {
        SignWithKey {
            digest_hex: self.digest_hex.clone(),
            message_b64: self.message_b64.clone(),
            hash: self.hash.clone(),
            algorithm: self.algorithm.clone(),
            format: self.format.clone(),
            version: self.version,
        }
    }
}

/// Answer to [`VerifyWithKey`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verified {
    /// Whether the signature is valid for that version (which must be enabled).
    pub valid: bool,
    /// The version checked.
    pub version: u32,
}

/// Import a key whose 32 secret bytes the client sealed (HPKE, RFC 9180: DHKEM(X25519,
/// HKDF-SHA256), HKDF-SHA256, AES-256-GCM, base mode) to the enclave's transfer key: the
/// `public_key` of an attestation document the client verified. The `info` binds the key's
/// name, type and exportability (`keyward_keyring::import_info`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportKey {
    /// The key type.
    #[serde(rename = "type")]
    pub key_type: String,
    /// Whether the key may be exported later. Bound into the sealed material.
    #[serde(default)]
    pub exportable: bool,
    /// The transfer key the material is sealed to (from the verified document), hex.
    pub transfer_public_key_hex: String,
    /// HPKE's encapsulated key, base64.
    pub encapsulated_key_b64: String,
    /// The sealed secret, base64.
    pub ciphertext_b64: String,
}

/// Export a version of an exportable key, sealed to the caller's X25519 public key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportKey {
    /// The caller's X25519 public key (32 bytes), hex.
    pub public_key_hex: String,
    /// The version (default: the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// An exported key version: its 32 secret bytes sealed to the caller's key (HPKE, the same
/// suite as imports; `info` from `keyward_keyring::export_info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedKey {
    /// The key.
    pub name: String,
    /// The version.
    pub version: u32,
    /// Its type.
    #[serde(rename = "type")]
    pub key_type: String,
    /// Whether it was created exportable (always true here) — bound into `info`.
    pub exportable: bool,
    /// `generated` or `imported` — bound into `info`.
    pub origin: String,
    /// The version's public key (absent for symmetric keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_hex: Option<String>,
    /// The HPKE suite.
    pub suite: String,
    /// HPKE's encapsulated key, base64.
    pub encapsulated_key_b64: String,
    /// The sealed secret, base64.
    pub ciphertext_b64: String,
}

/// The keyring root sealed under a new KMS data key (the root itself is unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRotated {
    /// The root's id.
    pub root_id: String,
    /// The epoch before.
    pub previous_root_epoch: u32,
    /// The epoch now.
    pub root_epoch: u32,
}
