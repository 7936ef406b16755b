//! The deployment tooling end to end, through the real `gateway` binary: `key-policy` on the
//! checked-in samples of both nitro-cli output shapes (`build-enclave` with its progress lines,
//! `describe-eif`), alone and as an old+new pair for a PCR migration, and the
//! `nitro-build-args` / `nitro-run-args` output that `just build-eif` and `just run-enclave`
//! read line by line.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed unwrap is a failed test.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

const ACCOUNT: &str = "111122223333";
const ROLE: &str = "arn:aws:iam::111122223333:role/keyward-gateway";
const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// The link public key the tests put into the production config (no one holds its private key).
const LINK_PUBLIC_KEY: &str = "6a1f0c2b3d4e5f60718293a4b5c6d7e8f9010a1b2c3d4e5f60718293a4b5c6d7";

// The samples' PCRs (crates/kms/testdata/README.md says how they were made).
const OLD_PCR0: &str =
    "bdb5a5a444dbfffd38e543e061b74deea28dacc047a3cfecbb829099ed02ddcb6e1f2219bae9c574eda1e52a3007248f";
const SHARED_PCR1: &str =
    "6d58139cbd3ac6cff9f2614e1d3b72f2290455c9fece5611de02a3044c779a9d26f824afc3004c3e4335a5f42ea8b1e1";
const OLD_PCR2: &str =
    "874f7ffe4a8118ba65d881e77eb0b17e95f9153654358bfee18335fb9ff8fff2369e14e977453e1daeedf9d40d3977a8";
const NEW_PCR0: &str =
    "1375f68e334fe856dd056f0076459ef306666ad5e5dbb7c67470dca81e135282bacb3e6273a5770f4b00ce82efa05c91";
const NEW_PCR2: &str =
    "fb13cdeb3d075f4b5d4a12fe93d48210e931a4b7c900aa3eb6349d7d55b54aa1725e0a3fbb049d91e99505327bb6e9cb";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sample(name: &str) -> String {
    repo().join("crates/kms/testdata").join(name).display().to_string()
}

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .env_remove("KEYWARD_CONFIG")
        .env_remove("KEYWARD_FAULT")
        .env("KEYWARD_LOG", "off")
        .output()
        .expect("running the gateway binary")
}

fn succeeds(args: &[&str]) -> String {
    let out = gateway(args);
    assert!(out.status.success(), "gateway {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = gateway(args);
    assert!(!out.status.success(), "gateway {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

/// `gateway key-policy` with the given measurement files; the parsed JSON and its raw text.
fn key_policy(measurement_files: &[String]) -> (Value, String) {
    let mut args = vec!["key-policy", "--account-id", ACCOUNT, "--role-arn", ROLE, "--key-arn", KEY_ARN];
    for file in measurement_files {
        args.extend(["--measurements", file]);
    }
    let text = succeeds(&args);
    (serde_json::from_str(&text).unwrap(), text)
}

fn statement<'a>(policy: &'a Value, sid: &str) -> &'a Value {
    policy["KeyPolicy"]["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == sid).unwrap()
}

/// The values each PCR may take, as the Allow statement and the three Deny statements say.
fn allowed(policy: &Value) -> [Vec<String>; 3] {
    let strings =
        |v: &Value| -> Vec<String> { v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect() };
    let allow = &statement(policy, "EnclaveDataKeys")["Condition"]["StringEqualsIgnoreCase"];
    std::array::from_fn(|i| {
        let key = format!("kms:RecipientAttestation:PCR{i}");
        let values = strings(&allow[&key]);
        let deny = &statement(policy, &format!("DenyDataKeysWithoutAttestedPCR{i}"))["Condition"]["StringNotEqualsIgnoreCase"]
            [&key];
        assert_eq!(strings(deny), values, "Allow and Deny disagree on PCR{i}");
        values
    })
}

#[test]
fn key_policy_reads_build_enclave_output_with_progress_lines() {
    let (policy, _) = key_policy(&[sample("nitro_cli_build_enclave.txt")]);
    assert_eq!(allowed(&policy), [vec![OLD_PCR0.to_owned()], vec![SHARED_PCR1.to_owned()], vec![OLD_PCR2.to_owned()]]);
    assert_eq!(statement(&policy, "EnclaveDataKeys")["Principal"]["AWS"], ROLE);
    assert_eq!(policy["IamPolicy"]["Statement"][0]["Resource"], KEY_ARN);
}

#[test]
fn key_policy_reads_describe_eif_output_to_the_same_policy() {
    // Upper-case PCR0, PCR8 and the signing certificate make no difference.
    let (_, from_build) = key_policy(&[sample("nitro_cli_build_enclave.txt")]);
    let (_, from_describe) = key_policy(&[sample("nitro_cli_describe_eif.json")]);
    assert_eq!(from_build, from_describe);
}

#[test]
fn key_policy_allows_old_and_new_build_during_a_migration() {
    let (policy, _) =
        key_policy(&[sample("nitro_cli_build_enclave.txt"), sample("nitro_cli_describe_eif_next_build.json")]);
    assert_eq!(
        allowed(&policy),
        [
            vec![OLD_PCR0.to_owned(), NEW_PCR0.to_owned()],
            // Same kernel in both builds: listed once.
            vec![SHARED_PCR1.to_owned()],
            vec![OLD_PCR2.to_owned(), NEW_PCR2.to_owned()],
        ]
    );
    // The same old build given in both shapes adds nothing.
    let (again, _) = key_policy(&[
        sample("nitro_cli_build_enclave.txt"),
        sample("nitro_cli_describe_eif.json"),
        sample("nitro_cli_describe_eif_next_build.json"),
    ]);
    assert_eq!(allowed(&again), allowed(&policy));
    // Dropping the old build after the rollout leaves only the new one.
    let (after, _) = key_policy(&[sample("nitro_cli_describe_eif_next_build.json")]);
    assert_eq!(allowed(&after), [vec![NEW_PCR0.to_owned()], vec![SHARED_PCR1.to_owned()], vec![NEW_PCR2.to_owned()]]);
}

#[test]
fn key_policy_refuses_debug_mode_and_non_nitro_cli_files() {
    let dir = tempfile::tempdir().unwrap();
    let debug = dir.path().join("debug.json");
    let zeros = "0".repeat(96);
    let text = std::fs::read_to_string(sample("nitro_cli_describe_eif_next_build.json"))
        .unwrap()
        .replace(NEW_PCR0, &zeros)
        .replace(SHARED_PCR1, &zeros)
        .replace(NEW_PCR2, &zeros);
    std::fs::write(&debug, text).unwrap();
    let debug = debug.display().to_string();
    let err = fails(&["key-policy", "--account-id", ACCOUNT, "--role-arn", ROLE, "--measurements", &debug]);
    assert!(err.contains("PCR0 of PCR set 0 is all zeros, which is what a debug-mode enclave reports"), "{err}");

    let readme = sample("README.md");
    let err = fails(&["key-policy", "--account-id", ACCOUNT, "--role-arn", ROLE, "--measurements", &readme]);
    assert!(err.contains("not nitro-cli measurement output: no JSON object found"), "{err}");
}

/// A production config whose database directory exists, with the given enclaves section.
fn production_config(dir: &Path, enclaves: &str) -> String {
    let text = std::fs::read_to_string(repo().join("config/production.yaml")).unwrap();
    let text = text
        .replace("/var/lib/keyward/keyward.db", &dir.join("keyward.db").display().to_string())
        .replace("  # public_key: <64 hex digits>", &format!("  public_key: {LINK_PUBLIC_KEY}"));
    let start = text.find("enclaves:\n").unwrap();
    let path = dir.join("production.yaml");
    std::fs::write(&path, format!("{}enclaves:\n{enclaves}", &text[..start])).unwrap();
    path.display().to_string()
}

#[test]
fn nitro_build_args_prints_one_setting_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = production_config(dir.path(), "  - enclave_id: 1\n    address: vsock://16:5000\n");
    let out = succeeds(&["--config", &config, "nitro-build-args"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            &*format!("KEYWARD_GATEWAY_PUBLIC_KEY={LINK_PUBLIC_KEY}"),
            "KEYWARD_LISTEN=vsock://any:5000",
            "KEYWARD_KMS_RELAY=vsock://3:8000",
            "KEYWARD_KMS_ENDPOINT=https://kms.us-east-1.amazonaws.com",
            "KEYWARD_KMS_REGION=us-east-1",
            &format!("KEYWARD_KMS_KEY_ID={KEY_ARN}"),
            "KEYWARD_OWNERS=ed25519:e959c55cacaa436995a826e953d2b97c0e7e1833cb7e6b0b0c05ae497162a7b3,\
             ed25519:b54cbde638e33ad07c1dbcd56939067f08669a2ae8c9336ed221e8d8c3791010",
            "KEYWARD_OWNER_QUORUM=2",
        ]
    );
    let dev = repo().join("config/development.yaml").display().to_string();
    let err = fails(&["--config", &dev, "nitro-build-args"]);
    assert!(err.contains("the enclave image is a production image"), "{err}");
}

#[test]
fn nitro_run_args_prints_one_argument_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = production_config(
        dir.path(),
        "  - enclave_id: 1\n    address: vsock://16:5000\n  - enclave_id: 2\n    address: vsock://17:5000\n    cpu_count: 4\n    memory_mib: 1024\n",
    );
    let out = succeeds(&["--config", &config, "nitro-run-args", "--enclave-id", "2"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["--enclave-cid", "17", "--cpu-count", "4", "--memory", "1024", "--enclave-name", "keyward-enclave-2"]
    );
    let err = fails(&["--config", &config, "nitro-run-args"]);
    assert!(err.contains("choose one with --enclave-id"), "{err}");
}
