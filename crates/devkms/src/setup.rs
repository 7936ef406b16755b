//! `keyward-devkms setup`: make sure the development key and its alias exist, and optionally
//! install a key policy. Prints the key ARN.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use crate::upstream::Upstream;

pub async fn setup(upstream: &Upstream, alias: &str, policy: Option<&Path>) -> anyhow::Result<String> {
    let arn = match upstream.call("DescribeKey", &json!({ "KeyId": alias })).await? {
        Ok(described) => arn_of(&described)?,
        Err(e) if e.code() == "NotFoundException" => {
            let created = upstream
                .must(
                    "CreateKey",
                    &json!({ "Description": "keyward development master key", "KeyUsage": "ENCRYPT_DECRYPT" }),
                )
                .await?;
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

fn arn_of(answer: &Value) -> anyhow::Result<String> {
    answer
        .pointer("/KeyMetadata/Arn")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("upstream answer has no KeyMetadata.Arn")
}
