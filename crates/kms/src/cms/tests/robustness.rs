//! Hostile and damaged inputs: truncations, mutations, nesting, extra parts.

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;

#[test]
fn every_truncation_of_a_real_blob_fails_cleanly() {
    for dir in PAIRS {
        let (blob, key, _) = pair(dir);
        for len in 0..blob.len() {
            assert!(parse(&blob[..len]).is_err(), "{dir} prefix {len} parsed");
            assert!(decrypt_for_recipient(&blob[..len], &key).is_err());
        }
    }
}

/// Outside the IV and the ciphertext every single-byte change must be refused
/// or be harmless. Inside them CBC is malleable (CMS has no MAC): an IV change
/// must flip exactly the matching plaintext byte (or break the padding), and a
/// ciphertext change must at least not panic.
#[test]
fn single_byte_mutations_fail_cleanly_except_documented_cbc_malleability() {
    for dir in PAIRS {
        let (blob, key, expected) = pair(dir);
        let parsed = parse(&blob).unwrap();
        let iv_at = find(&blob, &parsed.iv);
        let content_at = find(&blob, &parsed.encrypted_content);
        let content_end = content_at + parsed.encrypted_content.len();
        let mut padded = expected.clone();
        let pad = 16 - expected.len() % 16;
        padded.resize(expected.len() + pad, pad as u8);
        for offset in 0..blob.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut mutated = blob.clone();
                mutated[offset] ^= flip;
                let result = decrypt_for_recipient(&mutated, &key);
                if (iv_at..iv_at + 16).contains(&offset) {
                    let mut flipped = padded.clone();
                    flipped[offset - iv_at] ^= flip;
                    let last_block = &flipped[flipped.len() - 16..];
                    let want =
                        pkcs7_unpad(last_block).map(|tail| [&flipped[..flipped.len() - 16], tail.as_slice()].concat());
                    match (&result, want) {
                        (Ok(got), Some(want)) => assert_eq!(got.as_slice(), want.as_slice()),
                        (Err(CmsError::DecryptionFailed), None) => {}
                        (got, want) => panic!("{dir} IV byte {offset}: {got:?} vs {want:?}"),
                    }
                } else if !(content_at..content_end).contains(&offset) {
                    match result {
                        Ok(got) => {
                            assert_eq!(got.as_slice(), expected.as_slice(), "{dir} @{offset}")
                        }
                        Err(e) => assert!(!e.to_string().is_empty()),
                    }
                }
            }
        }
    }
}

#[test]
fn mutated_encrypted_key_is_a_plain_decryption_failure() {
    let (blob, key, _) = enclaver();
    let parsed = parse(blob).unwrap();
    let at = find(blob, &parsed.encrypted_key);
    for offset in [at, at + 1, at + 128, at + 255] {
        let mut mutated = blob.clone();
        mutated[offset] ^= 0x01;
        assert_eq!(decrypt_for_recipient(&mutated, key), Err(CmsError::DecryptionFailed));
    }
}

#[test]
fn trailing_bytes_and_oversized_input_are_refused() {
    let (blob, _, _) = enclaver();
    for extra in [&[0u8][..], &[0, 0], &[0x30, 0x00]] {
        let input = [blob.as_slice(), extra].concat();
        assert_eq!(parse(&input), Err(CmsError::TrailingBytes { count: extra.len() }));
    }
    let huge = vec![0u8; MAX_INPUT_LEN + 1];
    assert!(matches!(parse(&huge), Err(CmsError::InputTooLarge { .. })));
}

#[test]
fn deep_nesting_is_refused_without_recursion() {
    let tower = [0x30u8, 0x80].repeat(20_000);
    assert_eq!(parse(&tower), Err(CmsError::TooDeep { max: MAX_DEPTH }));
    let mut strings = [0x24u8, 0x80].repeat(40);
    strings.extend([0x04, 0x01, 0xaa]);
    strings.extend([0u8; 80]);
    let mut reader = ber::Reader::new(&strings);
    assert!(matches!(reader.read(), Err(CmsError::TooDeep { .. })));
}

#[test]
fn nested_constructed_string_segments_are_concatenated() {
    let input = [0x24, 0x80, 0x24, 0x80, 0x04, 0x02, 0xaa, 0xbb, 0, 0, 0x04, 0x01, 0xcc, 0, 0];
    let element = ber::Reader::new(&input).read().unwrap();
    let (bytes, segments) = element.string_octets().unwrap();
    assert_eq!((bytes.as_ref(), segments), (&[0xaa, 0xbb, 0xcc][..], Some(2)));
}

#[test]
fn more_than_one_recipient_is_refused() {
    let (blob, _, _) = enclaver();
    // The SET header is at 20..24 and the one KeyTransRecipientInfo at 24..387.
    assert_eq!(&blob[20..24], &[0x31, 0x82, 0x01, 0x6b]);
    let ktri = &blob[24..387];
    let doubled = [&blob[..20], &tlv(0x31, &[ktri, ktri].concat()), &blob[387..]].concat();
    assert_eq!(parse(&doubled), Err(CmsError::RecipientCount { count: 2 }));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_and_decrypt_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
        let _ = parse(&bytes);
        let _ = decrypt_for_recipient(&bytes, &enclaver().1);
    }

    #[test]
    fn random_mutations_of_a_real_blob_never_panic_nor_misdecrypt_outside_cbc_fields(
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
    ) {
        let (blob, key, expected) = enclaver();
        let mut mutated = blob.clone();
        let mut touched_cbc = false;
        for (index, byte) in &edits {
            let at = index.index(blob.len());
            // IV at 415..431, ciphertext at 435..451 (offsets from `openssl asn1parse`).
            touched_cbc |= (415..431).contains(&at) || (435..451).contains(&at);
            mutated[at] = *byte;
        }
        let _ = parse(&mutated);
        if let Ok(plaintext) = decrypt_for_recipient(&mutated, key) {
            prop_assert!(touched_cbc || plaintext.as_slice() == expected.as_slice());
        }
    }
}
