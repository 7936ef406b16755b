//! A whole development stack for one test: dev KMS, gateway and enclaves, in a temp dir.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use keyward_client::{Client, api::HealthResponse};

use crate::{DevKms, Proc, binary, free_port};

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub enclave_ids: Vec<u32>,
    /// KMS calls carry a Recipient; the attesting dev KMS sits in front of the emulator and
    /// the key policy pins this build's PCRs.
    pub attestation: bool,
    /// The gateway also checks the enclave's PCRs itself before handing it credentials.
    pub gateway_pins_pcrs: bool,
    /// Both links (gateway ↔ enclave, enclave → KMS relay) over Unix sockets instead of TCP.
    pub unix_sockets: bool,
    /// Gateway and enclaves pin the KMS key by its ARN (as production does) instead of the
    /// alias.
    pub pin_key_arn: bool,
    /// Appended to the gateway's configuration, `{dir}` replaced by the stack's directory
    /// (front doors, for instance).
    pub extra_config: String,
    /// The enclave's owners (`ed25519:<hex>`, `p256:<hex>`): authorization on when not empty.
    pub owners: Vec<String>,
    /// How many owners approve administrative operations together.
    pub owner_quorum: u8,
    /// Appended to every enclave's command line, `{dir}` replaced by the stack's directory.
    pub enclave_args: Vec<String>,
    /// `database.url` (PostgreSQL) instead of a SQLite file in the stack's directory.
    pub database_url: Option<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            enclave_ids: vec![1],
            attestation: true,
            gateway_pins_pcrs: true,
            unix_sockets: false,
            pin_key_arn: false,
            extra_config: String::new(),
            owners: Vec::new(),
            owner_quorum: 1,
            enclave_args: Vec::new(),
            database_url: None,
        }
    }
}

impl StackOptions {
    /// KMS without Recipient: the enclave talks to the emulator directly.
    pub fn without_attestation() -> Self {
        StackOptions { attestation: false, gateway_pins_pcrs: false, ..Self::default() }
    }
}

/// PCR0-2 of the enclave binary under the mock NSM, hex.
#[derive(Debug, Clone)]
pub struct Measured {
    pub pcr0: String,
    pub pcr1: String,
    pub pcr2: String,
}

/// A second gateway and enclave on a stack's database (see [`Stack::start_second_pair`]).
#[derive(Debug)]
pub struct Pair {
    // Field order is drop order: the gateway stops before its enclave.
    pub gateway: Proc,
    pub enclave: Proc,
    pub api_port: u16,
    pub admin_token: String,
}

#[derive(Debug)]
pub struct Stack {
    // Field order is drop order: processes stop before the dev KMS and the directory.
    pub gateway: Option<Proc>,
    pub enclaves: BTreeMap<u32, Proc>,
    pub proxy: Option<Proc>,
    pub proxy_port: Option<u16>,
    pub data_dir: PathBuf,
    pub devkms: DevKms,
    pub measured: Measured,
    pub options: StackOptions,
    pub key_arn: String,
    pub kms_url: String,
    pub api_port: u16,
    pub relay_port: u16,
    pub enclave_ports: BTreeMap<u32, u16>,
    pub token: String,
    /// The gateway's link public key, which every enclave of the stack is started with.
    pub link_public_key: String,
    pub client: Client,
    pub dir: tempfile::TempDir,
}

pub const ALIAS: &str = "alias/keyward-enclave-master-key";
pub const REGION: &str = "us-east-1";

impl Stack {
    /// Starts the dev KMS, creates the key, and writes the gateway config; starts nothing
    /// else.
    pub async fn prepare(options: StackOptions) -> Stack {
        let dir = tempfile::Builder::new().prefix("keyward-e2e-").tempdir().expect("temp dir");
        let devkms = DevKms::start(dir.path()).await;
        let key_arn = run_tool("keyward-devkms", &["--upstream", &devkms.url(), "setup", "--alias", ALIAS]);
        let measurements = dir.path().join("measurements.json");
        std::fs::write(&measurements, run_tool("enclave", &["measure"])).expect("write measurements");
        let measured = parse_measurements(&measurements);
        let mut proxy_port = None;
        if options.attestation {
            let policy = run_tool(
                "gateway",
                &[
                    "key-policy",
                    "--measurements",
                    &measurements.display().to_string(),
                    "--account-id",
                    "000000000000",
                    "--role-arn",
                    "arn:aws:iam::000000000000:role/keyward-gateway",
                    "--output",
                    "key",
                ],
            );
            let policy_path = dir.path().join("key-policy.json");
            std::fs::write(&policy_path, policy).expect("write policy");
            run_tool(
                "keyward-devkms",
                &[
                    "--upstream",
                    &devkms.url(),
                    "setup",
                    "--alias",
                    ALIAS,
                    "--policy",
                    &policy_path.display().to_string(),
                ],
            );
            let root = run_tool(
                "keyward-devkms",
                &["dev-root", "--pki-dir", &dir.path().join("mock-nsm").display().to_string()],
            );
            std::fs::write(dir.path().join("mock-nsm-root.pem"), root).expect("write root");
            proxy_port = Some(free_port());
        }
        let link_public_key =
            run_tool("gateway", &["link-key", "new", "--out", &dir.path().join("link.key").display().to_string()]);
        let token = hex::encode(rand_bytes::<24>());
        write_private(&dir.path().join("api-token"), &token);
        write_private(&dir.path().join("admin-token"), &hex::encode(rand_bytes::<24>()));
        let api_port = free_port();
        let client = Client::new(&format!("http://127.0.0.1:{api_port}"), Some(token.clone())).expect("client");
        let enclave_ports = options.enclave_ids.iter().map(|id| (*id, free_port())).collect();
        let kms_url = proxy_port.map_or_else(|| devkms.url(), |port| format!("http://127.0.0.1:{port}"));
        let data_dir = dir.path().join("data");
        let mut stack = Stack {
            gateway: None,
            enclaves: BTreeMap::new(),
            proxy: None,
            proxy_port,
            data_dir,
            devkms,
            measured,
            options,
            key_arn,
            kms_url,
            api_port,
            relay_port: free_port(),
            enclave_ports,
            token,
            link_public_key,
            client,
            dir,
        };
        stack.write_config();
        if stack.proxy_port.is_some() {
            stack.start_proxy().await;
        }
        stack
    }

    /// A client holding the admin token (for `/v1/admin/*`).
    pub fn admin_client(&self) -> Client {
        let token = std::fs::read_to_string(self.path().join("admin-token")).expect("admin token");
        Client::new(&format!("http://127.0.0.1:{}", self.api_port), Some(token)).expect("client")
    }

    /// Starts the attesting dev KMS (again) on its port and waits until it answers.
    pub async fn start_proxy(&mut self) {
        let port = self.proxy_port.expect("this stack has an attesting dev KMS");
        let mut proxy = Proc::spawn(
            "devkms-proxy",
            &binary("keyward-devkms"),
            &[
                "--upstream".into(),
                self.devkms.url(),
                "serve".into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--root".into(),
                self.path().join("mock-nsm-root.pem").display().to_string(),
            ],
            &[("KEYWARD_LOG", "info".into()), ("KEYWARD_LOG_FORMAT", "json".into())],
            &self.path().join("devkms-proxy.log"),
        );
        DevKms::wait_answers(&format!("http://127.0.0.1:{port}"), &mut proxy).await;
        self.proxy = Some(proxy);
    }

    /// Stops the attesting dev KMS: from the enclave's point of view, KMS is down.
    pub fn stop_proxy(&mut self) {
        if let Some(mut p) = self.proxy.take() {
            p.kill();
        }
    }

    /// Moves the database to another directory (e.g. a small or read-only mount).
    pub fn set_data_dir(&mut self, dir: PathBuf) {
        self.data_dir = dir;
        self.write_config();
    }

    /// Prepares and starts everything, and waits until every enclave is ready.
    pub async fn start(options: StackOptions) -> Stack {
        let mut stack = Self::prepare(options).await;
        for id in stack.options.enclave_ids.clone() {
            stack.start_enclave(id);
        }
        stack.start_gateway();
        stack.wait_ready().await;
        stack
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The KMS key id gateway and enclaves are configured with.
    pub fn pinned_key_id(&self) -> &str {
        if self.options.pin_key_arn { &self.key_arn } else { ALIAS }
    }

    /// The SQLite file; a stack on PostgreSQL has none (its helpers would open an empty file
    /// and fail far from the cause).
    pub fn db_path(&self) -> PathBuf {
        assert!(self.options.database_url.is_none(), "this stack is on PostgreSQL: it has no SQLite file");
        self.data_dir.join("keyward.db")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("gateway.yaml")
    }

    /// Points the gateway and enclaves at another KMS endpoint (a test's man in the middle).
    pub fn set_kms_url(&mut self, url: String) {
        self.kms_url = url;
        self.write_config();
    }

    pub fn write_config(&self) {
        let enclaves: Vec<(u32, String)> =
            self.enclave_ports.keys().map(|id| (*id, self.enclave_address(*id))).collect();
        let config = self.config_text(self.api_port, &self.relay_address(), &enclaves);
        std::fs::write(self.config_path(), config).expect("write gateway config");
    }

    /// A gateway configuration of this stack's environment (KMS, database, tokens, link key)
    /// with its own API port, relay and enclaves.
    fn config_text(&self, api_port: u16, relay: &str, enclaves: &[(u32, String)]) -> String {
        let enclaves: String =
            enclaves.iter().map(|(id, address)| format!("  - enclave_id: {id}\n    address: {address}\n")).collect();
        let dir = self.path().display();
        format!(
            "environment: development\n\
             kms:\n  enabled: true\n  endpoint_url: {kms}\n  key_id: {key_id}\n  enable_attestation: {att}\n  region: {REGION}\n\
             database:\n  {db}\n\
             server:\n  listen: 127.0.0.1:{api_port}\n  api_token_file: {dir}/api-token\n  admin_token_file: {dir}/admin-token\n\
             relay:\n  listen: {relay}\n\
             link:\n  key_file: {dir}/link.key\n\
             {authorization}\
             {attestation}\
             enclaves:\n{enclaves}\
             {extra}",
            kms = self.kms_url,
            extra = self.options.extra_config.replace("{dir}", &dir.to_string()),
            key_id = self.pinned_key_id(),
            att = self.options.attestation,
            db = match &self.options.database_url {
                Some(url) => format!("url: {url}"),
                None => format!("path: {}", self.db_path().display()),
            },
            // The gateway expects the owners the enclaves were started with (checked in Hello).
            authorization = if self.options.owners.is_empty() {
                String::new()
            } else {
                let owners: String = self.options.owners.iter().map(|o| format!("    - {o}\n")).collect();
                format!("authorization:\n  owners:\n{owners}  quorum: {}\n", self.options.owner_quorum)
            },
            attestation = if self.options.gateway_pins_pcrs {
                format!(
                    "attestation:\n  root_pem: {dir}/mock-nsm-root.pem\n  expected_pcrs:\n    - PCR0: {}\n      PCR1: {}\n      PCR2: {}\n",
                    self.measured.pcr0, self.measured.pcr1, self.measured.pcr2
                )
            } else {
                String::new()
            },
        )
    }

    /// A second gateway and enclave (enclave id `enclave_id`, its own master key) on this
    /// stack's database, KMS and link key, with their own ports: another node of a fleet.
    /// Waits until its gateway answers; both stop when the pair is dropped.
    pub async fn start_second_pair(&self, enclave_id: u32) -> Pair {
        self.start_second_pair_with(enclave_id, &[]).await
    }

    /// [`Self::start_second_pair`] with extra environment for its gateway (e.g. `KEYWARD_FAULT`).
    pub async fn start_second_pair_with(&self, enclave_id: u32, gateway_env: &[(&'static str, String)]) -> Pair {
        let (api_port, relay_port, enclave_port) = (free_port(), free_port(), free_port());
        let relay = format!("tcp://127.0.0.1:{relay_port}");
        let listen = format!("tcp://127.0.0.1:{enclave_port}");
        let name = format!("pair-{enclave_id}");
        let config = self.path().join(format!("{name}.yaml"));
        std::fs::write(&config, self.config_text(api_port, &relay, &[(enclave_id, listen.clone())]))
            .expect("write config");
        let enclave = Proc::spawn(
            &format!("{name}-enclave"),
            &binary("enclave"),
            &self.enclave_args_for(&listen, &relay),
            &enclave_env(),
            &self.path().join(format!("{name}-enclave.log")),
        );
        let gateway = self.spawn_gateway(&format!("{name}-gateway"), &config, gateway_env);
        let admin_token = std::fs::read_to_string(self.path().join("admin-token")).expect("admin token");
        let client = Client::new(&format!("http://127.0.0.1:{api_port}"), Some(self.token.clone())).expect("client");
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.health().await.is_err() {
            assert!(Instant::now() < deadline, "the second gateway never answered:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Pair { gateway, enclave, api_port, admin_token: admin_token.trim().to_owned() }
    }

    fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", self.path().join("no-aws-config").display().to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", self.path().join("no-aws-credentials").display().to_string()),
            ("HOME", self.path().display().to_string()),
            ("KEYWARD_LOG", "info".into()),
            ("KEYWARD_LOG_FORMAT", "json".into()),
        ]
    }

    pub fn start_gateway(&mut self) {
        self.start_gateway_with(&[]);
    }

    /// Starts the gateway with extra environment (e.g. `KEYWARD_FAULT`).
    pub fn start_gateway_with(&mut self, extra: &[(&'static str, String)]) {
        let proc = self.spawn_gateway("gateway", &self.config_path(), extra);
        self.gateway = Some(proc);
    }

    /// A gateway process of this stack's environment with its own `config`; its log is
    /// `<name>.log`. The caller owns it (it stops when dropped).
    pub fn spawn_gateway(&self, name: &str, config: &Path, extra: &[(&'static str, String)]) -> Proc {
        let mut env = self.aws_env();
        env.extend_from_slice(extra);
        let log = self.path().join(format!("{name}.log"));
        Proc::spawn(name, &binary("gateway"), &["--config".into(), config.display().to_string()], &env, &log)
    }

    /// Where enclave `id` listens.
    pub fn enclave_address(&self, id: u32) -> String {
        if self.options.unix_sockets {
            format!("unix://{}", self.path().join(format!("enclave-{id}.sock")).display())
        } else {
            format!("tcp://127.0.0.1:{}", self.enclave_ports[&id])
        }
    }

    /// Where the gateway's KMS relay listens.
    pub fn relay_address(&self) -> String {
        if self.options.unix_sockets {
            format!("unix://{}", self.path().join("relay.sock").display())
        } else {
            format!("tcp://127.0.0.1:{}", self.relay_port)
        }
    }

    /// Replaces the gateway configuration with `text` (for production-settings tests).
    pub fn write_config_text(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write gateway config");
    }

    /// Starts enclave `id` with an explicit command line.
    pub fn start_enclave_with_args(&mut self, id: u32, args: &[String]) {
        let log = self.path().join(format!("enclave-{id}.log"));
        let proc = Proc::spawn(&format!("enclave-{id}"), &binary("enclave"), args, &enclave_env(), &log);
        self.enclaves.insert(id, proc);
    }

    /// The enclave's command line; `program` lets a test run a modified copy of the binary.
    pub fn enclave_args(&self, id: u32) -> Vec<String> {
        self.enclave_args_for(&self.enclave_address(id), &self.relay_address())
    }

    /// The enclave command line with its own listen address and relay.
    pub fn enclave_args_for(&self, listen: &str, relay: &str) -> Vec<String> {
        let mut args = vec![
            "--listen".into(),
            listen.to_owned(),
            "--kms-relay".into(),
            relay.to_owned(),
            "--kms-endpoint".into(),
            self.kms_url.clone(),
            "--kms-region".into(),
            REGION.into(),
            "--kms-key-id".into(),
            self.pinned_key_id().to_owned(),
            "--attestation".into(),
            self.options.attestation.to_string(),
            "--nsm".into(),
            "mock".into(),
            "--mock-nsm-dir".into(),
            self.path().join("mock-nsm").display().to_string(),
            "--gateway-public-key".into(),
            self.link_public_key.clone(),
        ];
        for owner in &self.options.owners {
            args.extend(["--owner".into(), owner.clone()]);
        }
        if !self.options.owners.is_empty() {
            args.extend(["--owner-quorum".into(), self.options.owner_quorum.to_string()]);
        }
        let dir = self.path().display().to_string();
        args.extend(self.options.enclave_args.iter().map(|a| a.replace("{dir}", &dir)));
        args
    }

    pub fn start_enclave(&mut self, id: u32) {
        self.start_enclave_from(id, &binary("enclave"));
    }

    pub fn start_enclave_from(&mut self, id: u32, program: &Path) {
        self.start_enclave_with(id, program, &[]);
    }

    /// Starts enclave `id` from `program` with extra environment (e.g. `KEYWARD_FAULT`).
    pub fn start_enclave_with(&mut self, id: u32, program: &Path, extra: &[(&'static str, String)]) {
        let log = self.path().join(format!("enclave-{id}.log"));
        let mut env = enclave_env();
        env.extend_from_slice(extra);
        let proc = Proc::spawn(&format!("enclave-{id}"), program, &self.enclave_args(id), &env, &log);
        self.enclaves.insert(id, proc);
    }

    /// SIGKILL an enclave, as a crash would. With a gateway running, returns once its health
    /// no longer reports that enclave ready, so a following `wait_ready` cannot be answered
    /// by the state from before the kill.
    pub async fn kill_enclave(&mut self, id: u32) {
        let Some(mut p) = self.enclaves.remove(&id) else { return };
        p.kill();
        if self.gateway.is_some() {
            self.wait_health(&format!("the gateway notices enclave {id} is gone"), |_, h| {
                h.enclaves.iter().any(|e| e.enclave_id == id && e.state != "ready")
            })
            .await;
        }
    }

    /// SIGKILL the gateway.
    pub fn kill_gateway(&mut self) {
        if let Some(mut p) = self.gateway.take() {
            p.kill();
        }
    }

    /// Waits until `/v1/health` says every enclave is ready.
    pub async fn wait_ready(&mut self) -> HealthResponse {
        self.wait_health("every enclave ready", |status, h| status == 200 && h.status == "ok").await
    }

    /// Waits until every enclave's keyring is ready.
    pub async fn wait_keyring(&mut self) -> HealthResponse {
        self.wait_health("every keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await
    }

    /// Waits until health satisfies `accept`; fails with the logs after 60 s.
    pub async fn wait_health(&mut self, what: &str, accept: impl Fn(u16, &HealthResponse) -> bool) -> HealthResponse {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        loop {
            if let Ok((status, health)) = self.client.health().await {
                if accept(status, &health) {
                    return health;
                }
                last = Some((status, health));
            }
            if let Some(gateway) = self.gateway.as_mut() {
                assert!(gateway.is_running(), "gateway exited while waiting for {what}:\n{}", self.logs());
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; last health {last:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every log of the stack, labelled.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.path()).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: String =
                    text.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                all.push_str(&format!("--- {} ---\n{tail}\n", path.display()));
            }
        }
        all
    }

    /// The raw bytes of every log file and of the three database files (main, WAL, shared
    /// memory), for secret scanning while the gateway runs: a missing database file is a
    /// failure, not a file skipped.
    pub fn log_and_database_bytes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut scanned = self.log_bytes();
        for suffix in ["", "-wal", "-shm"] {
            let path = PathBuf::from(format!("{}{suffix}", self.db_path().display()));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{} must exist: {e}", path.display()));
            scanned.push((path, bytes));
        }
        scanned
    }

    /// The raw bytes of every log file (for secret scanning).
    pub fn log_bytes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        std::fs::read_dir(self.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap_or_default();
                (p, bytes)
            })
            .collect()
    }

    /// Reads the row of `enclave_id` straight from SQLite.
    pub fn row(&self, enclave_id: u32) -> Option<keyward_store::MasterKeyRow> {
        let mut rows = read_rows(&self.db_path());
        rows.retain(|row| row.enclave_id == i64::from(enclave_id));
        rows.pop()
    }

    /// A count (`SELECT COUNT(*) ...`) or another number, from the stack's database.
    pub fn count(&self, query: &str) -> i64 {
        match self.rows().query(query, &[]).first().and_then(|row| row.first()) {
            Some(crate::Cell::Int(n)) => *n,
            other => panic!("{query}: expected a number, got {other:?}"),
        }
    }

    /// Every row `query` returns from the stack's database (SQLite or PostgreSQL; `?1`
    /// placeholders).
    pub fn query(&self, query: &str, params: &[crate::Cell]) -> Vec<Vec<crate::Cell>> {
        self.rows().query(query, params)
    }

    /// Runs one statement on the stack's database (SQLite or PostgreSQL; `?1` placeholders);
    /// returns the rows it changed.
    pub fn execute(&self, statement: &str, params: &[crate::Cell]) -> u64 {
        self.rows().execute(statement, params)
    }

    fn rows(&self) -> crate::db::Rows {
        match &self.options.database_url {
            Some(url) => crate::db::Rows::Postgres(url.clone()),
            None => crate::db::Rows::Sqlite(self.db_path()),
        }
    }

    /// Number of rows in `enclave_master_keys`.
    pub fn row_count(&self) -> i64 {
        let conn = rusqlite::Connection::open(self.db_path()).expect("open database");
        conn.query_row("SELECT count(*) FROM enclave_master_keys", [], |r| r.get(0)).expect("count rows")
    }

    /// Runs SQL against the database (the gateway must be stopped).
    pub fn sql(&self, statement: &str, params: impl rusqlite::Params) {
        let conn = rusqlite::Connection::open(self.db_path()).expect("open database");
        conn.execute(statement, params).expect("execute SQL");
    }
}

/// Every `enclave_master_keys` row of the database at `path`, read straight from SQLite
/// (not through `keyward-store`, so the tests check the file independently of the code under
/// test).
pub fn read_rows(path: &Path) -> Vec<keyward_store::MasterKeyRow> {
    let conn = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("open database {}: {e}", path.display()));
    let mut statement = conn
        .prepare(
            "SELECT enclave_id, kms_encrypted_dek, encrypted_private_key, public_key, kms_key_id, key_epoch \
             FROM enclave_master_keys ORDER BY enclave_id",
        )
        .expect("query rows");
    statement
        .query_map([], |r| {
            Ok(keyward_store::MasterKeyRow {
                enclave_id: r.get(0)?,
                kms_encrypted_dek: r.get(1)?,
                encrypted_private_key: r.get(2)?,
                public_key: r.get(3)?,
                kms_key_id: r.get(4)?,
                key_epoch: r.get(5)?,
            })
        })
        .and_then(Iterator::collect)
        .unwrap_or_else(|e| panic!("reading rows of {}: {e}", path.display()))
}

/// A secret file as an operator makes one: readable by its owner only.
fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).expect("create");
    std::io::Write::write_all(&mut file, text.as_bytes()).expect("write");
}

/// Every enclave of a stack logs JSON lines, so tests can count its events.
fn enclave_env() -> Vec<(&'static str, String)> {
    vec![("KEYWARD_LOG", "info".into()), ("KEYWARD_LOG_FORMAT", "json".into())]
}

/// Runs a workspace binary to completion and returns its stdout; panics with stderr on failure.
pub fn run_tool(name: &str, args: &[&str]) -> String {
    let output = Command::new(binary(name)).args(args).output().unwrap_or_else(|e| panic!("run {name}: {e}"));
    assert!(output.status.success(), "{name} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn parse_measurements(path: &Path) -> Measured {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("measurement JSON");
    let pcr = |n: &str| json["Measurements"][n].as_str().expect("PCR hex").to_owned();
    Measured { pcr0: pcr("PCR0"), pcr1: pcr("PCR1"), pcr2: pcr("PCR2") }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("randomness for test tokens");
    out
}
