//! The connection against a scripted fake server: matching, backpressure,
//! hostile replies, and which failures are known not to have been sent.

mod common;

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use memha_client::proto::{Command, Key, MetaGet, MetaSet, MetaStatus, Reply};
use memha_client::{Connection, ConnectionConfig, ErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Service, ServiceExt};

use common::{fake_server, next_connection, read_lines, BOUND};

/// The scripted server answers without echoing opaque tokens; the token
/// check itself is tested against a real server and a hostile one.
fn scripted() -> ConnectionConfig {
    ConnectionConfig::default().reply_tokens(false)
}

fn get(key: &str) -> Command {
    MetaGet::full(Key::new(key.to_owned()).unwrap()).into()
}

async fn send(connection: &Connection, command: Command) -> memha_client::future::ConnectionFuture {
    let mut connection = connection.clone();
    tokio::time::timeout(BOUND, connection.ready())
        .await
        .expect("room in the window")
        .unwrap();
    connection.call(command)
}

async fn answer<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("an answer")
}

fn value(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Meta(meta) if meta.status == MetaStatus::Value => meta.value.unwrap().to_vec(),
        other => panic!("expected a value, got {other:?}"),
    }
}

#[tokio::test]
async fn an_abandoned_answer_is_discarded_not_given_to_the_next_caller() {
    let (addr, mut accepted) = fake_server().await;
    let connection = Connection::new(addr, scripted());

    let abandoned = send(&connection, get("x")).await;
    let mut server = next_connection(&mut accepted).await;
    assert_eq!(read_lines(&mut server, 1).await, "mg x v f t c\r\n");
    drop(abandoned);
    let wanted = send(&connection, get("y")).await;
    read_lines(&mut server, 1).await;
    server
        .write_all(b"VA 1 f0 t-1 c1\r\nx\r\nVA 1 f0 t-1 c2\r\ny\r\n")
        .await
        .unwrap();
    assert_eq!(value(answer(wanted).await.unwrap()), b"y");
    let metrics = connection.metrics();
    assert_eq!((metrics.requests, metrics.replies), (2, 2));
}

#[tokio::test]
async fn poll_ready_waits_for_room_in_the_window() {
    let (addr, mut accepted) = fake_server().await;
    let connection = Connection::new(addr, scripted().max_in_flight(2));

    let first = send(&connection, get("a")).await;
    let second = send(&connection, get("b")).await;
    let mut third = connection.clone();
    {
        let mut ready = pin!(third.ready());
        let polled = poll_fn(|cx| Poll::Ready(ready.as_mut().poll(cx))).await;
        assert!(polled.is_pending(), "two requests fill a window of two");

        let mut server = next_connection(&mut accepted).await;
        read_lines(&mut server, 2).await;
        server.write_all(b"EN\r\n").await.unwrap();
        answer(ready).await.unwrap();
        server.write_all(b"EN\r\n").await.unwrap();
    }
    assert!(answer(first).await.is_ok());
    assert!(answer(second).await.is_ok());

    // Answered requests give their places back: the window is whole again
    // (`third` still holds the place it reserved).
    drop(third);
    let mut a = connection.clone();
    let mut b = connection.clone();
    answer(a.ready()).await.unwrap();
    answer(b.ready()).await.unwrap();
}

#[tokio::test]
async fn requests_are_written_in_batches_and_matched_in_order() {
    let (addr, mut accepted) = fake_server().await;
    let connection = Connection::new(addr, scripted());

    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    let mut futures = Vec::new();
    for key in &keys {
        futures.push(send(&connection, get(key)).await);
    }
    let mut server = next_connection(&mut accepted).await;
    let requests = read_lines(&mut server, 50).await;
    let expected: String = keys.iter().map(|k| format!("mg {k} v f t c\r\n")).collect();
    assert_eq!(requests, expected, "wire order is call order");
    let replies: String = keys
        .iter()
        .map(|k| format!("VA {} c1\r\n{k}\r\n", k.len()))
        .collect();
    // Answers trickle in byte by byte: decoding must wait for whole frames.
    for byte in replies.as_bytes().chunks(7) {
        server.write_all(byte).await.unwrap();
    }
    for (key, future) in keys.iter().zip(futures) {
        assert_eq!(value(answer(future).await.unwrap()), key.as_bytes());
    }
    let metrics = connection.metrics();
    assert!(
        metrics.writes < 10,
        "50 queued requests share writes: {metrics:?}"
    );
}

#[tokio::test]
async fn an_undecodable_reply_fails_every_request_in_flight_then_reconnects() {
    for garbage in [
        &b"XX bogus\r\n"[..],
        b"VA 99999999999 f0\r\n",
        b"VA 1\r\nxyz\r\n",
        b"HD\n",
    ] {
        let (addr, mut accepted) = fake_server().await;
        let connection = Connection::new(addr, scripted());
        let mut futures = Vec::new();
        for i in 0..5 {
            futures.push(send(&connection, get(&format!("k{i}"))).await);
        }
        let mut server = next_connection(&mut accepted).await;
        read_lines(&mut server, 5).await;
        server.write_all(garbage).await.unwrap();
        for future in futures {
            let err = answer(future).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Protocol, "{garbage:?}: {err}");
        }

        // The next request gets a fresh connection, in step again.
        let future = send(&connection, get("again")).await;
        let mut server = next_connection(&mut accepted).await;
        read_lines(&mut server, 1).await;
        server.write_all(b"EN\r\n").await.unwrap();
        let reply = answer(future).await.unwrap();
        assert!(matches!(reply, Reply::Meta(m) if m.status == MetaStatus::Miss));
        let metrics = connection.metrics();
        assert_eq!((metrics.connects, metrics.disconnects), (2, 1));
    }
}

#[tokio::test]
async fn an_answer_nobody_asked_for_closes_the_connection() {
    let (addr, mut accepted) = fake_server().await;
    let connection = Connection::new(addr, scripted());
    let future = send(&connection, get("a")).await;
    let mut server = next_connection(&mut accepted).await;
    read_lines(&mut server, 1).await;
    server.write_all(b"EN\r\nEN\r\n").await.unwrap();
    assert!(answer(future).await.is_ok());
    let mut rest = Vec::new();
    tokio::time::timeout(BOUND, server.read_to_end(&mut rest))
        .await
        .expect("the client closes the connection")
        .unwrap();
    assert_eq!(connection.metrics().disconnects, 1);
}

#[tokio::test]
async fn a_lost_connection_tells_sent_from_unsent() {
    let (addr, mut accepted) = fake_server().await;
    let connection = Connection::new(addr, scripted().max_in_flight(1));
    let written = send(&connection, get("a")).await;
    let mut server = next_connection(&mut accepted).await;
    read_lines(&mut server, 1).await;
    drop(server);
    let err = answer(written).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert!(!err.is_unsent(), "the server had read it: {err:?}");
    assert_eq!(err.node(), Some(addr));

    // The failed request gave its place in the window back.
    let next = send(&connection, get("b")).await;
    let mut server = next_connection(&mut accepted).await;
    read_lines(&mut server, 1).await;
    server.write_all(b"EN\r\n").await.unwrap();
    assert!(answer(next).await.is_ok());
}

#[tokio::test]
async fn refused_connections_fail_fast_and_back_off() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let config = scripted().reconnect_backoff(Duration::from_secs(30), Duration::from_secs(60));
    let connection = Connection::new(addr, config);

    let err = answer(send(&connection, get("a")).await).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(err.is_unsent() && err.is_connection() && err.is_retryable());

    // Within the backoff: no new attempt, the same error at once.
    let err = answer(send(&connection, get("b")).await).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    let metrics = connection.metrics();
    assert_eq!((metrics.connect_failures, metrics.connects), (1, 0));
}

#[tokio::test]
async fn connecting_is_bounded_by_the_connect_timeout() {
    // A listener with a full accept queue that never accepts: the kernel
    // drops further SYNs, so a new connection hangs until its timeout.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => break,
        }
        assert!(fillers.len() < 16, "the accept queue never filled");
    }

    let connection = Connection::new(addr, scripted().connect_timeout(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    let err = answer(send(&connection, get("a")).await).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(err.is_unsent());
    assert!(
        elapsed >= Duration::from_millis(190) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn commands_without_an_answer_are_refused() {
    let (addr, mut accepted) = fake_server().await;
    // A window of one: a refused request that kept its place would leave
    // no room for the last one.
    let connection = Connection::new(addr, scripted().max_in_flight(1));
    let mut quiet = MetaSet::new(Key::new("k").unwrap(), "v");
    quiet.quiet = true;
    let noreply = Command::Delete {
        key: Key::new("k").unwrap(),
        noreply: true,
    };
    for command in [Command::MetaSet(quiet), noreply] {
        let err = answer(send(&connection, command).await).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.is_unsent());
    }
    assert_eq!(connection.metrics().requests, 0);
    assert!(!connection.is_connected());
    let version = send(&connection, Command::Version).await;
    let mut server = next_connection(&mut accepted).await;
    assert_eq!(read_lines(&mut server, 1).await, "version\r\n");
    server.write_all(b"VERSION 1.6.21\r\n").await.unwrap();
    assert!(matches!(answer(version).await.unwrap(), Reply::Version(_)));
}
