//! Parsing keyring requests into typed values once, at the boundary, and shaping the answers.

use keyward_client::keys::{AuditReceiptInfo, CreateKey, KeyInfo, KeySignatureInfo, SignWithKey, VersionInfo};
use keyward_keyring::parse_sign_fields;
use keyward_proto::{KeyIdentity, KeyName, KeySignature, KeyType, KeystoreId, SignAlgorithm, SignFormat, SignPayload};
use keyward_store::{KeyRow, VersionRow};

use crate::{errors::ApiError, keys_api::effective_state};

/// The full name and type of a key to create in keystore `keystore` (the body names the key
/// within it).
pub fn parse_create(keystore: &KeystoreId, key: &CreateKey) -> Result<(KeyName, KeyType), ApiError> {
    let name = crate::key_path::key_in(keystore, &key.name)?;
    let key_type = KeyType::parse(&key.key_type).ok_or_else(|| {
        let shown: String = key.key_type.chars().take(32).collect();
        ApiError::invalid("invalid_key_type", format!("unknown key type {shown:?}: use {}", KeyType::NAMES))
    })?;
    Ok((name, key_type))
}

fn algorithm_name(algorithm: SignAlgorithm) -> &'static str {
    match algorithm {
        SignAlgorithm::Ecdsa => "ecdsa",
        SignAlgorithm::Bip340 => "bip340",
        SignAlgorithm::Ed25519 => "ed25519",
    }
}

pub(crate) fn format_name(format: SignFormat) -> &'static str {
    match format {
        SignFormat::Compact => "compact",
        SignFormat::Der => "der",
        SignFormat::Ethereum => "ethereum",
    }
}

/// The scheme, what to sign and the encoding, for a key of `key_type` (the enclave parses a
/// signed body with the same `parse_sign_fields`).
pub fn parse_sign(body: &SignWithKey, key_type: KeyType) -> Result<(SignAlgorithm, SignPayload, SignFormat), ApiError> {
    parse_sign_fields(body.fields(), key_type).map_err(|e| ApiError::invalid(e.code, e.message))
}

/// A key's metadata as the API shows it.
pub fn key_info(key: &KeyRow, versions: &[VersionRow], now: i64) -> KeyInfo {
    KeyInfo {
        name: key.name.clone(),
        key_type: key.key_type.clone(),
        state: effective_state(key, now).to_owned(),
        latest_version: u32::try_from(key.latest_version).unwrap_or(0),
        versions: versions
            .iter()
            .map(|v| VersionInfo {
                version: u32::try_from(v.version).unwrap_or(0),
                public_key_hex: (!v.public_key.is_empty()).then(|| hex::encode(&v.public_key)),
                created_at: u64::try_from(v.created_at).unwrap_or(0),
            })
            .collect(),
        exportable: key.exportable,
        origin: key.origin.clone(),
        created_at: u64::try_from(key.created_at).unwrap_or(0),
        deletion_due: key.deletion_due.and_then(|d| u64::try_from(d).ok()),
        min_decryption_version: u32::try_from(key.min_decryption_version).unwrap_or(1),
        receipt: None,
    }
}

/// A signature as the API shows it.
pub fn signature_info(
    identity: &KeyIdentity,
    public_key: &[u8],
    algorithm: SignAlgorithm,
    format: SignFormat,
    signature: &KeySignature,
) -> KeySignatureInfo {
    KeySignatureInfo {
        name: identity.name.to_string(),
        version: identity.version.get(),
        algorithm: algorithm_name(algorithm).to_owned(),
        format: format_name(format).to_owned(),
        signature_hex: hex::encode(&signature.signature),
        public_key_hex: hex::encode(public_key),
        recovery_id: signature.recovery_id,
        receipt: signature.receipt.map(|r| AuditReceiptInfo { seq: r.seq, hash: r.hash }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_keyring::MAX_MESSAGE_LEN;
    use keyward_proto::MessageHash;

    fn request(f: impl FnOnce(&mut SignWithKey)) -> SignWithKey {
        let mut body = SignWithKey::default();
        f(&mut body);
        body
    }

    #[test]
    fn defaults_follow_the_key_type() {
        let digest = request(|b| b.digest_hex = Some("ab".repeat(32)));
        let (algorithm, _, format) = parse_sign(&digest, KeyType::Secp256k1).unwrap();
        assert_eq!((algorithm, format), (SignAlgorithm::Ecdsa, SignFormat::Compact));
        let message = request(|b| b.message_b64 = Some("aGVsbG8=".into()));
        let (algorithm, payload, _) = parse_sign(&message, KeyType::Ed25519).unwrap();
        assert_eq!(algorithm, SignAlgorithm::Ed25519);
        assert_eq!(payload, SignPayload::Message { bytes: b"hello".to_vec(), hash: MessageHash::None });
        let (_, payload, _) = parse_sign(&message, KeyType::P256).unwrap();
        assert_eq!(payload, SignPayload::Message { bytes: b"hello".to_vec(), hash: MessageHash::Sha256 });
    }

    #[test]
    fn each_bad_request_has_its_code() {
        let cases: Vec<(SignWithKey, KeyType, &str)> = vec![
            (request(|_| {}), KeyType::Secp256k1, "invalid_payload"),
            (
                request(|b| {
                    b.digest_hex = Some("ab".repeat(32));
                    b.message_b64 = Some("aA==".into())
                }),
                KeyType::Secp256k1,
                "invalid_payload",
            ),
            (request(|b| b.digest_hex = Some("zz".repeat(32))), KeyType::Secp256k1, "invalid_digest"),
            (request(|b| b.message_b64 = Some("***".into())), KeyType::Secp256k1, "invalid_message"),
            (
                request(|b| {
                    b.digest_hex = Some("ab".repeat(32));
                    b.algorithm = Some("rsa".into())
                }),
                KeyType::Secp256k1,
                "unknown_algorithm",
            ),
            (
                request(|b| {
                    b.digest_hex = Some("ab".repeat(32));
                    b.format = Some("pem".into())
                }),
                KeyType::Secp256k1,
                "unknown_format",
            ),
            (
                request(|b| {
                    b.message_b64 = Some("aA==".into());
                    b.hash = Some("md5".into())
                }),
                KeyType::P256,
                "unknown_hash",
            ),
            (
                request(|b| {
                    b.digest_hex = Some("ab".repeat(32));
                    b.algorithm = Some("bip340".into())
                }),
                KeyType::P256,
                "unsupported_scheme",
            ),
            (
                request(|b| {
                    b.digest_hex = Some("ab".repeat(32));
                    b.format = Some("ethereum".into())
                }),
                KeyType::Ed25519,
                "unsupported_scheme",
            ),
            (request(|b| b.digest_hex = Some("ab".repeat(32))), KeyType::Ed25519, "invalid_payload"),
            (
                request(|b| b.message_b64 = Some("A".repeat(MAX_MESSAGE_LEN * 4 / 3 + 8))),
                KeyType::Ed25519,
                "message_too_large",
            ),
            (request(|b| b.digest_hex = Some("ab".repeat(32))), KeyType::Aes256Gcm, "not_a_signing_key"),
        ];
        for (body, key_type, code) in cases {
            assert_eq!(parse_sign(&body, key_type).unwrap_err().code, code, "{body:?}");
        }
    }

    #[test]
    fn create_requests_name_the_rule_they_break() {
        let key =
            |name: &str, key_type: &str| CreateKey { name: name.into(), key_type: key_type.into(), exportable: false };
        assert_eq!(
            parse_create(&KeystoreId::default_keystore(), &key("a b", "ed25519")).unwrap_err().code,
            "invalid_key_name"
        );
        assert_eq!(
            parse_create(&KeystoreId::default_keystore(), &key("ok", "rsa")).unwrap_err().code,
            "invalid_key_type"
        );
        assert_eq!(parse_create(&KeystoreId::default_keystore(), &key("ok", "p256")).unwrap().1, KeyType::P256);
    }
}
