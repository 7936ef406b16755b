//! Table-driven tests over every real AWS-signed document in `shared/fixtures/nitro/real`.
#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test.

mod common;

use common::{load_all, parse_utc};
use keyward_attest::{
    ChainPosition, Measurements, Pcr, RootCertificate, UnixTime, VerifyError, VerifyOptions, parse, verify,
};

fn flip(bytes: &[u8], offset: usize, mask: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[offset] ^= mask;
    out
}

/// A different PCR value of the same length.
fn altered(pcr: &Pcr) -> Pcr {
    let mut bytes = pcr.as_bytes().to_vec();
    bytes[0] ^= 0x01;
    Pcr::from_bytes(&bytes).unwrap()
}

/// Offsets to flip in `range`: its first and last 8 bytes and every `step`-th byte.
fn sample(range: std::ops::Range<usize>, step: usize) -> Vec<usize> {
    let mut offsets: Vec<usize> = range.clone().step_by(step).collect();
    offsets.extend(range.clone().take(8));
    offsets.extend(range.clone().rev().take(8));
    offsets.sort_unstable();
    offsets.dedup();
    offsets
}

#[test]
fn utc_helper_matches_a_known_instant() {
    assert_eq!(parse_utc("2023-09-18T14:37:09+00:00"), 1_695_047_829);
}

#[test]
fn every_fixture_file_is_covered() {
    let fixtures = load_all();
    let mut listed: Vec<_> = fixtures.iter().map(|f| f.name.clone()).collect();
    let mut on_disk: Vec<_> = std::fs::read_dir(common::fixtures_dir().join("nitro/real"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".cose"))
        .collect();
    listed.sort();
    on_disk.sort();
    assert_eq!(listed, on_disk);
    assert_eq!(fixtures.len(), 9);
}

#[test]
fn accepts_every_real_document_at_its_timestamp_with_fields_as_expected() {
    for f in load_all() {
        let verified = verify(&f.bytes, &f.options()).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        let p = verified.payload();
        assert_eq!(p.module_id(), f.json["module_id"].as_str().unwrap(), "{}", f.name);
        assert_eq!(p.digest().as_str(), "SHA384");
        assert_eq!(p.timestamp_ms(), f.timestamp_ms());
        assert_eq!(p.pcrs().len(), f.json["pcrs"].as_object().unwrap().len());
        for (&index, value) in p.pcrs() {
            assert_eq!(value, &f.pcr(index), "{} PCR{index}", f.name);
        }
        assert_eq!(p.public_key().map(<[u8]>::to_vec), f.field("public_key"), "{}", f.name);
        assert_eq!(p.user_data().map(<[u8]>::to_vec), f.field("user_data"), "{}", f.name);
        assert_eq!(p.nonce().map(<[u8]>::to_vec), f.field("nonce"), "{}", f.name);
        assert_eq!(p.cabundle().len(), 4);
        assert_eq!(p.cabundle()[0], RootCertificate::aws_nitro_root_g1().der());
        assert_eq!(verified.leaf_not_after(), f.time("leaf_not_after"), "{}", f.name);
    }
}

#[test]
fn accepts_every_document_with_all_its_fields_expected() {
    for f in load_all() {
        let mut options = f.options();
        for index in 3..16 {
            options = options.expect_pcr(index, [f.pcr(index)]);
        }
        if let Some(nonce) = f.field("nonce") {
            options = options.expect_nonce(nonce);
        }
        if let Some(user_data) = f.field("user_data") {
            options = options.expect_user_data(user_data);
        }
        if let Some(public_key) = f.field("public_key") {
            options = options.expect_public_key(public_key);
        }
        verify(&f.bytes, &options).unwrap_or_else(|e| panic!("{}: {e}", f.name));
    }
}

#[test]
fn accepts_at_the_first_and_last_second_of_the_chain_window() {
    for f in load_all() {
        for key in ["chain_valid_from", "chain_valid_until"] {
            let options = VerifyOptions::new(RootCertificate::aws_nitro_root_g1(), f.time(key));
            verify(&f.bytes, &options).unwrap_or_else(|e| panic!("{} at {key}: {e}", f.name));
        }
    }
}

#[test]
fn rejects_one_second_before_the_chain_window() {
    for f in load_all() {
        let at = UnixTime::from_secs(f.time("chain_valid_from").as_secs() - 1);
        let options = VerifyOptions::new(RootCertificate::aws_nitro_root_g1(), at);
        let err = verify(&f.bytes, &options).unwrap_err();
        assert!(
            matches!(err, VerifyError::CertificateNotYetValid { position: ChainPosition::Leaf, at: a, .. } if a == at),
            "{}: {err}",
            f.name
        );
    }
}

#[test]
fn rejects_one_second_after_the_chain_window() {
    for f in load_all() {
        let at = UnixTime::from_secs(f.time("chain_valid_until").as_secs() + 1);
        let options = VerifyOptions::new(RootCertificate::aws_nitro_root_g1(), at);
        let err = verify(&f.bytes, &options).unwrap_err();
        assert!(
            matches!(err, VerifyError::CertificateExpired { position: ChainPosition::Leaf, .. }),
            "{}: {err}",
            f.name
        );
        assert!(err.to_string().contains("expired at"), "{err}");
    }
}

#[test]
fn rejects_a_generated_p384_root_even_with_the_aws_root_name() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CountryName, "US");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "Amazon");
    params.distinguished_name.push(rcgen::DnType::OrganizationalUnitName, "AWS");
    params.distinguished_name.push(rcgen::DnType::CommonName, "aws.nitro-enclaves");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let impostor = RootCertificate::from_der(params.self_signed(&key).unwrap().der()).unwrap();
    for f in load_all() {
        let options = VerifyOptions::new(impostor.clone(), f.at());
        let err = verify(&f.bytes, &options).unwrap_err();
        assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{}: {err}", f.name);
    }
}

#[test]
fn rejects_every_flipped_signature_byte() {
    for f in load_all() {
        let options = f.options();
        for offset in f.signature_range() {
            for mask in [0x01, 0x80] {
                let err = verify(&flip(&f.bytes, offset, mask), &options).unwrap_err();
                assert!(matches!(err, VerifyError::BadSignature), "{} @{offset}: {err}", f.name);
            }
        }
    }
}

#[test]
fn rejects_every_flipped_payload_byte() {
    // Every byte of every payload (the certificates included), one document per thread.
    std::thread::scope(|scope| {
        for f in load_all() {
            scope.spawn(move || {
                let options = f.options();
                for offset in f.payload_range() {
                    let result = verify(&flip(&f.bytes, offset, 0x01), &options);
                    assert!(result.is_err(), "{} accepted a flip at {offset}", f.name);
                }
            });
        }
    });
}

#[test]
fn rejects_flipped_certificate_bytes_in_the_chain_check() {
    let mut signature_failures = 0;
    for f in load_all() {
        let options = f.options();
        let payload = parse(&f.bytes).unwrap().unverified_payload().clone();
        let certs = payload.cabundle().iter().map(Vec::as_slice).chain([payload.certificate()]);
        for (i, der) in certs.enumerate() {
            for offset in sample(f.range_of(der), 9) {
                let err = verify(&flip(&f.bytes, offset, 0x01), &options).unwrap_err();
                // The chain is checked before the COSE signature, so a changed certificate is
                // caught by the chain check itself, whatever part of it changed.
                if matches!(err, VerifyError::CertificateSignatureInvalid { .. }) {
                    signature_failures += 1;
                }
                let chain_error = match err {
                    VerifyError::UntrustedRoot { .. } => i == 0,
                    VerifyError::MalformedCertificate { .. }
                    | VerifyError::UnsupportedCertificateAlgorithm { .. }
                    | VerifyError::CertificateSignatureInvalid { .. }
                    | VerifyError::IssuerMismatch { .. }
                    | VerifyError::NotCa { .. }
                    | VerifyError::PathLengthExceeded { .. }
                    | VerifyError::KeyUsageNotAllowed { .. }
                    | VerifyError::UnsupportedCriticalExtension { .. } => i > 0,
                    _ => false,
                };
                assert!(chain_error, "{} certificate {i} @{offset}: {err}", f.name);
            }
        }
    }
    // Most flips land in a to-be-signed part and must be caught by the issuer's signature.
    assert!(signature_failures > 1000, "{signature_failures}");
}

#[test]
fn rejects_a_mismatch_in_each_of_pcr0_pcr1_pcr2() {
    for f in load_all() {
        for index in 0..3 {
            let options = VerifyOptions::new(RootCertificate::aws_nitro_root_g1(), f.at())
                .expect_pcr(index, [altered(&f.pcr(index))]);
            let err = verify(&f.bytes, &options).unwrap_err();
            match &err {
                VerifyError::PcrMismatch { index: i, actual, expected } => {
                    assert_eq!(*i, index);
                    assert_eq!(actual, &f.pcr(index).to_hex());
                    assert_eq!(expected, &[altered(&f.pcr(index)).to_hex()]);
                }
                other => panic!("{} PCR{index}: {other}", f.name),
            }
            assert!(err.to_string().starts_with(&format!("PCR{index} mismatch: document has ")));
        }
    }
}

#[test]
fn accepts_a_pcr_listed_among_several_acceptable_values() {
    for f in load_all() {
        let options = VerifyOptions::new(RootCertificate::aws_nitro_root_g1(), f.at())
            .expect_pcr(0, [altered(&f.pcr(0)), f.pcr(0)]);
        verify(&f.bytes, &options).unwrap_or_else(|e| panic!("{}: {e}", f.name));
    }
}

fn build(pcr0: Pcr, pcr1: Pcr, pcr2: Pcr) -> Measurements {
    Measurements { pcr0, pcr1, pcr2 }
}

#[test]
fn a_listed_build_is_matched_whole_and_a_mix_of_two_builds_is_refused() {
    for f in load_all() {
        let own = build(f.pcr(0), f.pcr(1), f.pcr(2));
        let other = build(altered(&f.pcr(0)), altered(&f.pcr(1)), altered(&f.pcr(2)));
        let root = || VerifyOptions::new(RootCertificate::aws_nitro_root_g1(), f.at());
        verify(&f.bytes, &root().expect_builds([other.clone(), own])).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        // Build A has the document's PCR0, build B its PCR1 and PCR2: every value is listed,
        // but no build has all three.
        let a = build(f.pcr(0), altered(&f.pcr(1)), altered(&f.pcr(2)));
        let b = build(altered(&f.pcr(0)), f.pcr(1), f.pcr(2));
        let err = verify(&f.bytes, &root().expect_builds([a, b])).unwrap_err();
        assert!(
            matches!(&err, VerifyError::UnknownBuild { listed: 2, actual } if actual[0] == f.pcr(0).to_hex()),
            "{}: {err}",
            f.name
        );
        assert_eq!(err.code(), "unknown_build");
        assert_eq!(verify(&f.bytes, &root().expect_builds([])).unwrap_err().code(), "unknown_build", "no build listed");
    }
}

#[test]
fn debug_mode_documents_are_refused_only_when_asked() {
    let mut debug = 0;
    for f in load_all() {
        let zero = (0..3).all(|i| f.pcr(i).is_zero());
        let result = verify(&f.bytes, &f.options().refuse_debug_mode());
        if zero {
            debug += 1;
            assert!(matches!(result, Err(VerifyError::DebugMode)), "{}", f.name);
            verify(&f.bytes, &f.options()).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        } else {
            result.unwrap_or_else(|e| panic!("{}: {e}", f.name));
        }
    }
    assert!(debug >= 1, "the fixtures include debug-mode documents");
}

#[test]
fn rejects_an_expected_pcr_the_document_lacks() {
    let f = &load_all()[0];
    let options = f.options().expect_pcr(20, [f.pcr(0)]);
    assert!(matches!(verify(&f.bytes, &options), Err(VerifyError::PcrMissing { index: 20 })));
}

#[test]
fn rejects_a_nonce_mismatch() {
    for f in load_all() {
        let (expected, actual) = match f.field("nonce") {
            Some(mut nonce) => {
                let actual = hex::encode(&nonce);
                nonce[0] ^= 1;
                (nonce, Some(actual))
            }
            None => (b"fresh nonce".to_vec(), None),
        };
        let err = verify(&f.bytes, &f.options().expect_nonce(expected.clone())).unwrap_err();
        match err {
            VerifyError::NonceMismatch { expected: e, actual: a } => {
                assert_eq!(e, hex::encode(&expected));
                assert_eq!(a, actual, "{}", f.name);
            }
            other => panic!("{}: {other}", f.name),
        }
    }
}

#[test]
fn rejects_user_data_and_public_key_mismatches() {
    for f in load_all() {
        let err = verify(&f.bytes, &f.options().expect_user_data(b"other".to_vec())).unwrap_err();
        assert!(matches!(err, VerifyError::UserDataMismatch { .. }), "{}: {err}", f.name);
        let err = verify(&f.bytes, &f.options().expect_public_key(b"other".to_vec())).unwrap_err();
        assert!(matches!(err, VerifyError::PublicKeyMismatch { .. }), "{}: {err}", f.name);
    }
}

#[test]
fn accepts_the_indefinite_length_payload_map() {
    let f = load_all().into_iter().find(|f| f.json["payload_indefinite_length_map"] == true).unwrap();
    assert_eq!(f.bytes[f.payload_range().start], 0xbf);
    let verified = verify(&f.bytes, &f.options()).unwrap();
    assert_eq!(verified.payload().user_data().map(<[u8]>::len), Some(20));
}

#[test]
fn accepts_every_document_wrapped_in_cose_tag_18() {
    for f in load_all() {
        let mut tagged = vec![0xd2];
        tagged.extend_from_slice(&f.bytes);
        verify(&tagged, &f.options()).unwrap_or_else(|e| panic!("{}: {e}", f.name));
    }
}

#[test]
fn rejects_truncated_documents_and_trailing_bytes() {
    for f in load_all() {
        for len in (0..f.bytes.len()).step_by(97) {
            assert!(parse(&f.bytes[..len]).is_err(), "{} prefix {len}", f.name);
        }
        let mut longer = f.bytes.clone();
        longer.push(0x00);
        assert!(matches!(parse(&longer), Err(VerifyError::MalformedCose(_))), "{}", f.name);
    }
}

#[test]
fn unverified_payload_reads_fields_without_any_check() {
    for f in load_all() {
        let doc = parse(&f.bytes).unwrap();
        assert_eq!(doc.unverified_payload().timestamp_ms(), f.timestamp_ms());
    }
}
