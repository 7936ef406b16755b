//! Bad input on every route of both seed front doors (ProgressDB's KMS, BitGo's key
//! provider): each gets a 4xx in the door's own error shape with keyward's code, never a 5xx or
//! a dropped connection; the keys stored before are untouched and both doors keep serving.

use keyward_e2e::{Stack, StackOptions, free_port};
use serde_json::json;

/// One bad request and the code it must get.
struct Bad {
    method: &'static str,
    path: &'static str,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn bad(method: &'static str, path: &'static str, body: &str, status: u16, code: &'static str) -> Bad {
    Bad { method, path, body: body.as_bytes().to_vec(), status, code }
}

async fn send(client: &reqwest::Client, base: &str, case: &Bad) -> (u16, Option<String>, String, Option<String>) {
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
    let response = client
        .request(method, format!("{base}{}", case.path))
        .header("content-type", "application/json")
        .body(case.body.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{} {}: no answer: {e}", case.method, case.path));
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (code, content_type) = (header("x-keyward-error-code"), header("content-type"));
    (status, code, response.text().await.unwrap(), content_type)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_front_door_route_answers_bad_input_with_its_own_4xx_and_keeps_serving() {
    let (pdb_port, bitgo_port) = (free_port(), free_port());
    let options = StackOptions {
        extra_config: format!(
            "progressdb:\n  listen: 127.0.0.1:{pdb_port}\nbitgo:\n  listen: 127.0.0.1:{bitgo_port}\n  reveal_prv_sources: [user]\n"
        ),
        ..StackOptions::default()
    };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    // No pooled connections: a server that answers 413 before reading a body closes that
    // connection, which a pooled client would try to use for the next request.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let (pdb, bitgo) = (format!("http://127.0.0.1:{pdb_port}"), format!("http://127.0.0.1:{bitgo_port}"));

    // Keys stored first, to check nothing below touches them.
    let dek = client.post(format!("{pdb}/deks")).body(r#"{"key_id":"t/1"}"#).send().await.unwrap();
    assert_eq!(dek.status(), 201);
    let stored =
        json!({"prv": "xprv-original", "pub": "xpub-1", "coin": "tbtc", "source": "user", "type": "independent"});
    assert_eq!(client.post(format!("{bitgo}/key")).json(&stored).send().await.unwrap().status(), 200);
    let keys_before = stack.client.list_keys(None, Some(1000)).await.unwrap().keys;

    let huge = format!(r#"{{"key_id":"t/1","plaintext":"{}"}}"#, "A".repeat(3 * 1024 * 1024));
    let pdb_cases = vec![
        bad("POST", "/deks", "{", 400, "invalid_json"),
        bad("POST", "/deks", r#"{"key_id": 5}"#, 400, "invalid_json"),
        bad("POST", "/deks", r#"{"key_id": "t/1"}"#, 409, "key_exists"),
        bad("POST", "/deks", r#"{"key_id": "../etc"}"#, 400, "invalid_key_id"),
        bad("POST", "/encrypt", "[]", 400, "invalid_json"),
        bad("POST", "/encrypt", r#"{"key_id": "t/1", "plaintext": 7}"#, 400, "invalid_json"),
        bad("POST", "/encrypt", r#"{"key_id": "t/1", "plaintext": "***"}"#, 400, "invalid_base64"),
        bad(
            "POST",
            "/encrypt",
            r#"{"key_id": "t/1", "plaintext": "aGk=", "associated_data": "%"}"#,
            400,
            "invalid_base64",
        ),
        Bad { method: "POST", path: "/encrypt", body: huge.into_bytes(), status: 413, code: "payload_too_large" },
        bad("POST", "/decrypt", r#"{"key_id": "t/1"}"#, 400, "invalid_json"),
        bad("POST", "/decrypt", r#"{"key_id": "t/1", "ciphertext": "AAAA"}"#, 400, "ciphertext_malformed"),
        bad("POST", "/decrypt", r#"{"key_id": "", "ciphertext": "AAAA"}"#, 400, "invalid_key_id"),
        bad("POST", "/create_dek_for_thread", "null", 400, "invalid_json"),
        bad("POST", "/create_dek_for_thread", r#"{"thread_id": "a b"}"#, 400, "invalid_thread_id"),
        bad("GET", "/get_wrapped?key_id=a%20b", "", 400, "invalid_key_id"),
        bad("POST", "/rewrap", r#"{"key_id": "t/1", "new_kek_hex": "zz"}"#, 400, "kek_not_accepted"),
        bad("POST", "/rewrap", r#"{"key_id": "t/404"}"#, 404, "key_not_found"),
        bad("DELETE", "/deks", "", 405, "method_not_allowed"),
    ];
    for case in &pdb_cases {
        let (status, code, text, content_type) = send(&client, &pdb, case).await;
        let what = format!(
            "ProgressDB {} {} {:?}",
            case.method,
            case.path,
            String::from_utf8_lossy(&case.body[..case.body.len().min(60)])
        );
        assert_eq!((status, code.as_deref()), (case.status, Some(case.code)), "{what}: {text}");
        assert!(content_type.is_some_and(|t| t.starts_with("text/plain")), "{what}: plain text, as ProgressDB's KMS");
        assert!(text.ends_with('\n') && !text.trim().is_empty(), "{what}: a line of text");
    }

    let bitgo_cases = vec![
        bad("POST", "/key", "{", 400, "invalid_json"),
        bad(
            "POST",
            "/key",
            r#"{"prv": 1, "pub": "x", "coin": "c", "source": "user", "type": "tss"}"#,
            400,
            "invalid_json",
        ),
        bad(
            "POST",
            "/key",
            r#"{"prv": "p", "pub": "x", "coin": "c", "source": "root", "type": "tss"}"#,
            400,
            "invalid_source",
        ),
        bad("POST", "/key", &stored.to_string(), 409, "key_exists"),
        bad("GET", "/key/xpub-1?source=nobody", "", 400, "invalid_source"),
        bad("POST", "/key/generate", r#"{"coin": "tbtc", "source": "user"}"#, 400, "invalid_field"),
        bad(
            "POST",
            "/sign",
            r#"{"pub": "xpub-1", "source": "user", "signablePayload": "0x00"}"#,
            400,
            "unsupported_algorithm",
        ),
        bad(
            "POST",
            "/sign",
            r#"{"pub": "xpub-1", "source": "user", "signablePayload": "0x00", "algorithm": "ecdsa"}"#,
            400,
            "not_a_generated_key",
        ),
        bad("POST", "/generateDataKey", "{}", 400, "invalid_field"),
        bad("POST", "/generateDataKey", r#"{"keyType": ["AES-256"]}"#, 400, "invalid_json"),
        bad("POST", "/decryptDataKey", r#"{"encryptedKey": "1,2,3"}"#, 400, "ciphertext_malformed"),
        bad("POST", "/decryptDataKey", r#"{"encryptedKey": "x"}"#, 400, "invalid_encrypted_key"),
        Bad { method: "POST", path: "/key", body: vec![b'{'; 2 * 1024 * 1024], status: 413, code: "payload_too_large" },
        bad("PUT", "/key", "{}", 405, "method_not_allowed"),
    ];
    for case in &bitgo_cases {
        let (status, code, text, _) = send(&client, &bitgo, case).await;
        let what = format!(
            "BitGo {} {} {:?}",
            case.method,
            case.path,
            String::from_utf8_lossy(&case.body[..case.body.len().min(60)])
        );
        assert_eq!((status, code.as_deref()), (case.status, Some(case.code)), "{what}: {text}");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()) && body.as_object().unwrap().len() == 1,
            "{what}: {body}"
        );
    }

    // Nothing stored changed, and both doors still serve what they stored.
    let keys_after = stack.client.list_keys(None, Some(1000)).await.unwrap().keys;
    assert_eq!(format!("{keys_after:?}"), format!("{keys_before:?}"), "bad input created, rotated or removed no key");
    let fetched: serde_json::Value =
        client.get(format!("{bitgo}/key/xpub-1?source=user")).send().await.unwrap().json().await.unwrap();
    assert_eq!(fetched["prv"], "xprv-original");
    let encrypted =
        client.post(format!("{pdb}/encrypt")).body(r#"{"key_id":"t/1","plaintext":"aGk="}"#).send().await.unwrap();
    assert_eq!(encrypted.status(), 200);
}
