//! The fault proxy against a real memcached: each mode does what it says.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use memha_tests::{raw_roundtrip, FaultProxy, MemcachedCluster, ProxyMode};

const WAIT: Duration = Duration::from_secs(2);

fn version(addr: SocketAddr, timeout: Duration) -> io::Result<Vec<u8>> {
    raw_roundtrip(addr, b"version\r\n", b"\r\n", timeout)
}

fn connected(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the proxy");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

#[test]
fn passes_traffic_and_counts_it() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let proxy = FaultProxy::start(cluster.node(0).addr()).unwrap();
    assert_eq!(proxy.target(), cluster.node(0).addr());
    assert_eq!(proxy.mode(), ProxyMode::Pass);
    let reply = raw_roundtrip(
        proxy.addr(),
        b"set k 5 0 3\r\nabc\r\nget k\r\n",
        b"END\r\n",
        WAIT,
    )
    .unwrap();
    assert_eq!(reply, b"STORED\r\nVALUE k 5 3\r\nabc\r\nEND\r\n");
    assert_eq!(proxy.bytes_from_clients(), 25);
    assert_eq!(proxy.bytes_from_server(), reply.len() as u64);
    assert!(proxy.accepted() >= 1);
}

#[test]
fn delay_adds_latency_both_ways() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let proxy = FaultProxy::start(cluster.node(0).addr()).unwrap();
    proxy.set_mode(ProxyMode::Delay(Duration::from_millis(150)));
    let started = Instant::now();
    version(proxy.addr(), WAIT).unwrap();
    let took = started.elapsed();
    // 150 ms there and 150 ms back.
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    proxy.set_mode(ProxyMode::Pass);
    let started = Instant::now();
    version(proxy.addr(), WAIT).unwrap();
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[test]
fn blackhole_holds_traffic_while_the_server_runs_and_heals_in_order() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let proxy = FaultProxy::start(cluster.node(0).addr()).unwrap();
    let mut stream = connected(proxy.addr());
    stream.write_all(b"version\r\n").unwrap();
    let mut buf = [0u8; 256];
    assert!(stream.read(&mut buf).unwrap() > 0);

    proxy.set_mode(ProxyMode::Blackhole);
    stream.write_all(b"set k 0 0 1\r\nx\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = stream.read(&mut buf).expect_err("nothing comes back");
    assert!(matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ));
    // New connections are accepted, and answered by nobody.
    let err = version(proxy.addr(), Duration::from_millis(300)).expect_err("blackholed");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    // The server itself is fine and never saw the set.
    assert!(cluster.node(0).is_running());
    assert_eq!(
        raw_roundtrip(cluster.node(0).addr(), b"get k\r\n", b"END\r\n", WAIT).unwrap(),
        b"END\r\n"
    );

    proxy.set_mode(ProxyMode::Pass);
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let n = stream.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STORED\r\n");
    version(proxy.addr(), WAIT).unwrap();
}

#[test]
fn drop_resets_open_and_new_connections() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let proxy = FaultProxy::start(cluster.node(0).addr()).unwrap();
    let mut stream = connected(proxy.addr());
    stream.write_all(b"version\r\n").unwrap();
    let mut buf = [0u8; 256];
    assert!(stream.read(&mut buf).unwrap() > 0);

    proxy.set_mode(ProxyMode::Drop);
    // The open connection is reset ...
    let mut outcome = stream.read(&mut buf);
    if outcome.is_ok() {
        // The reset may arrive just after a write.
        let _ = stream.write_all(b"version\r\n");
        outcome = stream.read(&mut buf);
    }
    match outcome {
        Ok(0) => {}
        Ok(n) => panic!("read {n} bytes from a dropped connection"),
        Err(err) => assert_eq!(err.kind(), io::ErrorKind::ConnectionReset),
    }
    // ... and so are new ones.
    assert!(version(proxy.addr(), WAIT).is_err());
    assert!(cluster.node(0).is_running());

    proxy.set_mode(ProxyMode::Pass);
    version(proxy.addr(), WAIT).unwrap();
}

#[test]
fn drop_connections_discards_what_a_blackhole_held() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let proxy = FaultProxy::start(cluster.node(0).addr()).unwrap();
    let mut stream = connected(proxy.addr());
    proxy.set_mode(ProxyMode::Blackhole);
    stream.write_all(b"set held 0 0 1\r\nx\r\n").unwrap();
    // Held in the proxy or in the kernel's buffers: either way never delivered.
    std::thread::sleep(Duration::from_millis(50));
    proxy.drop_connections();
    let deadline = Instant::now() + WAIT;
    while proxy.open_connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(proxy.open_connections(), 0);
    proxy.set_mode(ProxyMode::Pass);
    assert_eq!(
        raw_roundtrip(proxy.addr(), b"get held\r\n", b"END\r\n", WAIT).unwrap(),
        b"END\r\n"
    );
}

#[test]
fn captures_what_clients_send() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let proxy = FaultProxy::start(cluster.node(0).addr()).unwrap();
    version(proxy.addr(), WAIT).unwrap();
    assert!(proxy.captured().is_empty(), "capture is off by default");
    proxy.capture(true);
    version(proxy.addr(), WAIT).unwrap();
    raw_roundtrip(proxy.addr(), b"get a\r\n", b"END\r\n", WAIT).unwrap();
    assert_eq!(proxy.take_captured(), b"version\r\nget a\r\n");
    assert!(proxy.captured().is_empty());
    version(proxy.addr(), WAIT).unwrap();
    assert_eq!(proxy.captured(), b"version\r\n");
    proxy.capture(false);
    version(proxy.addr(), WAIT).unwrap();
    assert!(proxy.captured().is_empty());
}

#[test]
fn a_dead_target_resets_clients_and_a_restart_is_reached_again() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let proxy = FaultProxy::start(cluster.node(0).addr()).unwrap();
    cluster.node(0).kill().unwrap();
    assert!(version(proxy.addr(), WAIT).is_err());
    cluster.node(0).restart().unwrap();
    version(proxy.addr(), WAIT).unwrap();
}

#[test]
fn stopping_closes_everything() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let proxy = FaultProxy::start(cluster.node(0).addr()).unwrap();
    let addr = proxy.addr();
    let mut stream = connected(addr);
    stream.write_all(b"version\r\n").unwrap();
    let mut buf = [0u8; 256];
    assert!(stream.read(&mut buf).unwrap() > 0);
    proxy.stop();
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("read {n} bytes after stop"),
        Err(err) => assert_eq!(err.kind(), io::ErrorKind::ConnectionReset),
    }
    assert!(TcpStream::connect_timeout(&addr, WAIT).is_err());
}
