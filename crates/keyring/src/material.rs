//! The secret of one key version, for each key type. Every type's secret is 32 bytes (a
//! secp256k1 or P-256 scalar, an Ed25519 seed, an AES or HMAC key), which is what gets wrapped.

use std::fmt;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use keyward_proto::KeyType;
use keyward_seal::MasterKey;
use zeroize::Zeroizing;

use crate::KeyringError;

/// Length of every key type's secret.
pub const SECRET_LEN: usize = 32;
/// Draws [`KeyMaterial::generate`] makes before it declares the random source broken.
const MAX_DRAWS: usize = 16;

/// The secret of one key version. Lives only in enclave memory; zeroized on drop (the
/// libraries underneath erase their own copies), never printed.
pub struct KeyMaterial {
    key_type: KeyType,
    secret: Secret,
    public_key: Vec<u8>,
}

enum Secret {
    Secp256k1(MasterKey),
    Ed25519 { seed: Zeroizing<[u8; SECRET_LEN]>, pair: Ed25519KeyPair },
    P256(p256::ecdsa::SigningKey),
    Symmetric(Zeroizing<[u8; SECRET_LEN]>),
}

impl KeyMaterial {
    /// New material of `key_type` from `fill`, a source of uniformly random bytes (the NSM).
    /// Draws again in the negligible case that 32 bytes are not a valid scalar, at most
    /// [`MAX_DRAWS`] times.
    pub fn generate<E: fmt::Display>(
        key_type: KeyType,
        mut fill: impl FnMut(&mut [u8]) -> Result<(), E>,
    ) -> Result<Self, KeyringError> {
        for _ in 0..MAX_DRAWS {
            let mut bytes = Zeroizing::new([0u8; SECRET_LEN]);
            fill(bytes.as_mut()).map_err(|e| KeyringError::Randomness(e.to_string()))?;
            match Self::from_secret(key_type, &bytes) {
                Ok(material) => return Ok(material),
                Err(KeyringError::InvalidSecret(_)) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(KeyringError::Randomness(format!("{MAX_DRAWS} draws in a row were not a valid {key_type} secret")))
    }

    /// Material from its 32 secret bytes (unwrapping, importing).
    pub fn from_secret(key_type: KeyType, bytes: &[u8; SECRET_LEN]) -> Result<Self, KeyringError> {
        let invalid = || KeyringError::InvalidSecret(key_type);
        let (secret, public_key) = match key_type {
            KeyType::Secp256k1 => {
                let key = MasterKey::from_secret_bytes(bytes).map_err(|_| invalid())?;
                let public_key = key.public_key().to_vec();
                (Secret::Secp256k1(key), public_key)
            }
            KeyType::Ed25519 => {
                let pair = Ed25519KeyPair::from_seed_unchecked(bytes).map_err(|_| invalid())?;
                let public_key = pair.public_key().as_ref().to_vec();
                (Secret::Ed25519 { seed: Zeroizing::new(*bytes), pair }, public_key)
            }
            KeyType::P256 => {
                let key = p256::ecdsa::SigningKey::from_slice(bytes).map_err(|_| invalid())?;
                let public_key = key.verifying_key().to_encoded_point(true).as_bytes().to_vec();
                (Secret::P256(key), public_key)
            }
            KeyType::Aes256Gcm | KeyType::HmacSha256 => (Secret::Symmetric(Zeroizing::new(*bytes)), Vec::new()),
            _ => return Err(KeyringError::UnsupportedType(key_type)),
        };
        Ok(KeyMaterial { key_type, secret, public_key })
    }

    /// Material from its 32 secret bytes and the public key they were wrapped with
    /// (unwrapping: the row's AAD authenticated the two together). For secp256k1 the public
    /// key is taken as given instead of derived again, which halves the cost of signing with
    /// a key that is not cached; the other types derive it as [`KeyMaterial::from_secret`] does.
    pub fn from_authenticated(
        key_type: KeyType,
        bytes: &[u8; SECRET_LEN],
        public_key: &[u8],
    ) -> Result<Self, KeyringError> {
        match key_type {
            KeyType::Secp256k1 => {
                let key = MasterKey::from_authenticated_parts(bytes, public_key)
                    .map_err(|_| KeyringError::InvalidSecret(key_type))?;
                Ok(KeyMaterial { key_type, secret: Secret::Secp256k1(key), public_key: public_key.to_vec() })
            }
            _ => Self::from_secret(key_type, bytes),
        }
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The public key: SEC1 compressed (33 bytes) for secp256k1 and P-256, the 32-byte key
    /// for Ed25519, empty for symmetric keys.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// The 32 secret bytes, for wrapping. Zeroized when the returned value drops.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; SECRET_LEN]> {
        match &self.secret {
            Secret::Secp256k1(key) => key.secret_bytes(),
            Secret::Ed25519 { seed, .. } => Zeroizing::new(**seed),
            Secret::P256(key) => {
                let mut out = Zeroizing::new([0u8; SECRET_LEN]);
                out.copy_from_slice(&key.to_bytes());
                out
            }
            Secret::Symmetric(key) => Zeroizing::new(**key),
        }
    }

    pub(crate) fn symmetric(&self) -> Option<&[u8; SECRET_LEN]> {
        match &self.secret {
            Secret::Symmetric(key) => Some(key),
            _ => None,
        }
    }

    pub(crate) fn secp256k1(&self) -> Option<&MasterKey> {
        match &self.secret {
            Secret::Secp256k1(key) => Some(key),
            _ => None,
        }
    }

    pub(crate) fn ed25519(&self) -> Option<&Ed25519KeyPair> {
        match &self.secret {
            Secret::Ed25519 { pair, .. } => Some(pair),
            _ => None,
        }
    }

    pub(crate) fn p256(&self) -> Option<&p256::ecdsa::SigningKey> {
        match &self.secret {
            Secret::P256(key) => Some(key),
            _ => None,
        }
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("key_type", &self.key_type)
            .field("public_key", &hex_lower(&self.public_key))
            .field("secret", &"[redacted]")
            .finish()
    }
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os_random(out: &mut [u8]) -> Result<(), getrandom::Error> {
        getrandom::fill(out)
    }

    #[test]
    fn every_type_generates_and_comes_back_from_its_secret() {
        for key_type in KeyType::ALL {
            let material = KeyMaterial::generate(key_type, os_random).unwrap();
            let again = KeyMaterial::from_secret(key_type, &material.secret_bytes()).unwrap();
            assert_eq!(again.public_key(), material.public_key(), "{key_type}");
            let expected_len = match key_type {
                KeyType::Secp256k1 | KeyType::P256 => 33,
                KeyType::Ed25519 => 32,
                _ => 0,
            };
            assert_eq!(material.public_key().len(), expected_len, "{key_type}");
        }
    }

    #[test]
    fn invalid_scalars_are_redrawn_and_a_broken_source_is_an_error() {
        for key_type in [KeyType::Secp256k1, KeyType::P256] {
            let mut draws = [[0u8; 32], [0xff; 32], [7u8; 32]].into_iter();
            let material = KeyMaterial::generate(key_type, |out: &mut [u8]| -> Result<(), String> {
                out.copy_from_slice(&draws.next().ok_or("exhausted")?);
                Ok(())
            })
            .unwrap();
            assert_eq!(*material.secret_bytes(), [7u8; 32], "{key_type}");
            let err = KeyMaterial::generate(key_type, |out: &mut [u8]| -> Result<(), String> {
                out.fill(0);
                Ok(())
            })
            .unwrap_err();
            assert!(matches!(err, KeyringError::Randomness(_)), "{key_type}: {err}");
        }
    }

    #[test]
    fn debug_shows_the_public_key_never_the_secret() {
        for key_type in KeyType::ALL {
            let material = KeyMaterial::from_secret(key_type, &[0x42; 32]).unwrap();
            let shown = format!("{material:?}");
            assert!(shown.contains("[redacted]") && !shown.contains(&"42".repeat(32)), "{shown}");
        }
    }
}
