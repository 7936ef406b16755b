//! The attestation document: parsed from untrusted bytes once, with every size limit checked
//! before anything is copied. Nothing here is trusted until [`crate::verify`] has checked it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_bytes::Bytes;

use crate::cose::{self, ES384_SIGNATURE_LEN};
use crate::{MAX_PCRS, Pcr, VerifyError};

/// Longest accepted document. The NSM's response buffer is 12 KiB, and the largest real
/// document seen (three 1024-byte fields) is 7.4 KiB.
pub const MAX_DOCUMENT_LEN: usize = 16 * 1024;
/// Longest accepted `module_id` (real ones are 38 characters).
pub const MAX_MODULE_ID_LEN: usize = 256;
/// Longest accepted DER certificate (real ones are about 650 bytes).
pub const MAX_CERTIFICATE_LEN: usize = 4096;
/// Most certificates accepted in `cabundle` (real documents have 4).
pub const MAX_CABUNDLE_LEN: usize = 8;
/// Longest `public_key` the NSM accepts.
pub const MAX_PUBLIC_KEY_LEN: usize = 1024;
/// Longest `user_data` the NSM accepts.
pub const MAX_USER_DATA_LEN: usize = 1024;
/// Longest `nonce` the NSM accepts.
pub const MAX_NONCE_LEN: usize = 1024;

/// The digest named in a document: the hash of the NSM's PCR bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Digest {
    /// "SHA256".
    Sha256,
    /// "SHA384", the only one Nitro Enclaves use and the only one [`crate::verify`] accepts.
    Sha384,
    /// "SHA512".
    Sha512,
}

impl Digest {
    /// The name as it appears in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fields of an attestation document. Reached through
/// [`AttestationDocument::unverified_payload`] (nothing checked) or
/// [`crate::VerifiedDocument::payload`] (everything checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationPayload {
    module_id: String,
    digest: Digest,
    timestamp_ms: u64,
    pcrs: BTreeMap<u16, Pcr>,
    certificate: Vec<u8>,
    cabundle: Vec<Vec<u8>>,
    public_key: Option<Vec<u8>>,
    user_data: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
}

impl AttestationPayload {
    /// The enclave's id, e.g. `i-0918f6c55e3b61d89-enc018aa8b8e2285d13`.
    pub fn module_id(&self) -> &str {
        &self.module_id
    }
    /// The PCR bank's digest.
    pub fn digest(&self) -> Digest {
        self.digest
    }
    /// When the NSM made the document, in milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }
    /// Every PCR, by index.
    pub fn pcrs(&self) -> &BTreeMap<u16, Pcr> {
        &self.pcrs
    }
    /// PCR `index`, if present.
    pub fn pcr(&self, index: u16) -> Option<&Pcr> {
        self.pcrs.get(&index)
    }
    /// The leaf certificate (DER) whose key signs the document.
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }
    /// The CA certificates (DER), root first.
    pub fn cabundle(&self) -> &[Vec<u8>] {
        &self.cabundle
    }
    /// The `public_key` field, if present and not null.
    pub fn public_key(&self) -> Option<&[u8]> {
        self.public_key.as_deref()
    }
    /// The `user_data` field, if present and not null.
    pub fn user_data(&self) -> Option<&[u8]> {
        self.user_data.as_deref()
    }
    /// The `nonce` field, if present and not null.
    pub fn nonce(&self) -> Option<&[u8]> {
        self.nonce.as_deref()
    }
}

/// A parsed but **unverified** attestation document. Its fields can be read only through
/// [`unverified_payload`](Self::unverified_payload); [`verify`](Self::verify) turns it into a
/// [`crate::VerifiedDocument`].
#[derive(Debug, Clone)]
pub struct AttestationDocument {
    pub(crate) protected: Vec<u8>,
    pub(crate) payload_bytes: Vec<u8>,
    pub(crate) signature: [u8; ES384_SIGNATURE_LEN],
    pub(crate) payload: AttestationPayload,
}

impl AttestationDocument {
    /// The payload as the document claims it. Nothing is verified: do not trust these values.
    pub fn unverified_payload(&self) -> &AttestationPayload {
        &self.payload
    }
}

/// Parses an attestation document (untagged COSE_Sign1, or under CBOR tag 18) without
/// verifying anything. Size limits are checked before anything is copied; arbitrary input
/// gives an error, never a panic.
pub fn parse(bytes: &[u8]) -> Result<AttestationDocument, VerifyError> {
    if bytes.len() > MAX_DOCUMENT_LEN {
        return Err(VerifyError::DocumentTooLarge { len: bytes.len(), max: MAX_DOCUMENT_LEN });
    }
    let sign1 = cose::parse_sign1(bytes)?;
    let raw: RawPayload<'_> =
        serde_cbor::from_slice(sign1.payload).map_err(|e| VerifyError::MalformedPayload(e.to_string()))?;
    let payload = raw.into_payload()?;
    Ok(AttestationDocument {
        protected: sign1.protected.to_vec(),
        payload_bytes: sign1.payload.to_vec(),
        signature: sign1.signature,
        payload,
    })
}

/// The payload map as borrowed slices, so limits are checked before anything is copied.
/// Fields may come in any order; duplicates and unknown fields are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPayload<'a> {
    #[serde(borrow)]
    module_id: &'a str,
    #[serde(borrow)]
    digest: &'a str,
    timestamp: u64,
    pcrs: PcrMap,
    #[serde(borrow)]
    certificate: &'a Bytes,
    #[serde(borrow)]
    cabundle: CaBundle<'a>,
    #[serde(borrow, default)]
    public_key: Option<&'a Bytes>,
    #[serde(borrow, default)]
    user_data: Option<&'a Bytes>,
    #[serde(borrow, default)]
    nonce: Option<&'a Bytes>,
}

impl RawPayload<'_> {
    fn into_payload(self) -> Result<AttestationPayload, VerifyError> {
        check_len("module_id", self.module_id.len(), MAX_MODULE_ID_LEN)?;
        if self.module_id.is_empty() {
            return Err(VerifyError::MalformedPayload("module_id is empty".into()));
        }
        let digest = match self.digest {
            "SHA256" => Digest::Sha256,
            "SHA384" => Digest::Sha384,
            "SHA512" => Digest::Sha512,
            other => {
                return Err(VerifyError::MalformedPayload(format!(
                    "digest {:?} is not SHA256, SHA384 or SHA512",
                    other.chars().take(16).collect::<String>()
                )));
            }
        };
        if self.timestamp == 0 {
            return Err(VerifyError::MalformedPayload("timestamp is 0".into()));
        }
        check_certificate("certificate", self.certificate)?;
        for cert in &self.cabundle.0 {
            check_certificate("cabundle", cert)?;
        }
        let optional = |field, value: Option<&Bytes>, max| -> Result<_, VerifyError> {
            value.map(|v| check_len(field, v.len(), max).map(|()| v.to_vec())).transpose()
        };
        Ok(AttestationPayload {
            module_id: self.module_id.to_owned(),
            digest,
            timestamp_ms: self.timestamp,
            pcrs: self.pcrs.0,
            certificate: self.certificate.to_vec(),
            cabundle: self.cabundle.0.iter().map(|c| c.to_vec()).collect(),
            public_key: optional("public_key", self.public_key, MAX_PUBLIC_KEY_LEN)?,
            user_data: optional("user_data", self.user_data, MAX_USER_DATA_LEN)?,
            nonce: optional("nonce", self.nonce, MAX_NONCE_LEN)?,
        })
    }
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), VerifyError> {
    if len > max {
        return Err(VerifyError::FieldTooLarge { field, len, max });
    }
    Ok(())
}

fn check_certificate(field: &'static str, der: &[u8]) -> Result<(), VerifyError> {
    if der.is_empty() {
        return Err(VerifyError::MalformedPayload(format!("{field}: empty certificate")));
    }
    check_len(field, der.len(), MAX_CERTIFICATE_LEN)
}

/// `pcrs`: index → value, at most [`MAX_PCRS`] entries, indices below [`MAX_PCRS`], no
/// duplicates, values of 32, 48 or 64 bytes.
struct PcrMap(BTreeMap<u16, Pcr>);

impl<'de> Deserialize<'de> for PcrMap {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PcrMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of PCR index to PCR value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PcrMap, A::Error> {
                let mut pcrs = BTreeMap::new();
                while let Some((index, value)) = map.next_entry::<u16, &'de Bytes>()? {
                    if usize::from(index) >= MAX_PCRS {
                        return Err(de::Error::custom(format!("PCR index {index} out of range")));
                    }
                    let pcr = Pcr::from_bytes(value).map_err(|e| de::Error::custom(format!("PCR{index}: {e}")))?;
                    if pcrs.insert(index, pcr).is_some() {
                        return Err(de::Error::custom(format!("PCR{index} appears twice")));
                    }
                }
                if pcrs.is_empty() {
                    return Err(de::Error::custom("no PCRs"));
                }
                Ok(PcrMap(pcrs))
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// `cabundle`: 1 to [`MAX_CABUNDLE_LEN`] byte strings; the claimed length is checked before
/// any allocation.
struct CaBundle<'a>(Vec<&'a Bytes>);

impl<'de: 'a, 'a> Deserialize<'de> for CaBundle<'a> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CaBundle<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an array of 1 to {MAX_CABUNDLE_LEN} certificates")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CaBundle<'a>, A::Error> {
                let too_many = || de::Error::custom(format!("more than {MAX_CABUNDLE_LEN} certificates in cabundle"));
                let hint = seq.size_hint().unwrap_or(0);
                if hint > MAX_CABUNDLE_LEN {
                    return Err(too_many());
                }
                let mut certs = Vec::with_capacity(hint);
                while let Some(cert) = seq.next_element::<&'de Bytes>()? {
                    if certs.len() == MAX_CABUNDLE_LEN {
                        return Err(too_many());
                    }
                    certs.push(cert);
                }
                if certs.is_empty() {
                    return Err(de::Error::custom("cabundle is empty"));
                }
                Ok(CaBundle(certs))
            }
        }
        deserializer.deserialize_seq(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;
    use crate::cose::{PROTECTED_ES384, push_bstr};

    /// A minimal well-formed document (not validly signed) with the given payload.
    fn wrap(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x84];
        push_bstr(&mut out, &PROTECTED_ES384);
        out.push(0xa0);
        push_bstr(&mut out, payload);
        push_bstr(&mut out, &[0; 96]);
        out
    }

    fn payload_map(entries: Vec<(&str, serde_cbor::Value)>) -> Vec<u8> {
        use serde_cbor::Value;
        let map: BTreeMap<Value, Value> = entries.into_iter().map(|(k, v)| (Value::Text(k.into()), v)).collect();
        serde_cbor::to_vec(&Value::Map(map)).unwrap()
    }

    fn good_entries() -> Vec<(&'static str, serde_cbor::Value)> {
        use serde_cbor::Value;
        let pcrs: BTreeMap<Value, Value> = (0..16).map(|i| (Value::Integer(i), Value::Bytes(vec![0; 48]))).collect();
        vec![
            ("module_id", Value::Text("i-0-enc0".into())),
            ("digest", Value::Text("SHA384".into())),
            ("timestamp", Value::Integer(1_700_000_000_000)),
            ("pcrs", Value::Map(pcrs)),
            ("certificate", Value::Bytes(vec![0x30; 10])),
            ("cabundle", Value::Array(vec![Value::Bytes(vec![0x30; 10])])),
            ("public_key", Value::Null),
        ]
    }

    #[test]
    fn parses_fields_with_absent_and_null_optionals() {
        let doc = parse(&wrap(&payload_map(good_entries()))).unwrap();
        let p = doc.unverified_payload();
        assert_eq!(p.module_id(), "i-0-enc0");
        assert_eq!(p.digest(), Digest::Sha384);
        assert_eq!(p.pcrs().len(), 16);
        assert_eq!((p.public_key(), p.user_data(), p.nonce()), (None, None, None));
    }

    #[test]
    fn refuses_unknown_fields_and_missing_required_ones() {
        let mut entries = good_entries();
        entries.push(("extra", serde_cbor::Value::Null));
        assert!(matches!(parse(&wrap(&payload_map(entries))), Err(VerifyError::MalformedPayload(_))));
        let missing: Vec<_> = good_entries().into_iter().filter(|(k, _)| *k != "certificate").collect();
        assert!(matches!(parse(&wrap(&payload_map(missing))), Err(VerifyError::MalformedPayload(_))));
    }

    #[test]
    fn refuses_oversized_fields_before_copying() {
        use serde_cbor::Value;
        let mut entries = good_entries();
        entries.push(("nonce", Value::Bytes(vec![1; MAX_NONCE_LEN + 1])));
        let err = parse(&wrap(&payload_map(entries))).unwrap_err();
        assert!(matches!(err, VerifyError::FieldTooLarge { field: "nonce", len: 1025, .. }), "{err}");
    }

    #[test]
    fn refuses_bad_pcrs() {
        use serde_cbor::Value;
        for pcrs in [
            vec![(Value::Integer(0), Value::Bytes(vec![0; 47]))],
            vec![(Value::Integer(32), Value::Bytes(vec![0; 48]))],
            vec![],
        ] {
            let mut entries = good_entries();
            entries[3] = ("pcrs", Value::Map(pcrs.into_iter().collect()));
            assert!(matches!(parse(&wrap(&payload_map(entries))), Err(VerifyError::MalformedPayload(_))));
        }
    }

    #[test]
    fn refuses_a_cabundle_claiming_a_huge_length() {
        use serde_cbor::Value;
        let mut entries = good_entries();
        entries[5] = ("cabundle", Value::Array(vec![Value::Bytes(vec![0x30]); MAX_CABUNDLE_LEN + 1]));
        assert!(parse(&wrap(&payload_map(entries))).is_err());
        let mut entries = good_entries();
        entries[5] = ("cabundle", Value::Array(vec![]));
        assert!(parse(&wrap(&payload_map(entries))).is_err());
    }

    #[test]
    fn refuses_oversized_documents_up_front() {
        let err = parse(&vec![0x84; MAX_DOCUMENT_LEN + 1]).unwrap_err();
        assert!(matches!(err, VerifyError::DocumentTooLarge { .. }));
    }

    /// A map encoded entry by entry, so keys may repeat.
    fn raw_map(entries: &[(serde_cbor::Value, serde_cbor::Value)]) -> Vec<u8> {
        let mut out = vec![0xa0 | u8::try_from(entries.len()).unwrap()];
        for (key, value) in entries {
            out.extend(serde_cbor::to_vec(key).unwrap());
            out.extend(serde_cbor::to_vec(value).unwrap());
        }
        out
    }

    fn text_keyed(entries: Vec<(&str, serde_cbor::Value)>) -> Vec<(serde_cbor::Value, serde_cbor::Value)> {
        entries.into_iter().map(|(k, v)| (serde_cbor::Value::Text(k.into()), v)).collect()
    }

    #[test]
    fn refuses_a_field_given_twice() {
        let mut entries = good_entries();
        entries.push(("digest", serde_cbor::Value::Text("SHA384".into())));
        let err = parse(&wrap(&raw_map(&text_keyed(entries)))).unwrap_err();
        assert!(err.to_string().contains("duplicate field"), "{err}");
    }

    #[test]
    fn refuses_a_pcr_index_given_twice() {
        use serde_cbor::Value;
        let pcr = (Value::Integer(0), Value::Bytes(vec![0; 48]));
        let pcrs = raw_map(&[pcr.clone(), pcr]);
        let mut entries = text_keyed(good_entries());
        entries.retain(|(k, _)| k != &Value::Text("pcrs".into()));
        let mut payload = raw_map(&entries);
        payload[0] += 1; // one more entry: the raw pcrs map appended below
        payload.extend(serde_cbor::to_vec(&Value::Text("pcrs".into())).unwrap());
        payload.extend(pcrs);
        let err = parse(&wrap(&payload)).unwrap_err();
        assert!(err.to_string().contains("PCR0 appears twice"), "{err}");
    }
}
