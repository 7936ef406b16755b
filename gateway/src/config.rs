//! The gateway's YAML configuration, validated once at start. `environment: production`
//! turns every unsafe choice into a refusal to start.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use keyward_kms::KmsEndpoint;
use keyward_proto::EnclaveId;
use keyward_transport::{Address, LinkPublicKey};
use serde::Deserialize;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `development` (default) or `production`.
    #[serde(default)]
    pub environment: Environment,
    pub kms: KmsSection,
    pub database: database::DatabaseSection,
    pub server: ServerSection,
    pub relay: RelaySection,
    pub link: LinkSection,
    #[serde(default)]
    pub keyring: KeyringSection,
    #[serde(default)]
    pub attestation: AttestationSection,
    pub enclaves: Vec<EnclaveSection>,
    /// ProgressDB's KMS API (absent: off).
    #[serde(default)]
    pub progressdb: Option<seeds::ProgressDbSection>,
    /// BitGo's key provider API (absent: off).
    #[serde(default)]
    pub bitgo: Option<seeds::BitgoSection>,
    /// The enclaves' owners (absent: authorization off, refused in production).
    #[serde(default)]
    pub authorization: Option<authorization::AuthorizationSection>,
    /// The enclave's own TLS API, passed through unread (absent: off).
    #[serde(default)]
    pub enclave_tls: Option<crate::passthrough::Section>,
}

pub use keyward_admission::Environment;

/// `kms:` — the block of the KMS integration design.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsSection {
    pub enabled: bool,
    /// `null`/absent: `https://kms.<region>.amazonaws.com`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    pub key_id: String,
    pub enable_attestation: bool,
    pub region: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// HTTP listen address, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// File holding the bearer token clients must send to sign (at least 32 characters).
    pub api_token_file: PathBuf,
    /// File holding the bearer token for admin endpoints (rotation). Absent: admin API off.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    /// Where enclaves reach the KMS relay: `vsock://any:8000` in production.
    pub listen: String,
    /// Relay connections at once (default 64); more are dropped.
    #[serde(default = "default_relay_connections")]
    pub max_connections: usize,
    /// Seconds a relayed connection may carry no traffic before it is closed (default 60).
    #[serde(default = "default_relay_idle_seconds")]
    pub idle_timeout_seconds: u64,
}

fn default_relay_connections() -> usize {
    64
}

fn default_relay_idle_seconds() -> u64 {
    60
}

/// `keyring:` — the named keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringSection {
    /// Days a deleted key stays recoverable (`cancel-deletion`) before it is gone (default 7).
    #[serde(default = "default_deletion_waiting_days")]
    pub deletion_waiting_days: u32,
}

impl Default for KeyringSection {
    fn default() -> Self {
        KeyringSection { deletion_waiting_days: default_deletion_waiting_days() }
    }
}

fn default_deletion_waiting_days() -> u32 {
    7
}

/// `link:` — how the gateway proves to its enclaves that it is their gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSection {
    /// The link key (an Ed25519 seed, `gateway link-key new` makes it). Only the keyward
    /// service user may read it: whoever can is able to use the enclave. Its public half is
    /// pinned in the enclave's measured settings (`--gateway-public-key`).
    pub key_file: PathBuf,
    /// The public half, hex, for building the enclave image on a machine without the key
    /// file (`gateway nitro-build-args`). Where both are present they must agree.
    #[serde(default)]
    pub public_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationSection {
    /// PEM of the root the gateway trusts for enclave attestation documents. Absent: the
    /// AWS Nitro Enclaves Root-G1 built into keyward.
    #[serde(default)]
    pub root_pem: Option<PathBuf>,
    /// Acceptable PCR sets (several during a migration between builds).
    #[serde(default)]
    pub expected_pcrs: Vec<PcrSet>,
}

/// PCR0-2 of one enclave image, hex.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PcrSet {
    #[serde(rename = "PCR0")]
    pub pcr0: String,
    #[serde(rename = "PCR1")]
    pub pcr1: String,
    #[serde(rename = "PCR2")]
    pub pcr2: String,
}

impl PcrSet {
    /// The set as the attestation check takes it.
    pub fn measurements(&self) -> anyhow::Result<keyward_attest::Measurements> {
        let pcr = |name: &str, hex: &str| {
            keyward_attest::Pcr::from_hex(hex).with_context(|| format!("attestation.expected_pcrs: {name}"))
        };
        Ok(keyward_attest::Measurements {
            pcr0: pcr("PCR0", &self.pcr0)?,
            pcr1: pcr("PCR1", &self.pcr1)?,
            pcr2: pcr("PCR2", &self.pcr2)?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnclaveSection {
    pub enclave_id: u32,
    /// `vsock://<cid>:5000` in production.
    pub address: String,
    /// vCPUs `nitro-cli run-enclave` gives the enclave (default 2). They are taken from the
    /// parent and must be in the allocator's pool (/etc/nitro_enclaves/allocator.yaml).
    #[serde(default)]
    pub cpu_count: Option<u32>,
    /// Memory in MiB `nitro-cli run-enclave` gives the enclave (default 512), also from the
    /// allocator's pool.
    #[serde(default)]
    pub memory_mib: Option<u32>,
}

/// vCPUs for an enclave whose entry names none: the smallest count that is a full core on
/// instances with two threads per core, which Nitro requires there.
pub const DEFAULT_ENCLAVE_CPU_COUNT: u32 = 2;
/// Memory for an enclave whose entry names none: room for the EIF (kernel, init and a
/// static binary of about 11 MiB, which the enclave holds in its memory as a ramdisk) and the
/// enclave's few MiB of heap.
pub const DEFAULT_ENCLAVE_MEMORY_MIB: u32 = 512;
/// The Nitro Enclaves driver refuses to start an enclave with less.
const MIN_ENCLAVE_MEMORY_MIB: u32 = 64;

/// A relayed connection (one KMS call) ends after this, however busy.
const RELAY_LIFETIME: std::time::Duration = std::time::Duration::from_secs(300);

/// The CIDs of vsock enclaves, whom the relay serves when it listens on vsock.
fn enclave_cids(enclaves: &[EnclaveTarget]) -> Option<Vec<u32>> {
    let cids: Vec<u32> = enclaves
        .iter()
        .filter_map(|e| match e.address {
            Address::Vsock { cid, .. } => Some(cid),
            _ => None,
        })
        .collect();
    (!cids.is_empty()).then_some(cids)
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub environment: Environment,
    pub kms_endpoint: KmsEndpoint,
    pub kms_key_id: String,
    pub kms_region: String,
    pub attestation: bool,
    pub database: database::Database,
    /// Key use through a database outage from rows read this recently (zero: off).
    pub database_outage_grace: std::time::Duration,
    pub listen: String,
    pub api_token_file: PathBuf,
    pub admin_token_file: Option<PathBuf>,
    pub relay_listen: Address,
    pub relay_limits: crate::relay::Limits,
    pub link_key_file: PathBuf,
    pub link_public_key: Option<LinkPublicKey>,
    pub key_deletion_waiting_days: u32,
    pub attestation_root_pem: Option<PathBuf>,
    pub expected_pcrs: Vec<PcrSet>,
    pub enclaves: Vec<EnclaveTarget>,
    pub progressdb: Option<seeds::ProgressDbConfig>,
    pub bitgo: Option<seeds::BitgoConfig>,
    /// The owners every enclave must have.
    pub owners: Option<authorization::Owners>,
    /// The enclave's TLS API, passed through.
    pub enclave_tls: Option<crate::passthrough::Passthrough>,
}

#[derive(Debug, Clone)]
pub struct EnclaveTarget {
    pub enclave_id: EnclaveId,
    pub address: Address,
    /// For `nitro-cli run-enclave --cpu-count`.
    pub cpu_count: u32,
    /// For `nitro-cli run-enclave --memory`.
    pub memory_mib: u32,
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: ConfigFile = serde_yaml_ng::from_str(text)?;
        let config = Self::validate(file)?;
        if config.environment == Environment::Production {
            config.check_production()?;
        }
        Ok(config)
    }

    /// The file parsed and validated, without the production checks: for read-only tooling
    /// (`gateway link-key public`) that may run away from the parent instance.
    pub fn load_without_production_checks(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        Self::parse_without_production_checks(&text).with_context(|| format!("config {}", path.display()))
    }

    /// [`Self::parse`] without the production checks.
    pub fn parse_without_production_checks(text: &str) -> anyhow::Result<Self> {
        Self::validate(serde_yaml_ng::from_str(text)?)
    }

    /// The configuration the enclave image is built from (`gateway nitro-build-args`), which
    /// may be read on a build machine before the image exists. It must be a production file
    /// and its KMS settings pass every production check; the checks about the PCRs (known only
    /// once the image is built) and about this machine's database directory are left to the
    /// gateway on the parent instance.
    pub fn load_for_image(path: &Path) -> anyhow::Result<Self> {
        let context = || format!("config {}", path.display());
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let file: ConfigFile = serde_yaml_ng::from_str(&text).with_context(context)?;
        let config = Self::validate(file).with_context(context)?;
        if config.environment != Environment::Production {
            bail!(
                "{}: the enclave image is a production image, but this file says environment: development \
                 (in development the enclave runs as a process with --nsm mock; no image is built)",
                context()
            );
        }
        config.check_production_kms().with_context(context)?;
        Ok(config)
    }

    /// Everything but the production checks.
    fn validate(file: ConfigFile) -> anyhow::Result<Self> {
        if !file.kms.enabled {
            bail!("kms.enabled is false: keyward seals keys only under KMS and has no other mode; set it to true");
        }
        if file.kms.region.trim().is_empty() {
            bail!("kms.region is empty");
        }
        let endpoint_url =
            file.kms.endpoint_url.clone().unwrap_or_else(|| format!("https://kms.{}.amazonaws.com", file.kms.region));
        let kms_endpoint = KmsEndpoint::parse(&endpoint_url)?;
        if file.relay.max_connections == 0 || file.relay.idle_timeout_seconds == 0 {
            bail!("relay.max_connections and relay.idle_timeout_seconds must be at least 1");
        }
        if file.enclaves.is_empty() {
            bail!("enclaves: at least one enclave is required");
        }
        let mut seen = BTreeSet::new();
        let mut enclaves = Vec::new();
        for e in &file.enclaves {
            if !seen.insert(e.enclave_id) {
                bail!("enclaves: enclave_id {} is listed twice", e.enclave_id);
            }
            let address = e.address.parse().with_context(|| format!("enclaves: enclave {}", e.enclave_id))?;
            let cpu_count = e.cpu_count.unwrap_or(DEFAULT_ENCLAVE_CPU_COUNT);
            if cpu_count == 0 {
                bail!("enclaves: enclave {}: cpu_count must be at least 1", e.enclave_id);
            }
            let memory_mib = e.memory_mib.unwrap_or(DEFAULT_ENCLAVE_MEMORY_MIB);
            if memory_mib < MIN_ENCLAVE_MEMORY_MIB {
                bail!(
                    "enclaves: enclave {}: memory_mib {memory_mib} is below the {MIN_ENCLAVE_MEMORY_MIB} MiB Nitro Enclaves minimum",
                    e.enclave_id
                );
            }
            enclaves.push(EnclaveTarget { enclave_id: EnclaveId(e.enclave_id), address, cpu_count, memory_mib });
        }
        for set in &file.attestation.expected_pcrs {
            for (name, value) in [("PCR0", &set.pcr0), ("PCR1", &set.pcr1), ("PCR2", &set.pcr2)] {
                let bytes =
                    hex::decode(value).with_context(|| format!("attestation.expected_pcrs: {name} is not hex"))?;
                if bytes.len() != 48 {
                    bail!(
                        "attestation.expected_pcrs: {name} must be 48 bytes (96 hex characters), got {}",
                        bytes.len()
                    );
                }
            }
        }
        let config = Config {
            environment: file.environment,
            kms_endpoint,
            kms_key_id: file.kms.key_id,
            kms_region: file.kms.region,
            attestation: file.kms.enable_attestation,
            database_outage_grace: file.database.outage_grace()?,
            database: file.database.parse()?,
            listen: file.server.listen,
            api_token_file: file.server.api_token_file,
            admin_token_file: file.server.admin_token_file,
            relay_listen: file.relay.listen.parse().context("relay.listen")?,
            relay_limits: crate::relay::Limits {
                max_connections: file.relay.max_connections,
                idle_timeout: std::time::Duration::from_secs(file.relay.idle_timeout_seconds),
                lifetime: RELAY_LIFETIME,
                vsock_cids: enclave_cids(&enclaves),
            },
            key_deletion_waiting_days: file.keyring.deletion_waiting_days,
            link_key_file: file.link.key_file,
            link_public_key: file
                .link
                .public_key
                .as_deref()
                .map(LinkPublicKey::from_hex)
                .transpose()
                .context("link.public_key")?,
            attestation_root_pem: file.attestation.root_pem,
            expected_pcrs: file.attestation.expected_pcrs,
            enclaves,
            progressdb: file.progressdb.map(seeds::ProgressDbSection::validate).transpose()?,
            bitgo: file.bitgo.map(seeds::BitgoSection::validate).transpose()?,
            owners: file.authorization.map(authorization::AuthorizationSection::validate).transpose()?,
            enclave_tls: file.enclave_tls.map(crate::passthrough::Section::validate).transpose()?,
        };
        config.check_front_door_principals()?;
        Ok(config)
    }

    /// With owners, each front door signs as its own principal; without, it has none to sign as.
    fn check_front_door_principals(&self) -> anyhow::Result<()> {
        let doors = [
            ("bitgo", self.bitgo.as_ref().map(|b| &b.principal_key_file)),
            ("progressdb", self.progressdb.as_ref().map(|p| &p.principal_key_file)),
        ];
        for (door, file) in doors {
            match (self.owners.is_some(), file) {
                (true, Some(None)) => bail!(
                    "{door}.principal_key_file is needed with authorization: the front door signs its requests as a \
                     principal the owners grant (keyward principal new --out FILE; docs/authorization.md)"
                ),
                (false, Some(Some(_))) => {
                    bail!("{door}.principal_key_file needs authorization (owners): without owners nothing is signed")
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Everything production refuses, each with the reason.
    fn check_production(&self) -> anyhow::Result<()> {
        self.check_production_kms()?;
        self.check_production_host()?;
        self.progressdb.as_ref().map_or(Ok(()), seeds::ProgressDbConfig::check_production)?;
        self.bitgo.as_ref().map_or(Ok(()), seeds::BitgoConfig::check_production)
    }

    /// The production checks on the settings the enclave image pins (KMS and attestation).
    fn check_production_kms(&self) -> anyhow::Result<()> {
        if std::env::var_os("KEYWARD_FAULT").is_some() {
            bail!("production refuses KEYWARD_FAULT (fault injection is for tests only)");
        }
        if !self.attestation {
            bail!("production refuses kms.enable_attestation: false (the data key would cross the host in plaintext)");
        }
        if !self.kms_endpoint.is_tls() {
            bail!("production refuses plain-HTTP KMS endpoint {}", self.kms_endpoint);
        }
        if !self.kms_endpoint.is_aws_kms() {
            bail!(
                "production refuses KMS endpoint {}: only https://kms.<region>.amazonaws.com is allowed",
                self.kms_endpoint
            );
        }
        keyward_kms::KeyArn::parse_in_region(&self.kms_key_id, &self.kms_region)
            .context("production needs kms.key_id as a full key ARN (aliases can be re-pointed)")?;
        match &self.owners {
            None => bail!(
                "production needs authorization.owners: without owners the enclave obeys whoever controls the host (docs/authorization.md)"
            ),
            Some(owners) if owners.has_published_test_key() => bail!(
                "production refuses authorization.owners: one is a published test key (RFC 8032), whose private key anyone has"
            ),
            Some(_) => {}
        }
        if self.link_public_key.is_some_and(|key| key.is_published_test_key()) {
            bail!(
                "production refuses link.public_key: it is a published test key (RFC 8032), whose private key anyone has"
            );
        }
        Ok(())
    }

    /// The rest of the production checks: attestation roots, PCRs, the database directory.
    fn check_production_host(&self) -> anyhow::Result<()> {
        if self.attestation_root_pem.is_some() {
            bail!(
                "production refuses attestation.root_pem: enclaves must chain to the AWS Nitro Enclaves root built into keyward"
            );
        }
        if self.expected_pcrs.is_empty() {
            bail!(
                "production needs attestation.expected_pcrs (PCR0-2 of the enclave image from `nitro-cli describe-eif`)"
            );
        }
        for set in &self.expected_pcrs {
            for (name, value) in [("PCR0", &set.pcr0), ("PCR1", &set.pcr1), ("PCR2", &set.pcr2)] {
                if value.bytes().all(|c| c == b'0') {
                    bail!(
                        "production refuses an all-zero {name}: that is a debug-mode enclave, whose memory the host can read"
                    );
                }
            }
        }
        if let Some(tls) = &self.enclave_tls
            && !matches!(tls.enclave, Address::Vsock { .. })
        {
            bail!(
                "production refuses enclave_tls.enclave {}: the enclave's TLS listener is reached over vsock://CID:PORT",
                tls.enclave
            );
        }
        if let Some(tls) = &self.enclave_tls
            && !matches!(tls.store_listen, Address::Vsock { .. })
        {
            bail!(
                "production refuses enclave_tls.store_listen {}: only the enclaves may reach the store service, over vsock://any:PORT",
                tls.store_listen
            );
        }
        if let Address::Tcp { .. } = self.relay_listen {
            bail!(
                "production refuses relay.listen {}: a TCP relay is reachable from the network; enclaves reach it over vsock://any:PORT",
                self.relay_listen
            );
        }
        for enclave in &self.enclaves {
            if let Address::Tcp { .. } = enclave.address {
                bail!(
                    "production refuses enclave {} at {}: a Nitro Enclave is reached over vsock://CID:PORT, and TCP would carry the link over the network",
                    enclave.enclave_id,
                    enclave.address
                );
            }
        }
        self.database.check_production()?;
        Ok(())
    }
}

pub mod authorization;
pub mod database;
pub mod seeds;
#[cfg(test)]
mod tests;
