//! The watcher: polls sources, merges and diffs their snapshots into changes.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::time::{Instant, Sleep};
use tower::discover::Change;

use crate::addr::{NodeAddr, NodeId};
use crate::error::{Error, ErrorKind};
use crate::source::NodeSource;

/// How often sources are polled unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// How long one poll of one source may take unless told otherwise.
pub const DEFAULT_SOURCE_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest interval accepted (a shorter one is raised to it).
const MIN_INTERVAL: Duration = Duration::from_millis(1);

type SourceResult = Result<Vec<NodeAddr>, Error>;
type RoundFuture = Pin<Box<dyn Future<Output = Vec<SourceResult>> + Send>>;
type PollFuture = Pin<Box<dyn Future<Output = SourceResult> + Send>>;

/// Polls one or more [`NodeSource`]s and turns their snapshots into a
/// stream of node insertions and removals.
///
/// The watcher is a [`Stream`] of `Result<Change<NodeId, NodeAddr>, Error>`,
/// and so a [`tower::discover::Discover`] (keys [`NodeId`], "services"
/// [`NodeAddr`]); [`map_services`](Self::map_services) turns each address into
/// a real service for a tower balancer or the replication layer.
///
/// How it behaves:
/// - The first poll of the stream polls every source at once; later rounds
///   start every [`interval`](WatcherBuilder::interval) (default 10 s) after
///   the previous round started, on tokio's clock.
/// - Sources of a round are polled concurrently, each bounded by
///   [`source_timeout`](WatcherBuilder::source_timeout) (default 10 s).
/// - Each source's last good snapshot is kept. A source that fails (error or
///   timeout) keeps its previous snapshot: **a source error never removes a
///   node**, and one failing source never hides the others. The failure is
///   logged with `tracing` (`warn`) and counted in
///   [`WatcherMetrics::source_errors`]; the stream itself never yields it, so
///   a tower balancer never stops on it. [`ready`](Self::ready) returns it
///   when every source failed.
/// - The merged set is the union of the sources' snapshots, without
///   duplicates: nodes are keyed by [`NodeAddr::id`]; when two sources
///   report the same id, the first source (in the order added) wins.
/// - Each round yields `Insert` for new ids, then `Remove` then `Insert`
///   for an id whose address changed (for example its host name), then
///   `Remove` for ids gone; a node present in both rounds yields nothing.
///   Within each group, changes are in id order.
///
/// The stream never ends. Dropping the watcher cancels any poll in flight.
///
/// ```
/// use memha_discovery::{NodeAddr, StaticSource, Watcher};
/// use tower::discover::Change;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), memha_discovery::Error> {
/// let mut watcher = Watcher::builder()
///     .source(StaticSource::parse(["10.0.0.1:11211", "10.0.0.2:11211"])?)
///     .source(StaticSource::parse(["10.0.0.2:11211"])?) // a duplicate: dropped
///     .build();
/// let nodes = watcher.ready().await?; // the first round, at once
/// assert_eq!(nodes.len(), 2);
/// match watcher.next_change().await? {
///     Change::Insert(id, addr) => assert_eq!((id.as_str(), addr), ("10.0.0.1:11211", NodeAddr::new("10.0.0.1", 11211))),
///     Change::Remove(_) => unreachable!(),
/// }
/// # Ok(())
/// # }
/// ```
pub struct Watcher {
    sources: Arc<[Arc<dyn NodeSource>]>,
    interval: Duration,
    source_timeout: Duration,
    state: State,
    /// Each source's last good snapshot (`None` until its first success).
    snapshots: Vec<Option<Vec<NodeAddr>>>,
    /// Each source's error in the last round, if it failed.
    errors: Vec<Option<Error>>,
    /// The merged set after the last round.
    current: BTreeMap<NodeId, NodeAddr>,
    /// Changes not yet yielded.
    queue: VecDeque<Change<NodeId, NodeAddr>>,
    metrics: MetricsHandle,
}

enum State {
    /// No round yet: the first poll starts one at once.
    Start,
    /// A round is in flight; it started at the given instant. (The mutex is
    /// never locked, only reached through `get_mut`: it makes the watcher `Sync`.)
    Polling(Mutex<RoundFuture>, Instant),
    /// Waiting for the next round.
    Waiting(Pin<Box<Sleep>>),
}

/// Configures a [`Watcher`].
#[derive(Clone)]
pub struct WatcherBuilder {
    sources: Vec<Arc<dyn NodeSource>>,
    interval: Duration,
    source_timeout: Duration,
}

impl fmt::Debug for WatcherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatcherBuilder")
            .field("sources", &source_names(&self.sources))
            .field("interval", &self.interval)
            .field("source_timeout", &self.source_timeout)
            .finish()
    }
}

impl Default for WatcherBuilder {
    fn default() -> Self {
        WatcherBuilder {
            sources: Vec::new(),
            interval: DEFAULT_INTERVAL,
            source_timeout: DEFAULT_SOURCE_TIMEOUT,
        }
    }
}

impl WatcherBuilder {
    /// Adds a source. Sources added first win when two report the same node.
    pub fn source(mut self, source: impl NodeSource + 'static) -> Self {
        self.sources.push(Arc::new(source));
        self
    }

    /// Adds a source shared with the caller.
    pub fn shared_source(mut self, source: Arc<dyn NodeSource>) -> Self {
        self.sources.push(source);
        self
    }

    /// The time from the start of one round to the start of the next
    /// (default 10 s; at least 1 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(MIN_INTERVAL);
        self
    }

    /// The bound on one poll of one source (default 10 s); a source that
    /// takes longer fails that round with [`ErrorKind::Timeout`].
    pub fn source_timeout(mut self, timeout: Duration) -> Self {
        self.source_timeout = timeout;
        self
    }

    /// The watcher. It does nothing until first polled.
    pub fn build(self) -> Watcher {
        let n = self.sources.len();
        Watcher {
            sources: self.sources.into(),
            interval: self.interval,
            source_timeout: self.source_timeout,
            state: State::Start,
            snapshots: vec![None; n],
            errors: vec![None; n],
            current: BTreeMap::new(),
            queue: VecDeque::new(),
            metrics: MetricsHandle::default(),
        }
    }
}

impl Watcher {
    /// A watcher of one source, with the default interval and timeout.
    pub fn new(source: impl NodeSource + 'static) -> Watcher {
        Watcher::builder().source(source).build()
    }

    /// A builder, to add several sources or change the interval.
    pub fn builder() -> WatcherBuilder {
        WatcherBuilder::default()
    }

    /// Waits until the first round has completed (it starts at once if no
    /// round has yet), without consuming its changes: they are still yielded
    /// by the stream.
    ///
    /// Returns the merged nodes when at least one source has a good
    /// snapshot; when every source has failed so far, the error of the first
    /// source (a watcher without sources returns an empty list). Useful to
    /// fail fast at start-up on a misconfiguration (an unknown cluster, no
    /// credentials).
    pub async fn ready(&mut self) -> Result<Vec<NodeAddr>, Error> {
        if self.metrics.inner.rounds.load(Ordering::Relaxed) == 0 {
            poll_fn(|cx| self.poll_round(cx)).await;
        }
        if self.sources.is_empty() || self.snapshots.iter().any(Option::is_some) {
            return Ok(self.nodes());
        }
        Err(self
            .errors
            .iter()
            .flatten()
            .next()
            .cloned()
            .unwrap_or_else(|| Error::new(ErrorKind::Source, "no source has answered yet")))
    }

    /// The next change; waits for the next round when none is queued.
    /// (The same as the stream's next item, for callers without a
    /// `StreamExt`.)
    pub async fn next_change(&mut self) -> Result<Change<NodeId, NodeAddr>, Error> {
        loop {
            if let Some(change) = poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await {
                return change;
            }
        }
    }

    /// The merged nodes after the last completed round, in id order
    /// (including changes the stream has not yielded yet).
    pub fn nodes(&self) -> Vec<NodeAddr> {
        self.current.values().cloned().collect()
    }

    /// The counters so far.
    pub fn metrics(&self) -> WatcherMetrics {
        self.metrics.get()
    }

    /// A handle that reads the counters after the watcher has been moved
    /// (into a balancer, say).
    pub fn metrics_handle(&self) -> MetricsHandle {
        self.metrics.clone()
    }

    /// Each source's error in the last round, by source name (sources that
    /// succeeded are not listed).
    pub fn last_errors(&self) -> Vec<(String, Error)> {
        self.sources
            .iter()
            .zip(&self.errors)
            .filter_map(|(source, error)| {
                error
                    .as_ref()
                    .map(|error| (source.name().to_owned(), error.clone()))
            })
            .collect()
    }

    /// A [`Discover`](tower::discover::Discover) of services: each inserted
    /// node's address goes through `make` (a connection, a tower stack...),
    /// keyed by its [`NodeId`].
    pub fn map_services<F, S>(self, make: F) -> MapServices<F>
    where
        F: FnMut(&NodeId, &NodeAddr) -> S,
    {
        MapServices {
            watcher: self,
            make,
        }
    }

    /// Drives the rounds until one completes.
    fn poll_round(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.state {
                State::Start => self.begin_round(),
                State::Waiting(sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.begin_round();
                }
                State::Polling(round, started) => {
                    let round = round.get_mut().unwrap_or_else(PoisonError::into_inner);
                    let Poll::Ready(results) = round.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    let next = *started + self.interval;
                    self.finish_round(results);
                    self.state = State::Waiting(Box::pin(tokio::time::sleep_until(next)));
                    return Poll::Ready(());
                }
            }
        }
    }

    fn begin_round(&mut self) {
        let timeout = self.source_timeout;
        let polls: Vec<PollFuture> = self
            .sources
            .iter()
            .map(|source| {
                let source = Arc::clone(source);
                Box::pin(async move {
                    match tokio::time::timeout(timeout, source.nodes()).await {
                        Ok(result) => result,
                        Err(_) => Err(Error::new(
                            ErrorKind::Timeout,
                            format!("source {} did not answer within {timeout:?}", source.name()),
                        )),
                    }
                }) as PollFuture
            })
            .collect();
        self.state = State::Polling(Mutex::new(Box::pin(join_all(polls))), Instant::now());
    }

    fn finish_round(&mut self, results: Vec<SourceResult>) {
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(nodes) => {
                    if self.errors[i].take().is_some() {
                        tracing::info!(
                            source = self.sources[i].name(),
                            nodes = nodes.len(),
                            "discovery source answers again"
                        );
                    }
                    self.snapshots[i] = Some(nodes);
                }
                Err(error) => {
                    self.metrics
                        .inner
                        .source_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        source = self.sources[i].name(),
                        error = %error,
                        kept = self.snapshots[i].as_ref().map_or(0, Vec::len),
                        "discovery source failed; keeping its last good snapshot"
                    );
                    self.errors[i] = Some(error);
                }
            }
        }

        let mut merged = BTreeMap::new();
        for node in self.snapshots.iter().flatten().flatten() {
            merged.entry(node.id()).or_insert_with(|| node.clone());
        }

        let (mut inserts, mut replaced, mut removes) = (Vec::new(), Vec::new(), Vec::new());
        for (id, addr) in &merged {
            match self.current.get(id) {
                None => inserts.push(Change::Insert(id.clone(), addr.clone())),
                Some(old) if old != addr => {
                    replaced.push(Change::Remove(id.clone()));
                    replaced.push(Change::Insert(id.clone(), addr.clone()));
                }
                Some(_) => {}
            }
        }
        for id in self.current.keys() {
            if !merged.contains_key(id) {
                removes.push(Change::Remove(id.clone()));
            }
        }
        let metrics = &self.metrics.inner;
        for change in inserts.iter().chain(&replaced).chain(&removes) {
            match change {
                Change::Insert(id, addr) => {
                    metrics.inserts.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(node = %id, addr = %addr, "discovered node");
                }
                Change::Remove(id) => {
                    metrics.removes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(node = %id, "node removed by discovery");
                }
            }
        }
        self.queue.extend(inserts);
        self.queue.extend(replaced);
        self.queue.extend(removes);
        self.current = merged;
        metrics.rounds.fetch_add(1, Ordering::Relaxed);
        metrics
            .nodes
            .store(self.current.len() as u64, Ordering::Relaxed);
    }
}

impl Stream for Watcher {
    type Item = Result<Change<NodeId, NodeAddr>, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(change) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            if this.poll_round(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("sources", &source_names(&self.sources))
            .field("interval", &self.interval)
            .field("source_timeout", &self.source_timeout)
            .field("nodes", &self.current.len())
            .field("queued", &self.queue.len())
            .field("metrics", &self.metrics.get())
            .finish()
    }
}

fn source_names(sources: &[Arc<dyn NodeSource>]) -> Vec<&str> {
    sources.iter().map(|source| source.name()).collect()
}

/// Polls every future to completion, concurrently, in one task.
async fn join_all(mut polls: Vec<PollFuture>) -> Vec<SourceResult> {
    let mut results: Vec<Option<SourceResult>> = polls.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut done = true;
        for (poll, result) in polls.iter_mut().zip(results.iter_mut()) {
            if result.is_none() {
                match poll.as_mut().poll(cx) {
                    Poll::Ready(value) => *result = Some(value),
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    results.into_iter().flatten().collect()
}

/// The watcher's counters, as read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatcherMetrics {
    /// Rounds completed (each polls every source once).
    pub rounds: u64,
    /// Source polls that failed or timed out (their last snapshot was kept).
    pub source_errors: u64,
    /// `Insert` changes produced.
    pub inserts: u64,
    /// `Remove` changes produced.
    pub removes: u64,
    /// Nodes in the merged set after the last round.
    pub nodes: u64,
}

/// A shared, cheap-to-clone reader of a [`Watcher`]'s counters.
#[derive(Debug, Clone, Default)]
pub struct MetricsHandle {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    rounds: AtomicU64,
    source_errors: AtomicU64,
    inserts: AtomicU64,
    removes: AtomicU64,
    nodes: AtomicU64,
}

impl MetricsHandle {
    /// The counters now.
    pub fn get(&self) -> WatcherMetrics {
        let c = &self.inner;
        WatcherMetrics {
            rounds: c.rounds.load(Ordering::Relaxed),
            source_errors: c.source_errors.load(Ordering::Relaxed),
            inserts: c.inserts.load(Ordering::Relaxed),
            removes: c.removes.load(Ordering::Relaxed),
            nodes: c.nodes.load(Ordering::Relaxed),
        }
    }
}

/// A [`Watcher`] whose inserted addresses are turned into services: a
/// [`Stream`] of `Result<Change<NodeId, S>, Error>`, and so a
/// [`tower::discover::Discover`]. Made by [`Watcher::map_services`].
pub struct MapServices<F> {
    watcher: Watcher,
    make: F,
}

impl<F> MapServices<F> {
    /// The watcher inside, for its metrics and nodes.
    pub fn watcher(&self) -> &Watcher {
        &self.watcher
    }
}

impl<F> fmt::Debug for MapServices<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapServices")
            .field("watcher", &self.watcher)
            .finish_non_exhaustive()
    }
}

impl<F, S> Stream for MapServices<F>
where
    F: FnMut(&NodeId, &NodeAddr) -> S + Unpin,
{
    type Item = Result<Change<NodeId, S>, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = match Pin::new(&mut this.watcher).poll_next(cx) {
            Poll::Ready(item) => item,
            Poll::Pending => return Poll::Pending,
        };
        Poll::Ready(item.map(|change| {
            change.map(|change| match change {
                Change::Insert(id, addr) => {
                    let service = (this.make)(&id, &addr);
                    Change::Insert(id, service)
                }
                Change::Remove(id) => Change::Remove(id),
            })
        }))
    }
}
