//! The crate's one error type.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::state::Observation;

/// A boxed error, as rejoin hooks and custom probes return them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The node is [`Down`](crate::NodeState::Down): [`Health`](crate::Health)
    /// refused the request in `poll_ready` without queueing or sending it.
    /// Transient: the same service becomes ready again once the node is back.
    NodeDown {
        /// The node that is down.
        node: SocketAddr,
    },
    /// [`HealthTable::wait_for_nodes`](crate::HealthTable::wait_for_nodes)
    /// ran out of time.
    NotEnoughNodes {
        /// How many nodes were wanted up.
        wanted: usize,
        /// How many were up when the time ran out.
        up: usize,
        /// How long was waited.
        waited: Duration,
    },
    /// A health probe failed; `observation` says how it counts against the node.
    Probe {
        /// How the failure is counted: [`Observation::ConnectionFailed`] marks
        /// the node down at once, [`Observation::Timeout`] and
        /// [`Observation::Failure`] count towards the timeout threshold.
        observation: Observation,
    },
}

/// The error of every fallible operation in this crate. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Error { kind, source: None }
    }

    pub(crate) fn node_down(node: SocketAddr) -> Self {
        Error::new(ErrorKind::NodeDown { node })
    }

    /// A failed probe, for [`Probe`](crate::Probe) implementations:
    /// `observation` says how the failure counts against the node and
    /// `source` says what happened.
    ///
    /// A probe failure given [`Observation::Success`] or
    /// [`Observation::Neutral`] is counted as [`Observation::Failure`]: a
    /// probe that did not get an answer never shows a node healthy.
    pub fn probe(observation: Observation, source: impl Into<BoxError>) -> Self {
        Error {
            kind: ErrorKind::Probe { observation },
            source: Some(Arc::from(source.into())),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True when a request was refused because its node is down.
    pub fn is_node_down(&self) -> bool {
        matches!(self.kind, ErrorKind::NodeDown { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::NodeDown { node } => {
                write!(f, "node {node} is down: request refused without sending")
            }
            ErrorKind::NotEnoughNodes { wanted, up, waited } => write!(
                f,
                "only {up} node(s) up after waiting {waited:?} for {wanted}"
            ),
            ErrorKind::Probe { observation } => {
                write!(f, "health probe failed ({observation})")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// The error and its chain of sources, on one line, for logs.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        out.push_str(": ");
        out.push_str(&err.to_string());
        source = err.source();
    }
    out
}
