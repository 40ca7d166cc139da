//! One node's state: read without locks, changed under a short lock.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, watch, Notify};
use tokio::time::Instant;

use crate::config::HealthConfig;
use crate::error::Error;
use crate::probe::ProbeReport;
use crate::state::Observation;
use crate::state::{Cause, NodeState, RejoinReason, Transition};

/// Where transitions go: the table's stream and its change counter.
#[derive(Debug)]
pub(crate) struct Events {
    pub(crate) transitions: broadcast::Sender<Transition>,
    /// Bumped on every transition and membership change.
    pub(crate) changed: watch::Sender<u64>,
}

impl Events {
    pub(crate) fn new(capacity: usize) -> Self {
        Events {
            transitions: broadcast::channel(capacity).0,
            changed: watch::channel(0).0,
        }
    }

    pub(crate) fn bump(&self) {
        self.changed
            .send_modify(|version| *version = version.wrapping_add(1));
    }
}

/// The part of a node's state that changes only under its lock.
#[derive(Debug, Default)]
struct Machine {
    /// The last successful probe's report; `None` until the node first answers.
    last_report: Option<ProbeReport>,
    /// Why the node is rejoining, while it is.
    rejoin_reason: Option<RejoinReason>,
    /// Rejoin hook attempts in the current Rejoining spell.
    rejoin_attempts: u32,
    /// When the node last returned Up (from Down or Rejoining), while it is Up.
    up_since: Option<Instant>,
    /// Downs that each came soon after the node turned Up: see [`Damping`].
    flaps: u32,
    /// Until when a Down node stays Down whatever its probes answer.
    held_until: Option<Instant>,
}

/// Holds a flapping node down: see [`HealthConfig::flap_hold_initial`].
#[derive(Debug, Clone, Copy)]
struct Damping {
    initial: Duration,
    max: Duration,
}

impl Damping {
    /// How long a node going Down after `flaps` flaps stays Down.
    fn hold(self, flaps: u32) -> Duration {
        match flaps {
            0 => Duration::ZERO,
            n => self
                .initial
                .saturating_mul(1 << (n - 1).min(20))
                .min(self.max),
        }
    }
}

pub(crate) struct NodeShared {
    addr: SocketAddr,
    /// The node's identity (its name, else its address), for reports.
    name: Arc<str>,
    threshold: u32,
    damping: Damping,
    state: AtomicU8,
    /// Bumped on every transition (under the lock, before `state` changes,
    /// so whoever sees the new state sees the new epoch), so an answer
    /// about an older state (a rejoin hook that finished late) is not
    /// applied to a newer one. Atomic: every replicated read takes its
    /// primary's, and a lock there would be shared by every request.
    epoch: AtomicU64,
    failures: AtomicU32,
    machine: Mutex<Machine>,
    /// Wakes the node's monitor to reschedule its next probe.
    pub(crate) wake: Notify,
    events: Arc<Events>,
}

/// A cheap, cloneable handle on one node's health.
///
/// Reading the state is one atomic load; recording a success on a healthy
/// node takes no lock either. [`Health`](crate::Health) records every result
/// of its inner service through it; code that talks to the node some other
/// way can [`record`](Self::record) outcomes itself.
#[derive(Clone)]
pub struct NodeHealth {
    pub(crate) shared: Arc<NodeShared>,
}

impl fmt::Debug for NodeHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHealth")
            .field("name", &self.shared.name)
            .field("addr", &self.shared.addr)
            .field("state", &self.state())
            .field("consecutive_failures", &self.consecutive_failures())
            .finish()
    }
}

impl NodeHealth {
    pub(crate) fn new(
        addr: SocketAddr,
        name: Arc<str>,
        config: &HealthConfig,
        events: Arc<Events>,
    ) -> Self {
        NodeHealth {
            shared: Arc::new(NodeShared {
                addr,
                name,
                threshold: config.timeout_threshold.max(1),
                damping: Damping {
                    initial: config.flap_hold_initial,
                    max: config.flap_hold_max,
                },
                state: AtomicU8::new(NodeState::Joining.to_u8()),
                epoch: AtomicU64::new(0),
                failures: AtomicU32::new(0),
                machine: Mutex::new(Machine::default()),
                wake: Notify::new(),
                events,
            }),
        }
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The node's identity: the name it was added under, else its address.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The node's state now (one atomic load).
    pub fn state(&self) -> NodeState {
        self.shared.state()
    }

    /// Whether reads may go to the node: it is [`NodeState::Up`].
    pub fn is_readable(&self) -> bool {
        self.state().is_readable()
    }

    /// Whether writes may go to the node: it is Up or Rejoining.
    pub fn is_writable(&self) -> bool {
        self.state().is_writable()
    }

    /// Timeouts and failures since the last answer.
    pub fn consecutive_failures(&self) -> u32 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// How many state changes the node went through since it was added.
    /// One atomic load; read after [`state`](Self::state), it counts at
    /// least the change to the state seen.
    pub fn transition_count(&self) -> u64 {
        self.shared.epoch.load(Ordering::Acquire)
    }

    /// What the last successful probe reported, if any probe succeeded yet.
    pub fn last_report(&self) -> Option<ProbeReport> {
        self.shared.lock().last_report.clone()
    }

    /// Whether a request may be sent to the node now: refused with
    /// [`ErrorKind::NodeDown`](crate::ErrorKind::NodeDown) while it is
    /// [`NodeState::Down`], so nothing queues on a dead node. The one health
    /// gate: the [`Health`](crate::Health) layer and memha-client's node
    /// stack both ask it.
    ///
    /// ```
    /// use memha_health::{probe_fn, HealthConfig, HealthTable, Observation, ProbeReport};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let table = HealthTable::new(HealthConfig::default());
    /// let probe = probe_fn(|| async { Ok(ProbeReport::new()) });
    /// let node = table.add_node("127.0.0.1:11211".parse().unwrap(), probe);
    /// assert!(node.admit().is_ok());
    /// node.record(Observation::ConnectionFailed);
    /// assert!(node.admit().is_err());
    /// # }
    /// ```
    pub fn admit(&self) -> Result<(), Error> {
        match self.state() {
            NodeState::Down => Err(Error::node_down(self.addr())),
            _ => Ok(()),
        }
    }

    /// Records the outcome of one exchange with the node.
    ///
    /// [`Observation::ConnectionFailed`] marks it Down at once;
    /// `timeout_threshold` consecutive [`Observation::Timeout`]s or
    /// [`Observation::Failure`]s mark it Down; [`Observation::Success`]
    /// resets the count; [`Observation::Neutral`] does nothing. Answers never
    /// turn a Down node Up: only a probe can, after checking for a restart.
    pub fn record(&self, observation: Observation) {
        self.shared.record(observation);
    }

    /// Whether two handles are of the same node entry.
    pub fn ptr_eq(&self, other: &NodeHealth) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl NodeShared {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn state(&self) -> NodeState {
        NodeState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // The machine is always left consistent: a panic elsewhere cannot
        // leave it half-changed, so a poisoned lock is still usable.
        self.machine.lock().unwrap_or_else(|err| err.into_inner())
    }

    pub(crate) fn record(&self, observation: Observation) {
        match observation {
            Observation::Success => {
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
            }
            Observation::Neutral => {}
            Observation::Timeout | Observation::Failure => self.count_failure(),
            Observation::ConnectionFailed => {
                if self.state() != NodeState::Down {
                    let mut machine = self.lock();
                    if self.state() != NodeState::Down {
                        self.set_state(&mut machine, NodeState::Down, Cause::ConnectionFailed);
                    }
                }
            }
        }
    }

    fn count_failure(&self) {
        if self.state() == NodeState::Down {
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= self.threshold {
            let mut machine = self.lock();
            let failures = self.failures.load(Ordering::Acquire);
            // Re-checked under the lock: another thread may have marked it
            // down, or an answer may have reset the count.
            if self.state() != NodeState::Down && failures >= self.threshold {
                self.set_state(
                    &mut machine,
                    NodeState::Down,
                    Cause::Failures {
                        consecutive: failures,
                    },
                );
            }
        } else if failures == 1 {
            // A suspect node is probed on the fast schedule.
            self.wake.notify_one();
        }
    }

    /// A probe answered with `report`.
    pub(crate) fn probe_succeeded(&self, report: ProbeReport) {
        self.record(Observation::Success);
        let mut machine = self.lock();
        if self.state() == NodeState::Down
            && machine
                .held_until
                .is_some_and(|until| Instant::now() < until)
        {
            // Held down for flapping: this answer is not heard (nor its
            // report kept: the one after the hold is compared with the last
            // report from before the node went Down).
            return;
        }
        let verdict = machine
            .last_report
            .as_ref()
            .map(|earlier| report.compare(earlier));
        machine.last_report = Some(report);
        match self.state() {
            NodeState::Joining => self.set_state(&mut machine, NodeState::Up, Cause::Answered),
            NodeState::Up => {
                if verdict == Some(RejoinReason::Restarted) {
                    self.start_rejoin(&mut machine, RejoinReason::Restarted);
                }
            }
            NodeState::Down => match verdict {
                // Never answered before: nothing was written to it through
                // this table, it joins like a new node.
                None => self.set_state(&mut machine, NodeState::Up, Cause::Answered),
                Some(reason) => self.start_rejoin(&mut machine, reason),
            },
            NodeState::Rejoining => {
                if verdict == Some(RejoinReason::Restarted) {
                    // It restarted while rejoining: the hook is told so (it
                    // makes the node safe all the same).
                    machine.rejoin_reason = Some(RejoinReason::Restarted);
                }
            }
        }
    }

    /// A probe failed: counted like a passive failure, never as an answer.
    pub(crate) fn probe_failed(&self, observation: Observation) {
        self.record(match observation {
            Observation::Success | Observation::Neutral => Observation::Failure,
            other => other,
        });
    }

    fn start_rejoin(&self, machine: &mut Machine, reason: RejoinReason) {
        machine.rejoin_reason = Some(reason);
        machine.rejoin_attempts = 0;
        self.set_state(machine, NodeState::Rejoining, Cause::Returned(reason));
    }

    /// If the node is rejoining, the next hook attempt: its epoch and info.
    pub(crate) fn begin_rejoin_attempt(&self) -> Option<(u64, RejoinReason, u32)> {
        let mut machine = self.lock();
        if self.state() != NodeState::Rejoining {
            return None;
        }
        machine.rejoin_attempts += 1;
        let reason = machine.rejoin_reason.unwrap_or(RejoinReason::Unknown);
        let epoch = self.epoch.load(Ordering::Relaxed);
        Some((epoch, reason, machine.rejoin_attempts))
    }

    /// The hook attempt begun at `epoch` succeeded: Up, unless the node
    /// changed state meanwhile.
    pub(crate) fn made_safe(&self, epoch: u64) {
        let mut machine = self.lock();
        if self.epoch.load(Ordering::Relaxed) == epoch && self.state() == NodeState::Rejoining {
            machine.rejoin_reason = None;
            self.set_state(&mut machine, NodeState::Up, Cause::MadeSafe);
        }
    }

    /// Counts flaps and holds a flapping node down.
    fn damp(&self, machine: &mut Machine, from: NodeState, to: NodeState) {
        let now = Instant::now();
        match to {
            // A return: going Down soon after it is a flap. (A node new
            // to the table has no failure behind it yet.)
            NodeState::Up if from != NodeState::Joining => machine.up_since = Some(now),
            NodeState::Down => {
                if from == NodeState::Up {
                    let up_for = machine.up_since.map(|since| now - since);
                    let flapped = up_for.is_some_and(|up_for| up_for < self.damping.max);
                    machine.flaps = if flapped { machine.flaps + 1 } else { 0 };
                }
                machine.up_since = None;
                let hold = self.damping.hold(machine.flaps);
                machine.held_until = (!hold.is_zero()).then(|| now + hold);
                if !hold.is_zero() {
                    tracing::warn!(node = %self.name, flaps = machine.flaps, ?hold, "node flapping: held down");
                }
            }
            _ => {}
        }
    }

    fn set_state(&self, machine: &mut Machine, to: NodeState, cause: Cause) {
        // Changed only under the lock (held here), read anywhere.
        self.epoch.fetch_add(1, Ordering::Release);
        let from = NodeState::from_u8(self.state.swap(to.to_u8(), Ordering::AcqRel));
        self.damp(machine, from, to);
        self.failures.store(0, Ordering::Release);
        let transition = Transition {
            node: self.addr,
            from,
            to,
            cause,
        };
        match to {
            NodeState::Down => tracing::warn!(node = %self.name, %from, %cause, "node down"),
            _ => tracing::info!(node = %self.name, %from, %to, %cause, "node state changed"),
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.transitions.send(transition);
        self.events.bump();
        if to == NodeState::Down {
            self.wake.notify_one();
        }
    }
}
