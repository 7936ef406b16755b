use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use keyward_authz::{Receipt, verify_log};
use keyward_proto::{
    Digest, KeyFlags, KeyIdentity, KeyName, KeyType, KeyVersion, Origin, RootId, SignAlgorithm, SignFormat,
    SignPayload, WrappedKey,
};

use super::*;

const NOW: u64 = 1_764_547_200;

fn pair(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
}

fn principal(pair: &Ed25519KeyPair) -> Principal {
    Principal::new(PrincipalKey::ed25519(pair.public_key().as_ref()).unwrap())
}

fn authorizer(owners: &[u8], quorum: u8) -> Authorizer {
    let principals = owners.iter().map(|s| principal(&pair(*s))).collect();
    Authorizer::new(Owners { principals, quorum }, pair(99)).unwrap()
}

fn request() -> KeySign {
    request_for("treasury")
}

/// An unsigned request to sign with version 1 of `name`.
pub(super) fn request_for(name: &str) -> KeySign {
    let identity = KeyIdentity {
        name: KeyName::parse(name).unwrap(),
        version: KeyVersion::new(1).unwrap(),
        key_type: KeyType::Secp256k1,
        flags: KeyFlags { exportable: false, origin: Origin::Generated },
    };
    let row = WrappedKey { identity, root_id: RootId([0; 16]), public_key: vec![], wrapped: vec![] };
    KeySign {
        row,
        algorithm: SignAlgorithm::Ecdsa,
        payload: SignPayload::Digest(Digest([0x11; 32])),
        format: SignFormat::Compact,
        auth: None,
    }
}

fn signature(signer: &Ed25519KeyPair, to_sign: &RequestToSign) -> PrincipalSignature {
    PrincipalSignature {
        algorithm: "ed25519".into(),
        public_key: signer.public_key().as_ref().to_vec(),
        signature: signer.sign(&to_sign.canonical().unwrap()).as_ref().to_vec(),
    }
}

/// `request` with an authorization by `signer` over `body` at `timestamp`.
fn signed(signer: &Ed25519KeyPair, body: &str, timestamp: u64) -> KeySign {
    let mut request = request();
    let to_sign = RequestToSign {
        operation: Operation::Sign,
        keystore: DEFAULT_KEYSTORE.into(),
        key: "treasury".into(),
        body_digest: RequestToSign::digest(body.as_bytes()),
        request_id: [7; 16],
        timestamp,
    };
    request.auth = Some(Authorization {
        keystore: DEFAULT_KEYSTORE.into(),
        body: body.as_bytes().to_vec(),
        request_id: [7; 16],
        timestamp,
        requester: signature(signer, &to_sign),
        approvals: vec![],
        policy: None,
        keystore_policy: None,
        channel: None,
    });
    request
}

/// Tags policy rows under a fixed test root, as the keyring does under its own.
pub(super) fn tagger() -> impl Fn(&PolicyRow) -> Result<[u8; 32], ErrorReply> + Sync {
    let root = keyward_keyring::RootKey::from_bytes([5; 32]);
    move |row: &PolicyRow| {
        let fields = keyward_keyring::PolicyRowFields {
            keystore: &row.keystore,
            key: &row.key,
            version: row.version,
            body: &row.body,
        };
        root.policy_tag(&RootId([5; 16]), &fields).map_err(|e| refuse(ErrorCode::Internal, e.to_string()))
    }
}

fn body() -> String {
    format!(r#"{{"digest_hex":"{}"}}"#, "11".repeat(32))
}

#[test]
fn each_way_a_request_can_be_wrong_has_its_code_and_every_decision_is_audited() {
    let authorizer = authorizer(&[1], 1);
    let owner = pair(1);
    let ok = signed(&owner, &body(), NOW);
    let mut cases: Vec<(&str, KeySign, Option<ErrorCode>)> = vec![("the owner", ok.clone(), None)];
    cases.push(("no signature", request(), Some(ErrorCode::SignatureRequired)));
    cases.push(("an outsider", signed(&pair(2), &body(), NOW), Some(ErrorCode::NotPermitted)));
    let mut tampered = ok.clone();
    tampered.payload = SignPayload::Digest(Digest([0x22; 32]));
    cases.push(("the host swapped the digest", tampered, Some(ErrorCode::RequestMismatch)));
    let mut renamed = ok.clone();
    renamed.row.identity.name = KeyName::parse("other").unwrap();
    cases.push(("the host chose another key", renamed, Some(ErrorCode::BadRequestSignature)));
    let mut rebodied = ok.clone();
    rebodied.auth.as_mut().unwrap().body = format!(r#"{{"digest_hex":"{}"}}"#, "22".repeat(32)).into_bytes();
    cases.push(("the host rewrote the body", rebodied, Some(ErrorCode::BadRequestSignature)));
    let mut rekeyed = ok.clone();
    rekeyed.auth.as_mut().unwrap().requester.public_key = pair(2).public_key().as_ref().to_vec();
    cases.push(("an owner's signature under another key", rekeyed, Some(ErrorCode::BadRequestSignature)));
    cases.push(("stale", signed(&owner, &body(), NOW - REQUEST_WINDOW - 1), Some(ErrorCode::RequestExpired)));
    let mut other_version = signed(&owner, &format!(r#"{{"digest_hex":"{}","version":2}}"#, "11".repeat(32)), NOW);
    other_version.row.identity.version = KeyVersion::new(1).unwrap();
    cases.push(("the host picked an older version", other_version, Some(ErrorCode::RequestMismatch)));
    let mut receipts = Vec::new();
    for (what, request, expected) in &cases {
        let outcome = authorizer.authorize_sign(request, NOW, &tagger());
        assert_eq!(outcome.as_ref().err().map(|e| e.code), *expected, "{what}");
        if let Ok(receipt) = outcome {
            receipts.push(Receipt { seq: receipt.seq, hash: receipt.hash });
        }
    }
    let records = authorizer.audit_records(0, 100);
    assert_eq!(records.len(), cases.len(), "one record per decision, refusals included");
    let outcomes: Vec<&str> = records.iter().map(|r| r.entry.outcome.as_str()).collect();
    assert_eq!(outcomes[0], "ok");
    assert_eq!(outcomes[1], "signature_required");
    assert_eq!(outcomes[2], "not_permitted");
    assert_eq!(records[0].entry.principal, Some(principal(&owner).id()));
    assert_eq!(records[1].entry.principal, None);
    assert_eq!(verify_log(authorizer.audit_public_key(), &records, &receipts).unwrap().seq, cases.len() as u64);
}

#[test]
fn owners_with_an_unmeetable_quorum_are_refused_and_principals_parse() {
    let two = [principal(&pair(1)), principal(&pair(1))].to_vec();
    let err = Authorizer::new(Owners { principals: two, quorum: 2 }, pair(9)).unwrap_err();
    assert!(err.contains("cannot be met"), "{err}");
    assert!(Authorizer::new(Owners { principals: vec![], quorum: 1 }, pair(9)).is_err());
    let key = hex::encode(pair(1).public_key().as_ref());
    assert_eq!(Owners::parse_principal(&format!("ed25519:{key}")).unwrap(), principal(&pair(1)));
    assert!(Owners::parse_principal(&key).is_err());
    assert!(Owners::parse_principal("rsa:00").is_err());
    assert!(Owners::parse_principal("p256:0011").is_err());
}

/// A master-key request signed by `signer` over `body` (keystore `master`, empty key name).
fn master_signed(signer: &Ed25519KeyPair, body: &str, digest: [u8; 32]) -> SignRequest {
    let to_sign = RequestToSign {
        operation: Operation::Sign,
        keystore: MASTER_KEYSTORE.into(),
        key: String::new(),
        body_digest: RequestToSign::digest(body.as_bytes()),
        request_id: [8; 16],
        timestamp: NOW,
    };
    let auth = Authorization {
        keystore: MASTER_KEYSTORE.into(),
        body: body.as_bytes().to_vec(),
        request_id: [8; 16],
        timestamp: NOW,
        requester: signature(signer, &to_sign),
        approvals: vec![],
        policy: None,
        keystore_policy: None,
        channel: None,
    };
    SignRequest { digest: Digest(digest), scheme: keyward_proto::Scheme::Ecdsa, auth: Some(Box::new(auth)) }
}

#[test]
fn master_key_requests_are_checked_against_their_own_body_and_enclave() {
    let authorizer = authorizer(&[1], 1);
    let owner = pair(1);
    let body = |enclave: &str| format!(r#"{{"digest_hex":"{}","scheme":"ecdsa"{enclave}}}"#, "11".repeat(32));
    let code = |request: &SignRequest, enclave_id| {
        authorizer.authorize_master_sign(request, enclave_id, NOW).err().map(|e| e.code)
    };
    assert_eq!(code(&master_signed(&owner, &body(""), [0x11; 32]), Some(1)), None, "the owner");
    assert_eq!(
        code(&master_signed(&owner, &body(r#","enclave_id":1"#), [0x11; 32]), Some(1)),
        None,
        "naming this enclave"
    );
    let cases = [
        ("another digest", master_signed(&owner, &body(""), [0x22; 32]), Some(1), ErrorCode::RequestMismatch),
        (
            "another enclave",
            master_signed(&owner, &body(r#","enclave_id":2"#), [0x11; 32]),
            Some(1),
            ErrorCode::RequestMismatch,
        ),
        ("an outsider", master_signed(&pair(2), &body(""), [0x11; 32]), Some(1), ErrorCode::NotPermitted),
        (
            "unsigned",
            SignRequest { digest: Digest([0x11; 32]), scheme: keyward_proto::Scheme::Ecdsa, auth: None },
            Some(1),
            ErrorCode::SignatureRequired,
        ),
    ];
    for (what, request, enclave_id, expected) in cases {
        assert_eq!(code(&request, enclave_id), Some(expected), "{what}");
    }
    // A keyring request's signature does not authorize the master key, nor the reverse.
    let mut keyring_auth = signed(&owner, &body(""), NOW).auth.unwrap();
    keyring_auth.keystore = MASTER_KEYSTORE.into();
    let crossed = SignRequest { auth: Some(Box::new(keyring_auth)), ..master_signed(&owner, &body(""), [0x11; 32]) };
    assert_eq!(code(&crossed, Some(1)), Some(ErrorCode::BadRequestSignature));
}
