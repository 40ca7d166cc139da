//! The node stack: user layers see every attempt; retries and timeouts.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memha_client::proto::{Command, Reply};
use memha_client::{Client, ConnectionConfig, ErrorKind, RetryPolicy};
use tower::util::{MapRequestLayer, MapResultLayer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

use tokio::io::AsyncWriteExt;

use common::{fake_server, next_connection, one_node, read_lines};

#[tokio::test]
async fn a_user_layer_sees_every_attempt() {
    let cluster = one_node();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let client = Client::builder()
        .node(cluster.node(0).addr())
        .layer(MapRequestLayer::new(move |command: Command| {
            counter.fetch_add(1, Ordering::Relaxed);
            command
        }))
        .build_single_node()
        .unwrap();
    client.set("k", "v").await.unwrap();
    client.get("k").await.unwrap();
    client.delete("k").await.unwrap();
    assert_eq!(seen.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn a_user_layer_error_becomes_other() {
    let cluster = one_node();
    let client = Client::builder()
        .node(cluster.node(0).addr())
        .layer(MapResultLayer::new(
            |_: Result<Reply, memha_client::Error>| -> Result<Reply, BoxError> {
                Err("refused by policy".into())
            },
        ))
        .build_single_node()
        .unwrap();
    let err = client.get("k").await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Other);
    assert!(err.to_string().contains("refused by policy"), "{err}");
    assert_eq!(err.node(), Some(cluster.node(0).addr()));
}

#[tokio::test]
async fn a_read_lost_with_its_connection_is_retried_on_a_new_one() {
    let (addr, mut accepted) = fake_server().await;
    let client = Client::builder()
        .node(addr)
        .retry(RetryPolicy::new(2))
        // The scripted server does not echo opaque tokens.
        .connection(ConnectionConfig::default().reply_tokens(false))
        .build_single_node()
        .unwrap();
    let server = tokio::spawn(async move {
        // The first connection reads the request and dies without answering.
        let mut first = next_connection(&mut accepted).await;
        read_lines(&mut first, 1).await;
        drop(first);
        let mut second = next_connection(&mut accepted).await;
        assert_eq!(read_lines(&mut second, 1).await, "mg k v f t\r\n");
        second.write_all(b"VA 2 f1 t-1\r\nok\r\n").await.unwrap();
        second
    });
    let item = client
        .get("k")
        .await
        .unwrap()
        .expect("answered by the retry");
    assert_eq!((item.value.as_ref(), item.flags), (&b"ok"[..], 1));
    drop(server.await.unwrap());
}

#[tokio::test]
async fn a_write_lost_with_its_connection_is_not_retried() {
    let (addr, mut accepted) = fake_server().await;
    let client = Client::builder()
        .node(addr)
        .retry(RetryPolicy::new(2))
        // The scripted server does not echo opaque tokens.
        .connection(ConnectionConfig::default().reply_tokens(false))
        .build_single_node()
        .unwrap();
    let server = tokio::spawn(async move {
        let mut first = next_connection(&mut accepted).await;
        read_lines(&mut first, 1).await;
        drop(first);
        // No second attempt may arrive.
        tokio::time::timeout(Duration::from_millis(200), accepted.recv())
            .await
            .is_err()
    });
    let err = client.increment("n", 1).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connection, "{err:?}");
    assert!(!err.is_unsent());
    assert!(server.await.unwrap(), "the increment was sent again");
}

#[tokio::test]
async fn the_timeout_bounds_a_request_with_its_retries() {
    let cluster = one_node();
    let timeout = Duration::from_millis(200);
    let client = Client::builder()
        .node(cluster.node(0).addr())
        .timeout(timeout)
        .retry(RetryPolicy::new(5))
        .build_single_node()
        .unwrap();
    client.set("k", "v").await.unwrap();
    cluster.node(0).pause().unwrap();
    let started = Instant::now();
    let err = client.get("k").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        elapsed >= timeout - Duration::from_millis(5) && elapsed < timeout * 4,
        "{elapsed:?}"
    );
    cluster.node(0).resume().unwrap();
}
