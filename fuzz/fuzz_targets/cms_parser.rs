//! KMS `CiphertextForRecipient` (BER CMS EnvelopedData) parsing and decryption with the real
//! recipient keys of the fixtures, so mutated real blobs reach RSA-OAEP unwrapping and
//! AES-CBC unpadding, not only the BER reader.
//!
//! Checks: nothing panics or hangs; whatever `decrypt_for_recipient` accepts, `parse` accepts
//! too; a parsed blob has the shapes the parser promises (16-byte IV, whole AES blocks).
#![no_main]

use std::sync::OnceLock;

use keyward_fuzz::fixtures_dir;
use keyward_kms::cms::{MAX_INPUT_LEN, RecipientKey, decrypt_for_recipient, parse};
use libfuzzer_sys::fuzz_target;

/// The two real KMS recipient keys whose blobs are in `fixtures/kms`.
fn keys() -> &'static [RecipientKey] {
    static KEYS: OnceLock<Vec<RecipientKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        ["enclaver", "edgebit_nitro_enclaves_sdk_go"]
            .iter()
            .map(|dir| {
                let path = fixtures_dir().join("kms").join(dir).join("recipient_key.pem");
                let pem = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                RecipientKey::from_pem(&pem).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    match &parsed {
        Ok(enveloped) => {
            assert!(data.len() <= MAX_INPUT_LEN);
            let len = enveloped.encrypted_content.len();
            assert!(len > 0 && len % 16 == 0, "parsed ciphertext of {len} bytes");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    for key in keys() {
        let decrypted = decrypt_for_recipient(data, key);
        if decrypted.is_ok() {
            assert!(parsed.is_ok(), "decrypted a blob that does not parse");
        }
        if let Err(e) = parsed.as_ref() {
            assert_eq!(decrypted.as_ref().err(), Some(e), "decryption and parsing disagree on the error");
        }
    }
});
