//! Refused before anything is sent: invalid keys and oversized values.

mod common;

use std::time::Duration;

use bytes::Bytes;
use memha_client::proto::Limits;
use memha_client::{ConnectionConfig, ErrorKind, StoreOutcome};

use common::{client, client_with, one_node};

#[tokio::test]
async fn invalid_keys_are_refused_and_nothing_is_sent() {
    let cluster = one_node();
    let (client, node) = client(cluster.node(0).addr());

    let too_long = "k".repeat(251);
    for key in [
        "",
        "has space",
        "new\nline",
        "tab\tkey",
        "del\x7f",
        too_long.as_str(),
    ] {
        let errors = [
            client.get(key).await.unwrap_err(),
            client.set(key, "v").await.unwrap_err(),
            client.delete(key).await.unwrap_err(),
            client.increment(key, 1).await.unwrap_err(),
            client.touch(key, Duration::from_secs(1)).await.unwrap_err(),
        ];
        for err in errors {
            assert_eq!(err.kind(), ErrorKind::InvalidKey, "{key:?}: {err}");
            assert!(err.is_unsent() && !err.is_retryable());
        }
    }
    let metrics = node.connection_metrics().unwrap();
    assert_eq!(metrics.requests, 0, "{metrics:?}");
    assert!(!node.is_connected(), "not even a connection was opened");

    // A key of exactly 250 bytes is fine.
    let longest = "k".repeat(250);
    assert_eq!(
        client.set(&longest, "v").await.unwrap(),
        StoreOutcome::Stored
    );
    assert_eq!(client.get(&longest).await.unwrap().unwrap().value, "v");
}

#[tokio::test]
async fn oversized_values_are_refused_and_nothing_is_sent() {
    let cluster = one_node();
    let limits = Limits {
        max_value_len: 1000,
        ..Limits::DEFAULT
    };
    let (client, node) = client_with(
        cluster.node(0).addr(),
        Duration::from_secs(2),
        ConnectionConfig::default().limits(limits),
    );

    let big = Bytes::from(vec![b'x'; 1001]);
    for err in [
        client.set("k", big.clone()).await.unwrap_err(),
        client.add("k", big.clone()).await.unwrap_err(),
        client.append("k", big.clone()).await.unwrap_err(),
        client.cas("k", big.clone(), 1).await.unwrap_err(),
    ] {
        assert_eq!(
            err.kind(),
            ErrorKind::ValueTooLarge {
                len: 1001,
                max: 1000
            }
        );
        assert!(err.is_unsent());
    }
    assert_eq!(node.connection_metrics().unwrap().requests, 0);
    assert!(!node.is_connected());

    let fits = Bytes::from(vec![b'x'; 1000]);
    assert_eq!(
        client.set("k", fits.clone()).await.unwrap(),
        StoreOutcome::Stored
    );
    assert_eq!(client.get("k").await.unwrap().unwrap().value, fits);
}

#[tokio::test]
async fn a_timeout_too_long_to_reckon_a_deadline_with_is_taken_as_a_year() {
    let cluster = memha_tests::MemcachedCluster::start(3).expect("start memcached");
    let single = memha_client::Client::builder()
        .node(cluster.node(0).addr())
        .timeout(Duration::MAX)
        .build()
        .await
        .unwrap();
    let replicated = memha_client::Client::builder()
        .nodes(cluster.addrs())
        .timeout(Duration::MAX)
        .build()
        .await
        .unwrap();
    // Live nodes answer at once: a year-long timeout must not become a
    // year-long test if one does not.
    let bounded = |f| tokio::time::timeout(Duration::from_secs(10), f);
    for client in [&single, &replicated] {
        assert_eq!(client.timeout(), Duration::from_secs(365 * 24 * 60 * 60));
        bounded(Box::pin(async {
            client.set("k", "v").await.unwrap();
            let item = client.get("k").await.unwrap().expect("a hit");
            assert_eq!(item.value, "v");
            assert!(client.add("k", "w").await.unwrap() == StoreOutcome::NotStored);
        }))
        .await
        .expect("answered within 10 s");
    }
}
