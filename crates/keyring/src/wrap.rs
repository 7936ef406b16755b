//! Key versions wrapped under the keyring root: AES-256-GCM, with an AAD that binds the row to
//! everything that says which key it is. A row moved to another name, version, type, flags,
//! public key or root does not open.
//!
//! ```text
//! blob = format (1) ‖ nonce (12) ‖ AES-256-GCM(root, secret (32)) ‖ tag (16)    61 bytes
//! AAD  = "keyward/keyring/key" ‖ format ‖ root id (16) ‖ name length (1) ‖ name
//!        ‖ version (4, BE) ‖ type code (1) ‖ flag bits (1) ‖ public key length (1) ‖ public key
//! ```
//!
//! On unwrap the public key is not derived again from the secret: the AAD already proves the
//! enclave wrapped this secret for this public key, and deriving it (an elliptic-curve
//! multiplication) would double the cost of using a key that is not in the cache.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use keyward_proto::{KeyIdentity, MAX_PUBLIC_KEY_LEN, RootId, WrappedKey};
use zeroize::Zeroizing;

use crate::{KeyMaterial, KeyringError, RootKey, material::SECRET_LEN};

/// Format version of wrapped key rows.
pub const WRAP_VERSION: u8 = 1;
/// Length of a wrapped key blob.
pub const WRAPPED_LEN: usize = 1 + NONCE_LEN + SECRET_LEN + TAG_LEN;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const AAD_LABEL: &[u8] = b"keyward/keyring/key";

fn aad(root_id: &RootId, identity: &KeyIdentity, public_key: &[u8]) -> Result<Vec<u8>, KeyringError> {
    let name = identity.name.as_str().as_bytes();
    if public_key.len() > MAX_PUBLIC_KEY_LEN {
        return Err(KeyringError::BadInput(format!("public key of {} bytes", public_key.len())));
    }
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 1 + 16 + 1 + name.len() + 7 + public_key.len());
    aad.extend_from_slice(AAD_LABEL);
    aad.push(WRAP_VERSION);
    aad.extend_from_slice(&root_id.0);
    // Fits: full names are at most 161 ASCII characters (`keyward_proto::MAX_FULL_KEY_NAME_LEN`).
    aad.push(name.len() as u8);
    aad.extend_from_slice(name);
    aad.extend_from_slice(&identity.version.get().to_be_bytes());
    aad.push(identity.key_type.code());
    aad.push(identity.flags.bits());
    // Fits: checked against MAX_PUBLIC_KEY_LEN above.
    aad.push(public_key.len() as u8);
    aad.extend_from_slice(public_key);
    Ok(aad)
}

/// Wraps `material` as the key version `identity` under `root`. `nonce` must be fresh
/// randomness (96 random bits per row; at a billion rows the chance of a repeat is below
/// 2^-36).
pub fn wrap(
    root: &RootKey,
    root_id: &RootId,
    identity: &KeyIdentity,
    material: &KeyMaterial,
    nonce: [u8; NONCE_LEN],
) -> Result<WrappedKey, KeyringError> {
    if material.key_type() != identity.key_type {
        return Err(KeyringError::BadInput(format!(
            "{} material cannot be wrapped as a {} key",
            material.key_type(),
            identity.key_type
        )));
    }
    let public_key = material.public_key().to_vec();
    let aad = aad(root_id, identity, &public_key)?;
    let secret = material.secret_bytes();
    let ciphertext = Aes256Gcm::new(root.bytes().into())
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.as_ref(), aad: &aad })
        // AES-GCM encryption fails only for inputs longer than 64 GiB.
        .map_err(|_| KeyringError::InvalidSecret(identity.key_type))?;
    let mut wrapped = Vec::with_capacity(WRAPPED_LEN);
    wrapped.push(WRAP_VERSION);
    wrapped.extend_from_slice(&nonce);
    wrapped.extend_from_slice(&ciphertext);
    Ok(WrappedKey { identity: identity.clone(), root_id: *root_id, public_key, wrapped })
}

/// Opens a stored row under `root` (whose id is `root_id`): the row must name that root,
/// and its name, version, type, flags and public key must be the ones it was wrapped with.
pub fn unwrap(root: &RootKey, root_id: &RootId, row: &WrappedKey) -> Result<KeyMaterial, KeyringError> {
    let name = || row.identity.name.to_string();
    if row.root_id != *root_id {
        return Err(KeyringError::WrongRoot { name: name(), row: row.root_id, loaded: *root_id });
    }
    if row.wrapped.len() != WRAPPED_LEN {
        return Err(KeyringError::RowDamaged {
            name: name(),
            reason: format!("wrapped key is {} bytes, expected {WRAPPED_LEN}", row.wrapped.len()),
        });
    }
    if row.wrapped[0] != WRAP_VERSION {
        return Err(KeyringError::RowDamaged { name: name(), reason: format!("format version {}", row.wrapped[0]) });
    }
    let (nonce, ciphertext) = row.wrapped[1..].split_at(NONCE_LEN);
    let aad = aad(root_id, &row.identity, &row.public_key)?;
    let plain = Zeroizing::new(
        Aes256Gcm::new(root.bytes().into())
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| KeyringError::RowDoesNotOpen { name: name(), version: row.identity.version.get() })?,
    );
    let secret: Zeroizing<[u8; SECRET_LEN]> = Zeroizing::new(
        plain
            .as_slice()
            .try_into()
            .map_err(|_| KeyringError::RowDamaged { name: name(), reason: "secret length".into() })?,
    );
    // The AAD authenticated the public key with the secret: no need to derive it again.
    KeyMaterial::from_authenticated(row.identity.key_type, &secret, &row.public_key)
}

#[cfg(test)]
mod tests {
    use keyward_proto::{KeyFlags, KeyName, KeyType, KeyVersion, Origin};

    use super::*;

    const ROOT_ID: RootId = RootId([0xaa; 16]);

    fn identity(name: &str, version: u32, key_type: KeyType) -> KeyIdentity {
        KeyIdentity {
            name: KeyName::parse(name).unwrap(),
            version: KeyVersion::new(version).unwrap(),
            key_type,
            flags: KeyFlags { exportable: false, origin: Origin::Generated },
        }
    }

    fn root() -> RootKey {
        RootKey::from_bytes([0x5e; 32])
    }

    fn wrapped(key_type: KeyType) -> (KeyMaterial, WrappedKey) {
        let material = KeyMaterial::generate(key_type, getrandom::fill).unwrap();
        let row = wrap(&root(), &ROOT_ID, &identity("wallet-1", 1, key_type), &material, [1; 12]).unwrap();
        (material, row)
    }

    #[test]
    fn every_type_wraps_and_unwraps_to_the_same_key() {
        for key_type in KeyType::ALL {
            let (material, row) = wrapped(key_type);
            assert_eq!(row.wrapped.len(), WRAPPED_LEN);
            assert_eq!(row.public_key, material.public_key());
            let back = unwrap(&root(), &ROOT_ID, &row).unwrap();
            assert_eq!(*back.secret_bytes(), *material.secret_bytes(), "{key_type}");
            assert_eq!(back.public_key(), material.public_key(), "{key_type}");
        }
    }

    #[test]
    fn an_unwrapped_secp256k1_key_signs_both_schemes_for_its_public_key() {
        use k256::ecdsa::signature::hazmat::PrehashVerifier;
        let (_, row) = wrapped(KeyType::Secp256k1);
        let back = unwrap(&root(), &ROOT_ID, &row).unwrap();
        let key = back.secp256k1().unwrap();
        let digest = [0x5a; 32];
        let (compact, _) = key.sign_ecdsa(&digest);
        let verifying = k256::ecdsa::VerifyingKey::from_sec1_bytes(&row.public_key).unwrap();
        let signature = k256::ecdsa::Signature::from_slice(&compact).unwrap();
        verifying.verify_prehash(&digest, &signature).unwrap();
        let schnorr = key.sign_bip340(&digest, &[7; 32]);
        let xonly = k256::schnorr::VerifyingKey::from_bytes(&row.public_key[1..]).unwrap();
        xonly.verify_raw(&digest, &k256::schnorr::Signature::try_from(&schnorr[..]).unwrap()).unwrap();
        assert_eq!(key.xonly_public_key(), row.public_key[1..]);
    }

    #[test]
    fn a_row_moved_to_another_identity_or_root_does_not_open() {
        let (_, row) = wrapped(KeyType::Secp256k1);
        let moved = |f: &dyn Fn(&mut WrappedKey)| {
            let mut changed = row.clone();
            f(&mut changed);
            unwrap(&root(), &ROOT_ID, &changed).unwrap_err()
        };
        let cases: Vec<(&str, KeyringError)> = vec![
            ("another name", moved(&|r| r.identity.name = KeyName::parse("wallet-2").unwrap())),
            ("another version", moved(&|r| r.identity.version = KeyVersion::new(2).unwrap())),
            ("another type", moved(&|r| r.identity.key_type = KeyType::P256)),
            ("exportable", moved(&|r| r.identity.flags.exportable = true)),
            ("imported", moved(&|r| r.identity.flags.origin = Origin::Imported)),
            ("another public key", moved(&|r| r.public_key[5] ^= 1)),
        ];
        for (what, err) in cases {
            assert!(matches!(err, KeyringError::RowDoesNotOpen { .. }), "{what}: {err}");
        }
        assert!(matches!(moved(&|r| r.root_id = RootId([0xbb; 16])), KeyringError::WrongRoot { .. }));
        let other_root = RootKey::from_bytes([0x5f; 32]);
        assert!(matches!(unwrap(&other_root, &ROOT_ID, &row), Err(KeyringError::RowDoesNotOpen { .. })));
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_of_the_blob_is_refused() {
        let (_, row) = wrapped(KeyType::Ed25519);
        for byte in 0..row.wrapped.len() {
            for bit in 0..8 {
                let mut changed = row.clone();
                changed.wrapped[byte] ^= 1 << bit;
                assert!(unwrap(&root(), &ROOT_ID, &changed).is_err(), "byte {byte} bit {bit}");
            }
        }
        for len in 0..row.wrapped.len() {
            let mut cut = row.clone();
            cut.wrapped.truncate(len);
            assert!(matches!(unwrap(&root(), &ROOT_ID, &cut), Err(KeyringError::RowDamaged { .. })), "{len}");
        }
    }

    #[test]
    fn material_of_one_type_is_not_wrapped_as_another() {
        let material = KeyMaterial::generate(KeyType::Ed25519, getrandom::fill).unwrap();
        let err = wrap(&root(), &ROOT_ID, &identity("k", 1, KeyType::Secp256k1), &material, [1; 12]).unwrap_err();
        assert!(matches!(err, KeyringError::BadInput(_)), "{err}");
    }
}
