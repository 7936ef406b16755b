//! Attestation documents on request (`/v1/attestation`, the gateway's image check). Each is a
//! blocking NSM call, so it runs on the blocking pool, never on the async workers that serve
//! signing, and at most [`MAX_CONCURRENT`] at once; a request that finds no free slot within
//! [`QUEUE_WAIT`] is answered `busy`. A flood of attestation requests therefore costs at most
//! two threads' worth of NSM time and never stalls a signature.

use std::{sync::Arc, time::Duration};

use keyward_attest::{AttestationRequest, Nsm};
use keyward_proto::{AttestRequest, ErrorCode, ErrorReply};
use tokio::sync::Semaphore;

/// Largest nonce accepted for an attestation document.
pub const MAX_NONCE_LEN: usize = 512;
/// Attestation documents made at once.
pub const MAX_CONCURRENT: usize = 2;
/// How long a request waits for a free slot before the answer is `busy`.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Attestations {
    nsm: Arc<dyn Nsm>,
    slots: Arc<Semaphore>,
    queue_wait: Duration,
}

impl Attestations {
    pub fn new(nsm: Arc<dyn Nsm>) -> Self {
        Self::with_limits(nsm, MAX_CONCURRENT, QUEUE_WAIT)
    }

    fn with_limits(nsm: Arc<dyn Nsm>, slots: usize, queue_wait: Duration) -> Self {
        Attestations { nsm, slots: Arc::new(Semaphore::new(slots)), queue_wait }
    }

    /// A fresh document for the gateway: its `nonce` is the caller's, its `user_data` the
    /// 33-byte compressed master public key once one is committed (before that the document
    /// still proves the image, which the gateway checks before trusting an enclave), followed
    /// by the 32-byte audit public key when the enclave has owners, and its `public_key` the
    /// keyring's transfer key, for imports.
    pub async fn for_gateway(
        &self,
        request: AttestRequest,
        master_public_key: Option<[u8; 33]>,
        audit_public_key: Option<&[u8]>,
        transfer_public_key: [u8; 32],
    ) -> Result<Vec<u8>, ErrorReply> {
        if request.nonce.len() > MAX_NONCE_LEN {
            return Err(ErrorReply::new(
                ErrorCode::BadRequest,
                format!("nonce is {} bytes; at most {MAX_NONCE_LEN}", request.nonce.len()),
            ));
        }
        self.attest(AttestationRequest {
            public_key: Some(transfer_public_key.to_vec()),
            user_data: master_public_key.map(|k| [&k[..], audit_public_key.unwrap_or_default()].concat()),
            nonce: Some(request.nonce),
        })
        .await
    }

    /// A document for `request`, made on the blocking pool.
    pub async fn attest(&self, request: AttestationRequest) -> Result<Vec<u8>, ErrorReply> {
        let permit = tokio::time::timeout(self.queue_wait, self.slots.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                ErrorReply::new(
                    ErrorCode::Busy,
                    format!("{MAX_CONCURRENT} attestation documents are being made already; retry shortly"),
                )
            })?;
        let nsm = self.nsm.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            nsm.attest(&request)
        })
        .await
        .map_err(|_| ErrorReply::new(ErrorCode::Internal, "attestation task failed"))?
        .map_err(|e| ErrorReply::new(ErrorCode::Attestation, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use keyward_attest::{NsmError, NsmKind};

    use super::*;

    /// An NSM whose documents take `delay` of blocking work each.
    #[derive(Debug)]
    struct SlowNsm {
        delay: Duration,
    }

    impl Nsm for SlowNsm {
        fn kind(&self) -> NsmKind {
            NsmKind::Mock
        }

        fn attest(&self, _: &AttestationRequest) -> Result<Vec<u8>, NsmError> {
            std::thread::sleep(self.delay);
            Ok(vec![0x84])
        }

        fn random(&self, out: &mut [u8]) -> Result<(), NsmError> {
            out.fill(4);
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn documents_are_made_off_the_async_worker() {
        // One async worker thread: were the NSM call made on it, the ticker below could not
        // run while two documents take 300 ms each.
        let attestations = Attestations::new(Arc::new(SlowNsm { delay: Duration::from_millis(300) }));
        let ticker = async {
            let started = Instant::now();
            let mut ticks = 0;
            while started.elapsed() < Duration::from_millis(250) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks += 1;
            }
            ticks
        };
        let (a, b, ticks) = tokio::join!(
            attestations.attest(AttestationRequest::default()),
            attestations.attest(AttestationRequest::default()),
            ticker
        );
        assert!(a.is_ok() && b.is_ok());
        assert!(ticks >= 10, "the async worker kept running ({ticks} ticks of 10 ms in 250 ms)");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_beyond_the_slots_that_wait_too_long_are_busy() {
        let attestations = Arc::new(Attestations::with_limits(
            Arc::new(SlowNsm { delay: Duration::from_millis(500) }),
            2,
            Duration::from_millis(100),
        ));
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let attestations = attestations.clone();
                tokio::spawn(async move { attestations.attest(AttestationRequest::default()).await })
            })
            .collect();
        let mut busy = 0;
        for call in calls {
            if let Err(e) = call.await.unwrap() {
                assert_eq!(e.code, ErrorCode::Busy);
                busy += 1;
            }
        }
        assert_eq!(busy, 1, "two slots: the third request is busy");
    }
}
