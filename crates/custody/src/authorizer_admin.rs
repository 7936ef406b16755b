//! Signed administrative requests that make key material: creating keys (one, or a batch) and
//! rotating a key (a new version). Both are state-changing, so a request id is accepted once.

use keyward_authz::Operation;
use keyward_client::keys::{CreateKey, CreateKeys, RotateKey};
use keyward_proto::{AuditReceipt, ErrorCode, ErrorReply, KeyCreate, KeyIdentity, Origin};

use super::{Authorizer, Subject, refuse};
use crate::policies::Tagger;

impl Authorizer {
    /// Checks a `KeyCreate`: new keys (every identity at version 1; the signed body is
    /// `POST /v1/keys`'s or `/v1/keys/batch`'s) or one rotation (one identity past version 1).
    pub fn authorize_create(&self, request: &KeyCreate, now: u64, tag: Tagger<'_>) -> Result<AuditReceipt, ErrorReply> {
        let keys = &request.keys;
        let rotation = match keys.as_slice() {
            [one] if one.version.get() > 1 => Some(one),
            _ if !keys.is_empty() && keys.iter().all(|k| k.version.get() == 1) => None,
            _ => {
                return Err(refuse(
                    ErrorCode::BadRequest,
                    "a signed KeyCreate makes new keys (all at version 1) or one key's next version",
                ));
            }
        };
        let subject = match (rotation, keys.as_slice()) {
            (Some(key), _) => Subject::key(Operation::Rotate, &key.name, Some(key.version.get())),
            (None, [one]) => Subject::key(Operation::Create, &one.name, Some(1)),
            // A batch: the names are in the signed body, not in the canonical request; the
            // keystore is, and every key must be in it.
            (None, [first, ..]) => {
                let keystore = first.name.keystore();
                if keys.iter().any(|k| k.name.keystore() != keystore) {
                    return Err(refuse(ErrorCode::BadRequest, "a batch of new keys is in one keystore"));
                }
                Subject::keystore(Operation::Create, keystore)
            }
            (None, []) => return Err(refuse(ErrorCode::BadRequest, "a signed KeyCreate names at least one key")),
        };
        self.authorize(&subject, request.auth.as_deref(), now, tag, |auth, _| match rotation {
            // The canonical request names the key and the operation; the body the version the
            // rotation makes, so that it makes one version however often it is replayed.
            Some(key) => rotation_matches(&auth.body, key),
            None => creation_matches(&auth.body, keys).map_err(|m| refuse(ErrorCode::RequestMismatch, m)),
        })
    }
}

/// Whether the signed rotation makes `made`: its version, type and exportability.
fn rotation_matches(body: &[u8], made: &KeyIdentity) -> Result<(), ErrorReply> {
    let asked: RotateKey = serde_json::from_slice(body).map_err(|e| {
        refuse(
            ErrorCode::RequestMismatch,
            format!("the signed body of a rotation names the version it makes, the type and exportability: {e}"),
        )
    })?;
    if asked.key_type != made.key_type.as_str()
        || asked.exportable != made.flags.exportable
        || made.flags.origin != Origin::Generated
    {
        return Err(refuse(
            ErrorCode::RequestMismatch,
            "the new version is not of the type and exportability the principal signed",
        ));
    }
    let version = made.version.get();
    if asked.version != version {
        return Err(refuse(
            ErrorCode::KeyVersionConflict,
            format!("the signed rotation makes version {}, this one would be version {version}", asked.version),
        ));
    }
    Ok(())
}

/// Whether the identities are exactly the keys the signed body asks for, in order.
fn creation_matches(body: &[u8], identities: &[KeyIdentity]) -> Result<(), String> {
    let asked: Vec<CreateKey> = if identities.len() == 1 {
        vec![serde_json::from_slice(body).map_err(|e| format!("the signed body is not a key to create: {e}"))?]
    } else {
        let batch: CreateKeys =
            serde_json::from_slice(body).map_err(|e| format!("the signed body is not keys to create: {e}"))?;
        batch.keys
    };
    if asked.len() != identities.len() {
        return Err(format!("the signed body asks for {} keys, not {}", asked.len(), identities.len()));
    }
    for (i, (want, made)) in asked.iter().zip(identities).enumerate() {
        // The body names keys within the keystore the canonical request names (the subject's,
        // from these same identities).
        let same = want.name == made.name.local()
            && want.key_type == made.key_type.as_str()
            && want.exportable == made.flags.exportable
            && made.flags.origin == Origin::Generated;
        if !same {
            return Err(format!("key {i} is not the one the principal asked for (name, type or exportability)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use keyward_authz::{Principal, PrincipalKey, RequestToSign};
    use keyward_proto::{Authorization, DEFAULT_KEYSTORE, KeyName, KeyType, KeyVersion, PrincipalSignature};

    use super::super::{Owners, tests::tagger};
    use super::*;

    const NOW: u64 = 1_764_547_200;
    const ROTATE_2: &str = r#"{"version":2,"type":"secp256k1","exportable":false}"#;

    fn pair(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    fn identity(name: &str, version: u32, key_type: KeyType, exportable: bool) -> KeyIdentity {
        KeyIdentity {
            name: KeyName::parse(name).unwrap(),
            version: KeyVersion::new(version).unwrap(),
            key_type,
            flags: keyward_proto::KeyFlags { exportable, origin: Origin::Generated },
        }
    }

    /// `keys`, authorized by `signer` for `operation` on `key` with `body`.
    fn request(keys: Vec<KeyIdentity>, signer: u8, operation: Operation, key: &str, body: &str, id: u8) -> KeyCreate {
        let to_sign = RequestToSign {
            operation,
            keystore: DEFAULT_KEYSTORE.into(),
            key: key.into(),
            body_digest: RequestToSign::digest(body.as_bytes()),
            request_id: [id; 16],
            timestamp: NOW,
        };
        let signer = pair(signer);
        let auth = Authorization {
            keystore: DEFAULT_KEYSTORE.into(),
            body: body.as_bytes().to_vec(),
            request_id: [id; 16],
            timestamp: NOW,
            requester: PrincipalSignature {
                algorithm: "ed25519".into(),
                public_key: signer.public_key().as_ref().to_vec(),
                signature: signer.sign(&to_sign.canonical().unwrap()).as_ref().to_vec(),
            },
            approvals: vec![],
            policy: None,
            keystore_policy: None,
            channel: None,
        };
        KeyCreate { keys, auth: Some(Box::new(auth)) }
    }

    #[test]
    fn only_what_an_owner_asked_for_is_created_or_rotated_and_once() {
        let owner = Principal::new(PrincipalKey::ed25519(pair(1).public_key().as_ref()).unwrap());
        let a = Authorizer::new(Owners { principals: vec![owner], quorum: 1 }, pair(99)).unwrap();
        let secp = |name: &str| identity(name, 1, KeyType::Secp256k1, false);
        let one = r#"{"name":"treasury","type":"secp256k1"}"#;
        let batch = r#"{"keys":[{"name":"a","type":"secp256k1"},{"name":"b","type":"ed25519","exportable":true}]}"#;
        let batch_keys = || vec![secp("a"), identity("b", 1, KeyType::Ed25519, true)];
        let rotation = || vec![identity("treasury", 2, KeyType::Secp256k1, false)];
        let create = Operation::Create;
        let cases: Vec<(&str, KeyCreate, Option<ErrorCode>)> = vec![
            ("the owner creates", request(vec![secp("treasury")], 1, create, "treasury", one, 1), None),
            (
                "a replay",
                request(vec![secp("treasury")], 1, create, "treasury", one, 1),
                Some(ErrorCode::RequestReplayed),
            ),
            ("unsigned", KeyCreate { keys: vec![secp("treasury")], auth: None }, Some(ErrorCode::SignatureRequired)),
            (
                "a stranger",
                request(vec![secp("treasury")], 2, create, "treasury", one, 2),
                Some(ErrorCode::NotPermitted),
            ),
            (
                "the host makes it exportable",
                request(vec![identity("treasury", 1, KeyType::Secp256k1, true)], 1, create, "treasury", one, 3),
                Some(ErrorCode::RequestMismatch),
            ),
            (
                "the host picks another type",
                request(vec![identity("treasury", 1, KeyType::Ed25519, false)], 1, create, "treasury", one, 4),
                Some(ErrorCode::RequestMismatch),
            ),
            (
                "the host renames it",
                request(vec![secp("other")], 1, create, "treasury", one, 5),
                Some(ErrorCode::BadRequestSignature),
            ),
            ("a batch", request(batch_keys(), 1, create, "", batch, 6), None),
            (
                "the host adds a key to the batch",
                request([batch_keys(), vec![secp("c")]].concat(), 1, create, "", batch, 7),
                Some(ErrorCode::RequestMismatch),
            ),
            ("the owner rotates", request(rotation(), 1, Operation::Rotate, "treasury", ROTATE_2, 8), None),
            (
                "the same request again (this enclave remembers its id)",
                request(rotation(), 1, Operation::Rotate, "treasury", ROTATE_2, 8),
                Some(ErrorCode::RequestReplayed),
            ),
            (
                "the host makes the new version exportable",
                request(
                    vec![identity("treasury", 2, KeyType::Secp256k1, true)],
                    1,
                    Operation::Rotate,
                    "treasury",
                    ROTATE_2,
                    14,
                ),
                Some(ErrorCode::RequestMismatch),
            ),
            (
                "the host picks another type for it",
                request(
                    vec![identity("treasury", 2, KeyType::Ed25519, false)],
                    1,
                    Operation::Rotate,
                    "treasury",
                    ROTATE_2,
                    15,
                ),
                Some(ErrorCode::RequestMismatch),
            ),
            (
                "a stale rotation (to version 2) once the key is at version 2",
                request(
                    vec![identity("treasury", 3, KeyType::Secp256k1, false)],
                    1,
                    Operation::Rotate,
                    "treasury",
                    ROTATE_2,
                    12,
                ),
                Some(ErrorCode::KeyVersionConflict),
            ),
            (
                "a rotation that names no version",
                request(rotation(), 1, Operation::Rotate, "treasury", "{}", 13),
                Some(ErrorCode::RequestMismatch),
            ),
            (
                "a creation signature used to rotate",
                request(rotation(), 1, create, "treasury", one, 9),
                Some(ErrorCode::BadRequestSignature),
            ),
            (
                "a stranger rotates",
                request(rotation(), 2, Operation::Rotate, "treasury", ROTATE_2, 10),
                Some(ErrorCode::NotPermitted),
            ),
            (
                "versions mixed",
                request(vec![secp("a"), identity("b", 2, KeyType::Secp256k1, false)], 1, create, "", batch, 11),
                Some(ErrorCode::BadRequest),
            ),
        ];
        for (what, request, expected) in cases {
            let outcome = a.authorize_create(&request, NOW, &tagger());
            assert_eq!(outcome.err().map(|e| e.code), expected, "{what}");
        }
    }
}
