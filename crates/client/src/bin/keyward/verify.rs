//! `keyward verify-attestation`: check an enclave's attestation document offline or live.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use keyward_attest::{Pcr, RootCertificate, UnixTime, VerifyOptions};
use keyward_client::Client;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Raw COSE_Sign1 document to verify instead of asking the gateway for a fresh one.
    #[arg(long, value_name = "PATH")]
    document: Option<PathBuf>,
    /// PEM root to chain to (default: the built-in AWS Nitro Enclaves Root-G1).
    #[arg(long, value_name = "PEM")]
    root: Option<PathBuf>,
    /// Verify as of this Unix time in seconds (default: now).
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<u64>,
    /// Expected PCR value, `N=HEX`; repeat for several PCRs, or the same N for alternatives.
    #[arg(long = "pcr", value_name = "N=HEX")]
    pcrs: Vec<String>,
    /// Expected nonce (hex). Live: sent to the enclave (default: 32 random bytes).
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// Which enclave to ask (live only).
    #[arg(long, value_name = "N")]
    enclave_id: Option<u32>,
}

/// What a successful verification prints.
#[derive(Debug, serde::Serialize)]
pub struct Verified {
    verified: bool,
    module_id: String,
    timestamp_ms: u64,
    digest: &'static str,
    pcrs: BTreeMap<u16, String>,
    public_key_hex: Option<String>,
    user_data_hex: Option<String>,
    nonce_hex: Option<String>,
}

pub async fn verify_attestation(client: &Client, args: VerifyArgs) -> anyhow::Result<Verified> {
    let expected_nonce = args.nonce.as_deref().map(|n| hex::decode(n).context("--nonce is not hex")).transpose()?;
    let (document, nonce, claimed_key) = match &args.document {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            (bytes, expected_nonce, None)
        }
        None => {
            let nonce = match expected_nonce {
                Some(n) => n,
                None => {
                    let mut n = vec![0u8; 32];
                    getrandom::fill(&mut n).map_err(|e| anyhow::anyhow!("no randomness for a nonce: {e}"))?;
                    n
                }
            };
            let answer = client.attestation(&nonce, args.enclave_id).await?;
            let document = base64::engine::general_purpose::STANDARD
                .decode(&answer.document_b64)
                .context("gateway sent a document that is not base64")?;
            let key = hex::decode(&answer.public_key_hex).context("gateway sent a public key that is not hex")?;
            (document, Some(nonce), Some(key))
        }
    };
    let root = match &args.root {
        Some(path) => {
            let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            RootCertificate::from_pem(&pem).with_context(|| format!("root certificate {}", path.display()))?
        }
        None => RootCertificate::aws_nitro_root_g1(),
    };
    let at = args.at.map_or_else(UnixTime::now, UnixTime::from_secs);
    let mut options = VerifyOptions::new(root, at);
    for (index, values) in parse_pcrs(&args.pcrs)? {
        options = options.expect_pcr(index, values);
    }
    if let Some(nonce) = nonce {
        options = options.expect_nonce(nonce);
    }
    // Live, the gateway names the key; the document must carry that very key.
    if let Some(key) = claimed_key {
        options = options.expect_user_data(key);
    }
    let verified = keyward_attest::verify(&document, &options).context("attestation document rejected")?;
    let payload = verified.payload();
    Ok(Verified {
        verified: true,
        module_id: payload.module_id().to_owned(),
        timestamp_ms: payload.timestamp_ms(),
        digest: payload.digest().as_str(),
        pcrs: payload.pcrs().iter().map(|(i, p)| (*i, p.to_hex())).collect(),
        public_key_hex: payload.public_key().map(hex::encode),
        user_data_hex: payload.user_data().map(hex::encode),
        nonce_hex: payload.nonce().map(hex::encode),
    })
}

fn parse_pcrs(specs: &[String]) -> anyhow::Result<BTreeMap<u16, Vec<Pcr>>> {
    let mut expected: BTreeMap<u16, Vec<Pcr>> = BTreeMap::new();
    for spec in specs {
        let Some((index, value)) = spec.split_once('=') else { bail!("--pcr {spec:?}: expected N=HEX") };
        let index: u16 = index.trim().parse().with_context(|| format!("--pcr {spec:?}: N must be a number"))?;
        if index > 31 {
            bail!("--pcr {spec:?}: PCR index must be 0-31");
        }
        let pcr = Pcr::from_hex(value.trim()).with_context(|| format!("--pcr {spec:?}"))?;
        expected.entry(index).or_default().push(pcr);
    }
    Ok(expected)
}
