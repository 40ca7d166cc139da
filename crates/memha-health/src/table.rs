//! The health table: every node's state, a stream of transitions, and
//! waiting for enough nodes.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::broadcast;

use crate::config::HealthConfig;
use crate::error::{Error, ErrorKind};
use crate::hook::RejoinHook;
use crate::monitor::Monitor;
use crate::node::{Events, NodeHealth};
use crate::probe::Probe;
use crate::state::{NodeState, Transition};

/// How many transitions a slow observer may fall behind before it misses some.
const TRANSITION_BUFFER: usize = 1024;

/// The health of a set of nodes: one [`NodeHealth`] and one probe task per
/// node, a lock-free snapshot of the set, a stream of
/// [`Transition`]s and [`wait_for_nodes`](Self::wait_for_nodes).
///
/// Cloning is cheap and shares the table. When the last clone is dropped,
/// every node's probe task stops (handles already given out keep their last
/// state).
#[derive(Clone)]
pub struct HealthTable {
    inner: Arc<TableInner>,
}

struct TableInner {
    config: HealthConfig,
    hook: Option<Arc<dyn RejoinHook>>,
    events: Arc<Events>,
    members: Mutex<BTreeMap<SocketAddr, Member>>,
    snapshot: ArcSwap<Vec<NodeHealth>>,
}

struct Member {
    node: NodeHealth,
    _monitor: Monitor,
}

impl fmt::Debug for HealthTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthTable")
            .field("config", &self.inner.config)
            .field("has_hook", &self.inner.hook.is_some())
            .field("nodes", &**self.inner.snapshot.load())
            .finish()
    }
}

impl HealthTable {
    /// An empty table; rejoining nodes turn Up at once (no hook).
    pub fn new(config: HealthConfig) -> Self {
        Self::build(config, None)
    }

    /// An empty table whose rejoining nodes are made safe by `hook` before
    /// they turn Up.
    pub fn with_rejoin_hook(config: HealthConfig, hook: impl RejoinHook) -> Self {
        Self::build(config, Some(Arc::new(hook)))
    }

    fn build(config: HealthConfig, hook: Option<Arc<dyn RejoinHook>>) -> Self {
        HealthTable {
            inner: Arc::new(TableInner {
                config: config.normalized(),
                hook,
                events: Arc::new(Events::new(TRANSITION_BUFFER)),
                members: Mutex::new(BTreeMap::new()),
                snapshot: ArcSwap::from_pointee(Vec::new()),
            }),
        }
    }

    /// The configuration in force (clamped into range).
    pub fn config(&self) -> &HealthConfig {
        &self.inner.config
    }

    /// Adds a node in state [`NodeState::Joining`] and starts its probe task,
    /// which probes it at once. If the node is already in the table, returns
    /// its handle and drops `probe`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn add_node(&self, addr: SocketAddr, probe: impl Probe) -> NodeHealth {
        self.add_named_node(addr, addr.to_string(), probe)
    }

    /// [`add_node`](Self::add_node) for a node known by `name` (its
    /// identity, shown in traces), reached at `addr`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn add_named_node(
        &self,
        addr: SocketAddr,
        name: impl Into<Arc<str>>,
        probe: impl Probe,
    ) -> NodeHealth {
        let mut members = self.members();
        if let Some(member) = members.get(&addr) {
            return member.node.clone();
        }
        let node = NodeHealth::new(
            addr,
            name.into(),
            &self.inner.config,
            Arc::clone(&self.inner.events),
        );
        let monitor = Monitor::spawn(
            node.clone(),
            Box::new(probe),
            self.inner.hook.clone(),
            self.inner.config.clone(),
        );
        members.insert(
            addr,
            Member {
                node: node.clone(),
                _monitor: monitor,
            },
        );
        self.publish(&members);
        node
    }

    /// Removes a node and stops its probe task. Returns its handle, which
    /// keeps its last state, or `None` if it was not in the table.
    pub fn remove_node(&self, addr: SocketAddr) -> Option<NodeHealth> {
        let mut members = self.members();
        let member = members.remove(&addr)?;
        self.publish(&members);
        Some(member.node)
    }

    /// The handle of a node, if it is in the table.
    pub fn node(&self, addr: SocketAddr) -> Option<NodeHealth> {
        self.inner
            .snapshot
            .load()
            .iter()
            .find(|node| node.addr() == addr)
            .cloned()
    }

    /// The state of a node, if it is in the table.
    pub fn state(&self, addr: SocketAddr) -> Option<NodeState> {
        self.inner
            .snapshot
            .load()
            .iter()
            .find(|node| node.addr() == addr)
            .map(NodeHealth::state)
    }

    /// Every node, ordered by address: a snapshot of the membership, read
    /// without locks. Each handle's state is live.
    pub fn nodes(&self) -> Arc<Vec<NodeHealth>> {
        self.inner.snapshot.load_full()
    }

    /// How many nodes are [`NodeState::Up`] now (no locks).
    pub fn up_count(&self) -> usize {
        self.inner
            .snapshot
            .load()
            .iter()
            .filter(|node| node.state() == NodeState::Up)
            .count()
    }

    /// A stream of every state change from now on.
    pub fn transitions(&self) -> Transitions {
        Transitions {
            receiver: self.inner.events.transitions.subscribe(),
            missed: 0,
        }
    }

    /// A receiver that sees every transition and membership change (its
    /// value is a version counter): to await a change, then re-read states.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.events.changed.subscribe()
    }

    /// Waits until at least `min` nodes are [`NodeState::Up`], for at most
    /// `within`. Returns at once if they already are.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotEnoughNodes`] when the time runs out first.
    pub async fn wait_for_nodes(&self, min: usize, within: Duration) -> Result<(), Error> {
        let mut changes = self.inner.events.changed.subscribe();
        let enough = async {
            loop {
                changes.borrow_and_update();
                if self.up_count() >= min {
                    return;
                }
                if changes.changed().await.is_err() {
                    // Unreachable while `self` holds the sender; never spin.
                    std::future::pending::<()>().await;
                }
            }
        };
        match tokio::time::timeout(within, enough).await {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::new(ErrorKind::NotEnoughNodes {
                wanted: min,
                up: self.up_count(),
                waited: within,
            })),
        }
    }

    fn members(&self) -> MutexGuard<'_, BTreeMap<SocketAddr, Member>> {
        self.inner
            .members
            .lock()
            .unwrap_or_else(|err| err.into_inner())
    }

    fn publish(&self, members: &BTreeMap<SocketAddr, Member>) {
        let nodes = members.values().map(|member| member.node.clone()).collect();
        self.inner.snapshot.store(Arc::new(nodes));
        self.inner.events.bump();
    }
}

/// A stream of [`Transition`]s, from [`HealthTable::transitions`].
///
/// Each node's transitions arrive in the order they happened. An observer
/// that falls more than 1024 transitions behind skips the oldest ones
/// (counted by [`missed`](Self::missed)) and should re-read the table.
#[derive(Debug)]
pub struct Transitions {
    receiver: broadcast::Receiver<Transition>,
    missed: u64,
}

impl Transitions {
    /// The next transition; `None` once the table and every node handle are gone.
    pub async fn recv(&mut self) -> Option<Transition> {
        loop {
            match self.receiver.recv().await {
                Ok(transition) => return Some(transition),
                Err(broadcast::error::RecvError::Lagged(skipped)) => self.missed += skipped,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next transition if one is waiting.
    pub fn try_recv(&mut self) -> Option<Transition> {
        loop {
            match self.receiver.try_recv() {
                Ok(transition) => return Some(transition),
                Err(broadcast::error::TryRecvError::Lagged(skipped)) => self.missed += skipped,
                Err(_) => return None,
            }
        }
    }

    /// How many transitions this observer skipped because it fell behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}
