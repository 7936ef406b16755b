//! The enclave's TLS API from the command line: `--attested-tls` (verify the attestation,
//! then pin the key, in one step), `keyward tls pin` (print the verified pin for other
//! clients) and `keyward tls client-cert` (a client certificate the enclave lists by its key).

use std::path::{Path, PathBuf};

use anyhow::Context;
use keyward_client::{
    Client,
    attested::{AttestedTls, VerifiedPin, verify_tls_api},
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::verify::{load_root, parse_builds};

/// What `--attested-tls` checks, and the client certificate it presents.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// The gateway URL is the enclave's TLS API (https://…:8443): verify its attestation
    /// document (root, --tls-pcrs, a fresh nonce) and trust only the key it binds.
    #[arg(long, global = true)]
    pub attested_tls: bool,
    /// PEM root of the attestation (default: the built-in AWS Nitro Enclaves Root-G1).
    #[arg(long, value_name = "PEM", global = true)]
    pub tls_root: Option<PathBuf>,
    /// PCR0,PCR1,PCR2 of an acceptable enclave build; repeat for several.
    #[arg(long = "tls-pcrs", value_name = "PCR0,PCR1,PCR2", global = true)]
    pub tls_pcrs: Vec<String>,
    /// Client certificate (PEM) the enclave lists by its key (`keyward tls client-cert`).
    #[arg(long, value_name = "PEM", global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PKCS#8 PEM).
    #[arg(long, value_name = "PEM", global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum TlsCommand {
    /// Verify the enclave TLS API's attestation and print the pin of its key: for curl's
    /// `--pinnedpubkey`, and (with --cert-out) the certificate for a CA bundle file.
    Pin {
        /// Write the verified certificate (PEM) here.
        #[arg(long, value_name = "PATH")]
        cert_out: Option<PathBuf>,
    },
    /// Make a client certificate and key (self-issued, P-256; the key file mode 0600, never
    /// overwriting) and print the pin the enclave's --tls-client-key takes.
    ClientCert {
        /// Writes `<out>.pem` (certificate) and `<out>.key` (key).
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
}

impl TlsArgs {
    fn expectations(&self) -> anyhow::Result<AttestedTls> {
        let refused = |r: crate::verify::Refused| anyhow::anyhow!("{}: {}", r.code, r.message);
        let root = load_root(self.tls_root.as_deref()).map_err(refused)?;
        let builds = parse_builds(&self.tls_pcrs, false).map_err(refused)?.unwrap_or_default();
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(read_identity(cert, key)?),
            _ => None,
        };
        Ok(AttestedTls { root, builds, identity })
    }

    /// The client for `gateway`: attested and pinned with --attested-tls, else none (the
    /// caller makes a plain one).
    pub async fn client(&self, gateway: &str) -> anyhow::Result<Option<Client>> {
        if !self.attested_tls {
            if self.tls_cert.is_some() {
                anyhow::bail!("--tls-cert is for the enclave's TLS API: add --attested-tls");
            }
            return Ok(None);
        }
        let (client, _) = Client::connect_attested(gateway, self.expectations()?).await?;
        Ok(Some(client))
    }
}

fn read_identity(cert: &Path, key: &Path) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("--tls-cert {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("--tls-key {}", key.display()))?;
    Ok((chain, key))
}

pub async fn run(gateway: &str, args: &TlsArgs, command: TlsCommand) -> anyhow::Result<serde_json::Value> {
    match command {
        TlsCommand::Pin { cert_out } => {
            let pin: VerifiedPin = verify_tls_api(gateway, &args.expectations()?).await?;
            if let Some(path) = &cert_out {
                std::fs::write(path, pin.certificate_pem()).with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(serde_json::json!({
                "verified": true,
                "spki_sha256_hex": hex::encode(pin.spki_sha256),
                "curl_pinnedpubkey": pin.curl_pin(),
                "module_id": pin.module_id,
                "certificate_file": cert_out.map(|p| p.display().to_string()),
            }))
        }
        TlsCommand::ClientCert { out } => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("client key")?;
            let mut params = rcgen::CertificateParams::new(vec!["keyward-client".to_owned()])?;
            params.distinguished_name.push(rcgen::DnType::CommonName, "keyward client");
            let cert = params.self_signed(&key)?;
            let pin = keyward_client::tls_pin::spki_sha256(cert.der()).map_err(anyhow::Error::msg)?;
            let (cert_path, key_path) = (out.with_extension("pem"), out.with_extension("key"));
            crate::crypt::write_new_private(&key_path, key.serialize_pem().as_bytes())?;
            std::fs::write(&cert_path, cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
            Ok(serde_json::json!({
                "certificate": cert_path.display().to_string(),
                "key": key_path.display().to_string(),
                "spki_sha256_hex": hex::encode(pin),
                "principal": keyward_client::tls_pin::principal_of(cert.der()),
            }))
        }
    }
}
