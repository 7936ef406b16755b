//! Signing and verifying with keyring keys.
//!
//! What is signed: a 32-byte digest the caller made, or a message that is hashed here
//! (SHA-256 or Keccak-256) or taken as it is. ECDSA and BIP340 sign 32 bytes; Ed25519 signs
//! the message itself (RFC 8032, pure). How it is encoded: compact `r‖s` (ECDSA on secp256k1
//! is low-S and comes with its recovery id), DER, or Ethereum's 65-byte `r‖s‖v` (secp256k1).

use keyward_proto::{KeyType, MessageHash, SignAlgorithm, SignFormat};
use secp256k1::{Message, PublicKey, XOnlyPublicKey, ecdsa, schnorr};
use sha3::{Digest as _, Keccak256};

use crate::{KeyMaterial, KeyringError};

/// Longest message accepted for signing (Ed25519 signs messages whole).
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// What to sign.
#[derive(Debug, Clone, Copy)]
pub enum SignInput<'a> {
    /// A 32-byte digest the caller made.
    Digest(&'a [u8; 32]),
    /// A message, hashed as asked.
    Message {
        /// The message.
        bytes: &'a [u8],
        /// How it is hashed.
        hash: MessageHash,
    },
}

impl<'a> SignInput<'a> {
    /// A view of a request's payload.
    pub fn from_payload(payload: &'a keyward_proto::SignPayload) -> Self {
        match payload {
            keyward_proto::SignPayload::Digest(digest) => SignInput::Digest(&digest.0),
            keyward_proto::SignPayload::Message { bytes, hash } => SignInput::Message { bytes, hash: *hash },
        }
    }
}

/// The scheme a key type signs with when the request names none.
pub fn default_algorithm(key_type: KeyType) -> Option<SignAlgorithm> {
    match key_type {
        KeyType::Secp256k1 | KeyType::P256 | KeyType::Bip32 => Some(SignAlgorithm::Ecdsa),
        KeyType::Ed25519 => Some(SignAlgorithm::Ed25519),
        _ => None,
    }
}

/// A signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The encoded signature.
    pub signature: Vec<u8>,
    /// The ECDSA recovery id on secp256k1 (0-3).
    pub recovery_id: Option<u8>,
}

/// The 32 bytes ECDSA or BIP340 sign.
fn thirty_two(input: SignInput<'_>) -> Result<[u8; 32], KeyringError> {
    match input {
        SignInput::Digest(digest) => Ok(*digest),
        SignInput::Message { bytes, hash: MessageHash::Sha256 } => {
            let mut out = [0u8; 32];
            out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
            Ok(out)
        }
        SignInput::Message { bytes, hash: MessageHash::Keccak256 } => Ok(Keccak256::digest(bytes).into()),
        SignInput::Message { bytes, hash: MessageHash::None } => bytes.try_into().map_err(|_| {
            KeyringError::BadInput(format!("an unhashed message must be 32 bytes, this one has {}", bytes.len()))
        }),
    }
}

/// What Ed25519 signs: the message itself.
fn whole_message(input: SignInput<'_>) -> Result<&[u8], KeyringError> {
    match input {
        SignInput::Message { bytes, hash: MessageHash::None } => Ok(bytes),
        _ => Err(KeyringError::BadInput("ed25519 signs the message itself: send the message, without a hash".into())),
    }
}

fn check_length(input: SignInput<'_>) -> Result<(), KeyringError> {
    match input {
        SignInput::Message { bytes, .. } if bytes.len() > MAX_MESSAGE_LEN => {
            Err(KeyringError::MessageTooLarge { len: bytes.len(), max: MAX_MESSAGE_LEN })
        }
        _ => Ok(()),
    }
}

fn unsupported(key_type: KeyType, algorithm: SignAlgorithm, format: SignFormat) -> KeyringError {
    KeyringError::UnsupportedScheme(format!(
        "a {key_type} key does not sign {} in {} format",
        format!("{algorithm:?}").to_lowercase(),
        format!("{format:?}").to_lowercase()
    ))
}

/// Whether a request could be signed by a key of `key_type`, without the key: the scheme,
/// format and payload fit the type. The gateway checks this at its boundary; [`sign`] and
/// [`verify`] check it again.
pub fn check_request(
    key_type: KeyType,
    algorithm: SignAlgorithm,
    input: SignInput<'_>,
    format: SignFormat,
) -> Result<(), KeyringError> {
    check_length(input)?;
    match (key_type, algorithm) {
        (KeyType::Secp256k1 | KeyType::Bip32, SignAlgorithm::Ecdsa) => thirty_two(input).map(drop),
        (KeyType::Secp256k1, SignAlgorithm::Bip340) if format == SignFormat::Compact => thirty_two(input).map(drop),
        (KeyType::P256, SignAlgorithm::Ecdsa) if format != SignFormat::Ethereum => thirty_two(input).map(drop),
        (KeyType::Ed25519, SignAlgorithm::Ed25519) if format == SignFormat::Compact => whole_message(input).map(drop),
        (t, _) if !t.is_asymmetric() => Err(KeyringError::NotASigningKey(t)),
        (t, a) => Err(unsupported(t, a, format)),
    }
}

/// Signs `input` with `material`. `aux_rand` is fresh randomness for BIP340.
pub fn sign(
    material: &KeyMaterial,
    algorithm: SignAlgorithm,
    input: SignInput<'_>,
    format: SignFormat,
    aux_rand: &[u8; 32],
) -> Result<Signed, KeyringError> {
    check_length(input)?;
    let key_type = material.key_type();
    match (material.secp256k1(), material.p256(), material.ed25519(), algorithm) {
        (Some(key), _, _, SignAlgorithm::Ecdsa) => {
            let digest = thirty_two(input)?;
            let (compact, recovery_id) = key.sign_ecdsa(&digest);
            let signature = match format {
                SignFormat::Compact => compact.to_vec(),
                SignFormat::Der => ecdsa::Signature::from_compact(&compact)
                    .map_err(|_| KeyringError::InvalidSecret(key_type))?
                    .serialize_der()
                    .to_vec(),
                SignFormat::Ethereum => [&compact[..], &[27 + recovery_id]].concat(),
            };
            Ok(Signed { signature, recovery_id: Some(recovery_id) })
        }
        (Some(key), _, _, SignAlgorithm::Bip340) if format == SignFormat::Compact && key_type == KeyType::Secp256k1 => {
            let digest = thirty_two(input)?;
            Ok(Signed { signature: key.sign_bip340(&digest, aux_rand).to_vec(), recovery_id: None })
        }
        (_, Some(key), _, SignAlgorithm::Ecdsa) if format != SignFormat::Ethereum => {
            use p256::ecdsa::signature::hazmat::PrehashSigner;
            let digest = thirty_two(input)?;
            let signature: p256::ecdsa::Signature =
                key.sign_prehash(&digest).map_err(|e| KeyringError::BadInput(format!("P-256 signing: {e}")))?;
            let signature = match format {
                SignFormat::Der => signature.to_der().as_bytes().to_vec(),
                _ => signature.to_bytes().to_vec(),
            };
            Ok(Signed { signature, recovery_id: None })
        }
        (_, _, Some(pair), SignAlgorithm::Ed25519) if format == SignFormat::Compact => {
            let message = whole_message(input)?;
            Ok(Signed { signature: pair.sign(message).as_ref().to_vec(), recovery_id: None })
        }
        (None, None, None, _) => Err(KeyringError::NotASigningKey(key_type)),
        _ => Err(unsupported(key_type, algorithm, format)),
    }
}

/// Whether `signature` is a valid signature of `input` by `public_key` (of `key_type`), in
/// `format`. `Err` only for a request that could never verify (a scheme the type lacks).
pub fn verify(
    key_type: KeyType,
    public_key: &[u8],
    algorithm: SignAlgorithm,
    input: SignInput<'_>,
    format: SignFormat,
    signature: &[u8],
) -> Result<bool, KeyringError> {
    check_length(input)?;
    match (key_type, algorithm) {
        (KeyType::Secp256k1 | KeyType::Bip32, SignAlgorithm::Ecdsa) => {
            let digest = Message::from_digest(thirty_two(input)?);
            // A BIP32 key signs with its master key, the first 33 bytes of its public key.
            let public_key = public_key.get(..33).unwrap_or(public_key);
            let Ok(key) = PublicKey::from_slice(public_key) else { return Ok(false) };
            let parsed = match format {
                SignFormat::Compact => ecdsa::Signature::from_compact(signature).ok(),
                SignFormat::Der => ecdsa::Signature::from_der(signature).ok(),
                SignFormat::Ethereum => match signature {
                    [rs @ .., v] if rs.len() == 64 && (27..=30).contains(v) => ecdsa::Signature::from_compact(rs).ok(),
                    _ => None,
                },
            };
            // Only the canonical (low-S) form counts, as signed here and as Bitcoin and
            // Ethereum require.
            Ok(parsed.is_some_and(|sig| {
                let mut normal = sig;
                normal.normalize_s();
                normal == sig && sig.verify(digest, &key).is_ok()
            }))
        }
        (KeyType::Secp256k1, SignAlgorithm::Bip340) if format == SignFormat::Compact => {
            let digest = thirty_two(input)?;
            let xonly = match public_key.len() {
                33 => PublicKey::from_slice(public_key).ok().map(|k| k.x_only_public_key().0),
                32 => public_key.try_into().ok().and_then(|k| XOnlyPublicKey::from_byte_array(k).ok()),
                _ => None,
            };
            let Ok(sig) = <[u8; 64]>::try_from(signature) else { return Ok(false) };
            Ok(xonly.is_some_and(|key| schnorr::Signature::from_byte_array(sig).verify(&digest, &key).is_ok()))
        }
        (KeyType::P256, SignAlgorithm::Ecdsa) if format != SignFormat::Ethereum => {
            use p256::ecdsa::signature::hazmat::PrehashVerifier;
            let digest = thirty_two(input)?;
            let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key) else { return Ok(false) };
            let parsed = match format {
                SignFormat::Der => p256::ecdsa::Signature::from_der(signature).ok(),
                _ => p256::ecdsa::Signature::from_slice(signature).ok(),
            };
            Ok(parsed.is_some_and(|sig| key.verify_prehash(&digest, &sig).is_ok()))
        }
        (KeyType::Ed25519, SignAlgorithm::Ed25519) if format == SignFormat::Compact => {
            let message = whole_message(input)?;
            let key = aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, public_key);
            Ok(key.verify(message, signature).is_ok())
        }
        (t, _) if !t.is_asymmetric() => Err(KeyringError::NotASigningKey(t)),
        (t, a) => Err(unsupported(t, a, format)),
    }
}

#[cfg(test)]
mod tests;
