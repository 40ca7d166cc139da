//! The design's promises, proven against 3 real memcached nodes.

mod common;

use common::{live_on, on_node, BOUND};

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memha_client::{
    AckPolicy, Client, DeleteOutcome, HealthConfig, NodeState, ReplicationConfig, StoreOutcome, Ttl,
};
use memha_discovery::{async_trait, NodeAddr, NodeSource};
use memha_tests::{raw_roundtrip, FaultProxy, MemcachedCluster, ProxyMode};

const TIMEOUT: Duration = Duration::from_millis(300);

fn fast_health() -> HealthConfig {
    HealthConfig::default()
        .up_interval(Duration::from_millis(200))
        .backoff(Duration::from_millis(20), 1.5, Duration::from_millis(300))
}

async fn client_of(addrs: &[SocketAddr], replication: ReplicationConfig) -> Client {
    Client::builder()
        .nodes(addrs.iter().copied())
        .timeout(TIMEOUT)
        .health(fast_health())
        .replication(replication)
        .build()
        .await
        .expect("build client")
}

fn raw_set(addr: SocketAddr, key: &str, value: &str) {
    let reply = raw_roundtrip(
        addr,
        format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes(),
        b"\r\n",
        Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(reply, b"STORED\r\n");
}

/// Waits until the node at `addr` is in `state` (as health sees it).
async fn wait_state(client: &Client, addr: SocketAddr, state: NodeState) {
    let health = client.cluster().expect("a cluster client").health();
    let mut transitions = health.transitions();
    let deadline = Instant::now() + Duration::from_secs(10);
    while health.state(addr) != Some(state) {
        let left = deadline.saturating_duration_since(Instant::now());
        let seen = tokio::time::timeout(left, transitions.recv()).await;
        assert!(
            seen.is_ok(),
            "{addr} never became {state:?}: {:?}",
            health.state(addr)
        );
    }
}

async fn wait_all_up(client: &Client, n: usize) {
    client
        .cluster()
        .unwrap()
        .health()
        .wait_for_nodes(n, Duration::from_secs(10))
        .await
        .expect("nodes up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_1_a_read_hits_while_any_copy_lives() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let client = client_of(&cluster.addrs(), ReplicationConfig::default()).await;
    for i in 0..20 {
        client
            .set(format!("s:{i}"), format!("v{i}"))
            .ttl(Ttl::seconds(600))
            .flags(i)
            .await
            .unwrap();
    }
    cluster.node(0).kill().unwrap();
    cluster.node(1).kill().unwrap();
    for i in 0..20 {
        let item = client
            .get(format!("s:{i}"))
            .await
            .unwrap()
            .expect("no false miss");
        assert_eq!(
            (item.value.as_ref(), item.flags),
            (format!("v{i}").as_bytes(), i)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_1_and_3_restarted_empty_nodes_are_repaired_with_the_ttl() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let writer = client_of(&addrs, ReplicationConfig::default()).await;
    let keys: Vec<String> = (0..12).map(|i| format!("session:{i}")).collect();
    write_sessions(&writer, &keys).await;
    cluster.node(0).restart().unwrap();
    cluster.node(2).restart().unwrap();
    // Every subset size, so every node is the one asked first for some key.
    for read_nodes in 1..=3 {
        let reader = client_of(&addrs, ReplicationConfig::default().read_nodes(read_nodes)).await;
        wait_all_up(&reader, 3).await;
        for key in &keys {
            let item = reader.get(key.as_str()).await.unwrap();
            assert_eq!(
                item.map(|i| i.value),
                Some(key.clone().into()),
                "{key} with {read_nodes}"
            );
        }
    }
    let survivor = addrs[1];
    for key in &keys {
        let (_, _, ttl) = on_node(survivor, key).unwrap();
        for &addr in &addrs {
            let (value, flags, node_ttl) = on_node(addr, key).expect("repaired");
            assert_eq!(
                (value.as_slice(), flags),
                (key.as_bytes(), 5),
                "{key} on {addr}"
            );
            assert!(
                (node_ttl - ttl).abs() <= 1,
                "{key} on {addr}: ttl {node_ttl} vs {ttl}"
            );
        }
    }
}

/// Sets `keys` through `client` (TTL 900 s, flags 5).
async fn write_sessions(client: &Client, keys: &[String]) {
    for key in keys {
        client
            .set(key.as_str(), key.clone())
            .ttl(Ttl::seconds(900))
            .flags(5)
            .await
            .unwrap();
    }
}

/// Whether `addr` is catching up, as the client's counters say.
fn catching_up(client: &Client, addr: SocketAddr) -> bool {
    let stats = client.cluster().unwrap().metrics();
    let node = stats.nodes.iter().find(|node| node.addr == addr);
    node.unwrap_or_else(|| panic!("{addr} in {stats:?}"))
        .catching_up
}

/// Reads every key once through `client`, then returns the keys that
/// `addr` lacks, after checking that every copy there is the key's own.
async fn read_once_then_missing_on(client: &Client, keys: &[String], addr: SocketAddr) -> usize {
    for key in keys {
        let item = client.get(key.as_str()).await.unwrap().expect("a hit");
        assert_eq!(&item.value[..], key.as_bytes());
    }
    let mut missing = 0;
    for key in keys {
        match on_node(addr, key) {
            Some((value, flags, ttl)) => {
                assert_eq!((value.as_slice(), flags), (key.as_bytes(), 5), "{key}");
                assert!((890..=900).contains(&ttl), "{key}: ttl {ttl}");
            }
            None => missing += 1,
        }
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_3_one_read_repairs_a_node_that_returned_empty() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    // Reads ask 2 of the 3 nodes.
    let client = client_of(&addrs, ReplicationConfig::default()).await;
    let keys: Vec<String> = (0..24).map(|i| format!("returned:{i}")).collect();
    write_sessions(&client, &keys).await;
    assert!(!catching_up(&client, addrs[2]));

    // The client sees the node come back (its probe finds a new pid) and
    // makes it safe before it turns Up.
    let mut transitions = client.cluster().unwrap().health().transitions();
    cluster.node(2).restart().unwrap();
    loop {
        let transition = tokio::time::timeout(Duration::from_secs(10), transitions.recv())
            .await
            .expect("the restart is seen")
            .expect("a transition");
        if transition.node == addrs[2] && transition.to == NodeState::Up {
            break;
        }
    }
    assert!(catching_up(&client, addrs[2]));
    assert_eq!(read_once_then_missing_on(&client, &keys, addrs[2]).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_3_one_read_fills_a_node_added_later_within_its_catch_up_window() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let keys: Vec<String> = (0..24).map(|i| format!("added:{i}")).collect();
    for (window, name) in [
        (Duration::from_secs(3600), "default"),
        (Duration::ZERO, "none"),
    ] {
        cluster.node(2).restart().unwrap();
        let replication = ReplicationConfig::default().catch_up_window(window);
        let client = client_of(&addrs[..2], replication).await;
        write_sessions(&client, &keys).await;
        client.cluster().unwrap().add_node(addrs[2]);
        wait_all_up(&client, 3).await;
        let missing = read_once_then_missing_on(&client, &keys, addrs[2]).await;
        if window.is_zero() {
            // Without the window a read asks the new node only when it is
            // the key's primary or its turn in the rotation comes.
            assert!(missing > 0, "window {name}: every key reached the new node");
        } else {
            assert_eq!(missing, 0, "window {name}");
        }
    }
}

/// Pauses node 0, deletes "gone" and overwrites "changed", resumes it, and
/// checks that neither the paused node nor any read brings the old data back.
async fn no_resurrection(wait_for_down_first: bool) {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let client = client_of(&addrs, ReplicationConfig::default().read_nodes(3)).await;
    client.set("gone", "old").await.unwrap();
    client.set("changed", "old").await.unwrap();
    let paused = addrs[0];
    cluster.node(0).pause().unwrap();
    if wait_for_down_first {
        // Probes time out: nothing written from now on reaches the node.
        wait_state(&client, paused, NodeState::Down).await;
    }
    // A majority acknowledges the writes (the frozen node is recorded as
    // missing them); under `AckPolicy::All` they would be retried until
    // the node is Down.
    common::eventually(Duration::from_secs(10), || client.delete("gone"))
        .await
        .unwrap();
    common::eventually(Duration::from_secs(10), || async {
        client.set("changed", "new").await
    })
    .await
    .unwrap();
    cluster.node(0).resume().unwrap();
    wait_state(&client, paused, NodeState::Up).await;
    // Before any read could repair it, the returned node holds no old data.
    assert_eq!(on_node(paused, "gone"), None, "the deleted key is back");
    assert_ne!(
        on_node(paused, "changed").map(|c| c.0),
        Some(b"old".to_vec())
    );
    for _ in 0..50 {
        assert_eq!(client.get("gone").await.unwrap(), None);
        let changed = client.get("changed").await.unwrap().unwrap();
        assert_eq!(changed.value, "new");
    }
    let stats = client.cluster().unwrap().metrics();
    if wait_for_down_first {
        assert!(stats.invalidated >= 2, "{stats:?}");
    }
    // Otherwise a majority acknowledged both writes while the node was
    // frozen (it was recorded as missing them); it may apply them once
    // resumed, or be seen Down and have them invalidated: either way it
    // holds no old data, as checked above.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_2_a_node_paused_and_seen_down_never_resurrects() {
    no_resurrection(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_2_a_node_paused_mid_write_never_resurrects() {
    no_resurrection(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_3_divergent_nodes_converge_to_the_primarys_value() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let client = client_of(&addrs, ReplicationConfig::default()).await;
    for i in 0..10 {
        let key = format!("div:{i}");
        for (n, &addr) in addrs.iter().enumerate() {
            raw_set(addr, &key, &format!("node{n}"));
        }
        let primary = client.cluster().unwrap().placement(&key)[0];
        let expected = format!("node{}", addrs.iter().position(|&a| a == primary).unwrap());
        let item = client.get(key.as_str()).await.unwrap().unwrap();
        assert_eq!(item.value, expected.as_bytes());
        // The read leaves live copies that merely differ (they may be a
        // write on its way) to its recheck, 60 ms later, which asks every
        // node and converges them. No event tells it: polled, bounded.
        let deadline = Instant::now() + BOUND;
        loop {
            let copies: Vec<Vec<u8>> = addrs
                .iter()
                .map(|&addr| on_node(addr, &key).unwrap().0)
                .collect();
            if copies.iter().all(|copy| copy == expected.as_bytes()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key} never converged: {copies:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(client.cluster().unwrap().metrics().divergences >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_4_a_standard_client_reads_exactly_what_memha_wrote() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let client = client_of(&cluster.addrs(), ReplicationConfig::default()).await;
    let value: &[u8] = b"plain \r\nEND\r\n bytes \x00\xff";
    client
        .set("plain", value)
        .flags(42)
        .ttl(Ttl::seconds(1000))
        .await
        .unwrap();
    for addr in cluster.addrs() {
        let standard = memcache::connect(format!("memcache://{addr}?protocol=ascii")).unwrap();
        let (bytes, flags, _cas): (Vec<u8>, u32, Option<u64>) = standard
            .get("plain")
            .unwrap()
            .expect("stored on every node");
        assert_eq!((bytes.as_slice(), flags), (value, 42), "on {addr}");
        let (_, _, ttl) = on_node(addr, "plain").unwrap();
        assert!((999..=1000).contains(&ttl), "ttl {ttl} on {addr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_5_all_nodes_down_is_a_typed_error_within_the_timeout() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let client = client_of(&cluster.addrs(), ReplicationConfig::default()).await;
    client.set("k", "v").await.unwrap();
    for node in cluster.nodes() {
        node.kill().unwrap();
    }
    for _ in 0..3 {
        let started = Instant::now();
        let err = client.get("k").await.unwrap_err();
        assert!(
            started.elapsed() < TIMEOUT * 2,
            "took {:?}",
            started.elapsed()
        );
        assert!(err.is_connection() || err.is_no_nodes(), "{err}");
        let err = client.set("k", "v").await.unwrap_err();
        assert!(
            err.is_connection() || err.is_no_nodes() || err.is_partial_write(),
            "{err}"
        );
    }
    for addr in cluster.addrs() {
        wait_state(&client, addr, NodeState::Down).await;
    }
    let err = client.get("k").await.unwrap_err();
    assert!(err.is_no_nodes(), "{err}");
    assert!(err.to_string().contains("down"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_give_the_exact_total_on_every_node() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let client = client_of(&cluster.addrs(), ReplicationConfig::default()).await;
    client.set("counter", "0").await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    client.increment("counter", 1).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for addr in cluster.addrs() {
        assert_eq!(on_node(addr, "counter").unwrap().0, b"320", "on {addr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_racing_add_have_exactly_one_winner_everywhere() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let one = client_of(&cluster.addrs(), ReplicationConfig::default()).await;
    let two = client_of(&cluster.addrs(), ReplicationConfig::default()).await;
    for i in 0..20 {
        let key = format!("race:{i}");
        let (a, b) = tokio::join!(one.add(key.as_str(), "one"), two.add(key.as_str(), "two"));
        let (a, b) = (a.unwrap(), b.unwrap());
        let winner = match (a, b) {
            (StoreOutcome::Stored, StoreOutcome::NotStored) => "one",
            (StoreOutcome::NotStored, StoreOutcome::Stored) => "two",
            other => panic!("{key}: {other:?}"),
        };
        for addr in cluster.addrs() {
            assert_eq!(
                on_node(addr, &key).unwrap().0,
                winner.as_bytes(),
                "{key} on {addr}"
            );
        }
    }
}

/// A discovery source the test rewrites while the client runs.
#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<Vec<NodeAddr>>>);

#[async_trait]
impl NodeSource for Scripted {
    async fn nodes(&self) -> Result<Vec<NodeAddr>, memha_discovery::Error> {
        Ok(self.0.lock().unwrap().clone())
    }
}

impl Scripted {
    fn set(&self, addrs: &[SocketAddr]) {
        *self.0.lock().unwrap() = addrs
            .iter()
            .map(|a| NodeAddr::new(a.ip().to_string(), a.port()))
            .collect();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_added_and_removed_under_load_fail_no_request() {
    let cluster = MemcachedCluster::start(4).unwrap();
    let addrs = cluster.addrs();
    let source = Scripted::default();
    source.set(&addrs[..3]);
    let client = Client::builder()
        .source(source.clone())
        .discovery_interval(Duration::from_millis(50))
        .timeout(Duration::from_secs(1))
        .health(fast_health())
        .build()
        .await
        .unwrap();
    wait_all_up(&client, 3).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (client, stop, ops) = (client.clone(), stop.clone(), ops.clone());
            tokio::spawn(async move {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}:{}", round % 50);
                    let value = format!("{round}");
                    client
                        .set(key.as_str(), value.clone())
                        .await
                        .expect("set failed");
                    let read = client.get(key.as_str()).await.expect("get failed");
                    assert_eq!(read.map(|i| i.value), Some(value.into()), "{key}");
                    ops.fetch_add(2, Ordering::Relaxed);
                    round += 1;
                }
            })
        })
        .collect();
    let cluster_view = client.cluster().unwrap();
    source.set(&addrs);
    wait_state(&client, addrs[3], NodeState::Up).await;
    source.set(&addrs[1..]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster_view
        .metrics()
        .nodes
        .iter()
        .any(|n| n.addr == addrs[0])
    {
        assert!(Instant::now() < deadline, "node 0 was never removed");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = ops.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ops.load(Ordering::Relaxed) < before + 200 {
        assert!(Instant::now() < deadline, "load stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("no request failed");
    }
    let nodes: HashSet<SocketAddr> = cluster_view
        .metrics()
        .nodes
        .iter()
        .map(|n| n.addr)
        .collect();
    assert_eq!(nodes, addrs[1..].iter().copied().collect());
}

/// Two of three nodes acknowledge a write while the third is paused; the
/// paused one times out, goes Down with the key journaled, loses the key
/// when it returns (it may have applied the write it had buffered), and a
/// read repairs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_write_succeeds_with_one_node_paused() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let client = client_of(&addrs, ReplicationConfig::default().ack(AckPolicy::Quorum)).await;
    wait_all_up(&client, 3).await;
    let cluster_view = client.cluster().unwrap();
    cluster.node(2).pause().unwrap();
    client
        .set("q", "v")
        .await
        .expect("two of three acknowledge");
    for &addr in &addrs[..2] {
        assert_eq!(
            on_node(addr, "q").map(|(value, ..)| value),
            Some(b"v".to_vec()),
            "live node {addr} acknowledged but does not hold the value"
        );
    }

    // Its write times out: node 2 goes Down and is journaled as missing "q".
    wait_state(&client, addrs[2], NodeState::Down).await;
    let journaled = || {
        cluster_view
            .metrics()
            .nodes
            .iter()
            .find(|n| n.addr == addrs[2])
            .map_or(0, |n| n.journaled)
    };
    // No event tells a journal entry: polled, bounded.
    let deadline = Instant::now() + BOUND;
    while journaled() == 0 {
        assert!(Instant::now() < deadline, "node 2 never journaled \"q\"");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Back, it is made safe (the journaled key deleted) before it turns Up.
    cluster.node(2).resume().unwrap();
    wait_state(&client, addrs[2], NodeState::Up).await;
    assert_eq!(
        on_node(addrs[2], "q"),
        None,
        "the returning node kept a key it was journaled as missing"
    );

    // Catching up, it is asked by the next read, which repairs it.
    let item = client.get("q").await.unwrap();
    assert_eq!(item.map(|i| i.value), Some("v".into()));
    // The read repairs before it answers; polled (bounded) so that a repair
    // finished in the background passes too.
    let deadline = Instant::now() + BOUND;
    loop {
        match on_node(addrs[2], "q") {
            Some((value, ..)) => {
                assert_eq!(value, b"v", "node 2 repaired with the wrong value");
                break;
            }
            None => assert!(Instant::now() < deadline, "a read never repaired node 2"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touch_reaches_every_node_and_repairs_one_that_lacked_the_key() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let client = client_of(&addrs, ReplicationConfig::default()).await;
    client
        .set("t", "value")
        .flags(9)
        .ttl(Ttl::seconds(100))
        .await
        .unwrap();
    let reply = raw_roundtrip(addrs[1], b"md t\r\n", b"\r\n", Duration::from_secs(2)).unwrap();
    assert_eq!(reply, b"HD\r\n");
    let touched = client.touch("t", Ttl::seconds(5000)).await.unwrap();
    assert_eq!(touched, memha_client::TouchOutcome::Touched);
    for addr in addrs {
        let (value, flags, ttl) = on_node(addr, "t").expect("on every node");
        assert_eq!((value.as_slice(), flags), (&b"value"[..], 9), "on {addr}");
        assert!((4999..=5000).contains(&ttl), "ttl {ttl} on {addr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_does_not_delay_a_hit() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let waiting = client_of(&addrs, ReplicationConfig::default().read_nodes(3)).await;
    let first_hit = client_of(
        &addrs,
        ReplicationConfig::default()
            .read_nodes(3)
            .return_on_first_hit(true),
    )
    .await;
    waiting.set("h", "v").await.unwrap();
    cluster.node(0).pause().unwrap();
    // Waiting for the whole subset costs at most the hung node's timeout...
    let started = Instant::now();
    assert_eq!(waiting.get("h").await.unwrap().unwrap().value, "v");
    assert!(
        started.elapsed() < TIMEOUT + Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    // ...and returning on the first hit does not wait for it at all.
    let started = Instant::now();
    assert_eq!(first_hit.get("h").await.unwrap().unwrap().value, "v");
    assert!(started.elapsed() < TIMEOUT / 2, "{:?}", started.elapsed());
    cluster.node(0).resume().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_beyond_30_days_survives_repair() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let client = client_of(&addrs, ReplicationConfig::default().read_nodes(3)).await;
    let sixty_days = Duration::from_secs(60 * 24 * 3600);
    client
        .set("long", "v")
        .ttl(Ttl::from(sixty_days))
        .await
        .unwrap();
    cluster.node(1).restart().unwrap();
    wait_all_up(&client, 3).await;
    assert!(client.get("long").await.unwrap().is_some());
    let (_, _, ttl) = on_node(addrs[1], "long").expect("repaired");
    let expected = sixty_days.as_secs() as i64;
    // memcached keeps time in whole seconds from its own start: an absolute
    // exptime can read back one second long on a node just restarted.
    assert!(
        (expected - 2..=expected + 1).contains(&ttl),
        "ttl {ttl}, expected about {expected}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_node_that_missed_more_than_its_journal_holds_is_flushed() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let client = client_of(&addrs, ReplicationConfig::default().journal_capacity(3)).await;
    for i in 0..6 {
        client.set(format!("j:{i}"), "old").await.unwrap();
    }
    cluster.node(0).pause().unwrap();
    wait_state(&client, addrs[0], NodeState::Down).await;
    for i in 0..6 {
        client.delete(format!("j:{i}")).await.unwrap();
    }
    cluster.node(0).resume().unwrap();
    wait_state(&client, addrs[0], NodeState::Up).await;
    assert_eq!(client.cluster().unwrap().metrics().flushes, 1);
    for i in 0..6 {
        assert_eq!(
            on_node(addrs[0], &format!("j:{i}")),
            None,
            "j:{i} came back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_queued_behind_a_hung_primary_end_in_time_and_one_fails_over() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    // The hung node stays Up (it never reaches the threshold), so every
    // coordinated call on the key goes to it and holds the key's lock.
    let client = Client::builder()
        .nodes(addrs.iter().copied())
        .timeout(TIMEOUT)
        .health(fast_health().timeout_threshold(1_000))
        .build()
        .await
        .unwrap();
    wait_all_up(&client, 3).await;
    let primary = client.cluster().unwrap().placement("queued")[0];
    let index = addrs.iter().position(|&a| a == primary).unwrap();
    cluster.node(index).pause().unwrap();
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = client.add("queued", format!("v{i}")).await;
                (started.elapsed(), result)
            })
        })
        .collect();
    // Forty calls one after the other would take far longer: each waits at
    // most one timeout for the lock, then makes its own rounds.
    let budget = TIMEOUT * 8 + Duration::from_millis(250);
    let mut stored = 0;
    for call in calls {
        let (elapsed, result) = call.await.unwrap();
        assert!(elapsed <= budget, "{elapsed:?} > {budget:?}: {result:?}");
        stored += usize::from(matches!(result, Ok(StoreOutcome::Stored)));
    }
    // The call holding the lock primes the hung primary (its timeout),
    // sends it the add (another), takes it Down and decides on the next
    // node: one add stores; the others gave up waiting for the lock.
    assert_eq!(stored, 1, "one add fails over to the next node and stores");
    let item = client.get("queued").await.unwrap().expect("the add stored");
    assert!(item.value.starts_with(b"v"), "{item:?}");
    cluster.node(index).resume().unwrap();
}

/// A node restarts unnoticed (no request in flight, its next probe not due),
/// takes writes again, then goes away and misses one. When it returns, its
/// probe says "restarted" (against the report from before the restart): it
/// must still lose the keys it missed, or it serves the value from before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_2_a_restart_seen_late_does_not_excuse_missed_writes() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let proxies: Vec<FaultProxy> = addrs
        .iter()
        .map(|&a| FaultProxy::start(a).unwrap())
        .collect();
    let via: Vec<SocketAddr> = proxies.iter().map(FaultProxy::addr).collect();
    let client = Client::builder()
        .nodes(via.iter().copied())
        .timeout(TIMEOUT)
        .health(fast_health().up_interval(Duration::from_secs(3600)))
        .build()
        .await
        .unwrap();
    wait_all_up(&client, 3).await;
    let cluster_view = client.cluster().unwrap();
    // A key whose primary is node 0, so its copy would win a divergence.
    let key = (0..)
        .map(|i| format!("late:{i}"))
        .find(|key| cluster_view.placement(key)[0] == via[0])
        .unwrap();
    client.set(key.as_str(), "v1").await.unwrap();

    let node0 = cluster_view.node(via[0]).unwrap();
    let disconnects = node0.connection_metrics().unwrap().disconnects;
    cluster.node(0).restart().unwrap();
    // The idle connection sees the close and reconnects on the next request.
    tokio::time::timeout(BOUND, async {
        while node0.connection_metrics().unwrap().disconnects == disconnects {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("node 0's connection never saw the restart within {BOUND:?}"));
    client.set(key.as_str(), "v2").await.unwrap();
    assert_eq!(on_node(addrs[0], &key).unwrap().0, b"v2");
    assert_eq!(cluster_view.health().state(via[0]), Some(NodeState::Up));

    // Cut off, it misses v3 for good; back, it is found "restarted".
    proxies[0].set_mode(ProxyMode::Drop);
    // A majority stores it; node 0 is recorded as missing it.
    client.set(key.as_str(), "v3").await.unwrap();
    assert_eq!(on_node(addrs[1], &key).unwrap().0, b"v3");
    assert_eq!(on_node(addrs[0], &key).unwrap().0, b"v2");
    let mut transitions = cluster_view.health().transitions();
    proxies[0].set_mode(ProxyMode::Pass);
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(t) = transitions.recv().await {
            if t.node == via[0] && t.to == NodeState::Up {
                return;
            }
        }
    })
    .await
    .expect("node 0 returns");

    assert_ne!(
        on_node(addrs[0], &key).map(|(value, ..)| value),
        Some(b"v2".to_vec()),
        "the returning node kept a value it was known to have missed"
    );
    let item = client.get(key.as_str()).await.unwrap().unwrap();
    assert_eq!(item.value, "v3");
}

/// Promise 6 for reads: a frozen node (SIGSTOP) holds no hit up for its
/// timeout. After the hedge delay (3 ms) the read asks another node, and
/// once the frozen one counts as stalled (20 ms with no answer) two
/// agreeing answers are enough: a bound of hedge + stall + a recheck, far
/// under half the 300 ms timeout the read would otherwise wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_holds_no_hit_up_for_its_timeout() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let client = client_of(&cluster.addrs(), ReplicationConfig::default()).await;
    let keys: Vec<String> = (0..20).map(|i| format!("hedged:{i}")).collect();
    for key in &keys {
        client.set(key, "v").await.unwrap();
    }
    cluster.node(0).pause().unwrap();
    for key in &keys {
        let started = Instant::now();
        assert_eq!(client.get(key).await.unwrap().unwrap().value, "v");
        assert!(
            started.elapsed() < TIMEOUT / 2,
            "{key}: {:?}",
            started.elapsed()
        );
    }
    let stats = client.cluster().unwrap().metrics();
    assert!(stats.hedges > 0, "{stats:?}");
    cluster.node(0).resume().unwrap();
}

/// A coordinated operation whose primary froze fails over within one node
/// timeout, its priming read included: the primary is given up on after
/// nine tenths of the timeout, taken Down, and the next node in rank is
/// primed and decides. (Before, the priming read waited the whole timeout,
/// one timeout did not take the primary Down, and the decision waited a
/// second one on it: about twice the timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_whose_primary_froze_fails_over_within_one_timeout() {
    const LONG: Duration = Duration::from_secs(1);
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let client = Client::builder()
        .nodes(addrs.iter().copied())
        .timeout(LONG)
        .health(fast_health())
        .build()
        .await
        .unwrap();
    let key = (0..)
        .map(|i| format!("frozen-primary:{i}"))
        .find(|key| client.cluster().unwrap().placement(key.as_str())[0] == addrs[0])
        .unwrap();
    cluster.node(0).pause().unwrap();
    let started = Instant::now();
    let added = client.add(key.as_str(), "v").await;
    let took = started.elapsed();
    let state = client.cluster().unwrap().health().state(addrs[0]);
    cluster.node(0).resume().unwrap();
    assert_eq!(
        state,
        Some(NodeState::Down),
        "the frozen primary is taken Down"
    );
    assert_eq!(added.unwrap(), StoreOutcome::Stored, "{key}");
    assert!(took < LONG, "the add took {took:?}");
    // It waited for the frozen primary nine tenths of the timeout, then
    // took it Down (not the probes: they wait the whole timeout).
    assert!(took >= LONG * 9 / 10, "the add took {took:?}");
    for addr in &addrs[1..] {
        assert!(live_on(*addr, &key), "{key} missing on {addr}");
    }
}

/// A miss needs every Up node heard; a frozen node is stalled after 20 ms
/// of silence, and then the read answers from the others as it would with
/// the node Down: keys never written, deleted before the freeze and deleted
/// during it all read as missing, without waiting for the node's timeout
/// (2 s here, so the node stays Up throughout: without this, each read
/// waits the whole timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_holds_no_miss_up_for_its_timeout() {
    const LONG: Duration = Duration::from_secs(2);
    let cluster = MemcachedCluster::start(3).unwrap();
    let client = Client::builder()
        .nodes(cluster.addrs())
        .timeout(LONG)
        .health(fast_health())
        .build()
        .await
        .unwrap();
    let keys = |prefix: &str| -> Vec<String> { (0..5).map(|i| format!("{prefix}:{i}")).collect() };
    let (before, during, never) = (keys("before"), keys("during"), keys("never"));
    for key in before.iter().chain(&during) {
        client.set(key, "v").await.unwrap();
    }
    for key in &before {
        assert_eq!(
            client.delete(key).await.unwrap(),
            DeleteOutcome::Deleted,
            "{key}"
        );
    }
    cluster.node(0).pause().unwrap();
    let frozen = Instant::now();
    for key in &during {
        assert_eq!(
            client.delete(key).await.unwrap(),
            DeleteOutcome::Deleted,
            "{key}"
        );
    }
    for key in before.iter().chain(&during).chain(&never) {
        let started = Instant::now();
        assert_eq!(client.get(key).await.unwrap(), None, "{key}");
        assert!(
            started.elapsed() < LONG / 4,
            "{key}: {:?}",
            started.elapsed()
        );
    }
    assert!(
        frozen.elapsed() < LONG,
        "the node may have gone Down meanwhile"
    );
    cluster.node(0).resume().unwrap();
}

/// A hot key written again and again while a node is Down: the writer
/// names the node in the key's stale marker once, not once per write, so
/// the marker cannot grow to memcached's item limit (and fail every write
/// of the key) during a long outage. After the node returns, the key reads
/// as its last value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_written_during_an_outage_keeps_a_one_line_marker() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let client = client_of(&addrs, ReplicationConfig::default()).await;
    client.set("hot", "v0").await.unwrap();
    cluster.node(0).pause().unwrap();
    wait_state(&client, addrs[0], NodeState::Down).await;
    for i in 1..=300 {
        client.set("hot", format!("v{i}")).await.unwrap();
    }
    for &addr in &addrs[1..] {
        let (marker, ..) = on_node(addr, "__memha:stale:hot").expect("a marker");
        let lines = marker
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        assert_eq!(
            lines,
            1,
            "marker on {addr}: {}",
            String::from_utf8_lossy(&marker)
        );
    }
    cluster.node(0).resume().unwrap();
    wait_state(&client, addrs[0], NodeState::Up).await;
    let item = client.get("hot").await.unwrap().expect("the key");
    assert_eq!(item.value, "v300");
}

/// A touch that answered "not found" while one node's answer came after
/// the write grace: that node touched the only copy, late. Its record as
/// a node that missed the touch stays (a late touch is not a late copy of
/// the write), so the next read that meets the copy lets it lose, and the
/// key stays gone as the touch said (chaos seed 19: the copy lived on with
/// the touch's 600 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_touch_answered_not_found_leaves_no_live_copy_behind() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let proxies = FaultProxy::in_front_of(cluster.addrs()).unwrap();
    let proxied: Vec<SocketAddr> = proxies.iter().map(FaultProxy::addr).collect();
    let client = client_of(&proxied, ReplicationConfig::default().read_nodes(3)).await;
    wait_all_up(&client, 3).await;
    let node0 = cluster.addrs()[0];
    raw_set(node0, "late", "only here");
    // A round trip longer than the write grace (50 ms), well within the timeout.
    proxies[0].set_mode(ProxyMode::Delay(Duration::from_millis(60)));
    assert_eq!(
        client.touch("late", Ttl::seconds(600)).await.unwrap(),
        memha_client::TouchOutcome::NotFound
    );
    // The late touch reaches the node...
    let deadline = Instant::now() + BOUND;
    while on_node(node0, "late").map_or(true, |(_, _, ttl)| ttl < 500) {
        assert!(Instant::now() < deadline, "the late touch never applied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...and its answer is handled within a few milliseconds of arriving
    // (it used to clear the node's record then): give that time to pass,
    // as nothing observable follows it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxies[0].set_mode(ProxyMode::Pass);
    assert_eq!(client.get("late").await.unwrap(), None);
    let deadline = Instant::now() + BOUND;
    while on_node(node0, "late").is_some() {
        assert!(
            Instant::now() < deadline,
            "the stale copy was never removed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A delete and a set of one key that raced (two clients), each landing
/// last on some nodes: one node holds the delete's tombstone, the others
/// the set's value. Every read answers the live copy, and once a delete
/// on its way would have landed (the timeout), a read's recheck converges
/// the tombstone to it, rather than leaving the node without the key for
/// the tombstone's lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_and_a_set_that_raced_converge_to_the_live_copy() {
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let client = client_of(&addrs, ReplicationConfig::default().read_nodes(3)).await;
    let raw = |addr, command: &str| {
        raw_roundtrip(addr, command.as_bytes(), b"\r\n", Duration::from_secs(2)).unwrap()
    };
    // Node 0: the set, then the delete; nodes 1 and 2: the other way round.
    assert_eq!(raw(addrs[0], "ms raced 3\r\nnew\r\n"), b"HD\r\n");
    assert_eq!(raw(addrs[0], "md raced I T60\r\n"), b"HD\r\n");
    for &addr in &addrs[1..] {
        assert_eq!(raw(addr, "md raced I T60\r\n"), b"NF\r\n");
        assert_eq!(raw(addr, "ms raced 3\r\nnew\r\n"), b"HD\r\n");
    }
    let item = client.get("raced").await.unwrap().expect("the live copy");
    assert_eq!(item.value, "new");
    let deadline = Instant::now() + BOUND;
    while !live_on(addrs[0], "raced") {
        assert!(Instant::now() < deadline, "node 0 kept the tombstone");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(on_node(addrs[0], "raced").unwrap().0, b"new");
}
