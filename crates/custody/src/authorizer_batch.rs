//! A batch of signatures with one key, authorized by one signed request over the whole batch
//! (`POST /v1/keys/{name}/sign-batch`'s body; for the master key, `POST /v1/sign-batch`'s). The enclave parses the batch and compares every
//! item with the one the gateway sent, in order, so a host cannot add, drop, reorder or change
//! an item; one audit record covers the batch and every signature carries its receipt.

use keyward_authz::Operation;
use keyward_client::{api::SignBatchRequest, keys::SignWithKeyBatch};
use keyward_proto::{AuditReceipt, ErrorCode, ErrorReply, KeySignBatchSigned, PolicyRow, SignBatchSigned};

use super::{Authorizer, Subject, item_check, master_item_check, refuse};
use crate::policies::Tagger;

impl Authorizer {
    /// Checks a signed batch; `Ok` carries the receipt of its one audit record.
    pub fn authorize_sign_batch(
        &self,
        batch: &KeySignBatchSigned,
        now: u64,
        tag: Tagger<'_>,
    ) -> Result<AuditReceipt, ErrorReply> {
        let Some(first) = batch.items.first() else {
            return Err(refuse(ErrorCode::BadRequest, "a signed batch has at least one item"));
        };
        let name = &first.row.identity.name;
        if batch.items.iter().any(|item| &item.row.identity.name != name || item.auth.is_some()) {
            return Err(refuse(
                ErrorCode::BadRequest,
                "a signed batch signs with one key, under the batch's authorization only",
            ));
        }
        let version = first.row.identity.version.get();
        let same_version = batch.items.iter().all(|item| item.row.identity.version.get() == version);
        let subject = Subject::key(Operation::Sign, name, same_version.then_some(version));
        self.authorize(&subject, Some(&batch.auth), now, tag, |auth, _| {
            batch_check(&auth.body, batch).map_err(|m| refuse(ErrorCode::RequestMismatch, m))
        })
    }
}

impl Authorizer {
    /// Checks a signed batch for the master key of enclave `enclave_id` (keystore
    /// [`MASTER_KEYSTORE`], the empty key name).
    pub fn authorize_master_sign_batch(
        &self,
        batch: &SignBatchSigned,
        enclave_id: Option<u32>,
        now: u64,
    ) -> Result<AuditReceipt, ErrorReply> {
        if batch.items.is_empty() || batch.items.iter().any(|item| item.auth.is_some()) {
            return Err(refuse(
                ErrorCode::BadRequest,
                "a signed batch has at least one item, under the batch's authorization only",
            ));
        }
        let subject = Subject::master();
        let no_policies = |_: &PolicyRow| Err(refuse(ErrorCode::PolicyTampered, "master keys have no stored policies"));
        self.authorize(&subject, Some(&batch.auth), now, &no_policies, |auth, _| {
            master_batch_check(&auth.body, batch, enclave_id).map_err(|m| refuse(ErrorCode::RequestMismatch, m))
        })
    }
}

fn master_batch_check(body: &[u8], batch: &SignBatchSigned, enclave_id: Option<u32>) -> Result<(), String> {
    let signed: SignBatchRequest =
        serde_json::from_slice(body).map_err(|e| format!("the signed body is not a batch of signing requests: {e}"))?;
    if signed.enclave_id.is_some_and(|id| Some(id) != enclave_id) {
        return Err("the signed body names another enclave".into());
    }
    if signed.items.len() != batch.items.len() {
        return Err(format!("the principal signed a batch of {} items, not {}", signed.items.len(), batch.items.len()));
    }
    for (i, (asked, sent)) in signed.items.iter().zip(&batch.items).enumerate() {
        master_item_check(&asked.digest_hex, &asked.scheme, sent).map_err(|m| format!("item {i}: {m}"))?;
    }
    Ok(())
}

fn batch_check(body: &[u8], batch: &KeySignBatchSigned) -> Result<(), String> {
    let signed: SignWithKeyBatch =
        serde_json::from_slice(body).map_err(|e| format!("the signed body is not a batch of signing requests: {e}"))?;
    if signed.items.len() != batch.items.len() {
        return Err(format!("the principal signed a batch of {} items, not {}", signed.items.len(), batch.items.len()));
    }
    for (i, (asked, sent)) in signed.items.iter().zip(&batch.items).enumerate() {
        item_check(asked, sent).map_err(|m| format!("item {i}: {m}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use keyward_proto::{Digest, KeySign, MASTER_KEYSTORE, SignPayload};

    use super::super::policy_tests::{auth, authorizer};
    use super::super::tests::{request_for, tagger};
    use super::*;

    const NOW: u64 = 1_764_547_200;

    fn item(digest: u8) -> KeySign {
        let mut item = request_for("treasury");
        item.payload = SignPayload::Digest(Digest([digest; 32]));
        item
    }

    fn body(digests: &[u8]) -> String {
        let items: Vec<String> =
            digests.iter().map(|d| format!(r#"{{"digest_hex":"{}"}}"#, hex::encode([*d; 32]))).collect();
        format!(r#"{{"items":[{}]}}"#, items.join(","))
    }

    /// The batch `sent` by the host, under `signer`'s signature over the batch of `signed`.
    fn check(signer: u8, signed: &str, sent: Vec<KeySign>) -> Result<(), ErrorCode> {
        let a = authorizer();
        let batch =
            KeySignBatchSigned { items: sent, auth: auth(Operation::Sign, "treasury", signed, &[signer], 1, None) };
        a.authorize_sign_batch(&batch, NOW, &tagger()).map(|_| ()).map_err(|e| e.code)
    }

    #[test]
    fn a_batch_is_signed_only_as_the_principal_signed_it() {
        let signed = body(&[1, 2, 3]);
        assert_eq!(check(1, &signed, vec![item(1), item(2), item(3)]), Ok(()), "the owner's batch");
        assert_eq!(check(4, &signed, vec![item(1), item(2), item(3)]), Err(ErrorCode::NotPermitted), "a stranger");
        let mismatch = Err(ErrorCode::RequestMismatch);
        assert_eq!(check(1, &signed, vec![item(1), item(2), item(9)]), mismatch, "a changed item");
        assert_eq!(check(1, &signed, vec![item(1), item(3), item(2)]), mismatch, "reordered");
        assert_eq!(check(1, &signed, vec![item(1), item(2)]), mismatch, "an item dropped");
        assert_eq!(check(1, &signed, vec![item(1), item(2), item(3), item(3)]), mismatch, "an item added");
        let single = format!(r#"{{"digest_hex":"{}"}}"#, hex::encode([1u8; 32]));
        assert_eq!(check(1, &single, vec![item(1)]), mismatch, "a single request's signature");
        let mut other_key = item(3);
        other_key.row.identity.name = keyward_proto::KeyName::parse("payroll").unwrap();
        assert_eq!(check(1, &signed, vec![item(1), item(2), other_key]), Err(ErrorCode::BadRequest));
        let mut own_auth = item(3);
        own_auth.auth = Some(auth(Operation::Sign, "treasury", &signed, &[1], 2, None));
        assert_eq!(check(1, &signed, vec![item(1), item(2), own_auth]), Err(ErrorCode::BadRequest));
        assert_eq!(check(1, &body(&[]), vec![]), Err(ErrorCode::BadRequest), "an empty batch");
    }

    #[test]
    fn a_master_batch_is_signed_only_as_the_principal_signed_it() {
        use keyward_proto::{Scheme, SignRequest};
        let item = |d: u8, scheme| SignRequest { digest: Digest([d; 32]), scheme, auth: None };
        let check = |signer: u8, body: &str, items: Vec<SignRequest>, enclave: Option<u32>| {
            let a = authorizer();
            let to_sign = keyward_authz::RequestToSign {
                operation: Operation::Sign,
                keystore: MASTER_KEYSTORE.into(),
                key: String::new(),
                body_digest: keyward_authz::RequestToSign::digest(body.as_bytes()),
                request_id: [5; 16],
                timestamp: NOW,
            };
            let mut auth = auth(Operation::Sign, "", body, &[signer], 5, None);
            auth.keystore = MASTER_KEYSTORE.into();
            let pair = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&[signer; 32]).unwrap();
            auth.requester.signature = pair.sign(&to_sign.canonical().unwrap()).as_ref().to_vec();
            let batch = SignBatchSigned { items, auth };
            a.authorize_master_sign_batch(&batch, enclave, NOW).map(|_| ()).map_err(|e| e.code)
        };
        let body = format!(
            r#"{{"items":[{{"digest_hex":"{}","scheme":"ecdsa"}},{{"digest_hex":"{}","scheme":"bip340"}}],"enclave_id":1}}"#,
            hex::encode([1u8; 32]),
            hex::encode([2u8; 32])
        );
        let sent = || vec![item(1, Scheme::Ecdsa), item(2, Scheme::Bip340)];
        assert_eq!(check(1, &body, sent(), Some(1)), Ok(()), "the owner's batch");
        assert_eq!(check(4, &body, sent(), Some(1)), Err(ErrorCode::NotPermitted), "a stranger");
        let mismatch = Err(ErrorCode::RequestMismatch);
        assert_eq!(check(1, &body, sent(), Some(2)), mismatch, "another enclave");
        assert_eq!(
            check(1, &body, vec![item(1, Scheme::Ecdsa), item(2, Scheme::Ecdsa)], Some(1)),
            mismatch,
            "a scheme"
        );
        assert_eq!(check(1, &body, vec![item(1, Scheme::Ecdsa)], Some(1)), mismatch, "an item dropped");
        assert_eq!(check(1, &body, vec![], Some(1)), Err(ErrorCode::BadRequest), "an empty batch");
    }

    #[test]
    fn a_batch_signature_does_not_sign_a_single_request() {
        let a = authorizer();
        let mut single = item(1);
        single.auth = Some(auth(Operation::Sign, "treasury", &body(&[1]), &[1], 3, None));
        assert_eq!(
            a.authorize_sign(&single, NOW, &tagger()).map(|_| ()).map_err(|e| e.code),
            Err(ErrorCode::RequestMismatch)
        );
    }
}
