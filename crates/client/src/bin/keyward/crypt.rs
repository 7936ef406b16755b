//! `keyward keys encrypt|decrypt|rewrap|datakey|hmac|verify-hmac|configure`,
//! `keys encrypt-file|decrypt-file` (streamed, any size) and `keyward random`. Binary input comes from a file or text; decrypted plaintext is written to
//! a new file (mode 0600) when `--out` is given, else shown as base64 in the JSON answer.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_client::{
    Client,
    crypt::{Decrypt, Encrypt, GenerateDataKey, KeyConfig, MacRequest, VerifyMac},
};

/// Bytes to work on: text, or a file's contents.
#[derive(Debug, clap::Args)]
pub struct Input {
    /// The data, as text.
    #[arg(long, conflicts_with = "in_file")]
    text: Option<String>,
    /// The data, from a file.
    #[arg(long = "in", value_name = "PATH")]
    in_file: Option<PathBuf>,
}

impl Input {
    fn bytes(&self) -> anyhow::Result<Vec<u8>> {
        match (&self.text, &self.in_file) {
            (Some(text), _) => Ok(text.as_bytes().to_vec()),
            (None, Some(path)) => std::fs::read(path).with_context(|| format!("reading {}", path.display())),
            (None, None) => bail!("give --text or --in"),
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum CryptCommand {
    /// Encrypt with an aes256-gcm key; prints the ciphertext as base64.
    Encrypt {
        name: String,
        #[command(flatten)]
        input: Input,
        /// Associated data (text) the ciphertext is bound to.
        #[arg(long)]
        aad: Option<String>,
    },
    /// Decrypt a ciphertext (base64) or a wrapped data key.
    Decrypt {
        name: String,
        #[arg(long = "ciphertext", value_name = "BASE64")]
        ciphertext_b64: String,
        #[arg(long)]
        aad: Option<String>,
        /// Write the plaintext to this new file (0600) instead of showing it.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Re-encrypt a ciphertext under the key's latest version.
    Rewrap {
        name: String,
        #[arg(long = "ciphertext", value_name = "BASE64")]
        ciphertext_b64: String,
        #[arg(long)]
        aad: Option<String>,
    },
    /// A new data key (aes-256, rsa-2048 or p256) wrapped under the key.
    Datakey {
        name: String,
        #[arg(long, default_value = "aes-256")]
        spec: String,
        /// Also return the data key in the clear.
        #[arg(long)]
        plaintext: bool,
        #[arg(long)]
        aad: Option<String>,
    },
    /// HMAC-SHA256 with an hmac-sha256 key.
    Hmac {
        name: String,
        #[command(flatten)]
        input: Input,
    },
    /// Check an HMAC-SHA256 (base64).
    VerifyHmac {
        name: String,
        #[command(flatten)]
        input: Input,
        #[arg(long = "mac", value_name = "BASE64")]
        mac_b64: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Encrypt a file of any size (streamed) into a new file.
    EncryptFile {
        name: String,
        #[arg(long = "in", value_name = "PATH")]
        in_file: PathBuf,
        /// The ciphertext (a new file).
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
        #[arg(long)]
        aad: Option<String>,
    },
    /// Decrypt a file made by `encrypt-file` into a new file (mode 0600). If the transfer
    /// breaks off (a damaged ciphertext), the partial output is removed.
    DecryptFile {
        name: String,
        #[arg(long = "in", value_name = "PATH")]
        in_file: PathBuf,
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
        #[arg(long)]
        aad: Option<String>,
    },
    /// Change a key's settings (admin token).
    Configure {
        name: String,
        /// Ciphertexts of older versions are refused from now on.
        #[arg(long)]
        min_decryption_version: Option<u32>,
    },
}

fn aad(value: Option<String>) -> Option<String> {
    value.map(|text| STANDARD.encode(text))
}

/// Creates a new file only its owner reads; refuses one that exists.
pub fn create_new_private(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist)", path.display()))
}

/// Writes `bytes` to a new file only its owner reads.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    create_new_private(path)?.write_all(bytes).with_context(|| format!("writing {}", path.display()))
}

pub async fn run(client: &Client, command: CryptCommand) -> anyhow::Result<serde_json::Value> {
    let json = |value: &dyn crate::keys::Json| value.to_json();
    Ok(match command {
        CryptCommand::Encrypt { name, input, aad: data } => {
            let request = Encrypt { plaintext_b64: STANDARD.encode(input.bytes()?), associated_data_b64: aad(data) };
            json(&client.encrypt(&name, &request).await?)
        }
        CryptCommand::Decrypt { name, ciphertext_b64, aad: data, out } => {
            let mut decrypted =
                client.decrypt(&name, &Decrypt { ciphertext_b64, associated_data_b64: aad(data) }).await?;
            if let Some(path) = out {
                let plaintext = zeroize::Zeroizing::new(
                    STANDARD.decode(&decrypted.plaintext_b64).context("the gateway's plaintext is not base64")?,
                );
                write_new_private(&path, &plaintext)?;
                decrypted.plaintext_b64 = String::new();
                serde_json::json!({ "version": decrypted.version, "out": path })
            } else {
                json(&decrypted)
            }
        }
        CryptCommand::Rewrap { name, ciphertext_b64, aad: data } => {
            json(&client.rewrap(&name, &Decrypt { ciphertext_b64, associated_data_b64: aad(data) }).await?)
        }
        CryptCommand::Datakey { name, spec, plaintext, aad: data } => {
            let request = GenerateDataKey { spec, plaintext, associated_data_b64: aad(data) };
            json(&client.data_key(&name, &request).await?)
        }
        CryptCommand::Hmac { name, input } => {
            json(&client.hmac(&name, &MacRequest { message_b64: STANDARD.encode(input.bytes()?) }).await?)
        }
        CryptCommand::VerifyHmac { name, input, mac_b64, version } => {
            let request = VerifyMac { message_b64: STANDARD.encode(input.bytes()?), mac_b64, version };
            json(&client.verify_hmac(&name, &request).await?)
        }
        CryptCommand::EncryptFile { name, in_file, out, aad } => {
            stream_file(client, &name, &in_file, &out, aad, true).await?
        }
        CryptCommand::DecryptFile { name, in_file, out, aad } => {
            stream_file(client, &name, &in_file, &out, aad, false).await?
        }
        CryptCommand::Configure { name, min_decryption_version } => {
            json(&client.configure_key(&name, &KeyConfig { min_decryption_version }).await?)
        }
    })
}

/// The SHA-256 of a file's contents.
async fn file_sha256(path: &Path) -> anyhow::Result<[u8; 32]> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await.with_context(|| format!("opening {}", path.display()))?;
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).await.with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.finish().as_ref());
    Ok(out)
}

/// The first `len` bytes of a file (fewer if it is shorter).
async fn file_start(path: &Path, len: usize) -> anyhow::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await.with_context(|| format!("opening {}", path.display()))?;
    let mut start = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut start).await.with_context(|| format!("reading {}", path.display()))?;
    Ok(start)
}

/// Streams `input` through the gateway's encrypt or decrypt into the new file `output`;
/// removes the output again if the transfer does not end cleanly.
async fn stream_file(
    client: &Client,
    name: &str,
    input: &Path,
    output: &Path,
    aad: Option<String>,
    encrypt: bool,
) -> anyhow::Result<serde_json::Value> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let file = tokio::fs::File::open(input).await.with_context(|| format!("opening {}", input.display()))?;
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buffer = vec![0u8; 1 << 20];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(buffer), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let body = reqwest::Body::wrap_stream(chunks);
    let aad = aad.map(String::into_bytes);
    // A signed stream names what it is: the plaintext's SHA-256 (one pass over the file before
    // the transfer), or the ciphertext's header (its first bytes).
    let response = match (encrypt, client.has_principal()) {
        (true, false) => client.encrypt_stream(name, body, aad.as_deref()).await?,
        (false, false) => client.decrypt_stream(name, body, aad.as_deref()).await?,
        (true, true) => {
            let digest = file_sha256(input).await?;
            client.encrypt_stream_signed(name, body, aad.as_deref(), &digest).await?
        }
        (false, true) => {
            let header = file_start(input, keyward_client::crypt::STREAM_HEADER_LEN).await?;
            client.decrypt_stream_signed(name, body, aad.as_deref(), &header).await?
        }
    };
    let version = response.headers().get("x-keyward-key-version").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut out = tokio::fs::File::from_std(create_new_private(output)?);
    let mut answer = response.bytes_stream();
    let mut written = 0u64;
    let result = async {
        while let Some(part) = answer.next().await {
            let part = part.context("the transfer broke off: the ciphertext is damaged or the connection failed")?;
            out.write_all(&part).await.with_context(|| format!("writing {}", output.display()))?;
            written += part.len() as u64;
        }
        out.flush().await.with_context(|| format!("writing {}", output.display()))?;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if let Err(e) = result {
        drop(out);
        let _ = std::fs::remove_file(output);
        return Err(e.context(format!("{} removed; nothing of it may be used", output.display())));
    }
    Ok(serde_json::json!({ "out": output, "bytes": written, "version": version }))
}
