//! How the replication layer behaves.

use std::time::Duration;

/// How many nodes must acknowledge a write before it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AckPolicy {
    /// Every writable node: an acknowledged write is on every node that
    /// was Up; one node that fails it fails the write (`PartialWrite`).
    All,
    /// A majority of the writable nodes (the default): the others are given
    /// 50 ms more (a set gives none to a stalled node, see
    /// [`ReplicationConfig::stall_after`]), and those still silent or
    /// failing are recorded as missing the write (stale markers, journal)
    /// before it is acknowledged, so with 3 or more nodes one faulty node
    /// fails no write. A node that fails the write and is Down by the time
    /// the answers are in counts as absent, as if it had been Down when the
    /// write began: the write then needs a majority of the nodes still
    /// writable (at least one). (A majority of 2 is both.)
    #[default]
    Quorum,
    /// Any one node.
    One,
}

impl AckPolicy {
    /// How many of `writable` nodes must acknowledge.
    pub(crate) fn required(self, writable: usize) -> usize {
        match self {
            AckPolicy::All => writable,
            AckPolicy::Quorum => writable / 2 + 1,
            AckPolicy::One => 1,
        }
        .min(writable)
    }
}

/// What is done to a node that returns after being Down (paused,
/// partitioned, or restarted: a restart may predate writes it took before it
/// went away), so it may hold stale values and missed deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RejoinPolicy {
    /// Delete on it every key written or deleted while it was away; flush it
    /// when there were more than the journal holds (the default; keeps
    /// promise 2, no resurrection).
    #[default]
    Invalidate,
    /// Always flush it.
    Flush,
    /// Admit it as it is. Deleted keys may come back from it: only for
    /// data where that does not matter.
    Trust,
}

/// Settings of the replication layer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicationConfig {
    /// Who must acknowledge a write (default [`AckPolicy::Quorum`]).
    pub ack: AckPolicy,
    /// How many Up nodes a read asks first; `None` is ceil(n/2) of the Up
    /// nodes, at least two.
    pub read_nodes: Option<usize>,
    /// Return a read on the first hit and finish reading and repairing in
    /// the background (default false: the read waits for its subset and
    /// repairs before answering).
    pub return_on_first_hit: bool,
    /// What a node that returns, restarted or not, needs (default [`RejoinPolicy::Invalidate`]).
    pub rejoin: RejoinPolicy,
    /// How many keys each Down node's journal holds before it overflows
    /// into a flush (default 100,000).
    pub journal_capacity: usize,
    /// How long building a client waits for its first nodes to be probed (default 2 s).
    pub startup_wait: Duration,
    /// How long a node that may lack keys is read first, so that one read
    /// of a key repairs it there (default 1 hour; zero turns it off). See
    /// [`catch_up_window`](Self::catch_up_window).
    pub catch_up_window: Duration,
    /// How long the record that a node missed a write of a key is kept in
    /// the cluster for other clients (default 24 hours). See
    /// [`stale_marker_ttl`](Self::stale_marker_ttl).
    pub stale_marker_ttl: Duration,
    /// How long a deleted key leaves a tombstone on each node (default
    /// 4 s; zero deletes outright). See [`tombstone`](Self::tombstone).
    pub tombstone: Duration,
    /// How long a read waits for a node it asked before it asks another
    /// one in its place (default 3 ms; zero never hedges). See
    /// [`hedge_after`](Self::hedge_after).
    pub hedge_after: Duration,
    /// How long a node may have requests outstanding with no answer before
    /// reads pass it over and writes stop waiting for it (default 20 ms;
    /// zero turns it off). See [`stall_after`](Self::stall_after).
    pub stall_after: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            ack: AckPolicy::Quorum,
            read_nodes: None,
            return_on_first_hit: false,
            rejoin: RejoinPolicy::Invalidate,
            journal_capacity: 100_000,
            startup_wait: Duration::from_secs(2),
            catch_up_window: Duration::from_secs(3600),
            stale_marker_ttl: super::stale::DEFAULT_MARKER_TTL,
            tombstone: Duration::from_secs(4),
            hedge_after: Duration::from_millis(3),
            stall_after: Duration::from_millis(20),
        }
    }
}

impl ReplicationConfig {
    /// Sets the ack policy.
    pub fn ack(mut self, ack: AckPolicy) -> Self {
        self.ack = ack;
        self
    }

    /// Sets how many Up nodes a read asks first (at least 1).
    pub fn read_nodes(mut self, nodes: usize) -> Self {
        self.read_nodes = Some(nodes.max(1));
        self
    }

    /// Returns reads on the first hit, repairing in the background.
    pub fn return_on_first_hit(mut self, on: bool) -> Self {
        self.return_on_first_hit = on;
        self
    }

    /// Sets the rejoin policy.
    pub fn rejoin(mut self, policy: RejoinPolicy) -> Self {
        self.rejoin = policy;
        self
    }

    /// Sets the journal capacity per Down node.
    pub fn journal_capacity(mut self, keys: usize) -> Self {
        self.journal_capacity = keys;
        self
    }

    /// Sets how long building a client waits for its first nodes.
    pub fn startup_wait(mut self, wait: Duration) -> Self {
        self.startup_wait = wait;
        self
    }

    /// Sets how long a node that may lack keys is read first.
    ///
    /// A node may lack keys when it joins the cluster after the client
    /// started (a new node, or one that was not up at start), and when it
    /// returns (restarted empty, or with the keys it missed deleted). For
    /// this long after it turns Up, every read asks it, besides the ones
    /// it would ask anyway, so a key read once is repaired on it: promise 3
    /// for nodes a read would not otherwise ask. It costs no extra
    /// requests while no more than ceil(n/2) nodes catch up at once (they
    /// take the place of others in the read); beyond that, reads ask more
    /// nodes. A key first read after the window may stay missing on such a
    /// node until a read happens to ask it. Size it to the TTL of your
    /// entries; zero turns it off.
    pub fn catch_up_window(mut self, window: Duration) -> Self {
        self.catch_up_window = window;
        self
    }

    /// Sets how long the record that a node missed a write is kept.
    ///
    /// When a write of a key is not stored by some node (Down or Joining
    /// for this client, or failing the write), the nodes that stored it
    /// also keep a small record of that, under the reserved prefix
    /// `__memha:stale:`, before the write is acknowledged. Any client
    /// that later finds that node's copy disagreeing with the others lets
    /// it lose and repairs it, even a client that never saw the node fail
    /// (promise 2 across clients). The writer removes its records once it
    /// has made the node safe on its return; this lifetime bounds them
    /// otherwise (the writer stopped, or the node stayed away). A node cut
    /// off from a writer for longer than this may serve that writer's
    /// older copies to other clients after it.
    pub fn stale_marker_ttl(mut self, ttl: Duration) -> Self {
        self.stale_marker_ttl = ttl;
        self
    }

    /// Sets how long a deleted key leaves a tombstone on each node.
    ///
    /// A delete does not remove the item at once: it marks it stale on
    /// every node (`md <key> I T<secs>`), and it expires after this long.
    /// memha's reads treat such a copy as deleted and never copy it, and a
    /// read that raced the delete cannot add the old value back onto a node
    /// the delete already passed (its add finds the tombstone), which a
    /// plain delete cannot prevent. It must outlast a read's rounds (three
    /// node timeouts). A plain memcached client's `get` still returns a
    /// tombstoned value until it expires; `add`, `incr` and friends through
    /// memha treat the key as absent. Zero deletes outright.
    pub fn tombstone(mut self, lifetime: Duration) -> Self {
        self.tombstone = lifetime;
        self
    }

    /// Sets how long a read waits for a node before asking another.
    ///
    /// memcached answers in well under a millisecond; a node that has not
    /// answered a read after this long may be paused, cut off or just
    /// slow. The read then also asks as many other Up nodes as are still
    /// silent. When it may answer without the silent ones is up to
    /// [`stall_after`](Self::stall_after). The silent calls finish (and
    /// time out against their node) in the background. Each hedge costs
    /// one more request: while the nodes are healthy, only reads slower
    /// than this (node requests per op unchanged at 2.10 in the
    /// benchmark). Reads that prime a coordinated operation never hedge.
    /// Timers have millisecond resolution, so the delay is 1-2 ms more
    /// than set. Zero never hedges; hedging also needs `stall_after`.
    pub fn hedge_after(mut self, delay: Duration) -> Self {
        self.hedge_after = delay;
        self
    }

    /// Sets how long a node may leave requests unanswered before it counts
    /// as stalled.
    ///
    /// A node whose connection has had requests outstanding with no answer
    /// read for this long is stalled (a fault, not a slow moment). A read
    /// asks it only after the other Up nodes (unless it is the key's
    /// primary, which is always asked) and may answer without it, as it
    /// would with the node Down:
    /// - on a hit, when two or more answers are the same live copy (as a
    ///   read that asked only those nodes);
    /// - on a miss or a disagreement, once every other Up node was asked
    ///   and more than half of all the nodes answered, not counting nodes
    ///   catching up (every write acknowledged with at most one faulty
    ///   node is on a majority). Otherwise it waits for every node asked:
    ///   a silent node may hold the only current copy.
    ///
    /// So a frozen node delays a read by about this long rather than its
    /// timeout. Reads of stale markers and the writes of them pass it over
    /// likewise (once a majority answered, or one holder stored the
    /// record). A set that met its ack policy does not give it the 50 ms
    /// grace: it is recorded as missing the set at once (and the record
    /// removed if it applies the set after all). Deletes and touches still
    /// give it the grace: whether they found the key may rest on that
    /// node. It stays Up (a stall alone never takes it Down: its timeouts
    /// do), and counts as before as soon as it answers again. Reads that
    /// prime a coordinated operation wait for every node. Zero turns it
    /// off (and with it hedging).
    pub fn stall_after(mut self, after: Duration) -> Self {
        self.stall_after = after;
        self
    }

    /// How many of `up` nodes a read asks first: by default ceil(n/2), and
    /// at least two when there are two, so a copy that missed a write (on
    /// a node another client lost) always meets one that did not and the
    /// read sees them disagree.
    pub(crate) fn read_count(&self, up: usize) -> usize {
        self.read_nodes
            .unwrap_or(up.div_ceil(2).max(2))
            .clamp(1, up.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_required() {
        assert_eq!(AckPolicy::All.required(3), 3);
        assert_eq!(AckPolicy::Quorum.required(3), 2);
        assert_eq!(AckPolicy::Quorum.required(4), 3);
        assert_eq!(AckPolicy::One.required(3), 1);
        assert_eq!(AckPolicy::One.required(0), 0);
    }

    #[test]
    fn reads_ask_half_the_up_nodes_rounded_up() {
        let config = ReplicationConfig::default();
        assert_eq!(
            [1, 2, 3, 4, 5].map(|n| config.read_count(n)),
            [1, 2, 2, 2, 3]
        );
        assert_eq!(config.clone().read_nodes(9).read_count(3), 3);
    }
}
