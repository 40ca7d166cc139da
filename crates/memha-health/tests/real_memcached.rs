//! Health against real memcached processes: kills, pauses (SIGSTOP),
//! resumes and restarts, seen through `MemcachedProbe` and through a small
//! real node service wrapped in `Health`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use memha_health::{
    BoxError, Cause, ClassifyOutcome, Error, HealthConfig, HealthLayer, HealthTable,
    MemcachedProbe, NodeHealth, NodeState, Observation, Probe, ProbeReport, RejoinHook, RejoinInfo,
    RejoinReason, Transition, Transitions,
};
use memha_proto::{Command, Limits, MetaStatus, Reply, ReplyDecoder};
use memha_tests::{raw_roundtrip, MemcachedCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tower::timeout::TimeoutLayer;
use tower::{Layer, Service, ServiceExt};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// A minimal real node service: one short-lived connection per command.
#[derive(Clone)]
struct Conn {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Conn {
            addr,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Service<Command> for Conn {
    type Response = Reply;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, command: Command) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let addr = self.addr;
        Box::pin(async move {
            let kind = command.reply_kind().expect("a command with a reply");
            let limits = Limits::default();
            let mut stream = TcpStream::connect(addr).await?;
            let mut request = BytesMut::new();
            command.encode(&mut request, &limits)?;
            stream.write_all(&request).await?;
            let mut decoder = ReplyDecoder::new(limits);
            let mut buffer = BytesMut::new();
            loop {
                if let Some(reply) = decoder.decode(&mut buffer, kind)? {
                    return Ok(reply);
                }
                if stream.read_buf(&mut buffer).await? == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                }
            }
        })
    }
}

/// Records what the rejoin hook was told.
#[derive(Clone, Default)]
struct Hook(Arc<Mutex<Vec<RejoinInfo>>>);

impl Hook {
    fn calls(&self) -> Vec<RejoinInfo> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl RejoinHook for Hook {
    async fn make_safe(&self, info: RejoinInfo) -> Result<(), BoxError> {
        self.0.lock().unwrap().push(info);
        Ok(())
    }
}

/// Counts the probes of the wrapped probe.
#[derive(Clone)]
struct Counting<P> {
    inner: P,
    count: Arc<AtomicUsize>,
}

#[async_trait]
impl<P: Probe> Probe for Counting<P> {
    async fn probe(&self) -> Result<ProbeReport, Error> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.inner.probe().await
    }
}

/// Waits for the first transition matching `wanted`, for at most `within`.
async fn wait_for(
    transitions: &mut Transitions,
    within: Duration,
    wanted: impl Fn(&Transition) -> bool,
) -> Transition {
    let mut seen = Vec::new();
    let found = timeout(within, async {
        while let Some(t) = transitions.recv().await {
            if wanted(&t) {
                return t;
            }
            seen.push(t);
        }
        panic!("transition stream closed");
    })
    .await;
    found.unwrap_or_else(|_| panic!("no such transition within {within:?}; saw {seen:?}"))
}

async fn start_one(
    config: HealthConfig,
    hook: Option<Hook>,
    probe_timeout: Duration,
) -> (MemcachedCluster, HealthTable, NodeHealth, Transitions) {
    let cluster = MemcachedCluster::start(1).expect("start memcached");
    let addr = cluster.node(0).addr();
    let table = match hook {
        Some(hook) => HealthTable::with_rejoin_hook(config, hook),
        None => HealthTable::new(config),
    };
    let transitions = table.transitions();
    let node = table.add_node(addr, MemcachedProbe::new(addr).with_timeout(probe_timeout));
    table
        .wait_for_nodes(1, 5 * SEC)
        .await
        .expect("the node comes up");
    let report = node.last_report().expect("a probe answered");
    assert_eq!(report.pid, cluster.node(0).pid());
    assert!(report.uptime.is_some() && report.started_at().is_some());
    (cluster, table, node, transitions)
}

fn is_node_down(err: &BoxError) -> bool {
    err.downcast_ref::<Error>().is_some_and(Error::is_node_down)
}

/// 1000 readiness checks of a Down node: each fails at once and nothing
/// reaches the connection.
async fn assert_fails_fast<S>(service: &mut S, conn_calls: &AtomicUsize)
where
    S: Service<Command, Error = BoxError>,
{
    let before = conn_calls.load(Ordering::SeqCst);
    let start = Instant::now();
    for _ in 0..1000 {
        let err = match service.ready().await {
            Ok(_) => panic!("a down node must not be ready"),
            Err(err) => err,
        };
        assert!(is_node_down(&err), "{err}");
    }
    let each = start.elapsed() / 1000;
    assert!(each < MS, "a refusal took {each:?}");
    assert_eq!(conn_calls.load(Ordering::SeqCst), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_down_at_its_next_request_and_then_costs_a_fast_failure() {
    let (cluster, _table, node, _transitions) = start_one(
        HealthConfig::default(),
        None,
        MemcachedProbe::DEFAULT_TIMEOUT,
    )
    .await;
    let conn = Conn::new(cluster.node(0).addr());
    let calls = Arc::clone(&conn.calls);
    let mut service = HealthLayer::new(node.clone()).layer(TimeoutLayer::new(500 * MS).layer(conn));
    let reply = service
        .ready()
        .await
        .unwrap()
        .call(Command::MetaNoop)
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Meta(ref m) if m.status == MetaStatus::Noop));

    cluster.node(0).kill().unwrap();
    let killed = Instant::now();
    let err = service
        .ready()
        .await
        .unwrap()
        .call(Command::MetaNoop)
        .await
        .unwrap_err();
    assert_eq!(err.observation(), Observation::ConnectionFailed, "{err}");
    assert_eq!(node.state(), NodeState::Down);
    assert!(killed.elapsed() < SEC, "{:?}", killed.elapsed());
    assert_fails_fast(&mut service, &calls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_down_within_a_second_from_probes_alone() {
    let config = HealthConfig::default().up_interval(500 * MS);
    let (cluster, _table, node, mut transitions) =
        start_one(config, None, MemcachedProbe::DEFAULT_TIMEOUT).await;
    cluster.node(0).kill().unwrap();
    let killed = Instant::now();
    let t = wait_for(&mut transitions, SEC, |t| t.to == NodeState::Down).await;
    assert!(killed.elapsed() < SEC);
    assert_eq!((t.from, t.cause), (NodeState::Up, Cause::ConnectionFailed));
    assert_eq!(node.state(), NodeState::Down);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_down_after_the_configured_timeouts_and_rejoins_not_restarted() {
    let hook = Hook::default();
    // A long probe timeout: only the requests' timeouts count here.
    let (cluster, _table, node, mut transitions) =
        start_one(HealthConfig::default(), Some(hook.clone()), 10 * SEC).await;
    let conn = Conn::new(cluster.node(0).addr());
    let calls = Arc::clone(&conn.calls);
    let mut service = HealthLayer::new(node.clone()).layer(TimeoutLayer::new(300 * MS).layer(conn));

    cluster.node(0).pause().unwrap();
    for expected_failures in [1, 2] {
        let err = service
            .ready()
            .await
            .unwrap()
            .call(Command::Version)
            .await
            .unwrap_err();
        assert_eq!(err.observation(), Observation::Timeout, "{err}");
        assert_eq!(node.state(), NodeState::Up);
        assert_eq!(node.consecutive_failures(), expected_failures);
    }
    let err = service
        .ready()
        .await
        .unwrap()
        .call(Command::Version)
        .await
        .unwrap_err();
    assert_eq!(err.observation(), Observation::Timeout, "{err}");
    assert_eq!(node.state(), NodeState::Down);
    let t = wait_for(&mut transitions, SEC, |t| t.to == NodeState::Down).await;
    assert_eq!(t.cause, Cause::Failures { consecutive: 3 });
    assert_fails_fast(&mut service, &calls).await;

    cluster.node(0).resume().unwrap();
    let t = wait_for(&mut transitions, 15 * SEC, |t| t.to != NodeState::Down).await;
    assert_eq!(
        (t.from, t.to, t.cause),
        (
            NodeState::Down,
            NodeState::Rejoining,
            Cause::Returned(RejoinReason::Unreachable)
        )
    );
    let t = wait_for(&mut transitions, 5 * SEC, |_| true).await;
    assert_eq!((t.to, t.cause), (NodeState::Up, Cause::MadeSafe));
    let calls = hook.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].node, calls[0].reason, calls[0].attempt),
        (cluster.node(0).addr(), RejoinReason::Unreachable, 1)
    );
    // Serving again.
    let reply = service
        .ready()
        .await
        .unwrap()
        .call(Command::Version)
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Version(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_seen_by_probes_alone_goes_down_and_rejoins_not_restarted() {
    let config = HealthConfig::default().up_interval(500 * MS);
    let (cluster, _table, node, mut transitions) = start_one(config, None, 300 * MS).await;
    cluster.node(0).pause().unwrap();
    let paused = Instant::now();
    let t = wait_for(&mut transitions, 5 * SEC, |t| t.to == NodeState::Down).await;
    assert_eq!(t.cause, Cause::Failures { consecutive: 3 });
    // One probe within 500 ms, then two more on the fast schedule, each
    // taking its 300 ms timeout.
    assert!(paused.elapsed() < 3 * SEC, "{:?}", paused.elapsed());

    cluster.node(0).resume().unwrap();
    let t = wait_for(&mut transitions, 5 * SEC, |_| true).await;
    assert_eq!(
        (t.from, t.to, t.cause),
        (
            NodeState::Down,
            NodeState::Rejoining,
            Cause::Returned(RejoinReason::Unreachable)
        )
    );
    wait_for(&mut transitions, SEC, |t| t.to == NodeState::Up).await;
    assert_eq!(node.state(), NodeState::Up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_rejoins_flagged_restarted() {
    let hook = Hook::default();
    let config = HealthConfig::default().up_interval(300 * MS);
    let (cluster, _table, node, mut transitions) =
        start_one(config, Some(hook.clone()), MemcachedProbe::DEFAULT_TIMEOUT).await;
    let first_pid = cluster.node(0).pid();

    // Killed, seen down, then restarted empty on the same port.
    cluster.node(0).kill().unwrap();
    wait_for(&mut transitions, 2 * SEC, |t| t.to == NodeState::Down).await;
    cluster.node(0).restart().unwrap();
    let t = wait_for(&mut transitions, 5 * SEC, |t| t.to != NodeState::Down).await;
    assert_eq!(
        (t.from, t.to, t.cause),
        (
            NodeState::Down,
            NodeState::Rejoining,
            Cause::Returned(RejoinReason::Restarted)
        )
    );
    wait_for(&mut transitions, SEC, |t| t.to == NodeState::Up).await;
    let second_pid = cluster.node(0).pid();
    assert_ne!(first_pid, second_pid);
    assert_eq!(node.last_report().unwrap().pid, second_pid);

    // Restarted so fast that probes may never see it down: still flagged.
    cluster.node(0).restart().unwrap();
    let t = wait_for(&mut transitions, 5 * SEC, |t| t.to == NodeState::Rejoining).await;
    assert_eq!(t.cause, Cause::Returned(RejoinReason::Restarted));
    wait_for(&mut transitions, SEC, |t| t.to == NodeState::Up).await;
    assert_eq!(node.last_report().unwrap().pid, cluster.node(0).pid());

    let reasons: Vec<_> = hook.calls().iter().map(|info| info.reason).collect();
    assert_eq!(reasons, [RejoinReason::Restarted, RejoinReason::Restarted]);
}

/// The server's count of connections it ever accepted.
fn total_connections(addr: SocketAddr) -> u64 {
    let reply = raw_roundtrip(addr, b"stats\r\n", b"END\r\n", 2 * SEC).expect("stats");
    let reply = String::from_utf8(reply).expect("utf-8 stats");
    reply
        .lines()
        .find_map(|line| line.strip_prefix("STAT total_connections "))
        .expect("total_connections in stats")
        .trim()
        .parse()
        .expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_traffic_stays_within_the_configured_schedule() {
    // Up: one connection per probe, one probe per 200..250 ms.
    let config = HealthConfig::default().up_interval(250 * MS);
    let cluster = MemcachedCluster::start(1).expect("start memcached");
    let addr = cluster.node(0).addr();
    let table = HealthTable::new(config);
    let count = Arc::new(AtomicUsize::new(0));
    let node = table.add_node(
        addr,
        Counting {
            inner: MemcachedProbe::new(addr),
            count: Arc::clone(&count),
        },
    );
    table.wait_for_nodes(1, 5 * SEC).await.unwrap();
    let before = total_connections(addr);
    // Measuring traffic over a window: here a sleep is the point.
    tokio::time::sleep(2500 * MS).await;
    // Less this query's own connection.
    let probes = total_connections(addr) - before - 1;
    assert!(
        (6..=14).contains(&probes),
        "{probes} probe connections in 2.5 s"
    );

    // Down: backoff from 100 ms by 1.5x; refused probes open no server
    // connection, so count the probe calls.
    let mut transitions = table.transitions();
    cluster.node(0).kill().unwrap();
    wait_for(&mut transitions, 2 * SEC, |t| t.to == NodeState::Down).await;
    let from = count.load(Ordering::SeqCst);
    tokio::time::sleep(3 * SEC).await;
    let probes = count.load(Ordering::SeqCst) - from;
    // Nominal gaps 100, 150, 225, 338, 506, 759, 1139 ms: 6 probes in 3 s,
    // 7 with the shortest jitter.
    assert!(
        (4..=9).contains(&probes),
        "{probes} probes of a down node in 3 s"
    );
    assert_eq!(node.state(), NodeState::Down);
}
