//! `ferry keygen FILE`: writes a new random encryption key.

use std::path::PathBuf;

/// Write a new random key for encrypted backups (32 random bytes as one line of base64,
/// file mode 0600). Never overwrites: an existing FILE is refused.
///
/// Give it to `ferry backup`, `restore`, `verify`, `copy` and `decrypt` with
/// --encryption-key-file FILE, or
/// to the storage sink and backup source as `encryption: {key_file: FILE}`. Keep a copy
/// somewhere safe and apart from the backups: without the key they cannot be read.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the key (must not exist).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Writes the key and prints its id.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let id = ferry_core::encryption::write_new_key_file(&args.file)?;
    crate::outln!(
        "wrote a new key to {} (key id {id}, mode 0600); keep a copy apart from the backups: without it they cannot be read",
        args.file.display()
    );
    Ok(())
}

/// The `--encryption-key-file` flag of the commands that read or write backups.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeyArgs {
    /// Key of an encrypted backup (written by `ferry keygen`). Repeat for key rotation:
    /// the first is the newest (a backup encrypts new segments with it), the others are
    /// older keys that segments may still be encrypted with.
    #[arg(long = "encryption-key-file", value_name = "FILE")]
    pub key_files: Vec<String>,
}

impl KeyArgs {
    /// The `encryption:` block of a generated pipeline, when keys were given.
    pub fn block(&self) -> Option<serde_json::Value> {
        (!self.key_files.is_empty()).then(|| serde_json::json!({ "key_files": self.key_files }))
    }

    /// The keys, read now (a missing or malformed file is an error naming it).
    pub fn load(
        &self,
    ) -> anyhow::Result<Option<std::sync::Arc<dyn ferry_core::encryption::KeyProvider>>> {
        if self.key_files.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            ferry_core::encryption::EncryptionConfig::from_files(&self.key_files).load()?,
        ))
    }
}
