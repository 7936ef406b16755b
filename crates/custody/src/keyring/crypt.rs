//! The keyring's operations besides signing: encryption with associated data, rewrapping,
//! data keys, MACs and random bytes. Plaintext and data keys exist only here and in the
//! zeroized buffers that carry them.

use keyward_keyring::{
    KeyringError, STREAM_SEGMENT_LEN, StreamHeader, decrypt, encrypt, mac, new_data_key, open_secret, open_segment,
    seal_secret, seal_segment, verify_mac,
};
use keyward_proto::{
    CryptOp, CryptOutput, ErrorCode, KeyCrypt, MAX_CRYPT_PAYLOAD_LEN, MAX_RANDOM_LEN, RandomRequest, RandomSource,
    SecretBytes, WrappedKey,
};

use super::{Keyring, Reply, error, from_keyring};
use crate::DataKeySource;

impl<D: DataKeySource> Keyring<D> {
    /// One operation with the key version `request.row` holds.
    pub fn crypt(&self, request: &KeyCrypt) -> Reply<CryptOutput> {
        let row = &request.row;
        let material = self.material(row)?;
        let name = &row.identity.name;
        match &request.op {
            CryptOp::Encrypt { plaintext, associated_data } => {
                check_len("plaintext", plaintext.expose().len())?;
                Ok(CryptOutput::Ciphertext(self.encrypt_with(row, plaintext.expose(), associated_data)?))
            }
            CryptOp::Decrypt { ciphertext, associated_data } => {
                check_version(row, ciphertext)?;
                let plaintext = decrypt(&material, name, ciphertext, associated_data).map_err(from_keyring)?;
                Ok(CryptOutput::Plaintext(SecretBytes(plaintext)))
            }
            CryptOp::Rewrap { to, ciphertext, associated_data } => {
                if to.identity.name != *name {
                    return Err(error(
                        ErrorCode::BadRequest,
                        format!("a rewrap stays within one key: {} is not {}", to.identity.name, name),
                    ));
                }
                check_version(row, ciphertext)?;
                let plaintext = decrypt(&material, name, ciphertext, associated_data).map_err(from_keyring)?;
                Ok(CryptOutput::Ciphertext(self.encrypt_with(to, &plaintext, associated_data)?))
            }
            CryptOp::DataKey { spec, plaintext, associated_data } => {
                let (secret, public_key) =
                    new_data_key(*spec, |out: &mut [u8]| self.random.fill(out)).map_err(from_keyring)?;
                let wrapped = self.encrypt_with(row, &secret, associated_data)?;
                Ok(CryptOutput::DataKey { wrapped, plaintext: plaintext.then(|| SecretBytes(secret)), public_key })
            }
            CryptOp::Mac { message } => {
                check_len("message", message.len())?;
                Ok(CryptOutput::Mac(mac(&material, message).map_err(from_keyring)?.to_vec()))
            }
            CryptOp::VerifyMac { message, mac } => {
                check_len("message", message.len())?;
                Ok(CryptOutput::Valid(verify_mac(&material, message, mac).map_err(from_keyring)?))
            }
            // A signed stream begins as an unsigned one; the authorizer adds its ticket.
            CryptOp::BeginStream | CryptOp::BeginSeal { .. } => {
                if row.identity.key_type != keyward_proto::KeyType::Aes256Gcm {
                    return Err(from_keyring(KeyringError::UnsupportedOperation(format!(
                        "a {} key does not encrypt",
                        row.identity.key_type
                    ))));
                }
                let mut salt = [0u8; 32];
                self.fill(&mut salt)?;
                let header = StreamHeader { version: row.identity.version, segment_len: STREAM_SEGMENT_LEN, salt };
                Ok(CryptOutput::StreamHeader(header.encode().to_vec()))
            }
            // The header must be one of this key version's streams; the authorizer issues the
            // ticket.
            CryptOp::BeginOpen { header, .. } => {
                stream_header(row, header)?;
                Ok(CryptOutput::Valid(true))
            }
            CryptOp::SealSecret { secret, associated_data } => {
                check_len("secret", secret.expose().len())?;
                let mut nonce = [0u8; 12];
                self.fill(&mut nonce)?;
                let version = row.identity.version;
                let sealed = seal_secret(&material, name, version, secret.expose(), associated_data, nonce)
                    .map_err(from_keyring)?;
                Ok(CryptOutput::Ciphertext(sealed))
            }
            CryptOp::SignPsbt { psbt } => {
                check_len("PSBT", psbt.len())?;
                let signed = keyward_keyring::sign_psbt(&material, psbt).map_err(from_keyring)?;
                Ok(CryptOutput::SignedPsbt { psbt: signed.psbt, inputs: signed.inputs })
            }
            CryptOp::DeriveSharedSecret { peer_public_key } => {
                let secret = keyward_keyring::derive_shared_secret(&material, peer_public_key).map_err(from_keyring)?;
                Ok(CryptOutput::Plaintext(SecretBytes(secret)))
            }
            CryptOp::JoseUnwrap { epk, encrypted_key, apu, apv } => {
                check_len("party info", apu.len() + apv.len())?;
                let cek =
                    keyward_keyring::jose_unwrap(&material, epk, encrypted_key, apu, apv).map_err(from_keyring)?;
                Ok(CryptOutput::Plaintext(SecretBytes(cek)))
            }
            CryptOp::OpenSecret { sealed, associated_data } => {
                check_version(row, sealed)?;
                let secret = open_secret(&material, name, sealed, associated_data).map_err(from_keyring)?;
                Ok(CryptOutput::Plaintext(SecretBytes(secret)))
            }
            CryptOp::SealSegment { header, associated_data, index, last, plaintext, .. } => {
                let header = stream_header(row, header)?;
                let sealed = seal_segment(&material, name, &header, associated_data, *index, *last, plaintext.expose())
                    .map_err(from_keyring)?;
                Ok(CryptOutput::Ciphertext(sealed))
            }
            CryptOp::OpenSegment { header, associated_data, index, last, sealed, .. } => {
                let header = stream_header(row, header)?;
                let opened = open_segment(&material, name, &header, associated_data, *index, *last, sealed)
                    .map_err(from_keyring)?;
                Ok(CryptOutput::Plaintext(SecretBytes(opened)))
            }
        }
    }

    /// Random bytes from the NSM or, with credentials, from KMS `GenerateRandom`.
    pub async fn random(&self, request: &RandomRequest) -> Reply<SecretBytes> {
        let len = usize::from(request.bytes);
        if !(1..=MAX_RANDOM_LEN).contains(&len) {
            return Err(error(ErrorCode::BadRequest, format!("ask for 1 to {MAX_RANDOM_LEN} random bytes, not {len}")));
        }
        match (request.source, &request.credentials) {
            (RandomSource::Nsm, _) => {
                let mut out = SecretBytes::new(vec![0u8; len]);
                self.fill(&mut out.0)?;
                Ok(out)
            }
            (RandomSource::Kms, Some(credentials)) => {
                Ok(SecretBytes(self.data_keys.random(credentials, request.bytes).await?))
            }
            (RandomSource::Kms, None) => {
                Err(error(ErrorCode::BadRequest, "KMS random bytes need credentials for the KMS call"))
            }
        }
    }

    fn encrypt_with(&self, row: &WrappedKey, plaintext: &[u8], associated_data: &[u8]) -> Reply<Vec<u8>> {
        let material = self.material(row)?;
        let mut nonce = [0u8; 12];
        self.fill(&mut nonce)?;
        encrypt(&material, &row.identity.name, row.identity.version, plaintext, associated_data, nonce)
            .map_err(from_keyring)
    }
}

fn check_len(what: &str, len: usize) -> Reply<()> {
    if len > MAX_CRYPT_PAYLOAD_LEN {
        return Err(from_keyring(KeyringError::BadInput(format!(
            "the {what} is {len} bytes; at most {MAX_CRYPT_PAYLOAD_LEN} in one request (stream larger data)"
        ))));
    }
    Ok(())
}

/// A stream's header, which must name the row's version.
fn stream_header(row: &WrappedKey, header: &[u8]) -> Reply<StreamHeader> {
    let parsed = StreamHeader::parse(header).map_err(|e| from_keyring(KeyringError::Ciphertext(e)))?;
    if parsed.version != row.identity.version {
        return Err(error(
            ErrorCode::BadRequest,
            format!(
                "the stream is of version {} of key {}, but version {} was sent",
                parsed.version.get(),
                row.identity.name,
                row.identity.version.get()
            ),
        ));
    }
    Ok(parsed)
}

/// The row must be the version the ciphertext names (the gateway looks it up by the header).
fn check_version(row: &WrappedKey, ciphertext: &[u8]) -> Reply<()> {
    let named =
        keyward_keyring::ciphertext_version(ciphertext).map_err(|e| from_keyring(KeyringError::Ciphertext(e)))?;
    if named != row.identity.version {
        return Err(error(
            ErrorCode::BadRequest,
            format!(
                "the ciphertext names version {} of key {}, but version {} was sent",
                named.get(),
                row.identity.name,
                row.identity.version.get()
            ),
        ));
    }
    Ok(())
}
