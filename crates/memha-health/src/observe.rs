//! Turning request outcomes into health signals.

use std::io;

use crate::error::{BoxError, Error, ErrorKind};
use crate::state::Observation;

/// Classifies a response or an error of a node service as an [`Observation`].
///
/// [`Health`](crate::Health) needs it for its inner service's `Response` and
/// `Error` types. A connection crate implements it for its own error type:
///
/// ```
/// use memha_health::{ClassifyOutcome, Observation};
///
/// enum ConnError { Refused, TimedOut, InvalidKey }
///
/// impl ClassifyOutcome for ConnError {
///     fn observation(&self) -> Observation {
///         match self {
///             ConnError::Refused => Observation::ConnectionFailed,
///             ConnError::TimedOut => Observation::Timeout,
///             ConnError::InvalidKey => Observation::Neutral,
///         }
///     }
/// }
/// # assert_eq!(ConnError::TimedOut.observation(), Observation::Timeout);
/// # let _ = (ConnError::Refused, ConnError::InvalidKey);
/// ```
pub trait ClassifyOutcome {
    /// What this outcome says about the node's health.
    fn observation(&self) -> Observation;
}

impl<T: ClassifyOutcome + ?Sized> ClassifyOutcome for &T {
    fn observation(&self) -> Observation {
        (**self).observation()
    }
}

impl<T: ClassifyOutcome, E: ClassifyOutcome> ClassifyOutcome for Result<T, E> {
    fn observation(&self) -> Observation {
        match self {
            Ok(response) => response.observation(),
            Err(err) => err.observation(),
        }
    }
}

/// Every decoded reply is an answer: [`Observation::Success`], misses,
/// `NOT_STORED`, `EXISTS` and server error lines included.
impl ClassifyOutcome for memha_proto::Reply {
    fn observation(&self) -> Observation {
        Observation::Success
    }
}

/// Invalid keys and oversized values are [`Observation::Neutral`] (nothing was
/// sent); corrupt framing is an [`Observation::Failure`].
impl ClassifyOutcome for memha_proto::Error {
    fn observation(&self) -> Observation {
        if self.is_invalid_key() || self.is_value_too_large() {
            Observation::Neutral
        } else {
            match self.kind() {
                // Refused before anything was sent.
                memha_proto::ErrorKind::NoKeys | memha_proto::ErrorKind::Unanswerable => {
                    Observation::Neutral
                }
                _ => Observation::Failure,
            }
        }
    }
}

/// Refused, reset, aborted, broken or closed connections are
/// [`Observation::ConnectionFailed`]; timeouts are [`Observation::Timeout`];
/// anything else is an [`Observation::Failure`].
impl ClassifyOutcome for io::Error {
    fn observation(&self) -> Observation {
        match self.kind() {
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::AddrNotAvailable => Observation::ConnectionFailed,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Observation::Timeout,
            _ => Observation::Failure,
        }
    }
}

/// [`ErrorKind::NodeDown`] and [`ErrorKind::NotEnoughNodes`] are
/// [`Observation::Neutral`] (nothing was sent); a probe failure is its
/// observation (never a success).
impl ClassifyOutcome for Error {
    fn observation(&self) -> Observation {
        match self.kind() {
            ErrorKind::Probe { observation } => match observation {
                Observation::Success | Observation::Neutral => Observation::Failure,
                other => other,
            },
            ErrorKind::NodeDown { .. } | ErrorKind::NotEnoughNodes { .. } => Observation::Neutral,
        }
    }
}

/// Boxed errors, as `tower` middleware returns them, are classified by
/// [`classify_error`].
impl ClassifyOutcome for BoxError {
    fn observation(&self) -> Observation {
        classify_error(self.as_ref())
    }
}

/// Classifies an error of unknown type by walking its chain of sources:
/// the first [`Error`], [`std::io::Error`], [`memha_proto::Error`] or timeout
/// elapsed error of `tower` or `tokio` found decides. An error with none of
/// these is [`Observation::Neutral`].
///
/// So `Timeout -> Health`'s inner service can be a
/// `tower::timeout::Timeout`: its elapsed errors count as timeouts.
pub fn classify_error(err: &(dyn std::error::Error + 'static)) -> Observation {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(err) = err.downcast_ref::<Error>() {
            return err.observation();
        }
        if let Some(err) = err.downcast_ref::<io::Error>() {
            return err.observation();
        }
        if let Some(err) = err.downcast_ref::<memha_proto::Error>() {
            return err.observation();
        }
        if err.is::<tower::timeout::error::Elapsed>() || err.is::<tokio::time::error::Elapsed>() {
            return Observation::Timeout;
        }
        current = err.source();
    }
    Observation::Neutral
}
