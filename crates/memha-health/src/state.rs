//! Node states and the transitions between them.

use std::fmt;
use std::net::SocketAddr;

/// The health state of one node.
///
/// | from | to | when ([`Cause`]) |
/// | --- | --- | --- |
/// | Joining | Up | its first probe answers ([`Cause::Answered`]) |
/// | Joining, Up, Rejoining | Down | a connection is refused, reset or closed ([`Cause::ConnectionFailed`]), or `timeout_threshold` consecutive timeouts ([`Cause::Failures`]) |
/// | Down | Rejoining | a probe answers again ([`Cause::Returned`] with the [`RejoinReason`]) |
/// | Down | Up | a probe answers a node that had never answered before ([`Cause::Answered`]) |
/// | Up | Rejoining | a probe finds a new process: it restarted between two probes ([`Cause::Returned`] with [`RejoinReason::Restarted`]) |
/// | Rejoining | Up | the [`RejoinHook`](crate::RejoinHook) made it safe, or there is no hook ([`Cause::MadeSafe`]) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Discovered, not yet probed: takes no reads.
    Joining,
    /// Healthy: takes reads and writes.
    Up,
    /// Failing: requests fail fast, the node is probed with backoff.
    Down,
    /// Answers again but is quarantined until made safe: takes writes, no reads.
    Rejoining,
}

impl NodeState {
    /// Whether reads may go to the node (only when [`Up`](Self::Up)).
    pub fn is_readable(self) -> bool {
        self == NodeState::Up
    }

    /// Whether writes may go to the node ([`Up`](Self::Up) or
    /// [`Rejoining`](Self::Rejoining)).
    pub fn is_writable(self) -> bool {
        matches!(self, NodeState::Up | NodeState::Rejoining)
    }

    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Joining => "joining",
            NodeState::Up => "up",
            NodeState::Down => "down",
            NodeState::Rejoining => "rejoining",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            NodeState::Joining => 0,
            NodeState::Up => 1,
            NodeState::Down => 2,
            NodeState::Rejoining => 3,
        }
    }

    pub(crate) fn from_u8(value: u8) -> NodeState {
        match value {
            0 => NodeState::Joining,
            1 => NodeState::Up,
            2 => NodeState::Down,
            _ => NodeState::Rejoining,
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a node is rejoining: what the probe that saw it again tells about
/// the data it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejoinReason {
    /// A new server process (its pid changed, its uptime went backwards or
    /// its start time moved). The restart is only known to have happened
    /// since the node's previous probe: it may predate writes the node took
    /// before it went away, so it may still hold values that are stale now.
    /// It is made safe like any rejoining node, not admitted as it is.
    Restarted,
    /// The same process as before (it was partitioned or paused): it may
    /// hold stale values and have missed deletes.
    Unreachable,
    /// The probes report no pid or uptime, so a restart cannot be told:
    /// treat it like [`Unreachable`](Self::Unreachable).
    Unknown,
}

impl RejoinReason {
    /// True only when the node surely restarted since its previous probe.
    /// That does not make it empty: see [`Restarted`](Self::Restarted).
    pub fn restarted(self) -> bool {
        self == RejoinReason::Restarted
    }
}

impl fmt::Display for RejoinReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejoinReason::Restarted => "restarted",
            RejoinReason::Unreachable => "unreachable, not restarted",
            RejoinReason::Unknown => "restart unknown",
        })
    }
}

/// Why a node changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// Its first probe answered: Joining -> Up, or Down -> Up for a node that
    /// had never answered before.
    Answered,
    /// A connection to it was refused, reset or closed: -> Down.
    ConnectionFailed,
    /// This many consecutive timeouts or failures: -> Down.
    Failures {
        /// How many in a row.
        consecutive: u32,
    },
    /// It answers again (Down -> Rejoining), or an Up node turned out to be a
    /// new process (Up -> Rejoining).
    Returned(RejoinReason),
    /// The rejoin hook made it safe, or there is no hook: Rejoining -> Up.
    MadeSafe,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Answered => f.write_str("answered its first probe"),
            Cause::ConnectionFailed => f.write_str("connection failed"),
            Cause::Failures { consecutive } => write!(f, "{consecutive} consecutive failures"),
            Cause::Returned(reason) => write!(f, "answers again ({reason})"),
            Cause::MadeSafe => f.write_str("made safe"),
        }
    }
}

/// One change of a node's state, as [`Transitions`](crate::Transitions) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Transition {
    /// The node.
    pub node: SocketAddr,
    /// The state it left.
    pub from: NodeState,
    /// The state it entered.
    pub to: NodeState,
    /// Why.
    pub cause: Cause,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {} {} -> {}: {}",
            self.node, self.from, self.to, self.cause
        )
    }
}

/// What one exchange with a node says about its health.
///
/// [`Health`](crate::Health) classifies each result with [`ClassifyOutcome`](crate::ClassifyOutcome);
/// [`NodeHealth::record`](crate::NodeHealth::record) feeds one in directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Observation {
    /// The node answered. A miss, `NOT_STORED`, `EXISTS` or even a
    /// `SERVER_ERROR` is an answer: the node is alive. Resets the count of
    /// consecutive timeouts.
    Success,
    /// Says nothing about the node (a request refused before it was sent,
    /// an invalid key, a call cancelled): ignored.
    Neutral,
    /// The node did not answer in time. `timeout_threshold` consecutive
    /// timeouts mark it down.
    Timeout,
    /// The exchange failed in a way that is neither a timeout nor a refused
    /// connection (a garbled reply, an unexpected I/O error): counted like a
    /// timeout.
    Failure,
    /// The connection was refused, reset or closed: the node is marked down
    /// at once.
    ConnectionFailed,
}

impl fmt::Display for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Observation::Success => "success",
            Observation::Neutral => "neutral",
            Observation::Timeout => "timeout",
            Observation::Failure => "failure",
            Observation::ConnectionFailed => "connection failed",
        })
    }
}
