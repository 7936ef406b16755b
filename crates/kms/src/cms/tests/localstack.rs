//! LocalStack's DER, version-0 shape (localstack/utils/crypto.py,
//! `pkcs7_envelope_encrypt`), rebuilt with aws-lc and taken from LocalStack itself.

use aws_lc_rs::rand;
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};

use super::*;

type Edit<'e> = Box<dyn Fn(&mut DerParts<'_>) + 'e>;

/// Parts of a DER EnvelopedData built like LocalStack's
/// `localstack.utils.crypto.pkcs7_envelope_encrypt` (asn1crypto `.dump()`).
struct DerParts<'a> {
    version: u8,
    rid: Vec<u8>,
    key_algorithm: Vec<u8>,
    encrypted_key: &'a [u8],
    iv: &'a [u8; 16],
    ciphertext: &'a [u8],
}

/// LocalStack's rid: issuerAndSerialNumber { CN=recipient (UTF8String), 1 }.
fn localstack_rid() -> Vec<u8> {
    let cn = [tlv(0x06, &[0x55, 0x04, 0x03]), tlv(0x0c, b"recipient")].concat();
    let name = tlv(0x30, &tlv(0x31, &tlv(0x30, &cn)));
    tlv(0x30, &[name, tlv(0x02, &[1])].concat())
}

fn der_enveloped_data(p: &DerParts<'_>) -> Vec<u8> {
    let v = tlv(0x02, &[p.version]);
    let ktri = [v.clone(), p.rid.clone(), p.key_algorithm.clone(), tlv(0x04, p.encrypted_key)];
    let algorithm = tlv(0x30, &[tlv(0x06, OID_AES256_CBC), tlv(0x04, p.iv)].concat());
    let content = [tlv(0x06, OID_DATA), algorithm, tlv(0x80, p.ciphertext)].concat();
    let enveloped = [v, tlv(0x31, &tlv(0x30, &ktri.concat())), tlv(0x30, &content)].concat();
    let info = [tlv(0x06, OID_ENVELOPED_DATA), tlv(0xa0, &tlv(0x30, &enveloped))].concat();
    tlv(0x30, &info)
}

/// Encrypts like LocalStack with aws-lc: random CEK and IV, OAEP-SHA256 wrap.
fn localstack_style_blob(plaintext: &[u8], key: &RecipientKey, edit: impl Fn(&mut DerParts<'_>)) -> Vec<u8> {
    let public = PublicEncryptingKey::from_der(&key.public_key_spki_der()).unwrap();
    let public = OaepPublicEncryptingKey::new(public).unwrap();
    let (mut cek, mut iv) = ([0u8; 32], [0u8; 16]);
    rand::fill(&mut cek).unwrap();
    rand::fill(&mut iv).unwrap();
    let mut wrapped = vec![0u8; public.ciphertext_size()];
    public.encrypt(&OAEP_SHA256_MGF1SHA256, &cek, &mut wrapped, None).unwrap();
    let ciphertext = aes256_cbc_encrypt(&cek, &iv, plaintext).unwrap();
    let mut parts = DerParts {
        version: 0,
        rid: localstack_rid(),
        key_algorithm: oaep_sha256_identifier(),
        encrypted_key: &wrapped,
        iv: &iv,
        ciphertext: &ciphertext,
    };
    edit(&mut parts);
    der_enveloped_data(&parts)
}

#[test]
fn localstack_der_v0_shape_built_with_aws_lc_decrypts() {
    let key = RecipientKey::generate().unwrap();
    let blob = localstack_style_blob(b"localstack data key 0123456789ab", &key, |_| {});
    assert_eq!(blob[1], 0x82, "definite lengths, as DER");
    let parsed = parse(&blob).unwrap();
    assert_eq!((parsed.version, parsed.recipient_version), (0, 0));
    assert_eq!(parsed.content_form, ContentForm::Primitive);
    let plaintext = decrypt_for_recipient(&blob, &key).unwrap();
    assert_eq!(plaintext.as_slice(), b"localstack data key 0123456789ab");
}

/// `testdata/localstack_*` came from LocalStack 2026.3.0's own
/// `pkcs7_envelope_encrypt` with a fresh key and plaintext 00..1f.
#[test]
fn a_blob_generated_by_localstack_decrypts_and_matches_the_rebuilt_layout() {
    let pem = String::from_utf8(local_fixture("localstack_recipient_key.pem")).unwrap();
    let key = RecipientKey::from_pem(&pem).unwrap();
    let blob = local_fixture("localstack_ciphertext_for_recipient.der");
    let plaintext = decrypt_for_recipient(&blob, &key).unwrap();
    assert_eq!(plaintext.as_slice(), local_fixture("localstack_expected_plaintext.bin").as_slice());
    let p = parse(&blob).unwrap();
    let RecipientId::IssuerAndSerialNumber { serial, .. } = &p.recipient else { panic!("rid") };
    assert_eq!(serial.as_slice(), &[1]);
    let rebuilt = der_enveloped_data(&DerParts {
        version: 0,
        rid: localstack_rid(),
        key_algorithm: oaep_sha256_identifier(),
        encrypted_key: &p.encrypted_key,
        iv: &p.iv,
        ciphertext: &p.encrypted_content,
    });
    assert_eq!(rebuilt, blob);
}

#[test]
fn inconsistent_versions_and_other_oaep_parameters_are_refused() {
    let key = RecipientKey::generate().unwrap();
    let ski_rid = tlv(0x80, &key.subject_key_identifier());
    let oaep_oid = tlv(0x06, OID_RSAES_OAEP);
    let with_p_source = {
        // Append pSourceFunc [2] to the parameters SEQUENCE.
        let full = oaep_sha256_identifier();
        let params = &full[2 + oaep_oid.len() + 2..];
        let p_source = tlv(0xa2, &tlv(0x30, &tlv(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 9])));
        tlv(0x30, &[oaep_oid.clone(), tlv(0x30, &[params, &p_source].concat())].concat())
    };
    let cases: [(Edit<'_>, CmsError); 4] = [
        (Box::new(|p| p.version = 2), CmsError::UnsupportedVersion { structure: "KeyTransRecipientInfo", version: 2 }),
        (
            Box::new(|p| p.rid = ski_rid.clone()),
            CmsError::UnsupportedVersion { structure: "KeyTransRecipientInfo", version: 0 },
        ),
        (
            Box::new(|p| p.key_algorithm = tlv(0x30, &oaep_oid)),
            CmsError::UnsupportedAlgorithm { field: "keyEncryptionAlgorithm", supported: OAEP_SUPPORTED },
        ),
        (
            Box::new(|p| p.key_algorithm = with_p_source.clone()),
            CmsError::UnsupportedField { field: "RSAES-OAEP-params.pSourceFunc" },
        ),
    ];
    for (i, (edit, want)) in cases.iter().enumerate() {
        let blob = localstack_style_blob(&[7; 16], &key, edit);
        assert_eq!(decrypt_for_recipient(&blob, &key).map(|_| ()), Err(want.clone()), "case {i}");
    }
}
