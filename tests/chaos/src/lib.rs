//! memha's chaos and consistency suite.
//!
//! [`run`] starts 3 to 5 real memcached nodes, each behind a
//! [`memha_tests::FaultProxy`], and a memha client over the
//! proxies with the default replication settings (writes acknowledged by
//! every writable node, reads from ceil(n/2) nodes, returning nodes
//! invalidated). Then, for the run's duration:
//! - 64 session tasks create, read, update, touch and delete their own keys
//!   (with lifetimes from 2 s to none) and now and then a few shared keys,
//!   recording every call's start, end and result on a monotonic clock;
//! - a seeded fault schedule kills (`SIGKILL`), pauses (`SIGSTOP`/`SIGCONT`)
//!   and restarts nodes empty, and makes their proxies reset connections,
//!   delay traffic or blackhole it while the process runs on. One node, the
//!   anchor, is never faulted; every other node may be faulty at once (see
//!   the `faults` module for why).
//!
//! After the load, every fault is healed, the client must see every node Up,
//! every key is read once through the client, and then every node is asked
//! directly for every key. The [`checker`] reads the whole history: no
//! acknowledged write lost, no deleted key read back, no stale read, every
//! replica converged, no call over its budget, no unexpected error, no panic.
//!
//! `cargo xtask chaos --seconds N --seed S` runs it; a short fixed-seed run
//! is part of the tests.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod checker;
pub mod converge;
mod faults;
pub mod history;
mod report;
mod rng;
mod workload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memha_client::{Client, HealthConfig, ReplicationConfig};
use memha_tests::{FaultProxy, MemcachedCluster};
use tokio::sync::oneshot;

pub use checker::{Findings, Kind, Violation};
pub use report::Report;
pub use rng::Rng;
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
    /// Keys every task writes and reads.
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
        }
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
        .with_up_interval(Duration::from_millis(200))
        .with_backoff(Duration::from_millis(20), 1.5, Duration::from_millis(300))
        // Flapping nodes held down on the suite's compressed time scale.
        .with_flap_hold(Duration::from_millis(100), Duration::from_secs(2))
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
    let cluster = Arc::new(
        MemcachedCluster::start(config.nodes).map_err(|e| format!("starting memcached: {e}"))?,
    );
    let proxies: Vec<Arc<FaultProxy>> = cluster
        .addrs()
        .into_iter()
        .map(|addr| FaultProxy::start(addr).map(Arc::new))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("starting the proxies: {e}"))?;
    let proxy_addrs: Vec<SocketAddr> = proxies.iter().map(|p| p.addr()).collect();
    let client = Client::builder()
        .nodes(proxy_addrs.iter().copied())
        .timeout(config.node_timeout)
        .connect_timeout(config.node_timeout)
        .health(health_config())
        .replication(ReplicationConfig::default())
        .build()
        .await
        .map_err(|e| format!("building the client: {e}"))?;
    let replicate = client.cluster().expect("a cluster client").clone();
    replicate
        .health()
        .wait_for_nodes(config.nodes, Duration::from_secs(10))
        .await
        .map_err(|e| format!("the nodes did not come Up: {e}"))?;

    let clock = Clock::start();
    let anchor = config.anchor();
    let (stop_health, health_task) = record_health(&client, proxy_addrs.clone(), clock);

    let plan = FaultPlan {
        anchor,
        start_after: Duration::from_millis(500),
        heal_by: config.duration.saturating_sub(Duration::from_secs(1)),
        length_ms: config.fault_ms,
        gap_ms: config.fault_gap_ms,
    };
    let fault_thread = {
        let (cluster, proxies) = (cluster.clone(), proxies.clone());
        let rng = Rng::new(config.seed, u64::MAX);
        tokio::task::spawn_blocking(move || faults::inject(&cluster, &proxies, &plan, rng, clock))
    };

    let shared: Arc<Vec<String>> = Arc::new((0..config.shared_keys).map(shared_key).collect());
    let sessions: Vec<_> = (0..config.tasks)
        .map(|task| {
            let session = Session {
                task,
                keys: (0..config.keys_per_task)
                    .map(|i| owned_key(task, i))
                    .collect(),
                shared: shared.clone(),
                rng: Rng::new(config.seed, task as u64),
                clock,
                stop_at: config.duration,
                think_ms: config.think_ms,
            };
            tokio::spawn(session.run(client.clone()))
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

    // Heal everything, and wait until the client sees every node Up again.
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
    if let Err(error) = replicate
        .health()
        .wait_for_nodes(config.nodes, Duration::from_secs(30))
        .await
    {
        let states: Vec<String> = replicate
            .stats()
            .nodes
            .iter()
            .map(|n| format!("{} {}", n.addr, n.state.as_str()))
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

    // Every key read once through the client, then every node asked
    // directly; then every key read from every node (a client asking all of
    // them), and every node asked again.
    let mut keys: Vec<(usize, String)> = (0..config.tasks)
        .flat_map(|task| (0..config.keys_per_task).map(move |i| (task, owned_key(task, i))))
        .collect();
    // Shared keys are read by task 0.
    keys.extend(shared.iter().map(|key| (0, key.clone())));
    for (task, key) in &keys {
        records
            .push(workload::call(&client, *task, key.clone(), Op::Get, clock, Phase::Verify).await);
    }
    let copies_after_one_read = fetch_copies(&cluster, &keys).await?;
    let full_reader = Client::builder()
        .nodes(proxy_addrs.iter().copied())
        .timeout(config.node_timeout)
        .health(health_config())
        .replication(ReplicationConfig::default().read_nodes(config.nodes))
        .build()
        .await
        .map_err(|e| format!("building the verification client: {e}"))?;
    for (task, key) in &keys {
        records.push(
            workload::call(
                &full_reader,
                *task,
                key.clone(),
                Op::Get,
                clock,
                Phase::Verify,
            )
            .await,
        );
    }
    let copies_after_full_read = fetch_copies(&cluster, &keys).await?;
    let _ = stop_health.send(());
    let health = health_task.await.unwrap_or_default();
    let stats = replicate.stats();

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
    });
    violations.append(&mut findings.violations);
    findings.violations = violations;
    drop(client);
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

/// What every node holds for every key, asked directly.
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
fn record_health(
    client: &Client,
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
