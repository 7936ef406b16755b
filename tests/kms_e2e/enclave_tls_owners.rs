//! With owners, a client certificate on the enclave's TLS API is a principal of the policies:
//! what it may do is what they grant its key, checked in the enclave, without a signature per
//! request; the same claim sent by the host on its own API is refused.

use keyward_attest::{Measurements, Pcr, RootCertificate};
use keyward_authz::PrincipalKey;
use keyward_client::{
    Client, ClientError,
    attested::AttestedTls,
    keys::SignWithKey,
    tls_pin::{FirstSight, PinnedServer, client_config, principal_of},
};
use keyward_e2e::{Stack, StackOptions, assert_signature_verifies, digest};
use serde_json::json;

use crate::enclave_tls::{ClientCert, error_code, https, tls_options, wait_tls_api};

/// What the enclave's TLS API sets to a listed certificate's principal
/// (`gateway::signed::CHANNEL_PRINCIPAL_HEADER`).
const CHANNEL_PRINCIPAL_HEADER: &str = "x-keyward-channel-principal";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_a_principal_the_policies_name() {
    let owner_cert = ClientCert::new();
    let outsider = ClientCert::new();
    let no_principal = ClientCert::with_algorithm(&rcgen::PKCS_ECDSA_P384_SHA384);
    assert_eq!(principal_of(&no_principal.cert), None, "a P-384 key is no principal");
    let owner = principal_of(&owner_cert.cert).expect("a P-256 certificate is a principal");
    let certificates =
        [("--tls-admin-key", &owner_cert), ("--tls-client-key", &outsider), ("--tls-client-key", &no_principal)];
    let (options, pass_port) =
        tls_options(&certificates, StackOptions { owners: vec![owner.clone()], ..StackOptions::default() });
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let base = format!("https://127.0.0.1:{pass_port}");
    wait_tls_api(&https(client_config(FirstSight::new(), None).unwrap()), &base).await;
    let root =
        RootCertificate::from_pem(&std::fs::read_to_string(stack.path().join("mock-nsm-root.pem")).unwrap()).unwrap();
    let build = Measurements {
        pcr0: Pcr::from_hex(&stack.measured.pcr0).unwrap(),
        pcr1: Pcr::from_hex(&stack.measured.pcr1).unwrap(),
        pcr2: Pcr::from_hex(&stack.measured.pcr2).unwrap(),
    };
    let connect = |cert: &ClientCert| {
        let expect = AttestedTls { root: root.clone(), builds: vec![build.clone()], identity: Some(cert.identity()) };
        Client::connect_attested(&base, expect)
    };
    let (as_owner, _) = connect(&owner_cert).await.expect("the owner's certificate");
    let (as_outsider, verified) = connect(&outsider).await.expect("a listed certificate");

    // The owner's certificate creates and signs with no signature on the requests; the
    // signature is audited (its receipt comes back).
    let created = as_owner.create_key("cert-made", "secp256k1", false).await.expect("created by the certificate's key");
    assert_eq!(created.latest_version, 1);
    let d = digest(41);
    let request = SignWithKey { digest_hex: Some(hex::encode(d)), ..SignWithKey::default() };
    let signed = as_owner.sign_with_key("cert-made", &request).await.expect("signed for the owner");
    assert!(signed.receipt.is_some(), "the signature was audited");
    assert_signature_verifies("ecdsa", &d, &signed.signature_hex, &signed.public_key_hex, "");

    // A listed certificate passes the transport check, but no policy names its key.
    let refused = as_outsider.sign_with_key("cert-made", &request).await.expect_err("no policy names it");
    assert!(matches!(&refused, ClientError::Api { status: 403, code, .. } if code == "not_permitted"), "{refused}");

    // The host claiming the owner's certificate on its own API: the claim never reaches the
    // enclave, which sees an unsigned request with an empty signature.
    let forged = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/keys/cert-made/sign", stack.api_port))
        .bearer_auth(&stack.token)
        .header(CHANNEL_PRINCIPAL_HEADER, &owner)
        .json(&json!({"digest_hex": hex::encode(d)}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(forged).await, (401, "bad_request_signature".into()));
    // Nor can a client claim another principal on the TLS API: the enclave replaces the claim
    // with its own certificate's.
    let claiming = |cert: &ClientCert| {
        https(client_config(PinnedServer::new(verified.spki_sha256), Some(cert.identity())).unwrap())
            .post(format!("{base}/v1/keys/cert-made/sign"))
            .header(CHANNEL_PRINCIPAL_HEADER, &owner)
            .json(&json!({"digest_hex": hex::encode(d)}))
            .send()
    };
    assert_eq!(error_code(claiming(&outsider).await.unwrap()).await, (403, "not_permitted".into()));
    // A listed certificate whose key is no principal: its claim is removed, not replaced, and
    // the request is an unsigned one.
    assert_eq!(error_code(claiming(&no_principal).await.unwrap()).await, (401, "signature_required".into()));

    // The owner's certificate grants the outsider's key a policy, which then lets it sign; the
    // TLS API shows the policy only as the enclave sealed it.
    let outsider_id = PrincipalKey::parse(&principal_of(&outsider.cert).unwrap()).unwrap().id().to_string();
    let policy = json!({"version": 1, "rules": [{"principals": [outsider_id], "operations": ["sign"], "quorum": 1}]});
    as_owner.set_key_policy("cert-made", &policy, &[]).await.expect("the owner's certificate sets a policy");
    as_outsider.sign_with_key("cert-made", &request).await.expect("the policy lets the outsider sign");
    assert_eq!(as_outsider.key_policy("cert-made").await.expect("the policy over TLS").version, 1);
    stack.sql("UPDATE key_policies SET body = CAST(REPLACE(CAST(body AS TEXT), '\"sign\"', '\"rotate\"') AS BLOB)", []);
    let shown = stack.client.key_policy("cert-made").await.expect("the host shows its edit");
    assert_eq!(shown.policy["rules"][0]["operations"][0], "rotate");
    let refused = as_outsider.key_policy("cert-made").await.expect_err("the enclave checks the row first");
    assert!(matches!(&refused, ClientError::Api { code, .. } if code == "policy_tampered"), "{refused}");
}
