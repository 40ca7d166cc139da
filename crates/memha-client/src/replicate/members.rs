//! The current set of nodes: each node's stack, health and rejoin journal.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use memha_discovery::NodeId;
use memha_health::{NodeHealth, NodeState, Observation};
use memha_proto::{Command, Key, Reply};
use std::time::Duration;
use tokio::time::Instant;

use super::journal::Journal;
use crate::error::Error;
use crate::node::call::NodeCall;
use crate::node::NodeService;

/// One node of the replica set.
pub(crate) struct Member {
    /// The node's identity: what placement ranks and what reports show.
    pub(crate) id: NodeId,
    /// Where this client reaches it.
    pub(crate) addr: SocketAddr,
    timeout: Duration,
    seed: u64,
    service: NodeService,
    pub(crate) health: NodeHealth,
    journal: Mutex<Journal>,
    /// Whether reads must ask this node, which may lack keys: [`WARM`],
    /// [`PENDING`] (from its next Up), or the end of the window in
    /// nanoseconds since `created`.
    catch_up: AtomicU64,
    created: Instant,
}

/// The node holds what the others hold (as far as this client knows).
const WARM: u64 = 0;
/// The node may lack keys: its catch-up window starts when a read finds it Up.
const PENDING: u64 = u64::MAX;

impl Member {
    pub(crate) fn new(
        id: NodeId,
        addr: SocketAddr,
        service: NodeService,
        health: NodeHealth,
        journal_capacity: usize,
        timeout: Duration,
    ) -> Self {
        Member {
            seed: crate::hash::node_seed(id.as_str()),
            id,
            addr,
            timeout,
            service,
            health,
            journal: Mutex::new(Journal::new(journal_capacity)),
            catch_up: AtomicU64::new(WARM),
            created: Instant::now(),
        }
    }

    /// The node may lack keys (it joined, or is returning): reads ask it
    /// for a window from when it is next Up.
    pub(crate) fn begin_catch_up(&self) {
        self.catch_up.store(PENDING, Ordering::Release);
    }

    /// Whether this node may lack keys, so reads must ask it, `window`
    /// being the catch-up window: see
    /// [`ReplicationConfig::catch_up_window`](super::ReplicationConfig::catch_up_window).
    /// The window of a node marked by [`begin_catch_up`](Self::begin_catch_up)
    /// starts when it is first asked this while Up.
    pub(crate) fn is_catching_up(&self, window: Duration) -> bool {
        let now = || u64::try_from(self.created.elapsed().as_nanos()).unwrap_or(PENDING - 1);
        match self.catch_up.load(Ordering::Acquire) {
            WARM => false,
            PENDING if self.state() != NodeState::Up => !window.is_zero(),
            PENDING => {
                let end = now()
                    .saturating_add(u64::try_from(window.as_nanos()).unwrap_or(PENDING))
                    .clamp(WARM + 1, PENDING - 1);
                let _ = self.catch_up.compare_exchange(
                    PENDING,
                    end,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                !window.is_zero()
            }
            end if now() < end => true,
            end => {
                let _ =
                    self.catch_up
                        .compare_exchange(end, WARM, Ordering::AcqRel, Ordering::Acquire);
                false
            }
        }
    }

    /// The seed of its identity: what placement ranks and markers name.
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    pub(crate) fn state(&self) -> NodeState {
        self.health.state()
    }

    /// Whether, as of `now`, the node has had requests outstanding with no
    /// answer for `after` or longer (never, for a zero `after`): it is
    /// passed over by reads and not waited for by writes, long before its
    /// requests time out. `now` is the caller's, so a look at several
    /// nodes reads the clock once.
    pub(crate) fn is_stalled_at(&self, after: Duration, now: std::time::Instant) -> bool {
        !after.is_zero() && self.service.stalled_for(now) >= after
    }

    /// Sends one command through the node's stack, waiting for room and
    /// the answer within the timeout.
    pub(crate) async fn call(&self, command: Command) -> Result<Reply, Error> {
        self.service.send(command, self.timeout).await
    }

    /// [`call`](Self::call), giving up after `wait` if that is shorter
    /// than the timeout.
    pub(crate) async fn call_within(
        &self,
        command: Command,
        wait: Duration,
    ) -> Result<Reply, Error> {
        self.service.send(command, wait.min(self.timeout)).await
    }

    /// One request on the node, for the caller to bound: a fan-out bounds
    /// all its calls with one timer.
    pub(crate) fn start(&self, command: Command) -> NodeCall {
        self.service.start(command)
    }

    pub(crate) fn journal(&self) -> MutexGuard<'_, Journal> {
        // A panic while holding the journal leaves it usable: it is a plain set.
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn record_missed(&self, key: &Key) {
        self.journal().record(key);
    }

    /// Takes the node Down at once: it failed a write, or, as a key's
    /// primary, left a coordinated operation's request unanswered (the
    /// health threshold would keep the operation on it for another
    /// timeout, and deciding elsewhere while it is Up could put two
    /// primaries on one key). A key the node may lack or hold stale
    /// (`missed`) is journaled, so the node is made safe before it serves
    /// reads again.
    pub(crate) fn take_down(&self, missed: Option<&Key>) {
        if let Some(key) = missed {
            self.record_missed(key);
        }
        self.health.record(Observation::ConnectionFailed);
    }

    pub(crate) fn node_service(&self) -> &NodeService {
        &self.service
    }
}

/// The members, swapped whole when discovery changes them, read without locks.
#[derive(Default)]
pub(crate) struct Members {
    current: ArcSwap<Vec<Arc<Member>>>,
}

impl Members {
    pub(crate) fn snapshot(&self) -> Arc<Vec<Arc<Member>>> {
        self.current.load_full()
    }

    pub(crate) fn get(&self, addr: SocketAddr) -> Option<Arc<Member>> {
        self.current.load().iter().find(|m| m.addr == addr).cloned()
    }

    pub(crate) fn get_by_id(&self, id: &NodeId) -> Option<Arc<Member>> {
        self.current.load().iter().find(|m| &m.id == id).cloned()
    }

    /// Adds a member unless one with its identity or address exists.
    pub(crate) fn insert(&self, member: Arc<Member>) -> bool {
        let mut added = false;
        self.current.rcu(|members| {
            added = !members
                .iter()
                .any(|m| m.id == member.id || m.addr == member.addr);
            let mut next = Vec::clone(members);
            if added {
                next.push(member.clone());
            }
            next
        });
        added
    }

    pub(crate) fn remove(&self, id: &NodeId) -> Option<Arc<Member>> {
        let mut removed = None;
        self.current.rcu(|members| {
            let mut next = Vec::clone(members);
            removed = next
                .iter()
                .position(|m| &m.id == id)
                .map(|i| next.remove(i));
            next
        });
        removed
    }
}
