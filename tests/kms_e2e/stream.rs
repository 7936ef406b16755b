//! Streamed encryption end to end: a gibibyte goes through the gateway and the enclave in
//! segments and comes back, checked by SHA-256, while neither process's memory grows with it.

use std::io::Write;

use futures_util::StreamExt;
use keyward_client::ClientError;
use keyward_e2e::{Stack, StackOptions};

const CHUNK: usize = 1 << 20;
const TOTAL_CHUNKS: u64 = 1024;

/// Chunk `i` of the plaintext: cheap to make, different in every 32 bytes.
fn chunk(i: u64) -> Vec<u8> {
    let seed: [u8; 32] =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &i.to_le_bytes()).as_ref().try_into().expect("32 bytes");
    let mut out = vec![0u8; CHUNK];
    for (k, block) in out.chunks_mut(32).enumerate() {
        block.copy_from_slice(&seed);
        block[..4].copy_from_slice(&(k as u32).to_le_bytes());
    }
    out
}

/// Peak resident memory of a process, MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024.0
}

fn sha256() -> aws_lc_rs::digest::Context {
    aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_streams_through_encryption_and_back_without_either_process_holding_it() {
    let mut stack = Stack::start(StackOptions::default()).await;
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    stack.admin_client().create_key("files", "aes256-gcm", false).await.expect("aes key");
    let client = stack.client.clone();

    // Encrypt 1 GiB made on the fly; the ciphertext goes to a file.
    let mut plaintext_hash = sha256();
    for i in 0..TOTAL_CHUNKS {
        plaintext_hash.update(&chunk(i));
    }
    let body = futures_util::stream::iter(0..TOTAL_CHUNKS).map(|i| Ok::<_, std::io::Error>(chunk(i)));
    let response = client
        .encrypt_stream("files", reqwest::Body::wrap_stream(body), Some(b"backup-7"))
        .await
        .expect("encrypt stream");
    assert_eq!(response.headers()["x-keyward-key-version"], "1");
    let dir = tempfile::tempdir().expect("tempdir");
    let sealed_path = dir.path().join("sealed");
    let mut sealed_file = std::fs::File::create(&sealed_path).expect("create");
    let mut sealed_len = 0u64;
    let mut answer = response.bytes_stream();
    while let Some(part) = answer.next().await {
        let part = part.expect("the encryption stream completes");
        sealed_len += part.len() as u64;
        sealed_file.write_all(&part).expect("write");
    }
    drop(sealed_file);
    let segments = (TOTAL_CHUNKS * CHUNK as u64).div_ceil(64 * 1024);
    assert_eq!(sealed_len, 41 + TOTAL_CHUNKS * CHUNK as u64 + segments * 16, "header, plaintext and a tag per segment");

    // Decrypt it back from the file and compare hashes.
    let file = tokio::fs::File::open(&sealed_path).await.expect("open");
    let reader = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buffer = vec![0u8; CHUNK];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(buffer), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let response = client
        .decrypt_stream("files", reqwest::Body::wrap_stream(reader), Some(b"backup-7"))
        .await
        .expect("decrypt stream");
    let mut decrypted_hash = sha256();
    let mut decrypted_len = 0u64;
    let mut answer = response.bytes_stream();
    while let Some(part) = answer.next().await {
        let part = part.expect("the decryption stream completes");
        decrypted_len += part.len() as u64;
        decrypted_hash.update(&part);
    }
    assert_eq!(decrypted_len, TOTAL_CHUNKS * CHUNK as u64);
    assert_eq!(decrypted_hash.finish().as_ref(), plaintext_hash.finish().as_ref(), "the gibibyte came back");

    // Neither process held the gibibyte (buffering it would take more than 1,024 MiB).
    let gateway = peak_rss_mib(stack.gateway.as_ref().expect("gateway").pid());
    let enclave = peak_rss_mib(stack.enclaves.get(&1).expect("enclave").pid());
    eprintln!("peak RSS after 2 GiB streamed: gateway {gateway:.1} MiB, enclave {enclave:.1} MiB");
    assert!(gateway < 256.0 && enclave < 256.0, "gateway {gateway:.1} MiB, enclave {enclave:.1} MiB");

    // Other associated data: refused before any plaintext.
    let file = std::fs::read(&sealed_path).expect("read");
    let start = file[..41 + 65552].to_vec();
    let refused = client.decrypt_stream("files", reqwest::Body::from(start), Some(b"backup-8")).await;
    assert!(
        matches!(&refused, Err(ClientError::Api { status: 400, code, .. }) if code == "decryption_failed"),
        "{:?}",
        refused.map(|r| r.status())
    );
}

/// Runs `keyward keys ARGS` with the API token.
fn cli(stack: &Stack, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(keyward_e2e::binary("keyward"))
        .args(["--gateway", &format!("http://127.0.0.1:{}", stack.api_port)])
        .args(["--token-file", &stack.path().join("api-token").display().to_string(), "keys"])
        .args(args)
        .output()
        .expect("run keyward");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_streams_files_through_and_removes_the_output_of_a_damaged_one() {
    let mut stack = Stack::start(StackOptions::default()).await;
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    stack.admin_client().create_key("files", "aes256-gcm", false).await.expect("aes key");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let original: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(path("plain"), &original).expect("write");

    let (ok, stderr) =
        cli(&stack, &["encrypt-file", "files", "--in", &path("plain"), "--out", &path("sealed"), "--aad", "a"]);
    assert!(ok, "encrypt-file: {stderr}");
    let (ok, stderr) =
        cli(&stack, &["decrypt-file", "files", "--in", &path("sealed"), "--out", &path("back"), "--aad", "a"]);
    assert!(ok, "decrypt-file: {stderr}");
    assert_eq!(std::fs::read(path("back")).expect("read"), original);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(path("back")).expect("stat").permissions().mode() & 0o777, 0o600);

    // Damage past the first segment: the transfer breaks off and the partial output is gone.
    let mut sealed = std::fs::read(path("sealed")).expect("read");
    let len = sealed.len();
    sealed[len - 100] ^= 1;
    std::fs::write(path("damaged"), &sealed).expect("write");
    let (ok, stderr) =
        cli(&stack, &["decrypt-file", "files", "--in", &path("damaged"), "--out", &path("partial"), "--aad", "a"]);
    assert!(!ok && stderr.contains("removed"), "{stderr}");
    assert!(!dir.path().join("partial").exists(), "no partial plaintext is left behind");
    // An existing output file is never overwritten.
    let (ok, stderr) =
        cli(&stack, &["decrypt-file", "files", "--in", &path("sealed"), "--out", &path("back"), "--aad", "a"]);
    assert!(!ok && stderr.contains("must not exist"), "{stderr}");
}
