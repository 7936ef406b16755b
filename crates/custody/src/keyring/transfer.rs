//! Import and export: key material that crosses the host sealed with HPKE, never in the clear.
//! Imports are sealed to the enclave's transfer key, which is new at every start and is the
//! `public_key` of its attestation documents. Exports are sealed to a key the caller names,
//! and are allowed only for rows whose AAD-bound flags say exportable.

use keyward_keyring::{KeyMaterial, Sealed, export_info, import_info};
use keyward_proto::{ErrorCode, ErrorReply, KeyExport, KeyImport, KeyVersion, Origin, TransferSealed, WrappedKey};
use keyward_telemetry::event;
use zeroize::Zeroizing;

use super::{Keyring, error, from_keyring};
use crate::DataKeySource;

type Reply<T> = Result<T, ErrorReply>;

impl<D: DataKeySource> Keyring<D> {
    /// The public half of the transfer key (32 bytes, X25519).
    pub fn transfer_public_key(&self) -> [u8; 32] {
        self.transfer.public_key()
    }

    /// Opens imported material and wraps it under the root as `request.identity` (version 1,
    /// origin imported). The name, type and flags are bound into the sealed material, so the
    /// host cannot file it under another name or make it exportable.
    pub fn import(&self, request: &KeyImport) -> Reply<WrappedKey> {
        let identity = &request.identity;
        if identity.version != KeyVersion::FIRST || identity.flags.origin != Origin::Imported {
            return Err(error(ErrorCode::BadRequest, "an import makes version 1 of a key whose origin is imported"));
        }
        let (root, root_id) = self.ready_root()?;
        if request.transfer_public_key.as_slice() != self.transfer.public_key() {
            return Err(error(
                ErrorCode::UnknownTransferKey,
                "the key was sealed to a transfer key this enclave does not hold; fetch a new attestation document and seal again",
            ));
        }
        let sealed = Sealed {
            encapsulated_key: request.sealed.encapsulated_key.clone(),
            ciphertext: request.sealed.ciphertext.clone(),
        };
        let secret = self
            .transfer
            .open(&import_info(&identity.name, identity.key_type, identity.flags), &sealed)
            .map_err(from_keyring)?;
        let material = KeyMaterial::from_secret(identity.key_type, &secret).map_err(from_keyring)?;
        let mut nonce = [0u8; 12];
        self.fill(&mut nonce)?;
        let row = keyward_keyring::wrap(&root, &root_id, identity, &material, nonce).map_err(from_keyring)?;
        tracing::info!(event = event::KEY_IMPORTED, key = %identity.name, key_type = %identity.key_type, "imported a key");
        Ok(row)
    }

    /// Seals the key version `request.row` holds to the caller's public key, if the row (its
    /// AAD, checked on unwrap) says the key is exportable.
    pub fn export(&self, request: &KeyExport) -> Reply<TransferSealed> {
        let identity = &request.row.identity;
        let material = self.material(&request.row)?;
        if !identity.flags.exportable {
            return Err(error(
                ErrorCode::KeyNotExportable,
                format!("key {} was not created exportable; it never leaves the enclave", identity.name),
            ));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        self.fill(seed.as_mut())?;
        let secret = material.secret_bytes();
        let sealed = keyward_keyring::seal(&request.recipient_public_key, &export_info(identity), &secret, seed)
            .map_err(from_keyring)?;
        tracing::info!(event = event::KEY_EXPORTED, key = %identity.name, version = identity.version.get(), "exported a key, sealed to the caller's public key");
        Ok(TransferSealed { encapsulated_key: sealed.encapsulated_key, ciphertext: sealed.ciphertext })
    }
}
