//! One enclave's answers to the gateway's requests: the master key and the keyring behind one
//! dispatcher. The enclave binary adds the link's handshake and attestation documents (the
//! NSM's); everything else it answers comes from here, so the gateway's domain core can be
//! tested against this very code in one process.

use std::sync::Arc;

use keyward_proto::{
    AuditReceipt, AuditRecord, CryptOp, ErrorCode, ErrorReply, KeySignature, Request, Response, SignatureReply,
    fault::crash_point,
};

/// Audit records one `AuditRead` answers at most (a frame stays far below its limit).
pub const MAX_AUDIT_READ: usize = 1_000;

fn audit_record(r: keyward_authz::SignedRecord) -> AuditRecord {
    AuditRecord {
        seq: r.seq,
        time: r.entry.time,
        principal: r.entry.principal.map(|p| p.0),
        operation: r.entry.operation,
        keystore: r.entry.keystore,
        key: r.entry.key,
        version: r.entry.version,
        outcome: r.entry.outcome,
        request_digest: r.entry.request_digest,
        prev_hash: r.prev_hash,
        hash: r.hash,
        signature: r.signature,
    }
}

use crate::{Authorizer, DataKeySource, Keyring, Master, authorizer::now_unix, policies::Tagger};

/// The master key and keyring of one enclave, and its authorizer when it has owners.
pub struct EnclaveCore<D> {
    pub master: Arc<Master<D>>,
    pub keyring: Arc<Keyring<D>>,
    pub authorizer: Option<Arc<Authorizer>>,
}

impl<D: DataKeySource> std::fmt::Debug for EnclaveCore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnclaveCore").field("master", &self.master.status()).field("keyring", &self.keyring).finish()
    }
}

impl<D> Clone for EnclaveCore<D> {
    fn clone(&self) -> Self {
        EnclaveCore { master: self.master.clone(), keyring: self.keyring.clone(), authorizer: self.authorizer.clone() }
    }
}

impl<D: DataKeySource + 'static> EnclaveCore<D> {
    /// Answers `request`. The handshake (`Hello`, `Authenticate`) and `Attest` are the
    /// caller's: they are refused here.
    pub async fn handle(&self, request: Request) -> Result<Response, ErrorReply> {
        if let Some(authorizer) = &self.authorizer {
            return self.handle_authorized(authorizer.clone(), request).await;
        }
        self.dispatch(request).await
    }

    /// With owners: signing, key creation and rotation, and policy changes pass the authorizer
    /// first (every decision audited); operations whose signed path is not built yet are
    /// refused rather than left open to the host.
    async fn handle_authorized(&self, authorizer: Arc<Authorizer>, request: Request) -> Result<Response, ErrorReply> {
        match request {
            Request::KeySign(s) => {
                self.authorized(
                    authorizer,
                    s,
                    |a, s, now, tag| a.authorize_sign(s, now, tag),
                    |k, s, receipt| {
                        k.sign(s).map(|signature| {
                            Response::KeySignature(KeySignature { receipt: Some(receipt), ..signature })
                        })
                    },
                )
                .await
            }
            Request::KeySignBatch(items) => {
                let keyring = self.keyring.clone();
                blocking(move || {
                    let now = now_unix();
                    let tag = |row: &keyward_proto::PolicyRow| keyring.policy_tag(row);
                    let signed = items.iter().map(|s| {
                        let receipt = authorizer.authorize_sign(s, now, &tag)?;
                        keyring.sign(s).map(|signature| KeySignature { receipt: Some(receipt), ..signature })
                    });
                    Ok(Response::KeySignatures(signed.collect()))
                })
                .await
            }
            Request::KeySignBatchSigned(batch) => {
                self.authorized(
                    authorizer,
                    batch,
                    |a, b, now, tag| a.authorize_sign_batch(b, now, tag),
                    |k, batch, receipt| {
                        let signed = batch
                            .items
                            .iter()
                            .map(|s| k.sign(s).map(|signature| KeySignature { receipt: Some(receipt), ..signature }));
                        Ok(Response::KeySignatures(signed.collect()))
                    },
                )
                .await
            }
            Request::AuditRead(read) => {
                let max = usize::try_from(read.max).unwrap_or(usize::MAX).min(MAX_AUDIT_READ);
                let records = authorizer.audit_records(read.after, max).into_iter().map(audit_record).collect();
                Ok(Response::AuditRecords(records))
            }
            Request::Sign(s) => {
                let enclave_id = self.master.status().enclave_id.map(|id| id.0);
                let receipt = authorizer.authorize_master_sign(&s, enclave_id, now_unix())?;
                self.master
                    .sign(&s)
                    .map(|signature| Response::Signature(SignatureReply { receipt: Some(receipt), ..signature }))
            }
            Request::KeyCreate(c) => {
                let created = self
                    .authorized(
                        authorizer,
                        c,
                        |a, c, now, tag| a.authorize_create(c, now, tag),
                        |k, c, _| k.create(&c.keys).map(Response::WrappedKeys),
                    )
                    .await;
                crash_point("enclave:keys:created");
                created
            }
            Request::KeyStateSet(s) => {
                let keyring = self.keyring.clone();
                blocking(move || {
                    let sealed = authorizer.authorize_state_change(&s, now_unix(), &|row| keyring.policy_tag(row))?;
                    Ok(Response::PolicySealed(Box::new(sealed)))
                })
                .await
            }
            Request::PolicyCheck(c) => {
                let keyring = self.keyring.clone();
                blocking(move || {
                    authorizer.check_policy(&c, &|row| keyring.policy_tag(row))?;
                    Ok(Response::KeysChecked)
                })
                .await
            }
            Request::PolicySet(p) => {
                let keyring = self.keyring.clone();
                blocking(move || {
                    let sealed = authorizer.authorize_set_policy(&p, now_unix(), &|row| keyring.policy_tag(row))?;
                    Ok(Response::PolicySealed(Box::new(sealed)))
                })
                .await
            }
            // Stream segments carry the ticket of their stream's signed begin, not a signature.
            Request::KeyCrypt(c) if matches!(c.op, CryptOp::SealSegment { .. } | CryptOp::OpenSegment { .. }) => {
                let keyring = self.keyring.clone();
                blocking(move || {
                    authorizer.check_segment(&c, now_unix())?;
                    keyring.crypt(&c).map(Response::Crypt)
                })
                .await
            }
            Request::KeyCrypt(c) => {
                let streams = authorizer.clone();
                self.authorized(
                    authorizer,
                    c,
                    |a, c, now, tag| a.authorize_crypt(c, now, tag),
                    move |k, c, _| {
                        let output = k.crypt(c)?;
                        match c.op {
                            CryptOp::BeginSeal { .. } | CryptOp::BeginOpen { .. } => {
                                streams.stream_ticket(c, output, now_unix()).map(Response::Crypt)
                            }
                            _ => Ok(Response::Crypt(output)),
                        }
                    },
                )
                .await
            }
            Request::KeyExport(e) => {
                self.authorized(
                    authorizer,
                    e,
                    |a, e, now, tag| a.authorize_export(e, now, tag),
                    |k, e, _| k.export(e).map(Response::ExportedKey),
                )
                .await
            }
            Request::KeyImport(i) => {
                self.authorized(
                    authorizer,
                    i,
                    |a, i, now, tag| a.authorize_import(i, now, tag),
                    |k, i, _| k.import(i).map(|row| Response::WrappedKeys(vec![row])),
                )
                .await
            }
            Request::SignBatch(_) => Err(ErrorReply::new(
                ErrorCode::SignatureRequired,
                "authorization is on: a batch needs one principal's signature over the whole batch",
            )),
            Request::SignBatchSigned(batch) => {
                let enclave_id = self.master.status().enclave_id.map(|id| id.0);
                let receipt = authorizer.authorize_master_sign_batch(&batch, enclave_id, now_unix())?;
                let with_receipt = |r: Result<SignatureReply, ErrorReply>| {
                    r.map(|signature| SignatureReply { receipt: Some(receipt), ..signature })
                };
                let replies = self.master.sign_batch(&batch.items)?;
                Ok(Response::Signatures(replies.into_iter().map(with_receipt).collect()))
            }
            other => self.dispatch(other).await,
        }
    }

    /// Checks `request` with the authorizer (its tag under this keyring's root), then runs it
    /// on the keyring with the audit receipt; both off the async workers (CPU work).
    async fn authorized<T: Send + 'static>(
        &self,
        authorizer: Arc<Authorizer>,
        request: T,
        check: impl FnOnce(&Authorizer, &T, u64, Tagger<'_>) -> Result<AuditReceipt, ErrorReply> + Send + 'static,
        run: impl FnOnce(&Keyring<D>, &T, AuditReceipt) -> Result<Response, ErrorReply> + Send + 'static,
    ) -> Result<Response, ErrorReply> {
        let keyring = self.keyring.clone();
        blocking(move || {
            let receipt = check(&authorizer, &request, now_unix(), &|row| keyring.policy_tag(row))?;
            run(&keyring, &request, receipt)
        })
        .await
    }

    async fn dispatch(&self, request: Request) -> Result<Response, ErrorReply> {
        let (master, keyring) = (&self.master, &self.keyring);
        match request {
            Request::RootProvision(p) => {
                keyring.provision_root(&p.kms_key_id, &p.region, &p.credentials).await.map(Response::RootSealed)
            }
            Request::RootCommit(c) => keyring.commit_root(c.root_id, c.root_epoch).await.map(Response::Keyring),
            Request::RootUnseal(u) => keyring.unseal_root(&u.sealed, &u.credentials).await.map(Response::Keyring),
            Request::RootRotate(r) => keyring.rotate_root(&r.sealed, &r.credentials).await.map(Response::RootSealed),
            Request::KeyringStatus => Ok(Response::Keyring(keyring.status())),
            // Key generation and signing are CPU work: off the async workers.
            Request::KeyCreate(c) => {
                let keyring = keyring.clone();
                let created = blocking(move || keyring.create(&c.keys).map(Response::WrappedKeys)).await;
                crash_point("enclave:keys:created");
                created
            }
            Request::KeySign(s) => {
                let keyring = keyring.clone();
                blocking(move || keyring.sign(&s).map(Response::KeySignature)).await
            }
            Request::KeyImport(i) => {
                let keyring = keyring.clone();
                blocking(move || keyring.import(&i).map(|row| Response::WrappedKeys(vec![row]))).await
            }
            Request::KeyExport(e) => {
                let keyring = keyring.clone();
                blocking(move || keyring.export(&e).map(Response::ExportedKey)).await
            }
            Request::KeySignBatch(items) => {
                let keyring = keyring.clone();
                blocking(move || Ok(Response::KeySignatures(items.iter().map(|s| keyring.sign(s)).collect()))).await
            }
            Request::KeyCrypt(c) => {
                let keyring = keyring.clone();
                blocking(move || keyring.crypt(&c).map(Response::Crypt)).await
            }
            // Public: a check opens rows and shows nothing of them, so it needs no signature.
            Request::KeyCheck(rows) => {
                let keyring = keyring.clone();
                blocking(move || keyring.check(&rows).map(|()| Response::KeysChecked)).await
            }
            Request::Random(r) => keyring.random(&r).await.map(Response::Random),
            Request::Provision(p) => master.provision(p).await.map(Response::Provisioned),
            Request::Commit(c) => master.commit(c).await.map(Response::Status),
            Request::Unseal(u) => master.unseal(u).await.map(Response::Status),
            Request::Rotate(r) => master.rotate(r).await.map(Response::Rotated),
            Request::Sign(s) => master.sign(&s).map(Response::Signature),
            Request::SignBatch(items) => master.sign_batch(&items).map(Response::Signatures),
            // Without owners there is nothing to check: signed as an unsigned batch.
            Request::SignBatchSigned(batch) => master.sign_batch(&batch.items).map(Response::Signatures),
            Request::PublicKey => master.public_key().map(Response::PublicKey),
            Request::Status => Ok(Response::Status(master.status())),
            Request::Hello(_) => Err(ErrorReply::new(ErrorCode::BadRequest, "Hello was already exchanged")),
            Request::Authenticate(_) => {
                Err(ErrorReply::new(ErrorCode::BadRequest, "this connection is already authenticated"))
            }
            Request::AuditRead(_) => {
                Err(ErrorReply::new(ErrorCode::BadRequest, "this enclave has no owners, so it keeps no audit chain"))
            }
            // Without owners there is nothing to check: the batch is signed as an unsigned one.
            Request::KeySignBatchSigned(batch) => {
                let keyring = keyring.clone();
                blocking(move || Ok(Response::KeySignatures(batch.items.iter().map(|s| keyring.sign(s)).collect())))
                    .await
            }
            Request::PolicySet(_) | Request::KeyStateSet(_) | Request::PolicyCheck(_) => Err(ErrorReply::new(
                ErrorCode::BadRequest,
                "this enclave has no owners: authorization is off, so it keeps no policies or key states",
            )),
            _ => Err(ErrorReply::new(ErrorCode::BadRequest, "request not supported by this enclave")),
        }
    }
}

async fn blocking(
    work: impl FnOnce() -> Result<Response, ErrorReply> + Send + 'static,
) -> Result<Response, ErrorReply> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| Err(ErrorReply::new(ErrorCode::Internal, "request handler failed unexpectedly")))
}
