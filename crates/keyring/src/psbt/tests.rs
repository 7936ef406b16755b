//! A BitGo-style 2-of-3 P2WSH spend (paths m/0/0/20/i), signed here and checked with k256
//! against the BIP 143 sighash.

use std::str::FromStr;

use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
    absolute::LockTime,
    bip32::{DerivationPath, Fingerprint, Xpub},
    blockdata::script::Builder,
    opcodes::all::{OP_CHECKMULTISIG, OP_PUSHNUM_2, OP_PUSHNUM_3},
    sighash::{EcdsaSighashType, SighashCache},
    transaction::Version,
};

use super::*;

fn material(seed: u8) -> KeyMaterial {
    KeyMaterial::from_secret(KeyType::Bip32, &[seed; 32]).unwrap()
}

/// The xpub of a bip32 key, from its public key (compressed key, chain code).
fn xpub_of(material: &KeyMaterial) -> Xpub {
    let secp = Secp256k1::new();
    let master = Xpriv::new_master(NetworkKind::Main, material.secret_bytes().as_ref()).unwrap();
    let xpub = Xpub::from_priv(&secp, &master);
    assert_eq!(xpub.public_key.serialize().as_slice(), &material.public_key()[..33]);
    assert_eq!(xpub.chain_code.to_bytes().as_slice(), &material.public_key()[33..]);
    xpub
}

/// An unsigned PSBT spending one 2-of-3 P2WSH output of the three keys at `path`, each
/// input's derivations naming the three masters.
fn wallet_psbt(keys: &[Xpub; 3], path: &str, inputs: usize) -> Psbt {
    let secp = Secp256k1::new();
    let path = DerivationPath::from_str(path).unwrap();
    let children: Vec<_> = keys.iter().map(|k| k.derive_pub(&secp, &path).unwrap().public_key).collect();
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
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: (0..inputs)
            .map(|i| TxIn {
                previous_output: OutPoint { txid: Txid::from_str(&format!("{:064x}", i + 1)).unwrap(), vout: 0 },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            })
            .collect(),
        output: vec![TxOut {
            value: Amount::from_sat(90_000),
            script_pubkey: ScriptBuf::new_p2wsh(&witness_script.wscript_hash()),
        }],
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
    for input in &mut psbt.inputs {
        input.witness_utxo = Some(TxOut {
            value: Amount::from_sat(100_000),
            script_pubkey: ScriptBuf::new_p2wsh(&witness_script.wscript_hash()),
        });
        input.witness_script = Some(witness_script.clone());
        input.sighash_type = Some(EcdsaSighashType::All.into());
        for (key, child) in keys.iter().zip(&children) {
            input.bip32_derivation.insert(*child, (key.fingerprint(), path.clone()));
        }
    }
    psbt
}

#[test]
fn each_input_naming_the_key_gets_a_signature_by_its_child_over_the_bip143_sighash() {
    let ours = material(1);
    let keys = [xpub_of(&ours), xpub_of(&material(2)), xpub_of(&material(3))];
    let psbt = wallet_psbt(&keys, "m/0/0/20/7", 2);
    let signed = sign_psbt(&ours, &psbt.serialize()).unwrap();
    assert_eq!(signed.inputs, vec![0, 1]);
    let signed = Psbt::deserialize(&signed.psbt).unwrap();
    let secp = Secp256k1::new();
    let child = keys[0].derive_pub(&secp, &DerivationPath::from_str("m/0/0/20/7").unwrap()).unwrap().public_key;
    let mut cache = SighashCache::new(&signed.unsigned_tx);
    for (index, input) in signed.inputs.iter().enumerate() {
        assert_eq!(input.partial_sigs.len(), 1, "only this key signed input {index}");
        let (key, signature) = input.partial_sigs.iter().next().unwrap();
        assert_eq!(key.inner, child, "the child at the PSBT's path signed");
        assert_eq!(signature.sighash_type, EcdsaSighashType::All);
        assert!(input.final_script_witness.is_none(), "not finalized: BitGo co-signs after");
        let sighash = cache
            .p2wsh_signature_hash(
                index,
                input.witness_script.as_ref().unwrap(),
                Amount::from_sat(100_000),
                EcdsaSighashType::All,
            )
            .unwrap();
        use k256::ecdsa::signature::hazmat::PrehashVerifier;
        let verifying = k256::ecdsa::VerifyingKey::from_sec1_bytes(&child.serialize()).unwrap();
        let der = signature.signature.serialize_der();
        let parsed = k256::ecdsa::Signature::from_der(&der).unwrap();
        verifying.verify_prehash(sighash.as_ref(), &parsed).expect("k256 verifies the partial signature");
    }
}

#[test]
fn a_psbt_of_other_keys_another_type_or_garbage_is_refused() {
    let ours = material(1);
    let others = [xpub_of(&material(2)), xpub_of(&material(3)), xpub_of(&material(4))];
    let theirs = wallet_psbt(&others, "m/0/0/0/1", 1);
    let err = sign_psbt(&ours, &theirs.serialize()).unwrap_err();
    assert!(err.to_string().contains("no input of the PSBT names this key"), "{err}");
    assert!(matches!(sign_psbt(&ours, b"70736274ff"), Err(KeyringError::BadInput(_))));
    let secp256k1 = KeyMaterial::from_secret(KeyType::Secp256k1, &[1; 32]).unwrap();
    assert!(matches!(sign_psbt(&secp256k1, &theirs.serialize()), Err(KeyringError::UnsupportedOperation(_))));
}

#[test]
fn a_derivation_that_names_another_public_key_is_refused() {
    let ours = material(1);
    let keys = [xpub_of(&ours), xpub_of(&material(2)), xpub_of(&material(3))];
    let mut psbt = wallet_psbt(&keys, "m/0/0/20/7", 1);
    // Our fingerprint and path, but filed under someone else's public key.
    let input = &mut psbt.inputs[0];
    let (_, source) = input
        .bip32_derivation
        .iter()
        .find(|(_, (f, _))| *f == keys[0].fingerprint())
        .map(|(k, s)| (*k, s.clone()))
        .unwrap();
    input.bip32_derivation.retain(|_, (f, _)| *f != keys[0].fingerprint());
    let stranger = keys[1].derive_pub(&Secp256k1::new(), &DerivationPath::from_str("m/9").unwrap()).unwrap().public_key;
    input.bip32_derivation.insert(stranger, (Fingerprint::from(source.0.to_bytes()), source.1));
    let err = sign_psbt(&ours, &psbt.serialize()).unwrap_err();
    assert!(err.to_string().contains("the PSBT is inconsistent"), "{err}");
}
