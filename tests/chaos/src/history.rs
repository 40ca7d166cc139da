//! What happened during a run: every operation, fault and health change,
//! stamped with a monotonic clock started with the run.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use memha_client::health::Transition;
use memha_client::Error;

/// The run's monotonic clock: time since the run started.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    /// Time since the start.
    pub fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// How long an item lives, as the workload asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// No expiry.
    Never,
    /// Expires this many seconds after it is stored.
    Secs(u32),
}

impl fmt::Display for Life {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Life::Never => f.write_str("never"),
            Life::Secs(secs) => write!(f, "{secs}s"),
        }
    }
}

/// An operation the workload made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `get`.
    Get,
    /// `set` of a new value.
    Set {
        /// The value (unique per key: it carries the key and a sequence number).
        value: Bytes,
        /// Its flags.
        flags: u32,
        /// Its lifetime.
        life: Life,
    },
    /// `add` of a new value (stored only if the key holds nothing).
    Add {
        /// The value.
        value: Bytes,
        /// Its flags.
        flags: u32,
        /// Its lifetime.
        life: Life,
    },
    /// `delete`.
    Delete,
    /// `touch` with a new lifetime.
    Touch {
        /// The new lifetime.
        life: Life,
    },
}

impl Op {
    /// The operation's name.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set { .. } => "set",
            Op::Add { .. } => "add",
            Op::Delete => "delete",
            Op::Touch { .. } => "touch",
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A read hit.
    Item {
        /// The value read.
        value: Bytes,
        /// Its flags.
        flags: u32,
        /// Its remaining lifetime, `None` for no expiry.
        expires_in: Option<Duration>,
    },
    /// A read missed.
    Miss,
    /// A store was applied.
    Stored,
    /// An `add` found the key taken.
    NotStored,
    /// A delete removed the item.
    Deleted,
    /// A delete or touch found nothing.
    NotFound,
    /// A touch updated the item.
    Touched,
    /// The call failed: not acknowledged, it may or may not have applied.
    Failed(Failure),
}

impl Outcome {
    /// Whether the call failed.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }
}

/// A failed call, as the client reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The error kind's name (`Timeout`, `PartialWrite`, ...).
    pub kind: String,
    /// The whole message.
    pub message: String,
}

impl Failure {
    /// From a client error.
    pub fn of(error: &Error) -> Failure {
        let kind = format!("{:?}", error.kind());
        let kind = kind
            .split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("Other")
            .to_owned();
        Failure {
            kind,
            message: error.to_string(),
        }
    }
}

/// Which part of the run an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The workload, under faults.
    Load,
    /// The reads after every fault healed.
    Verify,
}

/// One operation, from its start to its end.
#[derive(Debug, Clone)]
pub struct Record {
    /// The task that made it (the owner of the key, for owned keys).
    pub task: usize,
    /// The client it went through, when the run has several (`None` with
    /// one client).
    pub client: Option<usize>,
    /// The key.
    pub key: String,
    /// What was asked.
    pub op: Op,
    /// When the call started.
    pub start: Duration,
    /// When it returned.
    pub end: Duration,
    /// What it returned.
    pub outcome: Outcome,
    /// During the load or the verification.
    pub phase: Phase,
}

impl Record {
    /// How long the call took.
    pub fn latency(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

/// Seconds with milliseconds.
pub(crate) struct Secs(pub(crate) Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:8.3}", self.0.as_secs_f64())
    }
}

/// A value as the histories show it: `#<seq>` for the workload's values
/// (`<key>|<seq>|<padding>`), else its first bytes, escaped.
pub(crate) struct ShowValue<'a>(pub(crate) &'a [u8]);

impl fmt::Display for ShowValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = self.0.splitn(3, |&b| b == b'|');
        let (_, seq) = (parts.next(), parts.next());
        match seq.and_then(|seq| std::str::from_utf8(seq).ok()) {
            Some(seq) if parts.next().is_some() => {
                write!(f, "#{seq} ({} bytes)", self.0.len())
            }
            _ => {
                let shown: String = self
                    .0
                    .iter()
                    .take(48)
                    .flat_map(|&b| std::ascii::escape_default(b))
                    .map(char::from)
                    .collect();
                write!(f, "{shown:?}{}", if self.0.len() > 48 { "..." } else { "" })
            }
        }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{} ->{}] task {:2}",
            Secs(self.start),
            Secs(self.end),
            self.task
        )?;
        if let Some(client) = self.client {
            write!(f, " client {client}")?;
        }
        write!(f, " {:6} {}", self.op.name(), self.key)?;
        match &self.op {
            Op::Set { value, flags, life } | Op::Add { value, flags, life } => {
                write!(f, " = {} f{flags} ttl {life}", ShowValue(value))?;
            }
            Op::Touch { life } => write!(f, " ttl {life}")?,
            Op::Get | Op::Delete => {}
        }
        f.write_str(" -> ")?;
        match &self.outcome {
            Outcome::Item {
                value,
                flags,
                expires_in,
            } => {
                write!(f, "hit {} f{flags} ttl ", ShowValue(value))?;
                match expires_in {
                    Some(left) => write!(f, "{}s", left.as_secs()),
                    None => f.write_str("never"),
                }
            }
            Outcome::Miss => f.write_str("miss"),
            Outcome::Stored => f.write_str("stored"),
            Outcome::NotStored => f.write_str("not stored"),
            Outcome::Deleted => f.write_str("deleted"),
            Outcome::NotFound => f.write_str("not found"),
            Outcome::Touched => f.write_str("touched"),
            Outcome::Failed(failure) => write!(f, "FAILED {}", failure.message),
        }?;
        if self.phase == Phase::Verify {
            f.write_str(" (verification)")?;
        }
        Ok(())
    }
}

/// A fault the schedule injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `SIGKILL`; healed by a restart (empty).
    Kill,
    /// `SIGSTOP`; healed by `SIGCONT`.
    Pause,
    /// Kill and start again at once: back empty.
    Restart,
    /// The node's proxy resets every connection.
    ProxyDrop,
    /// The node's proxy delays every byte this much.
    ProxyDelay(Duration),
    /// The node's proxy forwards nothing; on heal it delivers what it held,
    /// or with `discard` resets the connections first.
    Blackhole {
        /// Whether the held traffic is discarded on heal.
        discard: bool,
    },
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Kill => f.write_str("kill"),
            FaultKind::Pause => f.write_str("pause"),
            FaultKind::Restart => f.write_str("restart-empty"),
            FaultKind::ProxyDrop => f.write_str("proxy-drop"),
            FaultKind::ProxyDelay(delay) => write!(f, "proxy-delay-{}ms", delay.as_millis()),
            FaultKind::Blackhole { discard: false } => f.write_str("blackhole"),
            FaultKind::Blackhole { discard: true } => f.write_str("blackhole-reset"),
        }
    }
}

impl FaultKind {
    /// Whether it is done by the proxies (the process runs on), so that it
    /// may hit some clients only.
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            FaultKind::ProxyDrop | FaultKind::ProxyDelay(_) | FaultKind::Blackhole { .. }
        )
    }

    /// The kind's name without parameters, for counting.
    pub fn family(&self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Restart => "restart-empty",
            FaultKind::ProxyDrop => "proxy-drop",
            FaultKind::ProxyDelay(_) => "proxy-delay",
            FaultKind::Blackhole { .. } => "blackhole",
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    /// The node's index in the cluster.
    pub node: usize,
    /// What was done.
    pub kind: FaultKind,
    /// When it began.
    pub start: Duration,
    /// When it was healed (a restart heals itself at once).
    pub end: Option<Duration>,
    /// What went wrong injecting or healing it, if anything.
    pub error: Option<String>,
    /// The clients whose proxies to the node it faulted, when only some of
    /// them were (a one-sided fault: the other clients still reach the
    /// node). `None` for a fault every client sees: a process fault, or a
    /// network fault on every client's proxy.
    pub clients: Option<Vec<usize>>,
}

impl FaultRecord {
    /// Whether only some clients saw it.
    pub fn one_sided(&self) -> bool {
        self.clients.is_some()
    }
}

impl fmt::Display for FaultRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} ->", Secs(self.start))?;
        match self.end {
            Some(end) => write!(f, "{}]", Secs(end))?,
            None => f.write_str("   (open)]")?,
        }
        write!(f, " fault  node {} {}", self.node, self.kind)?;
        if let Some(clients) = &self.clients {
            let shown: Vec<String> = clients.iter().map(|c| c.to_string()).collect();
            write!(
                f,
                " for client{} {} only",
                if clients.len() == 1 { "" } else { "s" },
                shown.join(",")
            )?;
        }
        if let Some(error) = &self.error {
            write!(f, " (harness error: {error})")?;
        }
        Ok(())
    }
}

/// A node's health change as the client saw it.
#[derive(Debug, Clone)]
pub struct HealthRecord {
    /// When it was seen.
    pub at: Duration,
    /// The client that saw it, when the run has several.
    pub client: Option<usize>,
    /// The node's index in the cluster.
    pub node: usize,
    /// The node's address (the proxy's, the seeing client's own).
    pub addr: SocketAddr,
    /// The change.
    pub transition: Transition,
}

impl fmt::Display for HealthRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]           health", Secs(self.at))?;
        if let Some(client) = self.client {
            write!(f, " client {client}")?;
        }
        write!(
            f,
            " node {} {} -> {} ({})",
            self.node, self.transition.from, self.transition.to, self.transition.cause
        )
    }
}
