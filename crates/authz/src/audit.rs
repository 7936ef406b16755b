//! The audit chain: every operation and refusal becomes a record, hashed into a chain and signed
//! by an audit key that lives only in the enclave. A client keeps each answer's receipt (sequence
//! number and chain hash), and [`verify_log`] checks an exported log against the audit public
//! key and those receipts: an edited, removed, reordered or forged record, or a cut tail, is
//! reported with the sequence number where the log goes wrong.
//!
//! ```text
//! hash(record) = SHA-256("keyward audit v1\0" ‖ seq (u64 BE) ‖ time (u64 BE)
//!                ‖ principal (1 byte: 0 none, 1 then 16 bytes) ‖ operation ‖ keystore ‖ key
//!                (each u32 BE length ‖ UTF-8) ‖ version (u32 BE, 0 none) ‖ outcome (framed)
//!                ‖ request digest (32) ‖ previous hash (32; zeros before the first record))
//! signature  = Ed25519(audit key, hash)
//! ```

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};

use crate::PrincipalId;

/// What happened: one operation or refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unix seconds.
    pub time: u64,
    /// Who asked (absent when the request carried no valid signature).
    pub principal: Option<PrincipalId>,
    pub operation: String,
    pub keystore: String,
    pub key: String,
    /// The key version used, if any.
    pub version: Option<u32>,
    /// `ok`, or the refusal's code.
    pub outcome: String,
    /// SHA-256 of the request as signed.
    pub request_digest: [u8; 32],
}

/// A record as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRecord {
    pub seq: u64,
    pub entry: AuditEntry,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    pub signature: Vec<u8>,
}

/// What an answer carries: its record's place and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub hash: [u8; 32],
}

fn framed(out: &mut Vec<u8>, text: &str) {
    // Every byte is hashed, so an edit anywhere in a field shows. Fits: a field is far below
    // 4 GiB (entries come from checked requests).
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn record_hash(seq: u64, entry: &AuditEntry, prev_hash: &[u8; 32]) -> [u8; 32] {
    let mut input = b"keyward audit v1\0".to_vec();
    input.extend_from_slice(&seq.to_be_bytes());
    input.extend_from_slice(&entry.time.to_be_bytes());
    match entry.principal {
        Some(id) => {
            input.push(1);
            input.extend_from_slice(&id.0);
        }
        None => input.push(0),
    }
    framed(&mut input, &entry.operation);
    framed(&mut input, &entry.keystore);
    framed(&mut input, &entry.key);
    input.extend_from_slice(&entry.version.unwrap_or(0).to_be_bytes());
    framed(&mut input, &entry.outcome);
    input.extend_from_slice(&entry.request_digest);
    input.extend_from_slice(prev_hash);
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input).as_ref());
    out
}

/// The enclave's side: the audit key and the chain's head.
#[derive(Debug)]
pub struct AuditChain {
    key: Ed25519KeyPair,
    next_seq: u64,
    head: [u8; 32],
}

impl AuditChain {
    /// A new chain signed by `key` (from the NSM's randomness, in the enclave).
    pub fn new(key: Ed25519KeyPair) -> Self {
        AuditChain { key, next_seq: 1, head: [0; 32] }
    }

    /// The audit public key (bound into the attestation document's `user_data`).
    pub fn public_key(&self) -> Vec<u8> {
        aws_lc_rs::signature::KeyPair::public_key(&self.key).as_ref().to_vec()
    }

    /// Appends `entry`; the record goes to the log, its receipt to the answer.
    pub fn append(&mut self, entry: AuditEntry) -> (SignedRecord, Receipt) {
        let seq = self.next_seq;
        let hash = record_hash(seq, &entry, &self.head);
        let signature = self.key.sign(&hash).as_ref().to_vec();
        let record = SignedRecord { seq, entry, prev_hash: self.head, hash, signature };
        self.next_seq += 1;
        self.head = hash;
        (record, Receipt { seq, hash })
    }
}

/// Where a log goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// A record's fields do not hash to its hash: edited.
    #[error("record {seq} was edited: its fields do not give its hash")]
    Edited { seq: u64 },
    /// A record's signature is not the audit key's: forged.
    #[error("record {seq} is not signed by the audit key")]
    Forged { seq: u64 },
    /// Not the next sequence number: a record removed or moved.
    #[error("record {found} stands where record {expected} should: records were removed or reordered")]
    OutOfSequence { expected: u64, found: u64 },
    /// Its previous hash is not the record before it.
    #[error("record {seq} does not follow the record before it")]
    ChainBroken { seq: u64 },
    /// A receipt a client kept is past the log's end: the tail was cut.
    #[error("receipt {seq} is past the log's end (record {last}): the log was truncated")]
    Truncated { seq: u64, last: u64 },
    /// A receipt's hash is not the log's record of that number.
    #[error("receipt {seq} does not match the log's record {seq}")]
    ReceiptMismatch { seq: u64 },
}

impl AuditError {
    /// A stable code for the finding.
    pub fn code(&self) -> &'static str {
        match self {
            AuditError::Edited { .. } => "record_edited",
            AuditError::Forged { .. } => "record_forged",
            AuditError::OutOfSequence { .. } => "records_removed_or_reordered",
            AuditError::ChainBroken { .. } => "chain_broken",
            AuditError::Truncated { .. } => "log_truncated",
            AuditError::ReceiptMismatch { .. } => "receipt_mismatch",
        }
    }
}

/// Checks a whole log (from record 1) against the audit public key and the receipts kept.
/// Returns the last record's receipt.
pub fn verify_log(public_key: &[u8], records: &[SignedRecord], receipts: &[Receipt]) -> Result<Receipt, AuditError> {
    let key = UnparsedPublicKey::new(&ED25519, public_key);
    let mut head = Receipt { seq: 0, hash: [0; 32] };
    for record in records {
        let expected = head.seq + 1;
        if record.seq != expected {
            return Err(AuditError::OutOfSequence { expected, found: record.seq });
        }
        if record_hash(record.seq, &record.entry, &record.prev_hash) != record.hash {
            return Err(AuditError::Edited { seq: record.seq });
        }
        if key.verify(&record.hash, &record.signature).is_err() {
            return Err(AuditError::Forged { seq: record.seq });
        }
        if record.prev_hash != head.hash {
            return Err(AuditError::ChainBroken { seq: record.seq });
        }
        head = Receipt { seq: record.seq, hash: record.hash };
    }
    for receipt in receipts {
        let Some(record) = receipt.seq.checked_sub(1).and_then(|i| records.get(i as usize)) else {
            return Err(AuditError::Truncated { seq: receipt.seq, last: head.seq });
        };
        if record.hash != receipt.hash {
            return Err(AuditError::ReceiptMismatch { seq: receipt.seq });
        }
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u8) -> AuditEntry {
        AuditEntry {
            time: 1_764_547_200 + u64::from(i),
            principal: (!i.is_multiple_of(3)).then_some(PrincipalId([i; 16])),
            operation: "sign".into(),
            keystore: "default".into(),
            key: format!("k{i}"),
            version: Some(1),
            outcome: if i.is_multiple_of(4) { "not_permitted".into() } else { "ok".into() },
            request_digest: [i; 32],
        }
    }

    fn chain(seed: u8, n: u8) -> (Vec<u8>, Vec<SignedRecord>, Vec<Receipt>) {
        let mut chain = AuditChain::new(Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap());
        let (records, receipts) = (1..=n).map(|i| chain.append(entry(i))).unzip();
        (chain.public_key(), records, receipts)
    }

    #[test]
    fn an_intact_log_verifies_with_every_receipt() {
        let (key, records, receipts) = chain(1, 8);
        assert_eq!(verify_log(&key, &records, &receipts), Ok(receipts[7]));
    }

    #[test]
    fn every_tampering_is_found_where_it_happened() {
        let (key, records, receipts) = chain(1, 8);
        let check = |records: &[SignedRecord]| verify_log(&key, records, &[]);
        let mut edited = records.clone();
        edited[3].entry.outcome = "ok".into();
        edited[3].entry.principal = Some(PrincipalId([0xee; 16]));
        assert_eq!(check(&edited), Err(AuditError::Edited { seq: 4 }));
        let mut removed = records.clone();
        removed.remove(4);
        assert_eq!(check(&removed), Err(AuditError::OutOfSequence { expected: 5, found: 6 }));
        let mut reordered = records.clone();
        reordered.swap(2, 5);
        assert_eq!(check(&reordered), Err(AuditError::OutOfSequence { expected: 3, found: 6 }));
        // Renumbered after a removal and rehashed: the signature gives it away.
        let mut renumbered = records.clone();
        renumbered.remove(4);
        for (i, r) in renumbered.iter_mut().enumerate().skip(4) {
            r.seq = i as u64 + 1;
            r.hash = record_hash(r.seq, &r.entry, &r.prev_hash);
        }
        assert_eq!(check(&renumbered), Err(AuditError::Forged { seq: 5 }));
        // Forged with another key, chained properly: the key gives it away.
        let (_, other, _) = chain(2, 8);
        assert_eq!(check(&other), Err(AuditError::Forged { seq: 1 }));
        // A record signed by the audit key but spliced from another chain of the same key.
        let (_, twin, _) = chain(1, 8);
        let mut spliced = records.clone();
        let mut foreign = twin[2].clone();
        foreign.entry.key = "spliced".into();
        let mut chain_b = AuditChain::new(Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap());
        for i in 1..=2 {
            chain_b.append(entry(100 + i));
        }
        let (b3, _) = chain_b.append(foreign.entry);
        spliced[2] = b3;
        assert_eq!(check(&spliced), Err(AuditError::ChainBroken { seq: 3 }));
        // A cut tail: the log verifies alone, the receipts a client kept catch it.
        assert!(check(&records[..6]).is_ok());
        assert_eq!(verify_log(&key, &records[..6], &receipts), Err(AuditError::Truncated { seq: 7, last: 6 }));
        let mut wrong = receipts[2];
        wrong.hash[0] ^= 1;
        assert_eq!(verify_log(&key, &records, &[wrong]), Err(AuditError::ReceiptMismatch { seq: 3 }));
    }
}
