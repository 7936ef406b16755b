//! Property tests for `open`, which reads a stored row the gateway (untrusted for
//! confidentiality) hands back: it returns an error, never panics, on any blob and binding,
//! and only the right data key with the right binding ever opens a seal.
#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test.

use std::sync::OnceLock;

use keyward_seal::{DataKey, MasterKey, SEAL_VERSION, SEALED_LEN, SealBinding, SealError, open, seal};
use proptest::prelude::*;

const KMS_KEY: &str = "arn:aws:kms:us-east-1:000000000000:key/0b9a5c8e-1111-2222-3333-444455556666";
const DEK: [u8; 32] = [0x42; 32];

/// One key sealed under `DEK` for enclave 1, epoch 1 (generating a key per case would only
/// slow the tests down; the blob's bytes are what varies).
fn sealed() -> &'static (MasterKey, Vec<u8>) {
    static SEALED: OnceLock<(MasterKey, Vec<u8>)> = OnceLock::new();
    SEALED.get_or_init(|| {
        let key = MasterKey::generate(getrandom::fill).unwrap();
        let public_key = key.public_key();
        let binding = SealBinding { enclave_id: 1, key_epoch: 1, public_key: &public_key, kms_key_id: KMS_KEY };
        let blob = seal(&key, &DataKey::from_slice(&DEK).unwrap(), &binding, [7; 12]).unwrap();
        (key, blob)
    })
}

fn bytes_n<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    proptest::collection::vec(any::<u8>(), N).prop_map(|v| v.try_into().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn open_never_panics_or_succeeds_on_arbitrary_blobs(
        blob in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..128),
            // Right length and version, so the bytes reach AES-GCM.
            proptest::collection::vec(any::<u8>(), SEALED_LEN - 1)
                .prop_map(|tail| [&[SEAL_VERSION][..], &tail].concat()),
        ],
        dek in bytes_n::<32>(),
        public_key in bytes_n::<33>(),
        enclave_id in any::<u32>(),
        key_epoch in any::<u32>(),
        kms_key_id in ".{0,64}",
    ) {
        let binding = SealBinding { enclave_id, key_epoch, public_key: &public_key, kms_key_id: &kms_key_id };
        let result = open(&blob, &DataKey::from_slice(&dek).unwrap(), &binding);
        prop_assert!(result.is_err(), "an arbitrary blob opened");
        let message = result.err().unwrap().to_string();
        prop_assert!(!message.is_empty());
    }

    #[test]
    fn a_real_seal_never_opens_with_a_wrong_data_key(dek in bytes_n::<32>()) {
        prop_assume!(dek != DEK);
        let (key, blob) = sealed();
        let public_key = key.public_key();
        let binding = SealBinding { enclave_id: 1, key_epoch: 1, public_key: &public_key, kms_key_id: KMS_KEY };
        let err = open(blob, &DataKey::from_slice(&dek).unwrap(), &binding).unwrap_err();
        prop_assert!(matches!(err, SealError::Authentication { enclave_id: 1 }), "{}", err);
    }

    #[test]
    fn a_real_seal_opens_only_with_its_own_binding(
        enclave_id in prop_oneof![Just(1u32), any::<u32>()],
        key_epoch in prop_oneof![Just(1u32), any::<u32>()],
        kms_key_id in prop_oneof![Just(KMS_KEY.to_owned()), ".{0,80}"],
    ) {
        let (key, blob) = sealed();
        let public_key = key.public_key();
        let binding = SealBinding { enclave_id, key_epoch, public_key: &public_key, kms_key_id: &kms_key_id };
        let result = open(blob, &DataKey::from_slice(&DEK).unwrap(), &binding);
        if enclave_id == 1 && key_epoch == 1 && kms_key_id == KMS_KEY {
            prop_assert_eq!(result.unwrap().public_key(), public_key);
        } else {
            prop_assert!(result.is_err(), "opened under enclave {} epoch {} key {:?}", enclave_id, key_epoch, kms_key_id);
        }
    }
}
