//! Signed requests for the keyring's encryption operations (`/v1/keys/{name}/encrypt`,
//! `decrypt`, `rewrap`, `datakey`, `hmac`, `verify-hmac`, as JSON). The enclave parses the
//! signed body itself and refuses a typed request that differs from it: a host cannot decrypt
//! another ciphertext with a principal's signature, change the associated data, or ask for a
//! data key's plaintext the principal did not ask for. The front doors' sealed secrets and
//! PSBTs are checked the same way (their bodies are `keyward_client::crypt::SealSecretBody`,
//! `OpenSecretBody`, `SignPsbtBody`), and key agreement's (`derive-shared-secret` as operation
//! `agree`, `unwrap` as `decrypt`). A stream is signed once, at its begin (`BeginSeal` as
//! `encrypt`, `BeginOpen` as `decrypt`); its segments carry the ticket the enclave answers
//! (`authorizer_stream.rs`). A stream begun without a signature is refused.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use keyward_authz::Operation;
use keyward_client::{
    agree::{DeriveSharedSecret, UnwrapKey},
    crypt::{
        Decrypt, Encrypt, GenerateDataKey, MacRequest, OpenSecretBody, SealSecretBody, SignPsbtBody, StreamDecryptBody,
        StreamEncryptBody, VerifyMac,
    },
};
use keyward_proto::{AuditReceipt, CryptOp, DataKeySpec, ErrorCode, ErrorReply, KeyCrypt};

use super::{Authorizer, Subject, refuse};
use crate::policies::Tagger;

/// The operation a policy must grant for `op`, or `None` when it has no signed path.
pub fn crypt_operation(op: &CryptOp) -> Option<Operation> {
    match op {
        CryptOp::Encrypt { .. } => Some(Operation::Encrypt),
        // A rewrap decrypts (inside the enclave) before it encrypts again.
        CryptOp::Decrypt { .. } | CryptOp::Rewrap { .. } => Some(Operation::Decrypt),
        CryptOp::DataKey { .. } => Some(Operation::DataKey),
        CryptOp::Mac { .. } => Some(Operation::Sign),
        CryptOp::VerifyMac { .. } => Some(Operation::Verify),
        // The front doors' operations (docs/authorization.md, front doors).
        CryptOp::SealSecret { .. } => Some(Operation::Encrypt),
        CryptOp::OpenSecret { .. } => Some(Operation::Decrypt),
        CryptOp::SignPsbt { .. } => Some(Operation::Sign),
        // Key agreement: the raw secret is its own operation; unwrapping a content key decrypts.
        CryptOp::DeriveSharedSecret { .. } => Some(Operation::Agree),
        CryptOp::JoseUnwrap { .. } => Some(Operation::Decrypt),
        // Signed streams: the begin is the signed request; its segments carry the ticket.
        CryptOp::BeginSeal { .. } => Some(Operation::Encrypt),
        CryptOp::BeginOpen { .. } => Some(Operation::Decrypt),
        _ => None,
    }
}

impl Authorizer {
    /// Checks an encryption request against the body its principal signed.
    pub fn authorize_crypt(&self, request: &KeyCrypt, now: u64, tag: Tagger<'_>) -> Result<AuditReceipt, ErrorReply> {
        let Some(operation) = crypt_operation(&request.op) else {
            return Err(refuse(
                ErrorCode::SignatureRequired,
                "authorization is on: a stream begins with a signed request (docs/authorization.md, streams)",
            ));
        };
        let identity = &request.row.identity;
        let subject = Subject::key(operation, &identity.name, Some(identity.version.get()));
        self.authorize(&subject, request.auth.as_deref(), now, tag, |auth, _| {
            crypt_body_matches(&auth.body, request).map_err(|m| refuse(ErrorCode::RequestMismatch, m))
        })
    }
}

/// A version the signed body names is the row's.
fn version_matches(version: Option<u32>, request: &KeyCrypt) -> bool {
    version.is_none_or(|v| v == request.row.identity.version.get())
}

fn b64(field: &str, value: Option<&str>) -> Result<Vec<u8>, String> {
    value.map_or(Ok(Vec::new()), |v| STANDARD.decode(v).map_err(|_| format!("the signed body's {field} is not base64")))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("the signed body is not {what}: {e}"))
}

/// Whether the typed operation is the one the signed body asks for.
fn crypt_body_matches(body: &[u8], request: &KeyCrypt) -> Result<(), String> {
    let same = match &request.op {
        CryptOp::Encrypt { plaintext, associated_data } => {
            let b: Encrypt = parse(body, "an encryption request")?;
            b64("plaintext_b64", Some(&b.plaintext_b64))? == plaintext.expose()
                && b64("associated_data_b64", b.associated_data_b64.as_deref())? == *associated_data
        }
        CryptOp::Decrypt { ciphertext, associated_data } | CryptOp::Rewrap { ciphertext, associated_data, .. } => {
            let b: Decrypt = parse(body, "a decryption request")?;
            b64("ciphertext_b64", Some(&b.ciphertext_b64))? == *ciphertext
                && b64("associated_data_b64", b.associated_data_b64.as_deref())? == *associated_data
        }
        CryptOp::DataKey { spec, plaintext, associated_data } => {
            let b: GenerateDataKey = parse(body, "a data key request")?;
            DataKeySpec::parse(&b.spec) == Some(*spec)
                && b.plaintext == *plaintext
                && b64("associated_data_b64", b.associated_data_b64.as_deref())? == *associated_data
        }
        CryptOp::Mac { message } => {
            let b: MacRequest = parse(body, "a MAC request")?;
            b64("message_b64", Some(&b.message_b64))? == *message
        }
        CryptOp::VerifyMac { message, mac } => {
            let b: VerifyMac = parse(body, "a MAC check")?;
            b64("message_b64", Some(&b.message_b64))? == *message
                && b64("mac_b64", Some(&b.mac_b64))? == *mac
                && b.version.is_none_or(|v| v == request.row.identity.version.get())
        }
        CryptOp::SealSecret { secret, associated_data } => {
            let b: SealSecretBody = parse(body, "a secret to seal")?;
            b64("secret_b64", Some(&b.secret_b64))? == secret.expose()
                && b64("associated_data_b64", Some(&b.associated_data_b64))? == *associated_data
        }
        CryptOp::OpenSecret { sealed, associated_data } => {
            let b: OpenSecretBody = parse(body, "a sealed secret to open")?;
            b64("sealed_b64", Some(&b.sealed_b64))? == *sealed
                && b64("associated_data_b64", Some(&b.associated_data_b64))? == *associated_data
        }
        CryptOp::SignPsbt { psbt } => {
            let b: SignPsbtBody = parse(body, "a PSBT to sign")?;
            b64("psbt_b64", Some(&b.psbt_b64))? == *psbt
        }
        CryptOp::BeginSeal { associated_data, plaintext_sha256 } => {
            let b: StreamEncryptBody = parse(body, "a stream to encrypt")?;
            let digest = hex::decode(&b.plaintext_sha256_hex)
                .ok()
                .filter(|d| d.len() == 32)
                .ok_or_else(|| "the signed body's plaintext_sha256_hex is not 64 hex digits".to_owned())?;
            b64("associated_data_b64", Some(&b.associated_data_b64))? == *associated_data && digest == *plaintext_sha256
        }
        CryptOp::BeginOpen { header, associated_data } => {
            let b: StreamDecryptBody = parse(body, "a stream to decrypt")?;
            b64("header_b64", Some(&b.header_b64))? == *header
                && b64("associated_data_b64", Some(&b.associated_data_b64))? == *associated_data
        }
        CryptOp::DeriveSharedSecret { peer_public_key } => {
            let b: DeriveSharedSecret = parse(body, "a key agreement")?;
            let peer = match (&b.public_key_b64, &b.public_key_jwk) {
                (Some(raw), None) => b64("public_key_b64", Some(raw))?,
                (None, Some(jwk)) => jwk.point().map_err(|e| format!("the signed body's JWK: {e}"))?.1,
                _ => return Err("the signed body names no peer key, or two".into()),
            };
            peer == *peer_public_key && version_matches(b.version, request)
        }
        CryptOp::JoseUnwrap { epk, encrypted_key, apu, apv } => {
            let b: UnwrapKey = parse(body, "a key to unwrap")?;
            let url = |field: &str, value: Option<&str>| {
                value.map_or(Ok(Vec::new()), |v| {
                    URL_SAFE_NO_PAD
                        .decode(v.trim_end_matches('='))
                        .map_err(|_| format!("the signed body's {field} is not base64url"))
                })
            };
            b.epk.point().map_err(|e| format!("the signed body's epk: {e}"))?.1 == *epk
                && url("encrypted_key", Some(&b.encrypted_key))? == *encrypted_key
                && url("apu", b.apu.as_deref())? == *apu
                && url("apv", b.apv.as_deref())? == *apv
                && version_matches(b.version, request)
        }
        _ => false,
    };
    if same { Ok(()) } else { Err("the request the enclave received is not the one the principal signed".into()) }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use keyward_authz::{Principal, PrincipalKey, RequestToSign};
    use keyward_proto::{
        Authorization, DEFAULT_KEYSTORE, KeyFlags, KeyIdentity, KeyName, KeyType, KeyVersion, Origin,
        PrincipalSignature, RootId, SecretBytes, WrappedKey,
    };

    use super::super::{Owners, tests::tagger};
    use super::*;

    const NOW: u64 = 1_764_547_200;

    fn owner() -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap()
    }

    fn row() -> WrappedKey {
        let identity = KeyIdentity {
            name: KeyName::parse("vault").unwrap(),
            version: KeyVersion::new(1).unwrap(),
            key_type: KeyType::Aes256Gcm,
            flags: KeyFlags { exportable: false, origin: Origin::Generated },
        };
        WrappedKey { identity, root_id: RootId([0; 16]), public_key: vec![], wrapped: vec![] }
    }

    /// `op` authorized by the owner for `operation` with `body`.
    fn request(op: CryptOp, operation: Operation, body: &str) -> KeyCrypt {
        let to_sign = RequestToSign {
            operation,
            keystore: DEFAULT_KEYSTORE.into(),
            key: "vault".into(),
            body_digest: RequestToSign::digest(body.as_bytes()),
            request_id: [3; 16],
            timestamp: NOW,
        };
        let auth = Authorization {
            keystore: DEFAULT_KEYSTORE.into(),
            body: body.as_bytes().to_vec(),
            request_id: [3; 16],
            timestamp: NOW,
            requester: PrincipalSignature {
                algorithm: "ed25519".into(),
                public_key: owner().public_key().as_ref().to_vec(),
                signature: owner().sign(&to_sign.canonical().unwrap()).as_ref().to_vec(),
            },
            approvals: vec![],
            policy: None,
            keystore_policy: None,
            channel: None,
        };
        KeyCrypt { row: row(), op, auth: Some(Box::new(auth)) }
    }

    #[test]
    fn each_operation_is_checked_against_its_signed_body() {
        let principal = Principal::new(PrincipalKey::ed25519(owner().public_key().as_ref()).unwrap());
        let a = Authorizer::new(Owners { principals: vec![principal], quorum: 1 }, owner()).unwrap();
        let b = |bytes: &[u8]| STANDARD.encode(bytes);
        let encrypt = format!(r#"{{"plaintext_b64":"{}","associated_data_b64":"{}"}}"#, b(b"pay"), b(b"ad"));
        let enc = |p: &[u8], ad: &[u8]| CryptOp::Encrypt {
            plaintext: SecretBytes::new(p.to_vec()),
            associated_data: ad.to_vec(),
        };
        let decrypt = format!(r#"{{"ciphertext_b64":"{}"}}"#, b(b"ct"));
        let dec = |c: &[u8]| CryptOp::Decrypt { ciphertext: c.to_vec(), associated_data: vec![] };
        let datakey = r#"{"spec":"aes-256"}"#;
        let dk = |plaintext| CryptOp::DataKey { spec: DataKeySpec::Aes256, plaintext, associated_data: vec![] };
        let mac = format!(r#"{{"message_b64":"{}"}}"#, b(b"m"));
        let seal_body = format!(r#"{{"secret_b64":"{}","associated_data_b64":"{}"}}"#, b(b"prv"), b(b"ctx"));
        let seal = |s: &[u8], ad: &[u8]| CryptOp::SealSecret {
            secret: SecretBytes::new(s.to_vec()),
            associated_data: ad.to_vec(),
        };
        let open_body = format!(r#"{{"sealed_b64":"{}","associated_data_b64":"{}"}}"#, b(b"sealed"), b(b"ctx"));
        let open = |s: &[u8]| CryptOp::OpenSecret { sealed: s.to_vec(), associated_data: b"ctx".to_vec() };
        let psbt_body = format!(r#"{{"psbt_b64":"{}"}}"#, b(b"psbt\xff1"));
        let psbt = |p: &[u8]| CryptOp::SignPsbt { psbt: p.to_vec() };
        let derive_body = format!(r#"{{"public_key_b64":"{}"}}"#, b(&[9; 32]));
        let derive = |peer: u8| CryptOp::DeriveSharedSecret { peer_public_key: vec![peer; 32] };
        let url = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let unwrap_body = format!(
            r#"{{"epk":{{"kty":"OKP","crv":"X25519","x":"{}"}},"encrypted_key":"{}","apv":"{}"}}"#,
            url(&[7; 32]),
            url(b"wrapped-cek-40-bytes"),
            url(b"bob")
        );
        let unwrap = |apv: &[u8]| CryptOp::JoseUnwrap {
            epk: vec![7; 32],
            encrypted_key: b"wrapped-cek-40-bytes".to_vec(),
            apu: vec![],
            apv: apv.to_vec(),
        };
        use Operation::*;
        let cases: Vec<(&str, KeyCrypt, Option<ErrorCode>)> = vec![
            ("encrypt", request(enc(b"pay", b"ad"), Encrypt, &encrypt), None),
            ("another plaintext", request(enc(b"PAY", b"ad"), Encrypt, &encrypt), Some(ErrorCode::RequestMismatch)),
            ("other associated data", request(enc(b"pay", b""), Encrypt, &encrypt), Some(ErrorCode::RequestMismatch)),
            ("decrypt", request(dec(b"ct"), Decrypt, &decrypt), None),
            ("another ciphertext", request(dec(b"CT"), Decrypt, &decrypt), Some(ErrorCode::RequestMismatch)),
            ("signed as encrypt", request(dec(b"ct"), Encrypt, &decrypt), Some(ErrorCode::BadRequestSignature)),
            ("a wrapped data key", request(dk(false), DataKey, datakey), None),
            ("its plaintext too", request(dk(true), DataKey, datakey), Some(ErrorCode::RequestMismatch)),
            ("a MAC is signed as sign", request(CryptOp::Mac { message: b"m".to_vec() }, Sign, &mac), None),
            ("a secret sealed", request(seal(b"prv", b"ctx"), Encrypt, &seal_body), None),
            ("another secret", request(seal(b"PRV", b"ctx"), Encrypt, &seal_body), Some(ErrorCode::RequestMismatch)),
            ("another context", request(seal(b"prv", b"other"), Encrypt, &seal_body), Some(ErrorCode::RequestMismatch)),
            ("a secret opened", request(open(b"sealed"), Decrypt, &open_body), None),
            ("another sealed secret", request(open(b"SEALED"), Decrypt, &open_body), Some(ErrorCode::RequestMismatch)),
            (
                "an encryption body for a secret",
                request(seal(b"pay", b"ad"), Encrypt, &encrypt),
                Some(ErrorCode::RequestMismatch),
            ),
            ("a PSBT signed", request(psbt(b"psbt\xff1"), Sign, &psbt_body), None),
            ("another PSBT", request(psbt(b"psbt\xff2"), Sign, &psbt_body), Some(ErrorCode::RequestMismatch)),
            ("a shared secret", request(derive(9), Agree, &derive_body), None),
            ("with another peer", request(derive(8), Agree, &derive_body), Some(ErrorCode::RequestMismatch)),
            (
                "agree signed as decrypt",
                request(derive(9), Decrypt, &derive_body),
                Some(ErrorCode::BadRequestSignature),
            ),
            ("a content key unwrapped", request(unwrap(b"bob"), Decrypt, &unwrap_body), None),
            ("for another party", request(unwrap(b"eve"), Decrypt, &unwrap_body), Some(ErrorCode::RequestMismatch)),
            (
                "no signed path for streams",
                request(CryptOp::BeginStream, Encrypt, "{}"),
                Some(ErrorCode::SignatureRequired),
            ),
            ("unsigned", KeyCrypt { row: row(), op: dec(b"ct"), auth: None }, Some(ErrorCode::SignatureRequired)),
        ];
        for (what, request, expected) in cases {
            assert_eq!(a.authorize_crypt(&request, NOW, &tagger()).err().map(|e| e.code), expected, "{what}");
        }
    }
}
