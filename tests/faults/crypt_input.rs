//! Bad input on every encryption, data-key, MAC and random endpoint: each gets a 4xx JSON
//! answer with its own code, never plaintext; no key changes; the gateway keeps serving.

use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_client::crypt::{Decrypt, Encrypt};
use keyward_e2e::{Stack, StackOptions};

use crate::http_cases::{Auth, Case, json_case, run_cases};

fn admin(case: Case) -> Case {
    Case { auth: Auth::Admin, ..case }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_encryption_endpoint_answers_bad_input_with_its_code_and_keeps_serving() {
    let mut stack = Stack::start(StackOptions::default()).await;
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    let admin_client = stack.admin_client();
    admin_client.create_key("sym", "aes256-gcm", false).await.expect("create sym");
    admin_client.create_key("mac", "hmac-sha256", false).await.expect("create mac");
    admin_client.create_key("k", "secp256k1", false).await.expect("create k");
    keyward_client::install_crypto_provider();
    let sealed = stack
        .client
        .encrypt("sym", &Encrypt { plaintext_b64: STANDARD.encode(b"secret"), associated_data_b64: None })
        .await
        .expect("encrypt");
    let before = stack.client.list_keys(None, None).await.expect("list");
    let ciphertext = STANDARD.decode(&sealed.ciphertext_b64).expect("base64");
    let with_ciphertext = |bytes: &[u8]| format!(r#"{{"ciphertext_b64":"{}"}}"#, STANDARD.encode(bytes));
    let mut other_format = ciphertext.clone();
    other_format[0] = 9;
    let mut version_9 = ciphertext.clone();
    version_9[1..5].copy_from_slice(&9u32.to_be_bytes());
    let too_big = format!(r#"{{"plaintext_b64":"{}"}}"#, STANDARD.encode(vec![0u8; (1 << 20) + 3]));

    let cases = vec![
        Case {
            auth: Auth::None,
            ..json_case("encrypt without a token", "/v1/keys/sym/encrypt", "{}", 401, "unauthorized", "Authorization")
        },
        json_case("encrypt, not JSON", "/v1/keys/sym/encrypt", "{plaintext", 400, "invalid_json", "key must be"),
        json_case("encrypt without plaintext", "/v1/keys/sym/encrypt", "{}", 400, "invalid_field", "plaintext_b64"),
        json_case(
            "encrypt, unknown field",
            "/v1/keys/sym/encrypt",
            r#"{"plaintext_b64":"","key":"x"}"#,
            400,
            "invalid_field",
            "unknown field",
        ),
        json_case(
            "encrypt, not base64",
            "/v1/keys/sym/encrypt",
            r#"{"plaintext_b64":"***"}"#,
            400,
            "invalid_base64",
            "plaintext_b64",
        ),
        json_case(
            "encrypt, associated data not base64",
            "/v1/keys/sym/encrypt",
            r#"{"plaintext_b64":"","associated_data_b64":"!"}"#,
            400,
            "invalid_base64",
            "associated_data_b64",
        ),
        json_case("encrypt over 1 MiB", "/v1/keys/sym/encrypt", &too_big, 400, "payload_too_large", "at most"),
        json_case(
            "encrypt with a signing key",
            "/v1/keys/k/encrypt",
            r#"{"plaintext_b64":""}"#,
            400,
            "unsupported_operation",
            "does not encrypt",
        ),
        json_case(
            "encrypt with a bad key name",
            "/v1/keys/a%20b/encrypt",
            r#"{"plaintext_b64":""}"#,
            400,
            "invalid_key_name",
            "A-Z a-z",
        ),
        json_case(
            "encrypt with no such key",
            "/v1/keys/none/encrypt",
            r#"{"plaintext_b64":""}"#,
            404,
            "key_not_found",
            "none",
        ),
        json_case(
            "decrypt, empty ciphertext",
            "/v1/keys/sym/decrypt",
            r#"{"ciphertext_b64":""}"#,
            400,
            "ciphertext_malformed",
            "at least",
        ),
        json_case(
            "decrypt, unknown format",
            "/v1/keys/sym/decrypt",
            &with_ciphertext(&other_format),
            400,
            "ciphertext_malformed",
            "format 9",
        ),
        json_case(
            "decrypt, a version the key never had",
            "/v1/keys/sym/decrypt",
            &with_ciphertext(&version_9),
            400,
            "decryption_failed",
            "version 9",
        ),
        json_case(
            "decrypt under another key",
            "/v1/keys/mac/decrypt",
            &with_ciphertext(&ciphertext),
            400,
            "unsupported_operation",
            "does not decrypt",
        ),
        json_case(
            "rewrap, truncated",
            "/v1/keys/sym/rewrap",
            &with_ciphertext(&ciphertext[..ciphertext.len() - 1]),
            400,
            "decryption_failed",
            "does not decrypt",
        ),
        json_case("datakey without spec", "/v1/keys/sym/datakey", "{}", 400, "invalid_field", "spec"),
        json_case(
            "datakey, unknown spec",
            "/v1/keys/sym/datakey",
            r#"{"spec":"aes-128"}"#,
            400,
            "invalid_spec",
            "aes-256",
        ),
        json_case(
            "datakey with an hmac key",
            "/v1/keys/mac/datakey",
            r#"{"spec":"aes-256"}"#,
            400,
            "unsupported_operation",
            "does not encrypt",
        ),
        json_case(
            "hmac, not base64",
            "/v1/keys/mac/hmac",
            r#"{"message_b64":"?"}"#,
            400,
            "invalid_base64",
            "message_b64",
        ),
        json_case(
            "hmac with an aes key",
            "/v1/keys/sym/hmac",
            r#"{"message_b64":""}"#,
            400,
            "unsupported_operation",
            "MACs",
        ),
        json_case(
            "verify-hmac without a mac",
            "/v1/keys/mac/verify-hmac",
            r#"{"message_b64":""}"#,
            400,
            "invalid_field",
            "mac_b64",
        ),
        json_case(
            "verify-hmac, a missing version",
            "/v1/keys/mac/verify-hmac",
            r#"{"message_b64":"","mac_b64":"","version":7}"#,
            404,
            "version_not_found",
            "version 7",
        ),
        json_case("configure with the API token", "/v1/keys/sym/config", "{}", 401, "unauthorized", "invalid"),
        admin(json_case(
            "configure, minimum 0",
            "/v1/keys/sym/config",
            r#"{"min_decryption_version":0}"#,
            400,
            "invalid_min_decryption_version",
            "1 to 1",
        )),
        admin(json_case(
            "configure, minimum above the latest",
            "/v1/keys/sym/config",
            r#"{"min_decryption_version":2}"#,
            400,
            "invalid_min_decryption_version",
            "1 to 1",
        )),
        admin(json_case(
            "configure, unknown setting",
            "/v1/keys/sym/config",
            r#"{"exportable":true}"#,
            400,
            "invalid_field",
            "unknown field",
        )),
        json_case("random, zero bytes", "/v1/random", r#"{"bytes":0}"#, 400, "invalid_length", "1 to 1024"),
        json_case("random, too many", "/v1/random", r#"{"bytes":4096}"#, 400, "invalid_length", "1 to 1024"),
        json_case("random, negative", "/v1/random", r#"{"bytes":-1}"#, 400, "invalid_field", "bytes"),
        json_case(
            "random, unknown source",
            "/v1/random",
            r#"{"bytes":8,"source":"dice"}"#,
            400,
            "invalid_source",
            "nsm or kms",
        ),
        Case {
            auth: Auth::None,
            ..json_case("random without a token", "/v1/random", r#"{"bytes":8}"#, 401, "unauthorized", "Authorization")
        },
    ];
    run_cases(&stack, &cases).await;

    // Nothing changed, and the key still decrypts what it encrypted.
    let after = stack.client.list_keys(None, None).await.expect("list");
    assert_eq!(after.keys, before.keys, "no key was made or changed by bad input");
    let decrypted = stack
        .client
        .decrypt("sym", &Decrypt { ciphertext_b64: sealed.ciphertext_b64, associated_data_b64: None })
        .await
        .expect("decrypt");
    assert_eq!(STANDARD.decode(decrypted.plaintext_b64).expect("base64"), b"secret");
}
