//! Ferry's error type for the engine and its components.

use std::fmt;

/// Where in a pipeline file something went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file (or `<string>` for YAML given in memory).
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Errors raised by the engine and by components.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pipeline file is invalid; the message names the key or variable at fault.
    #[error("{}{message}", location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
    Config {
        /// Where the problem is, when known.
        location: Option<Location>,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Reading or writing storage failed.
    #[error("storage: {context}: {source}")]
    Storage {
        /// What Ferry was doing (the path, the operation).
        context: String,
        /// The underlying opendal error.
        #[source]
        source: opendal::Error,
    },
    /// A file's bytes are not what their format or manifest promises.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A component failed; `component` names it (e.g. `sink kafka`).
    #[error("{component}: {source}")]
    Component {
        /// The component that failed.
        component: String,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The pipeline was stopped before it finished.
    #[error("pipeline cancelled")]
    Cancelled,
    /// Anything else, with a message that says what and why.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// A configuration error without a file location (e.g. from a CLI flag).
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config {
            location: None,
            message: message.into(),
        }
    }

    /// Wraps a component's own error, naming the component.
    pub fn component(
        component: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Component {
            component: component.into(),
            source: source.into(),
        }
    }

    /// A storage error with what Ferry was doing.
    pub fn storage(context: impl Into<String>, source: opendal::Error) -> Self {
        Error::Storage {
            context: context.into(),
            source,
        }
    }
}

impl From<ferry_model::Error> for Error {
    /// A decoder's failure keeps the decoder's name as the component (`kafka: corrupt record
    /// batch: ...`), as when the client's error converted directly.
    fn from(e: ferry_model::Error) -> Self {
        match e {
            ferry_model::Error::Decode { decoder, source } => Error::Component {
                component: decoder,
                source,
            },
            ferry_model::Error::Corrupt(message) => Error::Corrupt(message),
        }
    }
}

/// Result with Ferry's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
