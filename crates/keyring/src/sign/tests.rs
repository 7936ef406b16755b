//! Every scheme and format, verified by another implementation than the one that signed
//! (`k256` for secp256k1, aws-lc-rs for P-256, `ed25519-dalek` for Ed25519), and by `verify`.

use super::*;

const AUX: [u8; 32] = [9; 32];

fn material(key_type: KeyType) -> KeyMaterial {
    KeyMaterial::generate(key_type, getrandom::fill).unwrap()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
    out
}

#[test]
fn secp256k1_ecdsa_in_every_format_verifies_with_k256_and_recovers_the_key() {
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey, signature::hazmat::PrehashVerifier};
    let key = material(KeyType::Secp256k1);
    let k256_key = VerifyingKey::from_sec1_bytes(key.public_key()).unwrap();
    let message = b"transfer 1 BTC";
    let keccak: [u8; 32] = Keccak256::digest(message).into();
    for (input, digest) in [
        (SignInput::Digest(&[0x11; 32]), [0x11; 32]),
        (SignInput::Message { bytes: message, hash: MessageHash::Sha256 }, sha256(message)),
        (SignInput::Message { bytes: message, hash: MessageHash::Keccak256 }, keccak),
    ] {
        for format in [SignFormat::Compact, SignFormat::Der, SignFormat::Ethereum] {
            let signed = sign(&key, SignAlgorithm::Ecdsa, input, format, &AUX).unwrap();
            let id = signed.recovery_id.expect("secp256k1 ECDSA has a recovery id");
            let sig = match format {
                SignFormat::Compact => Signature::from_slice(&signed.signature).unwrap(),
                SignFormat::Der => Signature::from_der(&signed.signature).unwrap(),
                SignFormat::Ethereum => {
                    assert_eq!(signed.signature.len(), 65);
                    assert_eq!(signed.signature[64], 27 + id, "v = 27 + recovery id");
                    Signature::from_slice(&signed.signature[..64]).unwrap()
                }
            };
            assert!(sig.normalize_s().is_none(), "low-S");
            k256_key.verify_prehash(&digest, &sig).unwrap();
            let recovered =
                VerifyingKey::recover_from_prehash(&digest, &sig, RecoveryId::from_byte(id).unwrap()).unwrap();
            assert_eq!(recovered, k256_key, "{format:?}: the recovery id names the key");
            assert!(
                verify(KeyType::Secp256k1, key.public_key(), SignAlgorithm::Ecdsa, input, format, &signed.signature)
                    .unwrap()
            );
        }
    }
}

#[test]
fn secp256k1_bip340_verifies_with_k256() {
    use k256::schnorr::{Signature, VerifyingKey, signature::hazmat::PrehashVerifier};
    let key = material(KeyType::Secp256k1);
    let signed = sign(&key, SignAlgorithm::Bip340, SignInput::Digest(&[0x22; 32]), SignFormat::Compact, &AUX).unwrap();
    assert_eq!(signed.recovery_id, None);
    let xonly = VerifyingKey::from_bytes(&key.public_key()[1..]).unwrap();
    xonly.verify_prehash(&[0x22; 32], &Signature::try_from(signed.signature.as_slice()).unwrap()).unwrap();
    let input = SignInput::Digest(&[0x22; 32]);
    assert!(
        verify(
            KeyType::Secp256k1,
            key.public_key(),
            SignAlgorithm::Bip340,
            input,
            SignFormat::Compact,
            &signed.signature
        )
        .unwrap()
    );
    assert!(sign(&key, SignAlgorithm::Bip340, input, SignFormat::Der, &AUX).is_err(), "BIP340 has no DER form");
}

#[test]
fn p256_ecdsa_verifies_with_aws_lc_over_the_message() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    let key = material(KeyType::P256);
    let message = b"attested p256";
    // aws-lc-rs verifies a message (hashing it with SHA-256 itself): sign its SHA-256 digest,
    // and the message hashed here, both ways.
    for input in [SignInput::Digest(&sha256(message)), SignInput::Message { bytes: message, hash: MessageHash::Sha256 }]
    {
        for (format, algorithm) in
            [(SignFormat::Compact, &ECDSA_P256_SHA256_FIXED), (SignFormat::Der, &ECDSA_P256_SHA256_ASN1)]
        {
            let signed = sign(&key, SignAlgorithm::Ecdsa, input, format, &AUX).unwrap();
            assert_eq!(signed.recovery_id, None);
            UnparsedPublicKey::new(algorithm, key.public_key()).verify(message, &signed.signature).unwrap();
            assert!(
                verify(KeyType::P256, key.public_key(), SignAlgorithm::Ecdsa, input, format, &signed.signature)
                    .unwrap()
            );
        }
    }
    assert!(sign(&key, SignAlgorithm::Ecdsa, SignInput::Digest(&[1; 32]), SignFormat::Ethereum, &AUX).is_err());
}

#[test]
fn ed25519_signs_the_message_itself_and_verifies_with_dalek() {
    let key = material(KeyType::Ed25519);
    let message = b"an ed25519 message of any length";
    let input = SignInput::Message { bytes: message, hash: MessageHash::None };
    let signed = sign(&key, SignAlgorithm::Ed25519, input, SignFormat::Compact, &AUX).unwrap();
    let dalek = ed25519_dalek::VerifyingKey::from_bytes(key.public_key().try_into().unwrap()).unwrap();
    dalek.verify_strict(message, &ed25519_dalek::Signature::from_slice(&signed.signature).unwrap()).unwrap();
    assert!(
        verify(
            KeyType::Ed25519,
            key.public_key(),
            SignAlgorithm::Ed25519,
            input,
            SignFormat::Compact,
            &signed.signature
        )
        .unwrap()
    );
    let digest = SignInput::Digest(&[3; 32]);
    assert!(matches!(
        sign(&key, SignAlgorithm::Ed25519, digest, SignFormat::Compact, &AUX),
        Err(KeyringError::BadInput(_))
    ));
    assert!(matches!(
        sign(&key, SignAlgorithm::Ecdsa, input, SignFormat::Compact, &AUX),
        Err(KeyringError::UnsupportedScheme(_))
    ));
}

#[test]
fn a_changed_message_key_or_signature_does_not_verify() {
    for (key_type, algorithm) in [
        (KeyType::Secp256k1, SignAlgorithm::Ecdsa),
        (KeyType::Secp256k1, SignAlgorithm::Bip340),
        (KeyType::P256, SignAlgorithm::Ecdsa),
        (KeyType::Ed25519, SignAlgorithm::Ed25519),
    ] {
        let key = material(key_type);
        let other = material(key_type);
        let hash = if key_type == KeyType::Ed25519 { MessageHash::None } else { MessageHash::Sha256 };
        let input = SignInput::Message { bytes: b"original", hash };
        let changed = SignInput::Message { bytes: b"originaL", hash };
        let signed = sign(&key, algorithm, input, SignFormat::Compact, &AUX).unwrap();
        let check = |public_key: &[u8], input, signature: &[u8]| {
            verify(key_type, public_key, algorithm, input, SignFormat::Compact, signature).unwrap()
        };
        assert!(check(key.public_key(), input, &signed.signature), "{key_type} {algorithm:?}");
        assert!(!check(key.public_key(), changed, &signed.signature), "{key_type}: another message");
        assert!(!check(other.public_key(), input, &signed.signature), "{key_type}: another key");
        let mut flipped = signed.signature.clone();
        flipped[10] ^= 1;
        assert!(!check(key.public_key(), input, &flipped), "{key_type}: a flipped bit");
    }
}

#[test]
fn a_high_s_secp256k1_signature_does_not_verify() {
    let key = material(KeyType::Secp256k1);
    let input = SignInput::Digest(&[5; 32]);
    let signed = sign(&key, SignAlgorithm::Ecdsa, input, SignFormat::Compact, &AUX).unwrap();
    // s' = n - s verifies mathematically but is not the canonical form.
    let sig = k256::ecdsa::Signature::from_slice(&signed.signature).unwrap();
    let (r, s) = sig.split_scalars();
    let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    assert!(
        !verify(
            KeyType::Secp256k1,
            key.public_key(),
            SignAlgorithm::Ecdsa,
            input,
            SignFormat::Compact,
            &high.to_bytes()
        )
        .unwrap()
    );
}

#[test]
fn symmetric_keys_do_not_sign_and_oversized_or_unhashed_inputs_are_refused() {
    for key_type in [KeyType::Aes256Gcm, KeyType::HmacSha256, KeyType::Secret] {
        let key = material(key_type);
        let err = sign(&key, SignAlgorithm::Ecdsa, SignInput::Digest(&[1; 32]), SignFormat::Compact, &AUX).unwrap_err();
        assert!(matches!(err, KeyringError::NotASigningKey(t) if t == key_type), "{err}");
    }
    let key = material(KeyType::Secp256k1);
    let short = SignInput::Message { bytes: b"not 32 bytes", hash: MessageHash::None };
    assert!(matches!(
        sign(&key, SignAlgorithm::Ecdsa, short, SignFormat::Compact, &AUX),
        Err(KeyringError::BadInput(_))
    ));
    let huge = vec![0u8; MAX_MESSAGE_LEN + 1];
    let huge = SignInput::Message { bytes: &huge, hash: MessageHash::Sha256 };
    assert!(matches!(
        sign(&key, SignAlgorithm::Ecdsa, huge, SignFormat::Compact, &AUX),
        Err(KeyringError::MessageTooLarge { len, max: MAX_MESSAGE_LEN }) if len == MAX_MESSAGE_LEN + 1
    ));
}

/// `check_request` (what the gateway checks without the key) accepts exactly what `sign`
/// can do, for every type, scheme, format and kind of payload.
#[test]
fn check_request_agrees_with_sign_everywhere() {
    let digest = [9u8; 32];
    let inputs = [
        SignInput::Digest(&digest),
        SignInput::Message { bytes: b"a message", hash: MessageHash::Sha256 },
        SignInput::Message { bytes: b"a message", hash: MessageHash::Keccak256 },
        SignInput::Message { bytes: b"a message", hash: MessageHash::None },
        SignInput::Message { bytes: &digest, hash: MessageHash::None },
    ];
    let mut accepted = 0;
    for key_type in KeyType::ALL {
        let key = material(key_type);
        for algorithm in [SignAlgorithm::Ecdsa, SignAlgorithm::Bip340, SignAlgorithm::Ed25519] {
            for format in [SignFormat::Compact, SignFormat::Der, SignFormat::Ethereum] {
                for input in inputs {
                    let checked = check_request(key_type, algorithm, input, format);
                    let signed = sign(&key, algorithm, input, format, &AUX);
                    assert_eq!(
                        checked.is_ok(),
                        signed.is_ok(),
                        "{key_type} {algorithm:?} {format:?} {input:?}: {checked:?} vs {:?}",
                        signed.as_ref().err()
                    );
                    if let (Err(a), Err(b)) = (&checked, &signed) {
                        assert_eq!(std::mem::discriminant(a), std::mem::discriminant(b), "{a} vs {b}");
                    }
                    accepted += usize::from(checked.is_ok());
                }
            }
        }
    }
    // secp256k1 ECDSA: 3 formats x 4 payloads of 32 bytes; BIP340: 4; P-256: 2 x 4; Ed25519: 2;
    // BIP32 ECDSA as secp256k1's: 12.
    assert_eq!(accepted, 12 + 4 + 8 + 2 + 12);
}

#[test]
fn a_bip32_key_signs_ethereum_hashes_with_its_master_key_as_bitgo_expects() {
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
    let key = material(KeyType::Bip32);
    let hash = [0x5c; 32];
    let signed = sign(&key, SignAlgorithm::Ecdsa, SignInput::Digest(&hash), SignFormat::Ethereum, &AUX).unwrap();
    assert_eq!(signed.signature.len(), 65);
    let v = signed.signature[64];
    assert!(v == 27 || v == 28, "v is 27 or 28: {v}");
    let signature = Signature::from_slice(&signed.signature[..64]).unwrap();
    assert!(signature.normalize_s().is_none(), "low-S");
    let recovered =
        VerifyingKey::recover_from_prehash(&hash, &signature, RecoveryId::from_byte(v - 27).unwrap()).unwrap();
    assert_eq!(recovered.to_sec1_bytes().as_ref(), &key.public_key()[..33], "the master key signed");
    assert!(
        verify(
            KeyType::Bip32,
            key.public_key(),
            SignAlgorithm::Ecdsa,
            SignInput::Digest(&hash),
            SignFormat::Ethereum,
            &signed.signature
        )
        .unwrap()
    );
    let bip340 = sign(&key, SignAlgorithm::Bip340, SignInput::Digest(&hash), SignFormat::Compact, &AUX);
    assert!(matches!(bip340, Err(KeyringError::UnsupportedScheme(_))), "{bip340:?}");
}
