//! Key agreement end to end, against jwcrypto (Python), an independent JOSE implementation:
//! a JWE that jwcrypto encrypts to a keyring key (x25519 and p256) is opened with the content
//! key keyward unwraps in the enclave; a content key keyward wraps to a jwcrypto key opens a
//! JWE in jwcrypto; the ECDH secret keyward derives is the one the peer computes (aws-lc-rs,
//! RustCrypto's p256). Refusals: a key that does not agree, another curve, a tampered key.

use aes_gcm::{
    Aes256Gcm, KeyInit,
    aead::{Aead, Payload},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use keyward_e2e::{Stack, StackOptions, workspace_root};
use serde_json::{Value, json};

/// Runs tests/compat/jose.py with jwcrypto.
fn jose(args: &[&str]) -> String {
    let root = workspace_root();
    let output = std::process::Command::new(root.join("scripts/py-clients"))
        .arg("python")
        .arg(root.join("tests/compat/jose.py"))
        .args(args)
        .output()
        .expect("run scripts/py-clients");
    assert!(output.status.success(), "jose.py {}: {}", args[0], String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

fn code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or("<none>"))
}

fn unb64url(value: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value).expect("base64url")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jose_ecdh_es_and_shared_secrets_agree_with_jwcrypto() {
    let mut stack = Stack::start(StackOptions::default()).await;
    stack.wait_keyring().await;
    let admin = stack.admin_client();
    admin.create_key("agree-x", "x25519", false).await.expect("x25519 key");
    admin.create_key("agree-p", "p256", false).await.expect("p256 key");
    admin.create_key("signer", "secp256k1", false).await.expect("secp256k1 key");
    let api = Api {
        client: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{}", stack.api_port),
        token: stack.token.clone(),
    };

    for (name, crv) in [("agree-x", "X25519"), ("agree-p", "P-256")] {
        // jwcrypto encrypts to the key's public JWK; keyward unwraps the content key.
        let (status, jwk) = api.call(reqwest::Method::GET, &format!("/v1/keys/{name}/jwk"), None).await;
        assert_eq!(status, 200, "{jwk}");
        assert_eq!((jwk["crv"].as_str(), jwk["kid"].as_str()), (Some(crv), Some(name)));
        let through_sdk = stack.client.key_jwk(name).await.expect("the SDK reads the JWK");
        assert_eq!(serde_json::to_value(&through_sdk).unwrap(), jwk);
        let message = format!("to {name}, from jwcrypto");
        let token = jose(&["encrypt", &jwk.to_string(), &message]);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 5, "compact JWE");
        let header: Value = serde_json::from_slice(&unb64url(parts[0])).unwrap();
        assert_eq!(header["alg"], "ECDH-ES+A256KW");
        let mut request = json!({"epk": header["epk"], "encrypted_key": parts[1]});
        for party in ["apu", "apv"] {
            if let Some(v) = header.get(party) {
                request[party] = v.clone();
            }
        }
        let (status, unwrapped) = api.post(&format!("/v1/keys/{name}/unwrap"), request.clone()).await;
        assert_eq!(status, 200, "{unwrapped}");
        let cek = STANDARD.decode(unwrapped["cek_b64"].as_str().unwrap()).unwrap();
        let content = [unb64url(parts[3]), unb64url(parts[4])].concat();
        let opened = Aes256Gcm::new(cek.as_slice().into())
            .decrypt(unb64url(parts[2]).as_slice().into(), Payload { msg: &content, aad: parts[0].as_bytes() })
            .expect("the unwrapped content key opens jwcrypto's JWE");
        assert_eq!(String::from_utf8(opened).unwrap(), message);

        // Tampered, or to another key: refused with a code, never a key.
        let mut tampered = request.clone();
        let mut wrapped = unb64url(parts[1]);
        wrapped[5] ^= 1;
        tampered["encrypted_key"] = json!(URL_SAFE_NO_PAD.encode(&wrapped));
        assert_eq!(code(&api.post(&format!("/v1/keys/{name}/unwrap"), tampered).await), (400, "decryption_failed"));
        let other = if name == "agree-x" { "agree-p" } else { "agree-x" };
        assert_eq!(code(&api.post(&format!("/v1/keys/{other}/unwrap"), request.clone()).await), (400, "invalid_jwk"));
        assert_eq!(code(&api.post("/v1/keys/signer/unwrap", request).await), (400, "unsupported_operation"));

        // keyward wraps a content key to a jwcrypto key; jwcrypto opens the JWE built on it.
        let private = jose(&["genkey", crv]);
        let mut public: Value = serde_json::from_str(&private).unwrap();
        public.as_object_mut().unwrap().remove("d");
        let cek = [0x3cu8; 32];
        let (status, wrapped) =
            api.post("/v1/wrap", json!({"recipient_jwk": public, "cek_b64": STANDARD.encode(cek)})).await;
        assert_eq!(status, 200, "{wrapped}");
        let header = json!({"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "epk": wrapped["epk"]});
        let protected = URL_SAFE_NO_PAD.encode(header.to_string());
        let iv = [7u8; 12];
        let sealed = Aes256Gcm::new((&cek).into())
            .encrypt((&iv).into(), Payload { msg: b"from keyward", aad: protected.as_bytes() })
            .unwrap();
        let (ciphertext, tag) = sealed.split_at(sealed.len() - 16);
        let token = [
            protected.as_str(),
            wrapped["encrypted_key"].as_str().unwrap(),
            &URL_SAFE_NO_PAD.encode(iv),
            &URL_SAFE_NO_PAD.encode(ciphertext),
            &URL_SAFE_NO_PAD.encode(tag),
        ]
        .join(".");
        assert_eq!(jose(&["decrypt", &private, &token]), "from keyward", "jwcrypto opens what keyward wrapped");
    }

    // The raw ECDH secret is what the peer computes with keyward's public key.
    let peer = aws_lc_rs::agreement::PrivateKey::generate(&aws_lc_rs::agreement::X25519).unwrap();
    let peer_public = peer.compute_public_key().unwrap();
    let body = json!({"public_key_b64": STANDARD.encode(peer_public.as_ref())});
    let (status, derived) = api.post("/v1/keys/agree-x/derive-shared-secret", body).await;
    assert_eq!(status, 200, "{derived}");
    let ours = stack.client.key("agree-x").await.unwrap().versions[0].public_key_hex.clone().unwrap();
    let expected = aws_lc_rs::agreement::agree(
        &peer,
        aws_lc_rs::agreement::UnparsedPublicKey::new(&aws_lc_rs::agreement::X25519, hex::decode(ours).unwrap()),
        (),
        |z| Ok(z.to_vec()),
    )
    .unwrap();
    assert_eq!(STANDARD.decode(derived["shared_secret_b64"].as_str().unwrap()).unwrap(), expected);
    let low_order = json!({"public_key_b64": STANDARD.encode([0u8; 32])});
    assert_eq!(code(&api.post("/v1/keys/agree-x/derive-shared-secret", low_order).await), (400, "bad_request"));
    let p_peer = p256::SecretKey::from_slice(&[0x21; 32]).unwrap();
    let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&p_peer.public_key(), false);
    let p_jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
        "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
    });
    let (status, derived) = api.post("/v1/keys/agree-p/derive-shared-secret", json!({"public_key_jwk": p_jwk})).await;
    assert_eq!(status, 200, "{derived}");
    let ours = stack.client.key("agree-p").await.unwrap().versions[0].public_key_hex.clone().unwrap();
    let ours = p256::PublicKey::from_sec1_bytes(&hex::decode(ours).unwrap()).unwrap();
    let expected = p256::ecdh::diffie_hellman(p_peer.to_nonzero_scalar(), ours.as_affine());
    assert_eq!(
        STANDARD.decode(derived["shared_secret_b64"].as_str().unwrap()).unwrap(),
        expected.raw_secret_bytes().as_slice()
    );
    let sdk = keyward_client::agree::DeriveSharedSecret {
        public_key_jwk: Some(serde_json::from_value(p_jwk.clone()).unwrap()),
        ..Default::default()
    };
    let through_sdk = stack.client.derive_shared_secret("agree-p", &sdk).await.expect("the SDK derives");
    assert_eq!(STANDARD.decode(through_sdk.shared_secret_b64).unwrap(), expected.raw_secret_bytes().as_slice());
    let both = json!({"public_key_b64": "AA==", "public_key_jwk": p_jwk});
    assert_eq!(code(&api.post("/v1/keys/agree-p/derive-shared-secret", both).await), (400, "invalid_field"));
    assert_eq!(
        code(&api.post("/v1/keys/signer/derive-shared-secret", json!({"public_key_b64": "AA=="})).await),
        (400, "unsupported_operation")
    );
}
