//! What one faulty node costs the callers: latency and errors of a mixed
//! workload before, during and after each fault, per client configuration.
//!
//! Three real memcached nodes run on loopback, each behind a
//! [`FaultProxy`] that the client connects through, so a network fault
//! (a blackhole) can be injected on one node's path while the process runs
//! on. One memha [`Client`] over the three proxies serves 64 tasks doing
//! 84% `get`, 10% `set`, 2% `delete`, 2% `touch` and 2% `add` over 10,000
//! preloaded keys with 100-byte values. Each fault hits node 0, in turn:
//!
//! - `kill`: `SIGKILL`; healed by starting it again (empty) on its port;
//! - `pause`: `SIGSTOP`; healed by `SIGCONT`;
//! - `blackhole`: its proxy forwards nothing (what was sent is held and
//!   delivered on heal, like TCP retransmissions after a partition);
//! - `restart-empty`: killed and started again empty at once; no heal.
//!
//! Each fault has three phases of `--phase-secs` (default 3 s): *before*
//! (all nodes Up), *during* (from the injection until the heal is done, so
//! it is longer by the time healing takes; for `restart-empty`, the time
//! after the restart), and *after* (from the heal on). Between faults the
//! workload runs on unmeasured until every node is Up again.
//!
//! A call counts in the phase it started in, except that a call in flight
//! at any moment of a *during* phase counts there: a call the fault caught
//! mid-flight, or one still held up by it when it was healed, pays for the
//! fault, not for the calm around it. Its latency counts whether it
//! succeeded or failed (a caller waits for an error too). Errors are
//! grouped by [`ErrorKind`], shown with its `Debug`. The workload is a
//! closed loop: a stalled call holds up its task, so a stall shows as fewer
//! operations and a high maximum, not as a flood of slow calls.
//!
//! Configurations (`--config default|all|both`, default both), each on
//! fresh servers:
//!
//! - `default`: the library's defaults;
//! - `all`: [`AckPolicy::All`], a 1 s per-node timeout, no hedged reads
//!   and no stall detection: the behaviour before this round's defaults,
//!   where a write waits for every writable node and a read for every
//!   node it asked.
//!
//! Run it with `cargo xtask bench --faults [ARGS]`, or
//! `cargo bench -p memha-benches --bench faults -- [ARGS]`; ARGS:
//! `--fault kill|pause|blackhole|restart-empty|all` (default all),
//! `--phase-secs N`, `--config default|all|both`.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use memha_client::health::{HealthTable, Transition};
use memha_client::{AckPolicy, Client, ClientBuilder, Error, ReplicationConfig, Ttl};
use memha_tests::{raw_roundtrip, FaultProxy, HarnessError, MemcachedCluster, ProxyMode, Rng};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const NODES: usize = 3;
/// The node every fault hits: always the same, so runs compare.
const FAULTY_NODE: usize = 0;
const KEYS: usize = 10_000;
const VALUE_LEN: usize = 100;
const TASKS: usize = 64;
/// The lifetime `touch` gives a key: far longer than a run, so no key
/// expires while it is measured.
const TOUCH_TTL: u32 = 3600;
/// The per-node timeout of the `all` configuration.
const OLD_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest wait for every node to be Up: at the start, and after each
/// heal (a returning node is probed with backoff, then made safe).
const UP_WITHIN: Duration = Duration::from_secs(30);
/// The longest wait for the tasks to finish their last call once stopped:
/// every call is bounded by the client's timeout, far below this.
const DRAIN_WITHIN: Duration = Duration::from_secs(30);
/// How long a stopped runtime may take to end what is left (the client's
/// background tasks).
const SHUTDOWN_WITHIN: Duration = Duration::from_secs(5);
/// The value of `current phase` while nothing is measured.
const UNMEASURED: usize = usize::MAX;

const USAGE: &str = "usage: faults [--fault kill|pause|blackhole|restart-empty|all] \
                     [--phase-secs N] [--config default|all|both]";

fn main() -> ExitCode {
    let settings = match Settings::from_args(env::args().skip(1)) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("faults: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{NODES} memcached nodes on loopback, each behind a fault proxy; every fault hits node \
         {FAULTY_NODE}"
    );
    println!(
        "{TASKS} tasks: {} over {KEYS} keys, {VALUE_LEN}-byte values; phases of {:.1} s",
        Op::mix(),
        settings.phase.as_secs_f64()
    );
    println!(
        "a call counts in the phase it started in, or in `during` if in flight then; \
         latencies include failed calls; ops = calls done, errors by ErrorKind"
    );
    for config in &settings.configs {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("faults: could not start a runtime: {err}");
                return ExitCode::FAILURE;
            }
        };
        let result = runtime.block_on(run(*config, &settings));
        // A fresh runtime per configuration: nothing the previous client
        // left running in the background (repairs, probes) can weigh on the next.
        runtime.shutdown_timeout(SHUTDOWN_WITHIN);
        match result {
            Ok(report) => report.print(&settings),
            Err(message) => {
                eprintln!("faults: config {}: {message}", config.name());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// The command line.
#[derive(Debug, Clone)]
struct Settings {
    faults: Vec<Fault>,
    phase: Duration,
    configs: Vec<Config>,
}

impl Settings {
    fn from_args(mut args: impl Iterator<Item = String>) -> Result<Settings, String> {
        let mut settings = Settings {
            faults: Fault::ALL.to_vec(),
            phase: Duration::from_secs(3),
            configs: Config::ALL.to_vec(),
        };
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--fault" => {
                    let value = value()?;
                    settings.faults = match value.as_str() {
                        "all" => Fault::ALL.to_vec(),
                        name => vec![Fault::ALL
                            .into_iter()
                            .find(|fault| fault.name() == name)
                            .ok_or_else(|| format!("unknown fault {name}"))?],
                    };
                }
                "--phase-secs" => {
                    let value = value()?;
                    let secs: f64 = value
                        .parse()
                        .ok()
                        .filter(|secs: &f64| secs.is_finite() && *secs > 0.0)
                        .ok_or_else(|| {
                            format!("--phase-secs wants a positive number, not {value}")
                        })?;
                    settings.phase = Duration::from_secs_f64(secs);
                }
                "--config" => {
                    let value = value()?;
                    settings.configs = match value.as_str() {
                        "both" => Config::ALL.to_vec(),
                        name => vec![Config::ALL
                            .into_iter()
                            .find(|config| config.name() == name)
                            .ok_or_else(|| format!("unknown config {name}"))?],
                    };
                }
                // What cargo bench passes to every bench binary.
                "--bench" => {}
                // Not an error: `cargo bench -p memha-benches -- FILTER`
                // passes the filter meant for other benches here too.
                other => eprintln!("faults: ignoring argument {other}"),
            }
        }
        Ok(settings)
    }

    /// Every measured phase, in order: each fault's before, during, after.
    fn phases(&self) -> Vec<(Fault, Stage)> {
        self.faults
            .iter()
            .flat_map(|fault| Stage::ALL.map(|stage| (*fault, stage)))
            .collect()
    }
}

/// A client configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Config {
    Default,
    All,
}

impl Config {
    const ALL: [Config; 2] = [Config::Default, Config::All];

    fn name(self) -> &'static str {
        match self {
            Config::Default => "default",
            Config::All => "all",
        }
    }

    fn describe(self) -> String {
        match self {
            Config::Default => format!(
                "the library's defaults (ack {:?})",
                ReplicationConfig::default().ack
            ),
            Config::All => {
                "ack All, no hedging or stall detection: the behaviour before".to_owned()
            }
        }
    }

    fn builder(self) -> ClientBuilder {
        match self {
            Config::Default => Client::builder(),
            Config::All => Client::builder().timeout(OLD_TIMEOUT).replication(
                ReplicationConfig::default()
                    .ack(AckPolicy::All)
                    .hedge_after(Duration::ZERO)
                    .stall_after(Duration::ZERO),
            ),
        }
    }
}

/// A fault injected on the faulty node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Pause,
    Blackhole,
    RestartEmpty,
}

impl Fault {
    const ALL: [Fault; 4] = [
        Fault::Kill,
        Fault::Pause,
        Fault::Blackhole,
        Fault::RestartEmpty,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Blackhole => "blackhole",
            Fault::RestartEmpty => "restart-empty",
        }
    }

    /// Injects the fault; returns once it is in effect (the harness waits
    /// for the kernel to report a kill or a pause, and for a restarted
    /// server to answer).
    fn inject(self, cluster: &MemcachedCluster, proxy: &FaultProxy) -> Result<(), HarnessError> {
        let node = cluster.node(FAULTY_NODE);
        match self {
            Fault::Kill => node.kill(),
            Fault::Pause => node.pause(),
            Fault::Blackhole => {
                proxy.set_mode(ProxyMode::Blackhole);
                Ok(())
            }
            Fault::RestartEmpty => node.restart(),
        }
    }

    /// Whether the fault lasts until healed: all but an empty restart,
    /// which is over once the node answers again.
    fn has_heal(self) -> bool {
        self != Fault::RestartEmpty
    }

    /// Ends the fault; returns once the node can answer again.
    fn heal(self, cluster: &MemcachedCluster, proxy: &FaultProxy) -> Result<(), HarnessError> {
        let node = cluster.node(FAULTY_NODE);
        match self {
            Fault::Kill => node.restart(),
            Fault::Pause => node.resume(),
            Fault::Blackhole => {
                proxy.set_mode(ProxyMode::Pass);
                Ok(())
            }
            Fault::RestartEmpty => Ok(()),
        }
    }
}

/// The three measured phases of a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Before,
    During,
    After,
}

impl Stage {
    const ALL: [Stage; 3] = [Stage::Before, Stage::During, Stage::After];

    fn name(self) -> &'static str {
        match self {
            Stage::Before => "before",
            Stage::During => "during",
            Stage::After => "after",
        }
    }
}

/// One operation of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Set,
    Delete,
    Touch,
    Add,
}

impl Op {
    const ALL: [Op; 5] = [Op::Get, Op::Set, Op::Delete, Op::Touch, Op::Add];

    /// Each operation's share of the workload, in percent (they add up to 100).
    fn percent(self) -> u64 {
        match self {
            Op::Get => 84,
            Op::Set => 10,
            Op::Delete | Op::Touch | Op::Add => 2,
        }
    }

    /// The operation of a uniform draw in `0..100`.
    fn pick(draw: u64) -> Op {
        let mut bound = 0;
        for op in Op::ALL {
            bound += op.percent();
            if draw < bound {
                return op;
            }
        }
        Op::Get
    }

    /// "84% get, 10% set, ...".
    fn mix() -> String {
        Op::ALL
            .map(|op| format!("{}% {}", op.percent(), op.name()))
            .join(", ")
    }

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Delete => "delete",
            Op::Touch => "touch",
            Op::Add => "add",
        }
    }

    /// Runs the operation; only its failure matters here (a miss, or an
    /// `add` refused because the key exists, is a success).
    async fn run(self, client: &Client, key: &str, value: &Bytes) -> Result<(), Error> {
        match self {
            Op::Get => client.get(key).await.map(drop),
            Op::Set => client.set(key, value.clone()).await.map(drop),
            Op::Delete => client.delete(key).await.map(drop),
            Op::Touch => client.touch(key, Ttl::seconds(TOUCH_TTL)).await.map(drop),
            Op::Add => client.add(key, value.clone()).await.map(drop),
        }
    }
}

/// What the calls of one operation in one phase took.
#[derive(Debug, Default)]
struct Cell {
    latencies: Vec<Duration>,
    /// By the `Debug` of the error's kind.
    errors: BTreeMap<String, u64>,
}

impl Cell {
    fn merge(&mut self, other: Cell) {
        self.latencies.extend(other.latencies);
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
    }
}

/// Every call measured, per phase and operation: each task keeps its own
/// (no shared lock on the hot path), merged at the end.
#[derive(Debug)]
struct Recording {
    /// `cells[phase * Op::ALL.len() + op]`.
    cells: Vec<Cell>,
}

impl Recording {
    fn new(phases: usize) -> Recording {
        Recording {
            cells: (0..phases * Op::ALL.len())
                .map(|_| Cell::default())
                .collect(),
        }
    }

    fn cell(&self, phase: usize, op: Op) -> &Cell {
        &self.cells[phase * Op::ALL.len() + op.index()]
    }

    fn record(&mut self, phase: usize, op: Op, latency: Duration, result: Result<(), Error>) {
        let cell = &mut self.cells[phase * Op::ALL.len() + op.index()];
        cell.latencies.push(latency);
        if let Err(err) = result {
            *cell.errors.entry(format!("{:?}", err.kind())).or_default() += 1;
        }
    }

    fn merge(&mut self, other: Recording) {
        for (mine, theirs) in self.cells.iter_mut().zip(other.cells) {
            mine.merge(theirs);
        }
    }
}

/// What the workload tasks share: which phase is measured now, and when to stop.
#[derive(Debug)]
struct Control {
    phase: AtomicUsize,
    stop: AtomicBool,
}

/// One task of the workload: calls back to back until stopped, each
/// recorded in the phase [`attribute`] gives it.
async fn worker(
    client: Client,
    keys: Arc<Vec<String>>,
    control: Arc<Control>,
    phases: usize,
    seed: u64,
) -> Recording {
    let mut recording = Recording::new(phases);
    let mut rng = Rng::new(seed, 0);
    let value = Bytes::from(vec![b'v'; VALUE_LEN]);
    while !control.stop.load(Ordering::Relaxed) {
        let key = &keys[rng.index(KEYS)];
        let op = Op::pick(rng.next_u64() % 100);
        let started_in = control.phase.load(Ordering::Relaxed);
        let started = Instant::now();
        let result = op.run(&client, key, &value).await;
        let latency = started.elapsed();
        let ended_in = control.phase.load(Ordering::Relaxed);
        if let Some(phase) = attribute(started_in, ended_in) {
            recording.record(phase, op, latency, result);
        }
    }
    recording
}

/// The phase a call counts in, from the phases current when it started and
/// when it ended: a *during* phase it overlapped, else the one it started
/// in; `None` for a call started between faults. Phases are numbered in the
/// order they run, so the call overlapped every phase from the first to
/// the second.
fn attribute(started_in: usize, ended_in: usize) -> Option<usize> {
    if started_in == UNMEASURED {
        return None;
    }
    let last = if ended_in == UNMEASURED {
        started_in
    } else {
        ended_in
    };
    (started_in..=last)
        .find(|phase| phase % Stage::ALL.len() == Stage::During as usize)
        .or(Some(started_in))
}

/// Writes every key once, from `TASKS` tasks, so every node holds them all
/// before the first phase.
async fn preload(client: &Client, keys: &Arc<Vec<String>>) -> Result<(), String> {
    let value = Bytes::from(vec![b'v'; VALUE_LEN]);
    let tasks: Vec<JoinHandle<Result<(), Error>>> = (0..TASKS)
        .map(|task| {
            let (client, keys, value) = (client.clone(), Arc::clone(keys), value.clone());
            tokio::spawn(async move {
                for key in keys.iter().skip(task).step_by(TASKS) {
                    client.set(key, value.clone()).await?;
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|err| format!("a preload task failed: {err}"))?
            .map_err(|err| format!("preloading: {err}"))?;
    }
    Ok(())
}

/// The faulty node's health changes, timestamped as the client reports them.
type HealthLog = Arc<Mutex<Vec<(Instant, Transition)>>>;

/// What happened to one fault, besides the calls.
#[derive(Debug)]
struct FaultRun {
    fault: Fault,
    injected_at: Instant,
    /// When the heal was done, from the injection, and how long it took
    /// (`None` for `restart-empty`, which has no heal).
    healed: Option<(Duration, Duration)>,
    /// The faulty node's health changes, from the injection until the next
    /// fault's, with their time from the injection.
    transitions: Vec<(Duration, Transition)>,
    /// When the client had every node Up again, from the injection; `None`
    /// if not within [`UP_WITHIN`] of the heal.
    all_up: Option<Duration>,
}

/// One configuration's results.
#[derive(Debug)]
struct Report {
    config: Config,
    /// The servers' version, if they told it.
    version: Option<String>,
    timeout: Duration,
    recording: Recording,
    faults: Vec<FaultRun>,
}

/// Runs every fault under `config`, on fresh servers and a fresh client.
async fn run(config: Config, settings: &Settings) -> Result<Report, String> {
    let cluster =
        MemcachedCluster::start(NODES).map_err(|err| format!("starting memcached: {err}"))?;
    let version = tokio::task::block_in_place(|| memcached_version(cluster.node(0).addr()));
    let proxies: Vec<FaultProxy> = cluster
        .addrs()
        .into_iter()
        .map(FaultProxy::start)
        .collect::<Result<_, _>>()
        .map_err(|err| format!("starting the proxies: {err}"))?;
    let client = config
        .builder()
        .nodes(proxies.iter().map(FaultProxy::addr))
        .build()
        .await
        .map_err(|err| format!("building the client: {err}"))?;
    let health = client
        .cluster()
        .ok_or("the client does not replicate")?
        .health()
        .clone();
    health
        .wait_for_nodes(NODES, UP_WITHIN)
        .await
        .map_err(|err| format!("waiting for the nodes: {err}"))?;
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("faults:{i:05}")).collect());
    preload(&client, &keys).await?;

    // The faulty node's health changes, to show when the client noticed
    // the fault and the node's return.
    let faulty_addr = proxies[FAULTY_NODE].addr();
    let log: HealthLog = Arc::default();
    let logger = {
        let mut transitions = health.transitions();
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            while let Some(transition) = transitions.recv().await {
                if transition.node == faulty_addr {
                    lock(&log).push((Instant::now(), transition));
                }
            }
        })
    };

    let phases = settings.phases();
    let control = Arc::new(Control {
        phase: AtomicUsize::new(UNMEASURED),
        stop: AtomicBool::new(false),
    });
    let workers: Vec<JoinHandle<Recording>> = (0..TASKS)
        .map(|task| {
            tokio::spawn(worker(
                client.clone(),
                Arc::clone(&keys),
                Arc::clone(&control),
                phases.len(),
                task as u64 + 1,
            ))
        })
        .collect();

    let stand = Stand {
        cluster: &cluster,
        proxy: &proxies[FAULTY_NODE],
        health: &health,
        control: &control,
        phase_len: settings.phase,
    };
    let mut faults = Vec::with_capacity(settings.faults.len());
    let mut result = Ok(());
    for (index, fault) in settings.faults.iter().enumerate() {
        match stand.run_fault(*fault, index * Stage::ALL.len()).await {
            Ok(run) => faults.push(run),
            Err(err) => {
                result = Err(format!("{}: {err}", fault.name()));
                break;
            }
        }
    }
    control.phase.store(UNMEASURED, Ordering::Relaxed);
    control.stop.store(true, Ordering::Relaxed);

    let mut recording = Recording::new(phases.len());
    let drained_by = Instant::now() + DRAIN_WITHIN;
    for task in workers {
        match tokio::time::timeout_at(drained_by, task).await {
            Ok(Ok(part)) => recording.merge(part),
            Ok(Err(err)) => return Err(format!("a workload task failed: {err}")),
            Err(_) => return Err(format!("the workload did not stop within {DRAIN_WITHIN:?}")),
        }
    }
    logger.abort();
    result?;

    // Each fault's share of the log: from its injection to the next one's.
    let log = std::mem::take(&mut *lock(&log));
    let ends: Vec<Option<Instant>> = faults
        .iter()
        .skip(1)
        .map(|run| Some(run.injected_at))
        .chain([None])
        .collect();
    for (run, end) in faults.iter_mut().zip(ends) {
        run.transitions = log
            .iter()
            .filter(|(at, _)| *at >= run.injected_at && end.map_or(true, |end| *at < end))
            .map(|(at, transition)| (*at - run.injected_at, *transition))
            .collect();
    }
    Ok(Report {
        config,
        version,
        timeout: client.timeout(),
        recording,
        faults,
    })
}

/// What injecting a fault and measuring its phases needs.
struct Stand<'a> {
    cluster: &'a MemcachedCluster,
    /// The faulty node's proxy.
    proxy: &'a FaultProxy,
    health: &'a HealthTable,
    control: &'a Control,
    phase_len: Duration,
}

impl Stand<'_> {
    /// One fault's three phases, measured as `first_phase` and the two
    /// after it. The *during* phase starts just before the injection (the
    /// fault may take effect at any point of the harness call) and ends
    /// once the heal is done; *after* starts there. Returns once every node
    /// is Up again (at most [`UP_WITHIN`] after the heal), so the next
    /// fault starts from a healthy cluster.
    async fn run_fault(&self, fault: Fault, first_phase: usize) -> Result<FaultRun, HarnessError> {
        let enter = |stage: Stage| {
            self.control
                .phase
                .store(first_phase + stage as usize, Ordering::Relaxed);
        };
        enter(Stage::Before);
        tokio::time::sleep(self.phase_len).await;

        enter(Stage::During);
        let injected_at = Instant::now();
        // The harness is synchronous: the runtime moves the workload off
        // this thread while it blocks.
        tokio::task::block_in_place(|| fault.inject(self.cluster, self.proxy))?;
        tokio::time::sleep_until(injected_at + self.phase_len).await;
        let heal_started = Instant::now();
        let healed = fault.has_heal();
        if healed {
            tokio::task::block_in_place(|| fault.heal(self.cluster, self.proxy))?;
        }
        let healed_at = Instant::now();

        enter(Stage::After);
        let after = async {
            tokio::time::sleep(self.phase_len).await;
            self.control.phase.store(UNMEASURED, Ordering::Relaxed);
        };
        // Awaited alongside the after phase, so it can be timed.
        let all_up = async {
            self.health
                .wait_for_nodes(NODES, UP_WITHIN)
                .await
                .ok()
                .map(|()| injected_at.elapsed())
        };
        let ((), all_up) = tokio::join!(after, all_up);
        Ok(FaultRun {
            fault,
            injected_at,
            healed: healed.then(|| (healed_at - injected_at, healed_at - heal_started)),
            transitions: Vec::new(),
            all_up,
        })
    }
}

impl Report {
    fn print(&self, settings: &Settings) {
        println!(
            "\n== config {}: {}; per-node timeout {}; memcached {} ==",
            self.config.name(),
            self.config.describe(),
            latency(self.timeout),
            self.version.as_deref().unwrap_or("(version unknown)")
        );
        println!(
            "{:<14} {:<7} {:<7} {:>8} {:>9} {:>9} {:>9} {:>9}  errors",
            "fault", "phase", "op", "ops", "p50", "p99", "p99.9", "max"
        );
        for (phase, (fault, stage)) in settings.phases().iter().enumerate() {
            if phase > 0 && *stage == Stage::Before {
                println!();
            }
            for op in Op::ALL {
                let cell = self.recording.cell(phase, op);
                let mut sorted = cell.latencies.clone();
                sorted.sort_unstable();
                let at = |p: f64| percentile(&sorted, p).map_or_else(|| "-".to_owned(), latency);
                println!(
                    "{:<14} {:<7} {:<7} {:>8} {:>9} {:>9} {:>9} {:>9}  {}",
                    fault.name(),
                    stage.name(),
                    op.name(),
                    sorted.len(),
                    at(0.50),
                    at(0.99),
                    at(0.999),
                    at(1.0),
                    errors(&cell.errors)
                );
            }
        }
        println!("\nnode {FAULTY_NODE} as the client saw it (times from the injection):");
        for run in &self.faults {
            let mut events: Vec<(Duration, String)> = run
                .transitions
                .iter()
                .map(|(at, t)| (*at, format!("{} -> {} ({})", t.from, t.to, t.cause)))
                .collect();
            if let Some((at, took)) = run.healed {
                events.push((at, format!("healed (took {})", latency(took))));
            }
            // Stable: a heal and a transition seen at the same instant keep
            // the order above.
            events.sort_by_key(|(at, _)| *at);
            let mut line = format!("  {:<14}", run.fault.name());
            for (at, event) in events {
                let _ = write!(line, " +{:.2}s {event};", at.as_secs_f64());
            }
            if run.transitions.is_empty() {
                line.push_str(" no state change;");
            }
            match run.all_up {
                Some(at) => {
                    let _ = write!(line, " all Up at +{:.2}s", at.as_secs_f64());
                }
                None => {
                    let _ = write!(line, " NOT all Up within {UP_WITHIN:?} of the heal");
                }
            }
            println!("{line}");
        }
    }
}

/// The `p` quantile (nearest rank) of `sorted`, `None` when empty.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// "850us", "12.3ms", "1.002s".
fn latency(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 1e-3 {
        format!("{:.0}us", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.1}ms", secs * 1e3)
    } else {
        format!("{secs:.3}s")
    }
}

/// "Timeout x12, NodeDown x3", or "-".
fn errors(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "-".to_owned();
    }
    let mut by_count: Vec<(&String, &u64)> = errors.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    by_count
        .iter()
        .map(|(kind, count)| format!("{kind} x{count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The version of the server at `addr`, for the report (blocks briefly).
fn memcached_version(addr: SocketAddr) -> Option<String> {
    let reply = raw_roundtrip(addr, b"version\r\n", b"\r\n", Duration::from_secs(2)).ok()?;
    let reply = String::from_utf8(reply).ok()?;
    Some(reply.strip_prefix("VERSION ")?.trim().to_owned())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
