//! memha's client: plain memcached, made highly available from the client
//! side. This release talks to one node; the node stack is built to be
//! replicated over many.
//!
//! The layers, from the outside in:
//! - [`Client`]: the async facade (`get`, `set`, `cas`, `increment`, ...),
//!   cheap to clone, with typed outcomes and one [`Error`] type;
//! - the per-node tower stack assembled by a [`NodeStackBuilder`]:
//!   `tower::timeout::Timeout -> tower::retry::Retry` (with [`RetryPolicy`],
//!   which retries only what cannot apply twice) `->` your own layers `->`
//!   [`Connection`];
//! - [`Connection`]: one multiplexed, pipelined TCP connection per node,
//!   speaking the meta protocol (`mg`, `ms`, `md`, `ma`, `mn`), with batched
//!   writes, first-in first-out matching of answers, bounded in-flight
//!   requests and reconnection with backoff.
//!
//! ```no_run
//! use memha_client::{Client, StoreOutcome, Ttl};
//!
//! # async fn demo() -> Result<(), memha_client::Error> {
//! let client = Client::new("127.0.0.1:11211".parse().unwrap());
//!
//! client.set("session:4f2a", "alice").ttl(Ttl::seconds(900)).flags(7).await?;
//! let item = client.gets("session:4f2a").await?.expect("just stored");
//! assert_eq!((item.value.as_ref(), item.flags), (&b"alice"[..], 7));
//!
//! // Compare-and-swap with the token just read.
//! let outcome = client.cas("session:4f2a", "bob", item.cas.unwrap()).await?;
//! assert_eq!(outcome, StoreOutcome::Stored);
//!
//! // A miss is not an error.
//! assert!(client.get("nobody").await?.is_none());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod client;
mod connection;
mod error;
mod item;
mod key;
mod node;
mod replicate;
mod retry;
mod ttl;

pub use client::{ArithmeticRequest, Client, ClientBuilder, StoreRequest};
pub use connection::{Connection, ConnectionConfig, ConnectionMetrics};
pub use error::{Error, ErrorKind};
pub use item::{DeleteOutcome, Item, StoreOutcome, TouchOutcome};
pub use key::{IntoKey, Key};
pub use node::{NodeService, NodeStackBuilder};
pub use replicate::{AckPolicy, NodeStatus, RejoinPolicy, Replicate, ReplicationConfig, Stats};
pub use retry::RetryPolicy;
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

// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
