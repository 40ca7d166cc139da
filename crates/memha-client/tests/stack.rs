//! The node stack: user layers see every attempt; retries and timeouts.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memha_client::proto::{Command, Reply};
use memha_client::{Client, ConnectionConfig, ErrorKind, HealthConfig, RetryPolicy};
use tower::util::{MapRequestLayer, MapResultLayer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

use tokio::io::AsyncWriteExt;

use common::{fake_server, next_connection, one_node, read_lines, BOUND};

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
    assert_eq!(err.kind(), ErrorKind::Other);
    assert!(err.to_string().contains("refused by policy"), "{err}");
    assert_eq!(err.node(), Some(cluster.node(0).addr()));
}

/// The scripted server of a read lost with its connection: the first
/// connection reads the `mg k` and dies without answering; the second
/// answers it (`ok`, flags 1). Returns the second, kept open.
async fn answer_on_the_second_connection(
    mut accepted: memha_tests::FakeServer,
) -> tokio::net::TcpStream {
    let mut first = next_connection(&mut accepted).await;
    read_lines(&mut first, 1).await;
    drop(first);
    let mut second = next_connection(&mut accepted).await;
    assert_eq!(read_lines(&mut second, 1).await, "mg k v f t\r\n");
    second.write_all(b"VA 2 f1 t-1\r\nok\r\n").await.unwrap();
    second
}

#[tokio::test]
async fn a_read_lost_with_its_connection_is_retried_on_a_new_one() {
    let (addr, accepted) = fake_server().await;
    let client = Client::builder()
        .node(addr)
        .retry(RetryPolicy::new(2))
        // The scripted server does not echo opaque tokens.
        .connection(ConnectionConfig::default().reply_tokens(false))
        .build_single_node()
        .unwrap();
    let server = tokio::spawn(answer_on_the_second_connection(accepted));
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
        accepted
            .next_connection(Duration::from_millis(200))
            .await
            .is_none()
    });
    let err = client.increment("n", 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err:?}");
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

/// Replies come back in order, so the connection's one timer bounds the
/// requests sent while it is armed: they make no timer of their own, and
/// time out at their deadline all the same. Their late replies are read
/// and dropped, and the stream stays in step.
#[tokio::test]
async fn requests_bounded_by_the_connection_s_timer_time_out_and_keep_the_stream_in_step() {
    let (addr, mut accepted) = fake_server().await;
    let timeout = Duration::from_millis(300);
    let client = Client::builder()
        .node(addr)
        .timeout(timeout)
        // The scripted server does not echo opaque tokens.
        .connection(ConnectionConfig::default().reply_tokens(false))
        .build_single_node()
        .unwrap();
    let get = |key: &'static str| {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            (client.get(key).await, started.elapsed())
        })
    };
    // `a` and `b` go out while the timer is not armed yet (each bounds
    // itself); answering `a` with `b` outstanding arms it.
    let a = get("a");
    let mut server = next_connection(&mut accepted).await;
    assert_eq!(read_lines(&mut server, 1).await, "mg a v f t\r\n");
    let b = get("b");
    assert_eq!(read_lines(&mut server, 1).await, "mg b v f t\r\n");
    server.write_all(b"EN\r\n").await.unwrap();
    assert!(a.await.unwrap().0.unwrap().is_none());
    // `c` is bounded by the connection's timer once the reader armed it
    // (the connection's unit tests show it is), else by its own.
    let c = get("c");
    assert_eq!(read_lines(&mut server, 1).await, "mg c v f t\r\n");
    for (name, request) in [("b", b), ("c", c)] {
        let (answer, elapsed) = tokio::time::timeout(BOUND, request)
            .await
            .expect("the deadline ends the request")
            .unwrap();
        let err = answer.unwrap_err();
        assert!(err.is_timeout(), "{name}: {err:?}");
        assert!(
            elapsed >= timeout - Duration::from_millis(5) && elapsed < timeout * 3,
            "{name}: {elapsed:?}"
        );
    }
    // The late replies of `b` and `c` are matched and dropped: `d` gets
    // its own.
    server.write_all(b"EN\r\nEN\r\n").await.unwrap();
    let d = get("d");
    assert_eq!(read_lines(&mut server, 1).await, "mg d v f t\r\n");
    server.write_all(b"VA 2 f0 t-1\r\nok\r\n").await.unwrap();
    let item = d.await.unwrap().0.unwrap().expect("d's own answer");
    assert_eq!(item.value.as_ref(), b"ok");
}

/// A retry of the user's own, in place of the stack's: a read whose
/// connection broke is tried once more, on a fresh connection. It counts
/// the requests it sees and the retries it makes.
#[derive(Clone, Default)]
struct RetryReadsOnce {
    seen: Arc<AtomicUsize>,
    retries: Arc<AtomicUsize>,
}

impl<S> tower::Layer<S> for RetryReadsOnce {
    type Service = RetryReadsOnceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryReadsOnceService {
            inner,
            counts: self.clone(),
        }
    }
}

#[derive(Clone)]
struct RetryReadsOnceService<S> {
    inner: S,
    counts: RetryReadsOnce,
}

impl<S> tower::Service<Command> for RetryReadsOnceService<S>
where
    S: tower::Service<Command, Response = Reply, Error = memha_client::Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = memha_client::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Reply, memha_client::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, command: Command) -> Self::Future {
        use tower::ServiceExt;
        self.counts.seen.fetch_add(1, Ordering::Relaxed);
        let first = self.inner.call(command.clone());
        let (mut inner, retries) = (self.inner.clone(), Arc::clone(&self.counts.retries));
        Box::pin(async move {
            match first.await {
                Err(error) if command.is_read() && error.is_connection() => {
                    retries.fetch_add(1, Ordering::Relaxed);
                    inner.ready().await?.call(command).await
                }
                answer => answer,
            }
        })
    }
}

/// The stack's retry turned off and a user-written one added: the read
/// lost with its connection is answered by the user's retry (and, as a
/// control, fails without it: the stack's own retry is really off).
#[tokio::test]
async fn a_user_written_retry_layer_replaces_the_stack_s() {
    for with_layer in [true, false] {
        let (addr, accepted) = fake_server().await;
        let retry = RetryReadsOnce::default();
        let builder = Client::builder()
            .node(addr)
            .retry(RetryPolicy::never())
            // The scripted server does not echo opaque tokens.
            .connection(ConnectionConfig::default().reply_tokens(false));
        let client = match with_layer {
            true => builder.layer(retry.clone()).build_single_node().unwrap(),
            false => builder.build_single_node().unwrap(),
        };
        let server = tokio::spawn(answer_on_the_second_connection(accepted));
        let answer = client.get("k").await;
        if with_layer {
            let item = answer.unwrap().expect("answered by the user's retry");
            assert_eq!(item.value.as_ref(), b"ok");
            assert_eq!(retry.retries.load(Ordering::Relaxed), 1);
            drop(server.await.unwrap());
        } else {
            let error = answer.expect_err("no retry without the user's layer");
            assert_eq!(error.kind(), ErrorKind::Connection, "{error:?}");
            server.abort();
        }
    }
}

/// Replication runs through a stack whose retry is the user's: every
/// write and read of a replicated client passes the user's layer, and the
/// promises hold with a node killed (nothing lost, nothing failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_runs_through_a_user_written_retry_layer() {
    let cluster = memha_tests::MemcachedCluster::start(3).unwrap();
    let retry = RetryReadsOnce::default();
    let client = Client::builder()
        .nodes(cluster.addrs())
        .timeout(Duration::from_millis(500))
        .retry(RetryPolicy::never())
        .layer(retry.clone())
        // No probe while the test runs: the reads, through the layer, are
        // what find the killed node.
        .health(HealthConfig::default().up_interval(Duration::from_secs(600)))
        .build()
        .await
        .unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("user-retry:{i}")).collect();
    for key in &keys {
        client.set(key.as_str(), key.clone()).await.unwrap();
    }
    let writes_seen = retry.seen.load(Ordering::Relaxed);
    assert!(
        writes_seen >= 3 * keys.len(),
        "each set reaches every node through the layer: {writes_seen}"
    );
    cluster.node(1).kill().unwrap();
    for key in &keys {
        let item = client.get(key.as_str()).await.unwrap().expect("a hit");
        assert_eq!(item.value.as_ref(), key.as_bytes());
    }
    assert!(retry.seen.load(Ordering::Relaxed) > writes_seen);
    // The reads that met the killed node were retried by the user's layer.
    assert!(retry.retries.load(Ordering::Relaxed) >= 1);
}

/// A single node's operation future is moved whole by every caller (into
/// its task, through `IntoFuture`): the stack's rare parts (the timer of
/// a call the connection's timer does not cover, a user's service) are
/// boxed so it stays small. It was 784 bytes before they were.
#[tokio::test]
async fn a_single_node_operation_s_future_stays_small() {
    let client = Client::builder()
        .node("127.0.0.1:1".parse().unwrap())
        .build_single_node()
        .unwrap();
    let get = client.get("k");
    let size = std::mem::size_of_val(&get);
    assert!(size <= 512, "a get's future takes {size} bytes");
}
