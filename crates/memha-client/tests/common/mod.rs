//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use memha_client::{Client, ConnectionConfig, Error, NodeService, NodeStackBuilder};
use memha_tests::{raw_roundtrip, FakeServer, MemcachedCluster};
use tokio::net::TcpStream;

/// One real memcached node.
pub fn one_node() -> MemcachedCluster {
    MemcachedCluster::start(1).expect("start memcached")
}

/// A client of `addr` with test-friendly bounds, and its node service (for metrics).
pub fn client_with(
    addr: SocketAddr,
    timeout: Duration,
    connection: ConnectionConfig,
) -> (Client, NodeService) {
    let node = NodeStackBuilder::new()
        .timeout(timeout)
        .connection(connection)
        .build(addr);
    let client = Client::builder()
        .timeout(timeout)
        .build_with_node(node.clone());
    (client, node)
}

/// A client of `addr` with a 2 s timeout and a fast reconnect.
pub fn client(addr: SocketAddr) -> (Client, NodeService) {
    client_with(addr, Duration::from_secs(2), fast_reconnect())
}

pub fn fast_reconnect() -> ConnectionConfig {
    ConnectionConfig::default()
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(50))
}

/// Retries `op` until it succeeds or `limit` passes; returns the last error on failure.
pub async fn eventually<T, F, Fut>(limit: Duration, mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let started = Instant::now();
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(err) if started.elapsed() >= limit => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

pub const BOUND: Duration = Duration::from_secs(5);

/// A scripted server (see `memha_tests::FakeServer`) and its address.
pub async fn fake_server() -> (SocketAddr, FakeServer) {
    let server = FakeServer::start().await.unwrap();
    (server.addr(), server)
}

pub async fn next_connection(server: &mut FakeServer) -> TcpStream {
    server
        .next_connection(BOUND)
        .await
        .expect("the client connects")
}

/// Reads from `stream` until `lines` request lines have arrived.
pub async fn read_lines(stream: &mut TcpStream, lines: usize) -> String {
    memha_tests::read_lines(stream, lines, BOUND)
        .await
        .expect("requests arrive")
}

/// What a node holds for `key`, asked with a plain connection: (value,
/// flags, ttl). A tombstone (an item a delete marked stale: `X`) is no
/// copy: `None`.
pub fn on_node(addr: SocketAddr, key: &str) -> Option<(Vec<u8>, u32, i64)> {
    // `mn` ends the reply, so values holding "\r\n" are read whole.
    let reply = raw_roundtrip(
        addr,
        format!("mg {key} v f t\r\nmn\r\n").as_bytes(),
        b"MN\r\n",
        Duration::from_secs(2),
    )
    .expect("raw mg");
    if reply.starts_with(b"EN") {
        return None;
    }
    let header_end = reply.windows(2).position(|w| w == b"\r\n").unwrap();
    let header = String::from_utf8(reply[..header_end].to_vec()).unwrap();
    let mut parts = header.split(' ');
    assert_eq!(parts.next(), Some("VA"), "{header}");
    let len: usize = parts.next().unwrap().parse().unwrap();
    let (mut flags, mut ttl) = (0, 0);
    for part in parts {
        match part.split_at(1) {
            ("f", v) => flags = v.parse().unwrap(),
            ("t", v) => ttl = v.parse().unwrap(),
            ("X", _) => return None,
            _ => {}
        }
    }
    let start = header_end + 2;
    Some((reply[start..start + len].to_vec(), flags, ttl))
}

/// Whether `addr` holds a live copy of `key` (neither missing nor a
/// tombstone: invalidated, flagged `X`).
pub fn live_on(addr: SocketAddr, key: &str) -> bool {
    let reply = raw_roundtrip(
        addr,
        format!("mg {key} v\r\nmn\r\n").as_bytes(),
        b"MN\r\n",
        Duration::from_secs(2),
    )
    .expect("raw mg");
    let header = reply.split(|&b| b == b'\r').next().unwrap_or_default();
    header.starts_with(b"VA") && !header.split(|&b| b == b' ').any(|flag| flag == b"X")
}
