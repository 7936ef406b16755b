//! Key agreement with `x25519` and `p256` keys: the raw ECDH secret with a peer's public key
//! (as AWS KMS's `DeriveSharedSecret` returns it), and JOSE's `ECDH-ES+A256KW` (RFC 7518
//! §4.6): a content key wrapped with AES Key Wrap under a key derived by the Concat KDF from
//! the ECDH secret of an ephemeral key and the recipient's.
//!
//! ECDH and AES Key Wrap are aws-lc-rs's. The Concat KDF (one SHA-256 block for a 256-bit key)
//! and the JWK fields are written here: the JOSE crates bring their own cryptography (OpenSSL or
//! ring) for the part aws-lc-rs already does.

use aws_lc_rs::{
    agreement::{self, ECDH_P256, PrivateKey, UnparsedPublicKey, X25519},
    key_wrap::{AES_256, KeyEncryptionKey, KeyWrap},
};
use keyward_proto::KeyType;
use zeroize::Zeroizing;

use crate::{KeyMaterial, KeyringError};

/// JOSE's name of the one key-management algorithm keyward speaks.
pub const JOSE_ALG: &str = "ECDH-ES+A256KW";
/// Longest content key wrapped or unwrapped (AES Key Wrap of up to a 512-bit key).
pub const MAX_CEK_LEN: usize = 64;

/// A curve of key agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// X25519 (JWK `OKP`, `crv: X25519`).
    X25519,
    /// NIST P-256 (JWK `EC`, `crv: P-256`).
    P256,
}

impl Curve {
    /// The curve of a key type that agrees.
    pub fn of(key_type: KeyType) -> Option<Curve> {
        match key_type {
            KeyType::X25519 => Some(Curve::X25519),
            KeyType::P256 => Some(Curve::P256),
            _ => None,
        }
    }

    fn algorithm(self) -> &'static agreement::Algorithm {
        match self {
            Curve::X25519 => &X25519,
            Curve::P256 => &ECDH_P256,
        }
    }
}

/// A peer's public key as aws-lc-rs takes it: X25519's 32 bytes, or P-256 SEC1 uncompressed
/// (a compressed point is expanded here).
pub fn peer_public_key(curve: Curve, bytes: &[u8]) -> Result<Vec<u8>, KeyringError> {
    let bad = || KeyringError::BadInput(format!("not a {curve:?} public key ({} bytes)", bytes.len()));
    match curve {
        Curve::X25519 if bytes.len() == 32 => Ok(bytes.to_vec()),
        Curve::P256 => {
            let point = p256::PublicKey::from_sec1_bytes(bytes).map_err(|_| bad())?;
            Ok(p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&point, false).as_bytes().to_vec())
        }
        Curve::X25519 => Err(bad()),
    }
}

fn ecdh(private: &PrivateKey, curve: Curve, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    let peer = UnparsedPublicKey::new(curve.algorithm(), peer_public_key(curve, peer)?);
    // aws-lc refuses a peer key off the curve and X25519's all-zero result (a low-order point).
    agreement::agree(
        private,
        peer,
        KeyringError::BadInput("the peer's public key gives no shared secret".into()),
        |z| Ok(Zeroizing::new(z.to_vec())),
    )
}

fn agreement_key(material: &KeyMaterial) -> Result<(PrivateKey, Curve), KeyringError> {
    let curve = Curve::of(material.key_type()).ok_or_else(|| {
        KeyringError::UnsupportedOperation(format!(
            "a {} key does not agree on keys (x25519 and p256 do)",
            material.key_type()
        ))
    })?;
    let private = material.agreement_key().ok_or(KeyringError::InvalidSecret(material.key_type()))?;
    Ok((private, curve))
}

/// The ECDH secret of `material` (an x25519 or p256 key) and `peer` (raw X25519, or SEC1).
pub fn derive_shared_secret(material: &KeyMaterial, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    let (private, curve) = agreement_key(material)?;
    ecdh(&private, curve, peer)
}

/// RFC 7518 §4.6.2: the Concat KDF (NIST SP 800-56A) with SHA-256, one round: keys of up to
/// 256 bits, the first `bits / 8` bytes of the hash.
fn concat_kdf_for(z: &[u8], algorithm: &str, apu: &[u8], apv: &[u8], bits: u32) -> Zeroizing<Vec<u8>> {
    // Lengths fit: party info and algorithm names are bounded far below 4 GiB by the callers.
    let field = |bytes: &[u8]| [&(bytes.len() as u32).to_be_bytes()[..], bytes].concat();
    let mut input = Zeroizing::new(Vec::with_capacity(4 + z.len() + 64 + apu.len() + apv.len()));
    input.extend_from_slice(&1u32.to_be_bytes());
    input.extend_from_slice(z);
    input.extend_from_slice(&field(algorithm.as_bytes()));
    input.extend_from_slice(&field(apu));
    input.extend_from_slice(&field(apv));
    input.extend_from_slice(&bits.to_be_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    Zeroizing::new(digest.as_ref()[..(bits / 8) as usize].to_vec())
}

/// The AES-256 Key Wrap key of `ECDH-ES+A256KW`.
fn concat_kdf(z: &[u8], apu: &[u8], apv: &[u8]) -> Zeroizing<Vec<u8>> {
    concat_kdf_for(z, JOSE_ALG, apu, apv, 256)
}

/// A content key wrapped to a recipient: the ephemeral public key (the JWE's `epk`) and the
/// JWE's `encrypted_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseWrapped {
    /// The ephemeral public key: X25519's 32 bytes, or P-256 SEC1 uncompressed.
    pub epk: Vec<u8>,
    /// AES Key Wrap of the content key.
    pub encrypted_key: Vec<u8>,
}

/// Wraps `cek` to `recipient` (a public key on `curve`) with `ECDH-ES+A256KW`. `ephemeral` is
/// 32 fresh random bytes for the ephemeral key (drawn again by the caller when they are not
/// a P-256 scalar).
pub fn jose_wrap(
    curve: Curve,
    recipient: &[u8],
    cek: &[u8],
    apu: &[u8],
    apv: &[u8],
    ephemeral: &[u8; 32],
) -> Result<JoseWrapped, KeyringError> {
    check_cek(cek.len())?;
    let private = PrivateKey::from_private_key(curve.algorithm(), ephemeral)
        .map_err(|_| KeyringError::Randomness("32 random bytes that are not a key of the curve".into()))?;
    let epk = private.compute_public_key().map_err(|_| KeyringError::Randomness("no ephemeral public key".into()))?;
    let z = ecdh(&private, curve, recipient)?;
    let kek = concat_kdf(&z, apu, apv);
    let mut encrypted_key = vec![0u8; cek.len() + 8];
    let kek = KeyEncryptionKey::new(&AES_256, kek.as_ref()).map_err(|_| KeyringError::BadInput("AES-KW key".into()))?;
    let written = kek
        .wrap(cek, &mut encrypted_key)
        .map_err(|_| KeyringError::BadInput("AES Key Wrap refused the content key".into()))?
        .len();
    encrypted_key.truncate(written);
    Ok(JoseWrapped { epk: epk.as_ref().to_vec(), encrypted_key })
}

/// Opens a content key wrapped to `material` with `ECDH-ES+A256KW`: `epk` is the JWE's
/// ephemeral public key, `encrypted_key` its `encrypted_key`.
pub fn jose_unwrap(
    material: &KeyMaterial,
    epk: &[u8],
    encrypted_key: &[u8],
    apu: &[u8],
    apv: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    let (private, curve) = agreement_key(material)?;
    if encrypted_key.len() < 24 || !encrypted_key.len().is_multiple_of(8) || encrypted_key.len() > MAX_CEK_LEN + 8 {
        return Err(KeyringError::BadInput(format!(
            "an AES Key Wrap of a content key is 24 to {} bytes in steps of 8, not {}",
            MAX_CEK_LEN + 8,
            encrypted_key.len()
        )));
    }
    let z = ecdh(&private, curve, epk)?;
    let kek = concat_kdf(&z, apu, apv);
    let kek = KeyEncryptionKey::new(&AES_256, kek.as_ref()).map_err(|_| KeyringError::BadInput("AES-KW key".into()))?;
    let mut cek = Zeroizing::new(vec![0u8; encrypted_key.len()]);
    let opened = kek.unwrap(encrypted_key, &mut cek).map_err(|_| KeyringError::UnwrapFailed)?.len();
    cek.truncate(opened);
    Ok(cek)
}

fn check_cek(len: usize) -> Result<(), KeyringError> {
    if !(16..=MAX_CEK_LEN).contains(&len) || !len.is_multiple_of(8) {
        return Err(KeyringError::BadInput(format!(
            "a content key is 16 to {MAX_CEK_LEN} bytes in steps of 8 (AES Key Wrap), not {len}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
