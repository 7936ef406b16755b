//! `gateway nitro-build-args` and `gateway nitro-run-args`: the enclave image's pinned settings
//! and the `nitro-cli run-enclave` resources, both read from the gateway's own configuration.
//! The image, the running enclave and the gateway then cannot disagree about the KMS key, the
//! ports or the CID, and nobody retypes them (`just build-eif` and `just run-enclave` call these).

use anyhow::{Context, bail};
use keyward_transport::{Address, LinkKey, LinkPublicKey, VSOCK_CID_ANY, VSOCK_CID_PARENT};

use crate::config::{Config, EnclaveTarget};

/// CIDs below this are reserved (0 hypervisor, 1 local, 2 host, 3 the parent instance).
const FIRST_ENCLAVE_CID: u32 = 4;

/// The name `nitro-cli` knows an enclave by (`describe-enclaves`, `terminate-enclave`).
pub fn enclave_name(enclave_id: u32) -> String {
    format!("keyward-enclave-{enclave_id}")
}

/// `KEYWARD_*=value` pairs for `docker build --build-arg`, which the Dockerfile turns into the
/// image's environment (read by the enclave's command line, see enclave/src/config.rs). They
/// are part of the measured image: changing any of them changes PCR0 and PCR2.
///
/// Attestation on and the Nitro NSM are fixed in the Dockerfile itself, not taken from here.
pub fn image_build_args(config: &Config) -> anyhow::Result<Vec<(&'static str, String)>> {
    let relay_port = match config.relay_listen {
        Address::Vsock { port, .. } => port,
        ref other => bail!(
            "relay.listen is {other}; an enclave image reaches the relay over vsock, so it must be vsock://any:PORT"
        ),
    };
    let mut ports = config.enclaves.iter().map(|e| match e.address {
        Address::Vsock { port, .. } => Ok((e.enclave_id.0, port)),
        ref other => {
            bail!("enclaves: enclave {} has address {other}; a Nitro Enclave needs vsock://CID:PORT", e.enclave_id)
        }
    });
    // One image serves every enclave of the file (one EIF, one set of PCRs in the key
    // policy), so they all listen on the same port and differ only in their CIDs.
    let (first_id, listen_port) = ports.next().context("enclaves: at least one enclave is required")??;
    for entry in ports {
        let (id, port) = entry?;
        if port != listen_port {
            bail!(
                "enclaves: enclave {first_id} listens on vsock port {listen_port} but enclave {id} on {port}; \
                 one enclave image serves them all, so give them the same port (and different CIDs)"
            );
        }
    }
    let mut args = vec![
        ("KEYWARD_GATEWAY_PUBLIC_KEY", gateway_public_key(config)?.to_string()),
        ("KEYWARD_LISTEN", Address::Vsock { cid: VSOCK_CID_ANY, port: listen_port }.to_string()),
        ("KEYWARD_KMS_RELAY", Address::Vsock { cid: VSOCK_CID_PARENT, port: relay_port }.to_string()),
        ("KEYWARD_KMS_ENDPOINT", config.kms_endpoint.url().to_owned()),
        ("KEYWARD_KMS_REGION", config.kms_region.clone()),
        ("KEYWARD_KMS_KEY_ID", config.kms_key_id.clone()),
    ];
    if let Some(owners) = &config.owners {
        args.push(("KEYWARD_OWNERS", owners.keys.join(",")));
        args.push(("KEYWARD_OWNER_QUORUM", owners.quorum.to_string()));
    }
    for (name, value) in &args {
        // One `NAME=value` per line is what the build script reads.
        if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("{name} would be {value:?}; it must be non-empty and without white space");
        }
    }
    Ok(args)
}

/// The gateway's link public key the enclave image pins: `link.public_key`, or derived from
/// `link.key_file` where that file is readable here.
pub fn gateway_public_key(config: &Config) -> anyhow::Result<LinkPublicKey> {
    if let Some(public) = config.link_public_key {
        return Ok(public);
    }
    let key = LinkKey::load(&config.link_key_file, false).with_context(|| {
        format!(
            "link.key_file {} (on a machine without the key file, set link.public_key to `gateway link-key public` of the parent instance)",
            config.link_key_file.display()
        )
    })?;
    Ok(key.public_key())
}

/// Arguments for `nitro-cli run-enclave` (besides `--eif-path` and `--debug-mode`, which the
/// caller decides) for one enclave of the configuration.
pub fn run_args(config: &Config, enclave_id: Option<u32>) -> anyhow::Result<Vec<String>> {
    let target = select_enclave(config, enclave_id)?;
    let cid = match target.address {
        Address::Vsock { cid, .. } => cid,
        ref other => bail!(
            "enclaves: enclave {} has address {other}; nitro-cli run-enclave needs vsock://CID:PORT (the CID is the enclave's)",
            target.enclave_id
        ),
    };
    if cid < FIRST_ENCLAVE_CID || cid == VSOCK_CID_ANY {
        bail!(
            "enclaves: enclave {} has vsock CID {}; an enclave's CID must be between {FIRST_ENCLAVE_CID} and {} \
             (0-3 are reserved, 3 is the parent instance)",
            target.enclave_id,
            if cid == VSOCK_CID_ANY { "any".to_owned() } else { cid.to_string() },
            VSOCK_CID_ANY - 1
        );
    }
    Ok(vec![
        "--enclave-cid".into(),
        cid.to_string(),
        "--cpu-count".into(),
        target.cpu_count.to_string(),
        "--memory".into(),
        target.memory_mib.to_string(),
        "--enclave-name".into(),
        enclave_name(target.enclave_id.0),
    ])
}

fn select_enclave(config: &Config, enclave_id: Option<u32>) -> anyhow::Result<&EnclaveTarget> {
    let ids = || config.enclaves.iter().map(|e| e.enclave_id.to_string()).collect::<Vec<_>>().join(", ");
    match (enclave_id, config.enclaves.as_slice()) {
        (Some(id), enclaves) => enclaves
            .iter()
            .find(|e| e.enclave_id.0 == id)
            .with_context(|| format!("enclave {id} is not in the config's enclaves (it lists {})", ids())),
        (None, [only]) => Ok(only),
        (None, _) => bail!("the config lists several enclaves ({}); choose one with --enclave-id", ids()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production(enclaves: &str, relay: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/production.yaml"))
            .unwrap()
            .replace("/var/lib/keyward/keyward.db", &dir.path().join("keyward.db").display().to_string())
            .replace("  listen: vsock://any:8000", &format!("  listen: {relay}"))
            .replace("  # public_key: <64 hex digits>", &format!("  public_key: {LINK_PUBLIC_KEY}"));
        let start = text.find("enclaves:\n").unwrap();
        // The image tooling runs away from the parent instance, without the host checks (which
        // would refuse the TCP addresses some of these tests feed it, before the tooling can).
        Config::parse_without_production_checks(&format!("{}enclaves:\n{enclaves}", &text[..start])).unwrap()
    }

    const ONE: &str = "  - enclave_id: 1\n    address: vsock://16:5000\n";
    /// A link public key for these tests (not a key anyone has the private half of here).
    const LINK_PUBLIC_KEY: &str = "6a1f0c2b3d4e5f60718293a4b5c6d7e8f9010a1b2c3d4e5f60718293a4b5c6d7";

    #[test]
    fn shipped_production_config_gives_the_pinned_image_settings() {
        let args = image_build_args(&production(ONE, "vsock://any:8000")).unwrap();
        assert_eq!(
            args,
            vec![
                ("KEYWARD_GATEWAY_PUBLIC_KEY", LINK_PUBLIC_KEY.to_owned()),
                ("KEYWARD_LISTEN", "vsock://any:5000".to_owned()),
                ("KEYWARD_KMS_RELAY", "vsock://3:8000".to_owned()),
                ("KEYWARD_KMS_ENDPOINT", "https://kms.us-east-1.amazonaws.com".to_owned()),
                ("KEYWARD_KMS_REGION", "us-east-1".to_owned()),
                (
                    "KEYWARD_KMS_KEY_ID",
                    "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".to_owned()
                ),
                (
                    "KEYWARD_OWNERS",
                    "ed25519:e959c55cacaa436995a826e953d2b97c0e7e1833cb7e6b0b0c05ae497162a7b3,\
                     ed25519:b54cbde638e33ad07c1dbcd56939067f08669a2ae8c9336ed221e8d8c3791010"
                        .to_owned()
                ),
                ("KEYWARD_OWNER_QUORUM", "2".to_owned()),
            ]
        );
    }

    #[test]
    fn image_ports_follow_the_config() {
        let config = production(
            "  - enclave_id: 1\n    address: vsock://16:6000\n  - enclave_id: 2\n    address: vsock://17:6000\n",
            "vsock://any:9000",
        );
        let args = image_build_args(&config).unwrap();
        assert_eq!(args[1], ("KEYWARD_LISTEN", "vsock://any:6000".to_owned()));
        assert_eq!(args[2], ("KEYWARD_KMS_RELAY", "vsock://3:9000".to_owned()));
    }

    #[test]
    fn image_settings_refuse_what_one_image_cannot_serve() {
        let different_ports = production(
            "  - enclave_id: 1\n    address: vsock://16:5000\n  - enclave_id: 2\n    address: vsock://17:5001\n",
            "vsock://any:8000",
        );
        let err = image_build_args(&different_ports).unwrap_err().to_string();
        assert!(err.contains("enclave 1 listens on vsock port 5000 but enclave 2 on 5001"), "{err}");

        let tcp_relay = production(ONE, "tcp://127.0.0.1:8001");
        let err = image_build_args(&tcp_relay).unwrap_err().to_string();
        assert!(err.contains("relay.listen is tcp://127.0.0.1:8001"), "{err}");

        let tcp_enclave = production("  - enclave_id: 1\n    address: tcp://127.0.0.1:5001\n", "vsock://any:8000");
        let err = image_build_args(&tcp_enclave).unwrap_err().to_string();
        assert!(err.contains("a Nitro Enclave needs vsock://CID:PORT"), "{err}");
    }

    #[test]
    fn run_args_default_to_two_cpus_and_512_mib() {
        let args = run_args(&production(ONE, "vsock://any:8000"), None).unwrap();
        assert_eq!(
            args,
            ["--enclave-cid", "16", "--cpu-count", "2", "--memory", "512", "--enclave-name", "keyward-enclave-1"]
        );
    }

    #[test]
    fn run_args_take_resources_from_the_chosen_enclave() {
        let config = production(
            "  - enclave_id: 1\n    address: vsock://16:5000\n  - enclave_id: 7\n    address: vsock://23:5000\n    cpu_count: 4\n    memory_mib: 2048\n",
            "vsock://any:8000",
        );
        let args = run_args(&config, Some(7)).unwrap();
        assert_eq!(
            args,
            ["--enclave-cid", "23", "--cpu-count", "4", "--memory", "2048", "--enclave-name", "keyward-enclave-7"]
        );
        let err = run_args(&config, None).unwrap_err().to_string();
        assert!(err.contains("several enclaves (1, 7); choose one with --enclave-id"), "{err}");
        let err = run_args(&config, Some(3)).unwrap_err().to_string();
        assert!(err.contains("enclave 3 is not in the config's enclaves (it lists 1, 7)"), "{err}");
    }

    #[test]
    fn run_args_refuse_reserved_cids_and_non_vsock_addresses() {
        for (address, needle) in [
            ("vsock://3:5000", "has vsock CID 3"),
            ("vsock://any:5000", "has vsock CID any"),
            ("tcp://127.0.0.1:5001", "nitro-cli run-enclave needs vsock://CID:PORT"),
        ] {
            let config = production(&format!("  - enclave_id: 1\n    address: {address}\n"), "vsock://any:8000");
            let err = run_args(&config, None).unwrap_err().to_string();
            assert!(err.contains(needle), "{address}: {err}");
        }
    }
}
