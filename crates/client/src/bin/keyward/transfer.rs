//! `keyward keys import` and `keyward keys export`: both ends of the HPKE transfer, so key
//! material is in the clear only on this machine and inside the enclave.

use std::{io::Write, path::Path};

use anyhow::{Context, anyhow, bail, ensure};
use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_client::{
    Client,
    keys::{ExportKey, ImportKey, KeyInfo},
};
use keyward_keyring::{KeyMaterial, Sealed, TransferKey, export_info, import_info, seal};
use keyward_proto::{KeyFlags, KeyIdentity, KeyName, KeyType, KeyVersion, Origin};
use zeroize::Zeroizing;

use crate::verify::{ImageArgs, attested_transfer_key};

fn random32() -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).map_err(|e| anyhow!("no randomness: {e}"))?;
    Ok(bytes)
}

fn key_type(name: &str) -> anyhow::Result<KeyType> {
    KeyType::parse(name).ok_or_else(|| anyhow!("unknown key type {name:?}: use {}", KeyType::NAMES))
}

/// The 32 secret bytes from a file of 64 hex characters.
fn read_secret(path: &Path) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let text = Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?);
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), secret.as_mut())
        .map_err(|_| anyhow!("{}: expected 64 hex characters (32 bytes)", path.display()))?;
    Ok(secret)
}

pub async fn import(
    client: &Client,
    name: &str,
    type_name: &str,
    secret_file: &Path,
    exportable: bool,
    image: &ImageArgs,
    approvers: &[&keyward_client::principal::PrincipalSigner],
) -> anyhow::Result<KeyInfo> {
    let key_name = KeyName::parse(name).map_err(|e| anyhow!("{e}"))?;
    let key_type = key_type(type_name)?;
    let secret = read_secret(secret_file)?;
    // Checked here too, so a bad file is refused before anything is sent.
    KeyMaterial::from_secret(key_type, &secret).map_err(|e| anyhow!("{}: {e}", secret_file.display()))?;
    let transfer = attested_transfer_key(client, image)
        .await
        .map_err(|refused| anyhow!("attestation refused ({}): {}", refused.code, refused.message))?;
    let flags = KeyFlags { exportable, origin: Origin::Imported };
    let sealed = seal(&transfer, &import_info(&key_name, key_type, flags), &secret, random32()?)
        .map_err(|e| anyhow!("sealing to the enclave's transfer key: {e}"))?;
    let request = ImportKey {
        key_type: key_type.as_str().to_owned(),
        exportable,
        transfer_public_key_hex: hex::encode(&transfer),
        encapsulated_key_b64: STANDARD.encode(&sealed.encapsulated_key),
        ciphertext_b64: STANDARD.encode(&sealed.ciphertext),
    };
    Ok(client.import_key_approved(name, &request, approvers).await?)
}

/// What `export` prints (the secret goes to the file only).
#[derive(Debug, serde::Serialize)]
pub struct Exported {
    name: String,
    version: u32,
    #[serde(rename = "type")]
    key_type: String,
    public_key_hex: Option<String>,
    written_to: String,
}

pub async fn export(
    client: &Client,
    name: &str,
    version: Option<u32>,
    out: &Path,
    approvers: &[&keyward_client::principal::PrincipalSigner],
) -> anyhow::Result<Exported> {
    // Refuse an existing file before asking for anything.
    let mut file = crate::crypt::create_new_private(out)?;
    let result = receive(client, name, version, approvers).await;
    let (answer, secret) = match result {
        Ok(received) => received,
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(out);
            return Err(e);
        }
    };
    let text = Zeroizing::new(hex::encode(&secret[..]));
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(Exported { written_to: out.display().to_string(), ..answer })
}

/// Asks for the export with a fresh key pair and opens it; checks the answer is the key asked
/// for and the secret is the key's public key.
async fn receive(
    client: &Client,
    name: &str,
    version: Option<u32>,
    approvers: &[&keyward_client::principal::PrincipalSigner],
) -> anyhow::Result<(Exported, Zeroizing<[u8; 32]>)> {
    let receiver = TransferKey::derive(&random32()?);
    let request = ExportKey { public_key_hex: hex::encode(receiver.public_key()), version };
    let answer = client.export_key_approved(name, &request, approvers).await?;
    ensure!(answer.name == name, "asked for key {name}, the gateway answered for {}", answer.name);
    ensure!(version.is_none_or(|v| v == answer.version), "asked for version {version:?}, got {}", answer.version);
    let identity = KeyIdentity {
        name: KeyName::parse(&answer.name).map_err(|e| anyhow!("{e}"))?,
        version: KeyVersion::new(answer.version).context("version 0 in the answer")?,
        key_type: key_type(&answer.key_type)?,
        flags: KeyFlags {
            exportable: answer.exportable,
            origin: match answer.origin.as_str() {
                "generated" => Origin::Generated,
                "imported" => Origin::Imported,
                other => bail!("unknown origin {other:?} in the answer"),
            },
        },
    };
    let sealed = Sealed {
        encapsulated_key: STANDARD.decode(&answer.encapsulated_key_b64).context("encapsulated_key_b64")?,
        ciphertext: STANDARD.decode(&answer.ciphertext_b64).context("ciphertext_b64")?,
    };
    let secret = receiver.open(&export_info(&identity), &sealed).map_err(|e| anyhow!("{e}"))?;
    let material = KeyMaterial::from_secret(identity.key_type, &secret).map_err(|e| anyhow!("{e}"))?;
    let public_key_hex = (!material.public_key().is_empty()).then(|| hex::encode(material.public_key()));
    ensure!(
        public_key_hex == answer.public_key_hex,
        "the exported secret is not the key's public key {:?}",
        answer.public_key_hex
    );
    let exported = Exported {
        name: answer.name,
        version: answer.version,
        key_type: answer.key_type,
        public_key_hex,
        written_to: String::new(),
    };
    Ok((exported, secret))
}
