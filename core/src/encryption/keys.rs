//! Keys: the `encryption:` options, key-encryption keys from files or the environment, and
//! the [`KeyProvider`] seam a cloud KMS can plug into.

use crate::error::{Error, Result};
use async_trait::async_trait;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use zeroize::{Zeroize, Zeroizing};

/// Bytes of a key (AES-256).
pub const KEY_LEN: usize = 32;

/// Label hashed in front of a key to make its id (so the id is no plain hash of the key).
const KEY_ID_LABEL: &[u8] = b"ferry key id v1\0";
/// Label in front of the context when a data key is wrapped (domain separation).
const WRAP_LABEL: &[u8] = b"ferry data key v1\0";

/// A data key: encrypts exactly one object, then is dropped.
pub struct DataKey([u8; KEY_LEN]);

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> Result<DataKey> {
        let mut k = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut k)
            .map_err(|_| Error::internal("the system's random number generator failed"))?;
        Ok(DataKey(k))
    }

    /// A data key from its bytes (a provider's unwrapped key); `None` unless 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<DataKey> {
        <[u8; KEY_LEN]>::try_from(bytes).ok().map(DataKey)
    }

    /// The key's bytes (for providers that wrap them).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The AES-256-GCM key.
    pub(super) fn aead_key(&self) -> Result<LessSafeKey> {
        aead_key(&self.0)
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        // The bytes do not outlive the key (ring's expanded key schedule is its own).
        self.0.zeroize();
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| Error::internal("an AES-256 key must be 32 bytes"))
}

/// Wraps and unwraps data keys with key-encryption keys (KEKs). The built-in
/// [`StaticKeys`] holds KEKs read from files or the environment; a cloud KMS (AWS KMS, GCP
/// KMS, Vault transit) can implement this trait: key ids and wrapped keys are opaque to the
/// envelope, which stores them as they are.
#[async_trait]
pub trait KeyProvider: Send + Sync + std::fmt::Debug {
    /// Id of the key new data keys are wrapped with (at most 255 ASCII bytes).
    fn current_key_id(&self) -> &str;

    /// Whether data keys wrapped under `key_id` can be unwrapped.
    fn has_key(&self, key_id: &str) -> bool;

    /// The keys for messages, e.g. `key file /etc/ferry/new.key (id 3f2a…)`; never the keys.
    fn describe(&self) -> String;

    /// Wraps `key` with the current key; `context` is authenticated with it (the object's
    /// name), so a wrapped key only unwraps for the object it was made for.
    async fn wrap(&self, key: &DataKey, context: &[u8]) -> Result<Vec<u8>>;

    /// Unwraps a data key wrapped under `key_id` for `context`.
    async fn unwrap(&self, key_id: &str, wrapped: &[u8], context: &[u8]) -> Result<DataKey>;
}

/// A key-encryption key and where it came from.
struct Kek {
    id: String,
    source: String,
    key: LessSafeKey,
}

/// Key-encryption keys held in memory, read from key files or environment variables. The
/// first encrypts; all of them decrypt (rotation: `[new, old]`).
pub struct StaticKeys {
    keys: Vec<Kek>,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The id of a key: 8 bytes of SHA-256 over a label and the key, in hex.
pub fn key_id_of(key: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(KEY_ID_LABEL);
    ctx.update(key);
    let digest = ctx.finish();
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decodes a key's text (one line of base64 of 32 bytes); `what` names it in errors.
fn parse_key_text(text: &str, what: &str) -> Result<[u8; KEY_LEN]> {
    let trimmed = text.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .map(Zeroizing::new)
        .map_err(|_| {
            Error::config(format!(
                "{what}: not a Ferry key: expected one line of base64 (32 random bytes), as `ferry keygen FILE` writes"
            ))
        })?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        Error::config(format!(
            "{what}: a key is 32 bytes, this one is {} bytes; create one with `ferry keygen FILE`",
            bytes.len()
        ))
    })
}

impl StaticKeys {
    /// Keys from their bytes, each with a description of its source (`key file …`). The
    /// first encrypts.
    pub fn from_keys(mut keys: Vec<(String, [u8; KEY_LEN])>) -> Result<StaticKeys> {
        let built = Self::build(&keys);
        for (_, k) in &mut keys {
            k.zeroize();
        }
        built
    }

    fn build(keys: &[(String, [u8; KEY_LEN])]) -> Result<StaticKeys> {
        if keys.is_empty() {
            return Err(Error::config("encryption: no key given"));
        }
        let mut out: Vec<Kek> = Vec::with_capacity(keys.len());
        for (source, bytes) in keys {
            let id = key_id_of(bytes);
            if let Some(same) = out.iter().find(|k| k.id == id) {
                return Err(Error::config(format!(
                    "encryption: {source} holds the same key as {} (id {id}); give each key once",
                    same.source
                )));
            }
            out.push(Kek {
                id,
                source: source.clone(),
                key: aead_key(bytes)?,
            });
        }
        Ok(StaticKeys { keys: out })
    }

    /// Reads a key file (one line of base64); a missing, unreadable or malformed file is a
    /// config error naming it.
    pub fn read_key_file(path: &Path) -> Result<[u8; KEY_LEN]> {
        let what = format!("encryption key file '{}'", path.display());
        let text = std::fs::read_to_string(path).map(Zeroizing::new).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (create one with `ferry keygen FILE`, or give the file the backup was written with)"
            } else {
                ""
            };
            Error::config(format!("{what}: cannot read it: {e}{hint}"))
        })?;
        warn_if_readable_by_others(path);
        parse_key_text(&text, &what)
    }

    /// Reads a key from an environment variable (one line of base64).
    pub fn read_key_env(var: &str) -> Result<[u8; KEY_LEN]> {
        let what = format!("encryption key variable {var}");
        let text = std::env::var(var).map(Zeroizing::new).map_err(|_| {
            Error::config(format!(
                "{what} is not set (or not UTF-8): set it to a key as `ferry keygen FILE` writes"
            ))
        })?;
        parse_key_text(&text, &what)
    }

    fn find(&self, key_id: &str) -> Option<&Kek> {
        self.keys.iter().find(|k| k.id == key_id)
    }
}

/// Logs a warning when a key file can be read by users other than its owner.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(file = %path.display(), mode = format!("{mode:o}"), "the encryption key file can be read by other users: `chmod 600` it");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The additional authenticated data of a wrapped key: a label and the object's context.
fn wrap_aad(context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_LABEL.len() + context.len());
    aad.extend_from_slice(WRAP_LABEL);
    aad.extend_from_slice(context);
    aad
}

#[async_trait]
impl KeyProvider for StaticKeys {
    fn current_key_id(&self) -> &str {
        self.keys.first().map_or("", |k| k.id.as_str())
    }

    fn has_key(&self, key_id: &str) -> bool {
        self.find(key_id).is_some()
    }

    fn describe(&self) -> String {
        self.keys
            .iter()
            .map(|k| format!("{} (id {})", k.source, k.id))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `nonce (12 random bytes) ‖ AES-256-GCM(KEK, data key) ‖ tag`, the context
    /// authenticated.
    async fn wrap(&self, key: &DataKey, context: &[u8]) -> Result<Vec<u8>> {
        let kek = self
            .keys
            .first()
            .ok_or_else(|| Error::internal("encryption: no key to wrap with"))?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::internal("the system's random number generator failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + KEY_LEN + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(key.as_bytes());
        let tag = kek
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(context)),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| Error::internal("wrapping a data key failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    async fn unwrap(&self, key_id: &str, wrapped: &[u8], context: &[u8]) -> Result<DataKey> {
        let kek = self.find(key_id).ok_or_else(|| {
            Error::config(format!(
                "encrypted with key id {key_id}, which is none of the given keys ({})",
                self.describe()
            ))
        })?;
        if wrapped.len() != NONCE_LEN + KEY_LEN + AES_256_GCM.tag_len() {
            return Err(Error::Corrupt(format!(
                "the wrapped data key is {} bytes, not {} (damaged header)",
                wrapped.len(),
                NONCE_LEN + KEY_LEN + AES_256_GCM.tag_len()
            )));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&wrapped[..NONCE_LEN]);
        let mut inner = wrapped[NONCE_LEN..].to_vec();
        let plain = kek
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(context)),
                &mut inner,
            )
            .map_err(|_| {
                Error::Corrupt(format!(
                    "the data key does not unwrap with {} (id {key_id}): the header was changed, or the object was moved from another name",
                    kek.source
                ))
            })?;
        let key = DataKey::from_slice(plain)
            .ok_or_else(|| Error::Corrupt("the unwrapped data key is not 32 bytes".into()));
        inner.zeroize();
        key
    }
}

/// The `encryption:` block of the storage sink and the backup source: where the
/// key-encryption keys are. Exactly one of the four fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// A key file (one line of base64, as `ferry keygen FILE` writes).
    #[serde(default)]
    pub key_file: Option<String>,
    /// Key files, newest first: the first encrypts new objects, every one decrypts (key
    /// rotation: `[new.key, old.key]`).
    #[serde(default)]
    pub key_files: Option<Vec<String>>,
    /// An environment variable holding a key (the text of a key file).
    #[serde(default)]
    pub key_env: Option<String>,
    /// Environment variables holding keys, newest first (as `key_files`).
    #[serde(default)]
    pub key_envs: Option<Vec<String>>,
}

/// Where one key comes from.
enum KeySource<'a> {
    File(&'a str),
    Env(&'a str),
}

impl EncryptionConfig {
    /// The block for key files, newest first (the CLI's `--encryption-key-file`).
    pub fn from_files(files: &[String]) -> EncryptionConfig {
        EncryptionConfig {
            key_files: Some(files.to_vec()),
            ..Default::default()
        }
    }

    fn sources(&self) -> Result<Vec<KeySource<'_>>> {
        let set = [
            self.key_file.is_some(),
            self.key_files.is_some(),
            self.key_env.is_some(),
            self.key_envs.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(Error::config(
                "encryption: give exactly one of key_file, key_files, key_env, key_envs",
            ));
        }
        let mut out = Vec::new();
        if let Some(f) = &self.key_file {
            out.push(KeySource::File(f));
        }
        for f in self.key_files.iter().flatten() {
            out.push(KeySource::File(f));
        }
        if let Some(v) = &self.key_env {
            out.push(KeySource::Env(v));
        }
        for v in self.key_envs.iter().flatten() {
            out.push(KeySource::Env(v));
        }
        if out.is_empty() {
            return Err(Error::config(
                "encryption: key_files/key_envs is empty: give at least one key",
            ));
        }
        if out.iter().any(|s| match s {
            KeySource::File(f) | KeySource::Env(f) => f.trim().is_empty(),
        }) {
            return Err(Error::config(
                "encryption: a key file or variable name is empty",
            ));
        }
        Ok(out)
    }

    /// Checks the block's shape without reading any key (`ferry validate` runs where the
    /// keys may not be).
    pub fn validate(&self) -> Result<()> {
        self.sources().map(|_| ())
    }

    /// Reads the keys; the first encrypts. A missing, unreadable or malformed key is a
    /// config error naming the file or variable.
    pub fn load(&self) -> Result<Arc<dyn KeyProvider>> {
        let mut keys = Vec::new();
        for s in self.sources()? {
            keys.push(match s {
                KeySource::File(f) => (
                    format!("key file {f}"),
                    StaticKeys::read_key_file(Path::new(f))?,
                ),
                KeySource::Env(v) => (format!("key variable {v}"), StaticKeys::read_key_env(v)?),
            });
        }
        Ok(Arc::new(StaticKeys::from_keys(keys)?))
    }
}

/// Writes a new random key to `path` (one line of base64, mode 0600 on Unix) and returns
/// its id. Refuses an existing file: overwriting a key would make what it encrypted
/// unreadable.
pub fn write_new_key_file(path: &Path) -> Result<String> {
    use std::io::Write;
    let key = DataKey::generate()?;
    let text = format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::refused(format!(
                "{} already exists: Ferry never overwrites a key (what it encrypted could not be read any more); choose another name",
                path.display()
            ))
        } else {
            Error::config(format!("cannot create {}: {e}", path.display()))
        }
    })?;
    if let Err(e) = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
    {
        // Never leave a half-written key behind.
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(Error::internal(format!(
            "writing {}: {e} (the file was removed)",
            path.display()
        )));
    }
    Ok(key_id_of(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u8) -> StaticKeys {
        StaticKeys::from_keys(vec![(format!("key {n}"), [n; KEY_LEN])]).unwrap()
    }

    #[tokio::test]
    async fn wrapped_keys_unwrap_only_with_their_key_and_context() {
        let a = keys(1);
        let b = keys(2);
        let dk = DataKey::generate().unwrap();
        let w = a.wrap(&dk, b"topics/t/0/x.log").await.unwrap();
        let back = a
            .unwrap(a.current_key_id(), &w, b"topics/t/0/x.log")
            .await
            .unwrap();
        assert_eq!(back.as_bytes(), dk.as_bytes());
        // Another object's name: refused.
        assert!(a
            .unwrap(a.current_key_id(), &w, b"topics/t/0/y.log")
            .await
            .is_err());
        // A key that is not given: a config error naming the key id.
        let e = b
            .unwrap(a.current_key_id(), &w, b"topics/t/0/x.log")
            .await
            .unwrap_err();
        assert!(e.to_string().contains(a.current_key_id()), "{e}");
        // A flipped byte in the wrapped key.
        let mut bad = w.clone();
        bad[20] ^= 1;
        assert!(a
            .unwrap(a.current_key_id(), &bad, b"topics/t/0/x.log")
            .await
            .is_err());
    }

    #[test]
    fn key_ids_differ_and_do_not_show_the_key() {
        let a = key_id_of(&[1; KEY_LEN]);
        assert_eq!(a.len(), 16);
        assert_ne!(a, key_id_of(&[2; KEY_LEN]));
        assert_eq!(a, key_id_of(&[1; KEY_LEN]));
    }

    #[test]
    fn config_needs_exactly_one_source() {
        assert!(EncryptionConfig::default().validate().is_err());
        let two = EncryptionConfig {
            key_file: Some("a".into()),
            key_env: Some("B".into()),
            ..Default::default()
        };
        assert!(two.validate().is_err());
        assert!(EncryptionConfig::from_files(&[]).validate().is_err());
        assert!(EncryptionConfig::from_files(&["a".into()])
            .validate()
            .is_ok());
    }

    #[test]
    fn key_files_are_written_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let id = write_new_key_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let e = write_new_key_file(&path).unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        let cfg = EncryptionConfig {
            key_file: Some(path.to_string_lossy().into_owned()),
            ..Default::default()
        };
        assert_eq!(cfg.load().unwrap().current_key_id(), id);
        let missing = EncryptionConfig::from_files(&["/nonexistent/ferry.key".into()]);
        let e = missing.load().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ferry.key"), "{e}");
        std::fs::write(&path, "not a key\n").unwrap();
        let e = cfg.load().unwrap_err().to_string();
        assert!(e.contains("not a Ferry key"), "{e}");
    }

    #[test]
    fn the_same_key_twice_is_refused() {
        let e = StaticKeys::from_keys(vec![("a".into(), [1; KEY_LEN]), ("b".into(), [1; KEY_LEN])])
            .unwrap_err();
        assert!(e.to_string().contains("same key"), "{e}");
    }
}
