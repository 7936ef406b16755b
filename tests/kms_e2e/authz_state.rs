//! Key states bound to the keyring root: disabling, enabling and deleting a key are signed
//! requests at the owners' quorum, each a new version of the key's policy row; the enclave
//! refuses to use a key whose row is not enabled, so a host that edits its own `keys` row, or
//! replays an owner's earlier request, does not bring a key back. Only the owners do.

use keyward_authz::Operation;
use keyward_client::keys::SignWithKey;
use keyward_e2e::{Stack, StackOptions};

use crate::{
    authz::cli_with,
    authz_policy::{code, principal, replay, sql},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_or_deleted_key_stays_unusable_whatever_the_host_does() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, alice_key) = principal(dir.path(), "alice");
    let (bob, bob_key) = principal(dir.path(), "bob");
    let options =
        StackOptions { owners: vec![alice.public(), bob.public()], owner_quorum: 2, ..StackOptions::default() };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let admin = stack.admin_client();
    let as_alice_admin = admin.clone().with_principal(alice.clone());
    as_alice_admin.create_key("treasury", "secp256k1", false).await.unwrap();
    let as_alice = stack.client.clone().with_principal(alice.clone());
    let request = SignWithKey { digest_hex: Some("42".repeat(32)), ..SignWithKey::default() };
    as_alice.sign_with_key("treasury", &request).await.expect("positive control: an enabled key signs");
    // The host flips its own row back to enabled, as a compromised gateway would.
    let host_enables =
        || sql(&stack, "UPDATE keys SET state = 'enabled', deletion_due = NULL WHERE name = 'treasury'", &[]);

    // The admin token alone, or one owner of two, changes nothing.
    assert_eq!(code(admin.set_key_state("treasury", "disable").await), (401, "signature_required".into()));
    assert_eq!(code(as_alice_admin.set_key_state("treasury", "disable").await), (403, "quorum_not_met".into()));
    assert_eq!(code(as_alice_admin.delete_key("treasury").await), (403, "quorum_not_met".into()));
    as_alice.sign_with_key("treasury", &request).await.expect("still enabled");

    // Both owners disable it (the CLI); the enclave refuses it even once the host re-enables it.
    let alice_env = [("KEYWARD_PRINCIPAL_KEY", alice_key.as_path())];
    let disable = ["keys", "disable", "treasury", "--approve-with", bob_key.to_str().unwrap()];
    let (ok, printed, stderr) = cli_with(&stack, "admin-token", &alice_env, &disable);
    assert!(ok, "the CLI disables: {stderr}");
    assert_eq!(printed["state"], "disabled", "{printed}");
    assert_eq!(code(as_alice.sign_with_key("treasury", &request).await), (409, "key_disabled".into()));
    assert_eq!(host_enables(), 1);
    assert_eq!(
        code(as_alice.sign_with_key("treasury", &request).await),
        (409, "key_disabled".into()),
        "refused in the enclave, by the key's policy row"
    );

    // The owners sign a disable request that the host keeps; they enable the key. The kept
    // request works once, as the owners' own request; replayed after the next enable, it is
    // refused: the row version it makes is spent (on this enclave or any other).
    // Version 1 disabled the key; the enable makes 2, so the kept disable names version 3.
    let kept_body = br#"{"action":"disable","version":3}"#;
    let kept = alice.headers(Operation::Disable, "default", "treasury", kept_body, &[&bob]).unwrap();
    let enabled =
        as_alice_admin.set_key_state_approved("treasury", "enable", &[&bob]).await.expect("the owners enable it");
    assert!(enabled.receipt.is_some(), "a signed change answers with its audit receipt");
    as_alice.sign_with_key("treasury", &request).await.expect("enabled again");
    assert_eq!(replay(&stack, "/v1/keys/treasury/disable", kept_body, &kept).await, (200, "ok".into()));
    assert_eq!(code(as_alice.sign_with_key("treasury", &request).await), (409, "key_disabled".into()));
    as_alice_admin.set_key_state_approved("treasury", "enable", &[&bob]).await.expect("enabled again");
    assert_eq!(
        replay(&stack, "/v1/keys/treasury/disable", kept_body, &kept).await,
        (409, "policy_version_conflict".into()),
        "an owners' request applies once"
    );
    // A signature for one action is not spent on another.
    let enable_body = br#"{"action":"enable","version":5}"#;
    let enable = alice.headers(Operation::Disable, "default", "treasury", enable_body, &[&bob]).unwrap();
    assert_eq!(
        replay(&stack, "/v1/keys/treasury/disable", enable_body, &enable).await,
        (400, "request_mismatch".into())
    );
    as_alice.sign_with_key("treasury", &request).await.expect("still enabled");

    // A deletion: unusable at once, whatever the host's row says; cancelled, the key is disabled.
    let deleted = as_alice_admin.delete_key_approved("treasury", 3, &[&bob]).await.unwrap();
    assert_eq!(deleted.state, "pending_deletion");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let due = deleted.deletion_due.expect("a due time");
    assert!(due.abs_diff(now + 3 * 86_400) < 120, "the 3 days the owners signed, not the gateway's setting: {due}");
    assert_eq!(host_enables(), 1);
    assert_eq!(code(as_alice.sign_with_key("treasury", &request).await), (409, "key_pending_deletion".into()));
    let cancelled = as_alice_admin.set_key_state_approved("treasury", "cancel-deletion", &[&bob]).await.unwrap();
    assert_eq!(cancelled.state, "disabled");

    // The host withholds the key's rows: a rollback, refused.
    assert!(sql(&stack, "DELETE FROM key_policies WHERE key_name = 'treasury'", &[]) >= 1);
    assert_eq!(host_enables(), 1);
    assert_eq!(code(as_alice.sign_with_key("treasury", &request).await), (502, "policy_rollback".into()));
}
