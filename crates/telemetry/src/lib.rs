#![doc = include_str!("../README.md")]

/// Structured event names, the `event` field of log lines that operators and tests rely on.
pub mod event {
    /// The enclave listens for its gateway.
    pub const ENCLAVE_LISTENING: &str = "enclave_listening";
    /// A peer connected to the enclave's link (not yet authenticated).
    pub const LINK_CONNECTED: &str = "link_connected";
    /// A peer proved it holds the gateway's link key.
    pub const LINK_AUTHENTICATED: &str = "link_authenticated";
    /// A peer was refused on the enclave's link (no or a wrong proof, too many connections).
    pub const LINK_REFUSED: &str = "link_refused";
    /// A link connection ended.
    pub const LINK_CLOSED: &str = "link_closed";
    /// The enclave generated and sealed a new master key (awaiting commit).
    pub const KEY_PROVISIONED: &str = "key_provisioned";
    /// The enclave committed a key (or a rotation) and signs with it.
    pub const KEY_COMMITTED: &str = "key_committed";
    /// The enclave opened a stored row and signs with it.
    pub const KEY_UNSEALED: &str = "key_unsealed";
    /// The enclave resealed its key under a new data key (awaiting commit).
    pub const KEY_RESEALED: &str = "key_resealed";
    /// The enclave made a new keyring root (awaiting commit).
    pub const ROOT_PROVISIONED: &str = "root_provisioned";
    /// The enclave committed the keyring root (or a root rotation).
    pub const ROOT_COMMITTED: &str = "root_committed";
    /// The enclave opened the stored keyring root.
    pub const ROOT_UNSEALED: &str = "root_unsealed";
    /// Enclave: a key was imported (sealed to the transfer key) and wrapped under the root.
    pub const KEY_IMPORTED: &str = "key_imported";
    /// Enclave: an exportable key was sealed to a caller's public key.
    pub const KEY_EXPORTED: &str = "key_exported";
    /// A newly sealed row did not open again and was discarded.
    pub const ROUND_TRIP_FAILED: &str = "round_trip_failed";
    /// The gateway's view of an enclave changed (`state`, `code`).
    pub const ENCLAVE_STATE: &str = "enclave_state";
    /// The gateway's view of an enclave's keyring changed (`state`, `code`).
    pub const KEYRING_STATE: &str = "keyring_state";
    /// The gateway stored a row (first start or rotation).
    pub const ROW_STORED: &str = "row_stored";
    /// The gateway's KMS relay listens.
    pub const RELAY_LISTENING: &str = "relay_listening";
    /// The relay refused a connection (`reason`: target, handshake, capacity, idle).
    pub const RELAY_REFUSED: &str = "relay_refused";
    /// The gateway's API listens.
    pub const API_LISTENING: &str = "api_listening";
    /// A seed system's front door listens (`front_door`, `listen`).
    pub const FRONT_DOOR_LISTENING: &str = "front_door_listening";
    /// A front door's Unix socket refused a peer whose user id is not allowed (`uid`).
    pub const PEER_REFUSED: &str = "peer_refused";
    /// The attesting dev KMS decided a request (`operation`, `decision`).
    pub const KMS_REQUEST: &str = "kms_request";
    /// The gateway could not store the enclave's audit records, or found some the enclave no
    /// longer held (`enclave_id`, `code`; the detail follows).
    pub const AUDIT_STORE_FAILED: &str = "audit_store_failed";
    /// A process refused to start (the error follows).
    pub const START_REFUSED: &str = "start_refused";
}

/// Installs the log subscriber on stderr: `KEYWARD_LOG` filters (default `info`),
/// `KEYWARD_LOG_FORMAT=json` selects JSON lines.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("KEYWARD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init();
    } else {
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
}
