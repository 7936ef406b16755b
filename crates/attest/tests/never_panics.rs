//! Property tests: parsing and verification return errors, never panic, on any input, and a
//! real document with any byte changed is never accepted.
#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test.

mod common;

use std::sync::OnceLock;

use common::{Fixture, load_all};
use keyward_attest::{RootCertificate, UnixTime, VerifyOptions, parse, verify};
use proptest::prelude::*;

fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(load_all)
}

fn options_at(secs: u64) -> VerifyOptions {
    VerifyOptions::new(RootCertificate::aws_nitro_root_g1(), UnixTime::from_secs(secs))
}

/// The first bytes every NSM document starts with, so random tails reach the payload parser.
const NSM_PREFIX: [u8; 9] = [0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x59, 0x01];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_and_verify_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = parse(&bytes);
        let _ = verify(&bytes, &options_at(1_700_000_000));
    }

    #[test]
    fn parse_never_panics_on_nsm_shaped_prefixes(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = NSM_PREFIX.to_vec();
        bytes.extend_from_slice(&tail);
        let _ = parse(&bytes);
        let mut tagged = vec![0xd2];
        tagged.extend_from_slice(&bytes);
        let _ = parse(&tagged);
    }

    #[test]
    fn mutated_real_documents_are_never_accepted(
        which in 0usize..9,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let f = &fixtures()[which];
        let mut bytes = f.bytes.clone();
        for (index, mask) in flips {
            let i = index.index(bytes.len());
            bytes[i] ^= mask;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        let result = verify(&bytes, &f.options());
        if bytes != f.bytes {
            prop_assert!(result.is_err(), "{} accepted a mutated copy", f.name);
        }
    }

    #[test]
    fn payload_fields_from_arbitrary_cbor_never_panic(value in arbitrary_cbor()) {
        let payload = serde_cbor::to_vec(&value).unwrap();
        let mut bytes = vec![0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0];
        bytes.push(0x5a);
        bytes.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(&[0x58, 0x60]);
        bytes.extend_from_slice(&[0; 96]);
        let _ = verify(&bytes, &options_at(1_700_000_000));
    }
}

/// CBOR values shaped like attestation payloads: maps keyed by the real field names.
fn arbitrary_cbor() -> impl Strategy<Value = serde_cbor::Value> {
    use serde_cbor::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(|i| Value::Integer(i.into())),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Bytes),
        "[a-z_]{0,12}".prop_map(Value::Text),
        Just(Value::Text("SHA384".into())),
    ];
    let value = leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(0i128..40, inner, 0..6)
                .prop_map(|m| Value::Map(m.into_iter().map(|(k, v)| (Value::Integer(k), v)).collect())),
        ]
    });
    let key = prop_oneof![
        Just("module_id"),
        Just("digest"),
        Just("timestamp"),
        Just("pcrs"),
        Just("certificate"),
        Just("cabundle"),
        Just("public_key"),
        Just("user_data"),
        Just("nonce"),
    ];
    proptest::collection::btree_map(key, value, 0..10)
        .prop_map(|m| Value::Map(m.into_iter().map(|(k, v)| (Value::Text(k.into()), v)).collect()))
}
