//! Injection: keys that could break the protocol's framing never put a
//! byte on the wire, and values that look like framing round-trip intact
//! through replication and read repair.
//!
//! Case counts: the pure key property runs 2,000 cases; the one watching
//! the wire through proxies runs 300 (each case two dozen calls with a bad
//! key on a single-node and a 3-node client, then a sentinel write); the
//! value round trip through real servers runs 40 cases of up to 8 values
//! each, with one node restarted empty per case. All three take about two
//! seconds together.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use memha_chaos::converge::{fetch, Copy};
use memha_client::{Client, ErrorKind, HealthConfig, IntoKey, NodeState, ReplicationConfig, Ttl};
use memha_tests::{FaultProxy, MemcachedCluster};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn cases(cases: u32) -> Config {
    Config {
        // The runs are not in a `proptest!` block: no file to keep failures in.
        failure_persistence: None,
        ..Config::with_cases(cases)
    }
}

/// A key memcached would misread: a forbidden byte (CR, LF, space, tab, a
/// control byte, DEL) somewhere in an otherwise fine key, or more than 250
/// bytes, or nothing.
fn bad_key() -> impl Strategy<Value = Vec<u8>> {
    let fine = proptest::collection::vec(0x21u8..=0x7e, 0..40);
    let forbidden = prop_oneof![
        Just(b'\r'),
        Just(b'\n'),
        Just(b' '),
        Just(b'\t'),
        Just(0u8),
        Just(0x7f),
        0u8..0x20,
    ];
    prop_oneof![
        4 => (fine.clone(), forbidden, fine).prop_map(|(mut a, bad, b)| {
            a.push(bad);
            a.extend(b);
            a
        }),
        2 => proptest::collection::vec(0x21u8..=0x7e, 251..400),
        1 => Just(Vec::new()),
    ]
}

#[test]
fn bad_keys_are_refused_before_anything_is_encoded() {
    let mut runner = TestRunner::new(cases(2000));
    runner
        .run(&bad_key(), |key| {
            let err = key.as_slice().into_key().expect_err("refused");
            prop_assert_eq!(err.kind(), ErrorKind::InvalidKey);
            prop_assert!(memha_client::proto::Key::new(key.clone()).is_err());
            if let Ok(text) = String::from_utf8(key.clone()) {
                let err = text.into_key().unwrap_err();
                prop_assert_eq!(err.kind(), ErrorKind::InvalidKey);
            }
            Ok(())
        })
        .unwrap();
}

fn health() -> HealthConfig {
    HealthConfig::default()
        .up_interval(Duration::from_millis(200))
        .backoff(Duration::from_millis(20), 1.5, Duration::from_millis(300))
}

/// Every call a caller can make with `key`: each must fail with
/// `InvalidKey` and send nothing.
async fn every_call(client: &Client, key: &[u8]) -> Vec<(&'static str, ErrorKind)> {
    let key = Bytes::copy_from_slice(key);
    let kind = |r: Result<(), memha_client::Error>| match r {
        Ok(()) => ErrorKind::Other,
        Err(e) => e.kind(),
    };
    vec![
        ("get", kind(client.get(key.clone()).await.map(drop))),
        ("gets", kind(client.gets(key.clone()).await.map(drop))),
        (
            "get_and_touch",
            kind(
                client
                    .get_and_touch(key.clone(), Ttl::seconds(9))
                    .await
                    .map(drop),
            ),
        ),
        (
            "get_many",
            kind(
                client
                    .get_many([Bytes::from("fine"), key.clone()])
                    .await
                    .map(drop),
            ),
        ),
        ("set", kind(client.set(key.clone(), "v").await.map(drop))),
        ("add", kind(client.add(key.clone(), "v").await.map(drop))),
        (
            "replace",
            kind(client.replace(key.clone(), "v").await.map(drop)),
        ),
        (
            "append",
            kind(client.append(key.clone(), "v").await.map(drop)),
        ),
        ("cas", kind(client.cas(key.clone(), "v", 1).await.map(drop))),
        ("delete", kind(client.delete(key.clone()).await.map(drop))),
        (
            "touch",
            kind(client.touch(key.clone(), Ttl::seconds(9)).await.map(drop)),
        ),
        (
            "increment",
            kind(client.increment(key.clone(), 1).await.map(drop)),
        ),
    ]
}

/// `captured` with every health probe (`stats` on its own connection) left out.
fn without_probes(captured: &[u8]) -> Vec<u8> {
    let mut rest = Vec::with_capacity(captured.len());
    let mut i = 0;
    while i < captured.len() {
        if captured[i..].starts_with(b"stats\r\n") {
            i += 7;
        } else {
            rest.push(captured[i]);
            i += 1;
        }
    }
    rest
}

/// `captured` with the opaque tokens (` O<n>`) taken off meta command
/// lines: they number requests, so they differ from run to run.
fn without_tokens(captured: &[u8]) -> Vec<u8> {
    let mut rest = Vec::with_capacity(captured.len());
    for line in captured.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b"m") {
            rest.extend_from_slice(line);
            continue;
        }
        let body = line.strip_suffix(b"\r\n").unwrap_or(line);
        let words: Vec<&[u8]> = body
            .split(|&b| b == b' ')
            .filter(|word| {
                !(word.len() > 1 && word[0] == b'O' && word[1..].iter().all(u8::is_ascii_digit))
            })
            .collect();
        rest.extend_from_slice(&words.join(&b' '));
        rest.extend_from_slice(&line[body.len()..]);
    }
    rest
}

#[test]
fn bad_keys_never_put_a_byte_on_the_wire() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = MemcachedCluster::start(3).unwrap();
    let proxies = FaultProxy::in_front_of(cluster.addrs()).unwrap();
    let proxy_addrs: Vec<SocketAddr> = proxies.iter().map(FaultProxy::addr).collect();
    // One client of a single node (nothing else on the wire), one of the
    // three nodes (probes on their own connections are left out).
    let (single, replicated) = runtime.block_on(async {
        let single = Client::builder()
            .node(proxy_addrs[0])
            .timeout(Duration::from_secs(1))
            .build_single_node()
            .unwrap();
        let replicated = Client::builder()
            .nodes(proxy_addrs.iter().copied())
            .timeout(Duration::from_millis(500))
            .health(health())
            .replication(ReplicationConfig::default())
            .build()
            .await
            .unwrap();
        replicated
            .cluster()
            .unwrap()
            .health()
            .wait_for_nodes(3, Duration::from_secs(5))
            .await
            .unwrap();
        (single, replicated)
    });
    for proxy in &proxies {
        proxy.capture(true);
    }
    let mut runner = TestRunner::new(cases(300));
    runner
        .run(&bad_key(), |key| {
            runtime.block_on(async {
                for (client, name) in [(&single, "single"), (&replicated, "replicated")] {
                    for (call, kind) in every_call(client, &key).await {
                        prop_assert_eq!(kind, ErrorKind::InvalidKey, "{} {}", name, call);
                    }
                }
                // A good write after them: on each connection it must be
                // the first thing sent, so nothing went before it.
                single.set("sentinel", "s").await.unwrap();
                replicated.set("sentinel", "s").await.unwrap();
                for (i, proxy) in proxies.iter().enumerate() {
                    let sent = without_tokens(&without_probes(&proxy.take_captured()));
                    let expected: &[u8] = if i == 0 {
                        b"ms sentinel 1 MS\r\ns\r\nms sentinel 1 MS\r\ns\r\n"
                    } else {
                        b"ms sentinel 1 MS\r\ns\r\n"
                    };
                    prop_assert_eq!(
                        String::from_utf8_lossy(&sent),
                        String::from_utf8_lossy(expected),
                        "node {} saw more than the sentinel",
                        i
                    );
                }
                Ok(())
            })
        })
        .unwrap();
}

/// A value that holds protocol framing somewhere inside arbitrary bytes.
fn tricky_value() -> impl Strategy<Value = Vec<u8>> {
    let framing = prop_oneof![
        Just(&b"\r\nEND\r\n"[..]),
        Just(&b"\r\nmn\r\n"[..]),
        Just(&b"\r\nMN\r\n"[..]),
        Just(&b"\r\nVA 3 f1\r\nabc\r\n"[..]),
        Just(&b"\r\n"[..]),
        Just(&b"END\r\n"[..]),
    ];
    (
        proptest::collection::vec(any::<u8>(), 0..64),
        framing,
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(before, framing, after, at_end)| {
            let mut value = before;
            value.extend_from_slice(framing);
            if !at_end {
                value.extend(after);
            }
            value
        })
}

fn copy_on(addr: SocketAddr, key: &str) -> Option<Copy> {
    fetch(&[addr], &[key.to_owned()])
        .pop()
        .expect("one key")
        .copies
        .pop()
        .expect("one node")
        .expect("the node answers")
}

#[test]
fn framing_in_values_survives_replication_and_repair() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = MemcachedCluster::start(3).unwrap();
    let addrs = cluster.addrs();
    let client = runtime.block_on(async {
        let client = Client::builder()
            .nodes(addrs.iter().copied())
            .timeout(Duration::from_millis(500))
            .health(health())
            .replication(ReplicationConfig::default())
            .build()
            .await
            .unwrap();
        client
            .cluster()
            .unwrap()
            .health()
            .wait_for_nodes(3, Duration::from_secs(5))
            .await
            .unwrap();
        client
    });
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(cases(40));
    runner
        .run(
            &(
                proptest::collection::vec((tricky_value(), any::<u32>()), 1..8),
                0usize..3,
            ),
            |(values, restarted)| {
                let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let keys: Vec<String> = (0..values.len())
                    .map(|i| format!("inj{case}-{i}"))
                    .collect();
                runtime.block_on(async {
                    let written = Instant::now();
                    for (key, (value, flags)) in keys.iter().zip(&values) {
                        client
                            .set(key.as_str(), value.clone())
                            .flags(*flags)
                            .ttl(Ttl::seconds(600))
                            .await
                            .unwrap();
                        let item = client.get(key.as_str()).await.unwrap().expect("just set");
                        prop_assert_eq!(&item.value[..], &value[..]);
                        prop_assert_eq!(item.flags, *flags);
                        // Acknowledged by a majority: on a loaded machine
                        // the third node may look stalled (or be back from
                        // the last case's restart only just), and a set
                        // does not wait for it. Every copy is exact.
                        let copies: Vec<Copy> = addrs
                            .iter()
                            .filter_map(|&addr| copy_on(addr, key))
                            .collect();
                        prop_assert!(copies.len() >= 2, "{} on {} nodes", key, copies.len());
                        for copy in &copies {
                            prop_assert_eq!(&copy.value[..], &value[..]);
                        }
                    }
                    // One node comes back empty; reads repair it.
                    let node = cluster.node(restarted);
                    node.restart().unwrap();
                    for key in &keys {
                        prop_assert!(copy_on(node.addr(), key).is_none(), "restarted empty");
                    }
                    let repairs_before = client.cluster().unwrap().metrics().repairs;
                    let health = client.cluster().unwrap().health();
                    let deadline = Instant::now() + Duration::from_secs(30);
                    let mut repaired = 0;
                    for (key, (value, flags)) in keys.iter().zip(&values) {
                        loop {
                            prop_assert!(
                                Instant::now() < deadline,
                                "{} never repaired (node {:?}, {:?})",
                                key,
                                health.state(node.addr()),
                                client.cluster().unwrap().metrics()
                            );
                            if health.state(node.addr()) == Some(NodeState::Up) {
                                // The two other nodes hold the key throughout:
                                // a miss is a false one (promise 1), and an
                                // error is no better (a read fails only when
                                // none of the nodes it asks answers).
                                match client.get(key.as_str()).await {
                                    Ok(Some(item)) => {
                                        prop_assert_eq!(&item.value[..], &value[..]);
                                        prop_assert_eq!(item.flags, *flags);
                                    }
                                    Ok(None) => {
                                        return Err(TestCaseError::fail(format!(
                                            "false miss of {key} while two nodes hold it"
                                        )));
                                    }
                                    Err(err) => {
                                        return Err(TestCaseError::fail(format!(
                                            "reading {key} failed while two nodes hold it: {err}"
                                        )));
                                    }
                                }
                            }
                            if let Some(copy) = copy_on(node.addr(), key) {
                                prop_assert_eq!(&copy.value[..], &value[..]);
                                prop_assert_eq!(copy.flags, *flags);
                                // The repair copies the lifetime left (a
                                // loaded machine may take seconds to get here),
                                // within memcached's one-second clock.
                                let left = 600 - written.elapsed().as_secs() as i64;
                                prop_assert!(
                                    (left - 2..=600).contains(&copy.ttl),
                                    "ttl {}, {} s left",
                                    copy.ttl,
                                    left
                                );
                                repaired += 1;
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    prop_assert_eq!(repaired, keys.len());
                    let repairs = client.cluster().unwrap().metrics().repairs - repairs_before;
                    prop_assert!(repairs >= keys.len() as u64, "{} repairs", repairs);
                    Ok(())
                })
            },
        )
        .unwrap();
}
