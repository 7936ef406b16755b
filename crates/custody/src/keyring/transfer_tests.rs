//! Import and export through the keyring: what the host can and cannot do with sealed
//! material on the way.

use keyward_keyring::{TransferKey, export_info, import_info, seal};
use keyward_proto::{
    ErrorCode, KeyExport, KeyFlags, KeyIdentity, KeyImport, KeyName, KeyType, KeyVersion, Origin, TransferSealed,
};
use zeroize::Zeroizing;

use super::tests::{keyring, ready};

const SECRET: [u8; 32] = [0x21; 32];

fn imported(name: &str, key_type: KeyType, exportable: bool) -> KeyIdentity {
    KeyIdentity {
        name: KeyName::parse(name).unwrap(),
        version: KeyVersion::FIRST,
        key_type,
        flags: KeyFlags { exportable, origin: Origin::Imported },
    }
}

/// What a client does: seal the secret to the enclave's transfer key for `identity`.
fn client_seal(transfer_public_key: &[u8; 32], identity: &KeyIdentity, secret: &[u8; 32]) -> KeyImport {
    let info = import_info(&identity.name, identity.key_type, identity.flags);
    let sealed = seal(transfer_public_key, &info, secret, Zeroizing::new([3; 32])).unwrap();
    KeyImport {
        identity: identity.clone(),
        transfer_public_key: transfer_public_key.to_vec(),
        sealed: TransferSealed { encapsulated_key: sealed.encapsulated_key, ciphertext: sealed.ciphertext },
        auth: None,
    }
}

#[tokio::test]
async fn an_imported_key_signs_as_the_secret_it_was_made_from() {
    let keyring = keyring();
    ready(&keyring).await;
    let identity = imported("imported", KeyType::Secp256k1, false);
    let row = keyring.import(&client_seal(&keyring.transfer_public_key(), &identity, &SECRET)).unwrap();
    assert_eq!(row.identity, identity);
    let expected = keyward_keyring::KeyMaterial::from_secret(KeyType::Secp256k1, &SECRET).unwrap();
    assert_eq!(row.public_key, expected.public_key(), "the row holds the imported key, not a new one");
    let signature = keyring.sign(&super::tests::sign_request(&row)).unwrap();
    assert!(super::tests::verifies(&row, &signature));
}

#[tokio::test]
async fn the_host_cannot_refile_an_import_or_make_it_exportable() {
    let keyring = keyring();
    ready(&keyring).await;
    let identity = imported("mine", KeyType::Ed25519, false);
    let request = client_seal(&keyring.transfer_public_key(), &identity, &SECRET);
    for (what, changed) in [
        ("another name", imported("theirs", KeyType::Ed25519, false)),
        ("exportable", imported("mine", KeyType::Ed25519, true)),
        ("another type", imported("mine", KeyType::HmacSha256, false)),
    ] {
        let moved = KeyImport { identity: changed, ..request.clone() };
        assert_eq!(keyring.import(&moved).unwrap_err().code, ErrorCode::TransferDoesNotOpen, "{what}");
    }
    // A generated identity, or another version, is not an import at all.
    let generated =
        KeyIdentity { flags: KeyFlags { exportable: false, origin: Origin::Generated }, ..identity.clone() };
    assert_eq!(
        keyring.import(&KeyImport { identity: generated, ..request.clone() }).unwrap_err().code,
        ErrorCode::BadRequest
    );
    // KeyCreate does not make imported-origin keys either.
    assert_eq!(keyring.create(std::slice::from_ref(&identity)).unwrap_err().code, ErrorCode::BadRequest);
    // A flipped byte anywhere in the sealed material.
    let mut flipped = request.clone();
    flipped.sealed.ciphertext[0] ^= 1;
    assert_eq!(keyring.import(&flipped).unwrap_err().code, ErrorCode::TransferDoesNotOpen);
    // Sealed to another enclave's (or an earlier start's) transfer key.
    let other = TransferKey::derive(&Zeroizing::new([9; 32]));
    let elsewhere = client_seal(&other.public_key(), &identity, &SECRET);
    assert_eq!(keyring.import(&elsewhere).unwrap_err().code, ErrorCode::UnknownTransferKey);
    // The request as sealed still works.
    keyring.import(&request).unwrap();
}

#[tokio::test]
async fn an_invalid_scalar_is_refused_with_its_own_code() {
    let keyring = keyring();
    ready(&keyring).await;
    let identity = imported("zero", KeyType::Secp256k1, false);
    let err = keyring.import(&client_seal(&keyring.transfer_public_key(), &identity, &[0; 32])).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidKeyMaterial);
}

#[tokio::test]
async fn only_exportable_keys_leave_and_only_sealed_to_the_callers_key() {
    let keyring = keyring();
    ready(&keyring).await;
    let caller = TransferKey::derive(&Zeroizing::new([5; 32]));
    let exportable = imported("exportable", KeyType::P256, true);
    let row = keyring.import(&client_seal(&keyring.transfer_public_key(), &exportable, &SECRET)).unwrap();
    let sealed = keyring
        .export(&KeyExport { row: row.clone(), recipient_public_key: caller.public_key().to_vec(), auth: None })
        .unwrap();
    let sealed = keyward_keyring::Sealed { encapsulated_key: sealed.encapsulated_key, ciphertext: sealed.ciphertext };
    assert_eq!(*caller.open(&export_info(&row.identity), &sealed).unwrap(), SECRET);
    assert!(caller.open(&import_info(&row.identity.name, row.identity.key_type, row.identity.flags), &sealed).is_err());

    let kept = imported("kept", KeyType::P256, false);
    let row = keyring.import(&client_seal(&keyring.transfer_public_key(), &kept, &SECRET)).unwrap();
    let request = KeyExport { row: row.clone(), recipient_public_key: caller.public_key().to_vec(), auth: None };
    assert_eq!(keyring.export(&request).unwrap_err().code, ErrorCode::KeyNotExportable);
    // The host flips the exportable flag in the row: the row no longer opens.
    let mut forged = row;
    forged.identity.flags.exportable = true;
    let request = KeyExport { row: forged, recipient_public_key: caller.public_key().to_vec(), auth: None };
    assert_eq!(keyring.export(&request).unwrap_err().code, ErrorCode::KeyRowDoesNotOpen);
}
