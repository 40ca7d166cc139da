//! memha's chaos and consistency suite.
//!
//! [`run`] starts 3 to 5 real memcached nodes, each behind a
//! [`memha_tests::FaultProxy`], and a memha client over the
//! proxies with the default replication settings (writes acknowledged by
//! a majority of the writable nodes with the others recorded as missing
//! them, reads from ceil(n/2) nodes, returning nodes invalidated). Then, for the run's duration:
//! - 64 session tasks create, read, update, touch and delete their own keys
//!   (with lifetimes from 2 s to none) and now and then a few shared keys,
//!   recording every call's start, end and result on a monotonic clock;
//! - a seeded fault schedule kills (`SIGKILL`), pauses (`SIGSTOP`/`SIGCONT`)
//!   and restarts nodes empty, and makes their proxies reset connections,
//!   delay traffic or blackhole it while the process runs on. One node, the
//!   anchor, is never faulted; every other node may be faulty at once (see
//!   the `faults` module for why).
//!
//! With [`ChaosConfig::clients`] M > 1, M clients share the cluster in one
//! process, each reaching every node through its own proxy (and knowing the
//! nodes by the same names, [`node_name`]), so a network fault may cut off
//! one client from a node while the others still reach it; the tasks are
//! spread over the clients, and the shared keys become sessions that any
//! client creates, reads, updates, touches and deletes. With
//! [`ChaosConfig::single_fault`], at most one node is faulty at a time.
//!
//! After the load, every fault is healed, every client must see every node
//! Up, every key is read once through the (first) client, and then every
//! node is asked directly for every key; with several clients every other
//! client then reads every key too. The [`checker`] reads the whole history: no
//! acknowledged write lost, no deleted key read back, no stale read, every
//! replica converged, no call over its budget, no unexpected error, no panic.
//!
//! `cargo xtask chaos --seconds N --seed S [--clients M] [--single-fault]`
//! runs it; short fixed-seed runs (one client, and four with one fault at
//! a time) are part of the tests.

pub mod checker;
pub mod converge;
mod faults;
pub mod history;
mod report;
mod workload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memha_client::health::Transitions;
use memha_client::{
    Client, ClientBuilder, HealthConfig, Replicate, ReplicationConfig, ReplicationMetrics,
};
use memha_tests::{FaultProxy, MemcachedCluster};
use tokio::sync::oneshot;

pub use checker::{Findings, Kind, Violation};
pub use memha_tests::Rng;
pub use report::Report;
pub use workload::{owned_key, shared_key};

use checker::CheckInput;
use faults::FaultPlan;
use history::{Clock, HealthRecord, Op, Phase};
use workload::Session;

/// How a chaos run goes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChaosConfig {
    /// Seeds every random choice: the workload's and the fault schedule's.
    pub seed: u64,
    /// How long the workload runs under faults.
    pub duration: Duration,
    /// How many memcached nodes (3 to 5).
    pub nodes: usize,
    /// How many session tasks.
    pub tasks: usize,
    /// Keys each task owns.
    pub keys_per_task: usize,
    /// Keys every task writes and reads (with several clients: sessions
    /// every client uses).
    pub shared_keys: usize,
    /// The client's per-node timeout.
    pub node_timeout: Duration,
    /// What a call may take beyond the per-node timeouts its code path may
    /// spend one after the other ([`checker::timeouts`]): scheduling on a
    /// loaded machine.
    pub budget_slack: Duration,
    /// Pause between two calls of a task, in milliseconds.
    pub think_ms: (u64, u64),
    /// Shortest and longest fault, in milliseconds.
    pub fault_ms: (u64, u64),
    /// Shortest and longest pause between two fault decisions, in milliseconds.
    pub fault_gap_ms: (u64, u64),
    /// How many violations are printed in full.
    pub show_violations: usize,
    /// How many memha clients share the cluster, each reaching every node
    /// through its own proxy (1: the single-client run). With several, the
    /// tasks are spread over them and the shared keys are sessions every
    /// client creates, reads, updates and deletes.
    pub clients: usize,
    /// At most one faulty node at a time (besides the anchor, never
    /// faulted): a node is faulty while it is killed, paused or restarting
    /// (until every client sees every node Up again), or while any client's
    /// proxy to it is faulted. Without it, up to n-1 nodes may be.
    pub single_fault: bool,
}

impl ChaosConfig {
    /// The defaults for `seed` and `duration`: 3 + seed % 3 nodes, 64 tasks
    /// of 8 keys, 4 shared keys, a 250 ms per-node timeout.
    pub fn new(seed: u64, duration: Duration) -> ChaosConfig {
        ChaosConfig {
            seed,
            duration,
            nodes: 3 + (seed % 3) as usize,
            tasks: 64,
            keys_per_task: 8,
            shared_keys: 4,
            node_timeout: Duration::from_millis(250),
            budget_slack: Duration::from_millis(250),
            think_ms: (2, 20),
            fault_ms: (200, 2500),
            fault_gap_ms: (100, 700),
            show_violations: 20,
            clients: 1,
            single_fault: false,
        }
    }

    /// Sets the number of clients (at least 1). Several clients share
    /// 16 session keys (unless set otherwise after).
    pub fn clients(mut self, clients: usize) -> ChaosConfig {
        self.clients = clients.max(1);
        if self.clients > 1 {
            self.shared_keys = 16;
        }
        self
    }

    /// Limits the schedule to one faulty node at a time.
    pub fn single_fault(mut self, single: bool) -> ChaosConfig {
        self.single_fault = single;
        self
    }

    /// Sets the number of nodes (clamped to 3..=5).
    pub fn nodes(mut self, nodes: usize) -> ChaosConfig {
        self.nodes = nodes.clamp(3, 5);
        self
    }

    /// The node never faulted.
    pub fn anchor(&self) -> usize {
        (self.seed % self.nodes as u64) as usize
    }
}

fn health_config() -> HealthConfig {
    HealthConfig::default()
        .up_interval(Duration::from_millis(200))
        .backoff(Duration::from_millis(20), 1.5, Duration::from_millis(300))
        // Flapping nodes held down on the suite's compressed time scale.
        .flap_hold(Duration::from_millis(100), Duration::from_secs(2))
}

/// Runs the suite once.
///
/// Every panic in the process during the run is a violation: a panic hook
/// counts them (and passes them on to the hook in place before), so run
/// one suite at a time in a process.
///
/// # Errors
///
/// When the cluster, a proxy or the client cannot be set up: a broken
/// promise is not an error but a [`Violation`] in the report.
pub async fn run(config: ChaosConfig) -> Result<Report, String> {
    // Every panic in the process, a background task of the client
    // included (whose panic no caller would see), is recorded, then passed
    // to the hook that was there before.
    let previous = Arc::new(std::panic::take_hook());
    let panics = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (sink, chained) = (panics.clone(), previous.clone());
        std::panic::set_hook(Box::new(move |info| {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(info.to_string());
            chained(info);
        }));
    }
    let result = run_counting(config).await;
    std::panic::set_hook(Box::new(move |info| previous(info)));
    let panics = panics.lock().unwrap_or_else(|e| e.into_inner()).clone();
    result.map(|mut report| {
        for panic in panics {
            report.findings.violations.push(Violation {
                kind: Kind::Panic,
                key: None,
                detail: format!("a thread panicked: {panic}"),
                history: Vec::new(),
            });
        }
        report
    })
}

async fn run_counting(config: ChaosConfig) -> Result<Report, String> {
    let started = Instant::now();
    let clients_n = config.clients.max(1);
    let multi = clients_n > 1;
    let cluster = Arc::new(
        MemcachedCluster::start(config.nodes).map_err(|e| format!("starting memcached: {e}"))?,
    );
    // `proxies[node][client]`: every client reaches every node through a
    // proxy of its own, so a network fault may cut off one client only.
    let proxies: Vec<Vec<Arc<FaultProxy>>> = cluster
        .addrs()
        .into_iter()
        .map(|addr| {
            (0..clients_n)
                .map(|_| FaultProxy::start(addr).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()
        .map_err(|e| format!("starting the proxies: {e}"))?;
    // `proxy_addrs[client][node]`.
    let proxy_addrs: Vec<Vec<SocketAddr>> = (0..clients_n)
        .map(|client| proxies.iter().map(|p| p[client].addr()).collect())
        .collect();
    let mut clients = Vec::with_capacity(clients_n);
    for addrs in &proxy_addrs {
        let client = builder(addrs, multi)
            .timeout(config.node_timeout)
            .connect_timeout(config.node_timeout)
            .health(health_config())
            .replication(ReplicationConfig::default())
            .build()
            .await
            .map_err(|e| format!("building the client: {e}"))?;
        clients.push(client);
    }
    let replicates: Vec<Replicate> = clients
        .iter()
        .map(|client| client.cluster().expect("a cluster client").clone())
        .collect();
    all_up(&replicates, config.nodes, Duration::from_secs(10))
        .await
        .map_err(|e| format!("the nodes did not come Up: {e}"))?;

    let clock = Clock::start();
    let anchor = config.anchor();
    let recorders: Vec<_> = clients
        .iter()
        .zip(&proxy_addrs)
        .enumerate()
        .map(|(index, (client, addrs))| {
            record_health(client, multi.then_some(index), addrs.clone(), clock)
        })
        .collect();

    let plan = FaultPlan {
        anchor,
        start_after: Duration::from_millis(500),
        heal_by: config.duration.saturating_sub(Duration::from_secs(1)),
        length_ms: config.fault_ms,
        gap_ms: config.fault_gap_ms,
        clients: clients_n,
        single: config.single_fault,
        settle_within: Duration::from_secs(5),
    };
    let view = ClientsView {
        runtime: tokio::runtime::Handle::current(),
        replicates: replicates.clone(),
        addrs: proxy_addrs.clone(),
        nodes: config.nodes,
    };
    let fault_thread = {
        let (cluster, proxies) = (cluster.clone(), proxies.clone());
        let rng = Rng::new(config.seed, u64::MAX);
        tokio::task::spawn_blocking(move || {
            faults::inject(&cluster, &proxies, &plan, rng, clock, &view)
        })
    };

    let shared: Arc<Vec<String>> = Arc::new((0..config.shared_keys).map(shared_key).collect());
    let sessions: Vec<_> = (0..config.tasks)
        .map(|task| {
            // Tasks are spread over the clients.
            let client = task % clients_n;
            let session = Session {
                task,
                client: multi.then_some(client),
                keys: (0..config.keys_per_task)
                    .map(|i| owned_key(task, i))
                    .collect(),
                shared: shared.clone(),
                sessions: multi,
                rng: Rng::new(config.seed, task as u64),
                clock,
                stop_at: config.duration,
                think_ms: config.think_ms,
            };
            tokio::spawn(session.run(clients[client].clone()))
        })
        .collect();

    // A task that panicked is a violation through the panic hook; here it
    // is only a history missing.
    let mut records = Vec::new();
    let mut violations = Vec::new();
    let mut harness_errors = Vec::new();
    for (task, session) in sessions.into_iter().enumerate() {
        match session.await {
            Ok(history) => records.extend(history),
            Err(error) => harness_errors.push(format!("session task {task} died: {error}")),
        }
    }
    let load_ops = records.len();
    let load_time = clock.now();
    let faults = fault_thread.await.unwrap_or_else(|error| {
        harness_errors.push(format!("the fault schedule died: {error}"));
        Vec::new()
    });

    // Heal everything, and wait until every client sees every node Up again.
    harness_errors.extend(faults.iter().filter_map(|f| f.error.clone()));
    {
        let (cluster, proxies) = (cluster.clone(), proxies.clone());
        harness_errors.extend(
            tokio::task::spawn_blocking(move || faults::heal_all(&cluster, &proxies))
                .await
                .unwrap_or_else(|e| vec![format!("healing panicked: {e}")]),
        );
    }
    let healed_at = clock.now();
    if let Err(error) = all_up(&replicates, config.nodes, Duration::from_secs(30)).await {
        let states: Vec<String> = replicates
            .iter()
            .enumerate()
            .flat_map(|(client, replicate)| {
                replicate.metrics().nodes.into_iter().map(move |n| {
                    if multi {
                        format!("client {client}: {} {}", n.addr, n.state.as_str())
                    } else {
                        format!("{} {}", n.addr, n.state.as_str())
                    }
                })
            })
            .collect();
        violations.push(Violation {
            kind: Kind::NotHealed,
            key: None,
            detail: format!("{error}: {}", states.join(", ")),
            history: Vec::new(),
        });
    }
    let all_up_after = clock.now().saturating_sub(healed_at);
    // Let background repairs and rejoins settle.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Every key read once through the first client, then every node asked
    // directly; then (with several clients) every key read through every
    // other client; then every key read from every node (a client asking
    // all of them), and every node asked again.
    let mut keys: Vec<(usize, String)> = (0..config.tasks)
        .flat_map(|task| (0..config.keys_per_task).map(move |i| (task, owned_key(task, i))))
        .collect();
    // Shared keys are read by task 0.
    keys.extend(shared.iter().map(|key| (0, key.clone())));
    let verifier = |client: usize| multi.then_some(client);
    read_every_key(&clients[0], verifier(0), &keys, clock, &mut records).await;
    // A read that left copies for its recheck converges them that much
    // later: the node timeout and 60 ms, beside a tombstone (docs/consistency.md).
    tokio::time::sleep(config.node_timeout + Duration::from_millis(200)).await;
    let copies_after_one_read = fetch_copies(&cluster, &keys).await?;
    for (index, client) in clients.iter().enumerate().skip(1) {
        read_every_key(client, verifier(index), &keys, clock, &mut records).await;
    }
    let full_reader = builder(&proxy_addrs[0], multi)
        .timeout(config.node_timeout)
        .health(health_config())
        .replication(ReplicationConfig::default().read_nodes(config.nodes))
        .build()
        .await
        .map_err(|e| format!("building the verification client: {e}"))?;
    read_every_key(&full_reader, verifier(0), &keys, clock, &mut records).await;
    let copies_after_full_read = fetch_copies(&cluster, &keys).await?;
    let mut health = Vec::new();
    for (stop, task) in recorders {
        let _ = stop.send(());
        health.extend(task.await.unwrap_or_default());
    }
    health.sort_by_key(|h| h.at);
    let stats: Vec<ReplicationMetrics> = replicates.iter().map(Replicate::metrics).collect();

    let mut findings = checker::check(&CheckInput {
        records: &records,
        faults: &faults,
        health: &health,
        copies_after_one_read: &copies_after_one_read,
        copies_after_full_read: &copies_after_full_read,
        late_apply: Duration::from_millis(config.fault_ms.1) + config.node_timeout,
        anchor,
        node_timeout: config.node_timeout,
        budget_slack: config.budget_slack,
        shared: &shared,
        sessions: multi,
    });
    violations.append(&mut findings.violations);
    findings.violations = violations;
    drop(clients);
    drop(proxies);
    Ok(Report {
        anchor,
        load_ops,
        load_time,
        all_up_after,
        total_time: started.elapsed(),
        records,
        faults,
        health,
        stats,
        findings,
        harness_errors,
        config,
    })
}

/// A client builder over `addrs` (one per node). With several clients each
/// node is named the same for all of them (`node<i>:11211`) while each
/// dials its own proxy, so that they all rank the nodes alike; one client
/// knows its nodes by address, as before.
fn builder(addrs: &[SocketAddr], named: bool) -> ClientBuilder {
    let mut builder = Client::builder();
    for (node, &addr) in addrs.iter().enumerate() {
        builder = if named {
            builder.named_node(node_name(node), addr)
        } else {
            builder.node(addr)
        };
    }
    builder
}

/// The name every client knows node `node` by, with several clients.
pub fn node_name(node: usize) -> String {
    format!("node{node}:11211")
}

/// What the fault schedule (a synchronous thread) may ask of the clients.
pub(crate) struct ClientsView {
    runtime: tokio::runtime::Handle,
    replicates: Vec<Replicate>,
    /// `addrs[client][node]`: the address `client` dials for `node`.
    addrs: Vec<Vec<SocketAddr>>,
    nodes: usize,
}

impl ClientsView {
    /// Every client's health changes from now on.
    pub(crate) fn watch(&self) -> Vec<Transitions> {
        self.replicates
            .iter()
            .map(|replicate| replicate.health().transitions())
            .collect()
    }

    /// Blocks until every client has seen `node` change state (if
    /// `watched`, since [`watch`](Self::watch)) and then sees every node
    /// Up; false when `within` ran out first.
    pub(crate) fn settle(
        &self,
        node: usize,
        watched: Option<Vec<Transitions>>,
        within: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        self.runtime.block_on(async {
            for (client, mut transitions) in watched.into_iter().flatten().enumerate() {
                let addr = self.addrs[client][node];
                let seen = async {
                    while let Some(transition) = transitions.recv().await {
                        if transition.node == addr {
                            return;
                        }
                    }
                };
                if tokio::time::timeout_at(deadline, seen).await.is_err() {
                    return false;
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            all_up(&self.replicates, self.nodes, left).await.is_ok()
        })
    }
}

/// Waits until every client sees `nodes` nodes Up, all within `within`.
async fn all_up(
    replicates: &[Replicate],
    nodes: usize,
    within: Duration,
) -> Result<(), memha_client::Error> {
    let deadline = tokio::time::Instant::now() + within;
    for replicate in replicates {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        replicate.health().wait_for_nodes(nodes, left).await?;
    }
    Ok(())
}

/// What every node holds for every key, asked directly.
/// The verification reads: every key once through `client`, recorded.
async fn read_every_key(
    client: &Client,
    verifier: Option<usize>,
    keys: &[(usize, String)],
    clock: Clock,
    records: &mut Vec<history::Record>,
) {
    for (task, key) in keys {
        records.push(
            workload::call(
                client,
                (*task, verifier),
                key.clone(),
                Op::Get,
                clock,
                Phase::Verify,
            )
            .await,
        );
    }
}

async fn fetch_copies(
    cluster: &Arc<MemcachedCluster>,
    keys: &[(usize, String)],
) -> Result<Vec<converge::KeyCopies>, String> {
    let addrs = cluster.addrs();
    let keys: Vec<String> = keys.iter().map(|(_, key)| key.clone()).collect();
    tokio::task::spawn_blocking(move || converge::fetch(&addrs, &keys))
        .await
        .map_err(|e| format!("reading the nodes directly: {e}"))
}

/// Records every health change the client sees until told to stop.
/// `nodes` are the addresses the client dials, in node order.
fn record_health(
    client: &Client,
    index: Option<usize>,
    nodes: Vec<SocketAddr>,
    clock: Clock,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Vec<HealthRecord>>,
) {
    let mut transitions = client
        .cluster()
        .expect("a cluster client")
        .health()
        .transitions();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        let record = |transition: memha_client::health::Transition| HealthRecord {
            at: clock.now(),
            client: index,
            node: nodes
                .iter()
                .position(|&addr| addr == transition.node)
                .unwrap_or(usize::MAX),
            addr: transition.node,
            transition,
        };
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                transition = transitions.recv() => match transition {
                    Some(transition) => seen.push(record(transition)),
                    None => break,
                },
            }
        }
        while let Some(transition) = transitions.try_recv() {
            seen.push(record(transition));
        }
        seen
    });
    (stop, task)
}
