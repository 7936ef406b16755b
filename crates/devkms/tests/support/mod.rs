//! Shared by the proxy tests: enclaves made of the mock NSM, KMS JSON calls, and processes
//! that are always stopped.
// Each test crate uses a different part of this module.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyward_attest::{AttestationRequest, MockNsm, Nsm};
use keyward_kms::cms::{RecipientKey, decrypt_for_recipient};
use keyward_kms::policy::{KeyPolicyParams, PcrSet, key_policy};
use serde_json::{Value, json};
use tempfile::TempDir;

/// reqwest is built without its own TLS provider in this workspace (one crypto library,
/// aws-lc-rs); when a workspace build turns its rustls feature on, clients need this first.
pub fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
}

pub const ACCOUNT: &str = "000000000000";
pub const GATEWAY_ROLE: &str = "arn:aws:iam::000000000000:role/keyward-gateway";
/// What the AWS SDK sends (unsigned here: neither the emulators nor the proxy check it).
pub const AUTHORIZATION: &str =
    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0";

/// A development PKI in a temporary directory: the trust anchor the proxy pins.
pub struct Pki {
    dir: TempDir,
}

impl Pki {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    pub fn root_pem(&self) -> String {
        MockNsm::root_pem(&self.path()).unwrap()
    }

    /// Writes the root PEM to a file for `serve --root`.
    pub fn root_file(&self) -> PathBuf {
        let path = self.dir.path().join("root.pem");
        std::fs::write(&path, self.root_pem()).unwrap();
        path
    }
}

/// A mock enclave: its PCR0 is the SHA-384 of a "binary" with the given contents.
pub struct Enclave {
    _binary_dir: TempDir,
    nsm: MockNsm,
}

impl Enclave {
    pub fn new(pki: &Pki, binary: &[u8]) -> Self {
        let binary_dir = tempfile::tempdir().unwrap();
        let path = binary_dir.path().join("enclave-binary");
        std::fs::write(&path, binary).unwrap();
        let nsm = MockNsm::open(&pki.path(), &path).unwrap();
        Self { _binary_dir: binary_dir, nsm }
    }

    pub fn pcrs(&self) -> PcrSet {
        let m = self.nsm.measurements();
        let array = |pcr: &keyward_attest::Pcr| pcr.as_bytes().try_into().unwrap();
        PcrSet::from_bytes(array(&m.pcr0), array(&m.pcr1), array(&m.pcr2))
    }

    pub fn pcr0_hex(&self) -> String {
        self.nsm.measurements().pcr0.to_hex()
    }

    /// A fresh RSA key and the `Recipient` parameter carrying it.
    pub fn recipient(&self) -> (RecipientKey, Value) {
        let key = RecipientKey::generate().unwrap();
        let request = AttestationRequest { public_key: Some(key.public_key_spki_der()), ..Default::default() };
        let document = self.nsm.attest(&request).unwrap();
        let recipient =
            json!({ "AttestationDocument": BASE64.encode(document), "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256" });
        (key, recipient)
    }
}

/// The key policy `keyward_kms::policy` generates for `enclaves`, as `PutKeyPolicy` takes it.
pub fn policy_for(enclaves: &[&Enclave]) -> String {
    let sets = enclaves.iter().map(|e| e.pcrs()).collect();
    key_policy(&KeyPolicyParams::new(ACCOUNT, GATEWAY_ROLE, sets)).unwrap().to_string()
}

/// One KMS JSON protocol call: `(HTTP status, JSON body)`.
pub async fn kms(url: &str, operation: &str, body: &Value) -> (u16, Value) {
    let response = http_client()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{url}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("TrentService.{operation}"))
        .header("authorization", AUTHORIZATION)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{operation} answered non-JSON: {text}"));
    (status, value)
}

pub fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

pub fn unb64(value: &Value) -> Vec<u8> {
    BASE64.decode(value.as_str().unwrap_or_else(|| panic!("not a base64 string: {value}"))).unwrap()
}

/// Decrypts the `CiphertextForRecipient` of an answer with `key`.
pub fn open_for_recipient(answer: &Value, key: &RecipientKey) -> Vec<u8> {
    decrypt_for_recipient(&unb64(&answer["CiphertextForRecipient"]), key).unwrap().to_vec()
}

/// Asserts an `AccessDeniedException` whose message contains every one of `needles`.
pub fn assert_denied(answer: &(u16, Value), needles: &[&str]) {
    let (status, body) = answer;
    assert_eq!(*status, 400, "{body}");
    assert_eq!(body["__type"], "AccessDeniedException", "{body}");
    let message = body["message"].as_str().unwrap();
    for needle in needles {
        assert!(message.contains(needle), "message {message:?} lacks {needle:?}");
    }
    assert!(body.get("Plaintext").is_none() && body.get("CiphertextForRecipient").is_none());
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process in its own process group, stopped with everything it started when this is
/// dropped (also when a test panics): SIGTERM, then SIGKILL after a grace period.
pub struct ProcessGroup {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ProcessGroup {
    /// Starts `command` with stderr (and stdout, unless the command set it) going to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        let file = File::create(log).unwrap();
        command.process_group(0).stderr(file.try_clone().unwrap());
        let child = command.spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self { name: name.to_owned(), child, log: log.to_owned() }
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited with {status}:\n{}", self.name, self.log_text());
        }
    }

    fn signal_group(&self, signal: nix::sys::signal::Signal) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // The group may be gone already; nothing else to do then.
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal_group(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Also when the leader has exited: its children may still be in the group.
        self.signal_group(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
