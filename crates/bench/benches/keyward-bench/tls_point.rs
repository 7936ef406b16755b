//! Issue 13's points: the stack restarted with the enclave's TLS API on, one key signed over
//! kept-alive TLS connections that end in the enclave, then full handshakes per second.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use keyward_attest::{Measurements, Pcr, RootCertificate};
use keyward_bench::{
    load::{self, Endpoint, Window, Workload},
    report::PointReport,
    tls::{TLS_KEY_POINT, TlsSummary},
};
use keyward_client::{
    Client,
    attested::AttestedTls,
    tls_pin::{PinnedServer, client_config, spki_sha256},
};
use keyward_e2e::{Stack, free_port};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Connectors of the handshake point.
const HANDSHAKE_CONCURRENCY: usize = 8;

pub async fn tls_points(
    connections: usize,
    window: Window,
    stack: &mut Stack,
    points: &mut Vec<PointReport>,
    singlekey_sign_per_s: f64,
) -> anyhow::Result<TlsSummary> {
    let made = rcgen::generate_simple_self_signed(vec!["bench".to_owned()]).context("client certificate")?;
    let cert: CertificateDer<'static> = made.cert.der().clone();
    let key_der = made.signing_key.serialize_der();
    let identity = || (vec![cert.clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.clone())));
    let pin = spki_sha256(&cert).map_err(anyhow::Error::msg)?;
    let (pass_port, enclave_port, store_port) = (free_port(), free_port(), free_port());
    eprintln!("[bench] restarting gateway and enclave with the enclave's TLS API on 127.0.0.1:{pass_port}");
    stack.options.enclave_args = vec![
        "--tls-listen".into(),
        format!("tcp://127.0.0.1:{enclave_port}"),
        "--tls-client-key".into(),
        hex::encode(pin),
        "--host-store".into(),
        format!("tcp://127.0.0.1:{store_port}"),
    ];
    stack.options.extra_config.push_str(&format!(
        "\nenclave_tls:\n  listen: 127.0.0.1:{pass_port}\n  enclave: tcp://127.0.0.1:{enclave_port}\n  store_listen: tcp://127.0.0.1:{store_port}\n"
    ));
    stack.write_config();
    stack.kill_gateway();
    stack.kill_enclave(1).await;
    stack.start_enclave(1);
    stack.start_gateway();
    stack.wait_keyring().await;

    let root = RootCertificate::from_pem(&std::fs::read_to_string(stack.path().join("mock-nsm-root.pem"))?)
        .map_err(|e| anyhow::anyhow!("mock root: {e}"))?;
    let pcr = |hex: &str| Pcr::from_hex(hex).map_err(|e| anyhow::anyhow!("PCR: {e}"));
    let build = Measurements {
        pcr0: pcr(&stack.measured.pcr0)?,
        pcr1: pcr(&stack.measured.pcr1)?,
        pcr2: pcr(&stack.measured.pcr2)?,
    };
    let base = format!("https://127.0.0.1:{pass_port}");
    let verified = attested(&base, &root, &build, identity()).await?;
    let mut config = client_config(PinnedServer::new(verified), Some(identity()))?;
    let endpoint = Arc::new(
        Endpoint::new(SocketAddr::from(([127, 0, 0, 1], pass_port)), "unused-over-tls")?
            .with_tls(Arc::new(config.clone())),
    );
    let gateway_pid = stack.gateway.as_ref().map(|p| p.pid()).context("the stack has no gateway")?;
    let enclave_pid = stack.enclaves.get(&1).map(|p| p.pid()).context("the stack has no enclave 1")?;
    let pids = [("gateway", gateway_pid), ("enclave", enclave_pid), ("loadgen", std::process::id())];
    let load = load::closed_loop(&endpoint, Workload::KeySign { keys: 1 }, connections, window);
    points.push(super::measured(TLS_KEY_POINT, &pids, window, load).await);

    config.resumption = rustls::client::Resumption::disabled();
    let fresh = Arc::new(
        Endpoint::new(SocketAddr::from(([127, 0, 0, 1], pass_port)), "unused-over-tls")?.with_tls(Arc::new(config)),
    );
    eprintln!("[bench] full TLS handshakes, {HANDSHAKE_CONCURRENCY} at once, {:.1} s", window.measure.as_secs_f64());
    let handshakes = load::handshake_rate(&fresh, HANDSHAKE_CONCURRENCY, window.measure).await;
    Ok(TlsSummary::new(points, singlekey_sign_per_s, connections, handshakes))
}

/// The verified pin, once the TLS API answers (it serves once the gateway has brought the
/// enclave's keys up); one signature through it first, so a refusal fails the run.
async fn attested(
    base: &str,
    root: &RootCertificate,
    build: &Measurements,
    identity: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
) -> anyhow::Result<[u8; 32]> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let expect =
            AttestedTls { root: root.clone(), builds: vec![build.clone()], identity: Some(identity.clone_key()) };
        match Client::connect_attested(base, expect).await {
            Ok((client, pin)) => {
                let request = keyward_client::keys::SignWithKey {
                    digest_hex: Some(hex::encode(load::digest(1))),
                    ..Default::default()
                };
                match client.sign_with_key(&load::key_name(0), &request).await {
                    Ok(_) => return Ok(pin.spki_sha256),
                    Err(e) if std::time::Instant::now() < deadline => eprintln!("[bench] TLS API not ready: {e}"),
                    Err(e) => return Err(e).context("a signature over the enclave's TLS"),
                }
            }
            Err(e) if std::time::Instant::now() < deadline => eprintln!("[bench] TLS API not ready: {e}"),
            Err(e) => return Err(e).context("the enclave's TLS API"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

trait CloneKey {
    fn clone_key(&self) -> Self;
}

impl CloneKey for (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    fn clone_key(&self) -> Self {
        (self.0.clone(), self.1.clone_key())
    }
}
