//! Bad input on every keyring endpoint: each gets a 4xx JSON answer with its own code, no key
//! is made or changed, and the gateway keeps serving. On SQLite and on PostgreSQL.

use keyward_client::keys::SignWithKey;
use keyward_e2e::{Engine, Stack};

keyward_e2e::on_each_engine!(every_keyring_endpoint_answers_bad_input_with_its_code_and_keeps_serving);

use crate::http_cases::{Auth, Case, get_case, json_case, method_case, run_cases};

fn admin(case: Case) -> Case {
    Case { auth: Auth::Admin, ..case }
}

async fn every_keyring_endpoint_answers_bad_input_with_its_code_and_keeps_serving(engine: Engine) {
    let db = engine.start();
    let mut stack = Stack::start(db.options()).await;
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    let admin_client = stack.admin_client();
    admin_client.create_key("k", "secp256k1", false).await.expect("create k");
    admin_client.create_key("ed", "ed25519", true).await.expect("create ed");
    admin_client.create_key("sym", "aes256-gcm", false).await.expect("create sym");
    let before = stack.client.list_keys(None, None).await.expect("list");

    let digest = "ab".repeat(32);
    let sign = |extra: &str| format!(r#"{{"digest_hex":"{digest}"{extra}}}"#);
    let many_keys = format!(
        r#"{{"keys":[{}]}}"#,
        (0..1001).map(|i| format!(r#"{{"name":"n{i}","type":"ed25519"}}"#)).collect::<Vec<_>>().join(",")
    );
    let many_items = format!(r#"{{"items":[{}]}}"#, vec![sign(""); 1001].join(","));
    let long_name = "n".repeat(129);
    let huge_message = format!(r#"{{"message_b64":"{}"}}"#, "A".repeat(90_000));
    let import = |extra: &str| {
        format!(
            r#"{{"type":"secp256k1","transfer_public_key_hex":"{}","encapsulated_key_b64":"{}","ciphertext_b64":"{}"{extra}}}"#,
            "11".repeat(32),
            "A".repeat(43) + "=",
            "A".repeat(64)
        )
    };
    let cases = vec![
        // Create.
        Case {
            auth: Auth::None,
            ..json_case("create without a token", "/v1/keys", "{}", 401, "unauthorized", "Authorization")
        },
        json_case(
            "create with the API token",
            "/v1/keys",
            r#"{"name":"x","type":"ed25519"}"#,
            401,
            "unauthorized",
            "invalid",
        ),
        admin(json_case("create, not JSON", "/v1/keys", "{name", 400, "invalid_json", "key must be a string")),
        admin(json_case("create without a type", "/v1/keys", r#"{"name":"x"}"#, 400, "invalid_field", "type")),
        admin(json_case(
            "create with an unknown field",
            "/v1/keys",
            r#"{"name":"x","type":"ed25519","admin":true}"#,
            400,
            "invalid_field",
            "unknown field",
        )),
        admin(json_case(
            "create, unknown type",
            "/v1/keys",
            r#"{"name":"x","type":"rsa"}"#,
            400,
            "invalid_key_type",
            "secp256k1, ed25519",
        )),
        admin(json_case(
            "create, a space in the name",
            "/v1/keys",
            r#"{"name":"a b","type":"ed25519"}"#,
            400,
            "invalid_key_name",
            "A-Z a-z 0-9 . _ -",
        )),
        admin(json_case(
            "create, a 129-character name",
            "/v1/keys",
            &format!(r#"{{"name":"{long_name}","type":"ed25519"}}"#),
            400,
            "invalid_key_name",
            "at most 128",
        )),
        admin(json_case(
            "create, a name that is a URL path segment",
            "/v1/keys",
            r#"{"name":"..","type":"ed25519"}"#,
            400,
            "invalid_key_name",
            "must not start with '.'",
        )),
        admin(json_case(
            "create, empty name",
            "/v1/keys",
            r#"{"name":"","type":"ed25519"}"#,
            400,
            "invalid_key_name",
            "empty",
        )),
        admin(json_case("create, name taken", "/v1/keys", r#"{"name":"k","type":"ed25519"}"#, 409, "key_exists", "k")),
        // Batch.
        admin(json_case("empty batch", "/v1/keys/batch", r#"{"keys":[]}"#, 400, "invalid_batch_size", "1 to 1000")),
        admin(json_case("1,001 keys", "/v1/keys/batch", &many_keys, 400, "invalid_batch_size", "1 to 1000")),
        admin(json_case(
            "a name twice in a batch",
            "/v1/keys/batch",
            r#"{"keys":[{"name":"d","type":"p256"},{"name":"d","type":"p256"}]}"#,
            400,
            "duplicate_key_name",
            "appears twice",
        )),
        admin(json_case(
            "one bad item in a batch",
            "/v1/keys/batch",
            r#"{"keys":[{"name":"fine","type":"p256"},{"name":"bad","type":"dsa"}]}"#,
            400,
            "invalid_key_type",
            "keys[1]",
        )),
        admin(json_case(
            "a taken name in a batch",
            "/v1/keys/batch",
            r#"{"keys":[{"name":"fine","type":"p256"},{"name":"k","type":"p256"}]}"#,
            409,
            "key_exists",
            "k",
        )),
        // List and show.
        Case { auth: Auth::Api, ..get_case("limit 0", "/v1/keys?limit=0", 400, "invalid_limit", "1 to 1000") },
        Case { auth: Auth::Api, ..get_case("limit 1001", "/v1/keys?limit=1001", 400, "invalid_limit", "1 to 1000") },
        Case { auth: Auth::Api, ..get_case("limit not a number", "/v1/keys?limit=ten", 400, "invalid_query", "limit") },
        Case {
            auth: Auth::Api,
            ..get_case("after, bad name", "/v1/keys?after=a%20b", 400, "invalid_key_name", "character 1")
        },
        Case {
            auth: Auth::Api,
            ..get_case("public key not hex", "/v1/keys?public_key_hex=zz", 400, "invalid_public_key", "hex")
        },
        Case {
            auth: Auth::Api,
            ..get_case("unknown query", "/v1/keys?owner=me", 400, "invalid_query", "unknown field")
        },
        get_case("list without a token", "/v1/keys", 401, "unauthorized", "Authorization"),
        Case { auth: Auth::Api, ..get_case("no such key", "/v1/keys/nope", 404, "key_not_found", "nope") },
        Case {
            auth: Auth::Api,
            ..get_case("show, bad name", "/v1/keys/a%20b", 400, "invalid_key_name", "character 1")
        },
        // State changes.
        admin(json_case("rotate a missing key", "/v1/keys/nope/rotate", "", 404, "key_not_found", "nope")),
        admin(json_case("enable an enabled key", "/v1/keys/k/enable", "", 409, "invalid_key_state", "is enabled")),
        admin(json_case(
            "cancel a deletion never made",
            "/v1/keys/k/cancel-deletion",
            "",
            409,
            "invalid_key_state",
            "pending_deletion",
        )),
        json_case("disable with the API token", "/v1/keys/k/disable", "", 401, "unauthorized", "invalid"),
        method_case("delete with the API token", "DELETE", "/v1/keys/k", Auth::Api, 401, "unauthorized", "invalid"),
        method_case("delete a missing key", "DELETE", "/v1/keys/nope", Auth::Admin, 404, "key_not_found", "nope"),
        // Sign.
        Case {
            auth: Auth::None,
            ..json_case("sign without a token", "/v1/keys/k/sign", &sign(""), 401, "unauthorized", "Authorization")
        },
        json_case("sign, not JSON", "/v1/keys/k/sign", "{", 400, "invalid_json", "EOF"),
        json_case("sign, bad digest", "/v1/keys/k/sign", r#"{"digest_hex":"abcd"}"#, 400, "invalid_digest", "64 hex"),
        json_case(
            "sign, digest and message",
            "/v1/keys/k/sign",
            &sign(r#","message_b64":"aA==""#),
            400,
            "invalid_payload",
            "not both",
        ),
        json_case("sign, nothing to sign", "/v1/keys/k/sign", "{}", 400, "invalid_payload", "digest_hex"),
        json_case(
            "sign, hash with a digest",
            "/v1/keys/k/sign",
            &sign(r#","hash":"sha256""#),
            400,
            "invalid_payload",
            "hash goes with",
        ),
        json_case(
            "sign, unknown algorithm",
            "/v1/keys/k/sign",
            &sign(r#","algorithm":"rsa""#),
            400,
            "unknown_algorithm",
            "ecdsa, bip340",
        ),
        json_case(
            "sign, unknown format",
            "/v1/keys/k/sign",
            &sign(r#","format":"pem""#),
            400,
            "unknown_format",
            "compact, der",
        ),
        json_case(
            "sign, unknown hash",
            "/v1/keys/k/sign",
            r#"{"message_b64":"aA==","hash":"md5"}"#,
            400,
            "unknown_hash",
            "sha256, keccak256",
        ),
        json_case(
            "sign, message not base64",
            "/v1/keys/k/sign",
            r#"{"message_b64":"***"}"#,
            400,
            "invalid_message",
            "base64",
        ),
        json_case("sign, message too large", "/v1/keys/ed/sign", &huge_message, 400, "message_too_large", "65536"),
        json_case(
            "bip340 in DER",
            "/v1/keys/k/sign",
            &sign(r#","algorithm":"bip340","format":"der""#),
            400,
            "unsupported_scheme",
            "bip340",
        ),
        json_case("ed25519 over a digest", "/v1/keys/ed/sign", &sign(""), 400, "invalid_payload", "message itself"),
        json_case(
            "ed25519 with ecdsa",
            "/v1/keys/ed/sign",
            r#"{"message_b64":"aA==","algorithm":"ecdsa"}"#,
            400,
            "unsupported_scheme",
            "ecdsa",
        ),
        json_case(
            "unhashed short message",
            "/v1/keys/k/sign",
            r#"{"message_b64":"aA==","hash":"none"}"#,
            400,
            "invalid_payload",
            "32 bytes",
        ),
        json_case(
            "sign with a symmetric key",
            "/v1/keys/sym/sign",
            &sign(""),
            400,
            "not_a_signing_key",
            "does not sign",
        ),
        json_case(
            "sign, missing version",
            "/v1/keys/k/sign",
            &sign(r#","version":7"#),
            404,
            "version_not_found",
            "version 7",
        ),
        json_case(
            "sign, version 0",
            "/v1/keys/k/sign",
            &sign(r#","version":0"#),
            404,
            "version_not_found",
            "version 0",
        ),
        json_case("sign, missing key", "/v1/keys/nope/sign", &sign(""), 404, "key_not_found", "nope"),
        // Sign-batch and verify.
        json_case(
            "empty sign batch",
            "/v1/keys/k/sign-batch",
            r#"{"items":[]}"#,
            400,
            "invalid_batch_size",
            "1 to 1000",
        ),
        json_case("1,001 items", "/v1/keys/k/sign-batch", &many_items, 400, "invalid_batch_size", "1 to 1000"),
        json_case(
            "one bad item",
            "/v1/keys/k/sign-batch",
            &format!(r#"{{"items":[{},{{"digest_hex":"xx"}}]}}"#, sign("")),
            400,
            "invalid_digest",
            "items[1]",
        ),
        json_case("verify without a signature", "/v1/keys/k/verify", &sign(""), 400, "invalid_field", "signature_hex"),
        json_case(
            "verify, signature not hex",
            "/v1/keys/k/verify",
            &sign(r#","signature_hex":"zz""#),
            400,
            "invalid_signature",
            "hex",
        ),
        // Import and export.
        json_case("import with the API token", "/v1/keys/new/import", &import(""), 401, "unauthorized", "invalid"),
        admin(json_case(
            "import, unknown type",
            "/v1/keys/new/import",
            &import("").replace("secp256k1", "rsa"),
            400,
            "invalid_key_type",
            "secp256k1",
        )),
        admin(json_case(
            "import, short transfer key",
            "/v1/keys/new/import",
            &import("").replace(&"11".repeat(32), "11"),
            400,
            "invalid_public_key",
            "64 hex",
        )),
        admin(json_case(
            "import, short ciphertext",
            "/v1/keys/new/import",
            &import("").replace(&"A".repeat(64), "AAAA"),
            400,
            "invalid_sealed_key",
            "48 bytes",
        )),
        admin(json_case("import, name taken", "/v1/keys/k/import", &import(""), 409, "key_exists", "k")),
        admin(json_case(
            "import to an unknown transfer key",
            "/v1/keys/new/import",
            &import(""),
            409,
            "unknown_transfer_key",
            "attestation",
        )),
        admin(json_case(
            "export, bad public key",
            "/v1/keys/ed/export",
            r#"{"public_key_hex":"xyz"}"#,
            400,
            "invalid_public_key",
            "64 hex",
        )),
        admin(json_case(
            "export a key not exportable",
            "/v1/keys/k/export",
            &format!(r#"{{"public_key_hex":"{}"}}"#, "22".repeat(32)),
            409,
            "key_not_exportable",
            "never leaves",
        )),
        admin(json_case(
            "export a missing version",
            "/v1/keys/ed/export",
            &format!(r#"{{"public_key_hex":"{}","version":3}}"#, "22".repeat(32)),
            404,
            "version_not_found",
            "version 3",
        )),
        // The keyring root.
        json_case("root rotation with the API token", "/v1/admin/keyring/rotate", "", 401, "unauthorized", "invalid"),
    ];
    keyward_client::install_crypto_provider();
    run_cases(&stack, &cases).await;

    // Nothing was made or changed, and every key still works.
    let after = stack.client.list_keys(None, None).await.expect("list");
    assert_eq!(after.keys, before.keys, "no key was made, changed or removed by bad input");
    let signed = stack
        .client
        .sign_with_key("k", &SignWithKey { digest_hex: Some(digest.clone()), ..SignWithKey::default() })
        .await
        .expect("k still signs");
    let key = &after.keys.iter().find(|k| k.name == "k").expect("k").versions[0];
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(&digest, &mut bytes).expect("hex");
    keyward_e2e::assert_recovers(
        &bytes,
        &signed.signature_hex,
        signed.recovery_id.expect("recovery id"),
        key.public_key_hex.as_deref().expect("public key"),
    );
}
