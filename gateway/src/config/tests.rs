use super::*;

fn shipped(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../config").join(name)).expect("shipped config")
}

/// The production file with its database moved into an existing directory.
fn production(dir: &Path) -> String {
    shipped("production.yaml").replace("/var/lib/keyward/keyward.db", &dir.join("keyward.db").display().to_string())
}

#[test]
fn shipped_development_config_is_valid() {
    let config = Config::parse(&shipped("development.yaml")).unwrap();
    assert_eq!(config.environment, Environment::Development);
    assert!(config.attestation);
    assert_eq!(config.kms_endpoint.url(), "http://127.0.0.1:4567");
    assert_eq!(config.kms_key_id, "alias/keyward-enclave-master-key");
    assert_eq!(config.enclaves[0].address.to_string(), "tcp://127.0.0.1:5001");
}

#[test]
fn shipped_production_config_is_valid_once_its_directory_exists() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(&production(dir.path())).unwrap();
    assert_eq!(config.environment, Environment::Production);
    assert_eq!(config.kms_endpoint.url(), "https://kms.us-east-1.amazonaws.com");
    assert_eq!(config.relay_listen.to_string(), "vsock://any:8000");
    assert_eq!(config.enclaves[0].address.to_string(), "vsock://16:5000");
    assert_eq!(config.relay_limits.vsock_cids, Some(vec![16]), "the relay serves the configured enclave only");
}

#[test]
fn production_refuses_each_unsafe_setting() {
    let dir = tempfile::tempdir().unwrap();
    let base = production(dir.path());
    let zero = "0".repeat(96);
    let cases: Vec<(String, &str)> = vec![
        (base.replace("enable_attestation: true", "enable_attestation: false"), "enable_attestation: false"),
        (base.replace("endpoint_url: null", "endpoint_url: http://kms.us-east-1.amazonaws.com"), "plain-HTTP"),
        (base.replace("endpoint_url: null", "endpoint_url: https://kms.example.com"), "only https://kms.<region>.amazonaws.com"),
        (
            base.replace("key_id: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "key_id: alias/k"),
            "full key ARN",
        ),
        (
            base.replace(
                "key_id: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "key_id: arn:aws:kms:us-east-1:111122223333:alias/x",
            ),
            "resource \"alias/x\" is not key/<key id>",
        ),
        (
            base.replace(
                "key_id: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "key_id: arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            ),
            "key ARN is in region eu-west-1, but the configured region is us-east-1",
        ),
        (base.replace("attestation:\n", "attestation:\n  root_pem: /tmp/dev-root.pem\n"), "refuses attestation.root_pem"),
        (
            base.replace(
                "PCR0: 4b8d4cf2a99e05ce1b5bddaf9d21cb446eb0e606c5bebd1ebf02b473a22165f7b68b0bb0d1ac5a90f0311e493522cfab",
                &format!("PCR0: {zero}"),
            ),
            "all-zero PCR0",
        ),
        (
            {
                let start = base.find("  expected_pcrs:").unwrap();
                let end = base.find("\nenclaves:").unwrap();
                format!("{}  expected_pcrs: []\n{}", &base[..start], &base[end..])
            },
            "needs attestation.expected_pcrs",
        ),
        (
            base.replace(&dir.path().join("keyward.db").display().to_string(), "/nonexistent/keyward/keyward.db"),
            "missing database directory /nonexistent/keyward",
        ),
        (base.replace("address: vsock://16:5000", "address: tcp://10.0.0.5:5000"), "production refuses enclave 1 at tcp://"),
        (base.replace("listen: vsock://any:8000", "listen: tcp://0.0.0.0:8000"), "production refuses relay.listen tcp://"),
        (
            base.replace("  # public_key: <64 hex digits>", "  public_key: zz"),
            "link.public_key",
        ),
        (
            base.replace(
                "  # public_key: <64 hex digits>",
                "  public_key: d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            ),
            "published test key",
        ),
        (
            {
                let start = base.find("authorization:\n").unwrap();
                let end = base.find("\nattestation:").unwrap();
                format!("{}{}", &base[..start], &base[end..])
            },
            "production needs authorization.owners",
        ),
        (
            base.replace(
                "e959c55cacaa436995a826e953d2b97c0e7e1833cb7e6b0b0c05ae497162a7b3",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            ),
            "one is a published test key",
        ),
    ];
    for (text, needle) in cases {
        let err = format!("{:#}", Config::parse(&text).unwrap_err());
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
}

#[test]
fn production_accepts_unix_socket_links() {
    let dir = tempfile::tempdir().unwrap();
    let text = production(dir.path())
        .replace("address: vsock://16:5000", "address: unix:///run/keyward/enclave.sock")
        .replace("listen: vsock://any:8000", "listen: unix:///run/keyward/relay.sock");
    let config = Config::parse(&text).unwrap();
    assert_eq!(config.relay_listen.to_string(), "unix:///run/keyward/relay.sock");
}

#[test]
fn development_allows_what_production_refuses() {
    let text = shipped("development.yaml").replace("enable_attestation: true", "enable_attestation: false");
    assert!(!Config::parse(&text).unwrap().attestation);
}

#[test]
fn malformed_configs_are_refused_with_the_reason() {
    let dev = shipped("development.yaml");
    let cases: Vec<(String, &str)> = vec![
        (dev.replace("enabled: true", "enabled: false"), "kms.enabled is false"),
        (dev.replace("  - enclave_id: 1\n    address: tcp://127.0.0.1:5001", "  - enclave_id: 1\n    address: tcp://127.0.0.1:5001\n  - enclave_id: 1\n    address: tcp://127.0.0.1:5002"), "listed twice"),
        (dev.replace("address: tcp://127.0.0.1:5001", "address: 127.0.0.1:5001"), "missing scheme"),
        (dev.replace("database:", "surprise: 1\ndatabase:"), "unknown field `surprise`"),
        (dev.replace("expected_pcrs: []", "expected_pcrs:\n    - {PCR0: abc, PCR1: abc, PCR2: abc}"), "not hex"),
        (dev.replace("endpoint_url: http://127.0.0.1:4567", "endpoint_url: ftp://x"), "invalid KMS endpoint"),
    ];
    for (text, needle) in cases {
        let err = format!("{:#}", Config::parse(&text).unwrap_err());
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
}

#[test]
fn enclave_resources_default_and_are_validated() {
    let dev = shipped("development.yaml");
    let config = Config::parse(&dev).unwrap();
    assert_eq!((config.enclaves[0].cpu_count, config.enclaves[0].memory_mib), (2, 512));
    let sized = dev.replace(
        "address: tcp://127.0.0.1:5001",
        "address: tcp://127.0.0.1:5001\n    cpu_count: 4\n    memory_mib: 1024",
    );
    let config = Config::parse(&sized).unwrap();
    assert_eq!((config.enclaves[0].cpu_count, config.enclaves[0].memory_mib), (4, 1024));
    for (extra, needle) in [
        ("cpu_count: 0", "enclave 1: cpu_count must be at least 1"),
        ("memory_mib: 32", "enclave 1: memory_mib 32 is below the 64 MiB Nitro Enclaves minimum"),
        ("memory_mib: -1", "memory_mib"),
    ] {
        let text = dev.replace("address: tcp://127.0.0.1:5001", &format!("address: tcp://127.0.0.1:5001\n    {extra}"));
        let err = format!("{:#}", Config::parse(&text).unwrap_err());
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
}

/// The image is built on a build machine, before its PCRs exist and without the database.
#[test]
fn image_config_needs_production_kms_settings_but_not_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let base = shipped("production.yaml");
    let start = base.find("  expected_pcrs:").unwrap();
    let end = base.find("\nenclaves:").unwrap();
    let no_pcrs = format!("{}  expected_pcrs: []\n{}", &base[..start], &base[end..]);
    assert!(Config::load(&write("host.yaml", &no_pcrs)).is_err(), "the gateway itself still refuses it");
    let config = Config::load_for_image(&write("image.yaml", &no_pcrs)).unwrap();
    assert_eq!(config.kms_endpoint.url(), "https://kms.us-east-1.amazonaws.com");

    let plain = no_pcrs.replace("enable_attestation: true", "enable_attestation: false");
    let err = format!("{:#}", Config::load_for_image(&write("plain.yaml", &plain)).unwrap_err());
    assert!(err.contains("production refuses kms.enable_attestation: false"), "{err}");

    let err = format!("{:#}", Config::load_for_image(&write("dev.yaml", &shipped("development.yaml"))).unwrap_err());
    assert!(err.contains("the enclave image is a production image"), "{err}");
}

#[test]
fn progressdb_section_is_optional_and_checked() {
    let dev = shipped("development.yaml");
    let config = Config::parse(&dev).unwrap();
    let progressdb = config.progressdb.expect("the development config serves ProgressDB's API");
    assert_eq!(progressdb.listen, Some("127.0.0.1:6820".parse().unwrap()));
    assert_eq!(progressdb.key_prefix, "progressdb.");
    assert_eq!(progressdb.allowed_uids.len(), 1, "an empty list stands for the gateway's own user");
    let without = dev.replace("\nprogressdb:\n", "\nnot_progressdb:\n");
    assert!(
        Config::parse(&without).unwrap_err().to_string().contains("not_progressdb"),
        "unknown sections are refused"
    );
    let start = dev.find("\nprogressdb:\n").unwrap();
    assert!(Config::parse(&dev[..start]).unwrap().progressdb.is_none());
    let bad_prefix = dev.replace("key_prefix: progressdb.", "key_prefix: \"pdb/\"");
    let err = format!("{:#}", Config::parse(&bad_prefix).unwrap_err());
    assert!(err.contains("progressdb.key_prefix"), "{err}");
    let neither = format!("{}\nprogressdb:\n  key_prefix: p.\n", &dev[..start]);
    let err = format!("{:#}", Config::parse(&neither).unwrap_err());
    assert!(err.contains("give listen (TCP), unix_socket, or both"), "{err}");
}

#[test]
fn production_serves_progressdb_only_on_a_unix_socket_with_its_users_listed() {
    let dir = tempfile::tempdir().unwrap();
    let base = production(dir.path());
    let with = |section: &str| format!("{base}\nprogressdb:\n{section}");
    let principal = "  principal_key_file: /etc/keyward/progressdb-principal.key\n";
    let ok = Config::parse(&with(&format!(
        "  unix_socket: /run/keyward/progressdb-kms.sock\n  allowed_uids: [998]\n{principal}"
    )))
    .unwrap();
    assert_eq!(ok.progressdb.unwrap().allowed_uids, BTreeSet::from([998]));
    let tcp =
        with(&format!("  listen: 127.0.0.1:6820\n  unix_socket: /run/k.sock\n  allowed_uids: [998]\n{principal}"));
    let err = format!("{:#}", Config::parse(&tcp).unwrap_err());
    assert!(err.contains("production refuses progressdb.listen 127.0.0.1:6820"), "{err}");
    let unlisted = with(&format!("  unix_socket: /run/k.sock\n{principal}"));
    let err = format!("{:#}", Config::parse(&unlisted).unwrap_err());
    assert!(err.contains("production needs progressdb.allowed_uids"), "{err}");
}

#[test]
fn bitgo_section_is_checked_and_production_requires_mutual_tls() {
    let dev = Config::parse(&shipped("development.yaml")).unwrap();
    let bitgo = dev.bitgo.expect("the development config serves BitGo's key provider API");
    assert_eq!(bitgo.listen, "127.0.0.1:8091".parse().unwrap());
    assert!(bitgo.tls.is_none() && bitgo.reveal_prv_user && bitgo.reveal_prv_backup);
    assert_eq!(bitgo.key_prefix, "bitgo.");
    let bad_source =
        shipped("development.yaml").replace("reveal_prv_sources: [user, backup]", "reveal_prv_sources: [bitgo]");
    let err = format!("{:#}", Config::parse(&bad_source).unwrap_err());
    assert!(err.contains("\"bitgo\" is not a source (user or backup)"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let base = production(dir.path());
    let plain = format!("{base}\nbitgo:\n  listen: 10.0.0.5:8091\n  principal_key_file: /etc/k/bitgo.key\n");
    let err = format!("{:#}", Config::parse(&plain).unwrap_err());
    assert!(err.contains("production refuses bitgo without tls"), "{err}");
    let tls = format!(
        "{base}\nbitgo:\n  listen: 10.0.0.5:8091\n  tls:\n    cert_file: /etc/k/s.pem\n    key_file: /etc/k/s.key\n    client_ca_file: /etc/k/ca.pem\n"
    );
    // With owners (production has them) the front door must have a principal to sign as.
    let err = format!("{:#}", Config::parse(&tls).unwrap_err());
    assert!(err.contains("bitgo.principal_key_file is needed with authorization"), "{err}");
    let tls = format!("{tls}  principal_key_file: /etc/k/bitgo.key\n");
    let config = Config::parse(&tls).unwrap().bitgo.unwrap();
    assert!(!config.reveal_prv_user && !config.reveal_prv_backup, "no prv is revealed unless configured");
    // Without owners (development) a principal key is refused: nothing would be signed.
    let dev_with_key = shipped("development.yaml").replace(
        "reveal_prv_sources: [user, backup]",
        "reveal_prv_sources: [user, backup]\n  principal_key_file: /tmp/bitgo.key",
    );
    let err = format!("{:#}", Config::parse(&dev_with_key).unwrap_err());
    assert!(err.contains("bitgo.principal_key_file needs authorization"), "{err}");
}

#[test]
fn postgresql_is_chosen_by_url_and_production_wants_checked_tls_and_a_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("pg-password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let sqlite_line = format!("  path: {}", dir.path().join("keyward.db").display());
    let base = production(dir.path());
    let with = |database: &str| base.replace(&sqlite_line, database);
    let good = with(&format!(
        "  url: postgres://keyward@db.internal:5432/keyward?sslrootcert=/etc/rds.pem\n  password_file: {}\n  connections: 8",
        password.display()
    ));
    let config = Config::parse(&good).unwrap();
    match &config.database {
        database::Database::Postgres { settings, connections, .. } => {
            assert_eq!(
                (settings.to_string().as_str(), *connections),
                ("postgres://keyward@db.internal:5432/keyward", 8)
            );
            assert!(settings.has_password(), "the password comes from its file");
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{config:?}").contains("s3cret"), "the password is never shown");
    for (text, needle) in [
        (
            with("  url: postgres://keyward@db.internal/keyward?sslmode=disable"),
            "refuses database.url with sslmode=disable",
        ),
        (with("  url: postgres://keyward:pw@db.internal/keyward"), "refuses a password in database.url"),
        (
            with("  url: postgres://keyward@db.internal/keyward?sslmode=require"),
            "does not check the server's certificate",
        ),
        (with(&format!("{sqlite_line}\n  url: postgres://keyward@db.internal/keyward")), "not both"),
        (with("  url: postgres://keyward@db.internal/keyward\n  connections: 0"), "connections must be 1 to 500"),
        (with(&format!("{sqlite_line}\n  outage_grace_seconds: 3601")), "outage_grace_seconds must be at most 3600"),
    ] {
        let err = format!("{:#}", Config::parse(&text).unwrap_err());
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
    // Development may use plain TCP to a database on loopback.
    let dev = shipped("development.yaml")
        .replace("  path: .dev/data/keyward.db", "  url: postgres://keyward@127.0.0.1:5432/keyward?sslmode=disable");
    assert!(Config::parse(&dev).unwrap().database.sqlite_path().is_none());
}
