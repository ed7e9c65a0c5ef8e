//! Secrets at rest: the key file outside the database, and the sealing of the secrets the server
//! must be able to read back (agent HMAC secrets today; webhook secrets and an LDAP bind password
//! later use the same key).
//!
//! Passwords and tokens are hashed, never sealed: the server only compares them. An agent's HMAC
//! secret cannot be hashed, because verifying a signature needs the secret itself, so it is sealed
//! with AES-256-GCM under a key kept in `secrets.key_file` (default `<data_dir>/secret.key`,
//! mode 0600). A copy or dump of the database then reveals no secret; every instance that shares
//! a database needs the same key file; a backup of the database never holds the key file.
//!
//! A sealed value is `v1:` + base64url(nonce ‖ ciphertext ‖ tag). The associated data names what
//! the value is (e.g. `agent_key:ak_0123`), so a sealed secret copied into another row does not
//! open there.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::file_modes;

/// The prefix of a sealed value (and its format version).
const SEALED_PREFIX: &str = "v1:";
/// Key length (AES-256).
const KEY_BYTES: usize = 32;
/// GCM nonce length; random per value (a server seals a few thousand values in its life, far
/// below the 2^32 messages a random 96-bit nonce allows per key).
const NONCE_BYTES: usize = 12;

/// Why the secrets key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file cannot be read or written.
    #[error("secrets key file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file does not hold a key.
    #[error("secrets key file {path} does not hold a key ({reason}); it holds 64 hex digits")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A sealed value does not open with this key: the wrong key file, or the value was altered.
    #[error(
        "{what} cannot be decrypted with the secrets key file: is it the same file on every instance that shares \
         this database?"
    )]
    WrongKey {
        /// What the value is.
        what: String,
    },
}

/// The key that seals secrets at rest, loaded once at start.
pub struct SecretKey {
    cipher: Aes256Gcm,
    /// Where it came from, for messages.
    path: PathBuf,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key itself never reaches a log line.
        f.debug_struct("SecretKey").field("path", &self.path).finish_non_exhaustive()
    }
}

/// What [`SecretKey::load_or_create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFileOrigin {
    /// The file existed.
    Existing,
    /// The file was created now.
    Created,
}

impl SecretKey {
    /// A key from 32 bytes (tests and [`SecretKey::load_or_create`]).
    pub fn from_bytes(bytes: &[u8; KEY_BYTES], path: PathBuf) -> SecretKey {
        // A 32-byte slice is always a valid AES-256 key.
        let cipher = Aes256Gcm::new_from_slice(bytes).unwrap_or_else(|_| unreachable!("32 bytes is an AES-256 key"));
        SecretKey { cipher, path }
    }

    /// Reads the key file, or creates it (0600, in a 0700 directory when the directory is new)
    /// when `may_create` and it does not exist. The caller passes `may_create = false` when the
    /// database already holds sealed values: a new key could not open them, and starting with one
    /// would only hide the mistake.
    pub fn load_or_create(path: &Path, may_create: bool) -> Result<(SecretKey, KeyFileOrigin), SecretError> {
        let file_err = |source| SecretError::File { path: path.to_owned(), source };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                file_modes::warn_if_wider(path, 0o600);
                Ok((Self::parse(path, &text)?, KeyFileOrigin::Existing))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => {
                let bytes: [u8; KEY_BYTES] = rand::random();
                let content = format!(
                    "# cmdb secrets key: seals agent secrets in the database. Every instance that shares the\n\
                     # database needs this same file. Keep it out of database backups; without it the sealed\n\
                     # secrets cannot be read (agent keys must then be rotated).\n{}\n",
                    hex::encode(bytes)
                );
                file_modes::write_private(path, &content).map_err(file_err)?;
                tracing::info!(path = %path.display(), "created the secrets key file");
                Ok((Self::from_bytes(&bytes, path.to_owned()), KeyFileOrigin::Created))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SecretError::File {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not found, but the database holds secrets sealed with a key: copy the key file from \
                     another instance (or from where it was kept) to this path",
                ),
            }),
            Err(e) => Err(file_err(e)),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<SecretKey, SecretError> {
        let bad = |reason: &str| SecretError::BadKeyFile { path: path.to_owned(), reason: reason.to_owned() };
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .ok_or_else(|| bad("it is empty"))?;
        let bytes = hex::decode(line).map_err(|_| bad("not hex"))?;
        let bytes: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| bad("not 32 bytes"))?;
        Ok(Self::from_bytes(&bytes, path.to_owned()))
    }

    /// Seals `plaintext`; `what` names the value (bound into the seal as associated data).
    pub fn seal(&self, what: &str, plaintext: &str) -> String {
        let nonce_bytes: [u8; NONCE_BYTES] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        // Encryption with a valid key and in-memory buffers does not fail (the only error is a
        // message longer than GCM allows, 64 GiB).
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext.as_bytes(), aad: what.as_bytes() })
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a value sealed by [`SecretKey::seal`] with the same `what`.
    pub fn open(&self, what: &str, stored: &str) -> Result<String, SecretError> {
        let wrong = || SecretError::WrongKey { what: what.to_owned() };
        let encoded = stored.strip_prefix(SEALED_PREFIX).ok_or_else(wrong)?;
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| wrong())?;
        if bytes.len() < NONCE_BYTES {
            return Err(wrong());
        }
        let (nonce_bytes, sealed) = bytes.split_at(NONCE_BYTES);
        let nonce_bytes: [u8; NONCE_BYTES] = nonce_bytes.try_into().map_err(|_| wrong())?;
        let plain = self
            .cipher
            .decrypt(&Nonce::from(nonce_bytes), Payload { msg: sealed, aad: what.as_bytes() })
            .map_err(|_| wrong())?;
        String::from_utf8(plain).map_err(|_| wrong())
    }

    /// True when `stored` is a sealed value (rather than a secret stored in the clear by an older
    /// version, which the server seals at start).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }

    /// The key file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What an agent key's sealed secret is bound to.
pub fn agent_key_label(key_id: &str) -> String {
    format!("agent_key:{key_id}")
}

/// What a webhook endpoint's sealed secret is bound to (a sealed secret copied to another
/// endpoint's row does not open).
pub fn webhook_secret_label(endpoint_id: i64) -> String {
    format!("webhook:{endpoint_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_bytes(&[7; 32], PathBuf::from("test"))
    }

    #[test]
    fn sealed_values_open_only_with_the_key_and_their_label() {
        let key = key();
        let sealed = key.seal("agent_key:ak_1", "s3cret");
        assert!(SecretKey::is_sealed(&sealed));
        assert!(!sealed.contains("s3cret"));
        assert_ne!(sealed, key.seal("agent_key:ak_1", "s3cret"), "a fresh nonce each time");
        assert_eq!(key.open("agent_key:ak_1", &sealed).expect("opens"), "s3cret");
        // Moved to another row, or opened with another key, or altered: refused.
        assert!(key.open("agent_key:ak_2", &sealed).is_err());
        assert!(SecretKey::from_bytes(&[8; 32], PathBuf::from("x")).open("agent_key:ak_1", &sealed).is_err());
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(key.open("agent_key:ak_1", &String::from_utf8(altered).expect("ascii")).is_err());
        assert!(key.open("agent_key:ak_1", "plain").is_err());
        assert!(key.open("agent_key:ak_1", "v1:").is_err());
    }

    #[test]
    fn key_files_are_created_private_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sub").join("secret.key");
        assert!(SecretKey::load_or_create(&path, false).is_err(), "not created when sealed values exist");
        let (created, origin) = SecretKey::load_or_create(&path, true).expect("create");
        assert_eq!(origin, KeyFileOrigin::Created);
        let sealed = created.seal("x", "y");
        let (loaded, origin) = SecretKey::load_or_create(&path, true).expect("load");
        assert_eq!(origin, KeyFileOrigin::Existing);
        assert_eq!(loaded.open("x", &sealed).expect("same key"), "y");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&path, "# only a comment\n").expect("write");
        assert!(matches!(SecretKey::load_or_create(&path, true), Err(SecretError::BadKeyFile { .. })));
        std::fs::write(&path, "abcd\n").expect("write");
        assert!(matches!(SecretKey::load_or_create(&path, true), Err(SecretError::BadKeyFile { .. })));
    }
}
