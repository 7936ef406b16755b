//! The gateway's two bring-up refusals, with real processes: an enclave that already signs
//! with a committed key while the database lost its row (provisioning another key would
//! replace a key that may hold money), and an enclave that holds a different key than its
//! row. Neither writes anything; restoring the database brings the enclave back.

use keyward_e2e::{Stack, StackOptions, assert_signs, event};
use keyward_store::MasterKeyRow;

fn insert(stack: &Stack, row: &MasterKeyRow) {
    stack.sql(
        "INSERT INTO enclave_master_keys (enclave_id, kms_encrypted_dek, encrypted_private_key, public_key, kms_key_id, key_epoch) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        rusqlite::params![
            row.enclave_id,
            row.kms_encrypted_dek,
            row.encrypted_private_key,
            row.public_key,
            row.kms_key_id,
            row.key_epoch
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_with_a_committed_key_and_no_row_is_refused_and_nothing_is_provisioned() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let row = stack.row(1).expect("row");
    stack.kill_gateway();
    stack.sql("DELETE FROM enclave_master_keys WHERE enclave_id = 1", []);
    stack.start_gateway();
    let health = stack.wait_health("refused", |_, h| h.enclaves[0].state == "failed").await;
    assert_eq!(health.enclaves[0].code.as_deref(), Some("database_lost_its_row"));
    assert_eq!(stack.row_count(), 0, "no row was written");
    let enclave = stack.enclaves.get(&1).expect("enclave");
    assert_eq!(enclave.events(event::KEY_PROVISIONED).len(), 1, "only the first start provisioned");

    // The database restored from a backup: the enclave, which never stopped, is taken up again.
    insert(&stack, &row);
    stack.wait_ready().await;
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_holding_another_key_than_its_row_is_refused() {
    let mut stack = Stack::start(StackOptions { enclave_ids: vec![1, 2], ..StackOptions::default() }).await;
    let one = stack.row(1).expect("row 1");
    let two = stack.row(2).expect("row 2");
    stack.kill_gateway();
    // The rows swap ids: each running enclave now holds a key that is not its row's.
    stack.sql("UPDATE enclave_master_keys SET enclave_id = 3 WHERE enclave_id = 1", []);
    stack.sql("UPDATE enclave_master_keys SET enclave_id = 1 WHERE enclave_id = 2", []);
    stack.sql("UPDATE enclave_master_keys SET enclave_id = 2 WHERE enclave_id = 3", []);
    stack.start_gateway();
    let health = stack.wait_health("both refused", |_, h| h.enclaves.iter().all(|e| e.state == "failed")).await;
    for enclave in &health.enclaves {
        assert_eq!(enclave.code.as_deref(), Some("enclave_holds_another_key"), "enclave {}", enclave.enclave_id);
    }
    let err = stack.client.sign(&keyward_e2e::digest(1), "ecdsa", Some(1)).await.expect_err("nothing signs");
    assert!(matches!(&err, keyward_client::ClientError::Api { status: 503, code, .. } if code == "enclave_not_ready"));
    assert_eq!(stack.row(1).expect("row").public_key, two.public_key, "rows are left as they are");
    assert_eq!(stack.row(2).expect("row").public_key, one.public_key);

    stack.kill_gateway();
    stack.sql("DELETE FROM enclave_master_keys", []);
    insert(&stack, &one);
    insert(&stack, &two);
    stack.start_gateway();
    stack.wait_ready().await;
    assert_signs(&stack, Some(1), &hex::encode(&one.public_key)).await;
    assert_signs(&stack, Some(2), &hex::encode(&two.public_key)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enclave_refuses_a_provision_naming_another_kms_key_or_region_before_any_kms_call() {
    use keyward_e2e::{RawLink, error_of};
    use keyward_proto::{AwsCredentials, EnclaveId, ErrorCode, Provision, Request};
    // The enclave pins its KMS key by ARN, as in production; a gateway (or whoever holds the
    // link key) asks it to seal under another key, or in another region.
    let mut stack = Stack::prepare(StackOptions { pin_key_arn: true, ..StackOptions::default() }).await;
    stack.start_enclave(1);
    let other_key = stack.key_arn.replace("key/", "key/0");
    let credentials = || AwsCredentials {
        access_key_id: "test".into(),
        secret_access_key: zeroize::Zeroizing::new("test".into()),
        session_token: None,
        expires_at: None,
    };
    for (what, kms_key_id, region) in [
        ("another key", other_key.as_str(), "us-east-1"),
        ("the alias of the pinned key", "alias/keyward-enclave-master-key", "us-east-1"),
        ("another region", stack.key_arn.as_str(), "eu-west-1"),
    ] {
        let mut link = connect_when_listening(&stack).await;
        link.handshake_as_gateway(&stack).await;
        let request = Provision {
            enclave_id: EnclaveId(1),
            kms_key_id: kms_key_id.to_owned(),
            region: region.to_owned(),
            credentials: credentials(),
        };
        let frame = link.call(Request::Provision(request)).await;
        assert_eq!(error_of(&frame).0, ErrorCode::ConfigMismatch, "{what}");
    }
    let proxy = stack.proxy.as_ref().expect("attesting dev KMS");
    let data_keys =
        proxy.events(event::KMS_REQUEST).into_iter().filter(|e| e["operation"] == "GenerateDataKey").count();
    assert_eq!(data_keys, 0, "no KMS call was made");
    let enclave = stack.enclaves.get(&1).expect("enclave");
    assert!(enclave.events(event::KEY_PROVISIONED).is_empty());

    async fn connect_when_listening(stack: &Stack) -> RawLink {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", stack.enclave_ports[&1])).await.is_ok() {
                return RawLink::connect(stack, 1).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the enclave never listened");
    }
}
