//! A session store that survives node failures: the demo behind
//! `cargo xtask demo`.
//!
//! Starts 3 local memcached nodes, and 16 tasks that create, read, update,
//! refresh and delete sessions (`session:<id>`, a small JSON value, TTL
//! 1800 s) through one replicating [`Client`]. While they run, node 1 is
//! killed and node 2 restarts empty. Each task remembers, per session, what
//! the client last acknowledged, and checks every read against it:
//!
//! - **lost**: a read returned nothing for a session whose write was
//!   acknowledged;
//! - **resurrected**: a read returned a value for a deleted session;
//! - **stale**: a read returned a value other than the acknowledged one.
//!
//! A write that fails is not acknowledged: until the next acknowledged write,
//! both the old and the attempted value are accepted. Failed operations are
//! counted (they are expected only around the faults). At the end every
//! session is read once more, and the summary line is printed:
//!
//! ```text
//! sessions: written W, read back R, lost 0, resurrected 0, stale 0, repaired P, failed F
//! ```
//!
//! The exit status is non-zero if anything was lost, resurrected or stale.
//!
//! Run it with `cargo xtask demo` (which makes sure memcached is installed),
//! or `cargo run --release -p memha-client --example session_demo`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use memha_client::health::Transition;
use memha_client::{
    Client, Error, ErrorKind, HealthConfig, NodeState, ReplicationConfig, StoreOutcome, Ttl,
};
use memha_tests::{MemcachedCluster, Rng};

/// Concurrent users of the session store.
const TASKS: usize = 16;
/// Every session's lifetime: far longer than the demo, so none expires.
const SESSION_TTL: u32 = 1800;
/// The client's per-request timeout.
const TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between two operations of one task, so 16 tasks and 3 servers
/// share 2 cores without starving the health checks.
const PACE: Duration = Duration::from_millis(2);
/// Workload before node 1 is killed.
const BEFORE_KILL: Duration = Duration::from_millis(1500);
/// Workload between the kill and the restart of node 2.
const BEFORE_RESTART: Duration = Duration::from_millis(2000);
/// Workload once node 2 is back Up.
const AFTER_REJOIN: Duration = Duration::from_millis(2000);
/// How long node 2 may take to be Up again.
const REJOIN_DEADLINE: Duration = Duration::from_secs(10);
/// How many violations are described one by one.
const SHOWN_VIOLATIONS: usize = 10;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("session_demo: {message}");
            ExitCode::from(2)
        }
    }
}

/// The demo; `Ok(false)` when a read broke a promise.
async fn run() -> Result<bool, String> {
    let clock = Clock(Instant::now());
    clock.say("starting 3 memcached nodes");
    let cluster = MemcachedCluster::start(3).map_err(|err| err.to_string())?;
    let addrs = cluster.addrs();
    for (index, addr) in addrs.iter().enumerate() {
        clock.say(&format!("  node {index}: {addr}"));
    }

    let client = Client::builder()
        .nodes(addrs.iter().copied())
        .timeout(TIMEOUT)
        .health(
            HealthConfig::default()
                .up_interval(Duration::from_millis(200))
                .backoff(Duration::from_millis(20), 1.5, Duration::from_millis(300)),
        )
        .replication(ReplicationConfig::default())
        .build()
        .await
        .map_err(|err| format!("building the client: {err}"))?;
    let cluster_view = client.cluster().ok_or("the client is not replicating")?;
    cluster_view
        .health()
        .wait_for_nodes(addrs.len(), Duration::from_secs(10))
        .await
        .map_err(|err| format!("waiting for the nodes: {err}"))?;
    clock.say(&format!("nodes: {}", node_states(&client, &addrs)));

    // Every state change, as it happens.
    let printer = {
        let mut transitions = cluster_view.health().transitions();
        let addrs = addrs.clone();
        tokio::spawn(async move {
            while let Some(transition) = transitions.recv().await {
                clock.say(&format!("  {}", describe(&transition, &addrs)));
            }
        })
    };

    clock.say(&format!(
        "{TASKS} tasks create, read, update and delete sessions (TTL {SESSION_TTL} s)"
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..TASKS)
        .map(|id| {
            let worker = Worker::new(id, client.clone(), clock);
            tokio::spawn(worker.run(Arc::clone(&stop)))
        })
        .collect();

    tokio::time::sleep(BEFORE_KILL).await;
    clock.say("killing node 1");
    tokio::task::block_in_place(|| cluster.node(1).kill()).map_err(|err| err.to_string())?;
    tokio::time::sleep(BEFORE_RESTART).await;

    clock.say("restarting node 2 empty");
    let restarted = addrs[2];
    let mut transitions = cluster_view.health().transitions();
    let restart_began = Instant::now();
    tokio::task::block_in_place(|| cluster.node(2).restart()).map_err(|err| err.to_string())?;
    let back = tokio::time::timeout(REJOIN_DEADLINE, async {
        while let Some(transition) = transitions.recv().await {
            if transition.node == restarted && transition.to == NodeState::Up {
                return true;
            }
        }
        false
    })
    .await;
    // Let the transitions be printed first.
    tokio::time::sleep(Duration::from_millis(20)).await;
    if back == Ok(true) {
        clock.say(&format!(
            "node 2 is back up, {:.2}s after its restart (nodes: {})",
            restart_began.elapsed().as_secs_f64(),
            node_states(&client, &addrs)
        ));
    } else {
        clock.say(&format!(
            "node 2 is still not up after {REJOIN_DEADLINE:?} (nodes: {})",
            node_states(&client, &addrs)
        ));
    }
    tokio::time::sleep(AFTER_REJOIN).await;

    clock.say("stopping the workload; reading every session once more");
    stop.store(true, Ordering::SeqCst);
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker
            .await
            .map_err(|err| format!("a workload task failed: {err}"))?;
        total.merge(tally);
    }
    printer.abort();

    let stats = cluster_view.metrics();
    clock.say(&format!("nodes: {}", node_states(&client, &addrs)));
    println!(
        "operations: created {}, updated {}, refreshed {}, deleted {}, reads {} \
         ({} hits, {} misses of deleted sessions)",
        total.created,
        total.updated,
        total.touched,
        total.deleted,
        total.reads,
        total.read_back,
        total.confirmed_deleted
    );
    println!(
        "final check: {} live sessions, {} deleted sessions",
        total.live, total.dead
    );
    println!(
        "replication: repairs {}, divergences {}, miss failovers {}, partial writes {}",
        stats.repairs, stats.divergences, stats.miss_failovers, stats.partial_writes
    );
    if !total.failures.is_empty() {
        println!("failed operations: {}", total.describe_failures());
    }
    for violation in total.violations.iter().take(SHOWN_VIOLATIONS) {
        println!("VIOLATION {violation}");
    }
    if total.violations.len() > SHOWN_VIOLATIONS {
        println!(
            "... and {} more violations",
            total.violations.len() - SHOWN_VIOLATIONS
        );
    }
    let written = total.created + total.updated;
    println!(
        "sessions: written {written}, read back {}, lost {}, resurrected {}, stale {}, \
         repaired {}, failed {}",
        total.read_back,
        total.lost,
        total.resurrected,
        total.stale,
        stats.repairs,
        total.failures.len()
    );
    Ok(total.lost == 0 && total.resurrected == 0 && total.stale == 0)
}

/// Seconds since the demo started, in front of each line.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }

    fn say(self, line: &str) {
        println!("[{:5.2}s] {line}", self.now());
    }
}

/// "node 0 up, node 1 down, node 2 up".
fn node_states(client: &Client, addrs: &[SocketAddr]) -> String {
    let Some(cluster) = client.cluster() else {
        return String::new();
    };
    let states: BTreeMap<SocketAddr, NodeState> = cluster
        .metrics()
        .nodes
        .iter()
        .map(|node| (node.addr, node.state))
        .collect();
    addrs
        .iter()
        .enumerate()
        .map(|(index, addr)| match states.get(addr) {
            Some(state) => format!("node {index} {state}"),
            None => format!("node {index} unknown"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "node 1: up -> down (connection failed)".
fn describe(transition: &Transition, addrs: &[SocketAddr]) -> String {
    let node = match addrs.iter().position(|addr| *addr == transition.node) {
        Some(index) => format!("node {index}"),
        None => format!("node {}", transition.node),
    };
    format!(
        "{node}: {} -> {} ({})",
        transition.from, transition.to, transition.cause
    )
}

/// A UUID-shaped identifier.
fn uuid(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// One session and what the client said about it.
#[derive(Debug)]
struct Session {
    key: String,
    user: u64,
    /// How many values it has had.
    version: u32,
    /// The last acknowledged state: `None` once deleted (or before its
    /// creation was acknowledged).
    acked: Option<Bytes>,
    /// States from writes that failed since the last acknowledged one: they
    /// may or may not have been applied, so reads may see them too.
    unsure: Vec<Option<Bytes>>,
    /// Deleted (or being deleted): never written again.
    deleted: bool,
}

impl Session {
    /// What a read that returned `got` means.
    fn judge(&self, got: &Option<Bytes>) -> Verdict {
        if *got == self.acked || self.unsure.contains(got) {
            return Verdict::Fine;
        }
        match got {
            None => Verdict::Lost,
            Some(_) if self.acked.is_none() && self.unsure.iter().all(Option::is_none) => {
                Verdict::Resurrected
            }
            Some(_) => Verdict::Stale,
        }
    }

    /// The session's next value, as a web application would store it.
    fn next_value(&mut self) -> Bytes {
        self.version += 1;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        Bytes::from(format!(
            r#"{{"user":"u{}","cart":{},"version":{},"updated_ms":{now_ms}}}"#,
            self.user,
            self.version % 7,
            self.version
        ))
    }

    fn acknowledged(&mut self, state: Option<Bytes>) {
        self.acked = state;
        self.unsure.clear();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Fine,
    Lost,
    Resurrected,
    Stale,
}

/// An operation that failed with an error.
#[derive(Debug, Clone)]
struct Failure {
    at: f64,
    op: &'static str,
    kind: &'static str,
}

/// What one task did and saw.
#[derive(Debug, Default)]
struct Tally {
    created: u64,
    updated: u64,
    touched: u64,
    deleted: u64,
    reads: u64,
    /// Reads that returned the acknowledged value of a live session.
    read_back: u64,
    /// Reads of deleted sessions that rightly found nothing.
    confirmed_deleted: u64,
    lost: u64,
    resurrected: u64,
    stale: u64,
    /// Sessions alive / deleted at the final check.
    live: u64,
    dead: u64,
    failures: Vec<Failure>,
    violations: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.created += other.created;
        self.updated += other.updated;
        self.touched += other.touched;
        self.deleted += other.deleted;
        self.reads += other.reads;
        self.read_back += other.read_back;
        self.confirmed_deleted += other.confirmed_deleted;
        self.lost += other.lost;
        self.resurrected += other.resurrected;
        self.stale += other.stale;
        self.live += other.live;
        self.dead += other.dead;
        self.failures.extend(other.failures);
        self.violations.extend(other.violations);
    }

    /// "7 between 1.52s and 3.61s: set 4 partial write, get 3 timeout".
    fn describe_failures(&self) -> String {
        let first = self.failures.iter().map(|f| f.at).fold(f64::MAX, f64::min);
        let last = self.failures.iter().map(|f| f.at).fold(0.0, f64::max);
        let mut kinds: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for failure in &self.failures {
            *kinds.entry((failure.op, failure.kind)).or_default() += 1;
        }
        let mut line = format!(
            "{} between {first:.2}s and {last:.2}s:",
            self.failures.len()
        );
        for (index, ((op, kind), count)) in kinds.iter().enumerate() {
            let sep = if index == 0 { "" } else { "," };
            let _ = write!(line, "{sep} {op} {count} {kind}");
        }
        line
    }
}

fn kind_name(error: &Error) -> &'static str {
    match error.kind() {
        ErrorKind::Timeout => "timeout",
        ErrorKind::Connect => "connect",
        ErrorKind::Connection => "connection",
        ErrorKind::NoNodes => "no nodes",
        ErrorKind::NodeDown => "node down",
        ErrorKind::PartialWrite => "partial write",
        ErrorKind::Closed => "closed",
        ErrorKind::Protocol => "protocol",
        ErrorKind::Server => "server error",
        _ => "other",
    }
}

/// One user of the session store, with its own sessions.
struct Worker {
    client: Client,
    clock: Clock,
    rng: Rng,
    sessions: Vec<Session>,
    /// Indexes of the sessions not deleted.
    live: Vec<usize>,
    tally: Tally,
}

impl Worker {
    fn new(id: usize, client: Client, clock: Clock) -> Self {
        Worker {
            client,
            clock,
            rng: Rng::new(Rng::seed_from_time(), id as u64),
            sessions: Vec::new(),
            live: Vec::new(),
            tally: Tally::default(),
        }
    }

    async fn run(mut self, stop: Arc<AtomicBool>) -> Tally {
        while !stop.load(Ordering::SeqCst) {
            let roll = self.rng.index(100);
            if self.live.is_empty() || roll < 20 {
                let index = self.create().await;
                self.read(index).await;
            } else if roll < 55 {
                let index = self.pick_live();
                self.read(index).await;
            } else if roll < 62 {
                // Deleted sessions too: they must stay gone.
                let index = self.rng.index(self.sessions.len());
                self.read(index).await;
            } else if roll < 82 {
                let index = self.pick_live();
                self.update(index).await;
            } else if roll < 90 {
                let index = self.pick_live();
                self.touch(index).await;
            } else {
                let index = self.pick_live();
                self.delete(index).await;
                self.read(index).await;
            }
            tokio::time::sleep(PACE).await;
        }
        // The final check: every session once more.
        for index in 0..self.sessions.len() {
            if self.sessions[index].deleted {
                self.tally.dead += 1;
            } else {
                self.tally.live += 1;
            }
            self.read(index).await;
        }
        self.tally
    }

    fn pick_live(&mut self) -> usize {
        self.live[self.rng.index(self.live.len())]
    }

    async fn create(&mut self) -> usize {
        let user = self.rng.below(100_000);
        let key = format!("session:{}", uuid(&mut self.rng));
        let mut session = Session {
            key,
            user,
            version: 0,
            acked: None,
            unsure: Vec::new(),
            deleted: false,
        };
        let value = session.next_value();
        let index = self.sessions.len();
        self.live.push(index);
        self.sessions.push(session);
        if self.store(index, value).await {
            self.tally.created += 1;
        }
        index
    }

    async fn update(&mut self, index: usize) {
        let value = self.sessions[index].next_value();
        if self.store(index, value).await {
            self.tally.updated += 1;
        }
    }

    /// Sets the session to `value`; whether it was acknowledged.
    async fn store(&mut self, index: usize, value: Bytes) -> bool {
        let result = self
            .client
            .set(self.sessions[index].key.as_str(), value.clone())
            .ttl(Ttl::seconds(SESSION_TTL))
            .await;
        let session = &mut self.sessions[index];
        match result {
            Ok(StoreOutcome::Stored) => {
                session.acknowledged(Some(value));
                true
            }
            Ok(_) => {
                // A plain set is always stored: anything else is a failure.
                session.unsure.push(Some(value));
                self.fail("set", "not stored");
                false
            }
            Err(error) => {
                session.unsure.push(Some(value));
                self.failed("set", &error);
                false
            }
        }
    }

    async fn touch(&mut self, index: usize) {
        let result = self
            .client
            .touch(self.sessions[index].key.as_str(), Ttl::seconds(SESSION_TTL))
            .await;
        match result {
            Ok(_) => self.tally.touched += 1,
            Err(error) => self.failed("touch", &error),
        }
    }

    async fn delete(&mut self, index: usize) {
        self.live.retain(|&live| live != index);
        let result = self.client.delete(self.sessions[index].key.as_str()).await;
        let session = &mut self.sessions[index];
        session.deleted = true;
        match result {
            Ok(_) => {
                session.acknowledged(None);
                self.tally.deleted += 1;
            }
            Err(error) => {
                session.unsure.push(None);
                self.failed("delete", &error);
            }
        }
    }

    async fn read(&mut self, index: usize) {
        let result = self.client.get(self.sessions[index].key.as_str()).await;
        let got = match result {
            Ok(item) => item.map(|item| item.value),
            Err(error) => {
                self.failed("get", &error);
                return;
            }
        };
        self.tally.reads += 1;
        let session = &self.sessions[index];
        let verdict = session.judge(&got);
        match verdict {
            Verdict::Fine if got.is_some() => self.tally.read_back += 1,
            Verdict::Fine => {
                if session.deleted {
                    self.tally.confirmed_deleted += 1;
                }
            }
            Verdict::Lost => self.tally.lost += 1,
            Verdict::Resurrected => self.tally.resurrected += 1,
            Verdict::Stale => self.tally.stale += 1,
        }
        if verdict != Verdict::Fine {
            let nodes = match self.client.cluster() {
                Some(cluster) => cluster
                    .metrics()
                    .nodes
                    .iter()
                    .map(|node| format!("{} {}", node.addr, node.state))
                    .collect::<Vec<_>>()
                    .join(", "),
                None => String::new(),
            };
            let violation = format!(
                "{verdict:?} at {:.2}s: get {} returned {:?}, acknowledged {:?} \
                 (unsure {:?}, deleted {}); nodes: {nodes}",
                self.clock.now(),
                session.key,
                got.as_deref().map(String::from_utf8_lossy),
                session.acked.as_deref().map(String::from_utf8_lossy),
                session.unsure.len(),
                session.deleted,
            );
            self.tally.violations.push(violation);
        }
    }

    fn failed(&mut self, op: &'static str, error: &Error) {
        self.fail(op, kind_name(error));
    }

    fn fail(&mut self, op: &'static str, kind: &'static str) {
        self.tally.failures.push(Failure {
            at: self.clock.now(),
            op,
            kind,
        });
    }
}
