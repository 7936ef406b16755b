//! Tampered keyring rows: each column of a key version bit-flipped, truncated or replaced,
//! versions and keys swapped between names, a key's type, exportability and origin changed in
//! the database, and the keyring root's row altered. Each case is refused with its own code
//! (by the enclave when the AAD no longer matches, by the gateway when a column is not even
//! well-formed), no tampered row is signed with, exported, repaired or replaced, and the key
//! signs again once the row is restored. On SQLite and on PostgreSQL.

use keyward_client::{
    ClientError,
    keys::{ExportKey, SignWithKey},
};
use keyward_e2e::{Cell, Engine, Stack};

keyward_e2e::on_each_engine!(
    every_tampered_key_row_is_refused_with_its_code_and_left_as_it_is,
    a_tampered_keyring_root_is_refused_left_as_it_is_and_never_replaced,
);

/// Every row of the keyring's tables, in a stable order.
fn snapshot(stack: &Stack) -> Vec<Vec<Cell>> {
    [
        "SELECT * FROM keyring_root",
        "SELECT * FROM keys ORDER BY name",
        "SELECT * FROM key_versions ORDER BY name, version",
    ]
    .into_iter()
    .flat_map(|query| stack.query(query, &[]))
    .collect()
}

fn blob(stack: &Stack, query: &str) -> Vec<u8> {
    match stack.query(query, &[]).first().and_then(|row| row.first()) {
        Some(Cell::Blob(bytes)) => bytes.clone(),
        other => panic!("{query}: expected bytes, got {other:?}"),
    }
}

fn flipped(mut bytes: Vec<u8>, index: usize) -> Vec<u8> {
    bytes[index] ^= 0x04;
    bytes
}

async fn sign(stack: &Stack, name: &str, version: u32) -> Result<(), ClientError> {
    let request =
        SignWithKey { digest_hex: Some(hex::encode([7u8; 32])), version: Some(version), ..SignWithKey::default() };
    stack.client.sign_with_key(name, &request).await.map(|_| ())
}

fn code_of(result: Result<(), ClientError>) -> String {
    match result {
        Err(ClientError::Api { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A change to the database.
type Tamper = Box<dyn Fn(&Stack)>;

/// A change to the key rows, and the code that refuses it.
struct Case {
    what: &'static str,
    tamper: Tamper,
    code: &'static str,
}

fn set_version(column: &'static str, name: &'static str, version: i64, value: Vec<u8>) -> Tamper {
    Box::new(move |stack: &Stack| {
        let params = [Cell::Blob(value.clone()), Cell::Text(name.into()), Cell::Int(version)];
        stack.execute(&format!("UPDATE key_versions SET {column} = ?1 WHERE name = ?2 AND version = ?3"), &params);
    })
}

fn set_key(column: &'static str, name: &'static str, value: Cell) -> Tamper {
    Box::new(move |stack: &Stack| {
        stack.execute(
            &format!("UPDATE keys SET {column} = ?1 WHERE name = ?2"),
            &[value.clone(), Cell::Text(name.into())],
        );
    })
}

async fn every_tampered_key_row_is_refused_with_its_code_and_left_as_it_is(engine: Engine) {
    let db = engine.start();
    let mut stack = Stack::start(db.options()).await;
    stack.wait_keyring().await;
    let admin = stack.admin_client();
    admin.create_key("a", "secp256k1", false).await.expect("create a");
    admin.rotate_key("a").await.expect("rotate a");
    admin.create_key("b", "secp256k1", false).await.expect("create b");
    let a1 =
        |column: &str| blob(&stack, &format!("SELECT {column} FROM key_versions WHERE name = 'a' AND version = 1"));
    let (wrapped, public_key, root_id) = (a1("wrapped"), a1("public_key"), a1("root_id"));
    let a2_wrapped = blob(&stack, "SELECT wrapped FROM key_versions WHERE name = 'a' AND version = 2");
    let b_wrapped = blob(&stack, "SELECT wrapped FROM key_versions WHERE name = 'b'");
    let b_public = blob(&stack, "SELECT public_key FROM key_versions WHERE name = 'b'");
    let swap_b_into_a = {
        let (w, p) = (b_wrapped.clone(), b_public.clone());
        Box::new(move |stack: &Stack| {
            set_version("wrapped", "a", 1, w.clone())(stack);
            set_version("public_key", "a", 1, p.clone())(stack);
        }) as Tamper
    };
    let cases = vec![
        Case {
            what: "wrapped, one bit",
            tamper: set_version("wrapped", "a", 1, flipped(wrapped.clone(), 30)),
            code: "key_row_does_not_open",
        },
        Case {
            what: "wrapped, truncated",
            tamper: set_version("wrapped", "a", 1, wrapped[..wrapped.len() - 1].to_vec()),
            code: "key_row_damaged",
        },
        Case {
            what: "public key, one bit",
            tamper: set_version("public_key", "a", 1, flipped(public_key.clone(), 10)),
            code: "key_row_does_not_open",
        },
        Case {
            what: "public key, another key's",
            tamper: set_version("public_key", "a", 1, b_public.clone()),
            code: "key_row_does_not_open",
        },
        Case {
            what: "root id, another root's",
            tamper: set_version("root_id", "a", 1, flipped(root_id.clone(), 0)),
            code: "wrong_keyring_root",
        },
        Case {
            what: "root id, truncated",
            tamper: set_version("root_id", "a", 1, root_id[..8].to_vec()),
            code: "key_row_damaged",
        },
        Case {
            what: "version 2's blob in version 1",
            tamper: set_version("wrapped", "a", 1, a2_wrapped.clone()),
            code: "key_row_does_not_open",
        },
        Case { what: "key b's version under key a", tamper: swap_b_into_a, code: "key_row_does_not_open" },
        Case {
            what: "type changed to another signing type",
            tamper: set_key("key_type", "a", Cell::Text("p256".into())),
            code: "key_row_does_not_open",
        },
        Case {
            what: "type that is no type",
            tamper: set_key("key_type", "a", Cell::Text("rsa-512".into())),
            code: "key_row_damaged",
        },
        Case {
            what: "made exportable",
            tamper: set_key("exportable", "a", Cell::Bool(true)),
            code: "key_row_does_not_open",
        },
        Case {
            what: "origin changed",
            tamper: set_key("origin", "a", Cell::Text("imported".into())),
            code: "key_row_does_not_open",
        },
        Case {
            what: "origin that is no origin",
            tamper: set_key("origin", "a", Cell::Text("found".into())),
            code: "key_row_damaged",
        },
    ];
    let original = snapshot(&stack);
    for case in cases {
        (case.tamper)(&stack);
        let tampered = snapshot(&stack);
        assert_ne!(tampered, original, "{}: the case changed nothing", case.what);
        assert_eq!(code_of(sign(&stack, "a", 1).await), case.code, "{}", case.what);
        // Twice: a refusal is not cached as success, nor a success from before served.
        assert_eq!(code_of(sign(&stack, "a", 1).await), case.code, "{}: again", case.what);
        if case.what == "made exportable" {
            // A database edit does not make a key leave the enclave.
            let export = ExportKey { public_key_hex: hex::encode([9u8; 32]), version: Some(1) };
            let err = admin.export_key("a", &export).await.expect_err("not exported");
            assert!(matches!(&err, ClientError::Api { code, .. } if code == case.code), "{}: {err}", case.what);
        }
        assert_eq!(snapshot(&stack), tampered, "{}: the tampered rows are left exactly as they are", case.what);
        // The other keys are unaffected.
        sign(&stack, "b", 1).await.unwrap_or_else(|e| panic!("{}: b signs: {e}", case.what));
        // Restored, the key signs again.
        stack.execute("DELETE FROM key_versions", &[]);
        stack.execute("DELETE FROM keys", &[]);
        restore(&stack, &original);
        assert_eq!(snapshot(&stack), original, "{}: restored", case.what);
        sign(&stack, "a", 1).await.unwrap_or_else(|e| panic!("{}: restored a signs: {e}", case.what));
    }
}

/// Writes back the `keys` and `key_versions` rows of `snapshot` (the root row is untouched).
fn restore(stack: &Stack, snapshot: &[Vec<Cell>]) {
    for row in snapshot {
        let statement = match row.len() {
            6 if matches!(row[0], Cell::Int(1)) => continue, // keyring_root (slot = 1)
            10 => "INSERT INTO keys VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            6 => "INSERT INTO key_versions VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            n => panic!("a row of {n} columns"),
        };
        stack.execute(statement, row);
    }
}

/// Restarts the enclave and the gateway.
async fn restart(stack: &mut Stack) {
    stack.kill_gateway();
    stack.kill_enclave(1).await;
    stack.start_enclave(1);
    stack.start_gateway();
}

/// Restarts the enclave and the gateway; returns the keyring's code once it failed to come up.
async fn restart_keyring_failed(stack: &mut Stack) -> String {
    restart(stack).await;
    let health = stack.wait_health("the keyring refused", |_, h| h.enclaves[0].keyring.state == "failed").await;
    health.enclaves[0].keyring.code.clone().unwrap_or_default()
}

async fn a_tampered_keyring_root_is_refused_left_as_it_is_and_never_replaced(engine: Engine) {
    let db = engine.start();
    let mut stack = Stack::start(db.options()).await;
    stack.wait_keyring().await;
    stack.admin_client().create_key("a", "secp256k1", false).await.expect("create");
    sign(&stack, "a", 1).await.expect("signs");
    let root = |column: &str| blob(&stack, &format!("SELECT {column} FROM keyring_root"));
    let (sealed, dek, root_id) = (root("sealed_root"), root("kms_encrypted_dek"), root("root_id"));
    let epoch: i64 = stack.count("SELECT root_epoch FROM keyring_root");
    let set = |column: &'static str, value: Cell| {
        move |stack: &Stack| {
            stack.execute(&format!("UPDATE keyring_root SET {column} = ?1"), std::slice::from_ref(&value));
        }
    };
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "sealed root, one bit",
            Box::new(set("sealed_root", Cell::Blob(flipped(sealed.clone(), 20)))),
            "root_does_not_open",
        ),
        (
            "sealed root, truncated",
            Box::new(set("sealed_root", Cell::Blob(sealed[..40].to_vec()))),
            "root_does_not_open",
        ),
        (
            "KMS ciphertext, one bit",
            Box::new(set("kms_encrypted_dek", Cell::Blob(flipped(dek.clone(), 40)))),
            "kms_invalid_ciphertext",
        ),
        (
            "root id (in the KMS context)",
            Box::new(set("root_id", Cell::Blob(flipped(root_id.clone(), 3)))),
            "kms_invalid_ciphertext",
        ),
        ("root id, truncated", Box::new(set("root_id", Cell::Blob(root_id[..15].to_vec()))), "root_row_damaged"),
        ("epoch (in the KMS context)", Box::new(set("root_epoch", Cell::Int(epoch + 1))), "kms_invalid_ciphertext"),
    ];
    let original = snapshot(&stack);
    for (what, tamper, code) in cases {
        tamper(&stack);
        let tampered = snapshot(&stack);
        assert_ne!(tampered, original, "{what}: the case changed nothing");
        assert_eq!(restart_keyring_failed(&mut stack).await, code, "{what}");
        let err = sign(&stack, "a", 1).await.expect_err("nothing signs");
        assert!(
            matches!(&err, ClientError::Api { status: 503, code, .. } if code == "keyring_not_ready"),
            "{what}: {err}"
        );
        let err = stack.admin_client().create_key("new", "secp256k1", false).await.expect_err("no key is made");
        assert!(matches!(&err, ClientError::Api { code, .. } if code == "keyring_not_ready"), "{what}: {err}");
        assert_eq!(snapshot(&stack), tampered, "{what}: left exactly as it is, no root made in its place");
        stack.execute("DELETE FROM keyring_root", &[]);
        stack.execute("INSERT INTO keyring_root VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &original[0]);
        restart(&mut stack).await;
        stack.wait_keyring().await;
        sign(&stack, "a", 1).await.unwrap_or_else(|e| panic!("{what}: restored, a signs: {e}"));
    }
}
