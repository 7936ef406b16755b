//! The database on a bad day: locked by another writer, read-only, full, deleted.

use keyward_client::ClientError;
use keyward_e2e::{Stack, StackOptions, TmpfsMount, assert_signs};

async fn stack_on(mount_kib: u64) -> (Stack, TmpfsMount) {
    let mut stack = Stack::prepare(StackOptions::default()).await;
    let mount = TmpfsMount::new(&stack.path().join("small-disk"), mount_kib);
    stack.set_data_dir(mount.path().join("data"));
    std::fs::create_dir_all(mount.path().join("data")).expect("data dir");
    stack.start_enclave(1);
    stack.start_gateway();
    stack.wait_ready().await;
    (stack, mount)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_another_writer_delays_nothing_but_writes() {
    let stack = Stack::start(StackOptions::default()).await;
    let row = stack.row(1).expect("row");
    let locker = rusqlite::Connection::open(stack.db_path()).expect("open");
    locker.execute_batch("BEGIN EXCLUSIVE").expect("take the write lock");

    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
    let err = stack.admin_client().rotate(None).await.expect_err("no write while locked");
    assert!(matches!(&err, ClientError::Api { status: 503, code, .. } if code == "database_busy"), "{err}");
    locker.execute_batch("ROLLBACK").expect("release");
    drop(locker);
    assert_eq!(stack.row(1).expect("row"), row, "the failed rotation wrote nothing");
    assert_eq!(stack.admin_client().rotate(None).await.expect("rotate once the lock is gone").key_epoch, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_keeps_the_key_and_refuses_writes() {
    let (mut stack, mount) = stack_on(8 * 1024).await;
    let row = stack.row(1).expect("row");
    let public_key = hex::encode(&row.public_key);

    // A filesystem cannot turn read-only under an open writer, so the gateway meets it on a
    // restart (the common case: a volume remounted read-only after an I/O error). It starts,
    // restores the key and signs, but says the database is read-only and stores nothing.
    stack.kill_gateway();
    mount.remount_read_only();
    stack.start_gateway();
    let health =
        stack.wait_health("read-only reported", |status, h| status == 503 && h.enclaves[0].state == "ready").await;
    assert_eq!(health.database, "database_read_only");
    assert_signs(&stack, None, &public_key).await;
    let err = stack.admin_client().rotate(None).await.expect_err("read-only");
    assert!(matches!(&err, ClientError::Api { status: 503, code, .. } if code == "database_read_only"), "{err}");
    assert_eq!(stack.row(1).expect("row"), row, "readable and untouched");

    stack.kill_gateway();
    mount.remount_read_write();
    stack.start_gateway();
    stack.wait_ready().await;
    assert_eq!(stack.row(1).expect("row"), row);
    assert_eq!(stack.row_count(), 1);
    assert_signs(&stack, None, &public_key).await;
    assert_eq!(stack.admin_client().rotate(None).await.expect("writable again").key_epoch, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_write_cleanly_and_recovers() {
    let (stack, mount) = stack_on(1024).await;
    let row = stack.row(1).expect("row");
    // Fill what is left of the filesystem.
    let filler = mount.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 4 << 20]);
    assert!(std::fs::metadata(&filler).is_ok(), "filler written (partially)");

    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
    let err = stack.admin_client().rotate(None).await.expect_err("disk full");
    assert!(matches!(&err, ClientError::Api { status: 503, code, .. } if code == "database_full"), "{err}");
    assert_eq!(stack.row(1).expect("row"), row, "nothing half-written");

    std::fs::remove_file(&filler).expect("free space");
    assert_eq!(stack.admin_client().rotate(None).await.expect("rotate after freeing space").key_epoch, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_deleted_while_running_is_reported_and_never_written() {
    let stack = Stack::start(StackOptions::default()).await;
    let row = stack.row(1).expect("row");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", stack.db_path().display()));
    }
    let (status, health) = stack.client.health().await.expect("health");
    assert_eq!(status, 503);
    assert_eq!(health.database, "database_file_gone");
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
    let err = stack.admin_client().rotate(None).await.expect_err("no writes into a deleted file");
    assert!(matches!(&err, ClientError::Api { status: 503, code, .. } if code == "database_file_gone"), "{err}");
    assert!(!stack.db_path().exists(), "nothing recreated the file behind the operator's back");
}
