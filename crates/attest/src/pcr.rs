//! Platform configuration register values.

use std::fmt;

use crate::VerifyError;

/// The highest number of PCRs a document may carry (Nitro Enclaves have 16; NitroTPM has up to
/// 32). Indices must be below this too.
pub const MAX_PCRS: usize = 32;

/// One PCR value: 48 bytes (SHA-384) in every Nitro Enclave document; 32 or 64 bytes are
/// accepted as well because the NSM's PCR bank may use SHA-256 or SHA-512.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pcr(Box<[u8]>);

impl Pcr {
    /// Takes a raw PCR value of 32, 48 or 64 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VerifyError> {
        match bytes.len() {
            32 | 48 | 64 => Ok(Self(bytes.into())),
            len => {
                Err(VerifyError::InvalidPcrValue(format!("{len} bytes; a PCR is 32, 48 or 64 bytes (48 for SHA-384)")))
            }
        }
    }

    /// Takes a PCR value in hex (as `nitro-cli describe-eif` prints it); case is ignored.
    pub fn from_hex(hex_value: &str) -> Result<Self, VerifyError> {
        let trimmed = hex_value.trim();
        // Bound the work before decoding: 64 bytes is the longest PCR.
        if trimmed.len() > 128 {
            return Err(VerifyError::InvalidPcrValue(format!("{} hex digits; a PCR is at most 128", trimmed.len())));
        }
        let bytes = hex::decode(trimmed).map_err(|e| VerifyError::InvalidPcrValue(format!("not hex: {e}")))?;
        Self::from_bytes(&bytes)
    }

    /// The SHA-384 of `data`, the way the mock NSM derives its PCRs.
    pub fn sha384_of(data: &[u8]) -> Self {
        Self(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, data).as_ref().into())
    }

    /// The all-zero value of `len` bytes (PCR0-2 of a debug-mode enclave, unused PCRs).
    #[cfg_attr(not(feature = "mock"), allow(dead_code))]
    pub(crate) fn zero(len: usize) -> Self {
        Self(vec![0; len].into_boxed_slice())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// True for an all-zero value, which is what a debug-mode enclave reports for PCR0-2.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
}

impl fmt::Debug for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pcr({})", self.to_hex())
    }
}

impl fmt::Display for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The three measurements that identify an enclave image: PCR0 (the whole image), PCR1 (the
/// kernel and bootstrap) and PCR2 (the application).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurements {
    /// PCR0.
    pub pcr0: Pcr,
    /// PCR1.
    pub pcr1: Pcr,
    /// PCR2.
    pub pcr2: Pcr,
}

impl Measurements {
    /// `(index, value)` for PCR0, PCR1 and PCR2.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Pcr)> {
        [(0, &self.pcr0), (1, &self.pcr1), (2, &self.pcr2)].into_iter()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    #[test]
    fn accepts_the_three_digest_lengths_and_nothing_else() {
        for len in [32, 48, 64] {
            assert!(Pcr::from_bytes(&vec![1; len]).is_ok(), "{len}");
        }
        for len in [0, 31, 47, 49, 63, 65] {
            assert!(Pcr::from_bytes(&vec![1; len]).is_err(), "{len}");
        }
    }

    #[test]
    fn hex_round_trips_and_ignores_case_and_surrounding_space() {
        let hex_value = "AB".repeat(48);
        let pcr = Pcr::from_hex(&format!(" {hex_value}\n")).unwrap();
        assert_eq!(pcr.to_hex(), hex_value.to_lowercase());
        assert!(Pcr::from_hex("zz").is_err());
        assert!(Pcr::from_hex(&"00".repeat(65)).is_err());
    }

    #[test]
    fn zero_detection() {
        assert!(Pcr::zero(48).is_zero());
        assert!(!Pcr::sha384_of(b"x").is_zero());
    }
}
