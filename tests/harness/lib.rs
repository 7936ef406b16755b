//! Test harness: builds the binaries, starts real processes (dev KMS, gateway, enclaves) on
//! free local ports, talks to them as a client would, and stops every process it started,
//! also when a test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness: a failed expectation is a failed test")]

mod db;
mod devkms;
mod mitm;
mod mount;
mod process;
mod raw_link;
mod secrets;
mod stack;
mod tls;

pub use db::{Cell, Engine, TestDatabase};
pub use devkms::DevKms;
pub use keyward_telemetry::event;
pub use mitm::{Tamper, start_mitm};
pub use mount::TmpfsMount;
pub use process::{Proc, binary, events_in, free_port, workspace_root};
pub use raw_link::{RawLink, error_of};
pub use secrets::{assert_no_secrets, assert_secret_absent};
pub use stack::{Measured, Pair, Stack, StackOptions, read_rows, run_tool};
pub use tls::{Issued, TestCa, TlsAnswer, tls_call};

/// For each `async fn case(engine: Engine)` named, two tests in a module of its name: `sqlite`
/// and `postgres` (a server of the test's own).
#[macro_export]
macro_rules! on_each_engine {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case($crate::Engine::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$case($crate::Engine::Postgres).await
            }
        }
    )+};
}

/// Verifies an ECDSA (compact) or BIP340 signature over `digest` against the hex keys the
/// gateway returned, with RustCrypto's `k256` (not the `secp256k1` crate keyward signs with).
/// Panics with a clear message when it does not verify.
pub fn assert_signature_verifies(
    scheme: &str,
    digest: &[u8; 32],
    signature_hex: &str,
    public_key_hex: &str,
    xonly_hex: &str,
) {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    let signature = hex::decode(signature_hex).expect("signature is hex");
    match scheme {
        "ecdsa" => {
            let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(&hex::decode(public_key_hex).expect("hex key"))
                .expect("valid public key");
            let sig = k256::ecdsa::Signature::from_slice(&signature).expect("64-byte compact signature");
            assert!(sig.normalize_s().is_none(), "ECDSA signatures are low-S");
            key.verify_prehash(digest, &sig).expect("ECDSA signature verifies against the public key");
        }
        "bip340" => {
            let key = k256::schnorr::VerifyingKey::from_bytes(&hex::decode(xonly_hex).expect("hex key"))
                .expect("valid x-only key");
            let sig = k256::schnorr::Signature::try_from(signature.as_slice()).expect("64-byte signature");
            key.verify_prehash(digest, &sig).expect("BIP340 signature verifies");
        }
        other => panic!("unknown scheme {other}"),
    }
}

/// The ECDSA recovery id names the public key: recovering from the signature and the id
/// (with `k256`) gives `public_key_hex`, and any other id does not.
pub fn assert_recovers(digest: &[u8; 32], signature_hex: &str, recovery_id: u8, public_key_hex: &str) {
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
    let signature = Signature::from_slice(&hex::decode(signature_hex).expect("hex")).expect("64-byte signature");
    let recover = |id: u8| {
        RecoveryId::from_byte(id)
            .and_then(|id| VerifyingKey::recover_from_prehash(digest, &signature, id).ok())
            .map(|key| hex::encode(key.to_encoded_point(true).as_bytes()))
    };
    assert_eq!(recover(recovery_id).as_deref(), Some(public_key_hex), "recovery id {recovery_id} names the key");
    for other in (0..4).filter(|id| *id != recovery_id) {
        assert_ne!(recover(other).as_deref(), Some(public_key_hex), "recovery id {other} must name another key");
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
        match (scheme, signed.signature.recovery_id) {
            ("ecdsa", Some(id)) => assert_recovers(&d, &signed.signature.signature_hex, id, expected_public_key),
            ("bip340", None) => {}
            (_, id) => panic!("{scheme} signature with recovery id {id:?}"),
        }
        assert_signature_verifies(
            scheme,
            &d,
            &signed.signature.signature_hex,
            &signed.public_key_hex,
            &signed.xonly_public_key_hex,
        );
    }
}
