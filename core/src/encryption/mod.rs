//! Encryption at rest, on the client: AES-256-GCM (through `ring`, the crypto library the
//! TLS stack builds anyway) with a fresh data key per object, wrapped by a key-encryption
//! key (KEK) that never leaves the client.
//!
//! ```yaml
//! encryption:
//!   key_file: /etc/ferry/backup.key       # or key_env: FERRY_BACKUP_KEY
//!   # key_files: [new.key, old.key]       # rotation: the first encrypts, all decrypt
//! ```
//!
//! - [`EncryptionConfig`] is the `encryption:` block of the storage sink and the backup
//!   source; [`EncryptionConfig::load`] reads the keys (a missing or malformed key is a
//!   config error naming the file or variable).
//! - [`KeyProvider`] wraps and unwraps data keys. [`StaticKeys`] holds KEKs read from files
//!   or the environment; a cloud KMS can implement the trait later (its key ids and wrapped
//!   keys are opaque to the envelope).
//! - [`envelope`] is the on-storage format: a header naming the key id and holding the
//!   wrapped data key, then the object in authenticated chunks that can be streamed (and
//!   whose order and end are authenticated, so reordering and truncation are detected).
//!
//! A key is 32 random bytes, stored as one line of base64 (what `ferry keygen` writes, mode
//! 0600). Its id is the first 8 bytes of SHA-256 over a label and the key, in hex: it
//! names the key in manifests and messages without revealing it.

pub mod envelope;
mod keys;

pub use envelope::{open_bytes, seal_bytes, EnvelopeHeader, Opener, Sealer};
pub use keys::{
    key_id_of, write_new_key_file, DataKey, EncryptionConfig, KeyProvider, StaticKeys, KEY_LEN,
};
