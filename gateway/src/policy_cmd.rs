//! `gateway key-policy`: the KMS key policy and the gateway role's IAM policy for given
//! enclave measurements (the `nitro-cli build-enclave` / `describe-eif` JSON, or PCRs given
//! directly). Several measurements allow several builds at once, for an upgrade.

use std::path::PathBuf;

use anyhow::{Context, bail};
use keyward_kms::policy::{KeyPolicyParams, PcrSet, iam_policy, key_policy, measurements_from_nitro_cli_json};

#[derive(Debug, clap::Args)]
pub struct KeyPolicyArgs {
    /// Measurement JSON from `nitro-cli build-enclave`, `nitro-cli describe-eif` or
    /// `enclave measure`. Repeat for each build to allow.
    #[arg(long = "measurements", value_name = "FILE")]
    measurements: Vec<PathBuf>,
    /// PCRs given directly as `PCR0,PCR1,PCR2` (hex). Repeatable.
    #[arg(long = "pcrs", value_name = "PCR0,PCR1,PCR2")]
    pcrs: Vec<String>,
    /// AWS account id that owns the key.
    #[arg(long)]
    account_id: String,
    /// The gateway's IAM role (the only principal allowed to call on an enclave's behalf).
    #[arg(long)]
    role_arn: String,
    /// The key ARN (needed for the IAM policy).
    #[arg(long)]
    key_arn: Option<String>,
    /// IAM principals that administer the key (cannot use it). Repeatable.
    #[arg(long = "admin", value_name = "ARN")]
    admins: Vec<String>,
    /// Accept all-zero PCRs of a debug-mode enclave. Never for keys that protect anything.
    #[arg(long)]
    allow_debug_mode: bool,
    /// What to print.
    #[arg(long, value_enum, default_value_t = Output::Both)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    /// The key policy only (for `aws kms put-key-policy`).
    Key,
    /// The IAM policy only (for the gateway role).
    Iam,
    /// Both, as `{"KeyPolicy": ..., "IamPolicy": ...}`.
    Both,
}

pub fn run(args: KeyPolicyArgs) -> anyhow::Result<()> {
    let mut sets = Vec::new();
    for path in &args.measurements {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        sets.push(
            measurements_from_nitro_cli_json(&text).with_context(|| format!("measurements in {}", path.display()))?,
        );
    }
    for spec in &args.pcrs {
        let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
        let [pcr0, pcr1, pcr2] = parts.as_slice() else { bail!("--pcrs {spec:?}: expected PCR0,PCR1,PCR2") };
        sets.push(PcrSet::from_hex(pcr0, pcr1, pcr2).with_context(|| format!("--pcrs {spec:?}"))?);
    }
    let params = KeyPolicyParams::new(&args.account_id, &args.role_arn, sets)
        .key_administrators(args.admins.clone())
        .allow_debug_mode(args.allow_debug_mode);
    let key = || key_policy(&params).context("key policy");
    let iam = || {
        let arn = args.key_arn.as_deref().context("--key-arn is required for the IAM policy")?;
        iam_policy(arn).context("IAM policy")
    };
    let value = match args.output {
        Output::Key => key()?,
        Output::Iam => iam()?,
        Output::Both => serde_json::json!({ "KeyPolicy": key()?, "IamPolicy": iam()? }),
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
