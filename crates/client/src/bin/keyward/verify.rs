//! `keyward verify-attestation`: check an enclave's attestation document offline or live.
//!
//! An image is pinned by whole PCR0-2 sets (`--pcrs PCR0,PCR1,PCR2`, one per build, as
//! `gateway key-policy --pcrs` takes them): a document passes only if its three values are
//! those of one listed build. Without a build, or for a debug-mode (all-zero) document, it is
//! refused unless `--insecure-any-image` says, by name, that any image will do.

use std::{collections::BTreeMap, path::PathBuf};

use base64::Engine;
use keyward_attest::{Measurements, Pcr, RootCertificate, UnixTime, VerifyOptions};
use keyward_client::Client;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Raw COSE_Sign1 document to verify instead of asking the gateway for a fresh one.
    #[arg(long, value_name = "PATH")]
    document: Option<PathBuf>,
    /// Verify as of this Unix time in seconds (default: now).
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<u64>,
    /// Expected nonce (hex). Live: sent to the enclave (default: 32 random bytes).
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    #[command(flatten)]
    image: ImageArgs,
}

/// Which enclaves to trust: the root, the builds, and which enclave to ask.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ImageArgs {
    /// PEM root to chain to (default: the built-in AWS Nitro Enclaves Root-G1).
    #[arg(long, value_name = "PEM")]
    root: Option<PathBuf>,
    /// PCR0, PCR1 and PCR2 of one acceptable build, comma-separated hex; repeat for several
    /// builds (during an upgrade). The document must match one build in all three.
    #[arg(long = "pcrs", value_name = "PCR0,PCR1,PCR2")]
    builds: Vec<String>,
    /// A further expected PCR (3 and up, such as PCR8), `N=HEX`; the same N again for
    /// alternatives. PCR0-2 go in --pcrs.
    #[arg(long = "pcr", value_name = "N=HEX")]
    pcrs: Vec<String>,
    /// INSECURE: accept any image: no --pcrs needed, and debug-mode documents (all-zero
    /// PCR0-2, whose enclave memory the host can read) pass.
    #[arg(long)]
    insecure_any_image: bool,
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
    /// The master public key `user_data` carries (its first 33 bytes).
    master_public_key_hex: Option<String>,
    /// The key that signs the enclave's audit chain (`user_data`'s last 32 bytes, when the
    /// enclave has owners): the key to give `keyward audit verify`.
    audit_public_key_hex: Option<String>,
    nonce_hex: Option<String>,
}

/// Why a document was not verified: a stable code and a message. Printed as JSON with
/// `"verified": false`; the exit status is non-zero.
#[derive(Debug, serde::Serialize)]
pub struct Refused {
    verified: bool,
    pub code: &'static str,
    pub message: String,
}

impl Refused {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Refused { verified: false, code, message: message.into() }
    }
}

/// A live enclave's transfer key (the `public_key` of a fresh attestation document), after
/// the document passed every check `verify-attestation` makes: what an import seals to.
pub async fn attested_transfer_key(client: &Client, image: &ImageArgs) -> Result<Vec<u8>, Refused> {
    let args = VerifyArgs { document: None, at: None, nonce: None, image: image.clone() };
    let verified = verify_attestation(client, args).await?;
    verified
        .public_key_hex
        .as_deref()
        .and_then(|k| hex::decode(k).ok())
        .ok_or_else(|| Refused::new("no_transfer_key", "the enclave's attestation document carries no transfer key"))
}

pub async fn verify_attestation(client: &Client, args: VerifyArgs) -> Result<Verified, Refused> {
    let usage = |message: String| Refused::new("usage", message);
    let VerifyArgs { document, at, nonce, image: args } = args;
    let extra = parse_pcrs(&args.pcrs)?;
    let builds = parse_builds(&args.builds, args.insecure_any_image)?;
    let expected_nonce =
        nonce.as_deref().map(|n| hex::decode(n).map_err(|_| usage("--nonce is not hex".into()))).transpose()?;
    let root = load_root(args.root.as_deref())?;
    let (document, nonce, claimed_key) = match &document {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| usage(format!("reading {}: {e}", path.display())))?;
            (bytes, expected_nonce, None)
        }
        None => {
            let nonce = match expected_nonce {
                Some(n) => n,
                None => {
                    let mut n = vec![0u8; 32];
                    getrandom::fill(&mut n)
                        .map_err(|e| Refused::new("internal", format!("no randomness for a nonce: {e}")))?;
                    n
                }
            };
            let answer = client
                .attestation(&nonce, args.enclave_id)
                .await
                .map_err(|e| Refused::new("gateway_error", e.to_string()))?;
            let document = base64::engine::general_purpose::STANDARD
                .decode(&answer.document_b64)
                .map_err(|_| Refused::new("gateway_error", "gateway sent a document that is not base64"))?;
            let key = hex::decode(&answer.public_key_hex)
                .map_err(|_| Refused::new("gateway_error", "gateway sent a public key that is not hex"))?;
            (document, Some(nonce), Some(key))
        }
    };
    let at = at.map_or_else(UnixTime::now, UnixTime::from_secs);
    let mut options = VerifyOptions::new(root, at);
    if let Some(builds) = builds {
        options = options.expect_builds(builds);
    }
    if !args.insecure_any_image {
        options = options.refuse_debug_mode();
    }
    for (index, values) in extra {
        options = options.expect_pcr(index, values);
    }
    if let Some(nonce) = nonce {
        options = options.expect_nonce(nonce);
    }
    let verified = keyward_attest::verify(&document, &options)
        .map_err(|e| Refused::new(e.code(), format!("attestation document rejected: {e}")))?;
    let payload = verified.payload();
    let (master, audit) = split_user_data(payload.user_data().unwrap_or_default(), claimed_key.as_deref())?;
    Ok(Verified {
        master_public_key_hex: master.map(hex::encode),
        audit_public_key_hex: audit.map(hex::encode),
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

/// The master key and the audit key a document's `user_data` carries.
type BoundKeys<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// `user_data` is the master key, then the audit key when the enclave has owners. Live, the
/// gateway names the master key; the document must carry that very key.
fn split_user_data<'a>(user_data: &'a [u8], claimed_key: Option<&[u8]>) -> Result<BoundKeys<'a>, Refused> {
    let (master, audit) = match user_data.len() {
        33 => (Some(user_data), None),
        65 => (Some(&user_data[..33]), Some(&user_data[33..])),
        _ => (None, None),
    };
    if let Some(key) = claimed_key
        && master != Some(key)
    {
        return Err(Refused::new(
            "user_data_mismatch",
            format!(
                "attestation document rejected: its user_data ({} bytes) does not begin with the master key the gateway named",
                user_data.len()
            ),
        ));
    }
    Ok((master, audit))
}

/// The root at `path` (PEM), or the built-in AWS Nitro Enclaves Root-G1.
pub fn load_root(path: Option<&std::path::Path>) -> Result<RootCertificate, Refused> {
    match path {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| Refused::new("usage", format!("reading {}: {e}", path.display())))?;
            RootCertificate::from_pem(&pem)
                .map_err(|e| Refused::new(e.code(), format!("root certificate {}: {e}", path.display())))
        }
        None => Ok(RootCertificate::aws_nitro_root_g1()),
    }
}

/// The listed builds; `None` only when any image is explicitly allowed.
pub fn parse_builds(specs: &[String], any_image: bool) -> Result<Option<Vec<Measurements>>, Refused> {
    if specs.is_empty() {
        if any_image {
            return Ok(None);
        }
        return Err(Refused::new(
            "pcrs_required",
            "name the image: --pcrs PCR0,PCR1,PCR2 of each acceptable build (from `nitro-cli describe-eif`), \
             or --insecure-any-image to accept any enclave image",
        ));
    }
    let mut builds = Vec::new();
    for spec in specs {
        let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
        let [pcr0, pcr1, pcr2] = parts[..] else {
            return Err(Refused::new("usage", format!("--pcrs {spec:?}: expected PCR0,PCR1,PCR2")));
        };
        let parse =
            |value: &str| Pcr::from_hex(value).map_err(|e| Refused::new("usage", format!("--pcrs {spec:?}: {e}")));
        let build = Measurements { pcr0: parse(pcr0)?, pcr1: parse(pcr1)?, pcr2: parse(pcr2)? };
        if !any_image && build.iter().all(|(_, pcr)| pcr.is_zero()) {
            return Err(Refused::new(
                "debug_mode",
                format!(
                    "--pcrs {spec:?} is a debug-mode build (all zero), whose enclave memory the host can read; refused without --insecure-any-image"
                ),
            ));
        }
        builds.push(build);
    }
    Ok(Some(builds))
}

fn parse_pcrs(specs: &[String]) -> Result<BTreeMap<u16, Vec<Pcr>>, Refused> {
    let usage = |message: String| Refused::new("usage", message);
    let mut expected: BTreeMap<u16, Vec<Pcr>> = BTreeMap::new();
    for spec in specs {
        let Some((index, value)) = spec.split_once('=') else {
            return Err(usage(format!("--pcr {spec:?}: expected N=HEX")));
        };
        let index: u16 = index.trim().parse().map_err(|_| usage(format!("--pcr {spec:?}: N must be a number")))?;
        if index < 3 {
            return Err(usage(format!(
                "--pcr {spec:?}: PCR0-2 identify a build and go together in --pcrs PCR0,PCR1,PCR2 (one value alone lets builds mix)"
            )));
        }
        if index > 31 {
            return Err(usage(format!("--pcr {spec:?}: PCR index must be 3-31")));
        }
        let pcr = Pcr::from_hex(value.trim()).map_err(|e| usage(format!("--pcr {spec:?}: {e}")))?;
        expected.entry(index).or_default().push(pcr);
    }
    Ok(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_must_begin_with_the_claimed_master_key_and_may_carry_the_audit_key() {
        let master = [2u8; 33];
        let both = [&master[..], &[9u8; 32]].concat();
        assert_eq!(split_user_data(&master, Some(&master)).unwrap(), (Some(&master[..]), None));
        assert_eq!(split_user_data(&both, Some(&master)).unwrap(), (Some(&master[..]), Some(&[9u8; 32][..])));
        let other = [3u8; 33];
        for (user_data, claimed) in [(&master[..], &other[..]), (&both[..], &other[..]), (&both[..32], &master[..])] {
            assert_eq!(split_user_data(user_data, Some(claimed)).unwrap_err().code, "user_data_mismatch");
        }
        assert_eq!(split_user_data(&[], None).unwrap(), (None, None), "a document file with no key to compare");
    }

    fn hex(byte: u8) -> String {
        format!("{byte:02x}").repeat(48)
    }

    #[test]
    fn an_image_must_be_named_unless_any_image_is_allowed_by_name() {
        assert_eq!(parse_builds(&[], false).unwrap_err().code, "pcrs_required");
        assert!(parse_builds(&[], true).unwrap().is_none());
        let one = parse_builds(&[format!("{},{},{}", hex(1), hex(2), hex(3))], false).unwrap().unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].pcr2.to_hex(), hex(3));
    }

    #[test]
    fn all_zero_builds_are_debug_mode_and_refused_without_the_insecure_flag() {
        let zero = [format!("{},{},{}", hex(0), hex(0), hex(0))];
        assert_eq!(parse_builds(&zero, false).unwrap_err().code, "debug_mode");
        assert!(parse_builds(&zero, true).is_ok());
    }

    #[test]
    fn pcr0_to_2_alone_are_refused_and_sets_need_three_values() {
        assert_eq!(parse_pcrs(&[format!("0={}", hex(1))]).unwrap_err().code, "usage");
        assert!(parse_pcrs(&[format!("8={}", hex(1))]).unwrap().contains_key(&8));
        assert_eq!(parse_builds(&[format!("{},{}", hex(1), hex(2))], false).unwrap_err().code, "usage");
    }
}
