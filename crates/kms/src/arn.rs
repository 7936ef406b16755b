//! KMS key ARNs, parsed. Production pins the KMS key by its full key ARN, because an alias
//! (`alias/name`, or its ARN `arn:aws:kms:…:alias/name`) can be re-pointed at another key by
//! anyone allowed to update aliases. A prefix test such as `starts_with("arn:")` lets alias
//! ARNs through, so the whole ARN is parsed instead.

use std::fmt;

/// A KMS key ARN: `arn:<partition>:kms:<region>:<12-digit account>:key/<key id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyArn {
    text: String,
    partition_end: usize,
    region: String,
    account: String,
    key_id: String,
}

/// Why a string is not a KMS key ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArnError {
    /// Not of the form `arn:partition:service:region:account:resource`.
    #[error("{0:?} is not an ARN (arn:<partition>:kms:<region>:<account>:key/<key id>)")]
    NotAnArn(String),
    /// The partition is not one of AWS's.
    #[error("ARN partition {0:?} is not aws, aws-cn or aws-us-gov")]
    Partition(String),
    /// The ARN names another service.
    #[error("ARN names service {0:?}, not kms")]
    Service(String),
    /// The ARN names an alias (which can be re-pointed) or another resource type.
    #[error("ARN resource {0:?} is not key/<key id> (an alias can be re-pointed at another key)")]
    NotAKey(String),
    /// The account is not 12 digits.
    #[error("ARN account {0:?} is not a 12-digit AWS account id")]
    Account(String),
    /// The region is empty or malformed.
    #[error("ARN region {0:?} is not an AWS region")]
    Region(String),
    /// The key id is neither a UUID nor a multi-Region key id (`mrk-` and 32 hex digits).
    #[error("ARN key id {0:?} is not a KMS key id (a UUID, or mrk- and 32 hex digits)")]
    KeyId(String),
    /// The region differs from the configured one.
    #[error("key ARN is in region {arn}, but the configured region is {configured}")]
    WrongRegion {
        /// Region in the ARN.
        arn: String,
        /// Configured region.
        configured: String,
    },
}

impl KeyArn {
    /// Parses a KMS key ARN; anything else (an alias, an alias ARN, a bare key id, another
    /// service's ARN) is an error naming the part that is wrong.
    pub fn parse(text: &str) -> Result<Self, ArnError> {
        let parts: Vec<&str> = text.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return Err(ArnError::NotAnArn(shorten(text)));
        };
        if arn != "arn" {
            return Err(ArnError::NotAnArn(shorten(text)));
        }
        if !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
            return Err(ArnError::Partition(shorten(partition)));
        }
        if service != "kms" {
            return Err(ArnError::Service(shorten(service)));
        }
        if !is_region(region) {
            return Err(ArnError::Region(shorten(region)));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ArnError::Account(shorten(account)));
        }
        let Some(key_id) = resource.strip_prefix("key/") else { return Err(ArnError::NotAKey(shorten(resource))) };
        if !is_key_id(key_id) {
            return Err(ArnError::KeyId(shorten(key_id)));
        }
        Ok(KeyArn {
            text: text.to_owned(),
            partition_end: 4 + partition.len(),
            region: region.to_owned(),
            account: account.to_owned(),
            key_id: key_id.to_owned(),
        })
    }

    /// Parses and also requires the ARN's region to be `region`.
    pub fn parse_in_region(text: &str, region: &str) -> Result<Self, ArnError> {
        let arn = Self::parse(text)?;
        if arn.region != region {
            return Err(ArnError::WrongRegion { arn: arn.region, configured: region.to_owned() });
        }
        Ok(arn)
    }

    /// The ARN as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `aws`, `aws-cn` or `aws-us-gov`.
    pub fn partition(&self) -> &str {
        &self.text[4..self.partition_end]
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The 12-digit account id.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The key id (a UUID or a multi-Region key id).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

impl fmt::Display for KeyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`: lower-case words and a number.
fn is_region(region: &str) -> bool {
    let words: Vec<&str> = region.split('-').collect();
    words.len() >= 3
        && words.iter().all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && words.last().is_some_and(|w| w.bytes().all(|b| b.is_ascii_digit()))
}

fn is_key_id(id: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(rest) = id.strip_prefix("mrk-") {
        return rest.len() == 32 && hex(rest);
    }
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| hex(g))
}

/// Errors quote the input, but never more than a line of it.
fn shorten(text: &str) -> String {
    text.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn a_key_arn_parses_into_its_parts() {
        let arn = KeyArn::parse(KEY).unwrap();
        assert_eq!(
            (arn.partition(), arn.region(), arn.account(), arn.key_id()),
            ("aws", "us-east-1", "111122223333", "1234abcd-12ab-34cd-56ef-1234567890ab")
        );
        assert_eq!(arn.to_string(), KEY);
        let mrk = "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
        assert_eq!(KeyArn::parse(mrk).unwrap().partition(), "aws-us-gov");
    }

    #[test]
    fn aliases_and_other_resources_are_not_key_arns() {
        let cases = [
            ("arn:aws:kms:us-east-1:111122223333:alias/x", "NotAKey"),
            ("alias/keyward-enclave-master-key", "NotAnArn"),
            ("1234abcd-12ab-34cd-56ef-1234567890ab", "NotAnArn"),
            ("arn:aws:s3:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "Service"),
            ("arn:evil:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "Partition"),
            ("arn:aws:kms:us-east-1:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab", "Account"),
            ("arn:aws:kms:us-east-1:11112222333a:key/1234abcd-12ab-34cd-56ef-1234567890ab", "Account"),
            ("arn:aws:kms::111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "Region"),
            ("arn:aws:kms:US-EAST-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "Region"),
            ("arn:aws:kms:us-east-1:111122223333:key/", "KeyId"),
            ("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab/x", "KeyId"),
            ("arn:aws:kms:us-east-1:111122223333:key/mrk-12", "KeyId"),
            ("arn:aws:kms:us-east-1:111122223333", "NotAnArn"),
        ];
        for (text, kind) in cases {
            let err = KeyArn::parse(text).unwrap_err();
            assert!(format!("{err:?}").starts_with(kind), "{text}: {err:?}");
        }
    }

    #[test]
    fn the_region_must_be_the_configured_one() {
        assert!(KeyArn::parse_in_region(KEY, "us-east-1").is_ok());
        let err = KeyArn::parse_in_region(KEY, "eu-west-1").unwrap_err();
        assert_eq!(err, ArnError::WrongRegion { arn: "us-east-1".into(), configured: "eu-west-1".into() });
    }
}
