//! The front doors that speak the seed systems' own APIs (`progressdb:`).

use std::{collections::BTreeSet, path::PathBuf};

use anyhow::{Context, bail};
use keyward_proto::KeyName;
use serde::Deserialize;

/// `progressdb:` — ProgressDB's external KMS API, on TCP and/or a Unix socket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressDbSection {
    /// TCP `host:port` (ProgressDB's default is `127.0.0.1:6820`). Development only: its
    /// clients send no credentials, so anyone who can connect can decrypt.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// A Unix socket (mode 0660); each connecting process's user id is checked against
    /// `allowed_uids` (`SO_PEERCRED`).
    #[serde(default)]
    pub unix_socket: Option<PathBuf>,
    /// User ids that may use the Unix socket. Empty: the gateway's own user only
    /// (development; production needs the list).
    #[serde(default)]
    pub allowed_uids: Vec<u32>,
    /// Keyring names of ProgressDB's data keys: `<key_prefix><key_id>` (default
    /// `progressdb.`), `/` in a key id becoming `.`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// The principal key (PKCS#8 PEM) the front door signs its requests with; required with
    /// `authorization` (docs/authorization.md, front doors).
    #[serde(default)]
    pub principal_key_file: Option<PathBuf>,
}

fn default_key_prefix() -> String {
    "progressdb.".into()
}

/// The validated `progressdb:` section.
#[derive(Debug, Clone)]
pub struct ProgressDbConfig {
    pub listen: Option<std::net::SocketAddr>,
    pub unix_socket: Option<PathBuf>,
    /// Never empty: the gateway's own user stands in for an empty list.
    pub allowed_uids: BTreeSet<u32>,
    /// Whether the file listed them (production must).
    allowed_uids_given: bool,
    pub key_prefix: String,
    pub principal_key_file: Option<PathBuf>,
}

impl ProgressDbSection {
    pub fn validate(self) -> anyhow::Result<ProgressDbConfig> {
        if self.listen.is_none() && self.unix_socket.is_none() {
            bail!("progressdb: give listen (TCP), unix_socket, or both");
        }
        // The prefix must make a valid key name with the shortest key id.
        KeyName::parse_local(&format!("{}x", self.key_prefix))
            .with_context(|| format!("progressdb.key_prefix {:?} does not begin a valid key name", self.key_prefix))?;
        let allowed_uids = if self.allowed_uids.is_empty() {
            BTreeSet::from([nix_uid()])
        } else {
            self.allowed_uids.iter().copied().collect()
        };
        Ok(ProgressDbConfig {
            listen: self.listen,
            unix_socket: self.unix_socket,
            allowed_uids,
            allowed_uids_given: !self.allowed_uids.is_empty(),
            key_prefix: self.key_prefix,
            principal_key_file: self.principal_key_file,
        })
    }
}

impl ProgressDbConfig {
    /// What production refuses.
    pub fn check_production(&self) -> anyhow::Result<()> {
        if let Some(listen) = &self.listen {
            bail!(
                "production refuses progressdb.listen {listen}: ProgressDB's KMS clients send no credentials, so anyone \
                 who reached the port could decrypt; use progressdb.unix_socket with allowed_uids"
            );
        }
        if !self.allowed_uids_given {
            bail!("production needs progressdb.allowed_uids: the user ids of the ProgressDB servers");
        }
        Ok(())
    }
}

/// This process's user id.
fn nix_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// `bitgo:` — BitGo Advanced Wallets' key provider API (`KEY_PROVIDER_URL`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitgoSection {
    /// TCP `host:port` (development: `127.0.0.1:8091`).
    pub listen: std::net::SocketAddr,
    /// Mutual TLS, as BitGo recommends. Production requires it.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// Sources (`user`, `backup`) whose stored `prv` `GET /key/{pub}` returns (BitGo's local
    /// signing mode needs it). Default: none.
    #[serde(default)]
    pub reveal_prv_sources: Vec<String>,
    /// Keyring names: `<key_prefix><source>.<…>` and `<key_prefix>data-keys` (default `bitgo.`).
    #[serde(default = "default_bitgo_prefix")]
    pub key_prefix: String,
    /// The principal key (PKCS#8 PEM) the front door signs its requests with; required with
    /// `authorization` (docs/authorization.md, front doors).
    #[serde(default)]
    pub principal_key_file: Option<PathBuf>,
}

fn default_bitgo_prefix() -> String {
    "bitgo.".into()
}

/// A front door's TLS: its certificate chain and key, and the CA its clients' certificates must
/// chain to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: PathBuf,
}

/// The validated `bitgo:` section.
#[derive(Debug, Clone)]
pub struct BitgoConfig {
    pub listen: std::net::SocketAddr,
    pub tls: Option<TlsSection>,
    pub reveal_prv_user: bool,
    pub reveal_prv_backup: bool,
    pub key_prefix: String,
    pub principal_key_file: Option<PathBuf>,
}

impl BitgoSection {
    pub fn validate(self) -> anyhow::Result<BitgoConfig> {
        let mut reveal = (false, false);
        for source in &self.reveal_prv_sources {
            match source.as_str() {
                "user" => reveal.0 = true,
                "backup" => reveal.1 = true,
                other => bail!("bitgo.reveal_prv_sources: {other:?} is not a source (user or backup)"),
            }
        }
        KeyName::parse_local(&format!("{}data-keys", self.key_prefix))
            .with_context(|| format!("bitgo.key_prefix {:?} does not begin a valid key name", self.key_prefix))?;
        if self.key_prefix.len() > 32 {
            bail!("bitgo.key_prefix is at most 32 characters");
        }
        Ok(BitgoConfig {
            listen: self.listen,
            tls: self.tls,
            reveal_prv_user: reveal.0,
            reveal_prv_backup: reveal.1,
            key_prefix: self.key_prefix,
            principal_key_file: self.principal_key_file,
        })
    }
}

impl BitgoConfig {
    /// What production refuses.
    pub fn check_production(&self) -> anyhow::Result<()> {
        if self.tls.is_none() {
            bail!(
                "production refuses bitgo without tls: the key provider API carries private keys and data keys; give \
                 bitgo.tls cert_file, key_file and client_ca_file (mutual TLS)"
            );
        }
        Ok(())
    }
}
