//! The physical limit: signatures per second of `keyward_seal::MasterKey` on one thread,
//! with no I/O, no encoding and no scheduling around it.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use keyward_seal::MasterKey;

/// Which signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Ecdsa,
    /// BIP340 with fresh auxiliary randomness per signature, as the enclave signs.
    Bip340,
}

/// One raw measurement.
#[derive(Debug, Clone, Copy)]
pub struct RawRate {
    pub signatures: u64,
    pub elapsed: Duration,
}

impl RawRate {
    pub fn per_s(&self) -> f64 {
        self.signatures as f64 / self.elapsed.as_secs_f64()
    }
}

/// A throwaway master key from OS randomness.
pub fn bench_key() -> Result<MasterKey, keyward_seal::SealError> {
    MasterKey::generate(getrandom::fill)
}

/// Signs distinct digests on the calling thread for `warmup` (discarded), then for
/// `duration`, and returns how many signatures the second window made.
pub fn rate(key: &MasterKey, scheme: Scheme, warmup: Duration, duration: Duration) -> RawRate {
    run(key, scheme, warmup);
    run(key, scheme, duration)
}

fn run(key: &MasterKey, scheme: Scheme, duration: Duration) -> RawRate {
    const CHECK_EVERY: u64 = 64;
    let start = Instant::now();
    let mut signatures = 0u64;
    let mut digest = [0u8; 32];
    loop {
        for _ in 0..CHECK_EVERY {
            digest[..8].copy_from_slice(&signatures.to_le_bytes());
            match scheme {
                Scheme::Ecdsa => {
                    black_box(key.sign_ecdsa(black_box(&digest)));
                }
                Scheme::Bip340 => {
                    let mut aux = [0u8; 32];
                    // The enclave draws aux randomness per signature; so does the limit.
                    if getrandom::fill(&mut aux).is_err() {
                        aux[..8].copy_from_slice(&signatures.to_be_bytes());
                    }
                    black_box(key.sign_bip340(black_box(&digest), &aux));
                }
            }
            signatures += 1;
        }
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return RawRate { signatures, elapsed };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_signatures_of_both_schemes() {
        let key = bench_key().unwrap();
        for scheme in [Scheme::Ecdsa, Scheme::Bip340] {
            let r = rate(&key, scheme, Duration::ZERO, Duration::from_millis(20));
            assert!(r.signatures >= 64 && r.per_s() > 0.0, "{scheme:?}: {r:?}");
        }
    }
}
