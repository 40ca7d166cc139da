//! Test harness for memha: a cluster of real `memcached` processes.
//!
//! Every integration test and benchmark that needs servers starts them through
//! [`MemcachedCluster`]. Each node is a real `memcached` listening on a free
//! loopback port, and each can be killed, paused (`SIGSTOP`), resumed
//! (`SIGCONT`) or restarted empty on the same port, so tests can inject the
//! faults memha has to survive.
//!
//! ```no_run
//! use memha_tests::{raw_roundtrip, MemcachedCluster};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = MemcachedCluster::start(3)?;
//! let reply = raw_roundtrip(cluster.node(0).addr(), b"version\r\n", b"\r\n", Duration::from_secs(2))?;
//! assert!(reply.starts_with(b"VERSION "));
//!
//! cluster.node(1).kill()?; // connections to it are now refused
//! cluster.node(2).pause()?; // it accepts connections but never answers
//! cluster.node(2).resume()?;
//! cluster.node(1).restart()?; // back on the same port, empty
//! # Ok(())
//! # }
//! // Dropping the cluster kills every process it started, also on panic.
//! ```
//!
//! Network faults, with the server process running on, come from a
//! [`FaultProxy`] in front of a node: clients connect to the proxy, which
//! forwards, delays, blackholes or resets their traffic ([`ProxyMode`]) and
//! can capture every byte they send.
//!
//! What real memcached cannot do (malformed or hostile replies, answers
//! held back on cue) comes from a [`FakeServer`] the test scripts.
//!
//! The cluster and the proxy are synchronous (std processes and sockets plus `nix` for
//! signals; the proxy runs its own thread). Its operations take
//! milliseconds, so calling it from async tests is fine.
//!
//! The `memcached` binary is taken from the `MEMCACHED_BIN` environment
//! variable, else `memcached` on `PATH`, else `/usr/bin/memcached`.

mod cluster;
mod example;
mod fake;
mod proxy;
mod raw;
mod rng;

pub use cluster::{
    memcached_binary, ClusterBuilder, HarnessError, MemcachedCluster, MemcachedNode,
};
pub use example::example_nodes;
pub use fake::{read_lines, FakeServer};
pub use proxy::{FaultProxy, ProxyMode};
pub use raw::raw_roundtrip;
pub use rng::Rng;
