//! KMS key and IAM policies that release data keys only to attested enclaves.
//!
//! The key policy follows AWS's documented pattern for Nitro Enclaves: the gateway role may
//! call `GenerateDataKey` and `Decrypt` only when the request's attestation document carries
//! PCR0, PCR1 and PCR2 of an allowed build, and explicit Deny statements make sure nobody,
//! not even the account's administrators, gets a data key without such a document.
//!
//! Measurements come from `nitro-cli build-enclave` or `nitro-cli describe-eif`
//! ([`measurements_from_nitro_cli_json`]). Several [`PcrSet`]s allow several builds at once,
//! which is how a migration from one enclave image to the next is rolled out.

use std::fmt;

use serde_json::{Value, json};

/// Length of a Nitro Enclave PCR: SHA-384.
pub const PCR_LEN: usize = 48;

/// The condition-key prefix KMS fills from a `Recipient` attestation document.
pub const RECIPIENT_ATTESTATION_PREFIX: &str = "kms:RecipientAttestation:";

/// Actions that release key material (or re-wrap it under another key) and therefore must
/// never succeed without an attested enclave.
const GUARDED_ACTIONS: [&str; 3] = ["kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"];

/// What key administrators may do: AWS's default administrator actions, spelled out, minus
/// the two that would let them reach key material: `kms:PutKeyPolicy` (AWS's `kms:Put*`),
/// with which they could delete the Deny statements, and `kms:CreateGrant` (AWS's
/// `kms:Create*`). [`ADMIN_DENIED_ACTIONS`] also denies those two explicitly, so an IAM policy
/// that grants an administrator `kms:*` cannot give them back.
pub const ADMIN_ACTIONS: [&str; 14] = [
    "kms:Describe*",
    "kms:List*",
    "kms:Get*",
    "kms:Enable*",
    "kms:Disable*",
    "kms:CreateAlias",
    "kms:UpdateAlias",
    "kms:DeleteAlias",
    "kms:UpdateKeyDescription",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:RevokeGrant",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
];

/// Denied to key administrators whatever else grants them: rewriting the key policy and
/// granting access around it.
pub const ADMIN_DENIED_ACTIONS: [&str; 2] = ["kms:PutKeyPolicy", "kms:CreateGrant"];

/// Why measurements or a policy could not be produced. Messages never carry key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not the JSON nitro-cli prints.
    #[error("not nitro-cli measurement output: {0}")]
    NotNitroCliOutput(String),
    /// A PCR is missing from the measurements.
    #[error("measurements have no {0}")]
    MissingPcr(&'static str),
    /// A PCR is not 48 bytes of hex.
    #[error("{name} is not a SHA-384 PCR ({PCR_LEN} bytes of hex): {reason}")]
    InvalidPcr {
        /// `PCR0`, `PCR1` or `PCR2`.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The measurements were made with a hash other than SHA-384.
    #[error("measurement hash algorithm is {0:?}; Nitro Enclaves measure with SHA-384")]
    UnsupportedHashAlgorithm(String),
    /// No measurements were given, so the policy would allow no enclave at all.
    #[error("no PCR sets given; the key policy needs at least one enclave build to allow")]
    NoPcrSets,
    /// A PCR is all zeros: the enclave runs in debug mode and its attestation proves nothing.
    #[error(
        "{name} of PCR set {set} is all zeros, which is what a debug-mode enclave reports; its \
         attestation proves nothing. Set allow_debug_mode only for throwaway debug keys"
    )]
    DebugModePcr {
        /// Position of the set in the list, from 0.
        set: usize,
        /// `PCR0`, `PCR1` or `PCR2`.
        name: &'static str,
    },
    /// The AWS account id is not 12 digits.
    #[error("AWS account id {0:?} is not 12 digits")]
    InvalidAccountId(String),
    /// An ARN is not of the expected kind.
    #[error("{what} {arn:?} is not {expected}")]
    InvalidArn {
        /// Which parameter.
        what: &'static str,
        /// The value given.
        arn: String,
        /// What it should look like.
        expected: &'static str,
    },
}

/// PCR0, PCR1 and PCR2 of one enclave image build.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PcrSet {
    pcrs: [[u8; PCR_LEN]; 3],
}

const PCR_NAMES: [&str; 3] = ["PCR0", "PCR1", "PCR2"];

impl PcrSet {
    /// The set from raw values.
    pub fn from_bytes(pcr0: [u8; PCR_LEN], pcr1: [u8; PCR_LEN], pcr2: [u8; PCR_LEN]) -> Self {
        Self { pcrs: [pcr0, pcr1, pcr2] }
    }

    /// The set from hex (case and surrounding white space are ignored).
    pub fn from_hex(pcr0: &str, pcr1: &str, pcr2: &str) -> Result<Self, PolicyError> {
        Ok(Self { pcrs: [parse_pcr("PCR0", pcr0)?, parse_pcr("PCR1", pcr1)?, parse_pcr("PCR2", pcr2)?] })
    }

    /// PCR `index` (0, 1 or 2).
    pub fn pcr(&self, index: usize) -> Option<&[u8; PCR_LEN]> {
        self.pcrs.get(index)
    }

    /// PCR `index` (0, 1 or 2) in lower-case hex, the form KMS compares.
    pub fn pcr_hex(&self, index: usize) -> Option<String> {
        self.pcr(index).map(hex::encode)
    }

    /// The first all-zero PCR, by name, if any (a debug-mode enclave).
    pub fn debug_mode_pcr(&self) -> Option<&'static str> {
        PCR_NAMES.iter().zip(&self.pcrs).find(|(_, pcr)| pcr.iter().all(|&b| b == 0)).map(|(name, _)| *name)
    }
}

impl fmt::Debug for PcrSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcrSet")
            .field("pcr0", &hex::encode(self.pcrs[0]))
            .field("pcr1", &hex::encode(self.pcrs[1]))
            .field("pcr2", &hex::encode(self.pcrs[2]))
            .finish()
    }
}

fn parse_pcr(name: &'static str, text: &str) -> Result<[u8; PCR_LEN], PolicyError> {
    let invalid = |reason: String| PolicyError::InvalidPcr { name, reason };
    let text = text.trim();
    // Bound the work and the message before decoding anything.
    if text.len() != 2 * PCR_LEN {
        return Err(invalid(format!("{} hex digits, expected {}", text.len(), 2 * PCR_LEN)));
    }
    let mut out = [0u8; PCR_LEN];
    hex::decode_to_slice(text, &mut out).map_err(|e| invalid(e.to_string()))?;
    Ok(out)
}

/// PCR0-2 from what `nitro-cli build-enclave` or `nitro-cli describe-eif` prints.
///
/// Both commands print a JSON object with a `Measurements` object holding `HashAlgorithm`
/// (the Debug form of nitro-cli's hasher, `"Sha384 { ... }"`) and `PCR0`, `PCR1`, `PCR2` (and
/// `PCR8` for signed images, which is ignored here); `describe-eif` adds `EifVersion`,
/// `IsSigned`, `Metadata` and more beside it. The bare `Measurements` object (as people save
/// it to `pcr.json`) is accepted too, and so are progress lines before the JSON, which
/// `build-enclave` prints when stderr is captured with stdout.
pub fn measurements_from_nitro_cli_json(text: &str) -> Result<PcrSet, PolicyError> {
    let json_start = text
        .lines()
        .scan(0usize, |offset, line| {
            let start = *offset;
            *offset += line.len() + 1;
            Some((start, line))
        })
        .find(|(_, line)| line.trim_start().starts_with('{'))
        .map(|(start, _)| start)
        .ok_or_else(|| PolicyError::NotNitroCliOutput("no JSON object found".into()))?;
    let value: Value = serde_json::from_str(text.get(json_start..).unwrap_or_default())
        .map_err(|e| PolicyError::NotNitroCliOutput(format!("invalid JSON: {e}")))?;
    let measurements = match value.get("Measurements") {
        Some(nested) => nested,
        None if value.get("PCR0").is_some() => &value,
        None => {
            return Err(PolicyError::NotNitroCliOutput("no \"Measurements\" object".into()));
        }
    };
    let measurements = measurements
        .as_object()
        .ok_or_else(|| PolicyError::NotNitroCliOutput("\"Measurements\" is not an object".into()))?;

    let algorithm = measurements
        .get("HashAlgorithm")
        .and_then(Value::as_str)
        .ok_or_else(|| PolicyError::NotNitroCliOutput("no \"HashAlgorithm\" string".into()))?;
    if !is_sha384_name(algorithm) {
        return Err(PolicyError::UnsupportedHashAlgorithm(algorithm.chars().take(40).collect()));
    }

    let pcr = |name: &'static str| -> Result<&str, PolicyError> {
        match measurements.get(name) {
            None | Some(Value::Null) => Err(PolicyError::MissingPcr(name)),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(PolicyError::InvalidPcr { name, reason: "not a string".into() }),
        }
    };
    PcrSet::from_hex(pcr("PCR0")?, pcr("PCR1")?, pcr("PCR2")?)
}

/// nitro-cli prints its hasher's Debug form (`Sha384 { ... }`); accept that and plain names.
fn is_sha384_name(algorithm: &str) -> bool {
    let name = algorithm.split(|c: char| c.is_whitespace() || c == '{').next().unwrap_or("");
    matches!(name.to_ascii_lowercase().replace('-', "").as_str(), "sha384")
}

/// What [`key_policy`] needs.
#[derive(Debug, Clone)]
pub struct KeyPolicyParams {
    account_id: String,
    gateway_role_arn: String,
    pcr_sets: Vec<PcrSet>,
    key_administrators: Vec<String>,
    allow_debug_mode: bool,
}

impl KeyPolicyParams {
    /// A policy for the key in `account_id` that the gateway role `gateway_role_arn` calls on
    /// behalf of enclaves measured as one of `pcr_sets`.
    pub fn new(account_id: impl Into<String>, gateway_role_arn: impl Into<String>, pcr_sets: Vec<PcrSet>) -> Self {
        Self {
            account_id: account_id.into(),
            gateway_role_arn: gateway_role_arn.into(),
            pcr_sets,
            key_administrators: Vec::new(),
            allow_debug_mode: false,
        }
    }

    /// IAM principals (role or user ARNs) that administer the key (AWS's default
    /// administrator actions; none of them releases key material).
    #[must_use]
    pub fn key_administrators(mut self, arns: Vec<String>) -> Self {
        self.key_administrators = arns;
        self
    }

    /// Accepts all-zero PCRs, which only debug-mode enclaves report. Never for keys that
    /// protect anything.
    #[must_use]
    pub fn allow_debug_mode(mut self, allow: bool) -> Self {
        self.allow_debug_mode = allow;
        self
    }
}

/// The key policy (a JSON document for `PutKeyPolicy`). Statements, by Sid:
/// - `KeyAdministration`: the account root may do everything (AWS's default, which keeps the
///   key manageable through IAM). This is the policy's trust root: the root user, and every
///   IAM principal the account grants `kms:PutKeyPolicy`, can rewrite this policy, Deny
///   statements included, and so could release data keys to an unattested caller. Guard that
///   permission (docs/aws-setup.md says how); nothing inside a key policy can bind its author.
/// - `KeyAdministrators` (only with administrators): AWS's default administrator actions
///   without `kms:PutKeyPolicy` and `kms:CreateGrant` ([`ADMIN_ACTIONS`]), and
///   `KeyAdministratorsCannotChangeThisPolicyOrGrantAccess` denying those two to them
///   explicitly, so key administrators can manage the key but never use it;
/// - `EnclaveDataKeys`: the gateway role may `GenerateDataKey` and `Decrypt` when PCR0, PCR1 and
///   PCR2 of the Recipient document are among the allowed values;
/// - `DenyDataKeysWithoutAttestedPCR0` / `PCR1` / `PCR2`: everyone is denied the actions that
///   release key material when that PCR is not an allowed value. One statement per PCR,
///   because the keys of one condition block are ANDed and the Deny must fire when ANY PCR
///   differs. `StringNotEqualsIgnoreCase` is true when the key is absent, so a call without a
///   Recipient is denied as well, whatever `kms:*` the first statement grants.
///
/// Every allowed set contributes its values to each PCR's list. The lists are checked one PCR
/// at a time, so with several sets a document mixing PCR0 of one build with PCR1 of another
/// would also pass; PCR0 covers the whole image, so such a mix is not a build anyone can run.
///
/// `kms:GenerateRandom` is not in the key policy: it is not an operation on a key, so KMS
/// authorizes it by IAM policy alone ([`iam_policy`]).
pub fn key_policy(params: &KeyPolicyParams) -> Result<Value, PolicyError> {
    if !(params.account_id.len() == 12 && params.account_id.bytes().all(|b| b.is_ascii_digit())) {
        return Err(PolicyError::InvalidAccountId(params.account_id.clone()));
    }
    let partition = iam_arn_partition("gateway role ARN", &params.gateway_role_arn)?;
    for admin in &params.key_administrators {
        iam_arn_partition("key administrator ARN", admin)?;
    }
    if params.pcr_sets.is_empty() {
        return Err(PolicyError::NoPcrSets);
    }
    if !params.allow_debug_mode {
        for (set, pcrs) in params.pcr_sets.iter().enumerate() {
            if let Some(name) = pcrs.debug_mode_pcr() {
                return Err(PolicyError::DebugModePcr { set, name });
            }
        }
    }

    // Each PCR's allowed values, deduplicated in first-seen order (two builds often share
    // PCR1, the kernel).
    let allowed: Vec<Vec<String>> = (0..3)
        .map(|index| {
            let mut values: Vec<String> = Vec::new();
            for value in params.pcr_sets.iter().filter_map(|set| set.pcr_hex(index)) {
                if !values.contains(&value) {
                    values.push(value);
                }
            }
            values
        })
        .collect();
    let condition_key = |index: usize| format!("{RECIPIENT_ATTESTATION_PREFIX}PCR{index}");

    let mut statements = vec![json!({
        "Sid": "KeyAdministration",
        "Effect": "Allow",
        "Principal": { "AWS": format!("arn:{partition}:iam::{}:root", params.account_id) },
        "Action": "kms:*",
        "Resource": "*",
    })];
    if !params.key_administrators.is_empty() {
        statements.push(json!({
            "Sid": "KeyAdministrators",
            "Effect": "Allow",
            "Principal": { "AWS": params.key_administrators },
            "Action": ADMIN_ACTIONS,
            "Resource": "*",
        }));
        statements.push(json!({
            "Sid": "KeyAdministratorsCannotChangeThisPolicyOrGrantAccess",
            "Effect": "Deny",
            "Principal": { "AWS": params.key_administrators },
            "Action": ADMIN_DENIED_ACTIONS,
            "Resource": "*",
        }));
    }
    let all_pcrs: serde_json::Map<String, Value> =
        (0..3).map(|index| (condition_key(index), json!(allowed[index]))).collect();
    statements.push(json!({
        "Sid": "EnclaveDataKeys",
        "Effect": "Allow",
        "Principal": { "AWS": params.gateway_role_arn },
        "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
        "Resource": "*",
        "Condition": { "StringEqualsIgnoreCase": all_pcrs },
    }));
    for (index, values) in allowed.iter().enumerate() {
        statements.push(json!({
            "Sid": format!("DenyDataKeysWithoutAttestedPCR{index}"),
            "Effect": "Deny",
            "Principal": "*",
            "Action": GUARDED_ACTIONS,
            "Resource": "*",
            "Condition": { "StringNotEqualsIgnoreCase": { condition_key(index): values } },
        }));
    }
    Ok(json!({
        "Version": "2012-10-17",
        "Id": "keyward-enclave-master-key",
        "Statement": statements,
    }))
}

/// The identity policy for the gateway role: the calls the enclave makes through it. The key
/// policy does the attestation gating; this only lets the role reach the key.
/// `kms:GenerateRandom` is granted on `*` because it is not an operation on a key (IAM ignores
/// a key ARN as its resource).
pub fn iam_policy(key_arn: &str) -> Result<Value, PolicyError> {
    let mut parts = key_arn.splitn(6, ':');
    let well_formed = parts.next() == Some("arn")
        && parts.next().is_some_and(|p| !p.is_empty())
        && parts.next() == Some("kms")
        && parts.next().is_some_and(|r| !r.is_empty())
        && parts.next().is_some_and(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_some_and(|r| r.strip_prefix("key/").is_some_and(|id| !id.is_empty()));
    if !well_formed {
        return Err(PolicyError::InvalidArn {
            what: "KMS key ARN",
            arn: key_arn.to_owned(),
            expected: "arn:<partition>:kms:<region>:<account>:key/<key id>",
        });
    }
    Ok(json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EnclaveDataKeys",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": key_arn,
            },
            {
                "Sid": "EnclaveRandom",
                "Effect": "Allow",
                "Action": "kms:GenerateRandom",
                "Resource": "*",
            },
        ],
    }))
}

/// The partition of an IAM principal ARN (`arn:<partition>:iam::<account>:<role|user|root>…`).
fn iam_arn_partition<'a>(what: &'static str, arn: &'a str) -> Result<&'a str, PolicyError> {
    let invalid = || PolicyError::InvalidArn {
        what,
        arn: arn.to_owned(),
        expected: "an IAM principal ARN, arn:<partition>:iam::<account>:<role/…|user/…|root>",
    };
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let resource_ok = resource == "root" || resource.starts_with("role/") || resource.starts_with("user/");
    if partition.is_empty() || !account_ok || !resource_ok {
        return Err(invalid());
    }
    Ok(partition)
}

#[cfg(test)]
mod tests;
