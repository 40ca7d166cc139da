//! What the replication layer did, counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use memha_health::NodeState;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) repairs: AtomicU64,
    pub(crate) divergences: AtomicU64,
    pub(crate) miss_failovers: AtomicU64,
    pub(crate) partial_writes: AtomicU64,
    pub(crate) invalidated: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) nodes_added: AtomicU64,
    pub(crate) nodes_removed: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self, nodes: Vec<NodeStatus>) -> Stats {
        Stats {
            repairs: self.repairs.load(Relaxed),
            divergences: self.divergences.load(Relaxed),
            miss_failovers: self.miss_failovers.load(Relaxed),
            partial_writes: self.partial_writes.load(Relaxed),
            invalidated: self.invalidated.load(Relaxed),
            flushes: self.flushes.load(Relaxed),
            nodes_added: self.nodes_added.load(Relaxed),
            nodes_removed: self.nodes_removed.load(Relaxed),
            nodes,
        }
    }
}

/// One node as the replication layer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStatus {
    /// The node's address.
    pub addr: SocketAddr,
    /// Its health state.
    pub state: NodeState,
    /// Keys journaled for it while it was away.
    pub journaled: usize,
    /// State changes it went through (Down, Rejoining, Up...) since it was added.
    pub transitions: u64,
}

/// A snapshot of the replication layer's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Copies written to nodes that missed a key or held another copy.
    pub repairs: u64,
    /// Reads whose nodes disagreed.
    pub divergences: u64,
    /// Reads that asked the remaining Up nodes after their subset missed.
    pub miss_failovers: u64,
    /// Writes that fewer nodes acknowledged than the ack policy requires.
    pub partial_writes: u64,
    /// Keys deleted on returning nodes to make them safe.
    pub invalidated: u64,
    /// Returning nodes flushed because their journal overflowed (or by policy).
    pub flushes: u64,
    /// Nodes added, by the builder's list or by discovery.
    pub nodes_added: u64,
    /// Nodes removed by discovery.
    pub nodes_removed: u64,
    /// Every node and its state.
    pub nodes: Vec<NodeStatus>,
}
