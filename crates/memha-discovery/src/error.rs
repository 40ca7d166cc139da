//! The crate's one error type.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An address is not `host:port` (a static entry, a node of a
    /// configuration, an endpoint given by the user).
    InvalidAddress,
    /// Connecting to, writing to or reading from an endpoint failed.
    Io,
    /// Connecting, reading, or a whole poll of a source took longer than allowed.
    Timeout,
    /// A DNS name could not be resolved, or has no A/AAAA record.
    Dns,
    /// An endpoint's reply was malformed, truncated, or not the answer
    /// expected (for example a memcached server that is not an ElastiCache
    /// configuration endpoint).
    Protocol,
    /// An ElastiCache cluster configuration payload could not be parsed.
    InvalidConfig,
    /// No AWS region was configured (ElastiCache API).
    MissingRegion,
    /// No AWS credentials could be resolved (ElastiCache API).
    MissingCredentials,
    /// The ElastiCache cluster does not exist (`CacheClusterNotFound`).
    ClusterNotFound,
    /// The ElastiCache cluster exists but its engine is not memcached.
    NotMemcached,
    /// Any other failure of the ElastiCache API: the message carries the
    /// service's error code and message, or the transport failure.
    Api,
    /// A failure reported by a user's own source, through [`Error::custom`].
    Source,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::InvalidAddress => "invalid address",
            ErrorKind::Io => "i/o error",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Dns => "DNS resolution failed",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::InvalidConfig => "invalid ElastiCache cluster configuration",
            ErrorKind::MissingRegion => "no AWS region configured",
            ErrorKind::MissingCredentials => "no AWS credentials",
            ErrorKind::ClusterNotFound => "ElastiCache cluster not found",
            ErrorKind::NotMemcached => "ElastiCache cluster is not memcached",
            ErrorKind::Api => "ElastiCache API error",
            ErrorKind::Source => "discovery source failed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The error of every fallible operation in this crate.
///
/// Its [`Display`](fmt::Display) is a complete, readable sentence (the kind,
/// what was being done and the underlying cause); [`source`](StdError::source)
/// gives the underlying error too, when there is one.
///
/// Errors are cheap to clone. A source's error never removes nodes: the
/// [`Watcher`](crate::Watcher) keeps that source's last good snapshot.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a message saying what was being done.
    ///
    /// Custom sources may use it to report a typed failure, for example
    /// `Error::new(ErrorKind::Timeout, "asking the inventory service")`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An error of kind [`ErrorKind::Source`] wrapping a custom source's failure.
    pub fn custom(err: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        let err: Box<dyn StdError + Send + Sync> = err.into();
        Error {
            kind: ErrorKind::Source,
            message: err.to_string(),
            source: Some(Arc::from(err)),
        }
    }

    /// Attaches the underlying cause; its text is appended to the message.
    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        let mut message = message.into();
        message.push_str(": ");
        message.push_str(&source.to_string());
        Error {
            kind,
            message,
            source: Some(Arc::new(source)),
        }
    }

    /// Attaches the underlying cause without repeating its text.
    pub(crate) fn with_cause(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the kind's prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True for [`ErrorKind::Timeout`].
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    /// True when the failure is probably passing: i/o, timeout, DNS, or an
    /// API failure other than a missing cluster. Polling again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Io | ErrorKind::Timeout | ErrorKind::Dns | ErrorKind::Api
        )
    }

    /// True when an endpoint answered something that cannot be trusted:
    /// a malformed, truncated or unexpected reply, or a bad configuration payload.
    pub fn is_protocol(&self) -> bool {
        matches!(self.kind, ErrorKind::Protocol | ErrorKind::InvalidConfig)
    }

    /// True when the setup is wrong and retrying will not help until someone
    /// changes it: an invalid address, a missing region or credentials, an
    /// unknown cluster, a cluster that is not memcached.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::InvalidAddress
                | ErrorKind::MissingRegion
                | ErrorKind::MissingCredentials
                | ErrorKind::ClusterNotFound
                | ErrorKind::NotMemcached
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.message)
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}
