//! Hostile servers: a fake node that answers health probes like memcached
//! (so it is first Up) and then misbehaves on data commands. Each
//! misbehaviour must give a typed error, keep the read buffer within its
//! bounds, get the node marked Down, and leave the real nodes serving.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memha_chaos::Rng;
use memha_client::{
    Client, ConnectionConfig, ErrorKind, HealthConfig, NodeStackBuilder, NodeState,
    ReplicationConfig,
};
use memha_tests::{raw_roundtrip, FakeServer, MemcachedCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_millis(300);
/// The read chunk (64 KiB) plus room for the longest status line (8 KiB)
/// and one more chunk: no misbehaviour here needs the value buffer.
const BUFFER_BOUND: u64 = 2 * 64 * 1024 + 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hostility {
    /// 64 KiB of random bytes.
    RandomBytes,
    /// `VA 4294967296`: a 4 GiB value.
    HugeValue,
    /// A line that never ends (16 MiB without `\r\n`).
    EndlessLine,
    /// An answer, then one more to a request never sent.
    Unsolicited,
    /// The start of a value, then the connection closes.
    CloseMidValue,
}

/// A fake memcached node on a loopback port: `stats` gets a sensible
/// answer (pid 1, a growing uptime); data commands get `hostility`.
async fn fake_node(hostility: Hostility) -> SocketAddr {
    let server = FakeServer::start().await.unwrap();
    let addr = server.addr();
    let started = Instant::now();
    server.serve_each(move |stream, connection| serve(stream, hostility, started, connection));
    addr
}

fn stats(started: Instant) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "STAT pid 1\r\nSTAT uptime {}\r\nSTAT time {now}\r\nSTAT version 1.6.18\r\nEND\r\n",
        10 + started.elapsed().as_secs()
    )
    .into_bytes()
}

async fn serve(mut stream: TcpStream, hostility: Hostility, started: Instant, seed: u64) {
    let mut input = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Some(end) = input.windows(2).position(|w| w == b"\r\n") else {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => input.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let line: Vec<u8> = input.drain(..end + 2).take(end).collect();
        if line == b"stats" {
            if stream.write_all(&stats(started)).await.is_err() {
                return;
            }
            continue;
        }
        // A data command: skip the value block of a set.
        if line.starts_with(b"ms ") {
            let len: usize = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| l.split(' ').nth(2))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            while input.len() < len + 2 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => input.extend_from_slice(&buf[..n]),
                }
            }
            input.drain(..len + 2);
        }
        let answer: &[u8] = if line.starts_with(b"mg ") {
            b"EN\r\n"
        } else if line.starts_with(b"mn") {
            b"MN\r\n"
        } else {
            b"HD\r\n"
        };
        let done = match hostility {
            Hostility::RandomBytes => {
                let mut rng = Rng::new(seed, 7);
                let junk: Vec<u8> = (0..64 * 1024).map(|_| rng.next_u64() as u8).collect();
                stream.write_all(&junk).await.is_err()
            }
            Hostility::HugeValue => stream
                .write_all(b"VA 4294967296 f0 t-1\r\nxxxxxxxx")
                .await
                .is_err(),
            Hostility::EndlessLine => {
                let chunk = vec![b'x'; 64 * 1024];
                let mut failed = false;
                for _ in 0..256 {
                    if stream.write_all(&chunk).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                failed
            }
            Hostility::Unsolicited => {
                // The answer, then, once the client is idle, an answer to
                // a request it never sent.
                if stream.write_all(answer).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                stream.write_all(b"VA 4 f0\r\nEVIL\r\n").await.is_err()
            }
            Hostility::CloseMidValue => {
                let _ = stream.write_all(b"VA 100 f0 t-1\r\nonly part of it").await;
                return;
            }
        };
        if done {
            return;
        }
    }
}

/// A bare node stack (timeout and retries, no health) over one address.
fn single(addr: SocketAddr) -> (Client, memha_client::NodeService) {
    let node = NodeStackBuilder::new()
        .timeout(Duration::from_secs(2))
        .connection(ConnectionConfig::default())
        .build(addr);
    let client = Client::builder()
        .timeout(Duration::from_secs(2))
        .build_with_node(node.clone());
    (client, node)
}

fn health() -> HealthConfig {
    HealthConfig::default()
        .up_interval(Duration::from_millis(200))
        .backoff(Duration::from_millis(20), 1.5, Duration::from_millis(300))
}

/// Alone, through a bare node stack: a typed error, a bounded buffer.
async fn alone(hostility: Hostility) {
    let fake = fake_node(hostility).await;
    let (alone, node) = single(fake);
    let started = Instant::now();
    match alone.get("k").await {
        Ok(item) if hostility == Hostility::Unsolicited => {
            // The answer itself was right; the extra one comes when the
            // client is idle and must close the connection, never reach
            // a later request.
            assert_eq!(item, None);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let metrics = node.connection_metrics().unwrap();
            assert_eq!(metrics.disconnects, 1, "{metrics:?}");
            for _ in 0..5 {
                match alone.get("k").await {
                    Ok(item) => assert_eq!(item, None, "a later request got the extra answer"),
                    Err(err) => assert!(
                        matches!(err.kind(), ErrorKind::Protocol | ErrorKind::Connection),
                        "{err}"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(item) => panic!("{hostility:?}: got {item:?}"),
        Err(err) => assert!(
            matches!(err.kind(), ErrorKind::Protocol | ErrorKind::Connection),
            "{hostility:?}: {err} ({:?})",
            err.kind()
        ),
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{hostility:?}: the error took {:?}, more than the timeout",
        started.elapsed()
    );
    let peak = node.connection_metrics().unwrap().read_buffer_peak;
    assert!(
        peak <= BUFFER_BOUND,
        "{hostility:?}: read buffer grew to {peak} bytes"
    );
}

/// In a cluster with two real nodes: marked Down, the others serve.
async fn in_cluster(hostility: Hostility) {
    let fake = fake_node(hostility).await;
    let cluster = MemcachedCluster::start(2).unwrap();
    let mut addrs = cluster.addrs();
    addrs.push(fake);
    let client = Client::builder()
        .nodes(addrs.iter().copied())
        .timeout(TIMEOUT)
        .health(health())
        .replication(ReplicationConfig::default())
        .build()
        .await
        .unwrap();
    let replicate = client.cluster().unwrap().clone();
    replicate
        .health()
        .wait_for_nodes(3, Duration::from_secs(5))
        .await
        .expect("the fake answers probes, so it comes Up");
    let mut transitions = replicate.health().transitions();
    // A write goes to every node, the fake included.
    let first = client.set("first", "value").await;
    let went_down = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(t) = transitions.recv().await {
            if t.node == fake && t.to == NodeState::Down {
                return;
            }
        }
    })
    .await;
    assert!(
        went_down.is_ok(),
        "{hostility:?}: the fake was never marked Down"
    );
    // The two real nodes are a majority: the write succeeds, the fake
    // recorded as missing it.
    first.unwrap_or_else(|err| panic!("{hostility:?}: {err}"));
    // The real nodes keep serving. Writes may fail while the fake is
    // readmitted (it answers probes); reads never do.
    let (mut write_failures, mut writes) = (0, 0);
    for i in 0..40 {
        let key = format!("k{i}");
        writes += 1;
        if client.set(key.as_str(), format!("v{i}")).await.is_err() {
            write_failures += 1;
            continue;
        }
        let item = client.get(key.as_str()).await.expect("reads succeed");
        assert_eq!(
            item.expect("written").value,
            format!("v{i}"),
            "{hostility:?}: k{i}"
        );
    }
    for addr in cluster.addrs() {
        assert_eq!(replicate.health().state(addr), Some(NodeState::Up));
    }
    let peak = replicate
        .node(fake)
        .unwrap()
        .connection_metrics()
        .unwrap()
        .read_buffer_peak;
    assert!(
        peak <= BUFFER_BOUND,
        "{hostility:?}: read buffer grew to {peak} bytes"
    );
    // Nothing the fake made up reached the real nodes.
    for addr in cluster.addrs() {
        for i in 0..40 {
            let reply = raw_roundtrip(
                addr,
                format!("mg k{i} v\r\nmn\r\n").as_bytes(),
                b"MN\r\n",
                Duration::from_secs(2),
            )
            .unwrap();
            assert!(
                !reply.windows(4).any(|w| w == b"EVIL"),
                "{hostility:?}: k{i} on {addr}: {}",
                String::from_utf8_lossy(&reply)
            );
        }
    }
    println!(
        "{hostility:?}: {write_failures} of {writes} writes failed while the fake was Up or Rejoining; fake now {:?}",
        replicate.health().state(fake)
    );
}

async fn contained(hostility: Hostility) {
    alone(hostility).await;
    in_cluster(hostility).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes() {
    contained(Hostility::RandomBytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_gib_value() {
    contained(Hostility::HugeValue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_never_ends() {
    contained(Hostility::EndlessLine).await;
}

/// An answer that arrives while nothing is in flight closes the connection
/// and never reaches a later request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_to_a_request_never_sent() {
    alone(Hostility::Unsolicited).await;
}

/// Under load, the made-up answer arrives while another request is in
/// flight: every meta request carries an opaque token, so the answer that
/// does not echo it is refused (the connection closes, the node goes Down)
/// instead of being taken as that request's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_to_a_request_never_sent_while_busy() {
    in_cluster(Hostility::Unsolicited).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_in_the_middle_of_a_value() {
    contained(Hostility::CloseMidValue).await;
}
