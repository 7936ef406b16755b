//! The development KMS (LocalStack, or moto when LocalStack cannot run), one per test.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use crate::{Proc, free_port, workspace_root};

#[derive(Debug)]
pub struct DevKms {
    pub proc: Proc,
    pub port: u16,
    pub kind: String,
}

impl DevKms {
    /// Installs (once, shared through `.dev/venv`) and starts the emulator; returns when it
    /// answers KMS calls.
    ///
    /// At most [`STARTUP_SLOTS`] emulators start at once across every test process (a file
    /// lock per slot, held until the emulator answers): LocalStack gives its own server 15 s
    /// to open its port, and a dozen Python start-ups at once on two cores can take longer.
    /// When LocalStack nevertheless reports that timeout of its own, it is started once more
    /// on a new port, and the test says so; any other failure fails the test.
    pub async fn start(dir: &Path) -> DevKms {
        let script = workspace_root().join("scripts/dev-kms");
        let install = Command::new(&script).arg("install").output().expect("run scripts/dev-kms install");
        assert!(install.status.success(), "dev KMS install failed: {}", String::from_utf8_lossy(&install.stderr));
        let kind = String::from_utf8_lossy(&install.stdout).trim().to_owned();
        if kind == "moto" {
            static NOTED: std::sync::Once = std::sync::Once::new();
            NOTED.call_once(|| eprintln!("note: LocalStack is unavailable; this test runs against moto"));
        }
        for attempt in 1..=2 {
            let slot = startup_slot().await;
            let port = free_port();
            let state = dir.join(format!("devkms-state-{attempt}"));
            let mut proc = Proc::spawn(
                "dev-kms",
                &script,
                &["run".into(), port.to_string(), state.display().to_string()],
                &[("KEYWARD_DEV_KMS", kind.clone()), ("HOME", std::env::var("HOME").unwrap_or_default())],
                &dir.join(format!("devkms-{attempt}.log")),
            );
            let url = format!("http://127.0.0.1:{port}");
            let ready = Self::answers(&url, &mut proc).await;
            drop(slot);
            match ready {
                Ok(()) => return DevKms { proc, port, kind },
                Err(why) if attempt == 1 && why.contains(LOCALSTACK_OWN_TIMEOUT) => {
                    eprintln!(
                        "note: LocalStack gave up on its own start-up ({LOCALSTACK_OWN_TIMEOUT}); starting it again"
                    );
                    proc.kill();
                }
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!("the second attempt returns or panics")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until `url` answers a KMS `ListKeys`, or `proc` dies.
    pub async fn wait_answers(url: &str, proc: &mut Proc) {
        if let Err(why) = Self::answers(url, proc).await {
            panic!("{why}");
        }
    }

    async fn answers(url: &str, proc: &mut Proc) -> Result<(), String> {
        keyward_client::install_crypto_provider();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let answer = client
                .post(url)
                .header("Content-Type", "application/x-amz-json-1.1")
                .header("X-Amz-Target", "TrentService.ListKeys")
                .header("Authorization", "AWS4-HMAC-SHA256 Credential=t/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0")
                .body("{}")
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if !proc.is_running() {
                return Err(format!("{} exited:\n{}", proc.name, proc.log_text()));
            }
            if Instant::now() >= deadline {
                return Err(format!("{} not ready after 90 s:\n{}", proc.name, proc.log_text()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What LocalStack logs when its own 15 s wait for its server runs out.
const LOCALSTACK_OWN_TIMEOUT: &str = "gave up waiting for gateway server to start";

/// How many emulators may be starting at once, across every test process.
const STARTUP_SLOTS: usize = 2;

/// A held start-up slot: an exclusive lock on `.dev/venv/.devkms-start-N`, released on drop.
async fn startup_slot() -> std::fs::File {
    let dir = workspace_root().join(".dev/venv");
    let files: Vec<std::fs::File> = (0..STARTUP_SLOTS)
        .map(|n| {
            let path = dir.join(format!(".devkms-start-{n}"));
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        })
        .collect();
    loop {
        for file in &files {
            if file.try_lock().is_ok() {
                return file.try_clone().expect("clone the slot's file handle");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
