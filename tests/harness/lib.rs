//! Test harness: builds the binaries, starts real processes (dev KMS, gateway, enclaves) on
//! free local ports, talks to them as a client would, and stops every process it started,
//! also when a test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness: a failed expectation is a failed test")]

mod devkms;
mod mitm;
mod mount;
mod process;
mod secrets;
mod stack;

pub use devkms::DevKms;
pub use mitm::{Tamper, start_mitm};
pub use mount::TmpfsMount;
pub use process::{Proc, binary, free_port, workspace_root};
pub use secrets::assert_no_secrets;
pub use stack::{Measured, Stack, StackOptions, read_rows, run_tool};

/// Verifies an ECDSA (compact) or BIP340 signature over `digest` against the hex keys the
/// gateway returned. Panics with a clear message when it does not verify.
pub fn assert_signature_verifies(
    scheme: &str,
    digest: &[u8; 32],
    signature_hex: &str,
    public_key_hex: &str,
    xonly_hex: &str,
) {
    use secp256k1::{Message, PublicKey, XOnlyPublicKey, ecdsa, schnorr};
    let signature = hex::decode(signature_hex).expect("signature is hex");
    match scheme {
        "ecdsa" => {
            let key = PublicKey::from_slice(&hex::decode(public_key_hex).expect("hex key")).expect("valid public key");
            let sig = ecdsa::Signature::from_compact(&signature).expect("64-byte compact signature");
            sig.verify(Message::from_digest(*digest), &key).expect("ECDSA signature verifies against the public key");
        }
        "bip340" => {
            let key: [u8; 32] = hex::decode(xonly_hex).expect("hex key").try_into().expect("32-byte x-only key");
            let key = XOnlyPublicKey::from_byte_array(key).expect("valid x-only key");
            let sig: [u8; 64] = signature.try_into().expect("64-byte signature");
            schnorr::Signature::from_byte_array(sig).verify(digest, &key).expect("BIP340 signature verifies");
        }
        other => panic!("unknown scheme {other}"),
    }
}

/// A deterministic 32-byte digest for tests.
pub fn digest(seed: u8) -> [u8; 32] {
    let mut d = [0u8; 32];
    for (i, b) in d.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    d
}

/// Signs with both schemes through the gateway and verifies each signature against the
/// returned key, which must be `expected_public_key`.
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
