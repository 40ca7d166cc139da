//! memha's client: plain memcached, made highly available from the client
//! side.
//!
//! A [`Client`] over several nodes writes every value to every healthy node,
//! reads from a subset of them, asks the others before answering a miss,
//! and repairs the nodes that missed or diverged (copying the remaining
//! TTL), so a value outlives every node but the last one holding it. A node
//! that comes back after missing writes or deletes is made safe before it
//! serves reads; conditional operations (`add`, `cas`, `incr`, ...) are
//! decided by one primary node per key. Values are stored exactly as given:
//! any other memcached client reads the same bytes, flags and TTL. The
//! README states the guarantees and their limits.
//!
//! The layers, from the outside in:
//! - [`Client`]: the async facade (`get`, `set`, `cas`, `increment`, ...),
//!   cheap to clone, with typed outcomes and one [`Error`] type;
//! - [`Replicate`]: one tower service over the nodes, which come from
//!   [`discovery`] sources, with the [`ReplicationConfig`] (ack policy, read
//!   fan-out, what a returning node needs);
//! - the stack of each node, assembled by a [`NodeStackBuilder`]:
//!   `timeout -> retry -> health -> your layers -> Connection`, one
//!   timeout for a request with all its retries, where [`RetryPolicy`]
//!   retries only what cannot apply twice and the node's health (the same
//!   gate as the [`health`] layer's, `NodeHealth::admit`) fails fast on a
//!   Down node;
//! - [`Connection`]: one multiplexed, pipelined connection per node (TCP, or
//!   TLS with the `tls` feature) speaking the meta protocol (`mg`, `ms`,
//!   `md`, `ma`, `mn`), with batched writes, first-in first-out matching of
//!   answers, bounded in-flight requests and reconnection with backoff.
//!
//! # A replicated client
//!
//! ```
//! use std::time::Duration;
//! use memha_client::{Client, ReplicationConfig, StoreOutcome, Ttl};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let local = memha_tests::MemcachedCluster::start(3)?;
//! # let nodes = local.addrs();
//! let client = Client::builder()
//!     .nodes(nodes) // or .source(...): DNS, ElastiCache, your own
//!     .timeout(Duration::from_millis(250))
//!     .replication(ReplicationConfig::default().return_on_first_hit(true))
//!     .build()
//!     .await?;
//!
//! client.set("session:4f2a", "alice").ttl(Ttl::seconds(900)).flags(7).await?;
//! let item = client.gets("session:4f2a").await?.expect("just stored");
//! assert_eq!((&item.value[..], item.flags), (&b"alice"[..], 7));
//!
//! // Compare-and-swap with the token just read (checked on the key's primary).
//! let outcome = client.cas("session:4f2a", "bob", item.cas.unwrap()).await?;
//! assert_eq!(outcome, StoreOutcome::Stored);
//!
//! // A miss is not an error.
//! assert!(client.get("nobody").await?.is_none());
//!
//! // What the replication layer did, and each node's state.
//! let stats = client.cluster().unwrap().metrics();
//! assert_eq!(stats.nodes.len(), 3);
//! # Ok(())
//! # }
//! ```
//!
//! Each operation runs in a `memha` span at `DEBUG`, where the
//! replication layer reports repairs, divergences and failovers; keys are
//! traced as a hash, never as themselves, and values never.
//! [`ReplicationMetrics`] counts the same events.
//!
//! A client of a single node without replication or health checks:
//! [`Client::new`] or [`ClientBuilder::build_single_node`].
//!
//! # A tower layer of your own on each node
//!
//! [`ClientBuilder::layer`] wraps each node's [`Connection`] in any
//! `tower::Layer`, under the retry layer, so it sees every attempt. This one
//! counts requests:
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use std::task::{Context, Poll};
//! use memha_client::proto::Command;
//! use memha_client::Client;
//! use tower::{Layer, Service};
//!
//! /// Counts the requests sent to a node.
//! #[derive(Clone)]
//! struct Count<S> {
//!     inner: S,
//!     sent: Arc<AtomicU64>,
//! }
//!
//! impl<S: Service<Command>> Service<Command> for Count<S> {
//!     type Response = S::Response;
//!     type Error = S::Error;
//!     type Future = S::Future;
//!
//!     fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
//!         self.inner.poll_ready(cx)
//!     }
//!
//!     fn call(&mut self, command: Command) -> S::Future {
//!         self.sent.fetch_add(1, Ordering::Relaxed);
//!         self.inner.call(command)
//!     }
//! }
//!
//! #[derive(Clone)]
//! struct CountLayer(Arc<AtomicU64>);
//!
//! impl<S> Layer<S> for CountLayer {
//!     type Service = Count<S>;
//!
//!     fn layer(&self, inner: S) -> Count<S> {
//!         Count { inner, sent: self.0.clone() }
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let local = memha_tests::MemcachedCluster::start(2)?;
//! # let nodes = local.addrs();
//! let sent = Arc::new(AtomicU64::new(0));
//! let client = Client::builder()
//!     .nodes(nodes)
//!     .layer(CountLayer(sent.clone()))
//!     .build()
//!     .await?;
//! client.set("k", "v").await?; // written to both nodes
//! assert!(sent.load(Ordering::Relaxed) >= 2);
//! # Ok(())
//! # }
//! ```
//!
//! A layer around the whole client goes on [`ClientBuilder::build_replicate`]'s
//! service, handed to [`ClientBuilder::build_with`].
//!
//! # Discovery
//!
//! Nodes can come from sources that are polled (every 10 s by default):
//! [`discovery::DnsSource`], [`discovery::ElastiCacheConfigSource`], the
//! ElastiCache API (`discovery::ElastiCacheApiSource`, feature
//! `elasticache`), or your own [`discovery::NodeSource`]. New nodes are
//! probed before they take traffic; removed ones are drained; a failing
//! source keeps its last good list.
//!
//! ```
//! use std::time::Duration;
//! use memha_client::discovery::{async_trait, Error, NodeAddr, NodeSource};
//! use memha_client::Client;
//!
//! /// Nodes listed in an environment variable, comma separated.
//! struct EnvSource(&'static str);
//!
//! #[async_trait]
//! impl NodeSource for EnvSource {
//!     async fn nodes(&self) -> Result<Vec<NodeAddr>, Error> {
//!         let list = std::env::var(self.0).map_err(Error::custom)?;
//!         list.split(',').map(|addr| addr.trim().parse()).collect()
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let local = memha_tests::MemcachedCluster::start(2)?;
//! # let list: Vec<String> = local.addrs().iter().map(|a| a.to_string()).collect();
//! # std::env::set_var("CACHE_NODES", list.join(","));
//! let client = Client::builder()
//!     .source(EnvSource("CACHE_NODES"))
//!     .discovery_interval(Duration::from_secs(30))
//!     .build()
//!     .await?;
//! assert_eq!(client.cluster().unwrap().metrics().nodes.len(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! ElastiCache, through the cluster's configuration endpoint (no AWS
//! credentials needed):
//!
//! ```no_run
//! use memha_client::discovery::ElastiCacheConfigSource;
//! use memha_client::Client;
//!
//! # async fn demo() -> Result<(), memha_client::Error> {
//! let client = Client::builder()
//!     .source(ElastiCacheConfigSource::new(
//!         "my-cache.abc123.cfg.use1.cache.amazonaws.com",
//!         11211,
//!     ))
//!     .build()
//!     .await?;
//! # drop(client);
//! # Ok(())
//! # }
//! ```
//!
//! # TLS
//!
//! With the `tls` feature, `ConnectionConfig::tls` takes a `TlsConfig`
//! (a custom CA or the system's, an optional client certificate, a server
//! name override): connections and health probes then speak TLS (rustls),
//! and a certificate that does not verify fails the request with
//! [`ErrorKind::Connect`] and a typed `TlsError` as its source.
//!
//! # Cargo features
//!
//! - `tls`: TLS to the nodes, with rustls and the aws-lc-rs provider.
//! - `elasticache`: the ElastiCache API discovery source
//!   (`memha-discovery/elasticache`, through the AWS SDK; heavy to build).
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod connection;
mod error;
mod hash;
mod item;
mod key;
mod node;
mod replicate;
mod trace;
mod ttl;

pub use client::{ArithmeticRequest, Client, ClientBuilder, StoreRequest};
pub use connection::{Connection, ConnectionConfig, ConnectionMetrics};
#[cfg(feature = "tls")]
pub use connection::{TlsConfig, TlsConfigBuilder, TlsError, TlsErrorKind};
pub use error::{Error, ErrorKind, PartialWrite};
pub use item::{DeleteOutcome, Item, StoreOutcome, TouchOutcome};
pub use key::{IntoKey, Key};
pub use node::RetryPolicy;
pub use node::{NodeService, NodeStackBuilder};
pub use replicate::{
    AckPolicy, NodeStatus, RejoinPolicy, Replicate, ReplicationConfig, ReplicationMetrics,
    RESERVED_PREFIX,
};
pub use ttl::Ttl;

/// The futures of the services of this crate.
pub mod future {
    pub use crate::connection::ResponseFuture as ConnectionFuture;
    pub use crate::node::ResponseFuture as NodeFuture;
}

/// Node health: states, probes, the health layer (re-exported).
pub use memha_health as health;
pub use memha_health::{HealthConfig, NodeState};

/// Node discovery: sources and the watcher (re-exported).
pub use memha_discovery as discovery;

/// The codec this crate speaks, for building commands by hand
/// ([`Client::send`], [`Connection`]).
pub use memha_proto as proto;

/// The rustls this crate uses (feature `tls`), for
/// [`TlsConfig::from_rustls`].
#[cfg(feature = "tls")]
pub use rustls;

// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
