//! The crate's one error type.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// What went wrong, for callers that branch on it.
///
/// Server answers such as a miss, `NOT_STORED`, `EXISTS` or `NOT_FOUND` are
/// never errors: they are the typed outcomes of each operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A key broke a rule of the protocol (empty, over 250 bytes, whitespace
    /// or control bytes). Nothing was sent.
    InvalidKey,
    /// A value larger than the configured limit. Nothing was sent.
    ValueTooLarge {
        /// The value's size in bytes.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A request the multiplexed connection cannot carry (a `noreply` or
    /// quiet command, whose missing answer would desynchronise the stream).
    /// Nothing was sent.
    Unsupported,
    /// No answer within the timeout. The request may or may not have been
    /// applied.
    Timeout,
    /// The node could not be reached (connection refused, connect timeout,
    /// or waiting before the next reconnection attempt). Nothing was sent.
    Connect,
    /// The connection broke while the request was queued or in flight.
    /// Unless [`Error::is_unsent`] is true, the request may have been applied.
    Connection,
    /// The server's reply could not be decoded or did not answer the request
    /// (a broken or hostile server). The connection was closed.
    Protocol,
    /// The server answered with an error line (`SERVER_ERROR`,
    /// `CLIENT_ERROR` or `ERROR`); [`Error::server_message`] gives the
    /// server's message.
    Server,
    /// There is no node to send the request to: none is known, or none is Up.
    NoNodes,
    /// The node is Down: its health check refused the request at once.
    /// Nothing was sent.
    NodeDown,
    /// Fewer nodes acknowledged a write than the ack policy requires. The
    /// write may have been applied on some nodes; it is not acknowledged.
    /// [`Error::partial_write`] tells how many nodes acknowledged, and
    /// which failed.
    PartialWrite,
    /// The connection was shut down: every handle to it was dropped, or the
    /// runtime that ran it stopped.
    Closed,
    /// An error raised by a layer added to the stack by the user.
    Other,
}

type Source = Arc<dyn StdError + Send + Sync>;

/// How a write fell short of its ack policy: the data of an
/// [`ErrorKind::PartialWrite`], from [`Error::partial_write`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartialWrite {
    /// How many nodes acknowledged.
    pub acked: usize,
    /// How many had to.
    pub required: usize,
    /// The nodes that did not acknowledge.
    pub failed: Vec<SocketAddr>,
}

/// The data some kinds carry.
#[derive(Clone)]
enum Data {
    None,
    ServerMessage(String),
    PartialWrite(PartialWrite),
}

/// The error of every fallible operation of this crate.
///
/// Branch on [`kind`](Self::kind), or use the classifiers:
/// [`is_timeout`](Self::is_timeout), [`is_connection`](Self::is_connection),
/// [`is_retryable`](Self::is_retryable) and [`is_unsent`](Self::is_unsent).
/// Cloning is cheap.
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    data: Data,
    unsent: bool,
    node: Option<SocketAddr>,
    detail: Option<String>,
    source: Option<Source>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        let unsent = matches!(
            kind,
            ErrorKind::InvalidKey
                | ErrorKind::ValueTooLarge { .. }
                | ErrorKind::Unsupported
                | ErrorKind::Connect
                | ErrorKind::NoNodes
                | ErrorKind::NodeDown
        );
        Error {
            inner: Box::new(Inner {
                kind,
                data: Data::None,
                unsent,
                node: None,
                detail: None,
                source: None,
            }),
        }
    }

    /// A server's error line (`SERVER_ERROR` ...), with its message.
    pub(crate) fn server(message: impl Into<String>) -> Self {
        let mut error = Error::new(ErrorKind::Server);
        error.inner.data = Data::ServerMessage(message.into());
        error
    }

    /// A write fewer nodes acknowledged than required.
    pub(crate) fn new_partial_write(
        acked: usize,
        required: usize,
        failed: Vec<SocketAddr>,
    ) -> Self {
        let mut error = Error::new(ErrorKind::PartialWrite);
        error.inner.data = Data::PartialWrite(PartialWrite {
            acked,
            required,
            failed,
        });
        error
    }

    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.inner.detail = Some(detail.into());
        self
    }

    pub(crate) fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.inner.source = Some(Arc::new(source));
        self
    }

    pub(crate) fn with_node(mut self, node: SocketAddr) -> Self {
        self.inner.node.get_or_insert(node);
        self
    }

    /// Marks whether the request surely never reached the server.
    pub(crate) fn with_unsent(mut self, unsent: bool) -> Self {
        self.inner.unsent = unsent;
        self
    }

    pub(crate) fn io(kind: ErrorKind, err: io::Error) -> Self {
        Error::new(kind).with_source(err)
    }

    pub(crate) fn invalid_key(err: memha_proto::Error) -> Self {
        Error::new(ErrorKind::InvalidKey).with_source(err)
    }

    pub(crate) fn protocol(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Protocol).with_detail(detail)
    }

    /// Maps an error of the codec: refused input (nothing sent) or a broken stream.
    pub(crate) fn from_proto(err: memha_proto::Error) -> Self {
        match err.kind() {
            memha_proto::ErrorKind::InvalidKey(_) => Error::invalid_key(err),
            memha_proto::ErrorKind::ValueTooLarge { len, max } if !err.is_decode() => {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                Error::new(ErrorKind::ValueTooLarge { len, max }).with_source(err)
            }
            memha_proto::ErrorKind::NoKeys | memha_proto::ErrorKind::Unanswerable => {
                Error::new(ErrorKind::Unsupported).with_source(err)
            }
            _ => Error::new(ErrorKind::Protocol).with_source(err),
        }
    }

    /// Recovers an error that went through a tower middleware as a boxed
    /// error: this crate's errors come back as they were, a timeout of
    /// `tower::timeout` becomes [`ErrorKind::Timeout`], anything else
    /// [`ErrorKind::Other`].
    pub fn from_boxed(error: Box<dyn StdError + Send + Sync>) -> Self {
        match error.downcast::<Error>() {
            Ok(error) => *error,
            Err(error) => {
                if error.is::<tower::timeout::error::Elapsed>() {
                    Error::new(ErrorKind::Timeout)
                } else {
                    let mut other = Error::new(ErrorKind::Other);
                    other.inner.source = Some(Arc::from(error));
                    other
                }
            }
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The server's message, for an [`ErrorKind::Server`] error.
    pub fn server_message(&self) -> Option<&str> {
        match &self.inner.data {
            Data::ServerMessage(message) => Some(message),
            _ => None,
        }
    }

    /// How the write fell short, for an [`ErrorKind::PartialWrite`] error.
    pub fn partial_write(&self) -> Option<&PartialWrite> {
        match &self.inner.data {
            Data::PartialWrite(partial) => Some(partial),
            _ => None,
        }
    }

    /// The node the failed request was for, when known.
    pub fn node(&self) -> Option<SocketAddr> {
        self.inner.node
    }

    /// True when no answer came within the timeout.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
    }

    /// True when the node could not be reached or the connection to it broke
    /// ([`ErrorKind::Connect`], [`ErrorKind::Connection`], [`ErrorKind::Closed`],
    /// [`ErrorKind::NodeDown`]).
    pub fn is_connection(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Connect | ErrorKind::Connection | ErrorKind::Closed | ErrorKind::NodeDown
        )
    }

    /// True when no node could serve the request ([`ErrorKind::NoNodes`]).
    pub fn is_no_nodes(&self) -> bool {
        self.inner.kind == ErrorKind::NoNodes
    }

    /// True when a write was not acknowledged by enough nodes
    /// ([`ErrorKind::PartialWrite`]).
    pub fn is_partial_write(&self) -> bool {
        self.inner.kind == ErrorKind::PartialWrite
    }

    /// True when the failure is transient: the same request may succeed if
    /// tried again later or on another node (timeouts and connection
    /// failures). Whether retrying a write is *safe* is another question:
    /// see [`is_unsent`](Self::is_unsent).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Timeout
                | ErrorKind::Connect
                | ErrorKind::Connection
                | ErrorKind::NoNodes
                | ErrorKind::NodeDown
                | ErrorKind::PartialWrite
        )
    }

    /// True when the request surely never reached the server (it was refused
    /// before sending, the node could not be reached, or the connection
    /// broke before the request was written), so retrying even a
    /// non-idempotent write (append, incr) cannot apply it twice.
    pub fn is_unsent(&self) -> bool {
        self.inner.unsent
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        match &inner.kind {
            ErrorKind::InvalidKey => f.write_str("invalid key")?,
            ErrorKind::ValueTooLarge { len, max } => write!(
                f,
                "value of {len} bytes is larger than the limit of {max} bytes"
            )?,
            ErrorKind::Unsupported => f.write_str("request not supported")?,
            ErrorKind::Timeout => f.write_str("request timed out")?,
            ErrorKind::Connect => f.write_str("could not connect")?,
            ErrorKind::Connection => f.write_str("connection lost")?,
            ErrorKind::Protocol => f.write_str("protocol error")?,
            ErrorKind::Server => match &inner.data {
                Data::ServerMessage(message) => write!(f, "server error: {message}")?,
                _ => f.write_str("server error")?,
            },
            ErrorKind::NoNodes => f.write_str("no nodes")?,
            ErrorKind::NodeDown => f.write_str("node is down")?,
            ErrorKind::PartialWrite => match &inner.data {
                Data::PartialWrite(partial) => {
                    write!(
                        f,
                        "write acknowledged by {} of the {} nodes required; failed on",
                        partial.acked, partial.required
                    )?;
                    for node in &partial.failed {
                        write!(f, " {node}")?;
                    }
                }
                _ => f.write_str("write not acknowledged by enough nodes")?,
            },
            ErrorKind::Closed => f.write_str("connection closed")?,
            ErrorKind::Other => f.write_str("middleware error")?,
        }
        if let Some(node) = inner.node {
            write!(f, " (node {node})")?;
        }
        if let Some(detail) = &inner.detail {
            write!(f, ": {detail}")?;
        }
        if let Some(source) = &inner.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        let mut debug = f.debug_struct("Error");
        debug.field("kind", &inner.kind);
        match &inner.data {
            Data::ServerMessage(message) => debug.field("server_message", message),
            Data::PartialWrite(partial) => debug.field("partial_write", partial),
            Data::None => &mut debug,
        };
        debug.field("unsent", &inner.unsent);
        if let Some(node) = &inner.node {
            debug.field("node", node);
        }
        if let Some(detail) = &inner.detail {
            debug.field("detail", detail);
        }
        if let Some(source) = &inner.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

// The health layer learns from every result of a node's stack.
impl memha_health::ClassifyOutcome for Error {
    fn observation(&self) -> memha_health::Observation {
        use memha_health::Observation;
        match self.inner.kind {
            ErrorKind::Timeout => Observation::Timeout,
            ErrorKind::Connect | ErrorKind::Connection => Observation::ConnectionFailed,
            // A broken or hostile server: the connection was closed.
            ErrorKind::Protocol => Observation::ConnectionFailed,
            _ => Observation::Neutral,
        }
    }
}

impl From<memha_health::Error> for Error {
    fn from(error: memha_health::Error) -> Self {
        let kind = if error.is_node_down() {
            ErrorKind::NodeDown
        } else {
            ErrorKind::Other
        };
        Error::new(kind).with_source(error)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifiers() {
        let timeout = Error::new(ErrorKind::Timeout);
        assert!(timeout.is_timeout() && timeout.is_retryable() && !timeout.is_connection());
        assert!(!timeout.is_unsent());
        let connect = Error::new(ErrorKind::Connect);
        assert!(connect.is_connection() && connect.is_retryable() && connect.is_unsent());
        let lost = Error::new(ErrorKind::Connection);
        assert!(lost.is_connection() && !lost.is_unsent());
        assert!(lost.clone().with_unsent(true).is_unsent());
        let server = Error::server("out of memory");
        assert!(!server.is_retryable() && !server.is_connection());
        assert_eq!(server.server_message(), Some("out of memory"));
        assert_eq!(server.to_string(), "server error: out of memory");
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let partial = Error::new_partial_write(1, 2, vec![addr]);
        assert!(partial.is_partial_write() && partial.is_retryable());
        assert_eq!(partial.partial_write().unwrap().failed, [addr]);
        assert!(server.partial_write().is_none() && partial.server_message().is_none());
        assert!(Error::new(ErrorKind::InvalidKey).is_unsent());
    }

    #[test]
    fn boxed_round_trip() {
        let original = Error::new(ErrorKind::Connection).with_detail("reset");
        let boxed: Box<dyn StdError + Send + Sync> = Box::new(original);
        let back = Error::from_boxed(boxed);
        assert_eq!(back.kind(), ErrorKind::Connection);
        assert!(back.to_string().contains("reset"));

        let elapsed: Box<dyn StdError + Send + Sync> =
            Box::new(tower::timeout::error::Elapsed::new());
        assert!(Error::from_boxed(elapsed).is_timeout());

        let other: Box<dyn StdError + Send + Sync> = "custom".into();
        let other = Error::from_boxed(other);
        assert_eq!(other.kind(), ErrorKind::Other);
        assert!(other.source().is_some());
    }

    #[test]
    fn display_names_the_node() {
        let addr: SocketAddr = "127.0.0.1:11211".parse().unwrap();
        let err =
            Error::io(ErrorKind::Connect, io::ErrorKind::ConnectionRefused.into()).with_node(addr);
        let shown = err.to_string();
        assert!(
            shown.starts_with("could not connect (node 127.0.0.1:11211)"),
            "{shown}"
        );
    }
}
