//! Encryption, data keys, MACs and random bytes end to end (real gateway, enclave, attesting
//! dev KMS and LocalStack). Keys are exported through the CLI so that RustCrypto's `aes-gcm`
//! and `hmac` (not aws-lc-rs, which the enclave uses) can check every ciphertext and MAC
//! against the documented format. panda-confidential-kms's flow is replayed: KMS randomness,
//! then "Hello World!" and larger payloads encrypted under a key and decrypted. The database
//! and every log are scanned for each key, data key and plaintext.

use aes_gcm::{
    Aes256Gcm, KeyInit,
    aead::{Aead, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_client::{
    Client, ClientError,
    crypt::{Decrypt, Encrypt, GenerateDataKey, KeyConfig, MacRequest, VerifyMac},
};
use keyward_e2e::{Stack, StackOptions, assert_secret_absent};

use crate::keyring_transfer::keys_cli;

fn encrypt_request(plaintext: &[u8], aad: Option<&[u8]>) -> Encrypt {
    Encrypt { plaintext_b64: STANDARD.encode(plaintext), associated_data_b64: aad.map(|a| STANDARD.encode(a)) }
}

fn decrypt_request(ciphertext: &[u8], aad: Option<&[u8]>) -> Decrypt {
    Decrypt { ciphertext_b64: STANDARD.encode(ciphertext), associated_data_b64: aad.map(|a| STANDARD.encode(a)) }
}

async fn encrypt(client: &Client, name: &str, plaintext: &[u8], aad: Option<&[u8]>) -> (Vec<u8>, u32) {
    let encrypted = client.encrypt(name, &encrypt_request(plaintext, aad)).await.expect("encrypt");
    (STANDARD.decode(encrypted.ciphertext_b64).expect("base64"), encrypted.version)
}

async fn decrypt(client: &Client, name: &str, ciphertext: &[u8], aad: Option<&[u8]>) -> Result<Vec<u8>, ClientError> {
    let decrypted = client.decrypt(name, &decrypt_request(ciphertext, aad)).await?;
    Ok(STANDARD.decode(decrypted.plaintext_b64).expect("base64"))
}

fn code_of<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, code, .. }) => (status, code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Opens a keyward ciphertext with RustCrypto's AES-GCM, rebuilding the documented AAD.
fn open_independently(key: &[u8; 32], name: &str, ciphertext: &[u8], aad: &[u8]) -> Vec<u8> {
    assert_eq!(ciphertext[0], 1, "format 1");
    let gcm_aad = [&b"keyward encrypt v1\0"[..], &[name.len() as u8], name.as_bytes(), &ciphertext[..17], aad].concat();
    Aes256Gcm::new(key.into())
        .decrypt(ciphertext[5..17].into(), Payload { msg: &ciphertext[17..], aad: &gcm_aad })
        .expect("RustCrypto opens keyward's ciphertext")
}

fn export(stack: &Stack, dir: &std::path::Path, name: &str) -> [u8; 32] {
    let out = dir.join(format!("{name}.hex"));
    let (ok, _, stderr) = keys_cli(stack, &["export", name, "--out", &out.display().to_string()]);
    assert!(ok, "export {name}: {stderr}");
    let mut secret = [0u8; 32];
    hex::decode_to_slice(std::fs::read_to_string(&out).expect("exported").trim(), &mut secret).expect("hex");
    secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_data_keys_and_macs_work_end_to_end_and_hold_against_tampering() {
    let mut stack = Stack::start(StackOptions::default()).await;
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    let (admin, client) = (stack.admin_client(), stack.client.clone());
    admin.create_key("docs", "aes256-gcm", true).await.expect("aes key");
    admin.create_key("tags", "hmac-sha256", true).await.expect("hmac key");
    admin.create_key("btc", "secp256k1", false).await.expect("signing key");
    let outside = tempfile::tempdir().expect("tempdir");
    let docs_key = export(&stack, outside.path(), "docs");
    let tags_key = export(&stack, outside.path(), "tags");

    // panda-confidential-kms's flow: randomness from KMS (attested, opened in the enclave),
    // then "Hello World!" and a 1 MiB payload encrypted under the key and decrypted.
    let random = client.random(32, Some("kms")).await.expect("KMS random bytes");
    let random = STANDARD.decode(&random.random_b64).expect("base64");
    assert_eq!(random.len(), 32);
    assert_ne!(random, vec![0u8; 32]);
    let hello = b"Hello World!";
    let (sealed, version) = encrypt(&client, "docs", hello, Some(b"thread-1")).await;
    assert_eq!(version, 1);
    assert_eq!(decrypt(&client, "docs", &sealed, Some(b"thread-1")).await.expect("decrypt"), hello);
    assert_eq!(open_independently(&docs_key, "docs", &sealed, b"thread-1"), hello);
    let large: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let (large_sealed, _) = encrypt(&client, "docs", &large, None).await;
    assert_eq!(open_independently(&docs_key, "docs", &large_sealed, b""), large);
    assert_eq!(decrypt(&client, "docs", &large_sealed, None).await.expect("decrypt 1 MiB"), large);
    let err = client.encrypt("docs", &encrypt_request(&vec![0u8; (1 << 20) + 1], None)).await;
    assert_eq!(code_of(err), (400, "payload_too_large".into()));

    // Other associated data, every flipped byte, every truncation: a 4xx code, never plaintext.
    assert_eq!(code_of(decrypt(&client, "docs", &sealed, Some(b"thread-2")).await), (400, "decryption_failed".into()));
    assert_eq!(code_of(decrypt(&client, "docs", &sealed, None).await), (400, "decryption_failed".into()));
    for i in 0..sealed.len() {
        let mut altered = sealed.clone();
        altered[i] ^= 0x01;
        let (status, code) = code_of(decrypt(&client, "docs", &altered, Some(b"thread-1")).await);
        assert_eq!(status, 400, "byte {i}");
        assert!(["decryption_failed", "ciphertext_malformed"].contains(&code.as_str()), "byte {i}: {code}");
    }
    for len in [0, 5, 16, 28, sealed.len() - 1] {
        let (status, _) = code_of(decrypt(&client, "docs", &sealed[..len], Some(b"thread-1")).await);
        assert_eq!(status, 400, "truncated to {len}");
    }
    // Another key, a key of another type, a key that does not exist.
    admin.create_key("docs2", "aes256-gcm", false).await.expect("second aes key");
    assert_eq!(code_of(decrypt(&client, "docs2", &sealed, Some(b"thread-1")).await), (400, "decryption_failed".into()));
    assert_eq!(
        code_of(client.encrypt("tags", &encrypt_request(hello, None)).await),
        (400, "unsupported_operation".into())
    );
    assert_eq!(
        code_of(client.encrypt("btc", &encrypt_request(hello, None)).await),
        (400, "unsupported_operation".into())
    );
    assert_eq!(code_of(client.encrypt("nope", &encrypt_request(hello, None)).await), (404, "key_not_found".into()));

    // Rotation: old ciphertexts still decrypt; rewrap moves them to the latest version
    // without the plaintext leaving the enclave; a minimum version then refuses the old one.
    let rotated = admin.rotate_key("docs").await.expect("rotate");
    assert_eq!(rotated.latest_version, 2);
    assert_eq!(decrypt(&client, "docs", &sealed, Some(b"thread-1")).await.expect("v1 after rotation"), hello);
    let (new_sealed, version) = encrypt(&client, "docs", hello, None).await;
    assert_eq!((version, &new_sealed[1..5]), (2, &[0, 0, 0, 2][..]));
    let rewrapped = client.rewrap("docs", &decrypt_request(&sealed, Some(b"thread-1"))).await.expect("rewrap");
    assert_eq!(rewrapped.version, 2);
    let rewrapped = STANDARD.decode(rewrapped.ciphertext_b64).expect("base64");
    let err = client.configure_key("docs", &KeyConfig { min_decryption_version: Some(2) }).await;
    assert_eq!(code_of(err), (401, "unauthorized".into()), "settings need the admin token");
    let err = admin.configure_key("docs", &KeyConfig { min_decryption_version: Some(3) }).await;
    assert_eq!(code_of(err), (400, "invalid_min_decryption_version".into()));
    let configured =
        admin.configure_key("docs", &KeyConfig { min_decryption_version: Some(2) }).await.expect("configure");
    assert_eq!(configured.min_decryption_version, 2);
    assert_eq!(
        code_of(decrypt(&client, "docs", &sealed, Some(b"thread-1")).await),
        (400, "version_below_minimum".into())
    );
    assert_eq!(decrypt(&client, "docs", &rewrapped, Some(b"thread-1")).await.expect("rewrapped"), hello);

    // Data keys: wrapped under the key, their plaintext only when asked, opened by decrypt.
    let data_key = client
        .data_key("docs", &GenerateDataKey { spec: "aes-256".into(), plaintext: true, associated_data_b64: None })
        .await
        .expect("data key");
    let plain_dek = STANDARD.decode(data_key.plaintext_b64.as_deref().expect("asked for")).expect("base64");
    let wrapped_dek = STANDARD.decode(&data_key.ciphertext_b64).expect("base64");
    assert_eq!(plain_dek.len(), 32);
    assert_eq!(decrypt(&client, "docs", &wrapped_dek, None).await.expect("unwrap the data key"), plain_dek);
    let hidden = client
        .data_key("docs", &GenerateDataKey { spec: "aes-256".into(), plaintext: false, associated_data_b64: None })
        .await
        .expect("data key without plaintext");
    assert!(hidden.plaintext_b64.is_none());
    for spec in ["rsa-2048", "p256"] {
        let pair = client
            .data_key("docs", &GenerateDataKey { spec: spec.into(), plaintext: true, associated_data_b64: None })
            .await
            .expect("key-pair data key");
        let private = STANDARD.decode(pair.plaintext_b64.expect("asked for")).expect("base64");
        let public = STANDARD.decode(pair.public_key_b64.expect("a public key")).expect("base64");
        let wrapped = STANDARD.decode(&pair.ciphertext_b64).expect("base64");
        assert_eq!(decrypt(&client, "docs", &wrapped, None).await.expect("unwrap"), private, "{spec}");
        // The private key signs, the public key verifies.
        let message = b"data key pair";
        let (signature, algorithm): (Vec<u8>, &dyn aws_lc_rs::signature::VerificationAlgorithm) = if spec == "p256" {
            let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &private,
            )
            .expect("PKCS#8 P-256");
            let rng = aws_lc_rs::rand::SystemRandom::new();
            (pair.sign(&rng, message).expect("sign").as_ref().to_vec(), &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1)
        } else {
            let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&private).expect("PKCS#8 RSA");
            let mut signature = vec![0u8; pair.public_modulus_len()];
            let rng = aws_lc_rs::rand::SystemRandom::new();
            pair.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, message, &mut signature).expect("sign");
            (signature, &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256)
        };
        let spki = spki_key(&public);
        aws_lc_rs::signature::UnparsedPublicKey::new(algorithm, spki).verify(message, &signature).expect(spec);
    }
    let des = GenerateDataKey { spec: "des".into(), plaintext: true, associated_data_b64: None };
    assert_eq!(code_of(client.data_key("docs", &des).await), (400, "invalid_spec".into()));

    // MACs: HMAC-SHA256 of the key (checked with RustCrypto's hmac), verified in the enclave.
    let message = b"invoice 42";
    let mac = client.hmac("tags", &MacRequest { message_b64: STANDARD.encode(message) }).await.expect("hmac");
    let tag = STANDARD.decode(&mac.mac_b64).expect("base64");
    use hmac::Mac as _;
    let mut independent = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&tags_key).expect("key");
    independent.update(message);
    assert_eq!(tag, independent.finalize().into_bytes().to_vec());
    let verify = |message: &[u8], mac: &str| VerifyMac {
        message_b64: STANDARD.encode(message),
        mac_b64: mac.to_owned(),
        version: None,
    };
    assert!(client.verify_hmac("tags", &verify(message, &mac.mac_b64)).await.expect("verify").valid);
    assert!(!client.verify_hmac("tags", &verify(b"invoice 43", &mac.mac_b64)).await.expect("verify").valid);
    assert_eq!(
        code_of(client.hmac("docs", &MacRequest { message_b64: "aGk=".into() }).await),
        (400, "unsupported_operation".into())
    );

    // Random bytes: the NSM's, within bounds.
    let nsm = client.random(1024, None).await.expect("NSM random bytes");
    assert_eq!((STANDARD.decode(&nsm.random_b64).expect("base64").len(), nsm.source.as_str()), (1024, "nsm"));
    for (bytes, source, code) in
        [(0, None, "invalid_length"), (1025, None, "invalid_length"), (8, Some("dice"), "invalid_source")]
    {
        assert_eq!(code_of(client.random(bytes, source).await), (400, code.into()));
    }

    // A disabled key is never used.
    admin.set_key_state("docs", "disable").await.expect("disable");
    assert_eq!(code_of(decrypt(&client, "docs", &rewrapped, Some(b"thread-1")).await), (409, "key_disabled".into()));
    assert_eq!(code_of(client.encrypt("docs", &encrypt_request(hello, None)).await), (409, "key_disabled".into()));

    // No key, data key or random bytes in the database files or any log.
    let scanned = stack.log_and_database_bytes();
    for (path, bytes) in &scanned {
        let label = path.display().to_string();
        assert_secret_absent(&label, bytes, "aes256-gcm key", &docs_key);
        assert_secret_absent(&label, bytes, "hmac-sha256 key", &tags_key);
        assert_secret_absent(&label, bytes, "data key", &plain_dek);
        assert_secret_absent(&label, bytes, "KMS random bytes", &random);
        assert_secret_absent(&label, bytes, "a plaintext", &large[..64]);
    }
}

/// The key inside an SPKI DER (`SEQUENCE { SEQUENCE algorithm, BIT STRING key }`): the
/// uncompressed point for P-256, the PKCS#1 `RSAPublicKey` for RSA, as aws-lc-rs verifies.
fn spki_key(spki: &[u8]) -> Vec<u8> {
    /// One DER element at `at`: (tag, content start, content end).
    fn element(der: &[u8], at: usize) -> (u8, usize, usize) {
        let (tag, first) = (der[at], der[at + 1] as usize);
        let (start, len) = if first < 0x80 {
            (at + 2, first)
        } else {
            let n = first & 0x7f;
            (at + 2 + n, der[at + 2..at + 2 + n].iter().fold(0usize, |acc, b| acc << 8 | *b as usize))
        };
        (tag, start, start + len)
    }
    let (outer, start, _) = element(spki, 0);
    let (algorithm, _, algorithm_end) = element(spki, start);
    let (bit_string, key_start, key_end) = element(spki, algorithm_end);
    assert_eq!((outer, algorithm, bit_string, spki[key_start]), (0x30, 0x30, 0x03, 0), "an SPKI");
    spki[key_start + 1..key_end].to_vec()
}
