//! `keyward`: command-line client for a keyward gateway.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use keyward_client::{Client, principal::PrincipalSigner};

mod audit;
mod crypt;
mod keys;
mod tls;
mod transfer;
mod verify;

#[derive(Debug, Parser)]
#[command(
    name = "keyward",
    version,
    about = "Client for a keyward gateway: sign, fetch the public key, verify attestation, manage and use keyring keys"
)]
struct Cli {
    /// Gateway base URL.
    #[arg(long, env = "KEYWARD_GATEWAY", default_value = "http://127.0.0.1:8080", global = true)]
    gateway: String,
    /// File holding the API bearer token (or set KEYWARD_API_TOKEN).
    #[arg(long, env = "KEYWARD_API_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// PKCS#8 PEM of the principal (Ed25519 or P-256) that signs key operations; needed when
    /// the enclave has owners (docs/authorization.md).
    #[arg(long, env = "KEYWARD_PRINCIPAL_KEY", global = true)]
    principal_key: Option<PathBuf>,
    #[command(flatten)]
    tls: tls::TlsArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign a 32-byte digest; prints the JSON answer.
    Sign {
        /// The digest, 64 hex characters.
        #[arg(long)]
        digest: String,
        /// ecdsa or bip340.
        #[arg(long, default_value = "ecdsa")]
        scheme: String,
        #[arg(long)]
        enclave_id: Option<u32>,
    },
    /// Print the master public key as JSON.
    PublicKey {
        #[arg(long)]
        enclave_id: Option<u32>,
    },
    /// Verify an attestation document (fresh from the gateway, or --document FILE): COSE
    /// signature, certificate chain to the root, validity, the image (PCR0-2 of a listed
    /// build), nonce and key binding. Prints the verified fields as JSON; on any refusal
    /// prints `{"verified": false, "code", "message"}` and exits with status 1.
    VerifyAttestation(verify::VerifyArgs),
    /// The keyring: named keys of several types (create, list, sign, rotate, ...).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Random bytes from an enclave's NSM (default) or from KMS through the enclave.
    Random {
        #[arg(long, default_value_t = 32)]
        bytes: u32,
        /// nsm or kms.
        #[arg(long)]
        source: Option<String>,
    },
    /// The enclave's audit log: export it as JSON lines, verify an export.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Principals: the keys that sign requests.
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Keystores: the policy that grants on every key of a keystore.
    #[command(subcommand)]
    Keystore(keys::KeystoreCommand),
    /// The enclave's TLS API: the verified pin of its key, client certificates.
    #[command(subcommand)]
    Tls(tls::TlsCommand),
}

#[derive(Debug, Subcommand)]
enum PrincipalCommand {
    /// Write a new Ed25519 principal key (PKCS#8 PEM, mode 0600, never overwriting) and print
    /// its public id (`ed25519:<hex>`, what the enclave's `--owner` takes).
    New {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public id of a principal key file.
    Show {
        #[arg(long)]
        key: PathBuf,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let token = match (&cli.token_file, std::env::var("KEYWARD_API_TOKEN")) {
        (Some(path), _) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?.trim().to_owned(),
        ),
        (None, Ok(token)) => Some(token.trim().to_owned()),
        (None, Err(_)) => None,
    };
    let command = match cli.command {
        Command::Principal(command) => return principal(command),
        Command::Tls(command) => return print_json(&tls::run(&cli.gateway, &cli.tls, command).await?),
        other => other,
    };
    let mut client = match cli.tls.client(&cli.gateway).await? {
        Some(client) => client,
        None => Client::new(&cli.gateway, token)?,
    };
    if let Some(path) = &cli.principal_key {
        client = client.with_principal(std::sync::Arc::new(read_principal(path)?));
    }
    match command {
        Command::Principal(_) | Command::Tls(_) => unreachable!("handled above"),
        Command::Audit(command) => {
            let (ok, printed) = audit::run(&client, command).await?;
            print_json(&printed)?;
            if !ok {
                bail!("{}", printed["message"].as_str().unwrap_or("the audit log does not verify"));
            }
            Ok(())
        }
        Command::Sign { digest, scheme, enclave_id } => {
            let mut bytes = [0u8; 32];
            if hex::decode_to_slice(&digest, &mut bytes).is_err() {
                bail!("--digest must be 64 hex characters");
            }
            print_json(&client.sign(&bytes, &scheme, enclave_id).await?)
        }
        Command::PublicKey { enclave_id } => print_json(&client.public_key(enclave_id).await?),
        Command::Keys(command) => print_json(&keys::run(&client, command).await?),
        Command::Keystore(command) => print_json(&keys::run_keystore(&client, command).await?),
        Command::Random { bytes, source } => print_json(&client.random(bytes, source.as_deref()).await?),
        Command::VerifyAttestation(args) => match verify::verify_attestation(&client, args).await {
            Ok(verified) => print_json(&verified),
            Err(refused) => {
                print_json(&refused)?;
                bail!("{}: {}", refused.code, refused.message)
            }
        },
    }
}

fn read_principal(path: &std::path::Path) -> anyhow::Result<PrincipalSigner> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading the principal key {}", path.display()))?,
    );
    PrincipalSigner::from_pem(&text).map_err(|e| anyhow::anyhow!("the principal key {}: {e}", path.display()))
}

fn principal(command: PrincipalCommand) -> anyhow::Result<()> {
    let signer = match command {
        PrincipalCommand::New { out } => {
            let pem = PrincipalSigner::generate_ed25519_pem().map_err(anyhow::Error::msg)?;
            let signer = PrincipalSigner::from_pem(&pem).map_err(anyhow::Error::msg)?;
            crypt::write_new_private(&out, pem.as_bytes())?;
            signer
        }
        PrincipalCommand::Show { key } => read_principal(&key)?,
    };
    print_json(&serde_json::json!({ "principal": signer.public(), "id": signer.id() }))
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
