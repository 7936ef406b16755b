//! Signing a PSBT (BIP 174) with a `bip32` key, as BitGo's signer does with its wallet keys:
//! every input whose BIP32 derivations name this key's master fingerprint gets a partial
//! signature by the child key along that path (the sighash the input asks for, else
//! `SIGHASH_ALL`); inputs of other keys are left alone; the PSBT is not finalized. Parsing,
//! sighashes and derivation are rust-bitcoin's.

use bitcoin::{
    NetworkKind,
    bip32::Xpriv,
    psbt::{Psbt, SigningKeys},
    secp256k1::Secp256k1,
};
use keyward_proto::KeyType;

use crate::{KeyMaterial, KeyringError};

/// A signed PSBT and the inputs this key signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPsbt {
    /// The PSBT with the new partial signatures, serialized.
    pub psbt: Vec<u8>,
    /// Indexes of the inputs signed.
    pub inputs: Vec<u32>,
}

fn bad(message: impl Into<String>) -> KeyringError {
    KeyringError::BadInput(message.into())
}

/// Signs every input of `psbt` that names a child of `material` (a `bip32` key).
pub fn sign_psbt(material: &KeyMaterial, psbt: &[u8]) -> Result<SignedPsbt, KeyringError> {
    if material.key_type() != KeyType::Bip32 {
        return Err(KeyringError::UnsupportedOperation(format!("a {} key does not sign PSBTs", material.key_type())));
    }
    let mut psbt = Psbt::deserialize(psbt).map_err(|e| bad(format!("not a PSBT (BIP 174): {e}")))?;
    let secp = Secp256k1::new();
    let seed = material.secret_bytes();
    let mut master =
        Xpriv::new_master(NetworkKind::Main, seed.as_ref()).map_err(|_| KeyringError::InvalidSecret(KeyType::Bip32))?;
    let fingerprint = master.fingerprint(&secp);
    let signed = psbt.sign(&master, &secp);
    master.private_key.non_secure_erase();
    let used = match signed {
        Ok(used) => used,
        Err((_, errors)) => {
            let (input, error) = errors.iter().next().map(|(i, e)| (*i, e.to_string())).unwrap_or_default();
            return Err(bad(format!("input {input} names this key but cannot be signed: {error}")));
        }
    };
    let mut inputs = Vec::new();
    for (index, keys) in &used {
        let SigningKeys::Ecdsa(keys) = keys else {
            return Err(bad(format!(
                "input {index} is a taproot spend; keyward signs ECDSA (segwit v0 and legacy) inputs"
            )));
        };
        if keys.is_empty() {
            continue;
        }
        // rust-bitcoin signs with the key the path derives; the PSBT must have named that key.
        let declared = &psbt.inputs[*index].bip32_derivation;
        if let Some(key) = keys.iter().find(|k| !declared.contains_key(&k.inner)) {
            return Err(bad(format!(
                "input {index} names a derivation path of this key whose public key is not {key}: the PSBT is inconsistent"
            )));
        }
        inputs.push(u32::try_from(*index).map_err(|_| bad("too many inputs"))?);
    }
    if inputs.is_empty() {
        return Err(bad(format!(
            "no input of the PSBT names this key (master fingerprint {fingerprint}) in its BIP32 derivations"
        )));
    }
    Ok(SignedPsbt { psbt: psbt.serialize(), inputs })
}

#[cfg(test)]
mod tests;
