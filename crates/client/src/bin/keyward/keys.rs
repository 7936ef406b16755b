//! `keyward keys ...`: the keyring API from the command line. Management (create, batch,
//! rotate, disable, enable, delete, cancel-deletion) needs the admin token as `--token-file`.
//! A key of another keystore than the default one is named `<keystore>/<name>` everywhere
//! (`keys create acme/treasury`, `keys sign acme/treasury …`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine;
use keyward_client::{
    Client,
    keys::{CreateKey, SignWithKey, VerifyWithKey},
    principal::PrincipalSigner,
};

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key: secp256k1, ed25519, p256, aes256-gcm or hmac-sha256.
    Create {
        name: String,
        #[arg(long = "type", value_name = "TYPE")]
        key_type: String,
        /// The key may ever be exported (encrypted to a key you supply). Fixed at creation.
        #[arg(long)]
        exportable: bool,
    },
    /// Create many keys at once, all or none: PREFIX-0 .. PREFIX-(COUNT-1).
    Batch {
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        count: usize,
        #[arg(long = "type", value_name = "TYPE")]
        key_type: String,
    },
    /// List keys in name order (one page; --after for the next).
    List {
        /// The keystore whose keys to list (names `<keystore>/<name>`).
        #[arg(long, default_value = "default")]
        keystore: String,
        #[arg(long)]
        after: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// Find the keys with this public key instead.
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
    },
    /// A key's metadata and versions.
    Show { name: String },
    /// A new version (signing uses it; older versions still verify).
    Rotate { name: String },
    /// Stop a key from being used. With owners: signed with --principal-key and approved with
    /// each --approve-with key (the owners' quorum, or a policy's `disable` grant).
    Disable {
        name: String,
        #[arg(long, value_name = "PATH")]
        approve_with: Vec<PathBuf>,
    },
    /// Use a disabled key again (operation `enable`; signed like disable).
    Enable {
        name: String,
        #[arg(long, value_name = "PATH")]
        approve_with: Vec<PathBuf>,
    },
    /// Schedule the key's deletion (unusable at once; gone after the waiting period). With
    /// owners: signed and approved like disable (operation `delete`).
    Delete {
        name: String,
        #[arg(long, value_name = "PATH")]
        approve_with: Vec<PathBuf>,
        /// With owners: days until the deletion is final, signed with the request (1 to 3650).
        #[arg(long, default_value_t = keyward_client::DEFAULT_WAITING_DAYS)]
        waiting_days: u32,
    },
    /// Undo a scheduled deletion (the key stays disabled until enabled; signed like delete).
    CancelDeletion {
        name: String,
        #[arg(long, value_name = "PATH")]
        approve_with: Vec<PathBuf>,
    },
    /// Sign with a key.
    Sign {
        name: String,
        #[command(flatten)]
        what: Signed,
    },
    /// Check a signature by a key.
    Verify {
        name: String,
        #[command(flatten)]
        what: Signed,
        #[arg(long, value_name = "HEX")]
        signature: String,
    },
    /// Import a key. Its secret is sealed here, on this machine, to the transfer key of an
    /// enclave whose attestation document passes every check of `verify-attestation` (root,
    /// image, fresh nonce); the gateway and the host see only the sealed bytes.
    Import {
        name: String,
        #[arg(long = "type", value_name = "TYPE")]
        key_type: String,
        /// File holding the 32 secret bytes as 64 hex characters: a secp256k1 or P-256
        /// scalar, an Ed25519 seed, or an AES or HMAC key.
        #[arg(long, value_name = "PATH")]
        secret_file: PathBuf,
        /// The key may be exported later. Bound into the sealed bytes.
        #[arg(long)]
        exportable: bool,
        #[command(flatten)]
        image: crate::verify::ImageArgs,
        /// Another principal's key file that approves the import (the owners' quorum).
        #[arg(long, value_name = "PATH")]
        approve_with: Vec<PathBuf>,
    },
    /// Export a version of an exportable key. A fresh X25519 key pair is made here; the
    /// gateway gets its public half only. The secret is written to --out (a new file, mode
    /// 0600) as 64 hex characters, after checking it is the key's public key.
    Export {
        name: String,
        #[arg(long)]
        version: Option<u32>,
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
        /// Another principal's key file that approves the export (the owners' quorum).
        #[arg(long, value_name = "PATH")]
        approve_with: Vec<PathBuf>,
    },
    /// A key's newest policy (who besides the owners may use it).
    Policy { name: String },
    /// Set a key's policy from a JSON document (docs/authorization.md), signed with
    /// --principal-key and approved with each --approve-with key (the owners' quorum).
    SetPolicy {
        name: String,
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        /// Another principal's key file that approves the same request; repeat for more.
        #[arg(long, value_name = "PATH")]
        approve_with: Vec<PathBuf>,
    },
    #[command(flatten)]
    Crypt(crate::crypt::CryptCommand),
}

/// What is (or was) signed, and how.
#[derive(Debug, clap::Args)]
pub struct Signed {
    /// A 32-byte digest, hex.
    #[arg(long, value_name = "HEX", conflicts_with_all = ["message", "message_file"])]
    digest: Option<String>,
    /// A message, as text.
    #[arg(long, conflicts_with = "message_file")]
    message: Option<String>,
    /// A message, from a file.
    #[arg(long, value_name = "PATH")]
    message_file: Option<PathBuf>,
    /// sha256, keccak256 or none (for a message).
    #[arg(long)]
    hash: Option<String>,
    /// ecdsa, bip340 or ed25519.
    #[arg(long)]
    algorithm: Option<String>,
    /// compact, der or ethereum.
    #[arg(long)]
    format: Option<String>,
    /// The version (default: the latest).
    #[arg(long)]
    version: Option<u32>,
}

impl Signed {
    fn request(&self) -> anyhow::Result<SignWithKey> {
        let message = match (&self.message, &self.message_file) {
            (Some(text), _) => Some(text.as_bytes().to_vec()),
            (None, Some(path)) => Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?),
            (None, None) => None,
        };
        if message.is_none() && self.digest.is_none() {
            bail!("give --digest, --message or --message-file");
        }
        Ok(SignWithKey {
            digest_hex: self.digest.clone(),
            message_b64: message.map(|m| base64::engine::general_purpose::STANDARD.encode(m)),
            hash: self.hash.clone(),
            algorithm: self.algorithm.clone(),
            format: self.format.clone(),
            version: self.version,
        })
    }
}

/// Runs one command; returns the JSON answer.
pub async fn run(client: &Client, command: KeysCommand) -> anyhow::Result<serde_json::Value> {
    let json = |value: &dyn Json| value.to_json();
    Ok(match command {
        KeysCommand::Create { name, key_type, exportable } => {
            json(&client.create_key(&name, &key_type, exportable).await?)
        }
        KeysCommand::Batch { prefix, count, key_type } => {
            let keys = (0..count)
                .map(|i| CreateKey { name: format!("{prefix}-{i}"), key_type: key_type.clone(), exportable: false })
                .collect();
            json(&client.create_keys(keys).await?)
        }
        KeysCommand::List { keystore, public_key: Some(hex_key), .. } => {
            let key = hex::decode(&hex_key).context("--public-key is not hex")?;
            json(&client.find_key_in(&keystore, &key).await?)
        }
        KeysCommand::List { keystore, after, limit, public_key: None } => {
            json(&client.list_keys_in(&keystore, after.as_deref(), limit).await?)
        }
        KeysCommand::Show { name } => json(&client.key(&name).await?),
        KeysCommand::Rotate { name } => json(&client.rotate_key(&name).await?),
        KeysCommand::Disable { name, approve_with } => state(client, &name, "disable", &approve_with).await?,
        KeysCommand::Enable { name, approve_with } => state(client, &name, "enable", &approve_with).await?,
        KeysCommand::CancelDeletion { name, approve_with } => {
            state(client, &name, "cancel-deletion", &approve_with).await?
        }
        KeysCommand::Delete { name, approve_with, waiting_days } => {
            let approvers = read_approvers(&approve_with)?;
            let approvers: Vec<&PrincipalSigner> = approvers.iter().collect();
            serde_json::to_value(client.delete_key_approved(&name, waiting_days, &approvers).await?)?
        }
        KeysCommand::Sign { name, what } => json(&client.sign_with_key(&name, &what.request()?).await?),
        KeysCommand::Verify { name, what, signature } => {
            let signed = what.request()?;
            let request = VerifyWithKey {
                digest_hex: signed.digest_hex,
                message_b64: signed.message_b64,
                hash: signed.hash,
                algorithm: signed.algorithm,
                format: signed.format,
                version: signed.version,
                signature_hex: signature,
            };
            json(&client.verify_with_key(&name, &request).await?)
        }
        KeysCommand::Import { name, key_type, secret_file, exportable, image, approve_with } => {
            let approvers = read_approvers(&approve_with)?;
            let approvers: Vec<&PrincipalSigner> = approvers.iter().collect();
            json(
                &crate::transfer::import(client, &name, &key_type, &secret_file, exportable, &image, &approvers)
                    .await?,
            )
        }
        KeysCommand::Export { name, version, out, approve_with } => {
            let approvers = read_approvers(&approve_with)?;
            let approvers: Vec<&PrincipalSigner> = approvers.iter().collect();
            json(&crate::transfer::export(client, &name, version, &out, &approvers).await?)
        }
        KeysCommand::Policy { name } => json(&client.key_policy(&name).await?),
        KeysCommand::SetPolicy { name, file, approve_with } => {
            let policy = read_policy(&file)?;
            let approvers = read_approvers(&approve_with)?;
            let approvers: Vec<&PrincipalSigner> = approvers.iter().collect();
            json(&client.set_key_policy(&name, &policy, &approvers).await?)
        }
        KeysCommand::Crypt(command) => crate::crypt::run(client, command).await?,
    })
}

/// A state change (`disable`, `enable`, `delete`, `cancel-deletion`), approved by `approve_with`.
async fn state(
    client: &Client,
    name: &str,
    action: &str,
    approve_with: &[PathBuf],
) -> anyhow::Result<serde_json::Value> {
    let approvers = read_approvers(approve_with)?;
    let approvers: Vec<&PrincipalSigner> = approvers.iter().collect();
    Ok(serde_json::to_value(client.set_key_state_approved(name, action, &approvers).await?)?)
}

/// `keyward keystore …`.
#[derive(Debug, clap::Subcommand)]
pub enum KeystoreCommand {
    /// A keystore's newest policy (who besides the owners may use or create its keys).
    Policy {
        #[arg(long, default_value = "default")]
        keystore: String,
    },
    /// Set a keystore's policy from a JSON document (docs/authorization.md), signed with
    /// --principal-key and approved with each --approve-with key (the owners' quorum).
    SetPolicy {
        #[arg(long, default_value = "default")]
        keystore: String,
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        /// Another principal's key file that approves the same request; repeat for more.
        #[arg(long, value_name = "PATH")]
        approve_with: Vec<PathBuf>,
    },
}

pub async fn run_keystore(client: &Client, command: KeystoreCommand) -> anyhow::Result<serde_json::Value> {
    let json = |value: &dyn Json| value.to_json();
    Ok(match command {
        KeystoreCommand::Policy { keystore } => json(&client.keystore_policy(&keystore).await?),
        KeystoreCommand::SetPolicy { keystore, file, approve_with } => {
            let policy = read_policy(&file)?;
            let approvers = read_approvers(&approve_with)?;
            let approvers: Vec<&PrincipalSigner> = approvers.iter().collect();
            json(&client.set_keystore_policy(&keystore, &policy, &approvers).await?)
        }
    })
}

fn read_policy(file: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", file.display()))
}

/// The principals' keys of `--approve-with`.
fn read_approvers(paths: &[PathBuf]) -> anyhow::Result<Vec<PrincipalSigner>> {
    paths.iter().map(|p| crate::read_principal(p)).collect()
}

pub use erased::Json;

/// Any answer as JSON, without naming every type.
mod erased {
    pub trait Json {
        fn to_json(&self) -> serde_json::Value;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}
