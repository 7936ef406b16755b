// Panicking on an unexpected value is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use super::encode::{encode_kms_shape, oaep_sha256_identifier, tlv};
use super::key::{aes256_cbc_encrypt, sha256};
use super::*;

const PAIRS: [&str; 2] = ["enclaver", "edgebit_nitro_enclaves_sdk_go"];

fn shared_fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/../../../shared/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

fn local_fixture(name: &str) -> Vec<u8> {
    let full = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

/// (blob, key, expected plaintext) of a real KMS fixture pair.
fn pair(dir: &str) -> (Vec<u8>, RecipientKey, Vec<u8>) {
    let pem = String::from_utf8(shared_fixture(&format!("kms/{dir}/recipient_key.pem"))).unwrap();
    (
        shared_fixture(&format!("kms/{dir}/ciphertext_for_recipient.ber")),
        RecipientKey::from_pem(&pem).unwrap(),
        shared_fixture(&format!("kms/{dir}/expected_plaintext.bin")),
    )
}

fn enclaver() -> &'static (Vec<u8>, RecipientKey, Vec<u8>) {
    static PAIR: OnceLock<(Vec<u8>, RecipientKey, Vec<u8>)> = OnceLock::new();
    PAIR.get_or_init(|| pair("enclaver"))
}

fn expected_json() -> serde_json::Value {
    serde_json::from_slice(&shared_fixture("kms/expected.json")).unwrap()
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).unwrap()
}

fn pkcs7_unpad(block: &[u8]) -> Option<Vec<u8>> {
    let pad = usize::from(*block.last()?);
    let ok = (1..=16).contains(&pad) && block.iter().rev().take(pad).all(|b| usize::from(*b) == pad);
    ok.then(|| block[..block.len() - pad].to_vec())
}

#[test]
fn real_kms_blobs_decrypt_to_their_expected_plaintext() {
    let json = expected_json();
    for (dir, entry) in PAIRS.iter().zip(json["pairs"].as_array().unwrap()) {
        assert_eq!(entry["dir"], *dir);
        let (blob, key, expected) = pair(dir);
        assert_eq!(hex::encode(key.subject_key_identifier()), entry["sha256_spki_der"]);
        let plaintext = decrypt_for_recipient(&blob, &key).unwrap();
        assert_eq!(plaintext.as_slice(), expected.as_slice(), "{dir}");
        assert_eq!(hex::encode(&*plaintext), entry["plaintext_hex"]);
    }
}

#[test]
fn all_kms_blobs_parse_to_the_values_in_expected_json() {
    let json = expected_json();
    let pairs = json["pairs"].as_array().unwrap().iter().map(|e| {
        let dir = e["dir"].as_str().unwrap();
        (e, shared_fixture(&format!("kms/{dir}/ciphertext_for_recipient.ber")))
    });
    let parse_only = json["parse_only_no_key"].as_array().unwrap().iter().map(|e| {
        let file = e["file"].as_str().unwrap();
        (e, shared_fixture(&format!("kms/parse_only/{file}")))
    });
    let mut checked = 0;
    for (entry, blob) in pairs.chain(parse_only) {
        let parsed = parse(&blob).unwrap();
        assert_eq!(parsed.version, entry["envelopeddata_version"].as_u64().unwrap() as u8);
        assert_eq!(parsed.recipient_version, entry["ktri_version"].as_u64().unwrap() as u8);
        let ski = hex::decode(entry["rid_ski_hex"].as_str().unwrap()).unwrap();
        assert_eq!(parsed.recipient, RecipientId::SubjectKeyIdentifier(ski));
        assert_eq!(hex::encode(parsed.iv), entry["iv_hex"]);
        assert_eq!(parsed.encrypted_key.len() as u64, entry["encrypted_key_len"]);
        assert_eq!(parsed.encrypted_content.len() as u64, entry["encrypted_content_len"]);
        let form = if entry["encrypted_content_constructed"] == true {
            let segments = entry["encrypted_content_chunks"].as_u64().unwrap() as usize;
            ContentForm::Constructed { segments }
        } else {
            ContentForm::Primitive
        };
        assert_eq!(parsed.content_form, form);
        if let Some(digest) = entry["encrypted_content_sha256"].as_str() {
            assert_eq!(hex::encode(sha256(&parsed.encrypted_content)), digest);
            assert_eq!(hex::encode(sha256(&parsed.encrypted_key)), entry["encrypted_key_sha256"]);
        }
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[test]
fn reencoding_parsed_constructed_kms_blobs_reproduces_them_byte_for_byte() {
    let mut blobs: Vec<Vec<u8>> =
        PAIRS.iter().map(|d| shared_fixture(&format!("kms/{d}/ciphertext_for_recipient.ber"))).collect();
    for n in [1, 2, 4] {
        blobs.push(shared_fixture(&format!("kms/parse_only/rustcrypto_kms_ciphertext_for_recipient_{n}.ber")));
    }
    for blob in blobs {
        let p = parse(&blob).unwrap();
        let RecipientId::SubjectKeyIdentifier(ski) = &p.recipient else { panic!("rid") };
        assert_eq!(encode_kms_shape(ski, &p.encrypted_key, &p.iv, &p.encrypted_content), blob);
    }
}

#[test]
fn a_different_key_is_refused_by_the_ski_check_and_cannot_decrypt_anyway() {
    let (blob, _, _) = enclaver();
    let other = RecipientKey::generate().unwrap();
    assert_eq!(decrypt_for_recipient(blob, &other), Err(CmsError::RecipientMismatch));
    // Bypassing the rid check, OAEP itself refuses the wrong key.
    let parsed = parse(blob).unwrap();
    assert_eq!(decrypt_enveloped(&parsed, &other), Err(CmsError::DecryptionFailed));
}

#[test]
fn encrypt_then_decrypt_round_trips_in_the_real_kms_shape() {
    let key = RecipientKey::generate().unwrap();
    for len in [0usize, 1, 15, 16, 32, 1000, 4112] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let blob = encrypt_for_recipient(&plaintext, &key.public_key_spki_der()).unwrap();
        assert_eq!(&blob[..2], &[0x30, 0x80]);
        assert!(blob.ends_with(&[0u8; 10]));
        let p = parse(&blob).unwrap();
        let ciphertext_len = (len / 16 + 1) * 16;
        assert_eq!((p.version, p.recipient_version), (2, 2));
        let ski = key.subject_key_identifier().to_vec();
        assert_eq!(p.recipient, RecipientId::SubjectKeyIdentifier(ski.clone()));
        assert_eq!(ski, sha256(&key.public_key_spki_der()));
        assert_eq!(p.encrypted_key.len(), 256);
        assert_eq!(p.encrypted_content.len(), ciphertext_len);
        let segments = ciphertext_len.div_ceil(1000);
        assert_eq!(p.content_form, ContentForm::Constructed { segments });
        assert_eq!(encode_kms_shape(&ski, &p.encrypted_key, &p.iv, &p.encrypted_content), blob);
        assert_eq!(decrypt_for_recipient(&blob, &key).unwrap().as_slice(), plaintext.as_slice());
    }
}

#[test]
fn encrypt_refuses_bad_public_keys_and_oversized_plaintexts() {
    let key = RecipientKey::generate().unwrap();
    assert_eq!(encrypt_for_recipient(b"x", b"not a key"), Err(CmsError::InvalidRecipientPublicKey));
    let big = vec![0u8; MAX_PLAINTEXT_LEN + 1];
    let result = encrypt_for_recipient(&big, &key.public_key_spki_der());
    assert!(matches!(result, Err(CmsError::PlaintextTooLarge { .. })));
}

#[test]
fn pem_loading_accepts_pkcs8_and_pkcs1_and_rejects_garbage() {
    let (_, pkcs8, _) = pair("enclaver");
    let (_, pkcs1, _) = pair("edgebit_nitro_enclaves_sdk_go");
    assert_ne!(pkcs8.subject_key_identifier(), pkcs1.subject_key_identifier());
    for bad in ["", "hello", "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n"] {
        assert!(RecipientKey::from_pem(bad).is_err());
    }
    let wrong_label = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(RecipientKey::from_pem(wrong_label).is_err());
}

#[test]
fn recipient_key_debug_redacts_the_private_half() {
    let (_, key, _) = enclaver();
    let shown = format!("{key:?}");
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(shown.contains(&hex::encode(key.subject_key_identifier())));
}

mod localstack;
mod robustness;
