//! BitGo Advanced Wallets' key provider API served by keyward, over mutual TLS with a test CA,
//! checked as the wallet manager calls it: every route's documented fields, the documented
//! errors (`{message}` with 400, 403, 404, 409; keyward's code in `X-Keyward-Error-Code`),
//! prv sealed in the enclave and revealed only for the configured source, keys generated in
//! the enclave answered as BIP32 xpubs and signing Ethereum-style hashes (checked with k256),
//! data keys as comma-separated bytes, clients without the CA's certificate refused, and no
//! prv or data key in any log or the database.

use base64::Engine as _;
use keyward_e2e::{Stack, StackOptions, TestCa, TlsAnswer, assert_secret_absent, free_port, tls_call};
use serde_json::{Value, json};

struct Door {
    port: u16,
    server_ca: String,
    client: keyward_e2e::Issued,
}

impl Door {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> TlsAnswer {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        tls_call(self.port, &self.server_ca, Some(&self.client), method, path, body.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn post(&self, path: &str, body: Value) -> TlsAnswer {
        self.call("POST", path, Some(body)).await
    }
}

fn json_of(answer: &TlsAnswer) -> Value {
    serde_json::from_slice(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&answer.body)))
}

fn fields(answer: &TlsAnswer) -> Vec<String> {
    let mut keys: Vec<String> = json_of(answer).as_object().expect("an object").keys().cloned().collect();
    keys.sort();
    keys
}

/// Status, code and BitGo's `{message}` of an error.
fn error(answer: &TlsAnswer) -> (u16, String, String) {
    let body = json_of(answer);
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "errors are {{message}} only: {body}");
    (answer.status, answer.code.clone().unwrap_or_default(), body["message"].as_str().expect("message").to_owned())
}

fn status_code(answer: &TlsAnswer) -> (u16, String) {
    let (status, code, _) = error(answer);
    (status, code)
}

fn comma_bytes(text: &str) -> Vec<u8> {
    text.split(',').map(|v| v.parse::<u8>().expect("a decimal byte")).collect()
}

/// The compressed public key inside an xpub, checked against BIP32's serialization.
pub(crate) fn xpub_key(xpub: &str) -> Vec<u8> {
    let raw = bs58_decode(xpub);
    assert_eq!(raw.len(), 82, "78 bytes and a 4-byte checksum");
    let check = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &raw[..78]);
    let check = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, check.as_ref());
    assert_eq!(&raw[78..], &check.as_ref()[..4], "base58check checksum");
    assert_eq!(&raw[..4], &[0x04, 0x88, 0xb2, 0x1e], "mainnet xpub version");
    assert_eq!(&raw[4..13], &[0; 9], "depth 0, no parent, child 0: a master key");
    raw[45..78].to_vec()
}

/// Base58 (Bitcoin's alphabet), decoded here by hand so that the check does not share the
/// gateway's encoder.
fn bs58_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut out: Vec<u8> = Vec::new();
    for c in text.bytes() {
        let mut carry = ALPHABET.iter().position(|&a| a == c).expect("a base58 character") as u32;
        for byte in out.iter_mut().rev() {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            out.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = text.bytes().take_while(|&c| c == b'1').count();
    [vec![0; zeros], out].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitgo_key_provider_api_conforms_over_mutual_tls() {
    let certs = tempfile::tempdir().expect("tempdir");
    let server_ca = TestCa::new("keyward test server CA");
    server_ca.write_server_files(certs.path(), "bitgo");
    let clients_ca = TestCa::new("wallet managers' CA");
    std::fs::write(certs.path().join("clients-ca.pem"), &clients_ca.pem).unwrap();
    let port = free_port();
    let dir = certs.path().display();
    let options = StackOptions {
        extra_config: format!(
            "bitgo:\n  listen: 127.0.0.1:{port}\n  tls:\n    cert_file: {dir}/bitgo-server.pem\n    key_file: {dir}/bitgo-server.key\n    client_ca_file: {dir}/clients-ca.pem\n  reveal_prv_sources: [user]\n"
        ),
        ..StackOptions::default()
    };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let door = Door { port, server_ca: server_ca.pem.clone(), client: clients_ca.client() };

    // Mutual TLS: no client certificate, or one from another CA, gets no answer.
    let anonymous =
        tls_call(port, &server_ca.pem, None, "POST", "/generateDataKey", b"{\"keyType\":\"AES-256\"}").await;
    assert!(anonymous.is_err(), "a client without a certificate was answered: {anonymous:?}");
    let rogue = TestCa::new("rogue CA").client();
    let refused =
        tls_call(port, &server_ca.pem, Some(&rogue), "POST", "/generateDataKey", b"{\"keyType\":\"AES-256\"}").await;
    assert!(refused.is_err(), "a client of another CA was answered: {refused:?}");

    // POST /key: stored once per (pub, source); the answer has exactly BitGo's fields.
    let prv = "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi";
    let stored = json!({"prv": prv, "pub": "xpub-user-1", "coin": "tbtc", "source": "user", "type": "independent", "seed": "ignored"});
    let answer = door.post("/key", stored.clone()).await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(fields(&answer), ["coin", "pub", "source", "type"]);
    assert_eq!(
        json_of(&answer),
        json!({"pub": "xpub-user-1", "coin": "tbtc", "source": "user", "type": "independent"})
    );
    let (status, code, message) = error(&door.post("/key", stored.clone()).await);
    assert_eq!((status, code.as_str()), (409, "key_exists"));
    assert_eq!(message, "Duplicated Key for source: user and pub: xpub-user-1");
    let mut backup = stored.clone();
    backup["source"] = json!("backup");
    backup["prv"] = json!("a TSS share, opaque to the provider");
    assert_eq!(door.post("/key", backup).await.status, 200, "the same pub for another source");
    for (field, value, code) in [
        ("prv", json!(""), "invalid_field"),
        ("pub", Value::Null, "invalid_field"),
        ("source", json!("bitgo"), "invalid_source"),
        ("type", json!("multisig"), "invalid_type"),
    ] {
        let mut bad = stored.clone();
        bad[field] = value;
        bad["pub"] = if field == "pub" { Value::Null } else { json!("xpub-bad") };
        let (status, got, message) = error(&door.post("/key", bad).await);
        assert_eq!((status, got.as_str()), (400, code), "{field}: {message}");
        assert!(message.starts_with("Invalid data provided from client: "), "{message}");
    }
    assert_eq!(status_code(&door.call("POST", "/key", None).await), (400, "invalid_json".into()));

    // GET /key/{pub}: the prv, opened in the enclave, for the configured source only.
    let fetched = door.call("GET", "/key/xpub-user-1?source=user", None).await;
    assert_eq!(fields(&fetched), ["prv", "pub", "source", "type"]);
    assert_eq!(json_of(&fetched), json!({"prv": prv, "pub": "xpub-user-1", "source": "user", "type": "independent"}));
    let hidden = door.call("GET", "/key/xpub-user-1?source=backup", None).await;
    assert_eq!(status_code(&hidden), (403, "prv_not_revealed".into()));
    let (status, code, message) = error(&door.call("GET", "/key/xpub-none?source=user", None).await);
    assert_eq!((status, code.as_str()), (404, "key_not_found"));
    assert_eq!(message, "Entry with pub xpub-none and source user not found in database");
    assert_eq!(status_code(&door.call("GET", "/key/xpub-user-1", None).await), (400, "invalid_field".into()));

    // POST /key/generate: a BIP32 key born in the enclave, answered as its xpub.
    let generated = door.post("/key/generate", json!({"coin": "hteth", "source": "user", "type": "independent"})).await;
    assert_eq!(generated.status, 200, "{}", String::from_utf8_lossy(&generated.body));
    assert_eq!(fields(&generated), ["coin", "pub", "source", "type"]);
    let xpub = json_of(&generated)["pub"].as_str().unwrap().to_owned();
    assert!(xpub.starts_with("xpub"), "{xpub}");
    let master = xpub_key(&xpub);
    let tss = door.post("/key/generate", json!({"coin": "hteth", "source": "user", "type": "tss"})).await;
    assert_eq!(status_code(&tss), (400, "unsupported_type".into()));
    let never = door.call("GET", &format!("/key/{xpub}?source=user"), None).await;
    assert_eq!(status_code(&never), (403, "key_never_leaves".into()), "a generated key never leaves the enclave");

    // POST /sign: an operation hash signed as it is, 0x{r}{s}{v}, by the xpub's key.
    let hash = [0x4du8; 32];
    let sign = |public: &str, payload: String, algorithm: &str| json!({"pub": public, "source": "user", "signablePayload": payload, "algorithm": algorithm});
    let signed = door.post("/sign", sign(&xpub, format!("0x{}", hex::encode(hash)), "ecdsa")).await;
    assert_eq!(fields(&signed), ["signature"]);
    let signature = json_of(&signed)["signature"].as_str().unwrap().to_owned();
    assert!(signature.starts_with("0x") && signature.len() == 132, "{signature}");
    let bytes = hex::decode(&signature[2..]).unwrap();
    let v = bytes[64];
    assert!(v == 27 || v == 28, "v = {v}");
    let rs = k256::ecdsa::Signature::from_slice(&bytes[..64]).unwrap();
    assert!(rs.normalize_s().is_none(), "low-S");
    let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(
        &hash,
        &rs,
        k256::ecdsa::RecoveryId::from_byte(v - 27).unwrap(),
    )
    .unwrap();
    assert_eq!(recovered.to_sec1_bytes().as_ref(), master.as_slice(), "the xpub's key signed the hash itself");
    let stored_key = door.post("/sign", sign("xpub-user-1", format!("0x{}", hex::encode(hash)), "ecdsa")).await;
    assert_eq!(status_code(&stored_key), (400, "not_a_generated_key".into()));
    assert_eq!(
        status_code(&door.post("/sign", sign(&xpub, "0x1234".into(), "ecdsa")).await),
        (400, "invalid_payload".into())
    );
    assert_eq!(
        status_code(&door.post("/sign", sign(&xpub, format!("0x{}", hex::encode(hash)), "eddsa")).await),
        (400, "unsupported_algorithm".into())
    );
    assert_eq!(
        status_code(&door.post("/sign", sign("xpub-none", "0x00".into(), "ecdsa")).await),
        (404, "key_not_found".into())
    );

    // A PSBT (hex): every input naming the key is signed by its child at the input's path.
    let psbt = psbt::wallet_psbt(&xpub, "m/0/0/20/3");
    let signed = door.post("/sign", sign(&xpub, hex::encode(psbt.serialize()), "ecdsa")).await;
    assert_eq!(signed.status, 200, "{}", String::from_utf8_lossy(&signed.body));
    let signed_hex = json_of(&signed)["signature"].as_str().unwrap().to_owned();
    assert!(signed_hex.starts_with("70736274ff"), "the PSBT comes back, in hex");
    psbt::assert_signed_by_child(&hex::decode(signed_hex).unwrap(), &xpub, "m/0/0/20/3");
    let foreign = psbt::wallet_psbt(&psbt::random_xpub(), "m/0/0/0/1");
    let refused = door.post("/sign", sign(&xpub, hex::encode(foreign.serialize()), "ecdsa")).await;
    assert_eq!(status_code(&refused), (400, "bad_request".into()), "a PSBT that does not name the key");
    assert_eq!(
        status_code(&door.post("/sign", sign(&xpub, "deadbeef".into(), "ecdsa")).await),
        (400, "invalid_payload".into())
    );

    // Data keys: comma-separated decimal bytes; decryptDataKey gives back the same string.
    let mut plaintexts = Vec::new();
    for (key_type, len) in [("AES-256", Some(32)), ("RSA-2048", None), ("ECDSA-P256", None)] {
        let made = door.post("/generateDataKey", json!({"keyType": key_type})).await;
        assert_eq!(fields(&made), ["encryptedKey", "plaintextKey"], "{key_type}");
        let made = json_of(&made);
        let plaintext = made["plaintextKey"].as_str().unwrap().to_owned();
        if let Some(len) = len {
            assert_eq!(comma_bytes(&plaintext).len(), len);
        } else {
            assert_eq!(comma_bytes(&plaintext)[0], 0x30, "{key_type}: a PKCS#8 DER private key");
        }
        let opened = door.post("/decryptDataKey", json!({"encryptedKey": made["encryptedKey"]})).await;
        assert_eq!(fields(&opened), ["plaintextKey"]);
        assert_eq!(json_of(&opened)["plaintextKey"], plaintext, "{key_type}: byte for byte");
        let mut tampered = comma_bytes(made["encryptedKey"].as_str().unwrap());
        *tampered.last_mut().unwrap() ^= 1;
        let tampered = tampered.iter().map(u8::to_string).collect::<Vec<_>>().join(",");
        let refused = door.post("/decryptDataKey", json!({"encryptedKey": tampered})).await;
        assert_eq!(status_code(&refused), (400, "decryption_failed".into()));
        plaintexts.push(comma_bytes(&plaintext));
    }
    let (status, code, message) = error(&door.post("/generateDataKey", json!({"keyType": "DES"})).await);
    assert_eq!((status, code.as_str()), (400, "invalid_key_type"));
    assert_eq!(message, "Invalid data provided from client: keyType must be one of [AES-256, RSA-2048, ECDSA-P256]");
    let garbage = door.post("/decryptDataKey", json!({"encryptedKey": "1,2,300"})).await;
    assert_eq!(status_code(&garbage), (400, "invalid_encrypted_key".into()));
    assert_eq!(status_code(&door.call("GET", "/sign", None).await), (405, "method_not_allowed".into()));
    assert_eq!(status_code(&door.call("GET", "/nothing", None).await), (404, "not_found".into()));

    // The keyring holds them: sealed secrets, a BIP32 key, the data-key key; none exportable.
    let keys = stack.client.list_keys(None, Some(100)).await.expect("list keys").keys;
    let types: Vec<(&str, &str, bool)> = keys
        .iter()
        .filter(|k| k.name.starts_with("bitgo."))
        .map(|k| (k.name.as_str(), k.key_type.as_str(), k.exportable))
        .collect();
    assert_eq!(types.iter().filter(|t| t.1 == "secret").count(), 2, "{types:?}");
    assert_eq!(types.iter().filter(|t| t.1 == "bip32").count(), 1, "{types:?}");
    assert!(types.contains(&("bitgo.data-keys", "aes256-gcm", false)), "{types:?}");
    assert!(types.iter().all(|t| !t.2), "{types:?}");

    // No prv or data key in the database files or any log.
    let scanned = stack.log_and_database_bytes();
    for (path, bytes) in &scanned {
        let label = path.display().to_string();
        assert_secret_absent(&label, bytes, "a stored prv", prv.as_bytes());
        assert_secret_absent(&label, bytes, "a TSS share", b"a TSS share, opaque to the provider");
        for plaintext in &plaintexts {
            assert_secret_absent(&label, bytes, "a data key", &plaintext[..32]);
            let text = base64::engine::general_purpose::STANDARD.encode(&plaintext[..24]);
            assert_secret_absent(&label, bytes, "a data key in base64", text.as_bytes());
        }
    }
}

/// The PSBTs BitGo's wallet manager sends: a 2-of-3 P2WSH spend of the wallet's three keys
/// (BitGo's chain 20), built with rust-bitcoin from the xpub keyward answered.
pub(crate) mod psbt {
    use std::str::FromStr;

    use bitcoin::{
        Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
        absolute::LockTime,
        bip32::{DerivationPath, Xpriv, Xpub},
        blockdata::script::Builder,
        opcodes::all::{OP_CHECKMULTISIG, OP_PUSHNUM_2, OP_PUSHNUM_3},
        psbt::Psbt,
        secp256k1::Secp256k1,
        sighash::{EcdsaSighashType, SighashCache},
        transaction::Version,
    };

    const VALUE: u64 = 250_000;

    pub fn random_xpub() -> String {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        let master = Xpriv::new_master(bitcoin::NetworkKind::Main, &seed).unwrap();
        Xpub::from_priv(&Secp256k1::new(), &master).to_string()
    }

    fn child(xpub: &str, path: &str) -> bitcoin::secp256k1::PublicKey {
        let xpub = Xpub::from_str(xpub).expect("rust-bitcoin parses keyward's xpub");
        xpub.derive_pub(&Secp256k1::new(), &DerivationPath::from_str(path).unwrap()).unwrap().public_key
    }

    /// One input of the wallet of `user` and two other keys, at `path`.
    pub fn wallet_psbt(user: &str, path: &str) -> Psbt {
        let keys = [user.to_owned(), random_xpub(), random_xpub()];
        let children: Vec<_> = keys.iter().map(|k| child(k, path)).collect();
        let mut sorted = children.clone();
        sorted.sort_by_key(|k| k.serialize());
        let witness_script = Builder::new()
            .push_opcode(OP_PUSHNUM_2)
            .push_slice(sorted[0].serialize())
            .push_slice(sorted[1].serialize())
            .push_slice(sorted[2].serialize())
            .push_opcode(OP_PUSHNUM_3)
            .push_opcode(OP_CHECKMULTISIG)
            .into_script();
        let spk = ScriptBuf::new_p2wsh(&witness_script.wscript_hash());
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint { txid: Txid::from_str(&"ab".repeat(32)).unwrap(), vout: 1 },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut { value: Amount::from_sat(VALUE - 1_000), script_pubkey: spk.clone() }],
        };
        let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
        let input = &mut psbt.inputs[0];
        input.witness_utxo = Some(TxOut { value: Amount::from_sat(VALUE), script_pubkey: spk });
        input.witness_script = Some(witness_script);
        input.sighash_type = Some(EcdsaSighashType::All.into());
        let path = DerivationPath::from_str(path).unwrap();
        for (key, child) in keys.iter().zip(children) {
            input.bip32_derivation.insert(child, (Xpub::from_str(key).unwrap().fingerprint(), path.clone()));
        }
        psbt
    }

    /// The one partial signature is the child's, over the BIP 143 sighash (checked with k256),
    /// and the PSBT is not finalized.
    pub fn assert_signed_by_child(signed: &[u8], xpub: &str, path: &str) {
        use k256::ecdsa::signature::hazmat::PrehashVerifier;
        let psbt = Psbt::deserialize(signed).expect("a PSBT");
        let input = &psbt.inputs[0];
        assert_eq!(input.partial_sigs.len(), 1);
        let (key, signature) = input.partial_sigs.iter().next().unwrap();
        assert_eq!(key.inner, child(xpub, path), "signed by the child at the PSBT's path");
        assert!(input.final_script_witness.is_none(), "left for BitGo to co-sign");
        let sighash = SighashCache::new(&psbt.unsigned_tx)
            .p2wsh_signature_hash(
                0,
                input.witness_script.as_ref().unwrap(),
                Amount::from_sat(VALUE),
                EcdsaSighashType::All,
            )
            .unwrap();
        let verifying = k256::ecdsa::VerifyingKey::from_sec1_bytes(&key.inner.serialize()).unwrap();
        let parsed = k256::ecdsa::Signature::from_der(&signature.signature.serialize_der()).unwrap();
        verifying.verify_prehash(sighash.as_ref(), &parsed).expect("k256 verifies keyward's partial signature");
    }
}
