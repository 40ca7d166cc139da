//! Benchmarks for memha, run with `cargo bench -p memha-benches`.
//!
//! - `benches/codec.rs`: encoding commands and decoding replies with
//!   `memha-proto`, no IO.
//!
//! Client benchmarks against real servers (a
//! [`memha_tests::MemcachedCluster`]) land together with the client. This
//! library is empty: it only gives the benchmarks a crate to live in.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
