//! Encryption with associated data, data keys and MACs with keyring keys.
//!
//! A ciphertext describes itself, so a key's older versions keep decrypting after rotation:
//!
//! ```text
//! byte 0       format (1)
//! bytes 1..5   key version, big-endian
//! bytes 5..17  AES-GCM nonce (96 bits, random)
//! bytes 17..   AES-256-GCM ciphertext, then its 16-byte tag
//! ```
//!
//! The GCM associated data is a domain label, the key's name, the 17-byte header and the
//! caller's associated data, so a ciphertext opens only under the key version it names, with
//! the caller's exact associated data, and its header cannot be edited.

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    hmac,
};
use keyward_proto::{DataKeySpec, KeyName, KeyType, KeyVersion};
use zeroize::Zeroizing;

use crate::{KeyMaterial, KeyringError};

/// The ciphertext format this build writes.
pub const CIPHERTEXT_FORMAT: u8 = 1;
/// Length of the header: format, key version, nonce.
pub const CIPHERTEXT_HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
/// Length of the GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes a ciphertext has beyond its plaintext.
pub const CIPHERTEXT_OVERHEAD: usize = CIPHERTEXT_HEADER_LEN + TAG_LEN;
/// Length of an HMAC-SHA256.
pub const MAC_LEN: usize = 32;

const DOMAIN: &[u8] = b"keyward encrypt v1\0";
/// Sealed secrets (`secret` keys) use the same format under another label: neither kind of
/// ciphertext opens as the other.
const SECRET_DOMAIN: &[u8] = b"keyward secret v1\0";

/// Why a ciphertext was refused, without saying more than a caller may learn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CiphertextError {
    /// Shorter than a header and a tag, or of a format this build does not read.
    #[error("{0}")]
    Malformed(String),
    /// Does not open: another key, other associated data, or altered.
    #[error(
        "the ciphertext does not decrypt under key {name} version {version} with this associated data (another key, other associated data, or altered)"
    )]
    DoesNotOpen {
        /// The key.
        name: String,
        /// The version the ciphertext names.
        version: u32,
    },
}

/// The key version a ciphertext names (read without any key: the header is not secret).
pub fn ciphertext_version(ciphertext: &[u8]) -> Result<KeyVersion, CiphertextError> {
    if ciphertext.len() < CIPHERTEXT_OVERHEAD {
        return Err(CiphertextError::Malformed(format!(
            "a ciphertext is at least {CIPHERTEXT_OVERHEAD} bytes, this one has {}",
            ciphertext.len()
        )));
    }
    if ciphertext[0] != CIPHERTEXT_FORMAT {
        return Err(CiphertextError::Malformed(format!(
            "ciphertext format {} is not one this build reads (it writes {CIPHERTEXT_FORMAT})",
            ciphertext[0]
        )));
    }
    let version = u32::from_be_bytes([ciphertext[1], ciphertext[2], ciphertext[3], ciphertext[4]]);
    KeyVersion::new(version).ok_or_else(|| CiphertextError::Malformed("the ciphertext names key version 0".into()))
}

fn aead_key(material: &KeyMaterial, expected: KeyType, operation: &str) -> Result<LessSafeKey, KeyringError> {
    let secret = match (material.key_type(), material.symmetric()) {
        (key_type, Some(secret)) if key_type == expected => secret,
        (other, _) => return Err(KeyringError::UnsupportedOperation(format!("a {other} key does not {operation}"))),
    };
    let key = UnboundKey::new(&AES_256_GCM, secret).map_err(|_| KeyringError::InvalidSecret(KeyType::Aes256Gcm))?;
    Ok(LessSafeKey::new(key))
}

fn gcm_aad(domain: &[u8], name: &KeyName, header: &[u8], associated_data: &[u8]) -> Vec<u8> {
    let name = name.as_str().as_bytes();
    let mut aad = Vec::with_capacity(domain.len() + 1 + name.len() + header.len() + associated_data.len());
    aad.extend_from_slice(domain);
    // Full names are at most 161 bytes (KeyName), so one length byte frames them.
    aad.push(name.len() as u8);
    aad.extend_from_slice(name);
    aad.extend_from_slice(header);
    aad.extend_from_slice(associated_data);
    aad
}

/// Encrypts `plaintext` with key `name` version `version` (an aes256-gcm key), binding
/// `associated_data`. `nonce` must be fresh random bytes.
pub fn encrypt(
    material: &KeyMaterial,
    name: &KeyName,
    version: KeyVersion,
    plaintext: &[u8],
    associated_data: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, KeyringError> {
    let key = aead_key(material, KeyType::Aes256Gcm, "encrypt")?;
    seal(&key, DOMAIN, name, version, plaintext, associated_data, nonce)
}

/// Seals a caller's secret with a `secret` key (the format of [`encrypt`], under its own
/// label), binding `associated_data` (the secret's identity at the front door).
pub fn seal_secret(
    material: &KeyMaterial,
    name: &KeyName,
    version: KeyVersion,
    secret: &[u8],
    associated_data: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, KeyringError> {
    let key = aead_key(material, KeyType::Secret, "seal secrets")?;
    seal(&key, SECRET_DOMAIN, name, version, secret, associated_data, nonce)
}

/// Opens what [`seal_secret`] sealed.
pub fn open_secret(
    material: &KeyMaterial,
    name: &KeyName,
    sealed: &[u8],
    associated_data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    let key = aead_key(material, KeyType::Secret, "open secrets")?;
    open(&key, SECRET_DOMAIN, name, sealed, associated_data)
}

fn seal(
    key: &LessSafeKey,
    domain: &[u8],
    name: &KeyName,
    version: KeyVersion,
    plaintext: &[u8],
    associated_data: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, KeyringError> {
    let mut out = Vec::with_capacity(CIPHERTEXT_OVERHEAD + plaintext.len());
    out.push(CIPHERTEXT_FORMAT);
    out.extend_from_slice(&version.get().to_be_bytes());
    out.extend_from_slice(&nonce);
    let aad = gcm_aad(domain, name, &out, associated_data);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_slice()),
            &mut out[CIPHERTEXT_HEADER_LEN..],
        )
        .map_err(|_| KeyringError::BadInput("the plaintext is too large for AES-GCM".into()))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Decrypts a ciphertext made by [`encrypt`] with the key version it names (`material`, of
/// key `name`), checking `associated_data`. Returns nothing of the plaintext unless the tag
/// verifies.
pub fn decrypt(
    material: &KeyMaterial,
    name: &KeyName,
    ciphertext: &[u8],
    associated_data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    let key = aead_key(material, KeyType::Aes256Gcm, "decrypt")?;
    open(&key, DOMAIN, name, ciphertext, associated_data)
}

fn open(
    key: &LessSafeKey,
    domain: &[u8],
    name: &KeyName,
    ciphertext: &[u8],
    associated_data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    let version = ciphertext_version(ciphertext).map_err(KeyringError::Ciphertext)?;
    let (header, sealed) = ciphertext.split_at(CIPHERTEXT_HEADER_LEN);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&header[5..]);
    let aad = gcm_aad(domain, name, header, associated_data);
    let mut buffer = Zeroizing::new(sealed.to_vec());
    let opened = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_slice()), buffer.as_mut_slice())
        .map_err(|_| {
            KeyringError::Ciphertext(CiphertextError::DoesNotOpen { name: name.to_string(), version: version.get() })
        })?
        .len();
    buffer.truncate(opened);
    Ok(buffer)
}

/// A new data key of `spec`: its secret (32 random bytes from `fill`, or a key pair's PKCS#8
/// DER private key) and, for a key pair, its public key (SPKI DER).
pub fn new_data_key<E: std::fmt::Display>(
    spec: DataKeySpec,
    mut fill: impl FnMut(&mut [u8]) -> Result<(), E>,
) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), KeyringError> {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
    let failed = |what: &str| KeyringError::Randomness(format!("cannot generate the {what} data key"));
    match spec {
        DataKeySpec::Aes256 => {
            let mut key = Zeroizing::new(vec![0u8; 32]);
            fill(&mut key).map_err(|e| KeyringError::Randomness(e.to_string()))?;
            Ok((key, Vec::new()))
        }
        DataKeySpec::Rsa2048 => {
            use aws_lc_rs::signature::KeyPair;
            let pair =
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| failed("RSA"))?;
            let private: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| failed("RSA"))?;
            let public: PublicKeyX509Der<'static> = pair.public_key().as_der().map_err(|_| failed("RSA"))?;
            Ok((Zeroizing::new(private.as_ref().to_vec()), public.as_ref().to_vec()))
        }
        DataKeySpec::P256 => {
            use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).map_err(|_| failed("P-256"))?;
            let private = pair.to_pkcs8v1().map_err(|_| failed("P-256"))?;
            let public: PublicKeyX509Der<'static> = pair.public_key().as_der().map_err(|_| failed("P-256"))?;
            Ok((Zeroizing::new(private.as_ref().to_vec()), public.as_ref().to_vec()))
        }
    }
}

fn mac_key(material: &KeyMaterial) -> Result<hmac::Key, KeyringError> {
    match (material.key_type(), material.symmetric()) {
        (KeyType::HmacSha256, Some(secret)) => Ok(hmac::Key::new(hmac::HMAC_SHA256, secret)),
        (other, _) => Err(KeyringError::UnsupportedOperation(format!("a {other} key does not make MACs"))),
    }
}

/// HMAC-SHA256 of `message` with an hmac-sha256 key.
pub fn mac(material: &KeyMaterial, message: &[u8]) -> Result<[u8; MAC_LEN], KeyringError> {
    let tag = hmac::sign(&mac_key(material)?, message);
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// Whether `tag` is the HMAC-SHA256 of `message`, compared in constant time.
pub fn verify_mac(material: &KeyMaterial, message: &[u8], tag: &[u8]) -> Result<bool, KeyringError> {
    Ok(hmac::verify(&mac_key(material)?, message, tag).is_ok())
}

#[cfg(test)]
mod tests;
