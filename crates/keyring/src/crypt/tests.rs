//! Encryption and MACs, checked against independent implementations (RustCrypto's `aes-gcm`
//! and `hmac`) that rebuild the documented format.

use ::hmac::Mac as _;
use aes_gcm::{
    Aes256Gcm, KeyInit,
    aead::{Aead, Payload},
};

use super::*;

fn key(key_type: KeyType, byte: u8) -> KeyMaterial {
    KeyMaterial::from_secret(key_type, &[byte; 32]).unwrap()
}

fn name(s: &str) -> KeyName {
    KeyName::parse(s).unwrap()
}

fn v(n: u32) -> KeyVersion {
    KeyVersion::new(n).unwrap()
}

fn sealed() -> Vec<u8> {
    encrypt(&key(KeyType::Aes256Gcm, 1), &name("docs"), v(3), b"Hello World!", b"thread-7", [9; 12]).unwrap()
}

fn open(ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    decrypt(&key(KeyType::Aes256Gcm, 1), &name("docs"), ciphertext, b"thread-7")
}

#[test]
fn the_documented_format_is_what_another_implementation_opens() {
    let ciphertext = sealed();
    assert_eq!(ciphertext.len(), 12 + CIPHERTEXT_OVERHEAD);
    assert_eq!(&ciphertext[..5], &[1, 0, 0, 0, 3]);
    assert_eq!(&ciphertext[5..17], &[9; 12]);
    assert_eq!(ciphertext_version(&ciphertext).unwrap(), v(3));
    let aad = [&b"keyward encrypt v1\0"[..], &[4], b"docs", &ciphertext[..17], b"thread-7"].concat();
    let plaintext = Aes256Gcm::new(&[1u8; 32].into())
        .decrypt(ciphertext[5..17].into(), Payload { msg: &ciphertext[17..], aad: &aad })
        .unwrap();
    assert_eq!(plaintext, b"Hello World!");
    assert_eq!(open(&ciphertext).unwrap().as_slice(), b"Hello World!");
}

#[test]
fn empty_and_large_plaintexts_round_trip() {
    let material = key(KeyType::Aes256Gcm, 2);
    for plaintext in [Vec::new(), vec![0x5a; 1 << 20]] {
        let ciphertext = encrypt(&material, &name("k"), v(1), &plaintext, b"", [1; 12]).unwrap();
        assert_eq!(decrypt(&material, &name("k"), &ciphertext, b"").unwrap().as_slice(), plaintext.as_slice());
    }
}

#[test]
fn every_flipped_bit_is_refused() {
    let ciphertext = sealed();
    for byte in 0..ciphertext.len() {
        for bit in 0..8 {
            let mut altered = ciphertext.clone();
            altered[byte] ^= 1 << bit;
            match open(&altered) {
                Err(KeyringError::Ciphertext(_)) => {}
                other => panic!("byte {byte} bit {bit}: {other:?}"),
            }
        }
    }
}

#[test]
fn every_truncation_and_extension_is_refused() {
    let ciphertext = sealed();
    for len in 0..ciphertext.len() {
        let refused = open(&ciphertext[..len]).unwrap_err();
        let expected = if len < CIPHERTEXT_OVERHEAD { "Malformed" } else { "DoesNotOpen" };
        assert!(format!("{refused:?}").contains(expected), "{len}: {refused:?}");
    }
    let longer = [&ciphertext[..], &[0]].concat();
    assert!(matches!(open(&longer), Err(KeyringError::Ciphertext(CiphertextError::DoesNotOpen { .. }))));
}

#[test]
fn another_key_name_or_associated_data_does_not_open() {
    let ciphertext = sealed();
    let material = key(KeyType::Aes256Gcm, 1);
    let refused = |result: Result<Zeroizing<Vec<u8>>, KeyringError>| {
        matches!(result, Err(KeyringError::Ciphertext(CiphertextError::DoesNotOpen { .. })))
    };
    assert!(refused(decrypt(&material, &name("docs"), &ciphertext, b"thread-8")));
    assert!(refused(decrypt(&material, &name("docs"), &ciphertext, b"")));
    assert!(refused(decrypt(&material, &name("docs2"), &ciphertext, b"thread-7")));
    assert!(refused(decrypt(&material, &name("doct"), &ciphertext, b"thread-7")), "a name of the same length");
    assert!(refused(decrypt(&key(KeyType::Aes256Gcm, 2), &name("docs"), &ciphertext, b"thread-7")));
    let mut other_format = ciphertext.clone();
    other_format[0] = 2;
    assert!(matches!(open(&other_format), Err(KeyringError::Ciphertext(CiphertextError::Malformed(_)))));
}

#[test]
fn only_aes_keys_encrypt_and_only_hmac_keys_make_macs() {
    for key_type in KeyType::ALL {
        let material = KeyMaterial::generate(key_type, getrandom::fill).unwrap();
        let encrypts = encrypt(&material, &name("k"), v(1), b"x", b"", [0; 12]);
        assert_eq!(encrypts.is_ok(), key_type == KeyType::Aes256Gcm, "{key_type}");
        let macs = mac(&material, b"x");
        assert_eq!(macs.is_ok(), key_type == KeyType::HmacSha256, "{key_type}");
        if key_type != KeyType::Aes256Gcm {
            assert!(matches!(encrypts, Err(KeyringError::UnsupportedOperation(_))), "{key_type}");
        }
    }
}

#[test]
fn macs_are_hmac_sha256_and_verify_in_constant_time() {
    let material = key(KeyType::HmacSha256, 7);
    let tag = mac(&material, b"message").unwrap();
    let mut independent = <::hmac::Hmac<sha2::Sha256> as ::hmac::Mac>::new_from_slice(&[7; 32]).unwrap();
    independent.update(b"message");
    assert_eq!(tag.as_slice(), independent.finalize().into_bytes().as_slice());
    assert!(verify_mac(&material, b"message", &tag).unwrap());
    assert!(!verify_mac(&material, b"messagE", &tag).unwrap());
    assert!(!verify_mac(&material, b"message", &tag[..31]).unwrap());
    assert!(!verify_mac(&key(KeyType::HmacSha256, 8), b"message", &tag).unwrap());
}

#[test]
fn data_keys_of_each_spec_are_what_they_say() {
    let (aes, public) = new_data_key(DataKeySpec::Aes256, getrandom::fill).unwrap();
    assert_eq!((aes.len(), public.len()), (32, 0));
    let (rsa, public) = new_data_key(DataKeySpec::Rsa2048, getrandom::fill).unwrap();
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&rsa).unwrap();
    assert_eq!(pair.public_modulus_len(), 256);
    assert!(public.len() > 256);
    let (ec, public) = new_data_key(DataKeySpec::P256, getrandom::fill).unwrap();
    use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
    let secret = p256::SecretKey::from_pkcs8_der(&ec).unwrap();
    assert_eq!(p256::PublicKey::from_public_key_der(&public).unwrap(), secret.public_key());
}

#[test]
fn only_secret_keys_seal_secrets_and_the_two_kinds_never_open_as_each_other() {
    for key_type in KeyType::ALL {
        let material = KeyMaterial::generate(key_type, getrandom::fill).unwrap();
        let sealed = seal_secret(&material, &name("k"), v(1), b"xprv", b"", [0; 12]);
        assert_eq!(sealed.is_ok(), key_type == KeyType::Secret, "{key_type}");
    }
    let secret_key = KeyMaterial::from_secret(KeyType::Secret, &[5; 32]).unwrap();
    let aes_key = KeyMaterial::from_secret(KeyType::Aes256Gcm, &[5; 32]).unwrap();
    let sealed = seal_secret(&secret_key, &name("k"), v(1), b"xprv9s21Z", b"user\0xpub", [3; 12]).unwrap();
    assert_eq!(*open_secret(&secret_key, &name("k"), &sealed, b"user\0xpub").unwrap(), b"xprv9s21Z");
    assert!(open_secret(&secret_key, &name("k"), &sealed, b"backup\0xpub").is_err(), "bound to its identity");
    assert!(open_secret(&secret_key, &name("j"), &sealed, b"user\0xpub").is_err(), "bound to its key's name");
    // Same key bytes, same format: only the label keeps an encryption from opening as a
    // sealed secret and the other way round.
    let encrypted = encrypt(&aes_key, &name("k"), v(1), b"xprv9s21Z", b"user\0xpub", [3; 12]).unwrap();
    assert_eq!(encrypted[..17], sealed[..17], "same header");
    assert!(open_secret(&secret_key, &name("k"), &encrypted, b"user\0xpub").is_err());
    assert!(decrypt(&aes_key, &name("k"), &sealed, b"user\0xpub").is_err());
}
