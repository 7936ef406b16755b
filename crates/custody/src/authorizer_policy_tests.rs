//! Stored key policies: who sets them (the quorum), how they extend the owners' policy, and what
//! a host that edits, moves, withholds or rolls back their rows achieves (nothing but refusals).

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use keyward_proto::{ErrorCode, PolicyRow, PolicySet};

use super::tests::tagger;
use super::*;

const NOW: u64 = 1_764_547_200;
const KEY: &str = "treasury";

fn pair(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
}

pub(super) fn id(seed: u8) -> String {
    Principal::new(PrincipalKey::ed25519(pair(seed).public_key().as_ref()).unwrap()).id().to_string()
}

/// Owners 1 and 2, both needed for administration.
pub(super) fn authorizer() -> Authorizer {
    let principals =
        [1, 2].iter().map(|s| Principal::new(PrincipalKey::ed25519(pair(*s).public_key().as_ref()).unwrap()));
    Authorizer::new(Owners { principals: principals.collect(), quorum: 2 }, pair(99)).unwrap()
}

fn sig(signer: &Ed25519KeyPair, canonical: &[u8]) -> PrincipalSignature {
    PrincipalSignature {
        algorithm: "ed25519".into(),
        public_key: signer.public_key().as_ref().to_vec(),
        signature: signer.sign(canonical).as_ref().to_vec(),
    }
}

/// `operation` on `key` with `body`, by `signers[0]` approved by the rest, with the host's row.
pub(super) fn auth(
    operation: Operation,
    key: &str,
    body: &str,
    signers: &[u8],
    request_id: u8,
    policy: Option<PolicyRow>,
) -> Authorization {
    auth_in(DEFAULT_KEYSTORE, operation, key, body, signers, request_id, policy)
}

/// [`auth`] for a key (or, empty, the whole) of keystore `keystore`.
pub(super) fn auth_in(
    keystore: &str,
    operation: Operation,
    key: &str,
    body: &str,
    signers: &[u8],
    request_id: u8,
    policy: Option<PolicyRow>,
) -> Authorization {
    let to_sign = RequestToSign {
        operation,
        keystore: keystore.into(),
        key: key.into(),
        body_digest: RequestToSign::digest(body.as_bytes()),
        request_id: [request_id; 16],
        timestamp: NOW,
    };
    let canonical = to_sign.canonical().unwrap();
    Authorization {
        keystore: keystore.into(),
        body: body.as_bytes().to_vec(),
        request_id: [request_id; 16],
        timestamp: NOW,
        requester: sig(&pair(signers[0]), &canonical),
        approvals: signers[1..].iter().map(|s| sig(&pair(*s), &canonical)).collect(),
        policy,
        keystore_policy: None,
        channel: None,
    }
}

pub(super) fn policy(version: u64, rules: &[(&[u8], &str, u8)]) -> String {
    let rules: Vec<String> = rules
        .iter()
        .map(|(who, ops, quorum)| {
            let who: Vec<String> = who.iter().map(|s| format!("\"{}\"", id(*s))).collect();
            format!(r#"{{"principals":[{}],"operations":[{ops}],"quorum":{quorum}}}"#, who.join(","))
        })
        .collect();
    format!(r#"{{"version":{version},"rules":[{}]}}"#, rules.join(","))
}

fn set(
    a: &Authorizer,
    body: &str,
    signers: &[u8],
    request_id: u8,
    current: Option<PolicyRow>,
) -> Result<PolicyRow, ErrorCode> {
    let request = PolicySet {
        keystore: DEFAULT_KEYSTORE.into(),
        key: KEY.into(),
        auth: Some(auth(Operation::SetPolicy, KEY, body, signers, request_id, current)),
    };
    a.authorize_set_policy(&request, NOW, &tagger()).map(|s| s.row).map_err(|e| e.code)
}

/// A signing request by `signer` on the key, with the host's row.
fn sign(a: &Authorizer, signer: u8, row: Option<PolicyRow>) -> Result<(), ErrorCode> {
    let mut request = super::tests::request_for(KEY);
    let body = format!(r#"{{"digest_hex":"{}"}}"#, "11".repeat(32));
    request.auth = Some(auth(Operation::Sign, KEY, &body, &[signer], 50 + signer, row));
    a.authorize_sign(&request, NOW, &tagger()).map(|_| ()).map_err(|e| e.code)
}

#[test]
fn only_the_quorum_sets_a_policy_and_it_grants_what_it_says() {
    let a = authorizer();
    let grant_carol = policy(1, &[(&[3], "\"sign\"", 1)]);
    assert_eq!(sign(&a, 3, None), Err(ErrorCode::NotPermitted), "Carol before any policy");
    assert_eq!(set(&a, &grant_carol, &[1], 1, None), Err(ErrorCode::QuorumNotMet), "one owner alone");
    assert_eq!(set(&a, &grant_carol, &[3], 2, None), Err(ErrorCode::NotPermitted), "Carol grants herself");
    assert_eq!(set(&a, &grant_carol, &[1, 4], 3, None), Err(ErrorCode::QuorumNotMet), "an outsider's approval");
    assert_eq!(set(&a, "{\"version\":1}", &[1, 2], 4, None), Err(ErrorCode::InvalidPolicy));
    assert_eq!(set(&a, &policy(2, &[(&[3], "\"sign\"", 1)]), &[1, 2], 5, None), Err(ErrorCode::PolicyVersionConflict));
    let v1 = set(&a, &grant_carol, &[1, 2], 6, None).unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(sign(&a, 3, Some(v1.clone())), Ok(()), "Carol under version 1");
    assert_eq!(sign(&a, 4, Some(v1.clone())), Err(ErrorCode::NotPermitted), "Mallory under version 1");
    assert_eq!(sign(&a, 1, Some(v1.clone())), Ok(()), "the owners keep their rights");

    // A quorum rule of the key's own: Carol and Dave together.
    let together = policy(2, &[(&[3, 4], "\"sign\"", 2)]);
    let v2 = set(&a, &together, &[1, 2], 7, Some(v1.clone())).unwrap();
    assert_eq!(sign(&a, 3, Some(v2.clone())), Err(ErrorCode::QuorumNotMet), "the key's rule reports the closest miss");

    // Every decision was audited, refusals included.
    assert_eq!(a.audit_records(0, 100).len(), 12);
}

#[test]
fn a_host_that_edits_moves_withholds_or_rolls_back_policy_rows_is_refused() {
    let a = authorizer();
    let v1 = set(&a, &policy(1, &[(&[3], "\"sign\"", 1)]), &[1, 2], 1, None).unwrap();
    let v2 = set(&a, &policy(2, &[]), &[1, 2], 2, Some(v1.clone())).unwrap();
    assert_eq!(sign(&a, 3, Some(v2.clone())), Err(ErrorCode::NotPermitted), "version 2 revoked Carol");
    assert_eq!(sign(&a, 3, Some(v1.clone())), Err(ErrorCode::PolicyRollback), "the host presents version 1 again");
    assert_eq!(sign(&a, 3, None), Err(ErrorCode::PolicyRollback), "the host withholds the row");

    let mut edited = v2.clone();
    edited.body = policy(2, &[(&[4], "\"sign\"", 1)]).into_bytes();
    assert_eq!(sign(&a, 4, Some(edited.clone())), Err(ErrorCode::PolicyTampered), "a re-keyed principal");
    let mut forged = v2.clone();
    forged.version = 3;
    forged.body = policy(3, &[(&[4], "\"sign\"", 1)]).into_bytes();
    assert_eq!(sign(&a, 4, Some(forged)), Err(ErrorCode::PolicyTampered), "a forged newer version");
    // Another key's valid row, presented as it is and renamed to this key.
    let body = policy(3, &[(&[4], "\"sign\"", 1)]).into_bytes();
    let mut other =
        PolicyRow { keystore: DEFAULT_KEYSTORE.into(), key: "treasury-2".into(), version: 3, body, tag: [0; 32] };
    other.tag = tagger()(&other).unwrap();
    assert_eq!(sign(&a, 4, Some(other.clone())), Err(ErrorCode::PolicyTampered), "another key's row");
    other.key = KEY.into();
    assert_eq!(sign(&a, 4, Some(other)), Err(ErrorCode::PolicyTampered), "another key's row, renamed");

    // A replayed set-policy finds the version it was made for gone.
    let replay_current = set(&a, &policy(2, &[]), &[1, 2], 2, Some(v1.clone()));
    assert_eq!(replay_current, Err(ErrorCode::PolicyRollback));
    assert_eq!(set(&a, &policy(2, &[]), &[1, 2], 2, Some(v2.clone())), Err(ErrorCode::PolicyVersionConflict));

    // A fresh enclave (same root) has seen nothing: an edited row is still refused; an old
    // valid one is accepted. This is the limit docs/security.md describes.
    let fresh = authorizer();
    assert_eq!(sign(&fresh, 4, Some(edited)), Err(ErrorCode::PolicyTampered));
    assert_eq!(sign(&fresh, 3, Some(v1)), Ok(()), "an old version, presented to a fresh enclave");
}
