//! The gateway's domain core against the enclave's, in one process: the enclave is
//! `keyward_custody::EnclaveCore` over an in-memory KMS, the store a real SQLite file. Only the
//! link is replaced, by a direct call that can drop chosen requests (a crash or a lost
//! connection at that step).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use keyward_custody::{
    EnclaveCore, Keyring, Master, Pinned,
    memory::{MEMORY_KMS_ARN as ARN, MEMORY_KMS_REGION as REGION, MemoryKms, OsRandom, test_credentials},
};
use keyward_proto::{
    AwsCredentials, EnclaveId, EnclaveInfo, EnclaveState, ErrorCode, ErrorReply, HelloReply, KeyringPhase, NsmKind,
    Request, Response, Status,
};
use tokio::sync::Barrier;

use crate::{
    Credentials, Db, Enclave, Environment, Expectations, LinkError, check_identity, check_image, keyring,
    master::{BringUpError, MasterBringUp, Progress},
    rotation::{RotateError, rotate},
};

const ID: EnclaveId = EnclaveId(3);

/// One enclave in this process.
struct TestEnclave {
    core: EnclaveCore<Arc<MemoryKms>>,
    /// Requests of these kinds never reach the enclave (the gateway crashed before sending).
    drop_requests: Mutex<Vec<&'static str>>,
    /// Answers to these kinds are lost (the connection dropped after the enclave acted).
    drop_answers: Mutex<Vec<&'static str>>,
    /// Both enclaves of a race meet here after being asked for a new root.
    root_barrier: Option<Arc<Barrier>>,
}

impl TestEnclave {
    fn new(kms: &Arc<MemoryKms>) -> Self {
        let random = Arc::new(OsRandom);
        let pinned = Pinned { key_id: ARN.into(), region: REGION.into() };
        let master = Master::new(kms.clone(), random.clone(), pinned.clone());
        let keyring = Keyring::new(kms.clone(), random, pinned, 16).unwrap();
        TestEnclave {
            core: EnclaveCore { master: Arc::new(master), keyring: Arc::new(keyring), authorizer: None },
            drop_requests: Mutex::new(Vec::new()),
            drop_answers: Mutex::new(Vec::new()),
            root_barrier: None,
        }
    }

    fn drop_requests(&self, kinds: &[&'static str]) {
        *self.drop_requests.lock().unwrap() = kinds.to_vec();
    }

    fn drop_answers(&self, kinds: &[&'static str]) {
        *self.drop_answers.lock().unwrap() = kinds.to_vec();
    }

    fn status(&self) -> Status {
        self.core.master.status()
    }
}

impl Enclave for TestEnclave {
    async fn call(&self, request: Request, _timeout: Duration) -> Result<Response, LinkError> {
        let kind = format!("{request:?}");
        let kind = kind.split(['(', ' ']).next().unwrap_or_default().to_owned();
        let is_root_provision = matches!(request, Request::RootProvision(_));
        if self.drop_requests.lock().unwrap().contains(&kind.as_str()) {
            return Err(LinkError::Closed(format!("{kind} never sent")));
        }
        let answer = self.core.handle(request).await.map_err(LinkError::Remote);
        if is_root_provision && let Some(barrier) = &self.root_barrier {
            barrier.wait().await;
        }
        if self.drop_answers.lock().unwrap().contains(&kind.as_str()) {
            return Err(LinkError::Closed(format!("{kind} lost")));
        }
        answer
    }
}

struct TestCredentials;

impl Credentials for TestCredentials {
    async fn get(&self) -> Result<AwsCredentials, String> {
        Ok(test_credentials())
    }
}

fn expectations() -> Expectations {
    Expectations {
        environment: Environment::Development,
        kms_key_id: ARN.into(),
        kms_region: REGION.into(),
        kms_endpoint: "http://127.0.0.1:4566".into(),
        attestation: true,
        image: None,
        owners: None,
    }
}

fn db(dir: &tempfile::TempDir) -> Db {
    Db::open(&dir.path().join("keyward.sqlite3"), true).unwrap()
}

async fn bring_up(enclave: &TestEnclave, db: &Db) -> (Result<Status, BringUpError>, Vec<Progress>) {
    let expect = expectations();
    let master = MasterBringUp { id: ID, enclave, db, credentials: &TestCredentials, expect: &expect };
    let seen = Mutex::new(Vec::new());
    let result = master.run(&enclave.status(), |p| seen.lock().unwrap().push(p)).await;
    (result, seen.into_inner().unwrap())
}

fn failure(result: Result<Status, BringUpError>) -> &'static str {
    match result {
        Err(BringUpError::Failed(problem)) => problem.code,
        other => panic!("expected a reported failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_first_start_provisions_stores_and_commits_and_a_restart_unseals_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let (db, kms) = (db(&dir), Arc::new(MemoryKms::default()));
    let enclave = TestEnclave::new(&kms);
    let (status, progress) = bring_up(&enclave, &db).await;
    let status = status.unwrap();
    assert_eq!(
        (status.state, status.key_epoch, progress),
        (EnclaveState::Ready, Some(1), vec![Progress::Provisioning])
    );
    let row = db.get(ID).await.unwrap().unwrap();
    assert_eq!(row.public_key, status.public_key.unwrap().0.to_vec());

    // The gateway restarts: the enclave already signs with the stored key.
    let (again, progress) = bring_up(&enclave, &db).await;
    assert_eq!((again.unwrap(), progress), (status.clone(), vec![]));

    // The enclave restarts: the stored row is unsealed, nothing new is stored.
    let restarted = TestEnclave::new(&kms);
    let (unsealed, progress) = bring_up(&restarted, &db).await;
    assert_eq!((unsealed.unwrap().public_key, progress), (status.public_key, vec![Progress::Unsealing]));
    assert_eq!(db.get(ID).await.unwrap().unwrap(), row);
}

#[tokio::test]
async fn a_provision_whose_commit_was_lost_is_unsealed_at_the_next_bring_up() {
    let dir = tempfile::tempdir().unwrap();
    let (db, kms) = (db(&dir), Arc::new(MemoryKms::default()));
    let enclave = TestEnclave::new(&kms);
    enclave.drop_requests(&["Commit"]);
    let (lost, _) = bring_up(&enclave, &db).await;
    assert!(matches!(lost, Err(BringUpError::Link(LinkError::Closed(_)))), "{lost:?}");
    let row = db.get(ID).await.unwrap().expect("the row is stored before the commit");
    assert_eq!(enclave.status().state, EnclaveState::AwaitingCommit);

    enclave.drop_requests(&[]);
    enclave.drop_answers(&[]);
    let (status, progress) = bring_up(&enclave, &db).await;
    assert_eq!(progress, vec![Progress::Unsealing], "the stored row is used, no second key is made");
    assert_eq!(status.unwrap().public_key.unwrap().0.to_vec(), row.public_key);
}

#[tokio::test]
async fn a_commit_whose_answer_was_lost_is_seen_as_ready_at_the_next_bring_up() {
    let dir = tempfile::tempdir().unwrap();
    let (db, kms) = (db(&dir), Arc::new(MemoryKms::default()));
    let enclave = TestEnclave::new(&kms);
    enclave.drop_answers(&["Commit"]);
    assert!(matches!(bring_up(&enclave, &db).await.0, Err(BringUpError::Link(_))));
    enclave.drop_answers(&[]);
    let (status, progress) = bring_up(&enclave, &db).await;
    assert_eq!((status.unwrap().state, progress), (EnclaveState::Ready, vec![]));
}

#[tokio::test]
async fn a_provision_that_was_never_stored_is_discarded_for_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let (db, kms) = (db(&dir), Arc::new(MemoryKms::default()));
    let enclave = TestEnclave::new(&kms);
    enclave.drop_answers(&["Provision"]);
    let (lost, _) = bring_up(&enclave, &db).await;
    assert!(matches!(lost, Err(BringUpError::Link(_))), "{lost:?}");
    assert_eq!(db.get(ID).await.unwrap(), None);
    let uncommitted = enclave.status().public_key;
    assert_eq!(enclave.status().state, EnclaveState::AwaitingCommit);

    enclave.drop_requests(&[]);
    enclave.drop_answers(&[]);
    let (status, _) = bring_up(&enclave, &db).await;
    let status = status.unwrap();
    assert_ne!(status.public_key, uncommitted, "the key nobody stored never signs");
    assert_eq!(db.get(ID).await.unwrap().unwrap().public_key, status.public_key.unwrap().0.to_vec());
}

#[tokio::test]
async fn no_key_is_generated_when_the_database_lost_its_row_or_holds_another() {
    let kms = Arc::new(MemoryKms::default());
    let enclave = TestEnclave::new(&kms);
    let first = tempfile::tempdir().unwrap();
    bring_up(&enclave, &db(&first)).await.0.unwrap();

    let empty = tempfile::tempdir().unwrap();
    let empty_db = db(&empty);
    assert_eq!(failure(bring_up(&enclave, &empty_db).await.0), "database_lost_its_row");
    assert_eq!(empty_db.get(ID).await.unwrap(), None, "nothing was stored");

    let other = tempfile::tempdir().unwrap();
    let other_db = db(&other);
    bring_up(&TestEnclave::new(&kms), &other_db).await.0.unwrap();
    let other_row = other_db.get(ID).await.unwrap();
    assert_eq!(failure(bring_up(&enclave, &other_db).await.0), "enclave_holds_another_key");
    assert_eq!(other_db.get(ID).await.unwrap(), other_row);
}

#[tokio::test]
async fn a_row_that_does_not_open_is_reported_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (db, kms) = (db(&dir), Arc::new(MemoryKms::default()));
    bring_up(&TestEnclave::new(&kms), &db).await.0.unwrap();
    let row = db.get(ID).await.unwrap();
    kms.deny_decrypt(true);
    let restarted = TestEnclave::new(&kms);
    assert_eq!(failure(bring_up(&restarted, &db).await.0), ErrorCode::KmsDenied.as_str());
    assert_eq!(restarted.status().state, EnclaveState::Empty);
    assert_eq!(db.get(ID).await.unwrap(), row, "no new key replaced the row that did not open");
}

#[tokio::test]
async fn rotation_stores_the_next_epoch_and_commits_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, kms) = (db(&dir), Arc::new(MemoryKms::default()));
    let enclave = TestEnclave::new(&kms);
    let public_key = bring_up(&enclave, &db).await.0.unwrap().public_key.unwrap();
    let rotated = rotate(&enclave, ID, &db, &TestCredentials).await.unwrap();
    assert_eq!((rotated.previous_epoch, rotated.epoch, rotated.public_key_hex), (1, 2, public_key.to_hex()));
    assert_eq!(db.get(ID).await.unwrap().unwrap().key_epoch, 2);
    assert_eq!(enclave.status().key_epoch, Some(2));
    // The new row opens after a restart.
    let restarted = TestEnclave::new(&kms);
    assert_eq!(bring_up(&restarted, &db).await.0.unwrap().key_epoch, Some(2));
}

#[tokio::test]
async fn a_rotation_stored_but_not_committed_is_committed_at_the_next_bring_up() {
    let dir = tempfile::tempdir().unwrap();
    let (db, kms) = (db(&dir), Arc::new(MemoryKms::default()));
    let enclave = TestEnclave::new(&kms);
    bring_up(&enclave, &db).await.0.unwrap();
    enclave.drop_requests(&["Commit"]);
    let lost = rotate(&enclave, ID, &db, &TestCredentials).await;
    assert!(matches!(lost, Err(RotateError::NotCommitted { epoch: 2, .. })), "{lost:?}");
    assert_eq!((db.get(ID).await.unwrap().unwrap().key_epoch, enclave.status().key_epoch), (2, Some(1)));

    enclave.drop_requests(&[]);
    enclave.drop_answers(&[]);
    assert_eq!(bring_up(&enclave, &db).await.0.unwrap().key_epoch, Some(2));
}

#[tokio::test]
async fn a_rotation_the_enclave_refuses_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, kms) = (db(&dir), Arc::new(MemoryKms::default()));
    let enclave = TestEnclave::new(&kms);
    bring_up(&enclave, &db).await.0.unwrap();
    let row = db.get(ID).await.unwrap();
    kms.deny_decrypt(true);
    let refused = rotate(&enclave, ID, &db, &TestCredentials).await;
    match refused {
        Err(RotateError::Enclave(LinkError::Remote(ErrorReply { code, .. }))) => {
            assert_eq!(code, ErrorCode::RoundTripFailed)
        }
        other => panic!("expected the enclave's refusal, got {other:?}"),
    }
    assert_eq!(db.get(ID).await.unwrap(), row);
    assert_eq!(enclave.status().key_epoch, Some(1));
}

#[tokio::test]
async fn two_gateways_finding_no_root_at_once_end_up_with_one_root() {
    let dir = tempfile::tempdir().unwrap();
    let (db, kms) = (db(&dir), Arc::new(MemoryKms::default()));
    let barrier = Arc::new(Barrier::new(2));
    let mut a = TestEnclave::new(&kms);
    let mut b = TestEnclave::new(&kms);
    a.root_barrier = Some(barrier.clone());
    b.root_barrier = Some(barrier);
    // Both have read "no root" and made one before either stores it.
    let (ra, rb) = tokio::join!(
        keyring::bring_up(&a, &db, &TestCredentials, ARN, REGION),
        keyring::bring_up(&b, &db, &TestCredentials, ARN, REGION),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!((ra.phase, rb.phase), (KeyringPhase::Ready, KeyringPhase::Ready));
    let stored = db.root().await.unwrap().unwrap();
    assert_eq!(ra.root_id, rb.root_id);
    assert_eq!(ra.root_id.unwrap().0.to_vec(), stored.root_id);
}

#[tokio::test]
async fn the_keyring_root_is_unsealed_by_a_restarted_enclave_and_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let (db, kms) = (db(&dir), Arc::new(MemoryKms::default()));
    let first = keyring::bring_up(&TestEnclave::new(&kms), &db, &TestCredentials, ARN, REGION).await.unwrap();
    let enclave = TestEnclave::new(&kms);
    let unsealed = keyring::bring_up(&enclave, &db, &TestCredentials, ARN, REGION).await.unwrap();
    assert_eq!(unsealed.root_id, first.root_id);

    let rotated = keyring::rotate_root(&enclave, &db, &TestCredentials).await.unwrap();
    assert_eq!((rotated.previous_root_epoch, rotated.root_epoch), (1, 2));
    assert_eq!(db.root().await.unwrap().unwrap().root_epoch, 2);
    let restarted = keyring::bring_up(&TestEnclave::new(&kms), &db, &TestCredentials, ARN, REGION).await.unwrap();
    assert_eq!((restarted.root_id, restarted.root_epoch), (first.root_id, Some(2)));
}

#[tokio::test]
async fn the_keyring_is_never_remade_when_the_database_lost_its_root() {
    let kms = Arc::new(MemoryKms::default());
    let enclave = TestEnclave::new(&kms);
    let first = tempfile::tempdir().unwrap();
    keyring::bring_up(&enclave, &db(&first), &TestCredentials, ARN, REGION).await.unwrap();
    let empty = tempfile::tempdir().unwrap();
    let empty_db = db(&empty);
    let refused = keyring::bring_up(&enclave, &empty_db, &TestCredentials, ARN, REGION).await.unwrap_err();
    assert_eq!(refused.code, "database_lost_its_root");
    assert_eq!(empty_db.root().await.unwrap(), None);
}

fn hello(info: impl FnOnce(&mut EnclaveInfo)) -> HelloReply {
    let expect = expectations();
    let mut enclave = EnclaveInfo {
        software_version: "test".into(),
        nsm: NsmKind::Mock,
        kms_key_id: expect.kms_key_id,
        kms_region: expect.kms_region,
        kms_endpoint: expect.kms_endpoint,
        attestation: expect.attestation,
        authorization: None,
    };
    info(&mut enclave);
    HelloReply { protocol_version: keyward_proto::PROTOCOL_VERSION, info: enclave, challenge: [0; 32] }
}

#[test]
fn an_enclave_pinned_differently_is_not_admitted() {
    let expect = expectations();
    assert_eq!(check_identity(&expect, &hello(|_| {})), Ok(()));
    type Change = fn(&mut EnclaveInfo);
    let cases: [(&str, Change); 4] = [
        ("kms key", |i| i.kms_key_id = "arn:aws:kms:us-east-1:999999999999:key/other".into()),
        ("region", |i| i.kms_region = "eu-west-1".into()),
        ("endpoint", |i| i.kms_endpoint = "https://kms.example".into()),
        ("attestation", |i| i.attestation = false),
    ];
    for (what, change) in cases {
        assert_eq!(check_identity(&expect, &hello(change)).unwrap_err().code, "enclave_config_mismatch", "{what}");
    }
    let production = Expectations { environment: Environment::Production, ..expectations() };
    assert_eq!(check_identity(&production, &hello(|_| {})).unwrap_err().code, "mock_nsm_refused");
    assert_eq!(check_identity(&production, &hello(|i| i.nsm = NsmKind::Nitro)), Ok(()));
}

#[test]
fn an_enclave_with_other_owners_or_none_is_not_admitted() {
    let owners = crate::ExpectedOwners { ids: vec!["aa".into(), "bb".into()], quorum: 2 };
    let expect = Expectations { owners: Some(owners), ..expectations() };
    let with = |ids: &[&str], quorum: u8| {
        let authorization = keyward_proto::AuthorizationInfo {
            owners: ids.iter().map(|s| (*s).to_owned()).collect(),
            quorum,
            audit_public_key: vec![1; 32],
        };
        hello(move |i| i.authorization = Some(authorization))
    };
    assert_eq!(check_identity(&expect, &with(&["bb", "aa"], 2)), Ok(()), "the same owners in another order");
    for (what, hello) in [
        ("no owners", hello(|_| {})),
        ("one owner missing", with(&["aa"], 1)),
        ("another quorum", with(&["aa", "bb"], 1)),
        ("another owner", with(&["aa", "cc"], 2)),
        ("one more owner", with(&["aa", "bb", "cc"], 2)),
    ] {
        let err = check_identity(&expect, &hello).unwrap_err();
        assert_eq!(err.code, "enclave_config_mismatch", "{what}");
    }
    assert_eq!(check_identity(&expectations(), &with(&["aa"], 1)), Ok(()), "no owners configured: not checked");
}

#[tokio::test]
async fn an_enclave_that_cannot_attest_is_not_admitted_when_builds_are_listed() {
    let enclave = TestEnclave::new(&Arc::new(MemoryKms::default()));
    let now = keyward_attest::UnixTime::now();
    check_image(&expectations(), &enclave, now).await.expect("no builds listed: nothing to check");
    let image = crate::ExpectedImage { root_pem: None, builds: vec![] };
    let expect = Expectations { image: Some(image), ..expectations() };
    // The core leaves attestation documents to the enclave binary (the NSM's).
    assert_eq!(check_image(&expect, &enclave, now).await.unwrap_err().code, "attestation_rejected");
}
