//! Node discovery for memha: where the memcached nodes are, and when that changes.
//!
//! A [`NodeSource`] answers the full current list of node addresses
//! ([`NodeAddr`]); a [`Watcher`] polls one or more sources, merges them,
//! and yields the differences as [`tower::discover::Change`]s keyed by
//! [`NodeId`] — it is a [`tower::discover::Discover`].
//!
//! Built-in sources:
//! - [`StaticSource`]: a fixed list;
//! - [`DnsSource`]: every A/AAAA record of a name (a Kubernetes headless service);
//! - [`ElastiCacheConfigSource`]: an ElastiCache configuration endpoint
//!   (`config get cluster`, no AWS credentials needed);
//! - `ElastiCacheApiSource` (cargo feature `elasticache`): the ElastiCache API,
//!   `DescribeCacheClusters` with node info, through the AWS SDK.
//!
//! Your own source implements the one async trait [`NodeSource`] (with
//! [`macro@async_trait`], re-exported here).
//!
//! The guarantees the rest of memha builds on: a source's error never
//! removes a node (its last good snapshot is kept), one failing source never
//! hides the others, and every failure is logged with `tracing` and counted
//! ([`WatcherMetrics::source_errors`]).
//!
//! # A static list
//!
//! ```
//! use memha_discovery::{StaticSource, Watcher};
//! use tower::discover::Change;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), memha_discovery::Error> {
//! let mut watcher = Watcher::new(StaticSource::parse(["127.0.0.1:11211", "127.0.0.1:11212"])?);
//! for expected in ["127.0.0.1:11211", "127.0.0.1:11212"] {
//!     let Change::Insert(id, addr) = watcher.next_change().await? else { unreachable!() };
//!     assert_eq!(id.as_str(), expected);
//!     assert_eq!(addr.socket_addr(), Some(expected.parse().unwrap()));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # A custom source, merged with a static one
//!
//! ```
//! use std::sync::Mutex;
//! use std::time::Duration;
//! use memha_discovery::{async_trait, Error, NodeAddr, NodeSource, StaticSource, Watcher};
//! use tower::discover::Change;
//!
//! /// Nodes registered by the application at run time.
//! #[derive(Default)]
//! struct Registry(Mutex<Vec<NodeAddr>>);
//!
//! #[async_trait]
//! impl NodeSource for Registry {
//!     async fn nodes(&self) -> Result<Vec<NodeAddr>, Error> {
//!         Ok(self.0.lock().unwrap().clone())
//!     }
//!
//!     fn name(&self) -> &str {
//!         "registry"
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Error> {
//! let registry = std::sync::Arc::new(Registry::default());
//! let mut watcher = Watcher::builder()
//!     .source(StaticSource::parse(["10.0.0.1:11211"])?)
//!     .source(registry.clone())
//!     .interval(Duration::from_secs(5))
//!     .build();
//! assert_eq!(watcher.ready().await?.len(), 1);
//! let _first = watcher.next_change().await?;
//!
//! registry.0.lock().unwrap().push(NodeAddr::new("10.0.0.2", 11211));
//! // Seen on the next round, 5 s later (the clock is paused in this example).
//! let Change::Insert(id, _) = watcher.next_change().await? else { unreachable!() };
//! assert_eq!(id.as_str(), "10.0.0.2:11211");
//! # Ok(())
//! # }
//! ```
//!
//! # Feeding tower
//!
//! [`Watcher::map_services`] turns each address into a service, giving a
//! `Discover` that a balancer (or memha's replication layer) consumes:
//!
//! ```
//! use memha_discovery::{NodeAddr, NodeId, StaticSource, Watcher};
//! use tower::discover::Discover;
//!
//! /// Stands for a connection to one node (a tower `Service` in memha).
//! struct Connection {
//!     addr: NodeAddr,
//! }
//!
//! fn assert_discover<D: Discover<Key = NodeId, Service = Connection>>(_: &D) {}
//!
//! let watcher = Watcher::new(StaticSource::new([NodeAddr::new("10.0.0.1", 11211)]));
//! let stats = watcher.metrics_handle(); // still readable once the watcher is moved
//! let discover = watcher.map_services(|_id, addr| Connection { addr: addr.clone() });
//! assert_discover(&discover);
//! assert_eq!(stats.get().rounds, 0); // nothing runs until the stream is polled
//! ```
//!
//! # ElastiCache
//!
//! ```no_run
//! use memha_discovery::{ElastiCacheConfigSource, Watcher};
//!
//! # async fn run() -> Result<(), memha_discovery::Error> {
//! // The configuration endpoint: no AWS credentials needed.
//! let mut watcher = Watcher::new(ElastiCacheConfigSource::new(
//!     "my-cache.abc123.cfg.use1.cache.amazonaws.com",
//!     11211,
//! ));
//! let nodes = watcher.ready().await?;
//! # Ok(())
//! # }
//! ```
//!
//! With the `elasticache` feature, `ElastiCacheApiSource` asks the
//! ElastiCache API instead (`DescribeCacheClusters` with node info; region
//! and credentials from the usual AWS environment, resolved when the source
//! is built, so a missing one fails at start-up):
//!
//! ```no_run
//! # #[cfg(feature = "elasticache")]
//! # async fn run() -> Result<(), memha_discovery::Error> {
//! use std::time::Duration;
//! use memha_discovery::{ElastiCacheApiSource, Watcher};
//!
//! let source = ElastiCacheApiSource::builder("my-memcached")
//!     .region("eu-west-1")
//!     .timeout(Duration::from_secs(10))
//!     .build()
//!     .await?;
//! let mut watcher = Watcher::new(source);
//! let nodes = watcher.ready().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Cargo features
//!
//! - `elasticache`: `ElastiCacheApiSource`, through the AWS SDK. Heavy to
//!   build, and the SDK needs a recent Rust; without it the crate does not
//!   depend on the SDK at all.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod addr;
mod config_endpoint;
#[cfg(feature = "elasticache")]
mod elasticache_api;
mod error;
mod source;
mod watcher;

pub use addr::{NodeAddr, NodeId};
pub use async_trait::async_trait;
pub use config_endpoint::{ElastiCacheConfigSource, EndpointConnector, EndpointIo, EndpointStream};
#[cfg(feature = "elasticache")]
pub use elasticache_api::{ElastiCacheApiBuilder, ElastiCacheApiSource};
pub use error::{Error, ErrorKind};
pub use source::{DnsSource, NodeSource, StaticSource};
pub use watcher::{
    MapServices, MetricsHandle, Watcher, WatcherBuilder, WatcherMetrics, DEFAULT_INTERVAL,
    DEFAULT_SOURCE_TIMEOUT,
};
