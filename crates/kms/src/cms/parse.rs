//! The CMS grammar walk: ContentInfo → EnvelopedData → one
//! KeyTransRecipientInfo and the EncryptedContentInfo, checking every OID,
//! version and parameter against what KMS (or LocalStack) sends.

use super::ber::{Element, Reader, Tag};
use super::{
    CmsError, ContentForm, EnvelopedData, MAX_INPUT_LEN, OAEP_SUPPORTED, OID_AES256_CBC, OID_DATA, OID_ENVELOPED_DATA,
    OID_MGF1, OID_RSAES_OAEP, OID_SHA256, RecipientId,
};

/// Parses a `CiphertextForRecipient` without decrypting anything.
pub fn parse(ber: &[u8]) -> Result<EnvelopedData, CmsError> {
    if ber.len() > MAX_INPUT_LEN {
        return Err(CmsError::InputTooLarge { len: ber.len(), max: MAX_INPUT_LEN });
    }
    let mut top = Reader::new(ber);
    let content_info = top.expect(Tag::SEQUENCE, "ContentInfo SEQUENCE")?;
    if !top.is_empty() {
        return Err(CmsError::TrailingBytes { count: top.remaining() });
    }
    let mut ci = content_info.reader()?;
    let content_type = ci.expect(Tag::OID, "ContentInfo.contentType")?;
    if content_type.content != OID_ENVELOPED_DATA {
        return Err(CmsError::UnsupportedContentType { field: "ContentInfo.contentType" });
    }
    let explicit = ci.expect(Tag::context(0, true), "ContentInfo.content [0]")?;
    ci.finish("end of ContentInfo")?;
    let mut inner = explicit.reader()?;
    let enveloped = inner.expect(Tag::SEQUENCE, "EnvelopedData SEQUENCE")?;
    inner.finish("end of ContentInfo.content")?;
    parse_enveloped_data(&enveloped)
}

fn parse_enveloped_data(enveloped: &Element<'_>) -> Result<EnvelopedData, CmsError> {
    let mut r = enveloped.reader()?;
    let version = r.expect(Tag::INTEGER, "EnvelopedData.version")?.small_uint()?;
    let offset = r.offset();
    if r.is_empty() {
        return Err(CmsError::UnexpectedElement { offset, expected: "EnvelopedData.recipientInfos SET" });
    }
    let next = r.read()?;
    if next.tag == Tag::context(0, true) {
        return Err(CmsError::UnsupportedField { field: "EnvelopedData.originatorInfo" });
    }
    if next.tag != Tag::SET {
        return Err(CmsError::UnexpectedElement { offset, expected: "EnvelopedData.recipientInfos SET" });
    }
    let (recipient_version, recipient, encrypted_key) = parse_recipient_infos(&next)?;
    let content_info = r.expect(Tag::SEQUENCE, "EncryptedContentInfo SEQUENCE")?;
    if !r.is_empty() {
        let offset = r.offset();
        if r.read()?.tag == Tag::context(1, true) {
            return Err(CmsError::UnsupportedField { field: "EnvelopedData.unprotectedAttrs" });
        }
        return Err(CmsError::UnexpectedElement { offset, expected: "end of EnvelopedData" });
    }
    // RFC 5652 6.1: with no originatorInfo or unprotectedAttrs the
    // EnvelopedData version is 0 iff every RecipientInfo is v0, else 2.
    if version != recipient_version {
        return Err(CmsError::UnsupportedVersion { structure: "EnvelopedData", version });
    }
    let (iv, encrypted_content, content_form) = parse_encrypted_content_info(&content_info)?;
    Ok(EnvelopedData { version, recipient_version, recipient, encrypted_key, iv, encrypted_content, content_form })
}

/// Exactly one KeyTransRecipientInfo: (version, rid, encryptedKey).
fn parse_recipient_infos(set: &Element<'_>) -> Result<(u8, RecipientId, Vec<u8>), CmsError> {
    let mut r = set.reader()?;
    if r.is_empty() {
        return Err(CmsError::RecipientCount { count: 0 });
    }
    let info = r.read()?;
    let mut count = 1;
    while !r.is_empty() {
        r.read()?;
        count += 1;
    }
    if count != 1 {
        return Err(CmsError::RecipientCount { count });
    }
    // The other RecipientInfo choices are all context-tagged.
    if info.tag != Tag::SEQUENCE {
        return Err(CmsError::UnsupportedRecipientType);
    }
    let mut r = info.reader()?;
    let version = r.expect(Tag::INTEGER, "KeyTransRecipientInfo.version")?.small_uint()?;
    let offset = r.offset();
    if r.is_empty() {
        return Err(CmsError::UnexpectedElement { offset, expected: "KeyTransRecipientInfo.rid" });
    }
    let rid_element = r.read()?;
    let recipient = if rid_element.tag == Tag::SEQUENCE {
        let mut ias = rid_element.reader()?;
        let issuer = ias.expect(Tag::SEQUENCE, "IssuerAndSerialNumber.issuer Name")?;
        let serial = ias.expect(Tag::INTEGER, "IssuerAndSerialNumber.serialNumber")?;
        ias.finish("end of IssuerAndSerialNumber")?;
        RecipientId::IssuerAndSerialNumber { issuer: issuer.raw.to_vec(), serial: serial.content.to_vec() }
    } else if rid_element.tag.same_type(Tag::context(0, false)) {
        RecipientId::SubjectKeyIdentifier(rid_element.string_octets()?.0.into_owned())
    } else {
        return Err(CmsError::UnexpectedElement { offset, expected: "KeyTransRecipientInfo.rid" });
    };
    // RFC 5652 6.2.1: v0 goes with issuerAndSerialNumber, v2 with an SKI.
    let version_ok = match recipient {
        RecipientId::IssuerAndSerialNumber { .. } => version == 0,
        RecipientId::SubjectKeyIdentifier(_) => version == 2,
    };
    if !version_ok {
        return Err(CmsError::UnsupportedVersion { structure: "KeyTransRecipientInfo", version });
    }
    let algorithm = r.expect(Tag::SEQUENCE, "keyEncryptionAlgorithm SEQUENCE")?;
    check_oaep_sha256(&algorithm)?;
    let encrypted_key = r.expect_string(Tag::OCTET_STRING, "encryptedKey OCTET STRING")?;
    r.finish("end of KeyTransRecipientInfo")?;
    Ok((version, recipient, encrypted_key.string_octets()?.0.into_owned()))
}

/// rsaesOaep with RSAES-OAEP-params { [0] sha256, [1] mgf1(sha256) } and the
/// default (empty) label, which is what KMS and LocalStack both send. Absent
/// parameters would mean SHA-1 and are refused.
fn check_oaep_sha256(algorithm: &Element<'_>) -> Result<(), CmsError> {
    let unsupported = CmsError::UnsupportedAlgorithm { field: "keyEncryptionAlgorithm", supported: OAEP_SUPPORTED };
    let mut r = algorithm.reader()?;
    if r.expect(Tag::OID, "keyEncryptionAlgorithm OID")?.content != OID_RSAES_OAEP {
        return Err(unsupported);
    }
    if r.is_empty() {
        return Err(unsupported);
    }
    let params = r.expect(Tag::SEQUENCE, "RSAES-OAEP-params SEQUENCE")?;
    r.finish("end of keyEncryptionAlgorithm")?;
    let mut p = params.reader()?;
    let hash = p.expect(Tag::context(0, true), "RSAES-OAEP-params.hashFunc [0]")?;
    let mut h = hash.reader()?;
    check_sha256_identifier(&h.expect(Tag::SEQUENCE, "hashFunc AlgorithmIdentifier")?)?;
    h.finish("end of hashFunc")?;
    let mask = p.expect(Tag::context(1, true), "RSAES-OAEP-params.maskGenFunc [1]")?;
    let mut m = mask.reader()?;
    let mgf = m.expect(Tag::SEQUENCE, "maskGenFunc AlgorithmIdentifier")?;
    m.finish("end of maskGenFunc")?;
    let mut g = mgf.reader()?;
    if g.expect(Tag::OID, "maskGenFunc OID")?.content != OID_MGF1 {
        return Err(unsupported);
    }
    check_sha256_identifier(&g.expect(Tag::SEQUENCE, "MGF1 hash AlgorithmIdentifier")?)?;
    g.finish("end of maskGenFunc AlgorithmIdentifier")?;
    if !p.is_empty() {
        return Err(CmsError::UnsupportedField { field: "RSAES-OAEP-params.pSourceFunc" });
    }
    Ok(())
}

/// `SEQUENCE { sha256, NULL }`: the encoding both producers use.
fn check_sha256_identifier(identifier: &Element<'_>) -> Result<(), CmsError> {
    let mut r = identifier.reader()?;
    if r.expect(Tag::OID, "hash algorithm OID")?.content != OID_SHA256 {
        return Err(CmsError::UnsupportedAlgorithm { field: "RSA-OAEP hash", supported: OAEP_SUPPORTED });
    }
    let null = r.expect(Tag::NULL, "hash algorithm NULL parameters")?;
    if !null.content.is_empty() {
        return Err(CmsError::Malformed { offset: null.offset, reason: "NULL with content" });
    }
    r.finish("end of hash AlgorithmIdentifier")
}

fn parse_encrypted_content_info(info: &Element<'_>) -> Result<([u8; 16], Vec<u8>, ContentForm), CmsError> {
    let mut r = info.reader()?;
    if r.expect(Tag::OID, "EncryptedContentInfo.contentType")?.content != OID_DATA {
        return Err(CmsError::UnsupportedContentType { field: "EncryptedContentInfo.contentType" });
    }
    let algorithm = r.expect(Tag::SEQUENCE, "contentEncryptionAlgorithm SEQUENCE")?;
    let mut a = algorithm.reader()?;
    if a.expect(Tag::OID, "contentEncryptionAlgorithm OID")?.content != OID_AES256_CBC {
        return Err(CmsError::UnsupportedAlgorithm { field: "contentEncryptionAlgorithm", supported: "AES-256-CBC" });
    }
    let iv = a.expect_string(Tag::OCTET_STRING, "AES-256-CBC IV OCTET STRING")?;
    a.finish("end of contentEncryptionAlgorithm")?;
    let iv = iv.string_octets()?.0;
    let iv: [u8; 16] = iv.as_ref().try_into().map_err(|_| CmsError::InvalidIv { len: iv.len() })?;
    if r.is_empty() {
        return Err(CmsError::MissingEncryptedContent);
    }
    let content = r.expect_string(Tag::context(0, false), "encryptedContent [0]")?;
    r.finish("end of EncryptedContentInfo")?;
    let (bytes, segments) = content.string_octets()?;
    if bytes.is_empty() || bytes.len() % 16 != 0 {
        return Err(CmsError::InvalidEncryptedContentLength { len: bytes.len() });
    }
    let form = match segments {
        None => ContentForm::Primitive,
        Some(segments) => ContentForm::Constructed { segments },
    };
    Ok((iv, bytes.into_owned(), form))
}
