//! The COSE_Sign1 envelope (RFC 9052 §4.2) exactly as the NSM produces it.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_bytes::Bytes;

use crate::VerifyError;

/// The protected header as the NSM encodes it: the map `{1: -35}` (alg: ES384).
#[cfg_attr(not(feature = "mock"), allow(dead_code))]
pub(crate) const PROTECTED_ES384: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];
/// ES384 signatures are r || s, 48 bytes each.
pub(crate) const ES384_SIGNATURE_LEN: usize = 96;

/// CBOR tag 18 (COSE_Sign1) in its one-byte encoding.
const TAG_COSE_SIGN1: u8 = 0xd2;
/// A definite-length CBOR array of four items.
const ARRAY_OF_FOUR: u8 = 0x84;
const COSE_ALG: i64 = 1;
const ALG_ES384: i64 = -35;

/// The four parts of a COSE_Sign1, borrowed from the input.
pub(crate) struct CoseSign1<'a> {
    pub(crate) protected: &'a [u8],
    pub(crate) payload: &'a [u8],
    pub(crate) signature: [u8; ES384_SIGNATURE_LEN],
}

#[derive(Deserialize)]
struct RawSign1<'a>(
    #[serde(borrow)] &'a Bytes,
    UnprotectedHeader,
    #[serde(borrow)] &'a Bytes,
    #[serde(borrow)] &'a Bytes,
);

/// Splits a COSE_Sign1, untagged (as the NSM returns it) or under tag 18. The protected
/// header must say ES384 and nothing else; the unprotected header must be a map (the NSM
/// leaves it empty; it is not signed, so its contents are never used).
pub(crate) fn parse_sign1(bytes: &[u8]) -> Result<CoseSign1<'_>, VerifyError> {
    let body = match bytes {
        [TAG_COSE_SIGN1, rest @ ..] => rest,
        _ => bytes,
    };
    match body.first() {
        Some(&ARRAY_OF_FOUR) => {}
        Some(other) => {
            return Err(VerifyError::MalformedCose(format!(
                "starts with 0x{other:02x}; expected 0x84 (array of 4) or 0xd2 0x84 (tag 18)"
            )));
        }
        None => return Err(VerifyError::MalformedCose("no bytes".into())),
    }
    let RawSign1(protected, _unprotected, payload, signature) =
        serde_cbor::from_slice(body).map_err(|e| VerifyError::MalformedCose(e.to_string()))?;
    check_protected_header(protected)?;
    let signature = <[u8; ES384_SIGNATURE_LEN]>::try_from(&signature[..]).map_err(|_| {
        VerifyError::MalformedCose(format!(
            "signature is {} bytes; ES384 signatures are {ES384_SIGNATURE_LEN}",
            signature.len()
        ))
    })?;
    Ok(CoseSign1 { protected, payload, signature })
}

/// The bytes the signature covers: `["Signature1", protected, h'', payload]` in CBOR.
pub(crate) fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    const CONTEXT: &[u8] = b"Signature1";
    let mut out = Vec::with_capacity(payload.len() + protected.len() + 32);
    out.push(ARRAY_OF_FOUR);
    out.push(0x60 | CONTEXT.len() as u8); // text string, length < 24
    out.extend_from_slice(CONTEXT);
    push_bstr(&mut out, protected);
    push_bstr(&mut out, &[]); // external_aad
    push_bstr(&mut out, payload);
    out
}

/// Appends a CBOR byte string with the shortest length header.
pub(crate) fn push_bstr(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    match u8::try_from(len) {
        Ok(short) if short < 24 => out.push(0x40 | short),
        Ok(short) => out.extend_from_slice(&[0x58, short]),
        Err(_) => match u16::try_from(len) {
            Ok(medium) => {
                out.push(0x59);
                out.extend_from_slice(&medium.to_be_bytes());
            }
            Err(_) => match u32::try_from(len) {
                Ok(long) => {
                    out.push(0x5a);
                    out.extend_from_slice(&long.to_be_bytes());
                }
                Err(_) => {
                    out.push(0x5b);
                    out.extend_from_slice(&(len as u64).to_be_bytes());
                }
            },
        },
    }
    out.extend_from_slice(bytes);
}

fn check_protected_header(protected: &[u8]) -> Result<(), VerifyError> {
    serde_cbor::from_slice::<ProtectedEs384>(protected)
        .map(|_| ())
        .map_err(|e| VerifyError::UnsupportedAlgorithm(format!("{e}; bytes {}", hex::encode(protected))))
}

/// The protected header, accepted only if it is exactly `{1: -35}`.
struct ProtectedEs384;

impl<'de> Deserialize<'de> for ProtectedEs384 {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ProtectedEs384;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the map {1: -35}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                match map.next_entry::<i64, i64>()? {
                    Some((COSE_ALG, ALG_ES384)) => {}
                    Some((label, value)) => {
                        return Err(de::Error::custom(format!("header {label}: {value}")));
                    }
                    None => return Err(de::Error::custom("empty map, no alg")),
                }
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("more than the alg entry"));
                }
                Ok(ProtectedEs384)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// The unprotected header: any map, never read.
struct UnprotectedHeader;

impl<'de> Deserialize<'de> for UnprotectedHeader {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UnprotectedHeader;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map (the unprotected header)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(UnprotectedHeader)
            }
        }
        deserializer.deserialize_map(V)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    fn envelope(protected: &[u8], unprotected: &[u8], payload: &[u8], signature: &[u8]) -> Vec<u8> {
        let mut out = vec![ARRAY_OF_FOUR];
        push_bstr(&mut out, protected);
        out.extend_from_slice(unprotected);
        push_bstr(&mut out, payload);
        push_bstr(&mut out, signature);
        out
    }

    #[test]
    fn splits_an_nsm_shaped_envelope_tagged_or_not() {
        let doc = envelope(&PROTECTED_ES384, &[0xa0], b"payload", &[7; 96]);
        let parsed = parse_sign1(&doc).unwrap();
        assert_eq!(parsed.payload, b"payload");
        assert_eq!(parsed.signature, [7; 96]);
        let mut tagged = vec![TAG_COSE_SIGN1];
        tagged.extend_from_slice(&doc);
        assert_eq!(parse_sign1(&tagged).unwrap().payload, b"payload");
    }

    #[test]
    fn refuses_other_algorithms_and_extra_protected_headers() {
        // {1: -7} is ES256.
        let es256 = envelope(&[0xa1, 0x01, 0x26], &[0xa0], b"p", &[0; 96]);
        assert!(matches!(parse_sign1(&es256), Err(VerifyError::UnsupportedAlgorithm(_))));
        // {1: -35, 4: h''}
        let extra = envelope(&[0xa2, 0x01, 0x38, 0x22, 0x04, 0x40], &[0xa0], b"p", &[0; 96]);
        assert!(matches!(parse_sign1(&extra), Err(VerifyError::UnsupportedAlgorithm(_))));
        let empty = envelope(&[0xa0], &[0xa0], b"p", &[0; 96]);
        assert!(matches!(parse_sign1(&empty), Err(VerifyError::UnsupportedAlgorithm(_))));
    }

    #[test]
    fn refuses_wrong_signature_length_trailing_bytes_and_other_tags() {
        let short = envelope(&PROTECTED_ES384, &[0xa0], b"p", &[0; 95]);
        assert!(matches!(parse_sign1(&short), Err(VerifyError::MalformedCose(_))));
        let mut trailing = envelope(&PROTECTED_ES384, &[0xa0], b"p", &[0; 96]);
        trailing.push(0);
        assert!(matches!(parse_sign1(&trailing), Err(VerifyError::MalformedCose(_))));
        let mut tag98 = vec![0xd8, 0x62];
        tag98.extend_from_slice(&envelope(&PROTECTED_ES384, &[0xa0], b"p", &[0; 96]));
        assert!(matches!(parse_sign1(&tag98), Err(VerifyError::MalformedCose(_))));
        let not_a_map = envelope(&PROTECTED_ES384, &[0x80], b"p", &[0; 96]);
        assert!(matches!(parse_sign1(&not_a_map), Err(VerifyError::MalformedCose(_))));
    }

    #[test]
    fn sig_structure_matches_rfc9052_layout() {
        let s = sig_structure(&PROTECTED_ES384, b"ab");
        let mut expected = vec![0x84, 0x6a];
        expected.extend_from_slice(b"Signature1");
        expected.extend_from_slice(&[0x44, 0xa1, 0x01, 0x38, 0x22, 0x40, 0x42, b'a', b'b']);
        assert_eq!(s, expected);
    }

    #[test]
    fn bstr_headers_are_shortest_form() {
        for (len, header) in [(23, vec![0x57]), (24, vec![0x58, 24]), (256, vec![0x59, 1, 0])] {
            let mut out = Vec::new();
            push_bstr(&mut out, &vec![0; len]);
            assert_eq!(out[..header.len()], header[..], "{len}");
            assert_eq!(out.len(), header.len() + len);
        }
    }
}
