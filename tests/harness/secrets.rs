//! Scanning bytes (database files, logs) for key material without being told the key: a
//! 32-byte window is the master private key if it derives the stored public key, and it is
//! the data key if it opens the stored seal. Raw bytes, hex and base64 forms are checked.

use base64::Engine;
use keyward_seal::{DataKey, SealBinding};
use keyward_store::MasterKeyRow;
use secp256k1::{PublicKey, SecretKey};

/// Panics if `haystack` contains the private key or the data key of `row`, in raw, hex or
/// base64 form. `label` names the file in the message.
pub fn assert_no_secrets(label: &str, haystack: &[u8], row: &MasterKeyRow) {
    let public_key = PublicKey::from_slice(&row.public_key).expect("stored public key is valid");
    let public_bytes: [u8; 33] = row.public_key.as_slice().try_into().expect("33-byte public key");
    let binding = SealBinding {
        enclave_id: u32::try_from(row.enclave_id).expect("enclave id"),
        key_epoch: u32::try_from(row.key_epoch).expect("epoch"),
        public_key: &public_bytes,
        kms_key_id: &row.kms_key_id,
    };
    let mut candidates: Vec<[u8; 32]> = windows(haystack);
    for text in runs(haystack, |b| b.is_ascii_hexdigit()) {
        for start in 0..text.len().saturating_sub(63) {
            if let Ok(bytes) = hex::decode(&text[start..start + 64]) {
                candidates.push(bytes.try_into().expect("64 hex digits are 32 bytes"));
            }
        }
    }
    for (alphabet, engine) in [(b"+/", &LENIENT_STANDARD), (b"-_", &LENIENT_URL_SAFE)] {
        for run in runs(haystack, |b| b.is_ascii_alphanumeric() || alphabet.contains(&b)) {
            candidates.extend(base64_windows(run.as_bytes(), engine));
        }
    }
    // Long base64 runs (attestation documents) repeat windows; each distinct one is checked once.
    candidates.sort_unstable();
    candidates.dedup();
    for candidate in candidates {
        if let Ok(secret) = SecretKey::from_secret_bytes(candidate) {
            assert!(
                secret.public_key() != public_key,
                "{label} contains the master PRIVATE KEY of enclave {}",
                row.enclave_id
            );
        }
        let dek = DataKey::from_slice(&candidate).expect("32 bytes");
        assert!(
            keyward_seal::open(&row.encrypted_private_key, &dek, &binding).is_err(),
            "{label} contains the DATA KEY of enclave {}",
            row.enclave_id
        );
    }
}

/// Panics if `haystack` contains `secret` (bytes a test knows: the link key's seed, a token)
/// raw, as hex in either case, or as standard or URL-safe base64 at any alignment.
pub fn assert_secret_absent(label: &str, haystack: &[u8], what: &str, secret: &[u8]) {
    let contains = |needle: &[u8]| !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle);
    let mut forms = vec![secret.to_vec(), hex::encode(secret).into_bytes(), hex::encode_upper(secret).into_bytes()];
    for engine in [&base64::engine::general_purpose::STANDARD_NO_PAD, &base64::engine::general_purpose::URL_SAFE_NO_PAD]
    {
        for shift in 0..3 {
            // The secret's bytes after `shift` leading bytes encode to a stable middle part.
            let encoded = engine.encode([vec![0u8; shift], secret.to_vec()].concat());
            let skip = (shift * 4).div_ceil(3) + 1;
            if encoded.len() > skip + 8 {
                forms.push(encoded.as_bytes()[skip..encoded.len() - 2].to_vec());
            }
        }
    }
    for form in forms {
        assert!(!contains(&form), "{label} contains the {what}");
    }
}

/// Decoders that take any run of base64 characters: no padding required, trailing bits ignored.
const LENIENT: base64::engine::GeneralPurposeConfig = base64::engine::GeneralPurposeConfig::new()
    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const LENIENT_STANDARD: base64::engine::GeneralPurpose =
    base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const LENIENT_URL_SAFE: base64::engine::GeneralPurpose =
    base64::engine::GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// Every 32-byte window of every decoding of a base64 run. Where the key sits in the encoded
/// stream decides which 4-character group boundary its bytes start on, so the run is decoded
/// from each of its four possible group alignments (a fixed window decoded only at group
/// boundaries misses a key that starts at a byte offset of 2 mod 3).
fn base64_windows(run: &[u8], engine: &base64::engine::GeneralPurpose) -> Vec<[u8; 32]> {
    let mut found = Vec::new();
    for offset in 0..4.min(run.len()) {
        let mut text = &run[offset..];
        // A single leftover character encodes no whole byte and would fail the decode.
        if text.len() % 4 == 1 {
            text = &text[..text.len() - 1];
        }
        if let Ok(bytes) = engine.decode(text) {
            found.extend(windows(&bytes));
        }
    }
    found
}

fn windows(bytes: &[u8]) -> Vec<[u8; 32]> {
    bytes.windows(32).map(|w| w.try_into().expect("32-byte window")).collect()
}

/// Maximal runs of bytes satisfying `keep`, at least 43 long (the shortest base64 of 32 bytes,
/// unpadded).
fn runs(bytes: &[u8], keep: impl Fn(u8) -> bool) -> Vec<String> {
    bytes
        .split(|b| !keep(*b))
        .filter(|run| run.len() >= 43)
        .map(|run| String::from_utf8_lossy(run).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::panic::catch_unwind;

    use keyward_seal::{DataKey, MasterKey, SealBinding};

    use super::*;

    const SECRET: [u8; 32] = [0x11; 32];
    const DEK: [u8; 32] = [0x42; 32];

    fn row() -> MasterKeyRow {
        let key = MasterKey::generate(|buf: &mut [u8]| -> Result<(), String> {
            buf.copy_from_slice(&SECRET);
            Ok(())
        })
        .expect("valid scalar");
        let public_key = key.public_key();
        let binding = SealBinding { enclave_id: 1, key_epoch: 1, public_key: &public_key, kms_key_id: "arn:k" };
        let sealed =
            keyward_seal::seal(&key, &DataKey::from_slice(&DEK).expect("32"), &binding, [7; 12]).expect("seal");
        MasterKeyRow {
            enclave_id: 1,
            kms_encrypted_dek: vec![9; 100],
            encrypted_private_key: sealed,
            public_key: public_key.to_vec(),
            kms_key_id: "arn:k".into(),
            key_epoch: 1,
        }
    }

    fn leaks(haystack: Vec<u8>) -> bool {
        let row = row();
        catch_unwind(move || assert_no_secrets("test", &haystack, &row)).is_err()
    }

    #[test]
    fn finds_raw_hex_and_base64_keys_and_passes_clean_bytes() {
        let pad = |middle: &[u8]| [b"prefix ".as_slice(), middle, b" suffix"].concat();
        assert!(leaks(pad(&SECRET)), "raw private key");
        assert!(leaks(pad(&DEK)), "raw data key");
        assert!(leaks(pad(hex::encode(SECRET).as_bytes())), "hex private key");
        assert!(leaks(pad(hex::encode_upper(DEK).as_bytes())), "HEX data key");
        let b64 = base64::engine::general_purpose::STANDARD.encode(DEK);
        assert!(leaks(pad(b64.as_bytes())), "base64 data key");
        let deep = [vec![b'A'; 10_000], b64.as_bytes().to_vec(), vec![b'A'; 100]].concat();
        assert!(leaks(pad(&deep)), "base64 data key deep inside a long base64 run");
        // The key inside a longer encoded blob (say an encrypted row, base64'd into a log) at
        // every byte offset: its characters then straddle the 4-character groups differently.
        for offset in 0..6 {
            for key in [DEK, SECRET] {
                let blob = [vec![0x5a; offset], key.to_vec(), vec![0xa5; 7]].concat();
                for engine in
                    [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE_NO_PAD]
                {
                    let encoded = engine.encode(&blob);
                    assert!(leaks(pad(encoded.as_bytes())), "key at byte offset {offset} of a base64 blob");
                    let in_a_line = format!("ciphertext={encoded} next-field=keyward-e2e");
                    assert!(leaks(in_a_line.into_bytes()), "offset {offset}, beside other text");
                }
            }
        }
        let seed = [0x3c; 32];
        let found = |bytes: Vec<u8>| catch_unwind(move || assert_secret_absent("test", &bytes, "seed", &seed)).is_err();
        assert!(found(pad(hex::encode(seed).as_bytes())), "hex seed");
        for shift in 0..3 {
            let blob = base64::engine::general_purpose::STANDARD
                .encode([vec![1u8; shift], seed.to_vec(), vec![2; 5]].concat());
            assert!(found(pad(blob.as_bytes())), "base64 seed at offset {shift}");
        }
        assert!(!found(pad(b"no seed here, just text")));
        let clean = row();
        assert!(!leaks([clean.encrypted_private_key.clone(), clean.public_key.clone(), b"log line".to_vec()].concat()));
    }
}
