//! `keyward audit export` and `keyward audit verify`: the enclave's audit log as JSON lines,
//! and its check against the audit public key and the receipts a client kept.

use std::{
    io::{BufRead, Write},
    path::{Path, PathBuf},
};

use clap::Subcommand;
use keyward_client::{
    Client,
    audit::{AuditFinding, AuditLine, verify_audit_log},
    keys::AuditReceiptInfo,
};
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write every record of an audit chain to FILE, one JSON object per line (admin token;
    /// FILE must not exist): the enclave's current chain, or with --chain a stored one (an
    /// earlier start's). Prints the count, the last record and the chain's audit key.
    Export {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        enclave_id: Option<u32>,
        /// A stored chain's audit key (64 hex digits; `keyward audit chains` lists them).
        #[arg(long)]
        chain: Option<String>,
    },
    /// List the stored audit chains (one per enclave start), oldest first.
    Chains,
    /// Check an exported log: each record's hash and signature by the audit key, the chain,
    /// the sequence from record 1, and that every receipt kept is in the log. Prints
    /// `{"verified": true, ...}`, or `{"verified": false, "code", "seq", "message"}` and exits
    /// with status 1.
    Verify {
        /// The exported log (JSON lines).
        #[arg(long)]
        log: PathBuf,
        /// The audit public key (Ed25519, 64 hex digits), from a source you trust.
        #[arg(long)]
        public_key: String,
        /// Receipts kept by clients: JSON lines, each a receipt `{"seq", "hash"}` or a signing
        /// answer that carries one.
        #[arg(long)]
        receipts: Option<PathBuf>,
    },
}

/// What `run` printed, and whether it is a success.
pub async fn run(client: &Client, command: AuditCommand) -> anyhow::Result<(bool, Value)> {
    match command {
        AuditCommand::Export { out, enclave_id, chain } => {
            export(client, &out, enclave_id, chain).await.map(|v| (true, v))
        }
        AuditCommand::Chains => Ok((true, serde_json::to_value(client.audit_chains().await?)?)),
        AuditCommand::Verify { log, public_key, receipts } => {
            Ok(match verify(&log, &public_key, receipts.as_deref()) {
                Ok(value) => (true, value),
                Err(finding) => (
                    false,
                    json!({ "verified": false, "code": finding.code, "seq": finding.seq, "message": finding.message }),
                ),
            })
        }
    }
}

async fn export(client: &Client, out: &Path, enclave_id: Option<u32>, chain: Option<String>) -> anyhow::Result<Value> {
    let mut writer = std::io::BufWriter::new(crate::crypt::create_new_private(out)?);
    let (mut after, mut count) = (0u64, 0u64);
    // The first page names the chain; the next ones ask for that chain, so an enclave that
    // restarts during the export does not mix two chains.
    let mut key = chain.map(|c| c.to_ascii_lowercase());
    loop {
        let page = client.audit_page_of(after, enclave_id, key.as_deref()).await?;
        if key.as_ref().is_some_and(|k| *k != page.audit_public_key_hex) {
            anyhow::bail!("the gateway answered with another chain than {}", key.unwrap_or_default());
        }
        key = Some(page.audit_public_key_hex);
        let Some(last) = page.records.last().map(|r| r.seq) else { break };
        for record in &page.records {
            serde_json::to_writer(&mut writer, record)?;
            writer.write_all(b"\n")?;
        }
        count += page.records.len() as u64;
        after = last;
        eprintln!("keyward: exported {count} records (up to {after})");
    }
    writer.flush()?;
    Ok(json!({ "records": count, "last_seq": after, "audit_public_key_hex": key.unwrap_or_default(), "out": out }))
}

fn malformed(path: &Path, n: usize, e: impl std::fmt::Display) -> AuditFinding {
    AuditFinding { code: "malformed_record", seq: None, message: format!("{} line {}: {e}", path.display(), n + 1) }
}

/// The JSON lines of `path`, each parsed by `parse`.
fn lines<T>(path: &Path, parse: impl Fn(Value) -> Option<T>) -> Result<Vec<T>, AuditFinding> {
    let file = std::fs::File::open(path).map_err(|e| AuditFinding {
        code: "unreadable_file",
        seq: None,
        message: format!("{}: {e}", path.display()),
    })?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| malformed(path, n, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line).map_err(|e| malformed(path, n, e))?;
        out.push(parse(value).ok_or_else(|| malformed(path, n, "not the expected shape"))?);
    }
    Ok(out)
}

fn verify(log: &Path, public_key: &str, receipts: Option<&Path>) -> Result<Value, AuditFinding> {
    let key = hex::decode(public_key).ok().filter(|k| k.len() == 32).ok_or_else(|| AuditFinding {
        code: "bad_public_key",
        seq: None,
        message: "--public-key is 64 hex digits (an Ed25519 key)".into(),
    })?;
    let records: Vec<AuditLine> = lines(log, |v| serde_json::from_value(v).ok())?;
    let kept: Vec<AuditReceiptInfo> = match receipts {
        Some(path) => lines(path, |v| {
            let receipt = v.get("receipt").cloned().unwrap_or(v);
            serde_json::from_value(receipt).ok()
        })?,
        None => Vec::new(),
    };
    let head = verify_audit_log(&key, &records, &kept)?;
    Ok(json!({
        "verified": true,
        "records": records.len(),
        "receipts_checked": kept.len(),
        "head": { "seq": head.seq, "hash": hex::encode(head.hash) },
    }))
}
