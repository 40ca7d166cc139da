//! A real server killed, restarted and paused under the client's feet.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memha_client::{ConnectionConfig, Error, ErrorKind};

use common::{client_with, eventually, fast_reconnect, one_node};

/// How long the load may take to reach the answers it needs before a kill.
const LOAD_BOUND: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_fails_requests_in_flight_then_a_restart_is_used_again() {
    let cluster = one_node();
    let timeout = Duration::from_secs(1);
    let (client, node) = client_with(cluster.node(0).addr(), timeout, fast_reconnect());
    client.set("before", "1").await.unwrap();

    let answered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..32u64 {
        let client = client.clone();
        let answered = Arc::clone(&answered);
        tasks.push(tokio::spawn(async move {
            let key = format!("load:{task}");
            for n in 0.. {
                let result = if n % 10 == 0 {
                    client.set(&key, "v").await.map(drop)
                } else {
                    client.get(&key).await.map(drop)
                };
                match result {
                    Ok(()) => answered.fetch_add(1, Ordering::Relaxed),
                    Err(err) => return (err, Instant::now()),
                };
            }
            unreachable!()
        }));
    }
    // Kill it under load. Bounded: a task stops at its first error, so if
    // they all fail early the count never gets there.
    let load = 2000;
    let loaded = tokio::time::timeout(LOAD_BOUND, async {
        while answered.load(Ordering::Relaxed) < load {
            assert!(
                !tasks.iter().all(|task| task.is_finished()),
                "every load task failed before the kill, after {} answers",
                answered.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(
        loaded.is_ok(),
        "only {} of {load} answers within {LOAD_BOUND:?}",
        answered.load(Ordering::Relaxed)
    );
    let killed_at = Instant::now();
    cluster.node(0).kill().unwrap();

    for task in tasks {
        let (err, failed_at): (Error, Instant) = tokio::time::timeout(timeout * 3, task)
            .await
            .expect("no request hangs")
            .unwrap();
        assert!(err.is_connection(), "a connection error, not {err:?}");
        assert!(!err.is_timeout());
        let after = failed_at.saturating_duration_since(killed_at);
        assert!(after < timeout, "failed {after:?} after the kill");
    }
    assert!(!node.is_connected());
    let err = client.get("before").await.unwrap_err();
    assert!(err.is_connection(), "{err:?}");

    // Back on the same port, empty: the same client uses it again.
    cluster.node(0).restart().unwrap();
    let version = eventually(Duration::from_secs(5), || client.version())
        .await
        .expect("the client reconnects");
    assert!(version.starts_with("1."));
    assert_eq!(client.get("before").await.unwrap(), None, "restarted empty");
    client.set("after", "2").await.unwrap();
    assert_eq!(client.get("after").await.unwrap().unwrap().value, "2");
    let metrics = node.connection_metrics().unwrap();
    // A reconnect attempt may still reach the dying process's socket before
    // the kernel closes it, so "at least": the point is that it reconnected.
    assert!(metrics.connects >= 2, "{metrics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_times_requests_out_at_the_timeout() {
    let cluster = one_node();
    let timeout = Duration::from_millis(300);
    // A small window, so most requests also wait for room: that wait is
    // bounded by the same timeout.
    let config = ConnectionConfig::default().max_in_flight(8);
    let (client, node) = client_with(cluster.node(0).addr(), timeout, config);
    client.set("k", "v").await.unwrap();

    cluster.node(0).pause().unwrap();
    let mut tasks = Vec::new();
    for task in 0..40u32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let result = match task % 4 {
                0 => client.set("k", "w").await.map(drop),
                1 => client.increment("n", 1).await.map(drop),
                _ => client.get("k").await.map(drop),
            };
            (result, started.elapsed())
        }));
    }
    for task in tasks {
        let (result, elapsed) = tokio::time::timeout(timeout * 10, task)
            .await
            .expect("no request hangs")
            .unwrap();
        let err = result.expect_err("a paused server answers nothing");
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
        assert!(err.is_retryable());
        assert!(elapsed >= timeout - Duration::from_millis(5), "{elapsed:?}");
        assert!(
            elapsed < timeout + Duration::from_millis(700),
            "timed out late: {elapsed:?}"
        );
    }

    cluster.node(0).resume().unwrap();
    let item = eventually(Duration::from_secs(5), || client.get("k"))
        .await
        .expect("answers again after resume");
    assert!(item.is_some());
    let metrics = node.connection_metrics().unwrap();
    assert_eq!(metrics.connects, 1, "a pause does not break the connection");
}
