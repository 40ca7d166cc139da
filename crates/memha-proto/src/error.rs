//! The crate's one error type.

use std::fmt;

/// Why a memcached key was refused.
///
/// Each variant names the rule of the protocol that the key broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRule {
    /// A key must have at least one byte.
    Empty,
    /// A key may have at most [`Key::MAX_LEN`](crate::Key::MAX_LEN) bytes.
    TooLong {
        /// The length of the refused key.
        len: usize,
    },
    /// A key may not contain whitespace, control bytes or DEL (`<= 0x20`, `0x7f`):
    /// they would end the key early on the wire and inject a command.
    ForbiddenByte {
        /// The refused byte.
        byte: u8,
        /// Its offset in the key.
        position: usize,
    },
}

impl fmt::Display for KeyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRule::Empty => f.write_str("key is empty"),
            KeyRule::TooLong { len } => write!(
                f,
                "key is {len} bytes long, more than the {} allowed",
                crate::Key::MAX_LEN
            ),
            KeyRule::ForbiddenByte { byte, position } => write!(
                f,
                "key has the forbidden byte 0x{byte:02x} at offset {position} (no whitespace, control bytes or DEL)"
            ),
        }
    }
}

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A key broke a rule of the protocol; nothing was encoded.
    InvalidKey(KeyRule),
    /// A value larger than the configured limit, refused by the encoder or
    /// announced by a reply. Nothing was encoded or allocated.
    ValueTooLarge {
        /// The size given or announced.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// A reply line grew past the configured bound without ending in `\r\n`.
    LineTooLong {
        /// The configured bound.
        max: usize,
    },
    /// A reply had more items (values, stats) than the request allows.
    TooManyItems {
        /// The bound that was exceeded.
        max: usize,
    },
    /// A retrieval command named no key.
    NoKeys,
    /// A command the server may leave unanswered (`noreply`, or a quiet
    /// meta command), refused by a [`Pipeline`](crate::Pipeline): replies
    /// are matched to requests in order. Nothing was encoded.
    Unanswerable,
    /// The reply's framing is corrupt: the stream cannot be trusted any more.
    Malformed,
    /// The reply is well formed but does not answer the command it was matched with.
    UnexpectedReply,
    /// An ElastiCache cluster configuration payload could not be parsed.
    InvalidClusterConfig,
    /// The stream under a `codec` `Framed` failed (the `codec` feature only).
    Io(std::io::ErrorKind),
}

/// The error of every fallible operation in this crate.
///
/// Decoding errors mean the byte stream is out of step and the connection
/// should be closed; server-side failures (`SERVER_ERROR`, `NOT_STORED`...)
/// are never errors but [`Reply`](crate::Reply) items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Error {
    kind: ErrorKind,
    detail: Option<String>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Error { kind, detail: None }
    }

    pub(crate) fn with_detail(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Error {
            kind,
            detail: Some(detail.into()),
        }
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> Self {
        Self::with_detail(ErrorKind::Malformed, detail)
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True when a key was refused.
    pub fn is_invalid_key(&self) -> bool {
        matches!(self.kind, ErrorKind::InvalidKey(_))
    }

    /// True when a value was over the size limit.
    pub fn is_value_too_large(&self) -> bool {
        matches!(self.kind, ErrorKind::ValueTooLarge { .. })
    }

    /// True when a reply's framing could not be trusted: the stream is out of step
    /// or hostile. (A reply announcing an oversized value is [`is_value_too_large`](Self::is_value_too_large).)
    pub fn is_decode(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::LineTooLong { .. }
                | ErrorKind::TooManyItems { .. }
                | ErrorKind::Malformed
                | ErrorKind::UnexpectedReply
        )
    }

    fn describe(&self) -> String {
        let head = match &self.kind {
            ErrorKind::InvalidKey(rule) => format!("invalid key: {rule}"),
            ErrorKind::ValueTooLarge { len, max } => {
                format!("value of {len} bytes is larger than the limit of {max} bytes")
            }
            ErrorKind::LineTooLong { max } => {
                format!("reply line longer than {max} bytes without a line end")
            }
            ErrorKind::TooManyItems { max } => {
                format!("reply has more than the {max} items the request allows")
            }
            ErrorKind::NoKeys => "a retrieval needs at least one key".to_owned(),
            ErrorKind::Unanswerable => {
                "a quiet or noreply command cannot be matched to a reply".to_owned()
            }
            ErrorKind::Malformed => "malformed reply".to_owned(),
            ErrorKind::UnexpectedReply => "reply does not answer the command sent".to_owned(),
            ErrorKind::InvalidClusterConfig => "invalid cluster configuration".to_owned(),
            ErrorKind::Io(kind) => format!("i/o error ({kind})"),
        };
        match &self.detail {
            Some(detail) => format!("{head}: {detail}"),
            None => head,
        }
    }
}

impl From<KeyRule> for Error {
    fn from(rule: KeyRule) -> Self {
        Error::new(ErrorKind::InvalidKey(rule))
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::with_detail(ErrorKind::Io(err.kind()), err.to_string())
    }
}
