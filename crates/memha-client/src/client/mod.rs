//! The ergonomic, async facade over a node stack.

mod outcome;
mod request;

use std::collections::BTreeMap;
use std::fmt;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use memha_discovery::{NodeId, NodeSource, Watcher};
use memha_health::HealthConfig;
use memha_proto::{
    ArithmeticMode, Command, Limits, MetaDelete, MetaGet, Reply, SetMode, StatsGroup,
};
use tokio::time::Instant;
use tower::layer::util::{Identity, Stack};
use tower::{Service, ServiceExt};
use tracing::Instrument;

pub use request::{ArithmeticRequest, StoreRequest};

use crate::connection::{Connection, ConnectionConfig};
use crate::error::{Error, ErrorKind};
use crate::item::{DeleteOutcome, Item, TouchOutcome};
use crate::key::{IntoKey, Key};
use crate::node::RetryPolicy;
use crate::node::{BoxedService, NodeService, NodeStackBuilder};
use crate::replicate::{Replicate, ReplicationConfig};
use crate::trace;
use crate::Ttl;

/// An async memcached client. Cheap to clone: clones share the connection.
///
/// Data operations speak the meta protocol, so a read returns the value,
/// its flags and its remaining lifetime in one round trip. A miss is
/// `Ok(None)`; `NOT_STORED`, `EXISTS` and `NOT_FOUND` are typed outcomes;
/// errors are for failures only (see [`Error`]). Every operation is bounded
/// by the timeout, waiting for room in the connection included.
///
/// ```no_run
/// use std::time::Duration;
/// use memha_client::{Client, Ttl};
///
/// # async fn demo() -> Result<(), memha_client::Error> {
/// let client = Client::builder()
///     .node("127.0.0.1:11211".parse().unwrap())
///     .timeout(Duration::from_millis(200))
///     .build()
///     .await?;
/// client.set("user:1", "alice").ttl(Ttl::seconds(600)).flags(3).await?;
/// let item = client.get("user:1").await?.expect("just stored");
/// assert_eq!(item.value, "alice");
/// assert_eq!(item.flags, 3);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    timeout: Duration,
    limits: Limits,
}

/// What the client sends its commands through. Node stacks and the
/// replication layer are called directly (no boxing, no cloning of the
/// service per call); any other service through `tower::Service`.
enum Backend {
    Node(NodeService),
    Cluster(Replicate),
    Service(BoxedService),
}

impl Client {
    /// A client of the node at `addr` with the default settings. It
    /// connects on first use.
    pub fn new(addr: SocketAddr) -> Client {
        ClientBuilder::new().connect(addr)
    }

    /// Settings for a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// The replication layer, for a client built over a cluster: its
    /// [`metrics`](Replicate::metrics), node [`health`](Replicate::health) and
    /// [`placement`](Replicate::placement).
    pub fn cluster(&self) -> Option<&Replicate> {
        match &self.inner.backend {
            Backend::Cluster(cluster) => Some(cluster),
            _ => None,
        }
    }

    /// The bound on each request to a node (see [`ClientBuilder::timeout`]).
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The bounds on values.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Sends one command through the stack and returns the server's reply.
    ///
    /// The wait for room in the stack and the answer together take at most
    /// the timeout.
    pub fn send(&self, command: Command) -> impl Future<Output = Result<Reply, Error>> + Send + '_ {
        // Not an `async fn`: the command is not kept once more in the future,
        // which every operation awaits (and so moves) whole.
        let span = trace::operation_span(&command);
        let sent = match &self.inner.backend {
            Backend::Node(node) => Either::Left(node.send(command, self.inner.timeout)),
            Backend::Cluster(cluster) => Either::Right(Either::Left(cluster.send(command))),
            // Boxed: the user's service's future and a timer, beside the
            // fast paths' small futures, would make every one larger.
            Backend::Service(service) => Either::Right(Either::Right(Box::pin(
                self.send_through(service.clone(), command),
            ))),
        };
        // Without a subscriber that wants it, the span is not entered on
        // every poll.
        match span.is_disabled() {
            true => Either::Left(sent),
            false => Either::Right(sent.instrument(span)),
        }
    }

    /// Sends through a service of the user's. Its own timeout bounds the
    /// answer; only when it was not ready at once is the whole call bounded
    /// here too (a second timer on the fast path would cost for nothing).
    async fn send_through(
        &self,
        mut service: BoxedService,
        command: Command,
    ) -> Result<Reply, Error> {
        match poll_fn(|cx| Poll::Ready(service.poll_ready(cx))).await {
            Poll::Ready(ready) => {
                ready?;
                service.call(command).await
            }
            Poll::Pending => {
                let deadline = Instant::now() + self.inner.timeout;
                let call = async move {
                    service.ready().await?;
                    service.call(command).await
                };
                tokio::time::timeout_at(deadline, call)
                    .await
                    .unwrap_or_else(|_| Err(self.timed_out()))
            }
        }
    }

    /// The backend as a `tower::Service`, for pipelining requests by hand.
    fn service(&self) -> BoxedService {
        match &self.inner.backend {
            Backend::Node(node) => node.clone().into_boxed(),
            Backend::Cluster(cluster) => BoxedService::new(cluster.clone()),
            Backend::Service(service) => service.clone(),
        }
    }

    fn timed_out(&self) -> Error {
        Error::new(ErrorKind::Timeout).with_detail(format!(
            "no room in the connection within {:?}",
            self.inner.timeout
        ))
    }

    /// The item under `key`, or `None` on a miss: its value, flags and
    /// remaining lifetime (no CAS token: see [`gets`](Self::gets)).
    pub async fn get(&self, key: impl IntoKey) -> Result<Option<Item>, Error> {
        let mut get = read(key.into_key()?);
        get.cas = false;
        outcome::item(self.send(Command::MetaGet(get)).await?)
    }

    /// Like [`get`](Self::get), with the item's CAS token for [`cas`](Self::cas).
    pub async fn gets(&self, key: impl IntoKey) -> Result<Option<Item>, Error> {
        outcome::item(self.send(Command::MetaGet(read(key.into_key()?))).await?)
    }

    /// Reads the item and sets its lifetime to `ttl` in one round trip; the
    /// item's remaining lifetime is the new one.
    pub async fn get_and_touch(
        &self,
        key: impl IntoKey,
        ttl: impl Into<Ttl>,
    ) -> Result<Option<Item>, Error> {
        let mut get = read(key.into_key()?);
        get.cas = false;
        get.touch = Some(ttl.into().exptime());
        outcome::item(self.send(Command::MetaGet(get)).await?)
    }

    /// Reads many keys at once, pipelined: every request is queued before
    /// the first answer is awaited, so they share writes and reads. The
    /// result has one entry per key, in order: `None` for a miss.
    ///
    /// Every key is validated before anything is sent. Waiting for room in
    /// the connection is bounded by the timeout for each key.
    pub async fn get_many<I>(&self, keys: I) -> Result<Vec<Option<Item>>, Error>
    where
        I: IntoIterator,
        I::Item: IntoKey,
    {
        let keys = keys
            .into_iter()
            .map(IntoKey::into_key)
            .collect::<Result<Vec<Key>, Error>>()?;
        let span = trace::get_many_span(keys.len());
        self.get_keys(keys).instrument(span).await
    }

    async fn get_keys(&self, keys: Vec<Key>) -> Result<Vec<Option<Item>>, Error> {
        let mut service = self.service();
        let mut answers = Vec::with_capacity(keys.len());
        for key in keys {
            let mut get = read(key);
            get.cas = false;
            tokio::time::timeout(self.inner.timeout, service.ready())
                .await
                .map_err(|_| self.timed_out())??;
            answers.push(service.call(Command::MetaGet(get)));
        }
        let mut items = Vec::with_capacity(answers.len());
        for answer in answers {
            items.push(outcome::item(answer.await?)?);
        }
        Ok(items)
    }

    /// Stores `value` under `key`. Await the returned request, after
    /// setting [`ttl`](StoreRequest::ttl) and [`flags`](StoreRequest::flags)
    /// if you want.
    pub fn set(&self, key: impl IntoKey, value: impl Into<Bytes>) -> StoreRequest<'_> {
        StoreRequest::new(self, key, value.into(), SetMode::Set, None)
    }

    /// Stores `value` only if `key` holds nothing:
    /// [`StoreOutcome::NotStored`](crate::StoreOutcome::NotStored) otherwise.
    pub fn add(&self, key: impl IntoKey, value: impl Into<Bytes>) -> StoreRequest<'_> {
        StoreRequest::new(self, key, value.into(), SetMode::Add, None)
    }

    /// Stores `value` only if `key` holds an item:
    /// [`StoreOutcome::NotStored`](crate::StoreOutcome::NotStored) otherwise.
    pub fn replace(&self, key: impl IntoKey, value: impl Into<Bytes>) -> StoreRequest<'_> {
        StoreRequest::new(self, key, value.into(), SetMode::Replace, None)
    }

    /// Appends `value` to the item's value:
    /// [`StoreOutcome::NotStored`](crate::StoreOutcome::NotStored) if there is none.
    pub fn append(&self, key: impl IntoKey, value: impl Into<Bytes>) -> StoreRequest<'_> {
        StoreRequest::new(self, key, value.into(), SetMode::Append, None)
    }

    /// Prepends `value` to the item's value:
    /// [`StoreOutcome::NotStored`](crate::StoreOutcome::NotStored) if there is none.
    pub fn prepend(&self, key: impl IntoKey, value: impl Into<Bytes>) -> StoreRequest<'_> {
        StoreRequest::new(self, key, value.into(), SetMode::Prepend, None)
    }

    /// Stores `value` only if the item still has the CAS token `cas` (from
    /// [`gets`](Self::gets)): [`StoreOutcome::Exists`](crate::StoreOutcome::Exists)
    /// if it changed since, [`StoreOutcome::NotFound`](crate::StoreOutcome::NotFound)
    /// if it is gone.
    pub fn cas(&self, key: impl IntoKey, value: impl Into<Bytes>, cas: u64) -> StoreRequest<'_> {
        StoreRequest::new(self, key, value.into(), SetMode::Set, Some(cas))
    }

    /// Deletes the item.
    ///
    /// Over a cluster the item is marked stale on every node for
    /// [`ReplicationConfig::tombstone`](crate::ReplicationConfig::tombstone)
    /// (a tombstone) rather than removed at once: memha reads it as absent,
    /// and a second delete within that time reports
    /// [`DeleteOutcome::Deleted`] again.
    pub async fn delete(&self, key: impl IntoKey) -> Result<DeleteOutcome, Error> {
        let delete = MetaDelete::new(key.into_key()?);
        outcome::delete(self.send(Command::MetaDelete(delete)).await?)
    }

    /// Sets the item's lifetime to `ttl`.
    pub async fn touch(
        &self,
        key: impl IntoKey,
        ttl: impl Into<Ttl>,
    ) -> Result<TouchOutcome, Error> {
        let mut touch = MetaGet::new(key.into_key()?);
        touch.touch = Some(ttl.into().exptime());
        outcome::touch(self.send(Command::MetaGet(touch)).await?)
    }

    /// Adds `delta` to the counter under `key` (a decimal number; memcached
    /// wraps around at 2^64). Await the returned request for the new value.
    pub fn increment(&self, key: impl IntoKey, delta: u64) -> ArithmeticRequest<'_> {
        ArithmeticRequest::new(self, key, ArithmeticMode::Increment, delta)
    }

    /// Subtracts `delta` from the counter under `key`, stopping at 0.
    /// Await the returned request for the new value.
    pub fn decrement(&self, key: impl IntoKey, delta: u64) -> ArithmeticRequest<'_> {
        ArithmeticRequest::new(self, key, ArithmeticMode::Decrement, delta)
    }

    /// Invalidates every item (`flush_all`). Over several nodes it succeeds
    /// only once every writable node flushed, whatever the ack policy.
    pub async fn flush_all(&self) -> Result<(), Error> {
        let flush = Command::FlushAll {
            delay: None,
            noreply: false,
        };
        outcome::ok(self.send(flush).await?)
    }

    /// The server's version (`version`).
    pub async fn version(&self) -> Result<String, Error> {
        outcome::version(self.send(Command::Version).await?)
    }

    /// The server's general statistics (`stats`), by name.
    pub async fn stats(&self) -> Result<BTreeMap<String, String>, Error> {
        outcome::stats(self.send(Command::Stats(StatsGroup::General)).await?)
    }
}

/// An `mg` asking for the value, flags, remaining lifetime and CAS token.
fn read(key: Key) -> MetaGet {
    MetaGet::full(key)
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.inner.timeout)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// Settings for a [`Client`].
///
/// ```no_run
/// use std::time::Duration;
/// use memha_client::{Client, RetryPolicy};
///
/// # async fn demo() -> Result<(), memha_client::Error> {
/// let client = Client::builder()
///     .nodes(["10.0.0.1:11211".parse().unwrap(), "10.0.0.2:11211".parse().unwrap()])
///     .timeout(Duration::from_millis(100))
///     .connect_timeout(Duration::from_millis(50))
///     .max_in_flight(2048)
///     .retry(RetryPolicy::new(1))
///     .build()
///     .await?;
/// # drop(client);
/// # Ok(())
/// # }
/// ```
pub struct ClientBuilder<L = Identity> {
    /// Static nodes: identity and the address to reach it at.
    nodes: Vec<(NodeId, SocketAddr)>,
    sources: Vec<Arc<dyn NodeSource>>,
    discovery_interval: Option<Duration>,
    health: HealthConfig,
    replication: ReplicationConfig,
    stack: NodeStackBuilder<L>,
}

impl ClientBuilder<Identity> {
    /// The default settings: a 1 s timeout, two retries of what is safe to
    /// retry, a 1 s connect timeout, 1024 requests in flight, 1 MiB values,
    /// the default [`HealthConfig`] and [`ReplicationConfig`].
    pub fn new() -> Self {
        ClientBuilder {
            nodes: Vec::new(),
            sources: Vec::new(),
            discovery_interval: None,
            health: HealthConfig::default(),
            replication: ReplicationConfig::default(),
            stack: NodeStackBuilder::new(),
        }
    }
}

impl Default for ClientBuilder<Identity> {
    fn default() -> Self {
        ClientBuilder::new()
    }
}

impl<L> ClientBuilder<L> {
    /// Adds a memcached node (a static list in short; see [`source`](Self::source)).
    /// The node is known by its address; see [`named_node`](Self::named_node).
    pub fn node(self, addr: SocketAddr) -> Self {
        self.named_node(addr.to_string(), addr)
    }

    /// Adds a memcached node known by `name`, reached at `addr`.
    ///
    /// The name is the node's identity: placement ranks identities, so
    /// clients that reach one node through different addresses (a proxy, a
    /// NAT, an IP that changed) still agree on every key's primary. Give
    /// every client of a cluster the same names.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), memha_client::Error> {
    /// let client = memha_client::Client::builder()
    ///     .named_node("cache-1:11211", "10.0.0.1:11211".parse().unwrap())
    ///     .named_node("cache-2:11211", "10.0.0.2:11211".parse().unwrap())
    ///     .build()
    ///     .await?;
    /// # drop(client);
    /// # Ok(())
    /// # }
    /// ```
    pub fn named_node(mut self, name: impl Into<String>, addr: SocketAddr) -> Self {
        let id = NodeId::new(name);
        if !self
            .nodes
            .iter()
            .any(|(known, a)| *known == id || *a == addr)
        {
            self.nodes.push((id, addr));
        }
        self
    }

    /// Adds memcached nodes.
    pub fn nodes(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        for addr in addrs {
            self = self.node(addr);
        }
        self
    }

    /// Adds a discovery source (DNS, ElastiCache, your own): its nodes join
    /// and leave the cluster as it reports them. Several sources are merged;
    /// a failing source keeps its last good list.
    pub fn source(mut self, source: impl NodeSource + 'static) -> Self {
        self.sources.push(Arc::new(source));
        self
    }

    /// How often sources are polled (default 10 s).
    pub fn discovery_interval(mut self, interval: Duration) -> Self {
        self.discovery_interval = Some(interval);
        self
    }

    /// How node health is judged and probed.
    pub fn health(mut self, config: HealthConfig) -> Self {
        self.health = config;
        self
    }

    /// How writes are acknowledged, reads spread and returning nodes made safe.
    pub fn replication(mut self, config: ReplicationConfig) -> Self {
        self.replication = config;
        self
    }

    /// The most one request to one node may take, retries and waiting for
    /// room in the connection included (default 1 s; a longer one than a
    /// year is taken as a year). On a single node it bounds each
    /// operation; a replicated operation makes a bounded number of rounds
    /// of node requests, each within it (typically one to three; the
    /// README's "Clear failure" gives the bounds of each operation).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.stack = self.stack.timeout(timeout);
        self
    }

    /// How long a connection attempt may take (default 1 s).
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.map_connection(|config| config.connect_timeout(timeout))
    }

    /// How many requests may await their answer on the connection at once
    /// (default 1024).
    pub fn max_in_flight(self, max: usize) -> Self {
        self.map_connection(|config| config.max_in_flight(max))
    }

    /// Bounds on values and replies (default: memcached's 1 MiB items).
    pub fn limits(self, limits: Limits) -> Self {
        self.map_connection(|config| config.limits(limits))
    }

    /// Speaks TLS to every node (feature `tls`), health probes included;
    /// see [`ConnectionConfig::tls`].
    #[cfg(feature = "tls")]
    pub fn tls(self, tls: crate::TlsConfig) -> Self {
        self.map_connection(|config| config.tls(tls))
    }

    /// All connection settings at once.
    pub fn connection(mut self, config: ConnectionConfig) -> Self {
        self.stack = self.stack.connection(config);
        self
    }

    /// Which failures are retried and how often (default: two retries).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.stack = self.stack.retry(policy);
        self
    }

    /// Adds a tower layer of your own around each node's connection, under
    /// the retry layer (see [`NodeStackBuilder::layer`]).
    pub fn layer<T>(self, layer: T) -> ClientBuilder<Stack<T, L>> {
        ClientBuilder {
            nodes: self.nodes,
            sources: self.sources,
            discovery_interval: self.discovery_interval,
            health: self.health,
            replication: self.replication,
            stack: self.stack.layer(layer),
        }
    }

    /// The node stack settings so far.
    pub fn node_stack(&self) -> &NodeStackBuilder<L> {
        &self.stack
    }

    fn map_connection(mut self, map: impl FnOnce(ConnectionConfig) -> ConnectionConfig) -> Self {
        let config = map(self.stack.connection.clone());
        self.stack = self.stack.connection(config);
        self
    }

    /// Builds the client over every node given and discovered: each node
    /// gets its stack (`Timeout -> Retry -> Health -> your layers ->
    /// Connection`) and the [`Replicate`] layer spans them.
    ///
    /// Waits until the first nodes are probed, at most
    /// [`ReplicationConfig::startup_wait`], so the first operation finds them Up.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoNodes`] when no node or source was given, or when every
    /// source failed.
    pub async fn build(self) -> Result<Client, Error>
    where
        L: tower::Layer<Connection> + Clone + Send + Sync + 'static,
        L::Service: Service<Command, Response = Reply> + Clone + Send + Sync + 'static,
        <L::Service as Service<Command>>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        <L::Service as Service<Command>>::Future: Send + 'static,
    {
        let replicate = self.build_replicate().await?;
        Ok(self.client(Backend::Cluster(replicate)))
    }

    /// Builds the replication layer alone, to wrap it in layers of your own
    /// before handing it to [`build_with`](Self::build_with).
    ///
    /// ```no_run
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use memha_client::{proto::Command, Client};
    /// use tower::ServiceBuilder;
    ///
    /// # async fn demo() -> Result<(), memha_client::Error> {
    /// let builder = Client::builder().node("127.0.0.1:11211".parse().unwrap());
    /// let cluster = builder.build_replicate().await?;
    /// // Any layer around the whole client, e.g. one counting operations.
    /// let operations = Arc::new(AtomicU64::new(0));
    /// let counter = operations.clone();
    /// let service = ServiceBuilder::new()
    ///     .map_request(move |command: Command| {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///         command
    ///     })
    ///     .service(cluster);
    /// let client = builder.build_with(service);
    /// # drop(client);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn build_replicate(&self) -> Result<Replicate, Error>
    where
        L: tower::Layer<Connection> + Clone + Send + Sync + 'static,
        L::Service: Service<Command, Response = Reply> + Clone + Send + Sync + 'static,
        <L::Service as Service<Command>>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        <L::Service as Service<Command>>::Future: Send + 'static,
    {
        if self.nodes.is_empty() && self.sources.is_empty() {
            return Err(Error::new(ErrorKind::NoNodes).with_detail("no node or source was given"));
        }
        let stack = self.stack.clone();
        let replicate = Replicate::new(
            self.replication.clone(),
            self.health.clone(),
            self.stack.request_timeout(),
            Box::new(move |addr, id, host, table| {
                let connection = match host {
                    Some(host) => stack.connection.for_host(host),
                    None => stack.connection.clone(),
                };
                let probe = connection.probe(addr, stack.request_timeout());
                let health = table.add_named_node(addr, id.as_str(), probe);
                (
                    health.clone(),
                    stack.build_with_health(addr, connection, health),
                )
            }),
        );
        for (id, addr) in &self.nodes {
            replicate.add_named_node(id.as_str(), *addr);
        }
        if !self.sources.is_empty() {
            let mut watcher = Watcher::builder();
            for source in &self.sources {
                watcher = watcher.shared_source(source.clone());
            }
            if let Some(interval) = self.discovery_interval {
                watcher = watcher.interval(interval);
            }
            replicate.follow(watcher.build()).await?;
        }
        let known = replicate.metrics().nodes.len();
        // Not all nodes may be up: the client works with those that are.
        let _ = replicate
            .health()
            .wait_for_nodes(known, self.replication.startup_wait)
            .await;
        replicate.establish();
        Ok(replicate)
    }

    /// A client of the one node given, without replication or health
    /// checks: the node stack alone (`Timeout -> Retry -> your layers ->
    /// Connection`). Nothing connects until the first operation.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoNodes`] unless exactly one node was given.
    pub fn build_single_node(self) -> Result<Client, Error>
    where
        L: tower::Layer<Connection>,
        L::Service: Service<Command, Response = Reply> + Clone + Send + Sync + 'static,
        <L::Service as Service<Command>>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        <L::Service as Service<Command>>::Future: Send + 'static,
    {
        let [(_, addr)] = self.nodes[..] else {
            return Err(Error::new(ErrorKind::NoNodes)
                .with_detail("a single-node client needs exactly one node"));
        };
        let node = self.stack.build(addr);
        Ok(self.client(Backend::Node(node)))
    }

    /// A client over a node stack built beforehand (for instance to keep
    /// the [`NodeService`] for its metrics), with this builder's timeout
    /// and limits.
    pub fn build_with_node(self, node: NodeService) -> Client {
        self.client(Backend::Node(node))
    }

    /// A client over any service answering [`Command`]s (a stack assembled
    /// by hand, or one spanning several nodes), with this builder's timeout
    /// and limits. The service should bound its own calls by the timeout.
    pub fn build_with<S>(self, service: S) -> Client
    where
        S: Service<Command, Response = Reply, Error = Error> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        self.client(Backend::Service(BoxedService::new(service)))
    }

    fn client(&self, backend: Backend) -> Client {
        Client {
            inner: Arc::new(Inner {
                backend,
                timeout: self.stack.request_timeout(),
                limits: self.stack.connection.limits,
            }),
        }
    }
}

impl ClientBuilder<Identity> {
    fn connect(self, addr: SocketAddr) -> Client {
        let node = self.stack.build(addr);
        self.client(Backend::Node(node))
    }
}

impl<L: fmt::Debug> fmt::Debug for ClientBuilder<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("nodes", &self.nodes)
            .field("sources", &self.sources.len())
            .field("health", &self.health)
            .field("replication", &self.replication)
            .field("stack", &self.stack)
            .finish()
    }
}
