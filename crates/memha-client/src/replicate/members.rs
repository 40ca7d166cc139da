//! The current set of nodes: each node's stack, health and rejoin journal.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use memha_health::{NodeHealth, NodeState};
use memha_proto::{Command, Key, Reply};
use std::time::Duration;

use super::journal::Journal;
use super::placement;
use crate::error::Error;
use crate::node::call::NodeCall;
use crate::node::NodeService;

/// One node of the replica set.
pub(crate) struct Member {
    pub(crate) addr: SocketAddr,
    timeout: Duration,
    seed: u64,
    service: NodeService,
    pub(crate) health: NodeHealth,
    journal: Mutex<Journal>,
}

impl Member {
    pub(crate) fn new(
        addr: SocketAddr,
        service: NodeService,
        health: NodeHealth,
        journal_capacity: usize,
        timeout: Duration,
    ) -> Self {
        Member {
            addr,
            timeout,
            seed: placement::node_seed(&addr.to_string()),
            service,
            health,
            journal: Mutex::new(Journal::new(journal_capacity)),
        }
    }

    pub(crate) fn state(&self) -> NodeState {
        self.health.state()
    }

    /// Sends one command through the node's stack, waiting for room and
    /// the answer within the timeout.
    pub(crate) async fn call(&self, command: Command) -> Result<Reply, Error> {
        self.service.send(command, self.timeout).await
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

    /// Adds a member unless one with its address exists.
    pub(crate) fn insert(&self, member: Arc<Member>) -> bool {
        let mut added = false;
        self.current.rcu(|members| {
            added = !members.iter().any(|m| m.addr == member.addr);
            let mut next = Vec::clone(members);
            if added {
                next.push(member.clone());
            }
            next
        });
        added
    }

    pub(crate) fn remove(&self, addr: SocketAddr) -> Option<Arc<Member>> {
        let mut removed = None;
        self.current.rcu(|members| {
            let mut next = Vec::clone(members);
            removed = next
                .iter()
                .position(|m| m.addr == addr)
                .map(|i| next.remove(i));
            next
        });
        removed
    }
}

/// The members ranked for one key: the placement every decision about the
/// key starts from. It borrows the members from a snapshot, so ranking a
/// key touches no reference count.
pub(crate) struct Placement<'a> {
    /// All members in rendezvous order for the key.
    pub(crate) ranked: Vec<&'a Arc<Member>>,
}

impl<'a> Placement<'a> {
    pub(crate) fn of(members: &'a [Arc<Member>], key: &[u8]) -> Placement<'a> {
        Placement {
            ranked: placement::rank(members, |member| member.seed, key),
        }
    }

    /// The key's primary: the first Up node in rendezvous order.
    pub(crate) fn primary(&self) -> Option<&'a Arc<Member>> {
        self.ranked
            .iter()
            .copied()
            .find(|m| m.state() == NodeState::Up)
    }

    /// Up nodes, in rendezvous order (the primary first).
    pub(crate) fn readable(&self) -> Vec<&'a Arc<Member>> {
        self.ranked
            .iter()
            .copied()
            .filter(|m| m.state().is_readable())
            .collect()
    }

    /// [`readable`](Self::readable), in the placement's own vector.
    pub(crate) fn into_readable(mut self) -> Vec<&'a Arc<Member>> {
        self.ranked.retain(|m| m.state().is_readable());
        self.ranked
    }

    /// Up and Rejoining nodes, in rendezvous order. Down nodes get the key
    /// journaled instead, for their return.
    pub(crate) fn writable_journaling(&self, key: &Key) -> Vec<&'a Arc<Member>> {
        let mut writable = Vec::with_capacity(self.ranked.len());
        for &member in &self.ranked {
            match member.state() {
                state if state.is_writable() => writable.push(member),
                NodeState::Down => member.record_missed(key),
                // Joining nodes are new and treated as empty: reads repair them.
                _ => {}
            }
        }
        writable
    }
}
