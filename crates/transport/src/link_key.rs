//! Who may talk to the enclave: the gateway proves on every connection that it holds the
//! link key, an Ed25519 key whose file only the keyward service user can read. The enclave
//! knows only the public half, from its own measured configuration, so no secret is baked
//! into the enclave image and the proof never crosses the link in a reusable form (it is a
//! signature over a challenge that is new for every connection).

use std::{fmt, path::Path};

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

/// Why a secret file (the link key, a bearer token) could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretFileError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file can be read by other users.
    #[error(
        "{path} has mode {mode:o}: group and others must have no access (chmod 600), or any local user could use it"
    )]
    Permissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

/// Reads a secret file. With `require_private` (production) a file that group or others can
/// access is refused. The mode is checked on the open file, the very one then read, so the
/// file cannot be swapped between the check and the read.
pub fn read_secret_file(path: &Path, require_private: bool) -> Result<Zeroizing<String>, SecretFileError> {
    use std::{io::Read, os::unix::fs::PermissionsExt};
    let io = |source| SecretFileError::Io { path: path.display().to_string(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
    if require_private && mode & 0o077 != 0 {
        return Err(SecretFileError::Permissions { path: path.display().to_string(), mode });
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text).map_err(io)?;
    Ok(text)
}

/// Why a link key could not be loaded, made or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkKeyError {
    /// The key file could not be read, or others can read it.
    #[error("link key file {0}")]
    File(#[from] SecretFileError),
    /// The key file could not be written.
    #[error("link key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key file does not hold 64 hex digits (a 32-byte Ed25519 seed).
    #[error("link key file {0} must hold one Ed25519 seed as 64 hex digits (make one with `gateway link-key new`)")]
    Malformed(String),
    /// A public key is not 64 hex digits.
    #[error("gateway public key {0:?} is not 64 hex digits (an Ed25519 public key)")]
    PublicKey(String),
    /// No randomness for a new key.
    #[error("no randomness for a new link key")]
    Randomness,
}

/// The gateway's private link key.
pub struct LinkKey {
    pair: Ed25519KeyPair,
}

impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkKey(public {}, private [redacted])", self.public_key())
    }
}

impl LinkKey {
    /// Reads the key from `path`. With `require_private_file`, a file that group or others
    /// can access is refused (production).
    pub fn load(path: &Path, require_private_file: bool) -> Result<Self, LinkKeyError> {
        let text = read_secret_file(path, require_private_file)?;
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), seed.as_mut())
            .map_err(|_| LinkKeyError::Malformed(path.display().to_string()))?;
        Self::from_seed(&seed).ok_or_else(|| LinkKeyError::Malformed(path.display().to_string()))
    }

    /// Makes a new key and writes its seed to `path` (mode 0600, which must not exist yet).
    pub fn create(path: &Path) -> Result<Self, LinkKeyError> {
        use std::{io::Write, os::unix::fs::OpenOptionsExt};
        let mut seed = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(seed.as_mut()).map_err(|_| LinkKeyError::Randomness)?;
        let key = Self::from_seed(&seed).ok_or(LinkKeyError::Randomness)?;
        let io = |source| LinkKeyError::Io { path: path.display().to_string(), source };
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(seed.as_ref())));
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(io)?;
        Ok(key)
    }

    fn from_seed(seed: &[u8; 32]) -> Option<Self> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).ok()?;
        Some(LinkKey { pair })
    }

    /// The public half, which the enclave's configuration pins.
    pub fn public_key(&self) -> LinkPublicKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        LinkPublicKey(key)
    }

    /// Signs `message` (the link authentication message of one connection's challenge).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.pair.sign(message).as_ref());
        signature
    }
}

/// An Ed25519 public key the enclave accepts as its gateway's.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkPublicKey(pub [u8; 32]);

impl LinkPublicKey {
    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, LinkKeyError> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key)
            .map_err(|_| LinkKeyError::PublicKey(text.chars().take(80).collect()))?;
        Ok(LinkPublicKey(key))
    }

    /// Whether this is the public key of one of RFC 8032's Ed25519 test vectors, whose private
    /// keys are published: fine in a unit test, never as a deployment's link key.
    pub fn is_published_test_key(&self) -> bool {
        const RFC_8032_TEST_KEYS: [&str; 3] = [
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        ];
        RFC_8032_TEST_KEYS.contains(&hex::encode(self.0).as_str())
    }

    /// Whether `signature` is this key's signature over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0).verify(message, signature).is_ok()
    }
}

impl fmt::Display for LinkPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for LinkPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkPublicKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_created_key_loads_back_and_its_signatures_verify_only_for_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link.key");
        let made = LinkKey::create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let loaded = LinkKey::load(&path, true).unwrap();
        assert_eq!(made.public_key(), loaded.public_key());
        let signature = loaded.sign(b"challenge one");
        assert!(made.public_key().verifies(b"challenge one", &signature));
        assert!(!made.public_key().verifies(b"challenge two", &signature));
        let other = LinkKey::create(&dir.path().join("other.key")).unwrap();
        assert!(!other.public_key().verifies(b"challenge one", &signature));
        assert!(LinkKey::create(&path).is_err(), "an existing key file is never overwritten");
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_when_the_file_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link.key");
        LinkKey::create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            LinkKey::load(&path, true),
            Err(LinkKeyError::File(SecretFileError::Permissions { mode: 0o640, .. }))
        ));
        assert!(LinkKey::load(&path, false).is_ok(), "development accepts it");
    }

    #[test]
    fn malformed_files_and_public_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link.key");
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(LinkKey::load(&path, false), Err(LinkKeyError::Malformed(_))));
        assert!(LinkPublicKey::from_hex("abcd").is_err());
        assert!(LinkPublicKey::from_hex(&"zz".repeat(32)).is_err());
        assert_eq!(LinkPublicKey::from_hex(&"ab".repeat(32)).unwrap().0, [0xab; 32]);
    }

    #[test]
    fn the_rfc_8032_test_keys_are_recognised() {
        // Test vector 1's seed gives test vector 1's public key: the list is the real one.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vector1.key");
        std::fs::write(&path, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
        assert!(LinkKey::load(&path, false).unwrap().public_key().is_published_test_key());
        assert!(!LinkKey::create(&dir.path().join("fresh.key")).unwrap().public_key().is_published_test_key());
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link.key");
        let key = LinkKey::create(&path).unwrap();
        let seed = std::fs::read_to_string(&path).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(seed.trim()) && shown.contains("[redacted]"), "{shown}");
    }
}
