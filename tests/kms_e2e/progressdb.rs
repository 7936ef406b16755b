//! ProgressDB's KMS API (`prgkms`) served by keyward, checked the way ProgressDB's server
//! would use it: over TCP and over the Unix socket, every route's documented shape field by
//! field, the documented errors (plain text with ProgressDB's statuses; keyward's code in
//! `X-Keyward-Error-Code`), associated data, tampering, one data key per thread, rotation
//! through `/rewrap`, and no plaintext in any log or the database.

use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_e2e::{Stack, StackOptions, assert_secret_absent, free_port};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One answer: status, error code header, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    code: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The status and code of an error.
    fn error(&self) -> (u16, &str) {
        (self.status, self.code.as_deref().unwrap_or("<no code>"))
    }

    /// The keys of a JSON object answer, sorted.
    fn fields(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.json().as_object().expect("an object").keys().cloned().collect();
        keys.sort();
        keys
    }
}

/// ProgressDB's KMS at an address: TCP through reqwest, or the Unix socket by hand (HTTP/1.1,
/// one request per connection).
enum Door {
    Tcp(reqwest::Client, String),
    Unix(PathBuf),
}

impl Door {
    async fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Answer {
        match self {
            Door::Tcp(client, base) => {
                let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                let mut request = client.request(method, format!("{base}{path}"));
                if let Some(body) = body {
                    request = request.header("content-type", "application/json").body(body.to_vec());
                }
                let response = request.send().await.expect("request");
                let status = response.status().as_u16();
                let code = response.headers().get("x-keyward-error-code").map(|v| v.to_str().unwrap().to_owned());
                Answer { status, code, body: response.bytes().await.expect("body").to_vec() }
            }
            Door::Unix(socket) => unix_call(socket, method, path, body.unwrap_or_default()).await,
        }
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(body.to_string().as_bytes())).await
    }
}

async fn unix_call(socket: &Path, method: &str, path: &str, body: &[u8]) -> Answer {
    let mut conn = tokio::net::UnixStream::connect(socket).await.expect("connect to the Unix socket");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: progressdb-kms\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    // One write: a server that answers before reading the body (a 405) and then closes leaves
    // no unread bytes behind, which on a Unix socket would turn our end-of-file into a reset.
    conn.write_all(&[head.as_bytes(), body].concat()).await.unwrap();
    let raw = read_answer(&mut conn).await;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete answer");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let code =
        head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("x-keyward-error-code: ").map(str::to_owned));
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    Answer { status, code, body: raw[split + 4..].to_vec() }
}

/// Reads an answer to the end. A reset is accepted only once the whole answer (head and
/// `content-length` bytes) has arrived, as curl and Go's client accept it; a reset before
/// that fails the test.
async fn read_answer(conn: &mut tokio::net::UnixStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match conn.read(&mut chunk).await {
            Ok(0) => return raw,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && answer_complete(&raw) => return raw,
            Err(e) => panic!("reading the answer after {} bytes: {e}", raw.len()),
        }
    }
}

fn answer_complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let length = head.lines().find_map(|l| l.strip_prefix("content-length: ").and_then(|v| v.trim().parse().ok()));
    length.is_some_and(|length: usize| raw.len() - split - 4 >= length)
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn unb64(value: &Value) -> Vec<u8> {
    STANDARD.decode(value.as_str().expect("a base64 string")).expect("base64")
}

/// Checks `/deks`' answer field by field.
fn assert_dek_shape(answer: &Answer, key_id: &str) {
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(answer.fields(), ["created_at", "kek_id", "kek_version", "key_id", "wrapped_dek"]);
    let dek = answer.json();
    assert_eq!(dek["key_id"], key_id);
    assert!(unb64(&dek["wrapped_dek"]).len() >= 32 + 16, "the wrapped data key is the key and its tag at least");
    assert!(dek["kek_id"].as_str().unwrap().starts_with("keyward-keyring-root/"));
    dek["kek_version"].as_str().unwrap().parse::<u32>().expect("kek_version is a number in a string");
    let created = dek["created_at"].as_str().unwrap();
    assert!(created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T', "RFC 3339: {created}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progressdb_kms_api_conforms_over_tcp_and_the_unix_socket() {
    let port = free_port();
    let options = StackOptions {
        extra_config: format!(
            "progressdb:\n  listen: 127.0.0.1:{port}\n  unix_socket: {{dir}}/progressdb-kms.sock\n  key_prefix: pdb.\n"
        ),
        ..StackOptions::default()
    };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let tcp = Door::Tcp(reqwest::Client::new(), format!("http://127.0.0.1:{port}"));
    let socket = stack.path().join("progressdb-kms.sock");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660, "owner and group may connect; the allow-list decides");
    let unix = Door::Unix(socket);

    // /healthz: "OK", GET only, on both doors.
    for door in [&tcp, &unix] {
        let health = door.call("GET", "/healthz", None).await;
        assert_eq!((health.status, health.text().as_str()), (200, "OK"));
        let wrong = door.call("POST", "/healthz", Some(b"{}")).await;
        assert_eq!(wrong.error(), (405, "method_not_allowed"));
        assert_eq!(wrong.text(), "Method not allowed\n", "plain text, as Go's http.Error writes it");
    }
    assert_eq!(tcp.call("GET", "/deks", None).await.error(), (405, "method_not_allowed"));
    assert_eq!(tcp.call("GET", "/nothing", None).await.error(), (404, "not_found"));

    // POST /deks: without a body (a new id), with a key id, and again with the same id.
    let fresh = tcp.call("POST", "/deks", None).await;
    let fresh_id = fresh.json()["key_id"].as_str().unwrap().to_owned();
    assert!(fresh_id.starts_with("dek-") && fresh_id.len() == 36, "{fresh_id}");
    assert_dek_shape(&fresh, &fresh_id);
    let created = tcp.post("/deks", json!({"key_id": "threads/42"})).await;
    assert_dek_shape(&created, "threads/42");
    let again = unix.post("/deks", json!({"key_id": "threads/42"})).await;
    assert_eq!(again.error(), (409, "key_exists"), "a data key is never replaced: {}", again.text());
    assert_eq!(tcp.call("POST", "/deks", Some(b"{not json")).await.error(), (400, "invalid_json"));
    assert_eq!(tcp.post("/deks", json!({"key_id": "a.b"})).await.error(), (400, "invalid_key_id"));
    assert_eq!(tcp.post("/deks", json!({"key_id": "x".repeat(200)})).await.error(), (400, "invalid_key_id"));
    // The data key is a keyring key, born in the enclave, never exportable.
    let info = stack.client.key("pdb.threads.42").await.expect("the keyring holds the data key");
    assert_eq!((info.key_type.as_str(), info.exportable, info.latest_version), ("aes256-gcm", false, 1));

    // /encrypt and /decrypt: across doors, with and without associated data.
    let message = b"the first message of thread 42";
    let encrypted = tcp.post("/encrypt", json!({"key_id": "threads/42", "plaintext": b64(message)})).await;
    assert_eq!(encrypted.status, 200, "{}", encrypted.text());
    assert_eq!(encrypted.fields(), ["ciphertext", "key_version"]);
    assert_eq!(encrypted.json()["key_version"], "1");
    let ciphertext = unb64(&encrypted.json()["ciphertext"]);
    let decrypted = unix.post("/decrypt", json!({"key_id": "threads/42", "ciphertext": b64(&ciphertext)})).await;
    assert_eq!(decrypted.fields(), ["plaintext"]);
    assert_eq!(unb64(&decrypted.json()["plaintext"]), message);
    let empty = tcp.post("/encrypt", json!({"key_id": "threads/42", "plaintext": null})).await;
    let opened = tcp.post("/decrypt", json!({"key_id": "threads/42", "ciphertext": empty.json()["ciphertext"]})).await;
    assert_eq!(unb64(&opened.json()["plaintext"]), b"", "Go's null []byte is empty");

    let bound = tcp
        .post("/encrypt", json!({"key_id": "threads/42", "plaintext": b64(message), "associated_data": b64(b"msg-7")}))
        .await;
    let bound_ct = bound.json()["ciphertext"].clone();
    let with = |ad: Option<&[u8]>| {
        let mut body = json!({"key_id": "threads/42", "ciphertext": bound_ct.clone()});
        if let Some(ad) = ad {
            body["associated_data"] = json!(b64(ad));
        }
        body
    };
    assert_eq!(unb64(&tcp.post("/decrypt", with(Some(b"msg-7"))).await.json()["plaintext"]), message);
    assert_eq!(tcp.post("/decrypt", with(None)).await.error(), (400, "decryption_failed"));
    assert_eq!(tcp.post("/decrypt", with(Some(b"msg-8"))).await.error(), (400, "decryption_failed"));

    // Tampering, another key's ciphertext, unknown keys, bad input.
    let mut flipped = ciphertext.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let tampered = tcp.post("/decrypt", json!({"key_id": "threads/42", "ciphertext": b64(&flipped)})).await;
    assert_eq!(tampered.error(), (400, "decryption_failed"));
    assert!(!tampered.text().contains("first message"));
    let other = tcp.post("/decrypt", json!({"key_id": fresh_id, "ciphertext": b64(&ciphertext)})).await;
    assert_eq!(other.error(), (400, "decryption_failed"), "a ciphertext is bound to its key's name");
    let truncated = tcp.post("/decrypt", json!({"key_id": "threads/42", "ciphertext": b64(&ciphertext[..10])})).await;
    assert_eq!(truncated.error(), (400, "ciphertext_malformed"));
    assert_eq!(
        tcp.post("/encrypt", json!({"key_id": "threads/43", "plaintext": "aGk="})).await.error(),
        (404, "key_not_found")
    );
    assert_eq!(
        tcp.post("/encrypt", json!({"key_id": "threads/42", "plaintext": "%%"})).await.error(),
        (400, "invalid_base64")
    );
    assert_eq!(tcp.post("/encrypt", json!({"plaintext": "aGk="})).await.error(), (400, "invalid_json"));
    let big = b64(&vec![7u8; 1024 * 1024 + 1]);
    assert_eq!(
        tcp.post("/encrypt", json!({"key_id": "threads/42", "plaintext": big})).await.error(),
        (400, "payload_too_large")
    );

    // The earlier routes: one data key per thread, its wrapped form, and /rewrap.
    let first = unix.post("/create_dek_for_thread", json!({"thread_id": "t-1"})).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.fields(), ["kek_id", "kek_version", "key_id", "wrapped"]);
    let second = tcp.post("/create_dek_for_thread", json!({"thread_id": "t-1"})).await;
    assert_eq!(second.json(), first.json(), "the same thread gets the same key: a retry loses nothing");
    assert_eq!(tcp.post("/create_dek_for_thread", json!({"thread_id": ""})).await.error(), (400, "invalid_thread_id"));
    let wrapped = tcp.call("GET", "/get_wrapped?key_id=t-1", None).await;
    assert_eq!(wrapped.fields(), ["wrapped"]);
    assert_eq!(wrapped.json()["wrapped"], first.json()["wrapped"]);
    assert_eq!(tcp.call("GET", "/get_wrapped", None).await.error(), (400, "missing_key_id"));
    assert_eq!(tcp.call("GET", "/get_wrapped?key_id=t-2", None).await.error(), (404, "key_not_found"));

    let before = tcp.post("/encrypt", json!({"key_id": "t-1", "plaintext": b64(b"before rewrap")})).await;
    let refused = tcp.post("/rewrap", json!({"key_id": "t-1", "new_kek_hex": "00".repeat(32)})).await;
    assert_eq!(refused.error(), (400, "kek_not_accepted"));
    let rewrapped = tcp.post("/rewrap", json!({"key_id": "t-1"})).await;
    assert_eq!(rewrapped.status, 200, "{}", rewrapped.text());
    assert_eq!(rewrapped.fields(), ["new_kek_id", "new_kek_version", "new_wrapped"]);
    assert_ne!(rewrapped.json()["new_wrapped"], first.json()["wrapped"], "a new version of the data key");
    let after = tcp.post("/encrypt", json!({"key_id": "t-1", "plaintext": b64(b"after rewrap")})).await;
    assert_eq!(after.json()["key_version"], "2");
    let old = tcp.post("/decrypt", json!({"key_id": "t-1", "ciphertext": before.json()["ciphertext"]})).await;
    assert_eq!(unb64(&old.json()["plaintext"]), b"before rewrap", "data from before /rewrap still decrypts");

    // A disabled data key is refused; the API's own codes come through.
    stack.admin_client().set_key_state("pdb.t-1", "disable").await.expect("disable");
    let disabled = tcp.post("/encrypt", json!({"key_id": "t-1", "plaintext": "aGk="})).await;
    assert_eq!(disabled.error(), (409, "key_disabled"));

    // No plaintext in the database or any log.
    let scanned = stack.log_and_database_bytes();
    for (path, bytes) in &scanned {
        assert_secret_absent(&path.display().to_string(), bytes, "a plaintext", message);
        assert_secret_absent(&path.display().to_string(), bytes, "a plaintext", b"before rewrap");
    }
    stack.gateway.take().expect("gateway").terminate(std::time::Duration::from_secs(10));
    assert!(!stack.path().join("progressdb-kms.sock").exists(), "the socket file goes with the gateway");
}
