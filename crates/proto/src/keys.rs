//! The keyring's values as they cross the link and the store: names, types, versions, flags,
//! and the wrapped rows themselves. Every one is checked when it is decoded, so code that holds
//! one never checks it again.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A key's name: 1 to 128 characters from `A-Z a-z 0-9 . _ -` in the default keystore, or
/// `<keystore>/<name>` in another one (a [`KeystoreId`], then the name by the same rule). The
/// whole name is the key's identity: it is bound into every wrapped row, so a row cannot move
/// from one keystore to another.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyName(String);

/// Longest key name within its keystore.
pub const MAX_KEY_NAME_LEN: usize = 128;
/// Longest keystore id.
pub const MAX_KEYSTORE_LEN: usize = 32;
/// Longest full name (`<keystore>/<name>`).
pub const MAX_FULL_KEY_NAME_LEN: usize = MAX_KEYSTORE_LEN + 1 + MAX_KEY_NAME_LEN;
// The keyring frames a full name with one length byte in associated data.
const _: () = assert!(MAX_FULL_KEY_NAME_LEN <= 255);
/// The keystore of keys whose names have no `<keystore>/` prefix (`/v1/keys/…`).
pub const DEFAULT_KEYSTORE: &str = "default";
/// The keystore of the enclaves' master keys (`/v1/sign`): reserved, it holds no named keys.
pub const MASTER_KEYSTORE: &str = "master";

/// Why a string is not a key name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyNameError {
    /// Empty.
    #[error("a key name must not be empty (1 to 128 characters from A-Z a-z 0-9 . _ -)")]
    Empty,
    /// Longer than [`MAX_KEY_NAME_LEN`].
    #[error("a key name is at most 128 characters, this one has {0}")]
    TooLong(usize),
    /// A character outside the allowed set.
    #[error("a key name may hold only A-Z a-z 0-9 . _ - ; character {position} is {character:?}")]
    InvalidCharacter {
        /// Position, from 0.
        position: usize,
        /// The character.
        character: char,
    },
    /// Starts with `.`: `.` and `..` are path segments that HTTP clients remove from a URL,
    /// so such a key could not be addressed as `/v1/keys/{name}`.
    #[error("a key name must not start with '.'")]
    LeadingDot,
    /// The keystore part of `<keystore>/<name>` is not a keystore id.
    #[error("{0}")]
    Keystore(KeystoreIdError),
    /// A `/` where the name must be one keystore's (the paths `/v1/keys/{name}` and
    /// `/v1/keystores/{id}/keys/{name}` take the name without its keystore).
    #[error("a key name here must not contain '/': the keystore is named by the path")]
    Qualified,
    /// `default/<name>`: a key of the default keystore has one name, without the prefix.
    #[error("a key of the default keystore is named without the \"default/\" prefix")]
    DefaultPrefix,
}

/// A keystore's id: 1 to 32 characters from `a-z 0-9 -`, starting with a letter or digit.
/// `default` names the default keystore (whose keys' names carry no prefix); `master` is
/// reserved for the master keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeystoreId(String);

/// Why a string is not a keystore id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreIdError {
    /// Empty, too long, or a character outside the set.
    #[error("a keystore id is 1 to 32 characters from a-z 0-9 - starting with a letter or digit, not {0:?}")]
    Invalid(String),
    /// `master`.
    #[error("keystore id \"master\" is reserved for the enclaves' master keys")]
    Reserved,
}

impl KeystoreId {
    /// Checks `id` against the rule.
    pub fn parse(id: &str) -> Result<Self, KeystoreIdError> {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if id.is_empty() || id.len() > MAX_KEYSTORE_LEN || id.starts_with('-') || !id.chars().all(allowed) {
            return Err(KeystoreIdError::Invalid(id.chars().take(40).collect()));
        }
        if id == MASTER_KEYSTORE {
            return Err(KeystoreIdError::Reserved);
        }
        Ok(KeystoreId(id.to_owned()))
    }

    /// The default keystore.
    pub fn default_keystore() -> Self {
        KeystoreId(DEFAULT_KEYSTORE.to_owned())
    }

    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_KEYSTORE
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeystoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeystoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeystoreId({})", self.0)
    }
}

/// The keystore and the name within it of a full key name (`<keystore>/<name>`, or a name of
/// the default keystore). Does not check the parts: [`KeyName`] does.
pub fn split_key_name(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((keystore, local)) => (keystore, local),
        None => (DEFAULT_KEYSTORE, name),
    }
}

impl KeyName {
    /// Checks a full name (`<keystore>/<name>`, or a name of the default keystore, which never
    /// carries the `default/` prefix).
    pub fn parse(name: &str) -> Result<Self, KeyNameError> {
        match name.split_once('/') {
            None => Self::parse_local(name),
            Some((keystore, local)) => {
                let keystore = KeystoreId::parse(keystore).map_err(KeyNameError::Keystore)?;
                if keystore.is_default() {
                    return Err(KeyNameError::DefaultPrefix);
                }
                Self::qualified(&keystore, local)
            }
        }
    }

    /// The key `local` of keystore `keystore`.
    pub fn qualified(keystore: &KeystoreId, local: &str) -> Result<Self, KeyNameError> {
        let local = Self::parse_local(local)?;
        Ok(if keystore.is_default() { local } else { KeyName(format!("{keystore}/{}", local.0)) })
    }

    /// The keystore the key belongs to.
    pub fn keystore(&self) -> &str {
        split_key_name(&self.0).0
    }

    /// The name within its keystore.
    pub fn local(&self) -> &str {
        split_key_name(&self.0).1
    }

    /// Checks a name of one keystore (no `/`).
    pub fn parse_local(name: &str) -> Result<Self, KeyNameError> {
        if name.contains('/') {
            return Err(KeyNameError::Qualified);
        }
        if name.is_empty() {
            return Err(KeyNameError::Empty);
        }
        let length = name.chars().count();
        if length > MAX_KEY_NAME_LEN {
            return Err(KeyNameError::TooLong(length));
        }
        if let Some((position, character)) =
            name.chars().enumerate().find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(KeyNameError::InvalidCharacter { position, character });
        }
        if name.starts_with('.') {
            return Err(KeyNameError::LeadingDot);
        }
        Ok(KeyName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyName {
    type Error = KeyNameError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        KeyName::parse(&name)
    }
}

impl From<KeyName> for String {
    fn from(name: KeyName) -> String {
        name.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyName({})", self.0)
    }
}

/// What a key is and does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KeyType {
    /// secp256k1: ECDSA (low-S, with a recovery id) and BIP340 Schnorr.
    #[serde(rename = "secp256k1")]
    Secp256k1,
    /// Ed25519 (RFC 8032, pure): signs messages.
    #[serde(rename = "ed25519")]
    Ed25519,
    /// NIST P-256: ECDSA.
    #[serde(rename = "p256")]
    P256,
    /// AES-256-GCM: encryption (next issue).
    #[serde(rename = "aes256-gcm")]
    Aes256Gcm,
    /// HMAC-SHA256: message authentication (next issue).
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// A BIP32 extended secp256k1 key: a 32-byte seed from which the master key and chain
    /// code derive (BIP32's HMAC-SHA512). Signs ECDSA with the master key or a child of it.
    #[serde(rename = "bip32")]
    Bip32,
    /// A sealed secret: an AES-256 key that seals one opaque secret a caller brought (BitGo's
    /// `prv`), and opens it only for the front door that stored it.
    #[serde(rename = "secret")]
    Secret,
    /// X25519 (RFC 7748): key agreement (ECDH, JOSE ECDH-ES key unwrapping); does not sign.
    #[serde(rename = "x25519")]
    X25519,
}

impl KeyType {
    /// Every type.
    pub const ALL: [KeyType; 8] = [
        KeyType::Secp256k1,
        KeyType::Ed25519,
        KeyType::P256,
        KeyType::Aes256Gcm,
        KeyType::HmacSha256,
        KeyType::Bip32,
        KeyType::Secret,
        KeyType::X25519,
    ];

    /// The names, for messages that list them.
    pub const NAMES: &'static str = "secp256k1, ed25519, p256, aes256-gcm, hmac-sha256, bip32, secret or x25519";

    /// The name the API and the store use.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Secp256k1 => "secp256k1",
            KeyType::Ed25519 => "ed25519",
            KeyType::P256 => "p256",
            KeyType::Aes256Gcm => "aes256-gcm",
            KeyType::HmacSha256 => "hmac-sha256",
            KeyType::Bip32 => "bip32",
            KeyType::Secret => "secret",
            KeyType::X25519 => "x25519",
        }
    }

    /// Parses [`KeyType::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Whether keys of this type sign (and have a public key; x25519 keys have one too, but
    /// only agree).
    pub fn is_asymmetric(self) -> bool {
        matches!(self, KeyType::Secp256k1 | KeyType::Ed25519 | KeyType::P256 | KeyType::Bip32)
    }

    /// A stable number for the type, bound into every wrapped row's AAD.
    pub fn code(self) -> u8 {
        match self {
            KeyType::Secp256k1 => 1,
            KeyType::Ed25519 => 2,
            KeyType::P256 => 3,
            KeyType::Aes256Gcm => 4,
            KeyType::HmacSha256 => 5,
            KeyType::Bip32 => 6,
            KeyType::Secret => 7,
            KeyType::X25519 => 8,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a key's material came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Generated inside an enclave.
    Generated,
    /// Imported, encrypted to an enclave-held key.
    Imported,
}

impl Origin {
    /// The name the API and the store use.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Generated => "generated",
            Origin::Imported => "imported",
        }
    }
}

/// A key's fixed properties, bound into every wrapped row of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyFlags {
    /// Whether the key may leave the enclave (encrypted to a key the caller supplies).
    pub exportable: bool,
    /// Where its material came from.
    pub origin: Origin,
}

impl KeyFlags {
    /// One byte for the AAD: bit 0 exportable, bit 1 imported.
    pub fn bits(self) -> u8 {
        u8::from(self.exportable) | (u8::from(self.origin == Origin::Imported) << 1)
    }
}

/// A key version: 1, 2, ... (rotation adds one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct KeyVersion(u32);

impl KeyVersion {
    /// The first version of every key.
    pub const FIRST: KeyVersion = KeyVersion(1);

    /// `version` if it is at least 1.
    pub fn new(version: u32) -> Option<Self> {
        (version >= 1).then_some(KeyVersion(version))
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The next version, if there is one.
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(KeyVersion)
    }
}

impl TryFrom<u32> for KeyVersion {
    type Error = &'static str;

    fn try_from(version: u32) -> Result<Self, Self::Error> {
        KeyVersion::new(version).ok_or("a key version is at least 1")
    }
}

impl From<KeyVersion> for u32 {
    fn from(version: KeyVersion) -> u32 {
        version.0
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which key version a wrapped row is: everything its AAD binds besides the root and the
/// public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyIdentity {
    /// The key's name.
    pub name: KeyName,
    /// The version.
    pub version: KeyVersion,
    /// The key's type.
    pub key_type: KeyType,
    /// Its fixed properties.
    pub flags: KeyFlags,
}

/// Identifies a keyring root: 16 random bytes chosen when the root is born, bound into every
/// row wrapped under it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RootId(#[serde(with = "serde_bytes")] pub [u8; 16]);

impl fmt::Debug for RootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootId({})", crate::types::hex_lower(&self.0))
    }
}

impl fmt::Display for RootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::types::hex_lower(&self.0))
    }
}

/// Longest public key of any type (P-256 and secp256k1 compressed: 33; Ed25519: 32; BIP32:
/// the master's compressed key and its chain code, 65).
pub const MAX_PUBLIC_KEY_LEN: usize = 65;
/// Longest wrapped key row blob.
pub const MAX_WRAPPED_LEN: usize = 256;

/// One key version as stored: ciphertext and public values only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// Which key version.
    pub identity: KeyIdentity,
    /// The root it is wrapped under.
    pub root_id: RootId,
    /// The public key (asymmetric types); bound into the AAD.
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
    /// The key material, AES-256-GCM under the root.
    #[serde(with = "serde_bytes")]
    pub wrapped: Vec<u8>,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("identity", &self.identity)
            .field("root_id", &self.root_id)
            .field("public_key", &crate::types::hex_lower(&self.public_key))
            .field("wrapped_len", &self.wrapped.len())
            .finish()
    }
}

/// The keyring root as stored: sealed under a KMS data key, exactly like the master key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRoot {
    /// The root's id.
    pub root_id: RootId,
    /// The data key as encrypted by KMS.
    #[serde(with = "serde_bytes")]
    pub kms_encrypted_dek: Vec<u8>,
    /// The root key, AES-256-GCM under the data key.
    #[serde(with = "serde_bytes")]
    pub sealed_root: Vec<u8>,
    /// ARN of the KMS key.
    pub kms_key_id: String,
    /// Data-key generation; bumped by every root rotation.
    pub root_epoch: u32,
}

impl fmt::Debug for SealedRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRoot")
            .field("root_id", &self.root_id)
            .field("kms_encrypted_dek_len", &self.kms_encrypted_dek.len())
            .field("sealed_root_len", &self.sealed_root.len())
            .field("kms_key_id", &self.kms_key_id)
            .field("root_epoch", &self.root_epoch)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule_and_errors_name_it() {
        for good in ["a", "wallet-1", "A.b_c-9", &"x".repeat(128)] {
            assert_eq!(KeyName::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(KeyName::parse(""), Err(KeyNameError::Empty));
        assert_eq!(KeyName::parse(&"x".repeat(129)), Err(KeyNameError::TooLong(129)));
        assert_eq!(KeyName::parse_local("a/b"), Err(KeyNameError::Qualified));
        assert!(matches!(KeyName::parse("é"), Err(KeyNameError::InvalidCharacter { position: 0, .. })));
        assert!(KeyNameError::Empty.to_string().contains("A-Z a-z 0-9 . _ -"));
        for dotted in [".", "..", ".hidden"] {
            assert_eq!(KeyName::parse(dotted), Err(KeyNameError::LeadingDot), "{dotted}");
        }
    }

    #[test]
    fn names_carry_their_keystore() {
        let plain = KeyName::parse("treasury").unwrap();
        assert_eq!((plain.keystore(), plain.local()), (DEFAULT_KEYSTORE, "treasury"));
        let qualified = KeyName::parse("acme-2/treasury").unwrap();
        assert_eq!((qualified.keystore(), qualified.local()), ("acme-2", "treasury"));
        let acme = KeystoreId::parse("acme-2").unwrap();
        assert_eq!(KeyName::qualified(&acme, "treasury").unwrap(), qualified);
        assert_eq!(KeyName::qualified(&KeystoreId::default_keystore(), "treasury").unwrap(), plain);
        assert_eq!(KeyName::qualified(&acme, "x/y"), Err(KeyNameError::Qualified));
        // The name within the keystore keeps the whole rule, and a keystore adds its own.
        assert!(KeyName::parse(&format!("acme/{}", "x".repeat(128))).is_ok());
        assert_eq!(KeyName::parse(&format!("acme/{}", "x".repeat(129))), Err(KeyNameError::TooLong(129)));
        assert_eq!(KeyName::parse("acme/.x"), Err(KeyNameError::LeadingDot));
        assert_eq!(KeyName::parse("acme/"), Err(KeyNameError::Empty));
        assert_eq!(KeyName::parse("a/b/c"), Err(KeyNameError::Qualified));
        assert_eq!(KeyName::parse("default/x"), Err(KeyNameError::DefaultPrefix));
        assert_eq!(KeyName::parse("master/x"), Err(KeyNameError::Keystore(KeystoreIdError::Reserved)));
        for bad in ["", "Acme", "-acme", "ac_me", "a.b", &"a".repeat(33)] {
            assert!(
                matches!(KeyName::parse(&format!("{bad}/x")), Err(KeyNameError::Keystore(KeystoreIdError::Invalid(_)))),
                "{bad:?}"
            );
        }
        assert!(KeystoreId::parse(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn names_are_checked_when_decoded() {
        let bad = serde_cbor::to_vec(&"no spaces allowed").unwrap();
        assert!(serde_cbor::from_slice::<KeyName>(&bad).is_err());
        let good = serde_cbor::to_vec(&"ok").unwrap();
        assert_eq!(serde_cbor::from_slice::<KeyName>(&good).unwrap().as_str(), "ok");
        assert!(serde_cbor::from_slice::<KeyVersion>(&serde_cbor::to_vec(&0u32).unwrap()).is_err());
    }

    #[test]
    fn type_names_and_codes_are_distinct_and_round_trip() {
        let mut codes = std::collections::BTreeSet::new();
        for t in KeyType::ALL {
            assert_eq!(KeyType::parse(t.as_str()), Some(t));
            assert!(codes.insert(t.code()), "{t}");
            let wire: String = serde_cbor::from_slice(&serde_cbor::to_vec(&t).unwrap()).unwrap();
            assert_eq!(wire, t.as_str());
        }
        assert_eq!(KeyType::parse("rsa"), None);
    }

    #[test]
    fn flag_bits_distinguish_every_combination() {
        let bits: std::collections::BTreeSet<u8> = [false, true]
            .into_iter()
            .flat_map(|exportable| {
                [Origin::Generated, Origin::Imported].map(move |origin| KeyFlags { exportable, origin }.bits())
            })
            .collect();
        assert_eq!(bits.len(), 4);
    }
}
