//! Building a `CiphertextForRecipient` byte-for-byte the way AWS KMS does, for
//! the project's attesting dev KMS.

use aws_lc_rs::rand;
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use zeroize::Zeroizing;

use super::key::{CEK_LEN, aes256_cbc_encrypt, sha256};
use super::{
    CmsError, MAX_INPUT_LEN, OID_AES256_CBC, OID_DATA, OID_ENVELOPED_DATA, OID_MGF1, OID_RSAES_OAEP, OID_SHA256,
};

/// Largest plaintext [`encrypt_for_recipient`] accepts: half the parser's
/// input limit, which leaves ample room for padding, headers and chunking.
pub const MAX_PLAINTEXT_LEN: usize = MAX_INPUT_LEN / 2;

/// KMS splits encryptedContent into OCTET STRING segments of this size.
const KMS_SEGMENT_LEN: usize = 1000;

/// Encrypts `plaintext` to the RSA public key `recipient_spki_der` and wraps
/// it as real KMS does: BER with indefinite-length outer encodings,
/// EnvelopedData v2, one KeyTransRecipientInfo v2 whose rid is `[0]`
/// SHA-256(`recipient_spki_der`), RSAES-OAEP-SHA256/MGF1-SHA256 parameters,
/// AES-256-CBC with a random CEK and IV, and encryptedContent as a
/// constructed indefinite `[0]` of segments of at most 1000 bytes.
pub fn encrypt_for_recipient(plaintext: &[u8], recipient_spki_der: &[u8]) -> Result<Vec<u8>, CmsError> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(CmsError::PlaintextTooLarge { len: plaintext.len(), max: MAX_PLAINTEXT_LEN });
    }
    let public = PublicEncryptingKey::from_der(recipient_spki_der).map_err(|_| CmsError::InvalidRecipientPublicKey)?;
    let public = OaepPublicEncryptingKey::new(public).map_err(|_| CmsError::InvalidRecipientPublicKey)?;

    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    let mut iv = [0u8; 16];
    rand::fill(&mut cek[..]).map_err(|_| CmsError::Crypto { operation: "random CEK" })?;
    rand::fill(&mut iv).map_err(|_| CmsError::Crypto { operation: "random IV" })?;

    let mut encrypted_key = vec![0u8; public.ciphertext_size()];
    let len = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, &cek[..], &mut encrypted_key, None)
        .map_err(|_| CmsError::Crypto { operation: "RSA-OAEP key wrap" })?
        .len();
    encrypted_key.truncate(len);

    let ciphertext = aes256_cbc_encrypt(&cek[..], &iv, plaintext)?;
    let ski = sha256(recipient_spki_der);
    Ok(encode_kms_shape(&ski, &encrypted_key, &iv, &ciphertext))
}

/// Lays out the KMS encoding around already-encrypted parts. Separate from
/// the cryptography so tests can re-encode a parsed real blob and compare.
pub(super) fn encode_kms_shape(ski: &[u8], encrypted_key: &[u8], iv: &[u8; 16], ciphertext: &[u8]) -> Vec<u8> {
    // KMS encodes the RecipientInfo with definite lengths...
    let mut ktri = tlv(0x02, &[2]);
    ktri.extend(tlv(0x80, ski));
    ktri.extend(oaep_sha256_identifier());
    ktri.extend(tlv(0x04, encrypted_key));
    let recipient_infos = tlv(0x31, &tlv(0x30, &ktri));

    let mut algorithm = tlv(0x06, OID_AES256_CBC);
    algorithm.extend(tlv(0x04, iv));

    // ...and everything around it with indefinite ones.
    let mut out = Vec::with_capacity(recipient_infos.len() + ciphertext.len() * 101 / 100 + 128);
    out.extend([0x30, 0x80]); // ContentInfo
    out.extend(tlv(0x06, OID_ENVELOPED_DATA));
    out.extend([0xa0, 0x80]); // [0] EXPLICIT content
    out.extend([0x30, 0x80]); // EnvelopedData
    out.extend(tlv(0x02, &[2]));
    out.extend(recipient_infos);
    out.extend([0x30, 0x80]); // EncryptedContentInfo
    out.extend(tlv(0x06, OID_DATA));
    out.extend(tlv(0x30, &algorithm));
    out.extend([0xa0, 0x80]); // [0] IMPLICIT encryptedContent, constructed
    for segment in ciphertext.chunks(KMS_SEGMENT_LEN) {
        out.extend(tlv(0x04, segment));
    }
    // End-of-contents for encryptedContent, EncryptedContentInfo,
    // EnvelopedData, [0] EXPLICIT and ContentInfo.
    out.extend([0u8; 10]);
    out
}

/// `rsaesOaep` with `{ [0] sha256, [1] mgf1(sha256) }`, NULL hash parameters
/// included, exactly as KMS and LocalStack encode it.
pub(super) fn oaep_sha256_identifier() -> Vec<u8> {
    let mut mgf = tlv(0x06, OID_MGF1);
    mgf.extend(sha256_identifier());
    let mut params = tlv(0xa0, &sha256_identifier());
    params.extend(tlv(0xa1, &tlv(0x30, &mgf)));
    let mut algorithm = tlv(0x06, OID_RSAES_OAEP);
    algorithm.extend(tlv(0x30, &params));
    tlv(0x30, &algorithm)
}

fn sha256_identifier() -> Vec<u8> {
    let mut identifier = tlv(0x06, OID_SHA256);
    identifier.extend([0x05, 0x00]);
    tlv(0x30, &identifier)
}

/// One DER element with a single-octet identifier and a minimal definite length.
pub(super) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}
