//! Ferry's error type for the engine and its components.
//!
//! Every error has an [`ErrorKind`] a caller can act on (fix the config, wait for the
//! network, stop on corrupt data, refuse to harm data) and says whether retrying may help
//! ([`Error::is_retriable`]). [`error_chain`] is the one way an error and its causes are
//! printed as a line.

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

/// What kind of failure an [`Error`] is: what a caller (the runtime, the CLI's exit code, a
/// worker's status page) can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The pipeline, a flag or an option is wrong: fix it and run again.
    Config,
    /// A broker, registry or other network peer could not be reached or answered with an
    /// error; often temporary.
    Connection,
    /// Reading or writing storage failed.
    Storage,
    /// Stored or fetched bytes are not what their format or manifest promises.
    Corrupt,
    /// A record does not fit what the pipeline expects of it (a schema, a type).
    InvalidData,
    /// Ferry refused to go on because it would harm data a user already has (a restore into
    /// a topic holding other records, a second writer to one backup).
    Refused,
    /// The pipeline was stopped before it finished.
    Cancelled,
    /// A bug or broken invariant inside Ferry.
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Config => "config",
            ErrorKind::Connection => "connection",
            ErrorKind::Storage => "storage",
            ErrorKind::Corrupt => "corrupt data",
            ErrorKind::InvalidData => "invalid data",
            ErrorKind::Refused => "refused",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        })
    }
}

/// The boxed error of a component or library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    /// A record does not fit what the pipeline expects of it.
    #[error("{0}")]
    InvalidData(String),
    /// Ferry refused to go on, to protect data; the message says how to allow it.
    #[error("{0}")]
    Refused(String),
    /// A network peer failed (`peer` names it: `kafka`, `schema registry`, …).
    #[error("{peer}: {source}")]
    Connection {
        /// What could not be reached or answered with an error.
        peer: String,
        /// Whether trying again later may succeed.
        retriable: bool,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// A component failed; `component` names it (e.g. `sink kafka`).
    #[error("{component}: {source}")]
    Component {
        /// The component that failed.
        component: String,
        /// What kind of failure it is.
        kind: ErrorKind,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// The pipeline was stopped before it finished.
    #[error("pipeline cancelled")]
    Cancelled,
    /// A bug or broken invariant inside Ferry, with what was being done.
    #[error("{0}")]
    Internal(String),
    /// Another error's whole text with secrets blanked out; keeps its kind.
    #[error("{text}")]
    Redacted {
        /// The kind of the original error.
        kind: ErrorKind,
        /// Whether the original error was retriable.
        retriable: bool,
        /// The original error's chain, redacted.
        text: String,
    },
}

impl Error {
    /// A configuration error without a file location (e.g. from a CLI flag).
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config {
            location: None,
            message: message.into(),
        }
    }

    /// Wraps a component's own error, naming the component (kind: internal; use
    /// [`Error::component_of`] when the kind is known).
    pub fn component(component: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::component_of(ErrorKind::Internal, component, source)
    }

    /// Wraps a component's own error of a known kind.
    pub fn component_of(
        kind: ErrorKind,
        component: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Component {
            component: component.into(),
            kind,
            source: source.into(),
        }
    }

    /// A network peer's failure; `retriable` says whether trying again may help.
    pub fn connection(
        peer: impl Into<String>,
        retriable: bool,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Connection {
            peer: peer.into(),
            retriable,
            source: source.into(),
        }
    }

    /// A storage error with what Ferry was doing.
    pub fn storage(context: impl Into<String>, source: opendal::Error) -> Self {
        let mut context = context.into();
        // opendal's timeout layer says only "operation timeout reached": say what happened
        // and which knobs set the limits, on the same line as the object's name.
        if source.to_string().contains("timeout reached") {
            context.push_str(
                ": the store did not answer in time, also not when retried \
                 (the storage URI's timeout= and retries= set how long and how often)",
            );
        }
        Error::Storage { context, source }
    }

    /// A broken invariant or failed internal task, with what was being done.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// A refusal to protect data; the message names what and the flag that allows it.
    pub fn refused(message: impl Into<String>) -> Self {
        Error::Refused(message.into())
    }

    /// A record that does not fit what the pipeline expects of it.
    pub fn invalid_data(message: impl Into<String>) -> Self {
        Error::InvalidData(message.into())
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } => ErrorKind::Config,
            Error::Storage { .. } => ErrorKind::Storage,
            Error::Corrupt(_) => ErrorKind::Corrupt,
            Error::InvalidData(_) => ErrorKind::InvalidData,
            Error::Refused(_) => ErrorKind::Refused,
            Error::Connection { .. } => ErrorKind::Connection,
            Error::Component { kind, .. } => *kind,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Redacted { kind, .. } => *kind,
        }
    }

    /// Whether trying the same thing again later may succeed: a temporary storage or
    /// network failure. Config errors, corrupt data and refusals never are.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Storage { source, .. } => source.is_temporary(),
            Error::Connection { retriable, .. } | Error::Redacted { retriable, .. } => *retriable,
            _ => false,
        }
    }
}

/// An error and its causes on one line, `a: b: c`, leaving out a cause whose text the
/// message before it already carries (many library errors print their source themselves).
/// The one formatter for errors shown to people.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    chain_of(std::iter::successors(Some(err), |e| e.source()))
}

/// [`error_chain`] over any sequence of causes (e.g. `anyhow::Error::chain`).
pub fn chain_of<'a>(
    causes: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> String {
    let mut out = String::new();
    for cause in causes {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

impl From<ferry_model::Error> for Error {
    /// A decoder's failure keeps the decoder's name as the component (`kafka: corrupt record
    /// batch: ...`), as when the client's error converted directly.
    fn from(e: ferry_model::Error) -> Self {
        match e {
            ferry_model::Error::Decode { decoder, source } => Error::Component {
                component: decoder,
                kind: ErrorKind::Corrupt,
                source,
            },
            ferry_model::Error::Corrupt(message) => Error::Corrupt(message),
        }
    }
}

/// Result with Ferry's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapper")]
    struct Wrapper(#[source] Inner);

    #[test]
    fn a_storage_timeout_says_what_happened_and_what_sets_the_limits() {
        let e = Error::storage(
            "closing s3://b/p/topics/t/0/00000000000000000000.log",
            opendal::Error::new(
                opendal::ErrorKind::Unexpected,
                "io operation timeout reached",
            ),
        );
        let line = error_chain(&e);
        assert!(line.contains("t/0/00000000000000000000.log"), "{line}");
        assert!(line.contains("did not answer in time"), "{line}");
        assert!(line.contains("timeout= and retries="), "{line}");
        assert!(!line.contains('\n'), "{line}");
        let other = Error::storage(
            "writing x",
            opendal::Error::new(opendal::ErrorKind::Unexpected, "503"),
        );
        assert!(!error_chain(&other).contains("in time"));
    }

    #[test]
    fn chain_skips_causes_the_message_already_carries() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner");
        assert_eq!(error_chain(&Wrapper(Inner)), "wrapper: inner");
        let e = Error::component("sink kafka", Wrapper(Inner));
        assert_eq!(error_chain(&e), "sink kafka: wrapper: inner");
    }

    #[test]
    fn kinds_and_retries() {
        assert_eq!(Error::config("x").kind(), ErrorKind::Config);
        assert!(!Error::config("x").is_retriable());
        let c = Error::connection("kafka", true, "connection refused");
        assert_eq!(c.kind(), ErrorKind::Connection);
        assert!(c.is_retriable());
        assert!(!Error::connection("kafka", false, "auth").is_retriable());
        let s = Error::storage(
            "writing x",
            opendal::Error::new(opendal::ErrorKind::Unexpected, "503").set_temporary(),
        );
        assert_eq!(s.kind(), ErrorKind::Storage);
        assert!(s.is_retriable());
        let p = Error::storage(
            "writing x",
            opendal::Error::new(opendal::ErrorKind::PermissionDenied, "read-only"),
        );
        assert!(!p.is_retriable());
        assert_eq!(Error::refused("no").kind(), ErrorKind::Refused);
        assert_eq!(Error::internal("bug").kind(), ErrorKind::Internal);
        assert_eq!(
            Error::component_of(ErrorKind::Corrupt, "source backup", "bad crc").kind(),
            ErrorKind::Corrupt
        );
    }
}
