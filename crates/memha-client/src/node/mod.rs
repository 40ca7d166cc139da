//! The tower stack in front of one node:
//! `Timeout -> Retry -> [your layers] -> Connection`.
//!
//! - [`tower::timeout::Timeout`] bounds a request with all its retries;
//! - [`tower::retry::Retry`] with a [`RetryPolicy`] retries only what a
//!   retry cannot apply twice;
//! - the layers you add with [`NodeStackBuilder::layer`] wrap the
//!   [`Connection`] directly, so they see every attempt;
//! - the [`Connection`] multiplexes every request on one TCP connection.
//!
//! The stack is assembled by a [`NodeStackBuilder`], which builds any number
//! of nodes with the same settings, and is type-erased into a
//! [`NodeService`] so nodes built with different layers have one type.

mod future;

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use memha_proto::{Command, Reply};
use tower::layer::util::{Identity, Stack};
use tower::retry::Retry;
use tower::timeout::Timeout;
use tower::util::{BoxCloneSyncService, MapErr};
use tower::{Layer, Service, ServiceExt};

pub use future::ResponseFuture;

use memha_health::{Health, NodeHealth};

use crate::connection::{Connection, ConnectionConfig, ConnectionMetrics};
use crate::error::Error;
use crate::retry::RetryPolicy;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The type-erased service of this crate: answers a [`Command`] with a [`Reply`].
pub(crate) type BoxedService = BoxCloneSyncService<Command, Reply, Error>;

/// Assembles the tower stack of a node.
///
/// ```no_run
/// use std::time::Duration;
/// use memha_client::proto::Command;
/// use memha_client::{ConnectionConfig, NodeStackBuilder, RetryPolicy};
/// use tower::util::MapRequestLayer;
///
/// let builder = NodeStackBuilder::new()
///     .timeout(Duration::from_millis(250))
///     .retry(RetryPolicy::new(1))
///     .connection(ConnectionConfig::default().max_in_flight(256))
///     // Any tower layer: this one sees every attempt.
///     .layer(MapRequestLayer::new(|command: Command| {
///         tracing::trace!(?command, "sending");
///         command
///     }));
/// let node = builder.build("127.0.0.1:11211".parse().unwrap());
/// # drop(node);
/// ```
#[derive(Clone)]
pub struct NodeStackBuilder<L = Identity> {
    timeout: Duration,
    retry: RetryPolicy,
    connection: ConnectionConfig,
    layers: L,
}

impl NodeStackBuilder<Identity> {
    /// A stack with a 1 s timeout, two retries and the default connection settings.
    pub fn new() -> Self {
        NodeStackBuilder {
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            connection: ConnectionConfig::default(),
            layers: Identity::new(),
        }
    }
}

impl Default for NodeStackBuilder<Identity> {
    fn default() -> Self {
        NodeStackBuilder::new()
    }
}

impl<L> NodeStackBuilder<L> {
    /// The most a request may take, retries included (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Which failures are retried and how often.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The connection's settings.
    pub fn connection(mut self, config: ConnectionConfig) -> Self {
        self.connection = config;
        self
    }

    /// Adds a layer of your own around the connection, under the retry
    /// layer, so it sees every attempt. The first layer added is the
    /// outermost. Its service may fail with any error convertible to a
    /// boxed error; errors that are not this crate's become
    /// [`ErrorKind::Other`](crate::ErrorKind::Other).
    pub fn layer<T>(self, layer: T) -> NodeStackBuilder<Stack<T, L>> {
        NodeStackBuilder {
            timeout: self.timeout,
            retry: self.retry,
            connection: self.connection,
            layers: Stack::new(layer, self.layers),
        }
    }

    /// The timeout in force.
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// The retry policy in force.
    pub fn get_retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The connection settings in force.
    pub fn get_connection(&self) -> &ConnectionConfig {
        &self.connection
    }

    /// The layers added so far.
    pub fn get_layers(&self) -> &L {
        &self.layers
    }

    /// Builds the stack of the node at `addr`. Nothing connects until the
    /// first request.
    pub fn build(&self, addr: SocketAddr) -> NodeService
    where
        L: Layer<Connection>,
        L::Service: Service<Command, Response = Reply> + Clone + Send + Sync + 'static,
        <L::Service as Service<Command>>::Error: Into<BoxError>,
        <L::Service as Service<Command>>::Future: Send + 'static,
    {
        self.assemble(addr, BoxedService::new)
    }

    /// Builds the stack of a replicated node:
    /// `Timeout -> Retry -> Health -> Timeout (per attempt) -> your layers -> Connection`.
    /// The per-attempt timeout sits under the health layer so that it counts
    /// timeouts; a Down node fails fast in `poll_ready`.
    pub(crate) fn build_with_health(&self, addr: SocketAddr, health: NodeHealth) -> NodeService
    where
        L: Layer<Connection>,
        L::Service: Service<Command, Response = Reply> + Clone + Send + Sync + 'static,
        <L::Service as Service<Command>>::Error: Into<BoxError>,
        <L::Service as Service<Command>>::Future: Send + 'static,
    {
        let timeout = self.timeout;
        self.assemble(addr, move |attempts| {
            let bounded = Timeout::new(attempts, timeout)
                .map_err(move |error: BoxError| Error::from_boxed(error).with_node(addr));
            BoxedService::new(Health::new(bounded, health))
        })
    }

    fn assemble(
        &self,
        addr: SocketAddr,
        guard: impl FnOnce(
            MapErr<L::Service, fn(<L::Service as Service<Command>>::Error) -> Error>,
        ) -> BoxedService,
    ) -> NodeService
    where
        L: Layer<Connection>,
        L::Service: Service<Command, Response = Reply> + Clone + Send + Sync + 'static,
        <L::Service as Service<Command>>::Error: Into<BoxError>,
        <L::Service as Service<Command>>::Future: Send + 'static,
    {
        let connection = Connection::new(addr, self.connection.clone());
        let into_error: fn(<L::Service as Service<Command>>::Error) -> Error =
            |error| Error::from_boxed(error.into());
        let attempts = guard(self.layers.layer(connection.clone()).map_err(into_error));
        let retried = Retry::new(self.retry.clone(), attempts);
        let bounded = Timeout::new(retried, self.timeout);
        let stack = MapErr::new(bounded, move |error: BoxError| {
            Error::from_boxed(error).with_node(addr)
        });
        NodeService {
            inner: BoxCloneSyncService::new(stack),
            addr,
            connection: Some(connection),
        }
    }
}

impl<L: fmt::Debug> fmt::Debug for NodeStackBuilder<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeStackBuilder")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("connection", &self.connection)
            .field("layers", &self.layers)
            .finish()
    }
}

/// The assembled stack of one node, type-erased: a cheap-to-clone
/// `tower::Service` answering a [`Command`] with a [`Reply`].
#[derive(Clone)]
pub struct NodeService {
    inner: BoxedService,
    addr: SocketAddr,
    connection: Option<Connection>,
}

impl NodeService {
    /// Wraps any service as the stack of the node at `addr` (a stack
    /// assembled by hand, or a test double).
    pub fn new<S>(addr: SocketAddr, service: S) -> Self
    where
        S: Service<Command, Response = Reply, Error = Error> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        NodeService {
            inner: BoxCloneSyncService::new(service),
            addr,
            connection: None,
        }
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters of the node's connection, when the stack was built by
    /// a [`NodeStackBuilder`].
    pub fn connection_metrics(&self) -> Option<ConnectionMetrics> {
        self.connection.as_ref().map(Connection::metrics)
    }

    /// Whether the node's connection is established now (false when the
    /// stack was not built by a [`NodeStackBuilder`]).
    pub fn is_connected(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(Connection::is_connected)
    }

    pub(crate) fn into_boxed(self) -> BoxedService {
        self.inner
    }
}

impl Service<Command> for NodeService {
    type Response = Reply;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, command: Command) -> ResponseFuture {
        ResponseFuture::new(self.inner.call(command))
    }
}

impl fmt::Debug for NodeService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeService")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
