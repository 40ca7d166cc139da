//! `Health` at the poll level, over `tower_test::mock`: results are recorded,
//! a Down node fails `poll_ready` at once without reaching the inner service.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use memha_health::{
    probe_fn, BoxError, Cause, ClassifyOutcome, Error, ErrorKind, Health, HealthConfig,
    HealthLayer, HealthTable, NodeHealth, NodeState, Observation, ProbeReport,
};
use memha_proto::{Command, MetaFlags, MetaReply, MetaStatus, Reply};
use tokio::time::{sleep, timeout, Instant};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

const SEC: Duration = Duration::from_secs(1);

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 11211))
}

/// A table with one Up node whose probe always answers.
async fn up_node() -> (HealthTable, NodeHealth) {
    let table = HealthTable::new(HealthConfig::default());
    let node = table.add_node(
        addr(),
        probe_fn(|| async { Ok(ProbeReport::new().with_pid(1).with_uptime(10)) }),
    );
    table.wait_for_nodes(1, SEC).await.unwrap();
    (table, node)
}

fn miss() -> Reply {
    Reply::Meta(MetaReply {
        status: MetaStatus::Miss,
        value: None,
        flags: MetaFlags::default(),
    })
}

fn node_down(err: &BoxError) -> bool {
    err.downcast_ref::<Error>()
        .is_some_and(|err| err.kind() == ErrorKind::NodeDown { node: addr() })
}

#[tokio::test(start_paused = true)]
async fn an_up_node_passes_readiness_through_and_records_answers() {
    let (_table, node) = up_node().await;
    let (mut service, mut handle) =
        mock::spawn_layer::<Command, Reply, _>(HealthLayer::new(node.clone()));

    // Readiness is the inner service's: pending until it allows a request.
    handle.allow(0);
    assert!(service.poll_ready().is_pending());
    handle.allow(1);
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));

    node.record(Observation::Timeout);
    assert_eq!(node.consecutive_failures(), 1);
    let response = service.call(Command::MetaNoop);
    let (request, reply) = handle.next_request().await.unwrap();
    assert_eq!(request, Command::MetaNoop);
    // A miss is a healthy answer: it resets the timeout count.
    reply.send_response(miss());
    assert_eq!(response.await.unwrap(), miss());
    assert_eq!(node.consecutive_failures(), 0);
    assert_eq!(node.state(), NodeState::Up);
}

#[tokio::test(start_paused = true)]
async fn a_down_node_fails_poll_ready_at_once_without_polling_the_inner_service() {
    let (_table, node) = up_node().await;
    let (mut service, mut handle) =
        mock::spawn_layer::<Command, Reply, _>(HealthLayer::new(node.clone()));
    handle.allow(0);
    node.record(Observation::ConnectionFailed);
    assert_eq!(node.state(), NodeState::Down);

    // The inner service would be pending; Health answers at once.
    match service.poll_ready() {
        Poll::Ready(Err(err)) => {
            assert!(node_down(&err), "{err}");
            // Refusing is not an observation of the node.
            assert_eq!(err.observation(), Observation::Neutral);
        }
        other => panic!("expected a fast failure, got {other:?}"),
    }
    // Also when the inner service would be ready: nothing reaches it.
    handle.allow(1);
    assert!(matches!(service.poll_ready(), Poll::Ready(Err(ref e)) if node_down(e)));
    assert!(handle.poll_request().is_pending());
    // The service is not broken: once the node is back it is ready again.
    sleep(SEC).await;
    assert_eq!(node.state(), NodeState::Up);
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_in_a_response_marks_the_node_down() {
    let (_table, node) = up_node().await;
    let (mut service, mut handle) =
        mock::spawn_layer::<Command, Reply, _>(HealthLayer::new(node.clone()));
    handle.allow(1);
    assert!(service.poll_ready().is_ready());
    let response = service.call(Command::Version);
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_error(io::Error::from(io::ErrorKind::ConnectionReset));
    assert!(response.await.is_err());
    assert_eq!(node.state(), NodeState::Down);
}

#[tokio::test(start_paused = true)]
async fn timeouts_from_a_timeout_layer_below_count_towards_the_threshold() {
    // The node hangs after its first probe: the probe the first timeout
    // triggers does not answer within the test (an answer would reset the
    // count).
    let table = HealthTable::new(HealthConfig::default());
    let answered = Arc::new(AtomicBool::new(false));
    let node = table.add_node(
        addr(),
        probe_fn(move || {
            let first = !answered.swap(true, Ordering::SeqCst);
            async move {
                if !first {
                    sleep(60 * SEC).await;
                }
                Ok(ProbeReport::new())
            }
        }),
    );
    table.wait_for_nodes(1, SEC).await.unwrap();
    let mut transitions = table.transitions();
    let (inner, mut handle) = mock::pair::<Command, Reply>();
    handle.allow(10);
    let mut service = HealthLayer::new(node.clone())
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(200)).layer(inner));
    for expected in [1, 2] {
        let err = service
            .ready()
            .await
            .unwrap()
            .call(Command::MetaNoop)
            .await
            .unwrap_err();
        assert_eq!(err.observation(), Observation::Timeout, "{err}");
        assert_eq!(node.consecutive_failures(), expected);
        assert_eq!(node.state(), NodeState::Up);
    }
    let started = Instant::now();
    let err = service
        .ready()
        .await
        .unwrap()
        .call(Command::MetaNoop)
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    assert_eq!(err.observation(), Observation::Timeout);
    assert_eq!(node.state(), NodeState::Down);
    let t = transitions.recv().await.unwrap();
    assert_eq!(t.cause, Cause::Failures { consecutive: 3 });
    let err = service.ready().await.unwrap_err();
    assert!(node_down(&err), "{err}");
    // Three requests reached the connection, none after the node went down.
    for _ in 0..3 {
        assert!(handle.next_request().await.is_some());
    }
    assert!(handle.poll_request().is_pending());
}

#[tokio::test(start_paused = true)]
async fn an_inner_poll_ready_error_is_recorded() {
    let (_table, node) = up_node().await;
    let (mut service, mut handle) =
        mock::spawn_layer::<Command, Reply, _>(HealthLayer::new(node.clone()));
    handle.send_error(io::Error::from(io::ErrorKind::ConnectionRefused));
    match service.poll_ready() {
        Poll::Ready(Err(err)) => assert!(!node_down(&err), "the inner error passes through"),
        other => panic!("expected the inner error, got {other:?}"),
    }
    assert_eq!(node.state(), NodeState::Down);
}

#[tokio::test(start_paused = true)]
async fn neutral_errors_and_dropped_calls_record_nothing() {
    let (_table, node) = up_node().await;
    let (mut service, mut handle) =
        mock::spawn_layer::<Command, Reply, _>(HealthLayer::new(node.clone()));
    node.record(Observation::Timeout);
    handle.allow(2);

    // An error of unknown kind says nothing about the node.
    assert!(service.poll_ready().is_ready());
    let response = service.call(Command::MetaNoop);
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_error("invalid key");
    assert!(response.await.is_err());
    assert_eq!(node.consecutive_failures(), 1);

    // A call dropped before it completes (the caller gave up) is not counted.
    assert!(service.poll_ready().is_ready());
    let response = service.call(Command::MetaNoop);
    drop(response);
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_error(io::Error::from(io::ErrorKind::ConnectionRefused));
    tokio::task::yield_now().await;
    assert_eq!(node.consecutive_failures(), 1);
    assert_eq!(node.state(), NodeState::Up);
}

#[tokio::test(start_paused = true)]
async fn accessors_reach_the_inner_service() {
    let (_table, node) = up_node().await;
    let inner = tower::service_fn(|_: Command| async { Ok::<Reply, BoxError>(Reply::Ok) });
    let mut service = Health::new(inner, node.clone());
    assert!(service.node().ptr_eq(&node));
    let _: &_ = service.get_ref();
    let _: &mut _ = service.get_mut();
    assert_eq!(
        service
            .ready()
            .await
            .unwrap()
            .call(Command::Version)
            .await
            .unwrap(),
        Reply::Ok
    );
    let mut inner = service.into_inner();
    assert_eq!(inner.call(Command::Version).await.unwrap(), Reply::Ok);
}

#[tokio::test(start_paused = true)]
async fn many_callers_of_a_down_node_fail_fast_without_waiting() {
    let (_table, node) = up_node().await;
    let (inner, mut handle) = mock::pair::<Command, Reply>();
    // The connection would never become ready: a queue would hang forever.
    handle.allow(0);
    let service = HealthLayer::new(node.clone()).layer(inner);
    node.record(Observation::ConnectionFailed);
    let start = Instant::now();
    for _ in 0..100 {
        let mut service = service.clone();
        let err = timeout(SEC, service.ready())
            .await
            .expect("no waiting on a dead node")
            .unwrap_err();
        assert!(node_down(&err));
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[test]
fn handles_services_and_errors_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + 'static>() {}
    send_sync::<HealthTable>();
    send_sync::<NodeHealth>();
    send_sync::<Error>();
    send_sync::<HealthLayer>();
    send_sync::<Health<mock::Mock<Command, Reply>>>();
    send::<memha_health::ResponseFuture<mock::future::ResponseFuture<Reply>>>();
    send::<memha_health::Transitions>();
}
