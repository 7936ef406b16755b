//! The keyring's state machine, driven without sockets or KMS: an in-memory stand-in for KMS
//! that binds each data key to its encryption context (as KMS does) and can be told to refuse
//! `Decrypt`.

use keyward_proto::{
    Digest, KeyFlags, KeyName, KeyType, KeyVersion, MessageHash, Origin, SignAlgorithm, SignFormat, SignPayload,
};

use super::*;
use crate::memory::{MEMORY_KMS_ARN as ARN, MemoryKms as FakeKms, OsRandom, test_credentials};

pub(super) fn keyring() -> Keyring<FakeKms> {
    Keyring::new(
        FakeKms::default(),
        Arc::new(OsRandom),
        crate::Pinned { key_id: ARN.into(), region: "us-east-1".into() },
        16,
    )
    .unwrap()
}

fn credentials() -> AwsCredentials {
    test_credentials()
}

fn identity(name: &str, key_type: KeyType) -> KeyIdentity {
    KeyIdentity {
        name: KeyName::parse(name).unwrap(),
        version: KeyVersion::FIRST,
        key_type,
        flags: KeyFlags { exportable: false, origin: Origin::Generated },
    }
}

pub(super) fn sign_request(row: &WrappedKey) -> KeySign {
    KeySign {
        row: row.clone(),
        algorithm: SignAlgorithm::Ecdsa,
        payload: SignPayload::Digest(Digest([7; 32])),
        format: SignFormat::Compact,
        auth: None,
    }
}

pub(super) async fn ready(keyring: &Keyring<FakeKms>) -> SealedRoot {
    let sealed = keyring.provision_root(ARN, "us-east-1", &credentials()).await.unwrap();
    keyring.commit_root(sealed.root_id, 1).await.unwrap();
    sealed
}

pub(super) fn verifies(row: &WrappedKey, signature: &KeySignature) -> bool {
    keyward_keyring::verify(
        row.identity.key_type,
        &row.public_key,
        SignAlgorithm::Ecdsa,
        keyward_keyring::SignInput::Digest(&[7; 32]),
        SignFormat::Compact,
        &signature.signature,
    )
    .unwrap()
}

#[tokio::test]
async fn no_key_is_made_or_used_before_the_root_is_committed() {
    let keyring = keyring();
    let err = keyring.create(&[identity("k", KeyType::Secp256k1)]).unwrap_err();
    assert_eq!(err.code, ErrorCode::KeyringNotReady);
    let sealed = keyring.provision_root(ARN, "us-east-1", &credentials()).await.unwrap();
    assert_eq!(keyring.status().phase, KeyringPhase::AwaitingCommit);
    assert_eq!(keyring.create(&[identity("k", KeyType::Secp256k1)]).unwrap_err().code, ErrorCode::KeyringNotReady);
    assert_eq!(keyring.commit_root(RootId([0; 16]), 1).await.unwrap_err().code, ErrorCode::BadRequest, "another root");
    keyring.commit_root(sealed.root_id, 1).await.unwrap();
    let rows = keyring.create(&[identity("k", KeyType::Secp256k1)]).unwrap();
    assert!(verifies(&rows[0], &keyring.sign(&sign_request(&rows[0])).unwrap()));
    assert_eq!(
        keyring.provision_root(ARN, "us-east-1", &credentials()).await.unwrap_err().code,
        ErrorCode::AlreadyProvisioned,
        "a committed root is never replaced"
    );
}

#[tokio::test]
async fn a_second_enclave_unseals_the_same_root_and_uses_the_first_ones_keys() {
    let first = keyring();
    let sealed = ready(&first).await;
    let rows = first.create(&[identity("a", KeyType::Secp256k1), identity("b", KeyType::P256)]).unwrap();
    let second = keyring();
    let status = second.unseal_root(&sealed, &credentials()).await.unwrap();
    assert_eq!((status.phase, status.root_id), (KeyringPhase::Ready, Some(sealed.root_id)));
    for row in &rows {
        assert!(verifies(row, &second.sign(&sign_request(row)).unwrap()), "{}", row.identity.name);
    }
    // Unsealing again is idempotent; another root is refused while one is loaded.
    second.unseal_root(&sealed, &credentials()).await.unwrap();
    let other = ready(&keyring()).await;
    assert_eq!(second.unseal_root(&other, &credentials()).await.unwrap_err().code, ErrorCode::AlreadyProvisioned);
}

#[tokio::test]
async fn a_root_that_would_not_open_is_never_handed_out() {
    let keyring = keyring();
    keyring.data_keys.deny_decrypt(true);
    let err = keyring.provision_root(ARN, "us-east-1", &credentials()).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::RoundTripFailed);
    assert_eq!(keyring.status().phase, KeyringPhase::Empty, "nothing was kept");
}

#[tokio::test]
async fn root_rotation_proves_the_new_row_and_keeps_every_key() {
    let keyring = keyring();
    let sealed = ready(&keyring).await;
    let rows = keyring.create(&[identity("k", KeyType::Ed25519)]).unwrap();
    let rotated = keyring.rotate_root(&sealed, &credentials()).await.unwrap();
    assert_eq!((rotated.root_id, rotated.root_epoch), (sealed.root_id, 2));
    assert_ne!(rotated.kms_encrypted_dek, sealed.kms_encrypted_dek, "a new data key");
    assert_eq!(keyring.status().root_epoch, Some(1), "until committed");
    keyring.commit_root(sealed.root_id, 2).await.unwrap();
    assert_eq!(keyring.status().root_epoch, Some(2));
    // Another enclave opens the rotated row, and the key from before still signs there.
    let other = self::keyring();
    other.unseal_root(&rotated, &credentials()).await.unwrap();
    let request = KeySign {
        row: rows[0].clone(),
        algorithm: SignAlgorithm::Ed25519,
        payload: SignPayload::Message { bytes: b"after rotation".to_vec(), hash: MessageHash::None },
        format: SignFormat::Compact,
        auth: None,
    };
    other.sign(&request).unwrap();
    // A rotation must start from the loaded epoch; with Decrypt refused it stores nothing.
    assert_eq!(keyring.rotate_root(&sealed, &credentials()).await.unwrap_err().code, ErrorCode::BadRequest);
    keyring.data_keys.deny_decrypt(true);
    assert_eq!(keyring.rotate_root(&rotated, &credentials()).await.unwrap_err().code, ErrorCode::RoundTripFailed);
}

#[tokio::test]
async fn a_tampered_root_row_does_not_open_and_says_why() {
    let sealed = ready(&keyring()).await;
    let cases: Vec<(&str, SealedRoot, ErrorCode)> = vec![
        (
            "data key ciphertext",
            SealedRoot {
                kms_encrypted_dek: {
                    let mut b = sealed.kms_encrypted_dek.clone();
                    b[20] ^= 1;
                    b
                },
                ..sealed.clone()
            },
            ErrorCode::KmsInvalidCiphertext,
        ),
        (
            "sealed root",
            SealedRoot {
                sealed_root: {
                    let mut b = sealed.sealed_root.clone();
                    b[20] ^= 1;
                    b
                },
                ..sealed.clone()
            },
            ErrorCode::RootDoesNotOpen,
        ),
        (
            "root id (in the KMS context)",
            SealedRoot { root_id: RootId([9; 16]), ..sealed.clone() },
            ErrorCode::KmsInvalidCiphertext,
        ),
        ("epoch (in the KMS context)", SealedRoot { root_epoch: 2, ..sealed.clone() }, ErrorCode::KmsInvalidCiphertext),
        (
            "KMS key",
            SealedRoot { kms_key_id: ARN.replace("1234abcd", "0000abcd"), ..sealed.clone() },
            ErrorCode::ConfigMismatch,
        ),
        (
            "truncated",
            SealedRoot { sealed_root: sealed.sealed_root[..40].to_vec(), ..sealed.clone() },
            ErrorCode::RootDoesNotOpen,
        ),
    ];
    for (what, tampered, code) in cases {
        let fresh = keyring();
        assert_eq!(fresh.unseal_root(&tampered, &credentials()).await.unwrap_err().code, code, "{what}");
        assert_eq!(fresh.status().phase, KeyringPhase::Empty, "{what}");
    }
}

#[tokio::test]
async fn rows_of_another_root_or_moved_rows_are_refused_with_their_codes() {
    let keyring = keyring();
    ready(&keyring).await;
    let row = keyring.create(&[identity("k", KeyType::Secp256k1)]).unwrap().remove(0);
    let foreign = self::keyring();
    ready(&foreign).await;
    assert_eq!(foreign.sign(&sign_request(&row)).unwrap_err().code, ErrorCode::WrongKeyringRoot);
    let mut renamed = row.clone();
    renamed.identity.name = KeyName::parse("other").unwrap();
    assert_eq!(keyring.sign(&sign_request(&renamed)).unwrap_err().code, ErrorCode::KeyRowDoesNotOpen);
    let mut cut = row.clone();
    cut.wrapped.pop();
    assert_eq!(keyring.sign(&sign_request(&cut)).unwrap_err().code, ErrorCode::KeyRowDamaged);
    let symmetric = keyring.create(&[identity("aes", KeyType::Aes256Gcm)]).unwrap().remove(0);
    assert_eq!(keyring.sign(&sign_request(&symmetric)).unwrap_err().code, ErrorCode::NotASigningKey);
}

#[tokio::test]
async fn provisioning_under_another_kms_key_or_region_is_refused_and_batches_are_bounded() {
    let keyring = keyring();
    let other = ARN.replace("1234abcd", "0000abcd");
    assert_eq!(
        keyring.provision_root(&other, "us-east-1", &credentials()).await.unwrap_err().code,
        ErrorCode::ConfigMismatch
    );
    assert_eq!(
        keyring.provision_root(ARN, "eu-west-1", &credentials()).await.unwrap_err().code,
        ErrorCode::ConfigMismatch
    );
    ready(&keyring).await;
    assert_eq!(keyring.create(&[]).unwrap_err().code, ErrorCode::BadRequest);
    let too_many: Vec<_> = (0..=MAX_KEYS_PER_BATCH).map(|i| identity(&format!("k{i}"), KeyType::Ed25519)).collect();
    assert_eq!(keyring.create(&too_many).unwrap_err().code, ErrorCode::BadRequest);
    assert_eq!(keyring.create(&too_many[..MAX_KEYS_PER_BATCH]).unwrap().len(), MAX_KEYS_PER_BATCH);
}

#[tokio::test]
async fn a_hot_key_is_unwrapped_once() {
    let keyring = keyring();
    ready(&keyring).await;
    let row = keyring.create(&[identity("hot", KeyType::Secp256k1)]).unwrap().remove(0);
    for _ in 0..5 {
        keyring.sign(&sign_request(&row)).unwrap();
    }
    assert_eq!(keyring.cache.len(), 1);
}

#[tokio::test]
async fn a_secret_key_seals_and_opens_a_callers_secret_bound_to_its_identity_and_a_bip32_key_signs() {
    use keyward_proto::{CryptOp, CryptOutput, KeyCrypt, SecretBytes};
    let keyring = keyring();
    ready(&keyring).await;
    let rows = keyring.create(&[identity("prv", KeyType::Secret), identity("xkey", KeyType::Bip32)]).unwrap();
    let (secret_row, bip32_row) = (&rows[0], &rows[1]);
    assert!(secret_row.public_key.is_empty());
    assert_eq!(bip32_row.public_key.len(), 65, "master key and chain code");
    let crypt = |row: &WrappedKey, op: CryptOp| keyring.crypt(&KeyCrypt { row: row.clone(), op, auth: None });
    let seal = CryptOp::SealSecret {
        secret: SecretBytes::new(b"xprv9s21ZrQH143K".to_vec()),
        associated_data: b"user".to_vec(),
    };
    let Ok(CryptOutput::Ciphertext(sealed)) = crypt(secret_row, seal) else { panic!("sealed") };
    let open =
        |ad: &[u8]| crypt(secret_row, CryptOp::OpenSecret { sealed: sealed.clone(), associated_data: ad.to_vec() });
    let Ok(CryptOutput::Plaintext(opened)) = open(b"user") else { panic!("opened") };
    assert_eq!(opened.expose(), b"xprv9s21ZrQH143K");
    assert_eq!(open(b"backup").unwrap_err().code, ErrorCode::DecryptionFailed);
    // Neither the generic decryption nor another type opens a sealed secret.
    let decrypt = CryptOp::Decrypt { ciphertext: sealed.clone(), associated_data: b"user".to_vec() };
    assert_eq!(crypt(secret_row, decrypt).unwrap_err().code, ErrorCode::UnsupportedOperation);
    let aes = keyring.create(&[identity("aes", KeyType::Aes256Gcm)]).unwrap().remove(0);
    let on_aes = CryptOp::OpenSecret { sealed, associated_data: b"user".to_vec() };
    assert_eq!(crypt(&aes, on_aes).unwrap_err().code, ErrorCode::UnsupportedOperation);
    // A BIP32 key signs with its master key; a secret does not sign.
    let signature = keyring.sign(&sign_request(bip32_row)).unwrap();
    assert!(verifies(bip32_row, &signature));
    assert_eq!(keyring.sign(&sign_request(secret_row)).unwrap_err().code, ErrorCode::NotASigningKey);
}
