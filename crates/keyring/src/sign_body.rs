//! The fields of a signing request as the HTTP API takes them, turned into the typed scheme,
//! payload and format. The gateway parses a client's request with this; with authorization on,
//! the enclave parses the body the principal signed with the very same code and refuses a
//! request whose typed fields differ from it (a host that swapped the digest).

use base64::Engine;
use keyward_proto::{Digest, KeyType, MessageHash, SignAlgorithm, SignFormat, SignPayload};

use crate::{KeyringError, MAX_MESSAGE_LEN, SignInput, check_request, default_algorithm};

/// The request's fields, as sent (`None`: not sent).
#[derive(Debug, Clone, Copy, Default)]
pub struct SignFields<'a> {
    pub digest_hex: Option<&'a str>,
    pub message_b64: Option<&'a str>,
    pub hash: Option<&'a str>,
    pub algorithm: Option<&'a str>,
    pub format: Option<&'a str>,
}

/// Why the fields are not a signing request: a stable code and an explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SignFieldsError {
    pub code: &'static str,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> SignFieldsError {
    SignFieldsError { code: "invalid_payload", message: message.into() }
}

fn unknown(field: &'static str, value: &str, choices: &str) -> SignFieldsError {
    let shown: String = value.chars().take(32).collect();
    let code = match field {
        "algorithm" => "unknown_algorithm",
        "format" => "unknown_format",
        _ => "unknown_hash",
    };
    SignFieldsError { code, message: format!("unknown {field} {shown:?}: use {choices}") }
}

/// The scheme, what to sign and the encoding, for a key of `key_type`.
pub fn parse_sign_fields(
    fields: SignFields<'_>,
    key_type: KeyType,
) -> Result<(SignAlgorithm, SignPayload, SignFormat), SignFieldsError> {
    if !key_type.is_asymmetric() {
        return Err(SignFieldsError { code: "not_a_signing_key", message: format!("a {key_type} key does not sign") });
    }
    let algorithm = match fields.algorithm {
        None => default_algorithm(key_type).ok_or_else(|| invalid(format!("a {key_type} key does not sign")))?,
        Some("ecdsa") => SignAlgorithm::Ecdsa,
        Some("bip340") => SignAlgorithm::Bip340,
        Some("ed25519") => SignAlgorithm::Ed25519,
        Some(other) => return Err(unknown("algorithm", other, "ecdsa, bip340 or ed25519")),
    };
    let format = match fields.format {
        None | Some("compact") => SignFormat::Compact,
        Some("der") => SignFormat::Der,
        Some("ethereum") => SignFormat::Ethereum,
        Some(other) => return Err(unknown("format", other, "compact, der or ethereum")),
    };
    let payload = match (fields.digest_hex, fields.message_b64) {
        (Some(digest_hex), None) => {
            if fields.hash.is_some() {
                return Err(invalid("hash goes with message_b64, not with digest_hex"));
            }
            let mut digest = [0u8; 32];
            if digest_hex.len() != 64 || hex::decode_to_slice(digest_hex, &mut digest).is_err() {
                return Err(SignFieldsError {
                    code: "invalid_digest",
                    message: "digest_hex must be 64 hex characters (a 32-byte digest)".into(),
                });
            }
            SignPayload::Digest(Digest(digest))
        }
        (None, Some(message_b64)) => {
            if message_b64.len() > MAX_MESSAGE_LEN * 4 / 3 + 4 {
                return Err(SignFieldsError {
                    code: "message_too_large",
                    message: format!("a message is at most {MAX_MESSAGE_LEN} bytes"),
                });
            }
            let bytes = base64::engine::general_purpose::STANDARD.decode(message_b64).map_err(|_| SignFieldsError {
                code: "invalid_message",
                message: "message_b64 is not base64".into(),
            })?;
            let hash = match fields.hash {
                None if algorithm == SignAlgorithm::Ed25519 => MessageHash::None,
                None | Some("sha256") => MessageHash::Sha256,
                Some("keccak256") => MessageHash::Keccak256,
                Some("none") => MessageHash::None,
                Some(other) => return Err(unknown("hash", other, "sha256, keccak256 or none")),
            };
            SignPayload::Message { bytes, hash }
        }
        (Some(_), Some(_)) => return Err(invalid("send digest_hex or message_b64, not both")),
        (None, None) => return Err(invalid("send digest_hex (a 32-byte digest) or message_b64 (a message)")),
    };
    check_request(key_type, algorithm, SignInput::from_payload(&payload), format).map_err(|e| {
        let code = match e {
            KeyringError::MessageTooLarge { .. } => "message_too_large",
            KeyringError::UnsupportedScheme(_) => "unsupported_scheme",
            KeyringError::NotASigningKey(_) => "not_a_signing_key",
            _ => "invalid_payload",
        };
        SignFieldsError { code, message: e.to_string() }
    })?;
    Ok((algorithm, payload, format))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals_carry_their_codes() {
        let digest = "11".repeat(32);
        let fields = SignFields { digest_hex: Some(&digest), ..SignFields::default() };
        let (algorithm, payload, format) = parse_sign_fields(fields, KeyType::Secp256k1).unwrap();
        assert_eq!((algorithm, format), (SignAlgorithm::Ecdsa, SignFormat::Compact));
        assert_eq!(payload, SignPayload::Digest(Digest([0x11; 32])));
        let message = SignFields { message_b64: Some("aGk="), ..SignFields::default() };
        let (algorithm, payload, _) = parse_sign_fields(message, KeyType::Ed25519).unwrap();
        assert_eq!(algorithm, SignAlgorithm::Ed25519);
        assert_eq!(payload, SignPayload::Message { bytes: b"hi".to_vec(), hash: MessageHash::None });
        let cases = [
            (SignFields::default(), KeyType::Secp256k1, "invalid_payload"),
            (SignFields { digest_hex: Some("zz"), ..fields }, KeyType::Secp256k1, "invalid_digest"),
            (SignFields { algorithm: Some("rsa"), ..fields }, KeyType::Secp256k1, "unknown_algorithm"),
            (SignFields { format: Some("pem"), ..fields }, KeyType::Secp256k1, "unknown_format"),
            (SignFields { hash: Some("md5"), ..message }, KeyType::P256, "unknown_hash"),
            (SignFields { message_b64: Some("!"), ..message }, KeyType::P256, "invalid_message"),
            (fields, KeyType::Aes256Gcm, "not_a_signing_key"),
            (SignFields { algorithm: Some("bip340"), ..fields }, KeyType::P256, "unsupported_scheme"),
        ];
        for (fields, key_type, code) in cases {
            assert_eq!(parse_sign_fields(fields, key_type).unwrap_err().code, code, "{fields:?} {key_type}");
        }
    }
}
