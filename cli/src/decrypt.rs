//! `ferry decrypt LOCATION OBJECT`: the plaintext of one object an encrypted backup wrote — a
//! dead-letter file to read its records, or a raw segment to hand to Kafka's
//! `DumpLogSegments`.

use anyhow::{bail, Context, Result};
use ferry_core::encryption::{open_bytes, EnvelopeHeader};
use ferry_core::Storage;
use std::io::Write;
use std::path::PathBuf;

/// Decrypt one object of an encrypted backup (a dead-letter file, a segment) to stdout or
/// a new file.
///
/// LOCATION is the backup's location as the writer was given it (`--to`, `uri:`), OBJECT
/// the object's name in it, as logs and `ferry verify` print it, e.g.
/// `ferry decrypt s3://backups/prod dead-letter/orders/0/00000000000000000000.jsonl`. The
/// name is part of what is authenticated (an object moved to another name does not open),
/// and each chunk is authenticated: a changed or cut object is an error, and nothing is
/// written.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup's location: a path, file://, s3://…, gs://…, azblob://…
    #[arg(value_parser = crate::shortcuts::parse_uri, value_name = "LOCATION")]
    pub location: String,
    /// The object's name in it, e.g. dead-letter/orders/0/00000000000000000000.jsonl.
    #[arg(value_name = "OBJECT")]
    pub object: String,
    /// The key (or keys, after a rotation) it may be encrypted with.
    #[command(flatten)]
    pub keys: crate::keygen::KeyArgs,
    /// Write the plaintext to this new file (never overwritten) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `ferry decrypt`.
pub async fn main(args: Args) -> Result<()> {
    let Some(keys) = args.keys.load()? else {
        bail!("ferry decrypt needs the key: give --encryption-key-file FILE (repeat it for older keys after a rotation)");
    };
    let name = args.object.trim_start_matches('/');
    let storage = Storage::open_read_only(&args.location)?;
    let shown = format!("{storage}/{name}");
    let Some(stored) = storage.read_opt(name).await? else {
        bail!("{shown}: no such object; give the backup's location and the object's name in it, e.g. `ferry decrypt /var/backups/kafka dead-letter/orders/0/00000000000000000000.jsonl`");
    };
    if !EnvelopeHeader::is_encrypted(&stored) {
        bail!("{shown} is not encrypted (no Ferry encryption header): read it as it is");
    }
    let plain = open_bytes(keys.as_ref(), name, &stored).await.with_context(|| {
        format!(
            "decrypting {shown} (the object's name counts: it must be its name in the location its writer was given)"
        )
    })?;
    match &args.output {
        Some(path) => {
            write_new_private(path, &plain)?;
            eprintln!(
                "decrypted {shown} into {} ({} bytes)",
                path.display(),
                plain.len()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(&plain).and_then(|()| out.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.context("writing to stdout")?,
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to a new file readable by its owner only (it holds records in plaintext);
/// an existing file is refused, and a write that fails half-way removes what it wrote.
fn write_new_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).with_context(|| {
        format!(
            "creating {} (an existing file is never overwritten)",
            path.display()
        )
    })?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("writing {} (removed again)", path.display()));
    }
    Ok(())
}
