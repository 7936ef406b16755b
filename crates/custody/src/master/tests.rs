//! The master key's state machine, driven without sockets or KMS (the in-memory stand-in binds
//! each data key to its encryption context, as KMS does).

use keyward_proto::Digest;

use super::*;
use crate::memory::{MEMORY_KMS_ARN as ARN, MEMORY_KMS_REGION as REGION, MemoryKms, OsRandom, test_credentials};

const ID: EnclaveId = EnclaveId(7);

fn master() -> Master<Arc<MemoryKms>> {
    master_on(Arc::new(MemoryKms::default()))
}

fn master_on(kms: Arc<MemoryKms>) -> Master<Arc<MemoryKms>> {
    Master::new(kms, Arc::new(OsRandom), crate::Pinned { key_id: ARN.into(), region: REGION.into() })
}

fn provision_request() -> Provision {
    Provision { enclave_id: ID, kms_key_id: ARN.into(), region: REGION.into(), credentials: test_credentials() }
}

fn commit_of(sealed: &SealedKey) -> Commit {
    Commit { enclave_id: sealed.enclave_id, public_key: sealed.public_key, key_epoch: sealed.key_epoch }
}

async fn committed(master: &Master<Arc<MemoryKms>>) -> SealedKey {
    let sealed = master.provision(provision_request()).await.unwrap();
    master.commit(commit_of(&sealed)).await.unwrap();
    sealed
}

fn sign_request() -> SignRequest {
    SignRequest { digest: Digest([9; 32]), scheme: Scheme::Ecdsa, auth: None }
}

fn code<T: std::fmt::Debug>(result: Result<T, ErrorReply>) -> ErrorCode {
    result.unwrap_err().code
}

#[tokio::test]
async fn a_provisioned_key_signs_only_after_commit() {
    let master = master();
    assert_eq!(master.status().state, EnclaveState::Empty);
    let sealed = master.provision(provision_request()).await.unwrap();
    assert_eq!((sealed.enclave_id, sealed.key_epoch, sealed.kms_key_id.as_str()), (ID, 1, ARN));
    assert_eq!(master.status().state, EnclaveState::AwaitingCommit);
    assert_eq!(code(master.sign(&sign_request())), ErrorCode::NotReady);
    assert_eq!(master.committed_public_key(), None);

    let status = master.commit(commit_of(&sealed)).await.unwrap();
    assert_eq!(status.state, EnclaveState::Ready);
    assert_eq!(master.committed_public_key(), Some(sealed.public_key.0));
    let signature = master.sign(&sign_request()).unwrap();
    let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(&sealed.public_key.0).unwrap();
    let signature = k256::ecdsa::Signature::from_slice(&signature.signature).unwrap();
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    key.verify_prehash(&[9; 32], &signature).unwrap();
}

#[tokio::test]
async fn a_committed_key_is_never_replaced_by_another_provision() {
    let master = master();
    let sealed = committed(&master).await;
    assert_eq!(code(master.provision(provision_request()).await), ErrorCode::AlreadyProvisioned);
    assert_eq!(master.status().public_key, Some(sealed.public_key));
}

#[tokio::test]
async fn the_gateway_cannot_choose_another_kms_key_or_region() {
    let master = master();
    let other_key =
        Provision { kms_key_id: "arn:aws:kms:us-east-1:999999999999:key/other".into(), ..provision_request() };
    assert_eq!(code(master.provision(other_key).await), ErrorCode::ConfigMismatch);
    let other_region = Provision { region: "eu-west-1".into(), ..provision_request() };
    assert_eq!(code(master.provision(other_region).await), ErrorCode::ConfigMismatch);
    assert_eq!(master.status().state, EnclaveState::Empty);
}

#[tokio::test]
async fn a_commit_for_another_key_or_epoch_is_refused() {
    let master = master();
    assert_eq!(
        code(master.commit(Commit { enclave_id: ID, public_key: CompressedPublicKey([2; 33]), key_epoch: 1 }).await),
        ErrorCode::NotReady
    );
    let sealed = master.provision(provision_request()).await.unwrap();
    let wrong_epoch = Commit { key_epoch: 2, ..commit_of(&sealed) };
    assert_eq!(code(master.commit(wrong_epoch).await), ErrorCode::BadRequest);
    let wrong_id = Commit { enclave_id: EnclaveId(8), ..commit_of(&sealed) };
    assert_eq!(code(master.commit(wrong_id).await), ErrorCode::BadRequest);
    assert_eq!(master.status().state, EnclaveState::AwaitingCommit);
}

#[tokio::test]
async fn a_row_that_would_not_open_again_is_never_handed_out() {
    let kms = Arc::new(MemoryKms::default());
    kms.deny_decrypt(true);
    let master = master_on(kms);
    assert_eq!(code(master.provision(provision_request()).await), ErrorCode::RoundTripFailed);
    assert_eq!(master.status().state, EnclaveState::Empty);
}

#[tokio::test]
async fn another_enclave_unseals_the_same_key() {
    let kms = Arc::new(MemoryKms::default());
    let first = master_on(kms.clone());
    let sealed = committed(&first).await;
    let restarted = master_on(kms);
    let status = restarted.unseal(Unseal { sealed: sealed.clone(), credentials: test_credentials() }).await.unwrap();
    assert_eq!(
        (status.state, status.public_key, status.key_epoch),
        (EnclaveState::Ready, Some(sealed.public_key), Some(1))
    );
    // Unsealing the same row again is a no-op; another enclave's row is refused.
    restarted.unseal(Unseal { sealed: sealed.clone(), credentials: test_credentials() }).await.unwrap();
    let other = committed(&master()).await;
    let refused = restarted
        .unseal(Unseal { sealed: SealedKey { enclave_id: EnclaveId(8), ..other }, credentials: test_credentials() })
        .await;
    assert_eq!(code(refused), ErrorCode::AlreadyProvisioned);
}

#[tokio::test]
async fn each_altered_column_of_a_row_is_refused_with_its_code() {
    let kms = Arc::new(MemoryKms::default());
    let sealed = committed(&master_on(kms.clone())).await;
    let unseal = |sealed: SealedKey| {
        let master = master_on(kms.clone());
        async move {
            let result = master.unseal(Unseal { sealed, credentials: test_credentials() }).await;
            assert_eq!(master.status().state, EnclaveState::Empty, "nothing is loaded from an altered row");
            code(result)
        }
    };
    let mut flipped = sealed.clone();
    flipped.encrypted_private_key[20] ^= 1;
    assert_eq!(unseal(flipped).await, ErrorCode::SealOpenFailed);
    let mut dek = sealed.clone();
    dek.kms_encrypted_dek[20] ^= 1;
    assert_eq!(unseal(dek).await, ErrorCode::KmsInvalidCiphertext);
    // The encryption context names the enclave, the epoch and the public key.
    assert_eq!(unseal(SealedKey { enclave_id: EnclaveId(8), ..sealed.clone() }).await, ErrorCode::KmsInvalidCiphertext);
    assert_eq!(unseal(SealedKey { key_epoch: 2, ..sealed.clone() }).await, ErrorCode::KmsInvalidCiphertext);
    let other_key = CompressedPublicKey(committed(&master_on(kms.clone())).await.public_key.0);
    assert_eq!(unseal(SealedKey { public_key: other_key, ..sealed.clone() }).await, ErrorCode::KmsInvalidCiphertext);
    let moved = SealedKey { kms_key_id: "arn:aws:kms:us-east-1:999999999999:key/other".into(), ..sealed };
    assert_eq!(unseal(moved).await, ErrorCode::ConfigMismatch);
}

#[tokio::test]
async fn rotation_reseals_the_same_key_and_takes_effect_on_commit() {
    let kms = Arc::new(MemoryKms::default());
    let master = master_on(kms.clone());
    let sealed = committed(&master).await;
    let stale = SealedKey { key_epoch: 2, ..sealed.clone() };
    assert_eq!(
        code(master.rotate(Rotate { sealed: stale, credentials: test_credentials() }).await),
        ErrorCode::BadRequest
    );

    let rotated = master.rotate(Rotate { sealed: sealed.clone(), credentials: test_credentials() }).await.unwrap();
    assert_eq!((rotated.key_epoch, rotated.public_key), (2, sealed.public_key));
    assert_ne!(rotated.kms_encrypted_dek, sealed.kms_encrypted_dek);
    assert_eq!(master.status().key_epoch, Some(1), "the new epoch waits for commit");
    master.sign(&sign_request()).unwrap();
    master.commit(commit_of(&rotated)).await.unwrap();
    assert_eq!(master.status().key_epoch, Some(2));
    // Both rows open in a restarted enclave (the stored one may be either after a crash).
    for row in [sealed, rotated] {
        let restarted = master_on(kms.clone());
        restarted.unseal(Unseal { sealed: row, credentials: test_credentials() }).await.unwrap();
    }
}

#[tokio::test]
async fn a_rotation_whose_row_does_not_open_leaves_the_old_epoch() {
    let kms = Arc::new(MemoryKms::default());
    let master = master_on(kms.clone());
    let sealed = committed(&master).await;
    kms.deny_decrypt(true);
    let failed = master.rotate(Rotate { sealed: sealed.clone(), credentials: test_credentials() }).await;
    assert_eq!(code(failed), ErrorCode::RoundTripFailed);
    assert_eq!(code(master.commit(Commit { key_epoch: 2, ..commit_of(&sealed) }).await), ErrorCode::BadRequest);
    assert_eq!(master.status().key_epoch, Some(1));
}
