//! `Replicate`: one tower service over the changing set of node stacks,
//! keeping the design's promises.
//!
//! It answers the same [`Command`]s as a single node, so the [`Client`]
//! facade and any layer around it work unchanged over a cluster:
//! - `ms` (plain set), `md` and `mg` with `T` (touch) go to every writable
//!   node (Up or Rejoining) under the [`AckPolicy`]; the keys Down nodes
//!   miss are journaled for their return, and every node that misses a
//!   write (a set does not wait for a stalled one) is named in the key's
//!   stale marker on the nodes that stored it before the write is
//!   acknowledged (docs/consistency.md); `flush_all` needs every writable
//!   node, whatever the policy;
//! - `mg` asks a subset of Up nodes (the key's primary first, stalled
//!   secondaries last), asks another node in place of one silent after the
//!   hedge delay, asks the others before answering a miss; when copies
//!   disagree it asks every Up
//!   node and the stale markers, lets marked copies lose, and repairs nodes
//!   that missed (`ME`, never clobbering a newer write) or diverged
//!   (CAS-guarded set, or delete of a stale copy);
//! - add, replace, append, prepend, `cas`, CAS-guarded delete and `ma` are
//!   decided by the key's primary (the first Up node in rendezvous order of
//!   the node identities), primed first by a read of the key, and what it
//!   then holds is written to the others;
//! - a node that returns, restarted or not, is made safe first: the keys it
//!   missed are deleted on it, or it is flushed (a restart may predate
//!   writes it took before it went away).
//!
//! Every operation's future is boxed, and the hot ones (get, set) are kept
//! within 1,024 bytes (a guard test measures them): a box
//! is allocated on the worker thread that starts the operation and often
//! freed on another, and glibc serves blocks up to 1,032 bytes from
//! per-thread caches while larger ones take arena locks both workers
//! contend for (at 1,576 bytes, five times the futex calls per operation).
//! So the rare rounds are boxed, and the functions on the common path are
//! `async move` blocks rather than `async fn`s, which keep every argument
//! twice (`tests::a_replicated_operation_s_future_fits_the_allocator_s_thread_cache`).
//!
//! [`Client`]: crate::Client

mod config;
mod coordinate;
mod counters;
mod fanout;
mod journal;
mod members;
mod placement;
mod read;
mod rejoin;
mod reply;
mod resolve;
mod route;
mod stale;
#[cfg(test)]
mod tests;
mod write;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use memha_discovery::{NodeAddr, NodeId, Watcher};
use memha_health::{HealthConfig, HealthTable, NodeHealth, NodeState};
use memha_proto::Command;
use tokio_util::sync::{CancellationToken, DropGuard};
use tower::discover::Change;
use tower::Service;

pub use config::{AckPolicy, RejoinPolicy, ReplicationConfig};
pub use counters::{NodeStatus, ReplicationMetrics};
pub use stale::RESERVED_PREFIX;

use self::coordinate::KeyLocks;
use self::counters::{Counters, Event};
use self::members::{Member, Members};
use self::route::Route;
use crate::error::{Error, ErrorKind};
use crate::node::NodeService;

/// Adds a node to the health table, probed as its connection connects (TLS
/// included), and builds its stack around that health handle. The name is
/// the one the node was discovered by, if not an IP address: TLS checks
/// the node's certificate against it.
pub(crate) type MakeNode = Box<
    dyn Fn(SocketAddr, &NodeId, Option<&str>, &HealthTable) -> (NodeHealth, NodeService)
        + Send
        + Sync,
>;

/// The replication layer: a `tower::Service<Command>` over every node.
///
/// Built by [`Client::builder`](crate::Client::builder); cheap to clone.
#[derive(Clone)]
pub struct Replicate {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Replicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members = self.shared.members.snapshot();
        let nodes: Vec<String> = members
            .iter()
            .map(|m| format!("{} {}", m.id, m.state().as_str()))
            .collect();
        f.debug_struct("Replicate")
            .field("nodes", &nodes)
            .field("config", &self.shared.config)
            .field("node_timeout", &self.shared.node_timeout)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    members: Members,
    health: HealthTable,
    config: ReplicationConfig,
    counters: Counters,
    key_locks: KeyLocks,
    make_node: MakeNode,
    /// This client's identity in stale markers: whose entries it may remove.
    writer: u64,
    /// Whether the first nodes are in: nodes added from then on are new to
    /// the cluster and catch up.
    established: AtomicBool,
    /// The node stack's timeout: also bounds probes and waiting for room.
    node_timeout: std::time::Duration,
    // Stops the discovery task when the last handle goes.
    _discovery: DropGuard,
    discovery: CancellationToken,
}

impl Replicate {
    pub(crate) fn new(
        config: ReplicationConfig,
        health: HealthConfig,
        node_timeout: std::time::Duration,
        make_node: MakeNode,
    ) -> Replicate {
        let token = CancellationToken::new();
        let shared = Arc::new_cyclic(|weak| Shared {
            members: Members::default(),
            health: HealthTable::with_rejoin_hook(
                health,
                rejoin::MakeSafe {
                    shared: weak.clone(),
                },
            ),
            key_locks: KeyLocks::default(),
            counters: Counters::default(),
            config,
            make_node,
            writer: stale::writer_id(),
            established: AtomicBool::new(false),
            node_timeout,
            _discovery: token.clone().drop_guard(),
            discovery: token,
        });
        Replicate { shared }
    }

    /// Adds a node known by its address: it is probed (Joining) before it
    /// takes traffic, and is treated as empty. Adding a known node does nothing.
    pub fn add_node(&self, addr: SocketAddr) {
        self.add_identified_node(NodeId::new(addr.to_string()), addr, None);
    }

    /// Adds a node known by `name` (its identity: what placement ranks, so
    /// every client agrees on a key's primary), reached at `addr`.
    pub fn add_named_node(&self, name: impl Into<String>, addr: SocketAddr) {
        self.add_identified_node(NodeId::new(name), addr, None);
    }

    /// Adds node `id` at `addr`; `host` is the name it was discovered by,
    /// if not an IP address (see [`MakeNode`]).
    fn add_identified_node(&self, id: NodeId, addr: SocketAddr, host: Option<&str>) {
        let shared = &self.shared;
        if shared.members.get_by_id(&id).is_some() || shared.members.get(addr).is_some() {
            return;
        }
        let (health, service) = (shared.make_node)(addr, &id, host, &shared.health);
        let member = Member::new(
            id,
            addr,
            service,
            health,
            shared.config.journal_capacity,
            shared.node_timeout,
        );
        if shared.established.load(Ordering::Acquire) {
            member.begin_catch_up();
        }
        let member = Arc::new(member);
        if shared.members.insert(member.clone()) {
            shared
                .counters
                .record(Event::NodeAdded { node: &member.id });
        }
    }

    /// Removes node `id`: it takes no new requests; those in flight finish,
    /// and its connection closes when the last one does.
    pub fn remove_node(&self, id: &NodeId) {
        if let Some(member) = self.shared.members.remove(id) {
            self.shared.health.remove_node(member.addr);
            self.shared
                .counters
                .record(Event::NodeRemoved { node: &member.id });
        }
    }

    /// The state of node `id` now, if it is a member.
    pub fn node_state(&self, id: &NodeId) -> Option<NodeState> {
        self.shared.members.get_by_id(id).map(|m| m.state())
    }

    /// Waits until node `id` is in a state `wanted` accepts, for at most
    /// `within`, and returns that state: to await a node's change rather
    /// than poll [`metrics`](Self::metrics).
    ///
    /// ```no_run
    /// # async fn demo(cluster: memha_client::Replicate) -> Result<(), memha_client::Error> {
    /// use std::time::Duration;
    /// use memha_client::{discovery::NodeId, NodeState};
    ///
    /// let node = NodeId::new("cache-1:11211");
    /// cluster.wait_for_node_state(&node, |s| s == NodeState::Down, Duration::from_secs(5)).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoNodes`] when `id` is not a member, [`ErrorKind::Timeout`]
    /// when `within` passes first.
    pub async fn wait_for_node_state(
        &self,
        id: &NodeId,
        wanted: impl Fn(NodeState) -> bool,
        within: std::time::Duration,
    ) -> Result<NodeState, Error> {
        let member = self.shared.members.get_by_id(id).ok_or_else(|| {
            Error::new(ErrorKind::NoNodes).with_detail(format!("{id} is not a member"))
        })?;
        let mut changes = self.shared.health.changes();
        let reached = async {
            loop {
                changes.borrow_and_update();
                let state = member.state();
                if wanted(state) {
                    return state;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(within, reached).await.map_err(|_| {
            Error::new(ErrorKind::Timeout).with_detail(format!(
                "{id} stayed {} for {within:?}",
                member.state().as_str()
            ))
        })
    }

    /// The nodes' health: states, transitions, `wait_for_nodes`.
    pub fn health(&self) -> &HealthTable {
        &self.shared.health
    }

    /// The counters, and every node with its state.
    pub fn metrics(&self) -> ReplicationMetrics {
        let nodes = self
            .shared
            .members
            .snapshot()
            .iter()
            .map(|m| NodeStatus {
                id: m.id.clone(),
                addr: m.addr,
                state: m.state(),
                journaled: m.journal().len(),
                transitions: m.health.transition_count(),
                catching_up: m.is_catching_up(self.shared.config.catch_up_window),
            })
            .collect();
        self.shared.counters.snapshot(nodes)
    }

    /// The nodes in the order they rank for `key`: the first Up one is its primary.
    pub fn placement(&self, key: impl AsRef<[u8]>) -> Vec<SocketAddr> {
        let members = self.shared.members.snapshot();
        placement::Placement::of(&members, key.as_ref())
            .ranked
            .iter()
            .map(|m| m.addr)
            .collect()
    }

    /// The stack of the node at `addr`, to reach it directly.
    pub fn node(&self, addr: SocketAddr) -> Option<NodeService> {
        self.shared
            .members
            .get(addr)
            .map(|m| m.node_service().clone())
    }

    /// Sends one command to the cluster: the client's path, which does not
    /// clone the layer. The operation is boxed, so the client's own future
    /// stays as small as a single node's (and within 1,024 bytes: see the
    /// module's docs).
    pub(crate) fn send(
        &self,
        command: Command,
    ) -> Pin<Box<dyn Future<Output = Result<Reply, Error>> + Send + '_>> {
        Box::pin(self.shared.execute(command))
    }

    /// The first nodes are in and probed: the nodes not Up by now, and the
    /// nodes added from now on, may lack keys and catch up once Up.
    pub(crate) fn establish(&self) {
        let shared = &self.shared;
        shared.established.store(true, Ordering::Release);
        for member in shared.members.snapshot().iter() {
            if member.state() != NodeState::Up {
                member.begin_catch_up();
            }
        }
    }

    /// Takes the nodes from `watcher`: waits for its first snapshot, then
    /// follows its changes in a task that ends with the last handle.
    pub(crate) async fn follow(&self, mut watcher: Watcher) -> Result<(), Error> {
        let first = watcher.ready().await.map_err(|err| {
            Error::new(ErrorKind::NoNodes)
                .with_detail("every discovery source failed")
                .with_source(err)
        })?;
        for addr in first {
            match resolve(&addr).await {
                Some(socket) => self.add_identified_node(addr.id(), socket, host_name(&addr)),
                None => tracing::warn!(node = %addr, "discovered node does not resolve"),
            }
        }
        let weak = Arc::downgrade(&self.shared);
        let stop = self.shared.discovery.clone();
        tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    _ = stop.cancelled() => return,
                    change = watcher.next_change() => change,
                };
                let Some(shared) = weak.upgrade() else { return };
                let replicate = Replicate { shared };
                apply(&replicate, change).await;
            }
        });
        Ok(())
    }
}

/// A node whose address changed under the same identity is removed and
/// inserted again: it keeps its place (placement ranks identities) and is
/// treated as new.
async fn apply(
    replicate: &Replicate,
    change: Result<Change<NodeId, NodeAddr>, memha_discovery::Error>,
) {
    match change {
        Ok(Change::Insert(id, addr)) => match resolve(&addr).await {
            Some(socket) => replicate.add_identified_node(id, socket, host_name(&addr)),
            None => tracing::warn!(node = %addr, "discovered node does not resolve"),
        },
        Ok(Change::Remove(id)) => replicate.remove_node(&id),
        Err(err) => tracing::warn!(error = %err, "discovery failed; keeping the known nodes"),
    }
}

/// The name a node was discovered by, unless it is an IP address.
fn host_name(addr: &NodeAddr) -> Option<&str> {
    addr.host
        .parse::<std::net::IpAddr>()
        .is_err()
        .then_some(addr.host.as_str())
}

async fn resolve(addr: &NodeAddr) -> Option<SocketAddr> {
    if let Some(socket) = addr.socket_addr() {
        return Some(socket);
    }
    tokio::net::lookup_host((addr.host.as_str(), addr.port))
        .await
        .ok()?
        .next()
}

impl Shared {
    /// Not an `async fn`, so the command is not kept in the future once more.
    fn execute(
        self: &Arc<Self>,
        command: Command,
    ) -> impl Future<Output = Result<Reply, Error>> + Send + '_ {
        match Route::of(command) {
            Ok(Route::Read(get)) => Either::Left(Either::Left(self.read(get))),
            Ok(Route::Set(command)) => Either::Right(Either::Left(self.set(command))),
            // The rest in a box of its own: the future of every read and set
            // would otherwise be as large as the largest operation's.
            Ok(route) => Either::Right(Either::Right(Box::pin(self.execute_other(route)))),
            Err(error) => Either::Left(Either::Right(std::future::ready(Err(error)))),
        }
    }

    /// Every route but the two `execute` serves inline.
    async fn execute_other(self: &Arc<Self>, route: Route) -> Result<Reply, Error> {
        match route {
            Route::Read(get) => self.read(get).await,
            Route::Set(command) => self.set(command).await,
            Route::Touch(get) => self.touch(get).await,
            Route::Delete(delete) => self.delete(delete).await,
            Route::Decide { key, command } => self.coordinated(key, command).await,
            Route::FlushAll(command) => self.flush_all(command).await,
            Route::AnyNode(command) => {
                let members = self.members.snapshot();
                let Some(member) = members.iter().find(|m| m.state().is_readable()) else {
                    return Err(self.no_nodes(&members));
                };
                member.call(command).await
            }
        }
    }

    fn no_nodes(&self, members: &[Arc<Member>]) -> Error {
        let states: Vec<String> = members
            .iter()
            .map(|m| format!("{} {}", m.addr, m.state().as_str()))
            .collect();
        Error::new(ErrorKind::NoNodes).with_detail(if states.is_empty() {
            "no node is known".to_owned()
        } else {
            format!("no node can serve: {}", states.join(", "))
        })
    }
}

use memha_proto::Reply;

impl Service<Command> for Replicate {
    type Response = Reply;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, Error>> + Send>>;

    /// Always ready: each node's own stack applies backpressure, and a Down
    /// node fails fast without holding up the others.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, command: Command) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { shared.execute(command).await })
    }
}
