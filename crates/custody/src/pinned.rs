//! The KMS key and region an enclave is pinned to by its measured configuration, and the two
//! checks both the master key and the keyring make against them, so the host can neither
//! choose which KMS key wraps a data key nor slip in a row sealed under another.

use keyward_proto::{ErrorCode, ErrorReply};

/// The pinned KMS key (an ARN in production; an alias in development) and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub key_id: String,
    pub region: String,
}

impl Pinned {
    /// The gateway's request must name the pinned key and region.
    pub fn check_request(&self, kms_key_id: &str, region: &str) -> Result<(), ErrorReply> {
        if kms_key_id != self.key_id || region != self.region {
            return Err(ErrorReply::new(
                ErrorCode::ConfigMismatch,
                format!(
                    "gateway asked for KMS key {kms_key_id} in {region}, but this enclave is pinned to {} in {}",
                    self.key_id, self.region
                ),
            ));
        }
        Ok(())
    }

    /// A stored row (`what`) sealed under another KMS key is refused before any KMS call. With
    /// an alias pinned (development) KMS's answer names the key instead, and the caller checks
    /// that.
    pub fn check_row(&self, row_key_id: &str, what: impl std::fmt::Display) -> Result<(), ErrorReply> {
        if keyward_kms::KeyArn::parse(&self.key_id).is_ok() && row_key_id != self.key_id {
            return Err(ErrorReply::new(
                ErrorCode::ConfigMismatch,
                format!("{what} was sealed under KMS key {row_key_id}, but this enclave is pinned to {}", self.key_id),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn requests_and_rows_of_another_key_are_refused_with_config_mismatch() {
        let pinned = Pinned { key_id: ARN.into(), region: "us-east-1".into() };
        assert!(pinned.check_request(ARN, "us-east-1").is_ok());
        assert_eq!(pinned.check_request("alias/other", "us-east-1").unwrap_err().code, ErrorCode::ConfigMismatch);
        assert_eq!(pinned.check_request(ARN, "eu-west-1").unwrap_err().code, ErrorCode::ConfigMismatch);
        assert!(pinned.check_row(ARN, "the row").is_ok());
        let other = ARN.replace("1234abcd", "9999abcd");
        assert_eq!(pinned.check_row(&other, "the row").unwrap_err().code, ErrorCode::ConfigMismatch);
        // With an alias pinned, the row's ARN is checked against KMS's answer instead.
        let alias = Pinned { key_id: "alias/keyward".into(), region: "us-east-1".into() };
        assert!(alias.check_row(&other, "the row").is_ok());
    }
}
