//! The watcher with scripted sources, on tokio's paused clock.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures_core::Stream;
use memha_discovery::{
    async_trait, Error, ErrorKind, NodeAddr, NodeId, NodeSource, StaticSource, Watcher,
};
use tokio::time::Instant;
use tower::discover::{Change, Discover};

/// What a scripted source answers on its next polls.
#[derive(Clone)]
enum Answer {
    Nodes(Vec<NodeAddr>),
    Fail(ErrorKind),
    Hang,
}

/// A source whose answer the test sets between rounds.
struct Scripted {
    name: &'static str,
    answer: Mutex<Answer>,
    polls: Mutex<Vec<Instant>>,
}

impl Scripted {
    fn new(name: &'static str, nodes: &[&str]) -> Arc<Scripted> {
        Arc::new(Scripted {
            name,
            answer: Mutex::new(Answer::Nodes(addrs(nodes))),
            polls: Mutex::new(Vec::new()),
        })
    }

    fn set(&self, nodes: &[&str]) {
        self.answer(Answer::Nodes(addrs(nodes)));
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn polls(&self) -> Vec<Instant> {
        self.polls.lock().unwrap().clone()
    }
}

#[async_trait]
impl NodeSource for Scripted {
    async fn nodes(&self) -> Result<Vec<NodeAddr>, Error> {
        self.polls.lock().unwrap().push(Instant::now());
        let answer = self.answer.lock().unwrap().clone();
        match answer {
            Answer::Nodes(nodes) => Ok(nodes),
            Answer::Fail(kind) => Err(Error::new(
                kind,
                format!("{} is scripted to fail", self.name),
            )),
            Answer::Hang => std::future::pending().await,
        }
    }

    fn name(&self) -> &str {
        self.name
    }
}

fn addrs(nodes: &[&str]) -> Vec<NodeAddr> {
    nodes.iter().map(|n| n.parse().unwrap()).collect()
}

/// `+id` for an insert, `-id` for a remove.
fn show(change: &Change<NodeId, NodeAddr>) -> String {
    match change {
        Change::Insert(id, addr) => {
            assert_eq!(&addr.id(), id, "an insert's key is its address's id");
            format!("+{id}")
        }
        Change::Remove(id) => format!("-{id}"),
    }
}

/// Drives the watcher through exactly one more round (waiting on the paused
/// clock as needed) and returns that round's changes.
async fn next_round(watcher: &mut Watcher) -> Vec<String> {
    let target = watcher.metrics().rounds + 1;
    let mut changes = Vec::new();
    poll_fn(|cx| loop {
        match Pin::new(&mut *watcher).poll_next(cx) {
            Poll::Ready(Some(Ok(change))) => changes.push(show(&change)),
            Poll::Ready(Some(Err(err))) => panic!("the watcher yielded an error: {err}"),
            Poll::Ready(None) => panic!("the watcher ended"),
            Poll::Pending if watcher.metrics().rounds >= target => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await;
    assert_eq!(watcher.metrics().rounds, target, "exactly one round");
    changes
}

#[tokio::test(start_paused = true)]
async fn add_and_remove_on_the_interval() {
    let source = Scripted::new("a", &["10.0.0.1:11211", "10.0.0.2:11211"]);
    let mut watcher = Watcher::builder().source(source.clone()).build();
    let start = Instant::now();

    assert_eq!(
        next_round(&mut watcher).await,
        ["+10.0.0.1:11211", "+10.0.0.2:11211"]
    );
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the first round is immediate"
    );

    source.set(&["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]);
    assert_eq!(next_round(&mut watcher).await, ["+10.0.0.3:11211"]);
    assert_eq!(start.elapsed(), Duration::from_secs(10), "default interval");

    source.set(&["10.0.0.3:11211"]);
    assert_eq!(
        next_round(&mut watcher).await,
        ["-10.0.0.1:11211", "-10.0.0.2:11211"]
    );
    assert_eq!(watcher.nodes(), addrs(&["10.0.0.3:11211"]));

    // Nothing changes: nothing is yielded.
    assert_eq!(next_round(&mut watcher).await, Vec::<String>::new());
    let stats = watcher.metrics();
    assert_eq!(
        (stats.rounds, stats.inserts, stats.removes, stats.nodes),
        (4, 3, 2, 1)
    );
    assert_eq!(stats.source_errors, 0);
    assert_eq!(source.polls().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_configured_interval_is_kept_from_round_start() {
    let source = Scripted::new("a", &["10.0.0.1:11211"]);
    let mut watcher = Watcher::builder()
        .source(source.clone())
        .interval(Duration::from_millis(1500))
        .build();
    for _ in 0..4 {
        next_round(&mut watcher).await;
    }
    let polls = source.polls();
    let gaps: Vec<Duration> = polls.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, [Duration::from_millis(1500); 3]);
}

#[tokio::test(start_paused = true)]
async fn a_flapping_node_is_removed_and_inserted_each_time() {
    let source = Scripted::new("a", &["10.0.0.1:11211", "10.0.0.2:11211"]);
    let mut watcher = Watcher::new(source.clone());
    assert_eq!(next_round(&mut watcher).await.len(), 2);
    for _ in 0..3 {
        source.set(&["10.0.0.1:11211"]);
        assert_eq!(next_round(&mut watcher).await, ["-10.0.0.2:11211"]);
        source.set(&["10.0.0.1:11211", "10.0.0.2:11211"]);
        assert_eq!(next_round(&mut watcher).await, ["+10.0.0.2:11211"]);
    }
    let stats = watcher.metrics();
    assert_eq!((stats.inserts, stats.removes), (5, 3));
}

#[tokio::test(start_paused = true)]
async fn an_error_keeps_the_last_snapshot() {
    let source = Scripted::new("a", &["10.0.0.1:11211", "10.0.0.2:11211"]);
    let mut watcher = Watcher::new(source.clone());
    assert_eq!(next_round(&mut watcher).await.len(), 2);

    source.answer(Answer::Fail(ErrorKind::Io));
    for round in 1..=3 {
        assert_eq!(
            next_round(&mut watcher).await,
            Vec::<String>::new(),
            "no node removed"
        );
        assert_eq!(watcher.metrics().source_errors, round);
    }
    assert_eq!(watcher.nodes().len(), 2);
    let errors = watcher.last_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, "a");
    assert_eq!(errors[0].1.kind(), ErrorKind::Io);

    // Recovery: the new snapshot is diffed against the kept one.
    source.set(&["10.0.0.2:11211"]);
    assert_eq!(next_round(&mut watcher).await, ["-10.0.0.1:11211"]);
    assert!(watcher.last_errors().is_empty());
    assert_eq!(watcher.metrics().source_errors, 3);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_source_times_out_and_keeps_its_snapshot() {
    let source = Scripted::new("a", &["10.0.0.1:11211"]);
    let mut watcher = Watcher::builder()
        .source(source.clone())
        .source_timeout(Duration::from_secs(2))
        .build();
    assert_eq!(next_round(&mut watcher).await.len(), 1);

    source.answer(Answer::Hang);
    let before = Instant::now();
    assert_eq!(next_round(&mut watcher).await, Vec::<String>::new());
    assert_eq!(
        before.elapsed(),
        Duration::from_secs(10 + 2),
        "interval, then the timeout"
    );
    assert_eq!(watcher.metrics().source_errors, 1);
    assert!(watcher.last_errors()[0].1.is_timeout());
    assert_eq!(watcher.nodes(), addrs(&["10.0.0.1:11211"]));
}

#[tokio::test(start_paused = true)]
async fn two_sources_are_merged_without_duplicates() {
    let a = Scripted::new("a", &["10.0.0.1:11211", "10.0.0.2:11211"]);
    let b = Scripted::new("b", &["10.0.0.2:11211", "10.0.0.3:11211", "10.0.0.3:11211"]);
    let mut watcher = Watcher::builder()
        .source(a.clone())
        .source(b.clone())
        .build();

    assert_eq!(
        next_round(&mut watcher).await,
        ["+10.0.0.1:11211", "+10.0.0.2:11211", "+10.0.0.3:11211"]
    );

    // One failing source hides neither its own nodes nor the other's changes.
    a.answer(Answer::Fail(ErrorKind::Timeout));
    b.set(&["10.0.0.3:11211", "10.0.0.4:11211"]);
    assert_eq!(next_round(&mut watcher).await, ["+10.0.0.4:11211"]);
    assert_eq!(watcher.metrics().source_errors, 1);

    // A node stays while any source still lists it.
    a.set(&["10.0.0.1:11211"]);
    b.set(&["10.0.0.1:11211", "10.0.0.4:11211"]);
    assert_eq!(
        next_round(&mut watcher).await,
        ["-10.0.0.2:11211", "-10.0.0.3:11211"]
    );
    a.set(&[]);
    assert_eq!(next_round(&mut watcher).await, Vec::<String>::new());
    b.set(&[]);
    assert_eq!(
        next_round(&mut watcher).await,
        ["-10.0.0.1:11211", "-10.0.0.4:11211"]
    );
    assert!(watcher.nodes().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_same_name_from_two_sources_is_one_node() {
    let named = NodeAddr::new("cache-1.internal", 11211).with_ip("10.0.0.1".parse().unwrap());
    let mut watcher = Watcher::builder()
        .source(StaticSource::new([named.clone()]))
        .source(StaticSource::new([NodeAddr::new(
            "Cache-1.Internal.",
            11211,
        )]))
        .build();
    assert_eq!(
        watcher.ready().await.unwrap(),
        std::slice::from_ref(&named),
        "the first source wins"
    );
    let Change::Insert(id, addr) = watcher.next_change().await.unwrap() else {
        panic!("expected an insert")
    };
    assert_eq!((id.as_str(), addr), ("cache-1.internal:11211", named));
}

#[tokio::test(start_paused = true)]
async fn a_changed_address_under_the_same_name_is_removed_then_inserted() {
    let source = Arc::new(Scripted {
        name: "a",
        answer: Mutex::new(Answer::Nodes(vec![
            NodeAddr::new("cache-1", 11211).with_ip("10.0.0.1".parse().unwrap())
        ])),
        polls: Mutex::new(Vec::new()),
    });
    let mut watcher = Watcher::new(source.clone());
    assert_eq!(next_round(&mut watcher).await, ["+cache-1:11211"]);
    let moved = NodeAddr::new("cache-1", 11211).with_ip("10.0.0.9".parse().unwrap());
    source.answer(Answer::Nodes(vec![moved.clone()]));
    assert_eq!(
        next_round(&mut watcher).await,
        ["-cache-1:11211", "+cache-1:11211"],
        "the same identity: the client keeps its place and reconnects"
    );
    assert_eq!(watcher.nodes(), [moved]);
}

#[tokio::test(start_paused = true)]
async fn ready_reports_when_every_source_failed() {
    let a = Scripted::new("a", &[]);
    a.answer(Answer::Fail(ErrorKind::ClusterNotFound));
    let b = Scripted::new("b", &[]);
    b.answer(Answer::Fail(ErrorKind::Dns));
    let mut watcher = Watcher::builder()
        .source(a.clone())
        .source(b.clone())
        .build();

    let err = watcher.ready().await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::ClusterNotFound,
        "the first source's error"
    );
    assert!(err.is_configuration());
    assert_eq!(watcher.metrics().source_errors, 2);

    b.set(&["10.0.0.9:11211"]);
    assert_eq!(next_round(&mut watcher).await, ["+10.0.0.9:11211"]);
    assert_eq!(watcher.ready().await.unwrap(), addrs(&["10.0.0.9:11211"]));
}

#[tokio::test(start_paused = true)]
async fn ready_does_not_consume_the_changes() {
    let mut watcher = Watcher::new(StaticSource::parse(["10.0.0.1:11211"]).unwrap());
    let stats = watcher.metrics_handle();
    assert_eq!(watcher.ready().await.unwrap().len(), 1);
    assert_eq!(watcher.ready().await.unwrap().len(), 1);
    assert_eq!(stats.get().rounds, 1, "ready does not start a second round");
    assert_eq!(
        show(&watcher.next_change().await.unwrap()),
        "+10.0.0.1:11211"
    );
}

/// A stand-in for a per-node service.
#[derive(Debug, PartialEq)]
struct Conn(String);

#[tokio::test(start_paused = true)]
async fn map_services_is_a_tower_discover() {
    let source = Scripted::new("a", &["10.0.0.1:11211", "10.0.0.2:11211"]);
    let watcher = Watcher::new(source.clone());
    let stats = watcher.metrics_handle();
    let mut discover = watcher.map_services(|id, addr| {
        assert_eq!(&addr.id(), id);
        Conn(addr.to_string())
    });

    let mut seen = Vec::new();
    for _ in 0..2 {
        let change = poll_fn(|cx| Discover::poll_discover(Pin::new(&mut discover), cx))
            .await
            .expect("never ends")
            .expect("no error");
        seen.push(change);
    }
    let [Change::Insert(id1, conn1), Change::Insert(id2, conn2)] = &seen[..] else {
        panic!("expected two inserts")
    };
    assert_eq!(
        (id1.as_str(), conn1),
        ("10.0.0.1:11211", &Conn("10.0.0.1:11211".into()))
    );
    assert_eq!(
        (id2.as_str(), conn2),
        ("10.0.0.2:11211", &Conn("10.0.0.2:11211".into()))
    );

    source.set(&["10.0.0.2:11211"]);
    let change = poll_fn(|cx| Discover::poll_discover(Pin::new(&mut discover), cx))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(change, Change::Remove(ref id) if id.as_str() == "10.0.0.1:11211"));
    assert_eq!(stats.get().rounds, 2);
    assert_eq!(discover.watcher().nodes(), addrs(&["10.0.0.2:11211"]));
}

#[test]
fn the_watcher_can_move_across_tasks() {
    fn assert_send<T: Send + Sync + Unpin + 'static>() {}
    assert_send::<Watcher>();
    assert_send::<memha_discovery::MapServices<fn(&NodeId, &NodeAddr) -> Conn>>();
}
