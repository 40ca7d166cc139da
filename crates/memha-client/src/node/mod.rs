//! The stack in front of one node:
//! `timeout -> retry -> [health] -> [your layers] -> Connection`.
//!
//! - one timeout bounds a request with all its retries, the wait for room
//!   in the connection included;
//! - a [`RetryPolicy`] retries only what a retry cannot apply twice;
//! - on a replicated node, its health learns from every attempt (a timeout
//!   included) and a Down node fails fast;
//! - the layers you add with [`NodeStackBuilder::layer`] wrap the
//!   [`Connection`] directly, so they see every attempt;
//! - the [`Connection`] multiplexes every request on one TCP connection.
//!
//! The timeout, retries and health records are one hand-written future
//! ([`call::NodeCall`] with [`call::bounded`]) rather than a stack of tower
//! middleware: without layers of your own, a request the connection's one
//! timer bounds costs no allocation of the stack's and no timer of its
//! own (one it does not bound boxes a timer of its own, kept out of line
//! so every request's future stays small). Replies come back in order, so the reader's timer, armed at
//! the earliest deadline awaiting a reply, bounds every request sent while
//! it is armed with a deadline no earlier; others (the first request after
//! an idle spell, one waiting for room, a retry it does not cover, one
//! through your layers) make their own. Each behaviour exists once: the
//! retry loop is `NodeCall`'s ([`RetryPolicy`] is its configuration), and
//! the health gate is `memha_health::NodeHealth::admit`, which the public
//! `memha_health::Health` layer runs too. To retry differently, set
//! [`RetryPolicy::never`] and add your own retry layer with
//! [`NodeStackBuilder::layer`]. The stack is assembled by a [`NodeStackBuilder`], which builds
//! any number of nodes with the same settings, into a [`NodeService`], so
//! nodes built with different layers have one type.

pub(crate) mod call;
mod future;
mod retry;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use memha_proto::{Command, Reply};
use tower::layer::util::{Identity, Stack};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

pub use future::ResponseFuture;
pub use retry::RetryPolicy;

use memha_health::NodeHealth;

use self::call::{Attempts, NodeCall, Route};

use crate::connection::{Connection, ConnectionConfig, ConnectionMetrics};
use crate::error::Error;

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
    /// The most a request may take, retries included (default 1 s; at most
    /// a year: a longer one is taken as a year, so a deadline can always be
    /// reckoned).
    pub timeout: Duration,
    /// Which failures are retried and how often (default: two retries).
    pub retry: RetryPolicy,
    /// The connection's settings.
    pub connection: ConnectionConfig,
    layers: L,
    /// Whether [`layer`](Self::layer) was called: else the attempts go
    /// straight to the connection, unboxed.
    layered: bool,
}

impl NodeStackBuilder<Identity> {
    /// A stack with a 1 s timeout, two retries and the default connection settings.
    pub fn new() -> Self {
        NodeStackBuilder {
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            connection: ConnectionConfig::default(),
            layers: Identity::new(),
            layered: false,
        }
    }
}

impl Default for NodeStackBuilder<Identity> {
    fn default() -> Self {
        NodeStackBuilder::new()
    }
}

impl<L> NodeStackBuilder<L> {
    /// The most a request may take, retries included (default 1 s; at most
    /// a year).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// [`timeout`](Self::timeout) as requests use it: at most a year.
    pub(crate) fn request_timeout(&self) -> Duration {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);
        self.timeout.min(YEAR)
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
            layered: true,
        }
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
        self.assemble(addr, self.connection.clone(), None)
    }

    /// Builds the stack of a replicated node, whose health learns from
    /// every attempt (a timeout included) and which fails fast
    /// while the node is Down.
    pub(crate) fn build_with_health(
        &self,
        addr: SocketAddr,
        connection: ConnectionConfig,
        health: NodeHealth,
    ) -> NodeService
    where
        L: Layer<Connection>,
        L::Service: Service<Command, Response = Reply> + Clone + Send + Sync + 'static,
        <L::Service as Service<Command>>::Error: Into<BoxError>,
        <L::Service as Service<Command>>::Future: Send + 'static,
    {
        self.assemble(addr, connection, Some(health))
    }

    fn assemble(
        &self,
        addr: SocketAddr,
        connection: ConnectionConfig,
        health: Option<NodeHealth>,
    ) -> NodeService
    where
        L: Layer<Connection>,
        L::Service: Service<Command, Response = Reply> + Clone + Send + Sync + 'static,
        <L::Service as Service<Command>>::Error: Into<BoxError>,
        <L::Service as Service<Command>>::Future: Send + 'static,
    {
        let connection = Connection::new(addr, connection);
        // Without layers of the user's, straight to the connection: no
        // boxing and no dynamic dispatch on the hot path.
        let attempts = match self.layered {
            false => Attempts::Connection(connection.clone()),
            true => Attempts::Layered(BoxedService::new(
                self.layers
                    .layer(connection.clone())
                    .map_err(|error| Error::from_boxed(error.into())),
            )),
        };
        NodeService {
            route: Route {
                addr,
                attempts,
                max_retries: self.retry.max_retries(),
                health,
            },
            timeout: Some(self.request_timeout()),
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

/// The assembled stack of one node: a cheap-to-clone `tower::Service`
/// answering a [`Command`] with a [`Reply`].
#[derive(Clone)]
pub struct NodeService {
    route: Route,
    /// The stack's bound on a request with its retries; `None` for a
    /// service given by hand, which bounds its own requests.
    timeout: Option<Duration>,
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
            route: Route {
                addr,
                attempts: Attempts::Layered(BoxedService::new(service)),
                max_retries: 0,
                health: None,
            },
            timeout: None,
            connection: None,
        }
    }

    /// A test double with a health handle: the replication layer's unit
    /// tests run their scripted nodes through the health gate and records.
    #[cfg(test)]
    pub(crate) fn with_health(
        addr: SocketAddr,
        service: BoxedService,
        health: NodeHealth,
        timeout: Duration,
    ) -> Self {
        NodeService {
            route: Route {
                addr,
                attempts: Attempts::Layered(service),
                max_retries: 0,
                health: Some(health),
            },
            timeout: Some(timeout),
            connection: None,
        }
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.route.addr
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

    /// How long the node's connection has had requests outstanding with no
    /// answer read, as of `now` (zero for a stack not built by a
    /// [`NodeStackBuilder`]).
    pub(crate) fn stalled_for(&self, now: std::time::Instant) -> Duration {
        self.connection
            .as_ref()
            .map_or(Duration::ZERO, |connection| connection.stalled_for(now))
    }

    /// Sends one command and awaits its answer: waiting for room, the
    /// attempts and the retries all within `timeout` (and the stack's own
    /// timeout), under the connection's timer or one of its own. The fast
    /// path of the client and the replication layer: nothing is boxed
    /// but the timer of a request the connection's timer does not bound.
    pub(crate) fn send(
        &self,
        command: Command,
        timeout: Duration,
    ) -> impl Future<Output = Result<Reply, Error>> + Send + 'static {
        let timeout = self.timeout.map_or(timeout, |own| own.min(timeout));
        call::bounded(self.start(command).within(timeout), timeout)
    }

    /// One request on this node, for the caller to bound (a replicated
    /// operation bounds all its node calls with one timer).
    pub(crate) fn start(&self, command: Command) -> NodeCall {
        NodeCall::new(self.route.clone(), command)
    }

    pub(crate) fn into_boxed(self) -> BoxedService {
        BoxedService::new(self)
    }
}

impl Service<Command> for NodeService {
    type Response = Reply;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.route.poll_ready(cx)
    }

    /// Sends the request at once (so calls made one after another are
    /// pipelined), bounded by the stack's timeout.
    fn call(&mut self, command: Command) -> ResponseFuture {
        // The place `poll_ready` reserved goes with this request.
        let fresh = self.route.clone();
        let reserved = std::mem::replace(&mut self.route, fresh);
        let mut call = NodeCall::new(reserved, command);
        if let Some(timeout) = self.timeout {
            call = call.within(timeout);
        }
        call.send_now();
        match self.timeout {
            Some(timeout) => ResponseFuture::new(Box::pin(call::bounded(call, timeout))),
            None => ResponseFuture::new(Box::pin(call)),
        }
    }
}

impl fmt::Debug for NodeService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeService")
            .field("addr", &self.route.addr)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
