//! The real AWS documents under `shared/fixtures/nitro/real` and their expected values.
#![allow(dead_code)] // Each test binary uses a different part.

use std::path::PathBuf;

use keyward_attest::{Pcr, RootCertificate, UnixTime, VerifyOptions};
use serde_json::Value;

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

/// One real document with the values `expected.json` lists for it.
pub struct Fixture {
    pub name: String,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Fixture {
    pub fn timestamp_ms(&self) -> u64 {
        self.json["timestamp_ms"].as_u64().unwrap()
    }

    pub fn at(&self) -> UnixTime {
        UnixTime::from_millis(self.timestamp_ms())
    }

    pub fn pcr(&self, index: u16) -> Pcr {
        Pcr::from_hex(self.json["pcrs"][index.to_string()].as_str().unwrap()).unwrap()
    }

    pub fn field(&self, name: &str) -> Option<Vec<u8>> {
        self.json[format!("{name}_hex")].as_str().map(|h| hex::decode(h).unwrap())
    }

    pub fn time(&self, key: &str) -> UnixTime {
        UnixTime::from_secs(parse_utc(self.json[key].as_str().unwrap()))
    }

    /// Options that accept this document: AWS root, its own timestamp, its PCR0-2.
    pub fn options(&self) -> VerifyOptions {
        VerifyOptions::new(RootCertificate::aws_nitro_root_g1(), self.at())
            .expect_pcr(0, [self.pcr(0)])
            .expect_pcr(1, [self.pcr(1)])
            .expect_pcr(2, [self.pcr(2)])
    }

    /// Byte range of the COSE payload inside the document (always a 2-byte-length bstr).
    pub fn payload_range(&self) -> std::ops::Range<usize> {
        assert_eq!(&self.bytes[..8], &[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x59]);
        let len = usize::from(u16::from_be_bytes([self.bytes[8], self.bytes[9]]));
        10..10 + len
    }

    /// Byte range of the last 96 bytes: the signature.
    pub fn signature_range(&self) -> std::ops::Range<usize> {
        self.bytes.len() - 96..self.bytes.len()
    }

    /// Byte range of `der` inside the document.
    pub fn range_of(&self, der: &[u8]) -> std::ops::Range<usize> {
        let start = self.bytes.windows(der.len()).position(|w| w == der).unwrap();
        start..start + der.len()
    }
}

pub fn load_all() -> Vec<Fixture> {
    let dir = fixtures_dir().join("nitro/real");
    let expected: Value = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    expected["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|json| {
            let name = json["file"].as_str().unwrap().to_owned();
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            Fixture { name, bytes, json: json.clone() }
        })
        .collect()
}

/// Seconds since the epoch for `YYYY-MM-DDTHH:MM:SS+00:00`.
pub fn parse_utc(s: &str) -> u64 {
    assert!(s.ends_with("+00:00"), "{s}");
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (hh, mm, ss) = (n(11..13), n(14..16), n(17..19));
    // Days from civil (proleptic Gregorian), after H. Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).unwrap()
}
