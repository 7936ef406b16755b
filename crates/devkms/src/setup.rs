//! `keyward-devkms setup`: make sure the development key and its alias exist, and optionally
//! install a key policy. Prints the key ARN.
//!
//! LocalStack keeps its keys in memory only (persistence is not in the community edition), so
//! a restarted dev stack would get a new key and the sealed key in `.dev/` could never be
//! opened again. With `--stable-key FILE` the key is created with the id and key material
//! stored in FILE (LocalStack's `_custom_id_` / `_custom_key_material_` tags), so every
//! restart recreates the same key. Development only: the material sits in a file.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use crate::upstream::Upstream;

pub async fn setup(
    upstream: &Upstream,
    alias: &str,
    policy: Option<&Path>,
    stable_key: Option<&Path>,
) -> anyhow::Result<String> {
    let arn = match upstream.call("DescribeKey", &json!({ "KeyId": alias })).await? {
        Ok(described) => arn_of(&described)?,
        Err(e) if e.code() == "NotFoundException" => {
            let mut request = json!({ "Description": "keyward development master key", "KeyUsage": "ENCRYPT_DECRYPT" });
            if let Some(path) = stable_key {
                let (id, material) = stable_key_material(path)?;
                request["Tags"] = json!([
                    { "TagKey": "_custom_id_", "TagValue": id },
                    { "TagKey": "_custom_key_material_", "TagValue": material },
                ]);
            }
            let created = upstream.must("CreateKey", &request).await?;
            let arn = arn_of(&created)?;
            upstream.must("CreateAlias", &json!({ "AliasName": alias, "TargetKeyId": arn })).await?;
            arn
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(path) = policy {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading key policy {}", path.display()))?;
        let _: Value =
            serde_json::from_str(&text).with_context(|| format!("key policy {} is not JSON", path.display()))?;
        upstream.must("PutKeyPolicy", &json!({ "KeyId": arn, "PolicyName": "default", "Policy": text })).await?;
    }
    Ok(arn)
}

/// The key id and base64 key material kept in `path`, created (mode 0600) on first use.
fn stable_key_material(path: &Path) -> anyhow::Result<(String, String)> {
    use base64::Engine;
    if let Ok(text) = std::fs::read_to_string(path) {
        let stored: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        let field = |name: &str| {
            stored
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("{} has no {name}", path.display()))
        };
        return Ok((field("key_id")?, field("key_material_b64")?));
    }
    let mut bytes = [0u8; 48];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let (id, material) = bytes.split_at_mut(16);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    let h = hex::encode(&id[..]);
    let key_id = format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]);
    let material = base64::engine::general_purpose::STANDARD.encode(&material[..]);
    let text = serde_json::to_string_pretty(&json!({ "key_id": key_id, "key_material_b64": material }))?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok((key_id, material))
}

fn arn_of(answer: &Value) -> anyhow::Result<String> {
    answer
        .pointer("/KeyMetadata/Arn")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("upstream answer has no KeyMetadata.Arn")
}
