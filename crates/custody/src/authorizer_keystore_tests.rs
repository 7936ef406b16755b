//! Keystore policies (the policy row whose key name is empty): grants on every key of the
//! keystore and on creating keys in it, set by the owners' quorum, and rows a host cannot swap
//! with a key's, withhold or roll back.

use keyward_proto::{ErrorCode, PolicyRow, PolicySet};

use super::policy_tests::{auth, authorizer, policy};
use super::tests::tagger;
use super::*;

const NOW: u64 = 1_764_547_200;

/// The rows a host presents with a request: the key's and the keystore's.
#[derive(Clone, Default)]
struct Rows {
    key: Option<PolicyRow>,
    keystore: Option<PolicyRow>,
}

fn with(mut auth: Authorization, rows: &Rows) -> Authorization {
    auth.policy = rows.key.clone();
    auth.keystore_policy = rows.keystore.clone();
    auth
}

/// Sets the policy of `key` (empty: the keystore's).
fn set(
    a: &Authorizer,
    key: &str,
    body: &str,
    signers: &[u8],
    request_id: u8,
    rows: &Rows,
) -> Result<PolicyRow, ErrorCode> {
    let auth = with(auth(Operation::SetPolicy, key, body, signers, request_id, None), rows);
    let request = PolicySet { keystore: DEFAULT_KEYSTORE.into(), key: key.into(), auth: Some(auth) };
    a.authorize_set_policy(&request, NOW, &tagger()).map(|s| s.row).map_err(|e| e.code)
}

fn sign(a: &Authorizer, key: &str, signer: u8, rows: &Rows) -> Result<(), ErrorCode> {
    let mut request = super::tests::request_for(key);
    let body = format!(r#"{{"digest_hex":"{}"}}"#, "11".repeat(32));
    request.auth = Some(with(auth(Operation::Sign, key, &body, &[signer], 50 + signer, None), rows));
    a.authorize_sign(&request, NOW, &tagger()).map(|_| ()).map_err(|e| e.code)
}

/// Creates `names` (one: `POST /v1/keys`; more: a batch, signed with an empty key name).
fn create(a: &Authorizer, names: &[&str], signer: u8, request_id: u8, rows: &Rows) -> Result<(), ErrorCode> {
    let (key, keystore) = (rows.key.as_ref(), rows.keystore.as_ref());
    super::tenant_tests::create_as(a, DEFAULT_KEYSTORE, (names, names), signer, request_id, (key, keystore))
}

#[test]
fn a_keystore_policy_grants_on_every_key_and_on_creation() {
    let a = authorizer();
    let none = Rows::default();
    let grant = policy(1, &[(&[3], r#""sign","create""#, 1)]);
    assert_eq!(create(&a, &["svc-1"], 3, 1, &none), Err(ErrorCode::NotPermitted), "Carol before any policy");
    assert_eq!(set(&a, "", &grant, &[1], 2, &none), Err(ErrorCode::QuorumNotMet), "one owner alone");
    assert_eq!(set(&a, "", &grant, &[3], 3, &none), Err(ErrorCode::NotPermitted), "Carol grants herself");
    let v1 = set(&a, "", &grant, &[1, 2], 4, &none).expect("the owners' quorum");
    assert_eq!((v1.key.as_str(), v1.version), ("", 1));
    let rows = Rows { key: None, keystore: Some(v1.clone()) };

    for key in ["treasury", "payroll"] {
        assert_eq!(sign(&a, key, 3, &rows), Ok(()), "Carol signs with {key}");
        assert_eq!(sign(&a, key, 4, &rows), Err(ErrorCode::NotPermitted), "Mallory with {key}");
    }
    assert_eq!(create(&a, &["svc-1"], 3, 10, &rows), Ok(()), "Carol creates a key");
    assert_eq!(create(&a, &["svc-2", "svc-3"], 3, 11, &rows), Ok(()), "and a batch");
    assert_eq!(create(&a, &["svc-4"], 4, 12, &rows), Err(ErrorCode::NotPermitted), "Mallory does not");
    // Signing and creating are not administration: Carol changes no policy.
    let carols_own = policy(2, &[(&[3, 4], r#""sign","create","set-policy""#, 1)]);
    assert_eq!(set(&a, "", &carols_own, &[3], 13, &rows), Err(ErrorCode::NotPermitted));
    let key_grant = policy(1, &[(&[4], r#""sign""#, 1)]);
    assert_eq!(set(&a, "treasury", &key_grant, &[3], 14, &rows), Err(ErrorCode::NotPermitted));

    // Key and keystore grants add up: Mallory by the key's policy, Carol by the keystore's.
    let k1 = set(&a, "treasury", &key_grant, &[1, 2], 15, &rows).expect("a key policy beside the keystore's");
    let both = Rows { key: Some(k1), keystore: Some(v1.clone()) };
    assert_eq!(sign(&a, "treasury", 4, &both), Ok(()));
    assert_eq!(sign(&a, "treasury", 3, &both), Ok(()));

    // Version 2 revokes Carol; the host cannot bring version 1 back, nor withhold the row.
    let v2 = set(&a, "", &policy(2, &[]), &[1, 2], 16, &rows).expect("version 2");
    let revoked = Rows { keystore: Some(v2), ..both.clone() };
    assert_eq!(sign(&a, "treasury", 3, &revoked), Err(ErrorCode::NotPermitted), "revoked");
    let new_key = Rows { key: None, ..revoked.clone() };
    assert_eq!(create(&a, &["svc-5"], 3, 17, &new_key), Err(ErrorCode::NotPermitted), "revoked");
    // treasury's row presented for another key is refused, not ignored.
    assert_eq!(create(&a, &["svc-5"], 1, 18, &revoked), Err(ErrorCode::PolicyTampered));
    assert_eq!(sign(&a, "treasury", 3, &both), Err(ErrorCode::PolicyRollback), "version 1 again");
    let withheld = Rows { keystore: None, ..both.clone() };
    assert_eq!(sign(&a, "treasury", 1, &withheld), Err(ErrorCode::PolicyRollback), "the row withheld");
    assert_eq!(sign(&a, "treasury", 1, &revoked), Ok(()), "the owners keep their rights");
}

#[test]
fn key_and_keystore_rows_cannot_stand_in_for_each_other() {
    let a = authorizer();
    let none = Rows::default();
    let ks = set(&a, "", &policy(1, &[(&[3], r#""sign""#, 1)]), &[1, 2], 1, &none).unwrap();
    let only_keystore = Rows { key: None, keystore: Some(ks.clone()) };
    let key = set(&a, "treasury", &policy(1, &[(&[4], r#""sign""#, 1)]), &[1, 2], 2, &only_keystore).unwrap();

    // The key's row where the keystore's belongs, and the other way round.
    let swapped = Rows { key: Some(ks.clone()), keystore: Some(key.clone()) };
    assert_eq!(sign(&a, "treasury", 4, &swapped), Err(ErrorCode::PolicyTampered));
    let doubled = Rows { key: Some(key.clone()), keystore: Some(key.clone()) };
    assert_eq!(sign(&a, "treasury", 4, &doubled), Err(ErrorCode::PolicyTampered));
    // The key's row renamed to the keystore's (its tag covers the key name).
    let mut renamed = key.clone();
    renamed.key = String::new();
    let fresh = authorizer();
    let as_keystore = Rows { key: None, keystore: Some(renamed) };
    assert_eq!(sign(&fresh, "payroll", 4, &as_keystore), Err(ErrorCode::PolicyTampered), "a fresh enclave too");
    // Positive control: the rows where they belong.
    let right = Rows { key: Some(key), keystore: Some(ks) };
    assert_eq!(sign(&a, "treasury", 4, &right), Ok(()));
    assert_eq!(sign(&a, "treasury", 3, &right), Ok(()));
}

/// How the owners', the key's and the keystore's decisions combine: any allow wins; otherwise
/// the closest miss (a quorum short beats no grant), the owners' first, then the key's.
#[test]
fn the_combination_table() {
    use keyward_authz::{Decision::*, DenyReason::*};
    let short = |have, need| Deny(QuorumNotMet { have, need });
    let cases = [
        (Allow, vec![], Allow),
        (Deny(NotPermitted), vec![], Deny(NotPermitted)),
        (Deny(NotPermitted), vec![Allow], Allow),
        (Deny(NotPermitted), vec![Deny(NotPermitted), Allow], Allow),
        (short(1, 2), vec![Allow], Allow),
        (Deny(NotPermitted), vec![short(1, 3)], short(1, 3)),
        (Deny(NotPermitted), vec![short(1, 3), short(2, 3)], short(1, 3)),
        (Deny(NotPermitted), vec![Deny(NotPermitted), short(2, 3)], short(2, 3)),
        (short(1, 2), vec![short(2, 3), Deny(NotPermitted)], short(1, 2)),
        (Deny(NotPermitted), vec![Deny(NotPermitted), Deny(NotPermitted)], Deny(NotPermitted)),
    ];
    for (owners, stored, expected) in cases {
        let shown = format!("{owners:?} with {stored:?}");
        assert_eq!(combine(owners, stored), expected, "{shown}");
    }
}
