//! The enclave's configuration. In production it is the command line of the enclave image,
//! which is part of the measured EIF: the gateway can read it (in `Hello`) but not change it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use keyward_kms::KmsEndpoint;
use keyward_transport::{Address, LinkPublicKey};

#[derive(Debug, Parser)]
#[command(name = "enclave", version, about = "keyward enclave: generates, seals and uses the secp256k1 master key")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print this binary's PCR0-2 under the development NSM, in the JSON shape of
    /// `nitro-cli describe-eif`, for key-policy tooling.
    Measure,
}

/// Which NSM to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NsmChoice {
    /// `/dev/nsm` (inside a Nitro Enclave).
    Nitro,
    /// The development NSM (refused together with production settings).
    Mock,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Where the gateway connects: vsock://any:5000 in production.
    #[arg(long, env = "KEYWARD_LISTEN", default_value = "vsock://any:5000")]
    pub listen: String,
    /// The gateway's KMS relay: vsock://3:8000 in production.
    #[arg(long, env = "KEYWARD_KMS_RELAY", default_value = "vsock://3:8000")]
    pub kms_relay: String,
    /// The KMS endpoint, pinned: https://kms.<region>.amazonaws.com in production.
    #[arg(long, env = "KEYWARD_KMS_ENDPOINT")]
    pub kms_endpoint: Option<String>,
    /// The KMS region, pinned.
    #[arg(long, env = "KEYWARD_KMS_REGION")]
    pub kms_region: Option<String>,
    /// The KMS key, pinned (key ARN in production; an alias is accepted in development).
    #[arg(long, env = "KEYWARD_KMS_KEY_ID")]
    pub kms_key_id: Option<String>,
    /// Whether KMS calls carry a Recipient attestation document.
    #[arg(long, env = "KEYWARD_ATTESTATION", default_value_t = true, action = clap::ArgAction::Set)]
    pub attestation: bool,
    /// Which NSM to use.
    #[arg(long, env = "KEYWARD_NSM", value_enum, default_value_t = NsmChoice::Nitro)]
    pub nsm: NsmChoice,
    /// The gateway's link public key (64 hex digits, `gateway link-key public`): only a peer
    /// that proves it holds the matching private key may use this enclave. Required.
    #[arg(long, env = "KEYWARD_GATEWAY_PUBLIC_KEY")]
    pub gateway_public_key: Option<String>,
    /// Unwrapped keyring keys kept in enclave memory (about half a KiB each); more are
    /// unwrapped again when used.
    #[arg(long, env = "KEYWARD_KEY_CACHE", default_value_t = 16_384)]
    pub key_cache: usize,
    /// An owner of this deployment (repeat, or comma-separate in KEYWARD_OWNERS):
    /// `ed25519:<64 hex>` or `p256:<SEC1 hex>`. With owners, key operations need a signed
    /// request the enclave checks itself (docs/authorization.md).
    #[arg(long = "owner", env = "KEYWARD_OWNERS", value_delimiter = ',')]
    pub owners: Vec<String>,
    /// How many owners must approve administrative operations together.
    #[arg(long, env = "KEYWARD_OWNER_QUORUM", default_value_t = 1)]
    pub owner_quorum: u8,
    /// Data folder of the development NSM's PKI (created on first use).
    #[arg(long, env = "KEYWARD_MOCK_NSM_DIR", default_value = ".dev/mock-nsm")]
    pub mock_nsm_dir: PathBuf,
    /// Where the enclave serves its own TLS API, which the gateway passes client connections
    /// through to unread (vsock://any:5443 in production). Off when unset.
    #[arg(long, env = "KEYWARD_TLS_LISTEN")]
    pub tls_listen: Option<String>,
    /// Names in the TLS certificate (DNS names or IP addresses; repeat, or comma-separate).
    #[arg(long = "tls-name", env = "KEYWARD_TLS_NAMES", value_delimiter = ',', default_values_t = [String::from("localhost"), String::from("127.0.0.1")])]
    pub tls_names: Vec<String>,
    /// A client key the TLS API accepts: the SHA-256 of its certificate's SubjectPublicKeyInfo,
    /// 64 hex digits (repeat, or comma-separate).
    #[arg(long = "tls-client-key", env = "KEYWARD_TLS_CLIENT_KEYS", value_delimiter = ',')]
    pub tls_client_keys: Vec<String>,
    /// A client key the TLS API accepts for its admin endpoints too (as `--tls-client-key`).
    #[arg(long = "tls-admin-key", env = "KEYWARD_TLS_ADMIN_KEYS", value_delimiter = ',')]
    pub tls_admin_keys: Vec<String>,
    /// The gateway's store service, through which the TLS API reads and writes rows
    /// (vsock://3:5444 in production). Required with --tls-listen.
    #[arg(long, env = "KEYWARD_HOST_STORE")]
    pub host_store: Option<String>,
}

/// The enclave's own TLS API.
#[derive(Debug)]
pub struct TlsSettings {
    pub listen: Address,
    pub names: Vec<String>,
    pub clients: crate::tls_api::ClientKeys,
    pub host_store: Address,
}

/// Validated configuration.
#[derive(Debug)]
pub struct Config {
    pub listen: Address,
    pub kms_relay: Address,
    pub kms_endpoint: KmsEndpoint,
    pub kms_region: String,
    pub kms_key_id: String,
    pub attestation: bool,
    pub nsm: NsmChoice,
    pub gateway_key: LinkPublicKey,
    pub key_cache: usize,
    /// The owners (authorization on), or none (off).
    pub owners: Option<keyward_custody::Owners>,
    // Read only by the development NSM, which production builds leave out.
    #[cfg_attr(not(feature = "mock-nsm"), allow(dead_code))]
    pub mock_nsm_dir: PathBuf,
    /// The TLS API (`--tls-listen`), if on.
    pub tls: Option<TlsSettings>,
}

impl Config {
    pub fn from_args(args: RunArgs) -> anyhow::Result<Self> {
        let listen: Address = args.listen.parse().context("--listen")?;
        let kms_relay: Address = args.kms_relay.parse().context("--kms-relay")?;
        let kms_region = args.kms_region.context("--kms-region is required")?;
        let kms_endpoint = match args.kms_endpoint {
            Some(url) => KmsEndpoint::parse(&url)?,
            None => KmsEndpoint::parse(&format!("https://kms.{kms_region}.amazonaws.com"))?,
        };
        let kms_key_id = args.kms_key_id.context("--kms-key-id is required")?;
        if kms_key_id.trim().is_empty() || kms_key_id.len() > 2048 {
            bail!("--kms-key-id must be a key ARN, key id or alias");
        }
        let gateway_key = args.gateway_public_key.as_deref().context(
            "--gateway-public-key is required: the enclave serves only a gateway that proves it holds the link key (`gateway link-key public` prints it)",
        )?;
        let gateway_key = LinkPublicKey::from_hex(gateway_key).context("--gateway-public-key")?;
        let owners = if args.owners.is_empty() {
            None
        } else {
            let principals = args
                .owners
                .iter()
                .map(|o| keyward_custody::Owners::parse_principal(o.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("--owner: {e}"))?;
            Some(keyward_custody::Owners { principals, quorum: args.owner_quorum })
        };
        let tls = args
            .tls_listen
            .as_deref()
            .map(|listen| {
                Ok::<_, anyhow::Error>(TlsSettings {
                    listen: listen.parse().context("--tls-listen")?,
                    names: args.tls_names.clone(),
                    clients: crate::tls_api::ClientKeys {
                        api: crate::tls::parse_pins(&args.tls_client_keys)?,
                        admin: crate::tls::parse_pins(&args.tls_admin_keys)?,
                    },
                    host_store: args
                        .host_store
                        .as_deref()
                        .context("--tls-listen needs --host-store (the gateway's store service)")?
                        .parse()
                        .context("--host-store")?,
                })
            })
            .transpose()?;
        if tls.is_none() && (!args.tls_client_keys.is_empty() || !args.tls_admin_keys.is_empty()) {
            bail!("--tls-client-key or --tls-admin-key without --tls-listen: the TLS API is off");
        }
        let config = Config {
            tls,
            owners,
            listen,
            kms_relay,
            kms_endpoint,
            kms_region,
            kms_key_id,
            attestation: args.attestation,
            nsm: args.nsm,
            gateway_key,
            key_cache: args.key_cache,
            mock_nsm_dir: args.mock_nsm_dir,
        };
        config.check_production()?;
        Ok(config)
    }

    /// With the real NSM the enclave is in production: refuse every setting that would let
    /// the host see or choose the data key.
    fn check_production(&self) -> anyhow::Result<()> {
        if self.nsm != NsmChoice::Nitro {
            return Ok(());
        }
        if self.gateway_key.is_published_test_key() {
            bail!(
                "refusing to start: --gateway-public-key is a published test key (RFC 8032), whose private key anyone has"
            );
        }
        if !self.attestation {
            bail!(
                "refusing to start: --attestation false with the Nitro NSM would let KMS return the data key in plaintext through the host"
            );
        }
        if !self.kms_endpoint.is_aws_kms() {
            bail!(
                "refusing to start: KMS endpoint {} is not https://kms.<region>.amazonaws.com; production needs TLS to AWS KMS ending inside the enclave",
                self.kms_endpoint
            );
        }
        if !self.kms_endpoint.host().contains(&format!(".{}.", self.kms_region)) {
            bail!("refusing to start: KMS endpoint {} is not in region {}", self.kms_endpoint, self.kms_region);
        }
        keyward_kms::KeyArn::parse_in_region(&self.kms_key_id, &self.kms_region).context(
            "refusing to start: --kms-key-id must be a full key ARN in production (aliases can be re-pointed)",
        )?;
        if self.owners.is_none() {
            bail!(
                "refusing to start: no --owner (KEYWARD_OWNERS); without owners the enclave obeys whoever controls the host"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY_KEY: &str = "5c0b1f1fd4ba2c2f9e6a1b5a3d0b6f0e8d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a";
    const OWNER: &str = "ed25519:3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec![
            "enclave",
            "--kms-region",
            "us-east-1",
            "--kms-key-id",
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "--gateway-public-key",
            GATEWAY_KEY,
            "--owner",
            OWNER,
        ];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn production_defaults_are_accepted() {
        let config = Config::from_args(args(&[])).unwrap();
        assert_eq!(config.kms_endpoint.url(), "https://kms.us-east-1.amazonaws.com");
        assert_eq!(config.listen.to_string(), "vsock://any:5000");
        assert_eq!(config.kms_relay.to_string(), "vsock://3:8000");
        assert!(config.attestation);
    }

    #[test]
    fn production_refuses_unsafe_settings() {
        for (extra, needle) in [
            (&["--attestation", "false"][..], "--attestation false"),
            (&["--kms-endpoint", "http://kms.us-east-1.amazonaws.com"][..], "is not https://kms."),
            (&["--kms-endpoint", "https://kms.example.com"][..], "is not https://kms."),
            (&["--kms-endpoint", "https://kms.eu-west-1.amazonaws.com"][..], "is not in region us-east-1"),
        ] {
            let err = Config::from_args(args(extra)).unwrap_err().to_string();
            assert!(err.contains(needle), "{extra:?}: {err}");
        }
        for (key_id, needle) in [
            ("alias/keyward-enclave-master-key", "is not an ARN"),
            ("arn:aws:kms:us-east-1:111122223333:alias/x", "is not key/<key id>"),
            ("arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "region eu-west-1"),
        ] {
            let mut pinned = args(&[]);
            pinned.kms_key_id = Some(key_id.into());
            let err = format!("{:#}", Config::from_args(pinned).unwrap_err());
            assert!(err.contains("full key ARN") && err.contains(needle), "{key_id}: {err}");
        }
    }

    #[test]
    fn the_gateway_link_key_is_required_and_must_be_a_public_key() {
        let config = Config::from_args(args(&[])).unwrap();
        assert_eq!(config.gateway_key, LinkPublicKey::from_hex(GATEWAY_KEY).unwrap());
        let mut none = args(&[]);
        none.gateway_public_key = None;
        assert!(format!("{:#}", Config::from_args(none).unwrap_err()).contains("--gateway-public-key is required"));
        let mut bad = args(&[]);
        bad.gateway_public_key = Some("abcd".into());
        assert!(format!("{:#}", Config::from_args(bad).unwrap_err()).contains("not 64 hex digits"));
        // RFC 8032's first test vector: its private key is in the RFC.
        let mut published = args(&[]);
        published.gateway_public_key = Some("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a".into());
        assert!(format!("{:#}", Config::from_args(published).unwrap_err()).contains("published test key"));
    }

    #[test]
    fn development_nsm_allows_local_endpoints() {
        let config = Config::from_args(args(&[
            "--nsm",
            "mock",
            "--attestation",
            "false",
            "--kms-endpoint",
            "http://127.0.0.1:4566",
            "--listen",
            "tcp://127.0.0.1:0",
        ]))
        .unwrap();
        assert_eq!(config.nsm, NsmChoice::Mock);
        assert!(!config.kms_endpoint.is_tls());
    }

    #[test]
    fn owners_parse_production_requires_them_and_a_malformed_one_stops_the_enclave() {
        let mut none = args(&[]);
        none.owners.clear();
        let err = format!("{:#}", Config::from_args(none).unwrap_err());
        assert!(err.contains("no --owner"), "production needs owners: {err}");
        let mut development = args(&["--nsm", "mock"]);
        development.owners.clear();
        assert!(
            Config::from_args(development).unwrap().owners.is_none(),
            "no owners in development: authorization off"
        );
        let key = "ed25519:".to_owned() + &"ab".repeat(32);
        let config = Config::from_args(args(&["--owner", &key, "--owner-quorum", "2"])).unwrap();
        assert_eq!(config.owners.expect("owners").principals.len(), 2);
        let err = format!("{:#}", Config::from_args(args(&["--owner", "ed25519:abcd"])).unwrap_err());
        assert!(err.contains("--owner") && err.contains("32 bytes"), "{err}");
    }
}
