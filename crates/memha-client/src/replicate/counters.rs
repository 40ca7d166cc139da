//! What the replication layer did, counted and traced in one place, so
//! every event kind a trace shows is also in [`ReplicationMetrics`].

use std::net::SocketAddr;

use memha_discovery::NodeId;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use memha_health::NodeState;
use memha_proto::Key;

use crate::trace::key_hash;

/// Something the replication layer did. Keys are traced by hash only.
pub(crate) enum Event<'a> {
    /// A copy was written to `node`, which missed the key or held another.
    Repaired {
        node: &'a NodeId,
        key: &'a Key,
        why: &'static str,
    },
    /// The nodes a read asked disagreed.
    Diverged { key: &'a Key },
    /// A read's subset missed: the other Up nodes are asked.
    MissFailover { key: &'a Key },
    /// Fewer nodes acknowledged a write than the ack policy requires.
    PartialWrite {
        acked: usize,
        required: usize,
        failed: &'a [SocketAddr],
    },
    /// A read's nodes were slow: `nodes` others were asked in their place.
    Hedged { nodes: usize },
    /// A write's missed nodes were recorded on `holders` nodes.
    Marked {
        key: &'a Key,
        missed: usize,
        holders: usize,
    },
    /// A read let copies known to be stale lose.
    StaleLost { key: &'a Key, copies: usize },
    /// Keys a returning node missed were deleted on it.
    Invalidated { node: &'a NodeId, keys: usize },
    /// A returning node was flushed.
    Flushed { node: &'a NodeId },
    /// A node joined the set.
    NodeAdded { node: &'a NodeId },
    /// A node left the set (discovery no longer lists it).
    NodeRemoved { node: &'a NodeId },
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) repairs: AtomicU64,
    pub(crate) divergences: AtomicU64,
    pub(crate) miss_failovers: AtomicU64,
    pub(crate) hedges: AtomicU64,
    pub(crate) partial_writes: AtomicU64,
    pub(crate) invalidated: AtomicU64,
    pub(crate) stale_marks: AtomicU64,
    pub(crate) stale_copies: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) nodes_added: AtomicU64,
    pub(crate) nodes_removed: AtomicU64,
}

impl Counters {
    /// Counts `event` and traces it.
    pub(crate) fn record(&self, event: Event<'_>) {
        let one = |counter: &AtomicU64| {
            counter.fetch_add(1, Relaxed);
        };
        match event {
            Event::Repaired { node, key, why } => {
                one(&self.repairs);
                tracing::debug!(%node, key_hash = key_hash(key), why, "repaired");
            }
            Event::Diverged { key } => {
                one(&self.divergences);
                tracing::debug!(key_hash = key_hash(key), "replicas diverged");
            }
            Event::MissFailover { key } => {
                one(&self.miss_failovers);
                let message = "subset missed; asking the other nodes";
                tracing::debug!(key_hash = key_hash(key), "{message}");
            }
            Event::Hedged { nodes } => {
                self.hedges.fetch_add(nodes as u64, Relaxed);
                tracing::debug!(nodes, "nodes slow to answer; asking others in their place");
            }
            Event::PartialWrite {
                acked,
                required,
                failed,
            } => {
                one(&self.partial_writes);
                tracing::debug!(
                    acked,
                    required,
                    ?failed,
                    "write not acknowledged by enough nodes"
                );
            }
            Event::Marked {
                key,
                missed,
                holders,
            } => {
                one(&self.stale_marks);
                let message = "recorded the nodes that missed a write";
                tracing::debug!(key_hash = key_hash(key), missed, holders, "{message}");
            }
            Event::StaleLost { key, copies } => {
                self.stale_copies.fetch_add(copies as u64, Relaxed);
                tracing::debug!(
                    key_hash = key_hash(key),
                    copies,
                    "copies known to be stale lost"
                );
            }
            Event::Invalidated { node, keys } => {
                self.invalidated.fetch_add(keys as u64, Relaxed);
                tracing::info!(%node, keys, "returning node's missed keys invalidated");
            }
            Event::Flushed { node } => {
                one(&self.flushes);
                tracing::info!(%node, "returning node flushed");
            }
            Event::NodeAdded { node } => {
                one(&self.nodes_added);
                tracing::info!(%node, "node added");
            }
            Event::NodeRemoved { node } => {
                one(&self.nodes_removed);
                tracing::info!(%node, "node removed");
            }
        }
    }

    pub(crate) fn snapshot(&self, nodes: Vec<NodeStatus>) -> ReplicationMetrics {
        ReplicationMetrics {
            repairs: self.repairs.load(Relaxed),
            divergences: self.divergences.load(Relaxed),
            miss_failovers: self.miss_failovers.load(Relaxed),
            hedges: self.hedges.load(Relaxed),
            partial_writes: self.partial_writes.load(Relaxed),
            invalidated: self.invalidated.load(Relaxed),
            stale_marks: self.stale_marks.load(Relaxed),
            stale_copies: self.stale_copies.load(Relaxed),
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
    /// The node's identity: the name it was given or discovered by, else
    /// its address. Placement ranks identities.
    pub id: NodeId,
    /// The address this client reaches the node at.
    pub addr: SocketAddr,
    /// Its health state.
    pub state: NodeState,
    /// Keys journaled for it while it was away.
    pub journaled: usize,
    /// State changes it went through (Down, Rejoining, Up...) since it was added.
    pub transitions: u64,
    /// Whether it may lack keys (it joined or returned lately), so that
    /// every read asks it: see [`ReplicationConfig::catch_up_window`](crate::ReplicationConfig::catch_up_window).
    pub catching_up: bool,
}

/// A snapshot of the replication layer's counters, from
/// [`Replicate::metrics`](crate::Replicate::metrics) (the servers' own
/// counters are [`Client::stats`](crate::Client::stats)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicationMetrics {
    /// Copies written to nodes that missed a key or held another copy.
    pub repairs: u64,
    /// Reads whose nodes disagreed.
    pub divergences: u64,
    /// Reads that asked the remaining Up nodes after their subset missed.
    pub miss_failovers: u64,
    /// Nodes a read asked in place of nodes slower than the hedge delay.
    pub hedges: u64,
    /// Writes that fewer nodes acknowledged than the ack policy requires.
    pub partial_writes: u64,
    /// Keys deleted on returning nodes to make them safe.
    pub invalidated: u64,
    /// Writes some node missed whose record (a stale marker: which nodes
    /// missed it) was written to the nodes that stored them.
    pub stale_marks: u64,
    /// Copies that lost a read because a marker said they missed a write.
    pub stale_copies: u64,
    /// Returning nodes flushed because their journal overflowed (or by policy).
    pub flushes: u64,
    /// Nodes added, by the builder's list or by discovery.
    pub nodes_added: u64,
    /// Nodes removed by discovery.
    pub nodes_removed: u64,
    /// Every node and its state.
    pub nodes: Vec<NodeStatus>,
}
