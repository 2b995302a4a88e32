//! The record model's error: raw batches that could not be turned into records.

/// Errors of the record model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A [`RawDecoder`](crate::RawDecoder) failed; `decoder` names it (e.g. `kafka`).
    #[error("{decoder}: {source}")]
    Decode {
        /// The decoder that failed.
        decoder: String,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Bytes are not what their format promises.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl Error {
    /// Wraps a decoder's own error, naming the decoder.
    pub fn decode(
        decoder: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Decode {
            decoder: decoder.into(),
            source: source.into(),
        }
    }
}
