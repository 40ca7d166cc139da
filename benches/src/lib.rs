//! Benchmarks for memha, run with `cargo bench -p memha-benches`.
//!
//! - `benches/codec.rs`: encoding commands and decoding replies with
//!   `memha-proto`, no IO.
//! - `benches/client.rs`: memha's client against a real memcached (a
//!   [`memha_tests::MemcachedCluster`]): one round trip, a pipelined
//!   `get_many`, 64 concurrent gets on one connection.
//! - `benches/compare.rs`: memha side by side with async-memcached 0.9 and
//!   memcache 0.21 against one real memcached: sequential `get` p50/p99 and
//!   a 64-task 90% get / 10% set mix, with the ratios. Run it with
//!   `cargo xtask bench`.
//! - `benches/faults.rs`: 64 tasks (get, set, delete, touch, add) on 3
//!   nodes while one node is killed, paused, blackholed or restarted empty:
//!   ops, p50/p99/p99.9/max and errors by kind per phase (before, during,
//!   after) and per operation, for the defaults and for `AckPolicy::All`.
//!   Run it with `cargo xtask bench --faults`.
//!
//! This library is empty: it only gives the benchmarks a crate to live in.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
