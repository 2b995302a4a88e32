//! Errors of the Kafka client, and Kafka's own error codes.

use kafka_protocol::error::ResponseError;
use std::fmt;
use std::time::Duration;

/// A Kafka protocol error code (`0` is no error), printed by its protocol name.
///
/// A newtype rather than kafka-protocol's enum so codes that library does not know yet are
/// still carried, compared and printed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaCode(pub i16);

#[allow(missing_docs)]
impl KafkaCode {
    pub const NONE: KafkaCode = KafkaCode(0);
    pub const UNKNOWN_SERVER_ERROR: KafkaCode = KafkaCode(-1);
    pub const OFFSET_OUT_OF_RANGE: KafkaCode = KafkaCode(1);
    pub const CORRUPT_MESSAGE: KafkaCode = KafkaCode(2);
    pub const UNKNOWN_TOPIC_OR_PARTITION: KafkaCode = KafkaCode(3);
    pub const LEADER_NOT_AVAILABLE: KafkaCode = KafkaCode(5);
    pub const NOT_LEADER_OR_FOLLOWER: KafkaCode = KafkaCode(6);
    pub const REQUEST_TIMED_OUT: KafkaCode = KafkaCode(7);
    pub const BROKER_NOT_AVAILABLE: KafkaCode = KafkaCode(8);
    pub const REPLICA_NOT_AVAILABLE: KafkaCode = KafkaCode(9);
    pub const MESSAGE_TOO_LARGE: KafkaCode = KafkaCode(10);
    pub const NETWORK_EXCEPTION: KafkaCode = KafkaCode(13);
    pub const COORDINATOR_LOAD_IN_PROGRESS: KafkaCode = KafkaCode(14);
    pub const COORDINATOR_NOT_AVAILABLE: KafkaCode = KafkaCode(15);
    pub const NOT_COORDINATOR: KafkaCode = KafkaCode(16);
    pub const RECORD_LIST_TOO_LARGE: KafkaCode = KafkaCode(18);
    pub const NOT_ENOUGH_REPLICAS: KafkaCode = KafkaCode(19);
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: KafkaCode = KafkaCode(20);
    pub const ILLEGAL_GENERATION: KafkaCode = KafkaCode(22);
    pub const UNKNOWN_MEMBER_ID: KafkaCode = KafkaCode(25);
    pub const REBALANCE_IN_PROGRESS: KafkaCode = KafkaCode(27);
    pub const UNSUPPORTED_SASL_MECHANISM: KafkaCode = KafkaCode(33);
    pub const UNSUPPORTED_VERSION: KafkaCode = KafkaCode(35);
    pub const TOPIC_ALREADY_EXISTS: KafkaCode = KafkaCode(36);
    pub const NOT_CONTROLLER: KafkaCode = KafkaCode(41);
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: KafkaCode = KafkaCode(45);
    pub const DUPLICATE_SEQUENCE_NUMBER: KafkaCode = KafkaCode(46);
    pub const INVALID_PRODUCER_EPOCH: KafkaCode = KafkaCode(47);
    pub const KAFKA_STORAGE_ERROR: KafkaCode = KafkaCode(56);
    pub const SASL_AUTHENTICATION_FAILED: KafkaCode = KafkaCode(58);
    pub const UNKNOWN_PRODUCER_ID: KafkaCode = KafkaCode(59);
    pub const GROUP_ID_NOT_FOUND: KafkaCode = KafkaCode(69);
    pub const FETCH_SESSION_ID_NOT_FOUND: KafkaCode = KafkaCode(70);
    pub const INVALID_FETCH_SESSION_EPOCH: KafkaCode = KafkaCode(71);
    pub const FENCED_LEADER_EPOCH: KafkaCode = KafkaCode(74);
    pub const UNKNOWN_LEADER_EPOCH: KafkaCode = KafkaCode(75);
    pub const OFFSET_NOT_AVAILABLE: KafkaCode = KafkaCode(78);
    pub const MEMBER_ID_REQUIRED: KafkaCode = KafkaCode(79);
    pub const THROTTLING_QUOTA_EXCEEDED: KafkaCode = KafkaCode(89);
    pub const UNKNOWN_TOPIC_ID: KafkaCode = KafkaCode(100);
    pub const INCONSISTENT_TOPIC_ID: KafkaCode = KafkaCode(103);
    pub const FETCH_SESSION_TOPIC_ID_ERROR: KafkaCode = KafkaCode(106);
}

impl KafkaCode {
    /// `None` for code 0, the code otherwise.
    pub fn from_code(code: i16) -> Option<KafkaCode> {
        (code != 0).then_some(KafkaCode(code))
    }

    /// The protocol name, e.g. `NOT_LEADER_OR_FOLLOWER` (`UNKNOWN_CODE` when unknown).
    pub fn name(self) -> String {
        if self.0 == 0 {
            return "NONE".to_string();
        }
        match ResponseError::try_from_code(self.0) {
            Some(ResponseError::Unknown(_)) | None => "UNKNOWN_CODE".to_string(),
            Some(e) => screaming_snake(&format!("{e:?}")),
        }
    }

    /// Whether the protocol marks the error retriable.
    pub fn is_retriable(self) -> bool {
        ResponseError::try_from_code(self.0).is_some_and(|e| e.is_retriable())
    }

    /// Errors after which the partition's leader must be looked up again.
    pub fn needs_metadata_refresh(self) -> bool {
        matches!(
            self,
            KafkaCode::NOT_LEADER_OR_FOLLOWER
                | KafkaCode::UNKNOWN_TOPIC_OR_PARTITION
                | KafkaCode::LEADER_NOT_AVAILABLE
                | KafkaCode::REPLICA_NOT_AVAILABLE
                | KafkaCode::FENCED_LEADER_EPOCH
                | KafkaCode::UNKNOWN_LEADER_EPOCH
                | KafkaCode::UNKNOWN_TOPIC_ID
                | KafkaCode::INCONSISTENT_TOPIC_ID
                | KafkaCode::KAFKA_STORAGE_ERROR
                | KafkaCode::NOT_CONTROLLER
                | KafkaCode::NOT_COORDINATOR
                | KafkaCode::COORDINATOR_NOT_AVAILABLE
        )
    }
}

/// `NotLeaderOrFollower` -> `NOT_LEADER_OR_FOLLOWER`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

impl fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Debug for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Errors of the Kafka client. Messages name the broker, the API and the Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, reading or writing a socket failed.
    #[error("broker {addr}: {context}: {source}")]
    Io {
        /// Broker address.
        addr: String,
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A broker did not answer in time.
    #[error("broker {addr}: {api} timed out after {after:?}")]
    Timeout {
        /// Broker address.
        addr: String,
        /// API name (or `connect`).
        api: String,
        /// How long Ferry waited.
        after: Duration,
    },
    /// The connection broke while a request was waiting for its response.
    #[error("broker {addr}: connection closed: {reason}")]
    ConnectionClosed {
        /// Broker address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A request could not be encoded or a response not decoded.
    #[error("broker {addr}: {api}: protocol error: {message}")]
    Protocol {
        /// Broker address.
        addr: String,
        /// API name.
        api: String,
        /// What went wrong.
        message: String,
    },
    /// The broker does not support an API (or no version both sides know).
    #[error("broker {addr}: does not support {api} in a version Ferry knows")]
    UnsupportedVersion {
        /// Broker address.
        addr: String,
        /// API name.
        api: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{}{api}{}: {code}{}", addr.as_ref().map(|a| format!("broker {a}: ")).unwrap_or_default(), if context.is_empty() { String::new() } else { format!(" ({context})") }, message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        /// Broker address, when known.
        addr: Option<String>,
        /// API name.
        api: String,
        /// What the request was about (topic, partition, group).
        context: String,
        /// The error code.
        code: KafkaCode,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// Record batch bytes are malformed.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// A record cannot be produced because it is bigger than allowed.
    #[error("record too large for {topic}/{partition}: {size} bytes encoded, limit max_request_bytes = {max} bytes")]
    RecordTooLarge {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Cluster metadata does not have what was asked for.
    #[error("metadata: {0}")]
    Metadata(String),
    /// The idempotent producer hit an error it cannot recover from by retrying.
    #[error("producer: {0}")]
    Producer(String),
    /// A newer producer with the same producer id and a higher epoch wrote to the partition
    /// (a later run took over, see `Producer::take_over`): this one's writes are refused.
    #[error("producer fenced: {0}")]
    Fenced(String),
    /// TLS setup or handshake failed.
    #[error("tls: {0}")]
    Tls(String),
    /// SASL authentication failed.
    #[error("broker {addr}: SASL {mechanism}: {message}")]
    Sasl {
        /// Broker address.
        addr: String,
        /// Mechanism name.
        mechanism: String,
        /// What went wrong.
        message: String,
    },
    /// The client was configured wrongly.
    #[error("kafka client config: {0}")]
    Config(String),
}

impl ClientError {
    /// The Kafka error code, when the broker sent one.
    pub fn code(&self) -> Option<KafkaCode> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Network-level failure (connect, read, write, timeout, closed connection).
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            ClientError::Io { .. }
                | ClientError::Timeout { .. }
                | ClientError::ConnectionClosed { .. }
        )
    }

    /// Whether retrying the same request (after a metadata refresh) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } => code.is_retriable() || code.needs_metadata_refresh(),
            ClientError::Metadata(_) => true,
            other => other.is_network(),
        }
    }

    pub(crate) fn kafka(
        api: &str,
        context: impl Into<String>,
        code: KafkaCode,
        message: Option<String>,
    ) -> Self {
        ClientError::Kafka {
            addr: None,
            api: api.to_string(),
            context: context.into(),
            code,
            message: message.filter(|m| !m.is_empty()),
        }
    }

    pub(crate) fn with_addr(self, a: &str) -> Self {
        match self {
            ClientError::Kafka {
                addr: None,
                api,
                context,
                code,
                message,
            } => ClientError::Kafka {
                addr: Some(a.to_string()),
                api,
                context,
                code,
                message,
            },
            other => other,
        }
    }
}

/// Result with [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names() {
        assert_eq!(
            KafkaCode::NOT_LEADER_OR_FOLLOWER.name(),
            "NOT_LEADER_OR_FOLLOWER"
        );
        assert_eq!(
            KafkaCode::OFFSET_OUT_OF_RANGE.to_string(),
            "OFFSET_OUT_OF_RANGE (1)"
        );
        assert_eq!(KafkaCode(9999).name(), "UNKNOWN_CODE");
        assert!(KafkaCode::NOT_LEADER_OR_FOLLOWER.is_retriable());
        assert!(!KafkaCode::OFFSET_OUT_OF_RANGE.is_retriable());
    }

    #[test]
    fn kafka_error_message_names_everything() {
        let e = ClientError::kafka("Fetch", "orders/3", KafkaCode::NOT_LEADER_OR_FOLLOWER, None)
            .with_addr("127.0.0.1:9092");
        assert_eq!(
            e.to_string(),
            "broker 127.0.0.1:9092: Fetch (orders/3): NOT_LEADER_OR_FOLLOWER (6)"
        );
    }
}
