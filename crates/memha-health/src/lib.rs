//! Node health for memha: which memcached nodes may serve, told from both
//! the traffic they carry and active probes.
//!
//! Each node is in one [`NodeState`]: **Joining** (discovered, not yet
//! probed), **Up**, **Down** (failing) or **Rejoining** (answers again,
//! quarantined until made safe). Reads go only to Up nodes, writes to Up and
//! Rejoining ones.
//!
//! - **Passive checks.** [`Health`], a tower middleware around a node's
//!   service, classifies every result with [`ClassifyOutcome`] into an
//!   [`Observation`]: a refused or reset connection marks the node Down at
//!   once, [`HealthConfig::timeout_threshold`] consecutive timeouts (default
//!   3) mark it Down, and any answer (a miss, `NOT_STORED`, `EXISTS`) is
//!   healthy. A Down node's requests fail in `poll_ready` with
//!   [`ErrorKind::NodeDown`] before anything is queued.
//! - **Active checks.** Each node in a [`HealthTable`] has a task that runs
//!   its [`Probe`] ([`MemcachedProbe`] sends `stats` on a short-lived
//!   connection, plain TCP or through a [`ProbeConnector`] such as
//!   memha-client's TLS): every [`up_interval`](HealthConfig::up_interval) (5 s) when
//!   Up, with jittered [`Backoff`] (100 ms growing by 1.5x to 3 s) when
//!   failing, so a node that comes back is seen quickly without a probe storm.
//! - **Restart detection.** When a Down node answers again, its `stats` pid,
//!   uptime and start time are compared with the last seen
//!   ([`ProbeReport::compare`]). It turns Rejoining with a [`RejoinReason`]:
//!   restarted (a new process), or unreachable (the same process, paused or
//!   partitioned). Either way it may hold stale values and have missed
//!   deletes: a restart is only known to have happened since the previous
//!   probe, and may predate writes the node took before it went away. A
//!   [`RejoinHook`] makes it safe before it turns Up, whatever the reason;
//!   without one it turns Up at once.
//! - **Observing.** States are read without locks ([`NodeHealth::state`],
//!   [`HealthTable::nodes`]); [`HealthTable::transitions`] streams every
//!   change; [`HealthTable::wait_for_nodes`] waits until enough nodes are Up.
//!
//! All time goes through tokio's clock, so the whole machine can be tested
//! with paused time and a scripted probe.
//!
//! ```
//! use std::io;
//! use std::time::Duration;
//!
//! use memha_health::{
//!     probe_fn, BoxError, Cause, HealthConfig, HealthLayer, HealthTable, NodeState, ProbeReport,
//! };
//! use memha_proto::{Command, Reply};
//! use tower::{Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let table = HealthTable::new(HealthConfig::default());
//! let mut transitions = table.transitions();
//! let addr = "127.0.0.1:11211".parse()?;
//! // Real code probes with `MemcachedProbe::new(addr)`.
//! let node = table.add_node(
//!     addr,
//!     probe_fn(|| async { Ok(ProbeReport::new().with_pid(42).with_uptime(100)) }),
//! );
//! table.wait_for_nodes(1, Duration::from_secs(1)).await?;
//! assert_eq!(node.state(), NodeState::Up);
//!
//! // A node service whose connections are refused, wrapped in `Health`.
//! let connection = tower::service_fn(|_: Command| async {
//!     Err::<Reply, BoxError>(io::Error::from(io::ErrorKind::ConnectionRefused).into())
//! });
//! let mut service = HealthLayer::new(node.clone()).layer(connection);
//! let refused = service.ready().await?.call(Command::MetaNoop).await;
//! assert!(refused.is_err());
//! assert_eq!(node.state(), NodeState::Down);
//!
//! // Now callers fail fast, without reaching the connection.
//! let err = service.ready().await.unwrap_err();
//! assert!(err.downcast_ref::<memha_health::Error>().unwrap().is_node_down());
//!
//! // Observers saw it all.
//! let up = transitions.recv().await.unwrap();
//! assert_eq!((up.from, up.to, up.cause), (NodeState::Joining, NodeState::Up, Cause::Answered));
//! let down = transitions.recv().await.unwrap();
//! assert_eq!((down.to, down.cause), (NodeState::Down, Cause::ConnectionFailed));
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod backoff;
mod config;
mod error;
mod hook;
mod monitor;
mod node;
mod observe;
mod probe;
mod service;
mod state;
mod table;

pub use backoff::Backoff;
pub use config::HealthConfig;
pub use error::{BoxError, Error, ErrorKind};
pub use hook::{RejoinHook, RejoinInfo};
pub use node::NodeHealth;
pub use observe::{classify_error, ClassifyOutcome};
pub use probe::{
    probe_fn, MemcachedProbe, Probe, ProbeConnector, ProbeFn, ProbeIo, ProbeReport, ProbeStream,
};
pub use service::{Health, HealthLayer, ResponseFuture};
pub use state::{Cause, NodeState, Observation, RejoinReason, Transition};
pub use table::{HealthTable, Transitions};
