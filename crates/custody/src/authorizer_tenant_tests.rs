//! Keystore isolation: a keystore's controllers (the principals its policy grants) use and
//! create keys in that keystore only, whatever the host presents. The keystore of a key is the
//! prefix of its name, which the key's wrapped row binds, so the enclave never takes it from
//! the host.

use keyward_proto::{ErrorCode, KeyCreate, KeyFlags, KeyIdentity, KeyName, KeyType, KeyVersion, PolicyRow, PolicySet};

use super::policy_tests::{auth_in, authorizer, policy};
use super::tests::{request_for, tagger};
use super::*;

const NOW: u64 = 1_764_547_200;
const CAROL: u8 = 3;
const DAVE: u8 = 4;

/// The owners (1 and 2) grant `grantee` sign and create in `keystore`.
fn controllers(a: &Authorizer, keystore: &str, grantee: u8, request_id: u8) -> PolicyRow {
    let body = policy(1, &[(&[grantee], r#""sign","create""#, 1)]);
    let auth = auth_in(keystore, Operation::SetPolicy, "", &body, &[1, 2], request_id, None);
    let request = PolicySet { keystore: keystore.into(), key: String::new(), auth: Some(auth) };
    a.authorize_set_policy(&request, NOW, &tagger()).expect("the owners' quorum sets a keystore policy").row
}

/// Signs with `name` (its row's, as the host presents it), by `signer`, who signed for
/// `signed_keystore`/`signed_key`, with `keystore_row` as the keystore's policy.
fn sign_as(
    a: &Authorizer,
    name: &str,
    (signed_keystore, signed_key): (&str, &str),
    signer: u8,
    request_id: u8,
    keystore_row: Option<&PolicyRow>,
) -> Result<(), ErrorCode> {
    let mut request = request_for(name);
    let body = format!(r#"{{"digest_hex":"{}"}}"#, "11".repeat(32));
    let mut auth = auth_in(signed_keystore, Operation::Sign, signed_key, &body, &[signer], request_id, None);
    auth.keystore_policy = keystore_row.cloned();
    request.auth = Some(auth);
    a.authorize_sign(&request, NOW, &tagger()).map(|_| ()).map_err(|e| e.code)
}

/// Signs with `name` as its principal signed it (its own keystore and name).
fn sign(a: &Authorizer, name: &str, signer: u8, request_id: u8, row: Option<&PolicyRow>) -> Result<(), ErrorCode> {
    let parsed = KeyName::parse(name).unwrap();
    sign_as(a, name, (parsed.keystore(), parsed.local()), signer, request_id, row)
}

/// Creates `made` (full names, as the host sends them) by `signer`, who signed a creation of
/// `asked` (names within `keystore`; more than one: a batch), with the host's key and
/// keystore policy rows.
pub(super) fn create_as(
    a: &Authorizer,
    keystore: &str,
    (asked, made): (&[&str], &[&str]),
    signer: u8,
    request_id: u8,
    (key_row, keystore_row): (Option<&PolicyRow>, Option<&PolicyRow>),
) -> Result<(), ErrorCode> {
    let item = |name: &str| format!(r#"{{"name":"{name}","type":"secp256k1"}}"#);
    let (key, body) = match asked {
        [one] => (*one, item(one)),
        _ => ("", format!(r#"{{"keys":[{}]}}"#, asked.iter().map(|n| item(n)).collect::<Vec<_>>().join(","))),
    };
    let keys = made
        .iter()
        .map(|name| KeyIdentity {
            name: KeyName::parse(name).unwrap(),
            version: KeyVersion::FIRST,
            key_type: KeyType::Secp256k1,
            flags: KeyFlags { exportable: false, origin: keyward_proto::Origin::Generated },
        })
        .collect();
    let mut auth = auth_in(keystore, Operation::Create, key, &body, &[signer], request_id, key_row.cloned());
    auth.keystore_policy = keystore_row.cloned();
    let request = KeyCreate { keys, auth: Some(Box::new(auth)) };
    a.authorize_create(&request, NOW, &tagger()).map(|_| ()).map_err(|e| e.code)
}

/// [`create_as`] with the keystore's row only.
fn create(
    a: &Authorizer,
    keystore: &str,
    asked: &[&str],
    made: &[&str],
    signer: u8,
    request_id: u8,
    row: Option<&PolicyRow>,
) -> Result<(), ErrorCode> {
    create_as(a, keystore, (asked, made), signer, request_id, (None, row))
}

#[test]
fn a_keystores_controllers_use_its_keys_and_no_others() {
    let a = authorizer();
    let acme = controllers(&a, "acme", CAROL, 1);
    let beta = controllers(&a, "beta", DAVE, 2);
    assert_eq!((acme.keystore.as_str(), acme.key.as_str()), ("acme", ""));

    // principal × key → outcome, each with the keystore's own row as an honest host sends it.
    type Case<'a> = (u8, &'a str, Option<&'a PolicyRow>, Result<(), ErrorCode>);
    let cases: [Case<'_>; 8] = [
        (CAROL, "acme/treasury", Some(&acme), Ok(())),
        (DAVE, "acme/treasury", Some(&acme), Err(ErrorCode::NotPermitted)),
        (DAVE, "beta/treasury", Some(&beta), Ok(())),
        (CAROL, "beta/treasury", Some(&beta), Err(ErrorCode::NotPermitted)),
        (CAROL, "treasury", None, Err(ErrorCode::NotPermitted)),
        (DAVE, "treasury", None, Err(ErrorCode::NotPermitted)),
        // The owners' own grants cover every keystore.
        (1, "acme/treasury", Some(&acme), Ok(())),
        (1, "beta/treasury", Some(&beta), Ok(())),
    ];
    for (i, (signer, name, row, expected)) in cases.into_iter().enumerate() {
        assert_eq!(sign(&a, name, signer, 10 + i as u8, row), expected, "principal {signer} signs with {name}");
    }
    assert_eq!(create(&a, "acme", &["new"], &["acme/new"], CAROL, 30, Some(&acme)), Ok(()));
    assert_eq!(create(&a, "acme", &["x", "y"], &["acme/x", "acme/y"], CAROL, 31, Some(&acme)), Ok(()));
    assert_eq!(create(&a, "beta", &["new"], &["beta/new"], CAROL, 32, Some(&beta)), Err(ErrorCode::NotPermitted));
    assert_eq!(create(&a, "default", &["new"], &["new"], CAROL, 33, None), Err(ErrorCode::NotPermitted));
}

#[test]
fn a_host_cannot_carry_a_request_or_a_row_into_another_keystore() {
    let a = authorizer();
    let acme = controllers(&a, "acme", CAROL, 1);
    let beta = controllers(&a, "beta", DAVE, 2);

    // Carol's request for acme/treasury, with beta/treasury's row (the same name within its
    // keystore) or the default keystore's treasury: the keystore she signed is not the row's.
    assert_eq!(
        sign_as(&a, "beta/treasury", ("acme", "treasury"), CAROL, 10, Some(&acme)),
        Err(ErrorCode::NotPermitted)
    );
    assert_eq!(sign_as(&a, "treasury", ("acme", "treasury"), CAROL, 11, Some(&acme)), Err(ErrorCode::NotPermitted));
    // Even by the owners: a signature for one keystore never works in another.
    assert_eq!(sign_as(&a, "beta/treasury", ("acme", "treasury"), 1, 12, Some(&beta)), Err(ErrorCode::NotPermitted));
    // acme's policy row presented as beta's keystore policy: its tag binds the keystore.
    let mut moved = acme.clone();
    moved.keystore = "beta".into();
    assert_eq!(sign(&a, "beta/treasury", CAROL, 13, Some(&moved)), Err(ErrorCode::PolicyTampered));
    assert_eq!(sign(&a, "beta/treasury", CAROL, 14, Some(&acme)), Err(ErrorCode::PolicyTampered), "as it is");
    let fresh = authorizer();
    assert_eq!(sign(&fresh, "beta/treasury", CAROL, 15, Some(&moved)), Err(ErrorCode::PolicyTampered), "fresh");

    // Creations: Carol's signed acme creation made in beta, or under another name, or a batch
    // that strays into another keystore.
    assert_eq!(create(&a, "acme", &["new"], &["beta/new"], CAROL, 20, Some(&beta)), Err(ErrorCode::NotPermitted));
    let renamed = create(&a, "acme", &["new"], &["acme/other"], CAROL, 21, Some(&acme));
    assert_eq!(renamed, Err(ErrorCode::BadRequestSignature), "the canonical request names the key");
    let mixed = create(&a, "acme", &["x", "y"], &["acme/x", "beta/y"], CAROL, 22, Some(&acme));
    assert_eq!(mixed, Err(ErrorCode::BadRequest));
    assert_eq!(
        create(&a, "acme", &["x", "y"], &["acme/x", "acme/z"], CAROL, 23, Some(&acme)),
        Err(ErrorCode::RequestMismatch)
    );
    // Positive control: the same requests as signed.
    assert_eq!(create(&a, "acme", &["new"], &["acme/new"], CAROL, 24, Some(&acme)), Ok(()));
    assert_eq!(sign(&a, "beta/treasury", DAVE, 25, Some(&beta)), Ok(()));
}

#[test]
fn keystore_ids_are_checked_where_the_host_names_them() {
    let a = authorizer();
    let body = policy(1, &[(&[CAROL], r#""sign""#, 1)]);
    for keystore in ["master", "Acme", "", "a/b"] {
        let auth = auth_in(keystore, Operation::SetPolicy, "", &body, &[1, 2], 1, None);
        let request = PolicySet { keystore: keystore.into(), key: String::new(), auth: Some(auth) };
        let code = a.authorize_set_policy(&request, NOW, &tagger()).map(|_| ()).map_err(|e| e.code);
        assert_eq!(code, Err(ErrorCode::BadRequest), "keystore {keystore:?}");
    }
    let auth = auth_in("acme", Operation::SetPolicy, "a/b", &body, &[1, 2], 2, None);
    let request = PolicySet { keystore: "acme".into(), key: "a/b".into(), auth: Some(auth) };
    assert_eq!(
        a.authorize_set_policy(&request, NOW, &tagger()).map(|_| ()).map_err(|e| e.code),
        Err(ErrorCode::BadRequest)
    );
}
