//! Authorization in the enclave, end to end: an enclave started with an owner signs only what
//! that owner signed. The test plays the client (through the gateway, with and without a
//! principal's signature) and a compromised host (its own frames on the enclave link, with the
//! gateway's link key, replaying the owner's signature over another request).

use std::sync::Arc;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_authz::{Operation, RequestToSign};
use keyward_client::{ClientError, crypt::Encrypt, keys::SignWithKey, principal::PrincipalSigner};
use keyward_e2e::{RawLink, Stack, StackOptions, error_of};
use keyward_proto::{
    Authorization, Digest, ErrorCode, KeyFlags, KeyIdentity, KeyName, KeySign, KeyType, KeyVersion, Origin,
    PrincipalSignature, Reply, Request, Response, RootId, Scheme, SignAlgorithm, SignFormat, SignPayload, SignRequest,
    WrappedKey,
};

/// A new Ed25519 principal: the SDK's signer and the same key as an aws-lc-rs pair.
pub(crate) fn principal() -> (Arc<PrincipalSigner>, Ed25519KeyPair) {
    let pem = PrincipalSigner::generate_ed25519_pem().unwrap();
    principal_from(&pem)
}

/// A new principal whose key is also written to `dir/name.key` (for the CLI).
pub(crate) fn principal_file(
    dir: &std::path::Path,
    name: &str,
) -> (Arc<PrincipalSigner>, Ed25519KeyPair, std::path::PathBuf) {
    let pem = PrincipalSigner::generate_ed25519_pem().unwrap();
    let path = dir.join(format!("{name}.key"));
    std::fs::write(&path, pem.as_bytes()).unwrap();
    let (signer, pair) = principal_from(&pem);
    (signer, pair, path)
}

fn principal_from(pem: &str) -> (Arc<PrincipalSigner>, Ed25519KeyPair) {
    let signer = PrincipalSigner::from_pem(pem).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&STANDARD.decode(body).unwrap()).unwrap();
    (Arc::new(signer), pair)
}

fn status_and_code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, code, .. }) => (status, code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn digest_body(digest: &[u8; 32]) -> Vec<u8> {
    serde_json::to_vec(&SignWithKey { digest_hex: Some(hex::encode(digest)), ..SignWithKey::default() }).unwrap()
}

/// The owner's authorization of signing `body` with `key`, as a client makes it.
fn authorization(owner: &Ed25519KeyPair, key: &str, body: &[u8]) -> Authorization {
    authorization_in(owner, "default", key, body)
}

fn authorization_in(owner: &Ed25519KeyPair, keystore: &str, key: &str, body: &[u8]) -> Authorization {
    authorization_for(owner, Operation::Sign, keystore, key, body)
}

/// `owner`'s authorization of `operation` on `key` of `keystore` with `body`.
pub(crate) fn authorization_for(
    owner: &Ed25519KeyPair,
    operation: Operation,
    keystore: &str,
    key: &str,
    body: &[u8],
) -> Authorization {
    authorization_by(&[owner], operation, keystore, key, body)
}

/// The authorization of `operation` on `key` with `body`, requested by `signers[0]` and
/// approved by the others.
pub(crate) fn authorization_by(
    signers: &[&Ed25519KeyPair],
    operation: Operation,
    keystore: &str,
    key: &str,
    body: &[u8],
) -> Authorization {
    let request = RequestToSign {
        operation,
        keystore: keystore.into(),
        key: key.into(),
        body_digest: RequestToSign::digest(body),
        request_id: rand_id(),
        timestamp: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    };
    let canonical = request.canonical().unwrap();
    let sign = |pair: &Ed25519KeyPair| PrincipalSignature {
        algorithm: "ed25519".into(),
        public_key: pair.public_key().as_ref().to_vec(),
        signature: pair.sign(&canonical).as_ref().to_vec(),
    };
    Authorization {
        keystore: request.keystore.clone(),
        body: body.to_vec(),
        request_id: request.request_id,
        timestamp: request.timestamp,
        requester: sign(signers[0]),
        approvals: signers[1..].iter().map(|p| sign(p)).collect(),
        policy: None,
        keystore_policy: None,
        channel: None,
    }
}

fn rand_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    aws_lc_rs::rand::fill(&mut id).unwrap();
    id
}

/// Version 1 of secp256k1 key `name`, read from the database as the host can.
fn stored_row(stack: &Stack, name: &str) -> WrappedKey {
    stored_row_of(stack, name, KeyType::Secp256k1)
}

/// Version 1 of key `name` of `key_type` (not exportable, generated), as the host reads it.
pub(crate) fn stored_row_of(stack: &Stack, name: &str, key_type: KeyType) -> WrappedKey {
    let conn = rusqlite::Connection::open(stack.db_path()).unwrap();
    let (root_id, public_key, wrapped): (Vec<u8>, Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT root_id, public_key, wrapped FROM key_versions WHERE name = ?1 AND version = 1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    WrappedKey {
        identity: KeyIdentity {
            name: KeyName::parse(name).unwrap(),
            version: KeyVersion::new(1).unwrap(),
            key_type,
            flags: KeyFlags { exportable: false, origin: Origin::Generated },
        },
        root_id: RootId(root_id.try_into().unwrap()),
        public_key,
        wrapped,
    }
}

/// k256, not the enclave's secp256k1 library, verifies a compact ECDSA signature.
pub(crate) fn k256_verifies(public: &[u8], digest: &[u8; 32], signature: &[u8]) {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(public).unwrap();
    let signature = k256::ecdsa::Signature::from_slice(signature).unwrap();
    key.verify_prehash(digest, &signature).expect("k256 verifies the enclave's signature");
}

fn key_sign(row: WrappedKey, digest: [u8; 32], auth: Option<Authorization>) -> Request {
    Request::KeySign(Box::new(KeySign {
        row,
        algorithm: SignAlgorithm::Ecdsa,
        payload: SignPayload::Digest(Digest(digest)),
        format: SignFormat::Compact,
        auth,
    }))
}

/// Runs `keyward ARGS` against the stack with the API token and `env`; returns success, the
/// JSON printed, and stderr.
pub(crate) fn cli(stack: &Stack, env: &[(&str, &std::path::Path)], args: &[&str]) -> (bool, serde_json::Value, String) {
    cli_with(stack, "api-token", env, args)
}

pub(crate) fn cli_with(
    stack: &Stack,
    token: &str,
    env: &[(&str, &std::path::Path)],
    args: &[&str],
) -> (bool, serde_json::Value, String) {
    let output = std::process::Command::new(keyward_e2e::binary("keyward"))
        .args(["--gateway", &format!("http://127.0.0.1:{}", stack.api_port)])
        .args(["--token-file", &stack.path().join(token).display().to_string()])
        .args(args)
        .env_remove("KEYWARD_PRINCIPAL_KEY")
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .output()
        .expect("run keyward");
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.success(), json, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_makes_a_principal_and_signs_as_it_only_when_it_is_an_owner() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("owner.key");
    let no_stack_yet = std::process::Command::new(keyward_e2e::binary("keyward"))
        .args(["principal", "new", "--out", &key.display().to_string()])
        .output()
        .unwrap();
    assert!(no_stack_yet.status.success(), "{}", String::from_utf8_lossy(&no_stack_yet.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&no_stack_yet.stdout).unwrap();
    let owner = printed["principal"].as_str().unwrap().to_owned();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "only its owner reads it");

    let options = StackOptions { owners: vec![owner], ..StackOptions::default() };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let signer = Arc::new(PrincipalSigner::from_pem(&std::fs::read_to_string(&key).unwrap()).unwrap());
    stack.admin_client().with_principal(signer).create_key("treasury", "secp256k1", false).await.unwrap();
    let sign = ["keys", "sign", "treasury", "--digest", &"42".repeat(32)];
    let (ok, json, stderr) = cli(&stack, &[("KEYWARD_PRINCIPAL_KEY", &key)], &sign);
    assert!(ok, "the owner's key signs: {stderr}");
    assert!(json["receipt"]["seq"].is_u64(), "the answer carries its receipt: {json}");
    let (ok, _, stderr) = cli(&stack, &[], &sign);
    assert!(!ok && stderr.contains("signature_required"), "no principal key: {stderr}");
    let other = dir.path().join("other.key");
    let (ok, _, stderr) = cli(&stack, &[], &["principal", "new", "--out", &other.display().to_string()]);
    assert!(ok, "{stderr}");
    let mut with_other = vec!["--principal-key", other.to_str().unwrap()];
    with_other.extend_from_slice(&sign);
    let (ok, _, stderr) = cli(&stack, &[], &with_other);
    assert!(!ok && stderr.contains("not_permitted"), "a principal that is not an owner: {stderr}");
    let (ok, second, stderr) = cli(&stack, &[("KEYWARD_PRINCIPAL_KEY", &key)], &sign);
    assert!(ok, "{stderr}");
    check_audit_log(&stack, dir.path(), &[json, second]).await;
}

/// Exports the audit log with the CLI, verifies it with the key the enclave reported, and
/// checks that an edited, a removed and a cut-off record are each reported with their code.
async fn check_audit_log(stack: &Stack, dir: &std::path::Path, answers: &[serde_json::Value]) {
    let log = dir.join("audit.jsonl");
    let (ok, exported, stderr) =
        cli_with(stack, "admin-token", &[], &["audit", "export", "--out", log.to_str().unwrap()]);
    assert!(ok, "export: {stderr}");
    // Five decisions: the owner's creation, then its signature, no signature, a stranger, the
    // owner again.
    assert_eq!(exported["records"], 5, "{exported}");
    // The audit key, from an attestation document verified against the root and this build's
    // PCRs: the enclave binds it into `user_data` after the master key.
    let m = &stack.measured;
    let root = stack.path().join("mock-nsm-root.pem");
    let build = format!("{},{},{}", m.pcr0, m.pcr1, m.pcr2);
    let (ok, attested, stderr) =
        cli_with(stack, "api-token", &[], &["verify-attestation", "--root", root.to_str().unwrap(), "--pcrs", &build]);
    assert!(ok, "verify-attestation: {attested} {stderr}");
    let key = attested["audit_public_key_hex"].as_str().expect("the document binds the audit key").to_owned();
    let master = stack.client.public_key(None).await.unwrap().public_key_hex;
    assert_eq!(attested["master_public_key_hex"].as_str(), Some(master.as_str()));
    let (_, health) = stack.client.health().await.unwrap();
    assert_eq!(health.enclaves[0].audit_public_key_hex.as_deref(), Some(key.as_str()), "health shows the same key");
    assert_eq!(exported["audit_public_key_hex"], key.as_str());
    let receipts = dir.join("receipts.jsonl");
    std::fs::write(&receipts, answers.iter().map(|a| format!("{a}\n")).collect::<String>()).unwrap();
    let verify = |log: &std::path::Path| {
        cli_with(
            stack,
            "admin-token",
            &[],
            &[
                "audit",
                "verify",
                "--log",
                log.to_str().unwrap(),
                "--public-key",
                &key,
                "--receipts",
                receipts.to_str().unwrap(),
            ],
        )
    };
    let (ok, verified, stderr) = verify(&log);
    assert!(ok, "the exported log verifies: {verified} {stderr}");
    assert_eq!((verified["records"].as_u64(), verified["receipts_checked"].as_u64()), (Some(5), Some(2)));
    let outcomes: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["ok", "ok", "signature_required", "not_permitted", "ok"]);

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let tampered = |name: &str, kept: Vec<String>| {
        let path = dir.join(name);
        std::fs::write(&path, kept.join("\n") + "\n").unwrap();
        let (ok, found, _) = verify(&path);
        assert!(!ok, "{name} must not verify: {found}");
        (found["code"].as_str().unwrap_or_default().to_owned(), found["seq"].as_u64())
    };
    let edited: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| if i == 2 { l.replace("signature_required", "ok") } else { (*l).to_owned() })
        .collect();
    assert_eq!(tampered("edited.jsonl", edited), ("record_edited".into(), Some(3)));
    let removed: Vec<String> =
        lines.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, l)| (*l).to_owned()).collect();
    assert_eq!(tampered("removed.jsonl", removed), ("records_removed_or_reordered".into(), Some(5)));
    let cut: Vec<String> = lines[..4].iter().map(|l| (*l).to_owned()).collect();
    assert_eq!(tampered("cut.jsonl", cut), ("log_truncated".into(), Some(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_an_owner_signed_is_signed_through_the_gateway_or_a_hostile_link() {
    let (owner, owner_pair) = principal();
    let (stranger, _) = principal();
    let options = StackOptions { owners: vec![owner.public()], ..StackOptions::default() };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let admin = stack.admin_client().with_principal(owner.clone());
    for (name, key_type) in [("treasury", "secp256k1"), ("payroll", "secp256k1"), ("vault", "aes256-gcm")] {
        admin.create_key(name, key_type, false).await.unwrap();
    }
    let treasury = stack.client.key("treasury").await.unwrap();
    let public = hex::decode(treasury.versions[0].public_key_hex.as_deref().unwrap()).unwrap();

    // The owner's signed request is signed, and k256 verifies the signature; each answer
    // carries its audit receipt, in order.
    let signed_client = stack.client.clone().with_principal(owner.clone());
    let digest = [0x42; 32];
    let request = SignWithKey { digest_hex: Some(hex::encode(digest)), ..SignWithKey::default() };
    let first = signed_client.sign_with_key("treasury", &request).await.expect("the owner signs");
    let second = signed_client.sign_with_key("treasury", &request).await.expect("the owner signs again");
    k256_verifies(&public, &digest, &hex::decode(&first.signature_hex).unwrap());
    let (r1, r2) = (first.receipt.expect("a receipt"), second.receipt.expect("a receipt"));
    assert!(r2.seq > r1.seq && r1.hash != r2.hash, "receipts follow the chain: {r1:?} then {r2:?}");

    // No signature, or a principal that is not an owner: refused in the enclave.
    assert_eq!(
        status_and_code(stack.client.sign_with_key("treasury", &request).await),
        (401, "signature_required".into())
    );
    let stranger_client = stack.client.clone().with_principal(stranger);
    assert_eq!(
        status_and_code(stranger_client.sign_with_key("treasury", &request).await),
        (403, "not_permitted".into())
    );
    // The master key obeys the same rules (keystore `master`, empty key name).
    let master = hex::decode(stack.client.public_key(None).await.unwrap().public_key_hex).unwrap();
    let signed = signed_client.sign(&digest, "ecdsa", None).await.expect("the owner signs with the master key");
    k256_verifies(&master, &digest, &hex::decode(&signed.signature.signature_hex).unwrap());
    assert!(signed.receipt.expect("a receipt").seq > r2.seq);
    assert_eq!(status_and_code(stack.client.sign(&digest, "ecdsa", None).await), (401, "signature_required".into()));
    assert_eq!(status_and_code(stranger_client.sign(&digest, "ecdsa", None).await), (403, "not_permitted".into()));
    // ... and so does a master-key batch, under one signature over the whole batch.
    let items = [(digest, "ecdsa"), ([0x77; 32], "ecdsa")];
    let batch = signed_client.sign_batch(&items, None).await.expect("the owner's batch");
    for (result, (d, _)) in batch.results.iter().zip(&items) {
        let keyward_client::api::BatchResult::Ok(signature) = result else { panic!("{result:?}") };
        k256_verifies(&master, d, &hex::decode(&signature.signature_hex).unwrap());
    }
    assert!(batch.receipt.expect("the batch's receipt").seq > signed.receipt.unwrap().seq);
    assert_eq!(status_and_code(stack.client.sign_batch(&items, None).await), (401, "signature_required".into()));
    assert_eq!(status_and_code(stranger_client.sign_batch(&items, None).await), (403, "not_permitted".into()));
    // Encryption obeys the same rules (kms_e2e::authz_crypt has the rest).
    let encrypt = Encrypt { plaintext_b64: STANDARD.encode(b"payroll"), associated_data_b64: None };
    assert_eq!(status_and_code(stack.client.encrypt("vault", &encrypt).await), (401, "signature_required".into()));
    signed_client.encrypt("vault", &encrypt).await.expect("the owner encrypts");

    // The host, with the gateway's link key, sends its own frames.
    let mut link = RawLink::connect(&stack, 1).await;
    link.handshake_as_gateway(&stack).await;
    let body = digest_body(&digest);
    // The owner's signature over signing `digest` with treasury, replayed over another digest.
    let frame = link
        .call(key_sign(stored_row(&stack, "treasury"), [0x66; 32], Some(authorization(&owner_pair, "treasury", &body))))
        .await;
    assert_eq!(error_of(&frame).0, ErrorCode::RequestMismatch, "another digest: {frame:?}");
    // ... over another key.
    let frame = link
        .call(key_sign(stored_row(&stack, "payroll"), digest, Some(authorization(&owner_pair, "treasury", &body))))
        .await;
    assert_eq!(error_of(&frame).0, ErrorCode::BadRequestSignature, "another key: {frame:?}");
    // ... with the body swapped for the host's own.
    let mut swapped = authorization(&owner_pair, "treasury", &body);
    swapped.body = digest_body(&[0x66; 32]);
    let frame = link.call(key_sign(stored_row(&stack, "treasury"), [0x66; 32], Some(swapped))).await;
    assert_eq!(error_of(&frame).0, ErrorCode::BadRequestSignature, "a swapped body: {frame:?}");
    // ... without any.
    let frame = link.call(key_sign(stored_row(&stack, "treasury"), [0x66; 32], None)).await;
    assert_eq!(error_of(&frame).0, ErrorCode::SignatureRequired, "no authorization: {frame:?}");
    // The owner's signature over a master-key request, replayed over another digest, and
    // presented as a keyring request.
    let master_body = serde_json::to_vec(&keyward_client::api::SignRequest {
        digest_hex: hex::encode(digest),
        scheme: "ecdsa".into(),
        enclave_id: None,
    })
    .unwrap();
    let master_auth = authorization_in(&owner_pair, "master", "", &master_body);
    let master_sign = |digest: [u8; 32], auth: Authorization| {
        Request::Sign(SignRequest { digest: Digest(digest), scheme: Scheme::Ecdsa, auth: Some(Box::new(auth)) })
    };
    let frame = link.call(master_sign([0x66; 32], master_auth.clone())).await;
    assert_eq!(error_of(&frame).0, ErrorCode::RequestMismatch, "the master key, another digest: {frame:?}");
    let frame = link.call(key_sign(stored_row(&stack, "treasury"), digest, Some(master_auth.clone()))).await;
    assert_eq!(error_of(&frame).0, ErrorCode::BadRequestSignature, "a master request as a keyring one: {frame:?}");
    let frame = link.call(master_sign(digest, master_auth)).await;
    assert!(matches!(frame.reply, Reply::Ok(Response::Signature(_))), "the owner's master request: {frame:?}");
    // The same link and frames, with the request the owner signed, are served: the refusals
    // above are the authorization's, not the link's.
    let frame = link
        .call(key_sign(stored_row(&stack, "treasury"), digest, Some(authorization(&owner_pair, "treasury", &body))))
        .await;
    match frame.reply {
        Reply::Ok(Response::KeySignature(signature)) => {
            k256_verifies(&public, &digest, &signature.signature);
            assert!(signature.receipt.expect("a receipt").seq > r2.seq, "the receipt comes later in the chain");
        }
        other => panic!("the owner's own request is signed, got {other:?}"),
    }
}
