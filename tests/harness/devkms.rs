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
    pub async fn start(dir: &Path) -> DevKms {
        let script = workspace_root().join("scripts/dev-kms");
        let install = Command::new(&script).arg("install").output().expect("run scripts/dev-kms install");
        assert!(install.status.success(), "dev KMS install failed: {}", String::from_utf8_lossy(&install.stderr));
        let kind = String::from_utf8_lossy(&install.stdout).trim().to_owned();
        if kind == "moto" {
            static NOTED: std::sync::Once = std::sync::Once::new();
            NOTED.call_once(|| eprintln!("note: LocalStack is unavailable; this test runs against moto"));
        }
        let port = free_port();
        let state = dir.join("devkms-state");
        let proc = Proc::spawn(
            "dev-kms",
            &script,
            &["run".into(), port.to_string(), state.display().to_string()],
            &[("KEYWARD_DEV_KMS", kind.clone()), ("HOME", std::env::var("HOME").unwrap_or_default())],
            &dir.join("devkms.log"),
        );
        let mut devkms = DevKms { proc, port, kind };
        devkms.wait_ready().await;
        devkms
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&mut self) {
        let url = self.url();
        Self::wait_answers(&url, &mut self.proc).await;
    }

    /// Waits until `url` answers a KMS `ListKeys`, or `proc` dies.
    pub async fn wait_answers(url: &str, proc: &mut Proc) {
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
                return;
            }
            assert!(proc.is_running(), "{} exited:\n{}", proc.name, proc.log_text());
            assert!(Instant::now() < deadline, "{} not ready after 90 s:\n{}", proc.name, proc.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
