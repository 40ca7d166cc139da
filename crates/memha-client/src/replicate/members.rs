//! The current set of nodes: each node's stack, health and rejoin journal.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use memha_health::{NodeHealth, NodeState};
use memha_proto::{Command, Key, Reply};
use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use tower::{Service, ServiceExt};

use super::journal::Journal;
use super::placement;
use crate::error::{Error, ErrorKind};
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

    /// Sends one command through the node's stack.
    ///
    /// The stack's timeout bounds the answer, not the wait for room in a
    /// full window (a hung node): that wait gets its own bound, and only
    /// when the stack is not ready at once, so the fast path sets no extra timer.
    pub(crate) async fn call(&self, command: Command) -> Result<Reply, Error> {
        let mut service = self.service.clone();
        match poll_fn(|cx| Poll::Ready(service.poll_ready(cx))).await {
            Poll::Ready(ready) => {
                ready?;
                service.call(command).await
            }
            Poll::Pending => {
                let call = async move { service.ready().await?.call(command).await };
                tokio::time::timeout(self.timeout, call)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::new(ErrorKind::Timeout)
                            .with_detail("no room in the connection")
                            .with_node(self.addr))
                    })
            }
        }
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

/// The members ranked for one key: the placement every decision about the key starts from.
pub(crate) struct Placement {
    /// All members in rendezvous order for the key.
    pub(crate) ranked: Vec<Arc<Member>>,
}

impl Placement {
    pub(crate) fn of(members: &[Arc<Member>], key: &[u8]) -> Placement {
        let seeds: Vec<u64> = members.iter().map(|m| m.seed).collect();
        Placement {
            ranked: placement::rank(&seeds, key)
                .into_iter()
                .map(|i| members[i].clone())
                .collect(),
        }
    }

    /// The key's primary: the first Up node in rendezvous order.
    pub(crate) fn primary(&self) -> Option<&Arc<Member>> {
        self.ranked.iter().find(|m| m.state() == NodeState::Up)
    }

    /// Up nodes, in rendezvous order (the primary first).
    pub(crate) fn readable(&self) -> Vec<Arc<Member>> {
        self.ranked
            .iter()
            .filter(|m| m.state().is_readable())
            .cloned()
            .collect()
    }

    /// Up and Rejoining nodes, in rendezvous order. Down nodes get the key
    /// journaled instead, for their return.
    pub(crate) fn writable_journaling(&self, key: &Key) -> Vec<Arc<Member>> {
        let mut writable = Vec::with_capacity(self.ranked.len());
        for member in &self.ranked {
            match member.state() {
                state if state.is_writable() => writable.push(member.clone()),
                NodeState::Down => member.record_missed(key),
                // Joining nodes are new and treated as empty: reads repair them.
                _ => {}
            }
        }
        writable
    }
}
