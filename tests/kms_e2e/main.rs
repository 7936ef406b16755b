//! `just test-kms-e2e`: what the KMS integration promises, checked against real processes
//! (gateway, enclave, attesting dev KMS, LocalStack) over real sockets and a real SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

mod attestation;
mod lifecycle;

use keyward_e2e::{Stack, assert_signature_verifies};

pub fn digest(seed: u8) -> [u8; 32] {
    let mut d = [0u8; 32];
    for (i, b) in d.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    d
}

/// Signs with both schemes and verifies each signature against the returned key.
pub async fn assert_signs(stack: &Stack, enclave_id: Option<u32>, expected_public_key: &str) {
    for (seed, scheme) in [(1u8, "ecdsa"), (2, "bip340")] {
        let d = digest(seed);
        let signed = stack
            .client
            .sign(&d, scheme, enclave_id)
            .await
            .unwrap_or_else(|e| panic!("{scheme} sign: {e}\n{}", stack.logs()));
        assert_eq!(signed.public_key_hex, expected_public_key);
        assert_eq!(signed.signature.scheme, scheme);
        assert_signature_verifies(
            scheme,
            &d,
            &signed.signature.signature_hex,
            &signed.public_key_hex,
            &signed.xonly_public_key_hex,
        );
    }
}
