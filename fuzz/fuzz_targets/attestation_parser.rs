//! Nitro attestation documents (COSE_Sign1 with a CBOR payload and an X.509 chain): parsing,
//! and verification against the built-in AWS Nitro Enclaves Root-G1 at a fixed time and at the
//! document's own timestamp, so mutated real documents reach the chain and signature checks
//! (every real document is valid for about three hours around its timestamp).
//!
//! Checks: nothing panics or hangs, and verification never accepts what parsing refuses.
#![no_main]

use std::sync::OnceLock;

use keyward_attest::{RootCertificate, UnixTime, VerifyOptions, parse, verify};
use libfuzzer_sys::fuzz_target;

/// 2024-12-13T07:37:58Z, inside the validity window of the `marlin_aws_2024-12-13` fixture,
/// so one seed verifies completely at the fixed time.
const FIXED_TIME: UnixTime = UnixTime::from_secs(1_734_075_478);

fn fixed_options() -> &'static VerifyOptions {
    static OPTIONS: OnceLock<VerifyOptions> = OnceLock::new();
    OPTIONS.get_or_init(|| VerifyOptions::new(RootCertificate::aws_nitro_root_g1(), FIXED_TIME))
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    let at_fixed_time = verify(data, fixed_options());
    if at_fixed_time.is_ok() {
        assert!(parsed.is_ok(), "verified a document that does not parse");
    }
    if let Ok(document) = parsed {
        let own_time = UnixTime::from_millis(document.unverified_payload().timestamp_ms());
        let options = VerifyOptions::new(RootCertificate::aws_nitro_root_g1(), own_time);
        if let Ok(verified) = verify(data, &options) {
            assert_eq!(verified.payload().timestamp_ms(), document.unverified_payload().timestamp_ms());
        }
    }
});
