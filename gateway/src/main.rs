//! keyward gateway binary: configuration, wiring and the main loop.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::{Parser, Subcommand};
use keyward_telemetry::event;
use keyward_transport::{LinkKey, Listener};

use keyward_admission::{Expectations, ExpectedImage};

use gateway::{
    api, auth, bitgo, config,
    config::{Config, Environment},
    credentials::CredentialSource,
    db_cmd,
    enclaves::{EnclaveSlot, Supervisor},
    front_principal, frontdoor, host_store, limit, nitro_cmd, passthrough, policy_cmd, progressdb, relay,
};

/// `/v1/attestation`: documents per second, and the burst above it. Each costs the enclave a
/// blocking NSM call; the endpoint needs no token.
const ATTESTATIONS_PER_SECOND: u32 = 20;
const ATTESTATION_BURST: u32 = 40;

#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "keyward gateway: signing API, enclave links, KMS relay, key store")]
struct Cli {
    /// Configuration file.
    #[arg(long, short, env = "KEYWARD_CONFIG", default_value = "config/development.yaml", global = true)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the configuration (including the production checks) and exit.
    CheckConfig,
    /// Create the database of a first installation (production never creates it on start).
    InitDb,
    /// Copy every row of a SQLite database into an empty PostgreSQL one (stop the gateway
    /// first); each table is read back before the copy commits.
    MigrateDb {
        /// The SQLite database file.
        #[arg(long)]
        from: PathBuf,
        /// `postgres://user@host:port/db?sslmode=verify-full&sslrootcert=…`.
        #[arg(long)]
        to: String,
        /// The target's password, alone in a file.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Print the KMS key policy and IAM policy that release data keys only to the given
    /// enclave builds.
    KeyPolicy(policy_cmd::KeyPolicyArgs),
    /// Rotate an enclave's data key through the running gateway's admin API (same public
    /// key, `key_epoch + 1`).
    Rotate {
        /// Which enclave (optional when the config lists exactly one).
        #[arg(long)]
        enclave_id: Option<u32>,
    },
    /// The link key, with which the gateway proves to its enclaves that it is their gateway.
    #[command(subcommand)]
    LinkKey(LinkKeyCommand),
    /// Print the enclave image's pinned settings from a production config, one
    /// `KEYWARD_*=value` per line, for `docker build --build-arg` (used by `just build-eif`).
    /// They are measured into the EIF: changing one changes PCR0 and PCR2.
    NitroBuildArgs,
    /// Print the `nitro-cli run-enclave` arguments for one enclave of the config (CID, vCPUs,
    /// memory, name), one per line (used by `just run-enclave`).
    NitroRunArgs {
        /// Which enclave (optional when the config lists exactly one).
        #[arg(long)]
        enclave_id: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
enum LinkKeyCommand {
    /// Make a new link key file (mode 0600; never overwrites) and print its public key, which
    /// the enclave takes as --gateway-public-key.
    New {
        /// Where to write it (default: link.key_file of the config).
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Print the public key of the config's link key (link.public_key, else from
    /// link.key_file).
    Public,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    keyward_telemetry::init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.config).await,
        Command::CheckConfig => Config::load(&cli.config).map(|c| println!("{c:#?}")),
        Command::InitDb => db_cmd::init_db(&cli.config).await,
        Command::MigrateDb { from, to, password_file } => db_cmd::migrate_db(&from, &to, password_file).await,
        Command::KeyPolicy(args) => policy_cmd::run(args),
        Command::Rotate { enclave_id } => rotate_cmd(&cli.config, enclave_id).await,
        Command::LinkKey(command) => link_key_cmd(&cli.config, command),
        Command::NitroBuildArgs => Config::load_for_image(&cli.config)
            .and_then(|c| nitro_cmd::image_build_args(&c))
            .map(|args| args.iter().for_each(|(name, value)| println!("{name}={value}"))),
        Command::NitroRunArgs { enclave_id } => Config::load(&cli.config)
            .and_then(|c| nitro_cmd::run_args(&c, enclave_id))
            .map(|args| args.iter().for_each(|arg| println!("{arg}"))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("gateway: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config_path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    if let Some(dir) = config.database.sqlite_path().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty())
        && config.environment == Environment::Development
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating database directory {}", dir.display()))?;
    }
    let production = config.environment == Environment::Production;
    let api_token = Arc::new(auth::Token::load(&config.api_token_file, production)?);
    let admin_token =
        config.admin_token_file.as_deref().map(|path| auth::Token::load(path, production)).transpose()?.map(Arc::new);
    if production && admin_token.as_ref().is_some_and(|admin| admin.same_as(&api_token)) {
        anyhow::bail!(
            "production refuses an admin token equal to the API token: every signing client could rotate keys; give server.admin_token_file its own token"
        );
    }
    let link_key = Arc::new(load_link_key(&config, production)?);
    // An unreadable database stops the gateway here: it never reaches the point of
    // generating a key it could not have stored.
    // Production never creates the database: a lost file must not silently become a new key.
    let create = config.environment == Environment::Development;
    let db = config.database.open(create).await.context("refusing to start")?;
    // The outage grace is for a database across the network; a SQLite file has no outage to
    // ride out, and its failures (a full or damaged disk) must show at once.
    let db = match config.database {
        config::database::Database::Postgres { .. } => db.with_outage_grace(config.database_outage_grace),
        config::database::Database::Sqlite(_) => db,
    };
    let credentials = Arc::new(CredentialSource::from_environment(&config.kms_region).await?);

    let relay_listener = Listener::bind(&config.relay_listen).await?;
    let relay_target = config.kms_endpoint.relay_target();
    tracing::info!(event = event::RELAY_LISTENING, listen = %relay_listener.local_address(), target = %relay_target, "KMS relay listening");
    tokio::spawn(relay::serve(relay_listener, relay_target, config.relay_limits.clone()));

    let expect = Expectations {
        environment: config.environment,
        kms_key_id: config.kms_key_id.clone(),
        kms_region: config.kms_region.clone(),
        kms_endpoint: config.kms_endpoint.url().to_owned(),
        attestation: config.attestation,
        image: (!config.expected_pcrs.is_empty())
            .then(|| {
                Ok::<_, anyhow::Error>(ExpectedImage {
                    root_pem: config.attestation_root_pem.clone(),
                    builds: config.expected_pcrs.iter().map(config::PcrSet::measurements).collect::<Result<_, _>>()?,
                })
            })
            .transpose()?,
        owners: config.owners.as_ref().map(config::authorization::Owners::expected),
    };
    let mut slots = BTreeMap::new();
    for target in &config.enclaves {
        let slot = Arc::new(EnclaveSlot::new(target.enclave_id, target.address.clone()));
        slots.insert(target.enclave_id, slot.clone());
        let supervisor = Supervisor {
            slot,
            db: db.clone(),
            credentials: credentials.clone(),
            expect: expect.clone(),
            link_key: link_key.clone(),
        };
        tokio::spawn(supervisor.run());
    }

    let state = api::AppState {
        enclaves: Arc::new(slots),
        db,
        api_token,
        admin_token,
        credentials,
        attestation_limit: Arc::new(limit::RateLimit::new(ATTESTATIONS_PER_SECOND, ATTESTATION_BURST)),
        key_deletion_waiting_seconds: i64::from(config.key_deletion_waiting_days) * 86_400,
        owners: config.owners.is_some(),
        check_rows: false,
    };
    if let Some(progressdb) = &config.progressdb {
        serve_progressdb(progressdb, &state).await?;
    }
    if let Some(bitgo) = &config.bitgo {
        serve_bitgo(bitgo, &state).await?;
    }
    if let Some(enclave_tls) = &config.enclave_tls {
        let store_listener = Listener::bind(&enclave_tls.store_listen).await?;
        tracing::info!(listen = %store_listener.local_address(), "store service for the enclave's TLS API listening");
        let settings = host_store::HostSettings { key_deletion_waiting_seconds: state.key_deletion_waiting_seconds };
        tokio::spawn(host_store::serve(
            store_listener,
            state.db.clone(),
            settings,
            config.relay_limits.vsock_cids.clone(),
        ));
        passthrough::start(enclave_tls).await?;
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(event = event::API_LISTENING, listen = %listener.local_addr()?, environment = ?config.environment, "gateway API listening");
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("API server failed")?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// ProgressDB's KMS API on each listener its section names.
async fn serve_progressdb(config: &config::seeds::ProgressDbConfig, app: &api::AppState) -> anyhow::Result<()> {
    let principal = front_principal(config.principal_key_file.as_deref(), "progressdb")?;
    let router = progressdb::router(progressdb::ProgressDb {
        app: app.clone(),
        key_prefix: config.key_prefix.as_str().into(),
        principal,
    });
    let mut addresses = Vec::new();
    if let Some(listen) = &config.listen {
        addresses.push(keyward_transport::Address::Tcp { host: listen.ip().to_string(), port: listen.port() });
    }
    if let Some(path) = &config.unix_socket {
        let path = std::path::absolute(path).with_context(|| format!("progressdb.unix_socket {}", path.display()))?;
        addresses.push(keyward_transport::Address::Unix(path));
    }
    let allowed = Arc::new(config.allowed_uids.clone());
    for address in addresses {
        let inner = Listener::bind_with_mode(&address, frontdoor::SHARED_SOCKET_MODE)
            .await
            .with_context(|| format!("progressdb front door on {address}"))?;
        tracing::info!(event = event::FRONT_DOOR_LISTENING, front_door = "progressdb", listen = %inner.local_address(), allowed_uids = ?allowed, "ProgressDB KMS API listening");
        let listener = frontdoor::CheckedListener::new(inner, "progressdb", allowed.clone());
        let router = router.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(front_door = "progressdb", "front door stopped: {e}");
            }
        });
    }
    Ok(())
}

/// BitGo's key provider API: mutual TLS, or plain HTTP in development.
async fn serve_bitgo(config: &config::seeds::BitgoConfig, app: &api::AppState) -> anyhow::Result<()> {
    let principal = front_principal(config.principal_key_file.as_deref(), "bitgo")?;
    let router = bitgo::router(bitgo::Bitgo { app: app.clone(), config: Arc::new(config.clone()), principal });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("bitgo front door on {}", config.listen))?;
    let local = listener.local_addr()?;
    match &config.tls {
        Some(tls) => {
            let listener = frontdoor::TlsListener::new(listener, frontdoor::mutual_tls(tls)?, "bitgo")?;
            tracing::info!(event = event::FRONT_DOOR_LISTENING, front_door = "bitgo", listen = %local, tls = "mutual", "BitGo key provider API listening");
            tokio::spawn(async move { axum::serve(listener, router).await });
        }
        None => {
            tracing::info!(event = event::FRONT_DOOR_LISTENING, front_door = "bitgo", listen = %local, tls = "none", "BitGo key provider API listening (plain HTTP: development only)");
            tokio::spawn(async move { axum::serve(listener, router).await });
        }
    }
    Ok(())
}

/// A front door's principal (none without `principal_key_file`: the enclaves have no owners;
/// the config checked that).
fn front_principal(file: Option<&std::path::Path>, door: &str) -> anyhow::Result<front_principal::FrontPrincipal> {
    let Some(file) = file else { return Ok(front_principal::FrontPrincipal::default()) };
    let principal =
        front_principal::FrontPrincipal::load(file).with_context(|| format!("{door}.principal_key_file"))?;
    tracing::info!(
        front_door = door,
        principal = principal.id().unwrap_or_default(),
        "front door signs as its principal"
    );
    Ok(principal)
}

/// The link key, checked against `link.public_key` when that is set too. Production refuses a
/// key file others can read.
fn load_link_key(config: &Config, production: bool) -> anyhow::Result<LinkKey> {
    let key = LinkKey::load(&config.link_key_file, production)
        .with_context(|| format!("link.key_file {}", config.link_key_file.display()))?;
    if production && key.public_key().is_published_test_key() {
        anyhow::bail!(
            "production refuses link.key_file: it holds a published test key (RFC 8032), whose private key anyone has"
        );
    }
    if let Some(public) = config.link_public_key
        && public != key.public_key()
    {
        anyhow::bail!(
            "link.public_key {public} is not the public key of link.key_file ({}); the enclave image pins one of them",
            key.public_key()
        );
    }
    Ok(key)
}

/// `gateway link-key new|public`.
fn link_key_cmd(config_path: &std::path::Path, command: LinkKeyCommand) -> anyhow::Result<()> {
    match command {
        LinkKeyCommand::New { out } => {
            let path = match out {
                Some(path) => path,
                None => Config::load_without_production_checks(config_path)?.link_key_file,
            };
            let key = LinkKey::create(&path)?;
            eprintln!("wrote the link key to {} (mode 0600); give the enclave its public key:", path.display());
            println!("{}", key.public_key());
        }
        LinkKeyCommand::Public => {
            println!("{}", nitro_cmd::gateway_public_key(&Config::load_without_production_checks(config_path)?)?)
        }
    }
    Ok(())
}

/// `gateway rotate`: asks the running gateway (found through the config) to rotate.
async fn rotate_cmd(config_path: &std::path::Path, enclave_id: Option<u32>) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let token_file =
        config.admin_token_file.as_deref().context("server.admin_token_file is not set: the admin API is off")?;
    let token = std::fs::read_to_string(token_file).with_context(|| format!("reading {}", token_file.display()))?;
    let client = keyward_client::Client::new(&format!("http://{}", config.listen), Some(token.trim().to_owned()))?;
    let rotated = client.rotate(enclave_id).await?;
    println!("{}", serde_json::to_string_pretty(&rotated)?);
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
