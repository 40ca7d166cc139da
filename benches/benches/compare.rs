//! memha side by side with other Rust memcached clients, against real
//! memcached servers started here (three; the single-node clients use the
//! first), in one run:
//!
//! - (a) sequential `get` latency, p50 and p99, one caller, the clients
//!   taking turns in short rounds;
//! - (b) 64 tasks doing 90% `get` / 10% `set` over 10,000 keys with
//!   100-byte values: operations per second, median of several short runs,
//!   the clients taking turns so background load hits them alike.
//!
//! `memha-replicated` is memha over all three nodes with the default
//! replication (every set goes to the 3 nodes, every get asks 2), against
//! the single-node clients unreplicated.
//!
//! Run it with `cargo xtask bench`, or
//! `cargo bench -p memha-benches --bench compare -- [--duration SECS] [--runs N] [--gets N] [--peers LIST]`.
//!
//! `--peers` picks the clients, comma-separated: `memha`, `memha-replicated`,
//! `async-memcached`, `memcache` (the default), and the diagnostics `memha-connection` (the
//! bare [`memha_client::Connection`]), `memha-bare` (the client facade over
//! the bare connection) and `memha-layered` (the facade over the node
//! stack with one tower layer of the user's, which takes the boxed path),
//! which show what each part of the node stack costs.
//! Besides ops/s, each run reports this process's CPU time per operation:
//! the client's own cost, steadier than ops/s when other work shares the
//! cores.
//!
//! The peers: async-memcached 0.9 (one connection per task, as it is meant
//! to be used: a connection serves one request at a time) and memcache 0.21
//! (blocking, an r2d2 pool of 64 connections, one thread per caller). Both
//! speak the classic text protocol (`get`, `set`); memha speaks the meta
//! protocol over one pipelined connection.
#![allow(missing_docs)]

use std::env;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_memcached::AsciiProtocol;
use bytes::Bytes;
use memha_client::{Client, ConnectionMetrics, NodeService, NodeStackBuilder};
use memha_tests::{MemcachedCluster, Rng};
use tokio::runtime::Runtime;

const KEYS: usize = 10_000;
const VALUE_LEN: usize = 100;
const TASKS: usize = 64;
const WARMUP: Duration = Duration::from_millis(300);
/// The sequential gets of each client are measured in this many turns.
const LATENCY_ROUNDS: usize = 10;

#[derive(Debug, Clone)]
struct Settings {
    duration: Duration,
    runs: usize,
    gets: usize,
    peers: Vec<Peer>,
}

impl Settings {
    fn from_args() -> Settings {
        let mut settings = Settings {
            duration: Duration::from_secs(3),
            runs: 3,
            gets: 20_000,
            peers: Peer::ALL.to_vec(),
        };
        let mut args = env::args().skip(1);
        while let Some(arg) = args.next() {
            if arg == "--peers" {
                let names = args.next().unwrap_or_default();
                settings.peers = [Peer::MemhaBare, Peer::MemhaLayered, Peer::MemhaConnection]
                    .into_iter()
                    .chain(Peer::ALL)
                    .filter(|peer| names.split(',').any(|name| name == peer.id()))
                    .collect();
                continue;
            }
            let mut value = || {
                args.next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("{arg} needs a number"))
            };
            match arg.as_str() {
                "--duration" => settings.duration = Duration::from_secs_f64(value()),
                "--runs" => settings.runs = value() as usize,
                "--gets" => settings.gets = value() as usize,
                // Flags cargo bench passes to every bench binary.
                "--bench" | "--nocapture" => {}
                other => eprintln!("ignoring argument {other}"),
            }
        }
        settings
    }
}

fn keys() -> Arc<Vec<String>> {
    Arc::new((0..KEYS).map(|i| format!("bench:key:{i:05}")).collect())
}

fn value() -> Bytes {
    Bytes::from(vec![b'v'; VALUE_LEN])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Memha,
    /// memha over three nodes, replicating with the default settings.
    MemhaReplicated,
    /// memha's bare connection, without the node stack and the client: a diagnostic.
    MemhaConnection,
    /// memha's client over the bare connection (no timeout, no retry): a diagnostic.
    MemhaBare,
    /// memha's client over the node stack with a user layer: a diagnostic.
    MemhaLayered,
    /// The minimal pipelined meta client on one node: the yardstick.
    RawMux,
    /// The minimal replicating client: sets to all three nodes, gets from two.
    RawRepl,
    AsyncMemcached,
    Memcache,
}

impl Peer {
    const ALL: [Peer; 6] = [
        Peer::Memha,
        Peer::MemhaReplicated,
        Peer::RawMux,
        Peer::RawRepl,
        Peer::AsyncMemcached,
        Peer::Memcache,
    ];

    fn id(self) -> &'static str {
        match self {
            Peer::Memha => "memha",
            Peer::MemhaReplicated => "memha-replicated",
            Peer::MemhaConnection => "memha-connection",
            Peer::MemhaBare => "memha-bare",
            Peer::MemhaLayered => "memha-layered",
            Peer::RawMux => "raw-mux",
            Peer::RawRepl => "raw-repl3",
            Peer::AsyncMemcached => "async-memcached",
            Peer::Memcache => "memcache",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Peer::Memha => "memha (meta, 1 pipelined conn)",
            Peer::MemhaReplicated => "memha replicated (3 nodes, R=2)",
            Peer::MemhaConnection => "memha Connection alone",
            Peer::MemhaBare => "memha Client, bare Connection",
            Peer::MemhaLayered => "memha Client, stack + a layer",
            Peer::RawMux => "raw mux (minimal, 1 conn)",
            Peer::RawRepl => "raw repl3 (set 3, get 2)",
            Peer::AsyncMemcached => "async-memcached 0.9 (conn/task)",
            Peer::Memcache => "memcache 0.21 (sync, r2d2 pool)",
        }
    }
}

#[derive(Debug, Default)]
struct Results {
    p50: Duration,
    p99: Duration,
    throughput: Vec<f64>,
    /// This process's CPU time (user + system) per operation, per run: the
    /// client's own cost, less sensitive to background load than ops/s.
    cpu_per_op: Vec<Duration>,
}

impl Results {
    fn median_throughput(&self) -> f64 {
        let mut runs = self.throughput.clone();
        runs.sort_by(f64::total_cmp);
        runs.get(runs.len() / 2).copied().unwrap_or(0.0)
    }

    fn median_cpu_per_op(&self) -> Duration {
        let mut runs = self.cpu_per_op.clone();
        runs.sort();
        runs.get(runs.len() / 2).copied().unwrap_or_default()
    }
}

/// This process's CPU time so far (user + system), from /proc; zero where
/// there is no /proc.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces): utime and
    // stime are the 12th and 13th, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

// ---- memha ----

fn memha_node(addr: SocketAddr) -> NodeService {
    NodeStackBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(addr)
}

/// A client over part of the stack, to see what each part costs: the bare
/// connection, or the whole node stack with one (identity) tower layer of
/// the user's, whose attempts take the boxed path.
fn diagnostic_client(addr: SocketAddr, layered: bool) -> Client {
    use memha_client::{Connection, ConnectionConfig};
    let node = if layered {
        NodeStackBuilder::new()
            .timeout(Duration::from_secs(2))
            .layer(tower::layer::util::Identity::new())
            .build(addr)
    } else {
        NodeService::new(addr, Connection::new(addr, ConnectionConfig::default()))
    };
    Client::builder()
        .timeout(Duration::from_secs(2))
        .build_with_node(node)
}

fn memha_client(node: &NodeService) -> Client {
    Client::builder()
        .timeout(Duration::from_secs(2))
        .build_with_node(node.clone())
}

/// memha over every node, with the default replication: sets to all of
/// them, gets from ceil(n/2).
async fn memha_replicated(addrs: Vec<SocketAddr>) -> Client {
    Client::builder()
        .nodes(addrs)
        .timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("replicated client")
}

/// The replicated client's connection counters so far, all nodes together.
fn cluster_metrics(client: &Client) -> ConnectionMetrics {
    let mut total = ConnectionMetrics::default();
    let Some(cluster) = client.cluster() else {
        return total;
    };
    for node in cluster.metrics().nodes {
        if let Some(metrics) = cluster.node(node.addr).and_then(|n| n.connection_metrics()) {
            total.requests += metrics.requests;
            total.writes += metrics.writes;
            total.reads += metrics.reads;
        }
    }
    total
}

async fn memha_sequential(client: &Client, keys: &[String], gets: usize) -> Vec<Duration> {
    let mut rng = Rng::new(1, 0);
    let mut samples = Vec::with_capacity(gets);
    for i in 0..gets + gets / 10 {
        let key = &keys[rng.next_u64() as usize % KEYS];
        let started = Instant::now();
        let item = client.get(key).await.expect("get");
        let elapsed = started.elapsed();
        assert!(item.is_some(), "preloaded key missing");
        if i >= gets / 10 {
            samples.push(elapsed);
        }
    }
    samples
}

async fn memha_mixed(client: &Client, keys: Arc<Vec<String>>, stop: Arc<AtomicBool>) -> u64 {
    let driver = MemhaDriver {
        client: client.clone(),
        keys,
    };
    mixed(driver, stop).await
}

/// A client the mixed workload drives, its keys by index into the
/// preloaded set (each client in the form it takes them).
trait Driver: Clone + Send + Sync + 'static {
    fn get(&self, key: usize, turn: usize) -> impl std::future::Future<Output = ()> + Send + '_;
    fn set(&self, key: usize, value: Bytes) -> impl std::future::Future<Output = ()> + Send + '_;
}

#[derive(Clone)]
struct MemhaDriver {
    client: Client,
    keys: Arc<Vec<String>>,
}

impl Driver for MemhaDriver {
    async fn get(&self, key: usize, _turn: usize) {
        self.client.get(&self.keys[key]).await.expect("get");
    }

    async fn set(&self, key: usize, value: Bytes) {
        self.client.set(&self.keys[key], value).await.expect("set");
    }
}

/// The mixed workload: `TASKS` tasks, 90% get / 10% set over the `KEYS`
/// preloaded keys, until `stop`; the operations done.
async fn mixed(driver: impl Driver, stop: Arc<AtomicBool>) -> u64 {
    let ops = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (driver, stop, ops) = (driver.clone(), stop.clone(), ops.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(7, task as u64);
            let value = value();
            let mut done = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = rng.next_u64();
                let key = r as usize % KEYS;
                if r % 10 == 0 {
                    driver.set(key, value.clone()).await;
                } else {
                    driver.get(key, done as usize).await;
                }
                done += 1;
            }
            ops.fetch_add(done, Ordering::Relaxed);
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    ops.load(Ordering::Relaxed)
}

async fn connection_sequential(addr: SocketAddr, keys: &[String], gets: usize) -> Vec<Duration> {
    use memha_client::proto::{Command, Key, MetaGet};
    use tower::{Service, ServiceExt};
    let mut connection = memha_client::Connection::new(addr, Default::default());
    let keys: Vec<Key> = keys.iter().map(|k| Key::new(k.clone()).unwrap()).collect();
    let mut rng = Rng::new(1, 0);
    let mut samples = Vec::with_capacity(gets);
    for i in 0..gets + gets / 10 {
        let mut get = MetaGet::new(keys[rng.next_u64() as usize % KEYS].clone());
        get.value = true;
        get.client_flags = true;
        get.ttl = true;
        let started = Instant::now();
        connection
            .ready()
            .await
            .unwrap()
            .call(Command::MetaGet(get))
            .await
            .expect("get");
        let elapsed = started.elapsed();
        if i >= gets / 10 {
            samples.push(elapsed);
        }
    }
    samples
}

async fn connection_mixed(addr: SocketAddr, keys: Arc<Vec<String>>, stop: Arc<AtomicBool>) -> u64 {
    use memha_client::proto::{Command, Key, MetaGet, MetaSet};
    use tower::{Service, ServiceExt};
    let connection = memha_client::Connection::new(addr, Default::default());
    let keys: Arc<Vec<Key>> = Arc::new(keys.iter().map(|k| Key::new(k.clone()).unwrap()).collect());
    let ops = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (mut connection, keys, stop, ops) =
            (connection.clone(), keys.clone(), stop.clone(), ops.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(7, task as u64);
            let value = value();
            let mut done = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = rng.next_u64();
                let key = keys[r as usize % KEYS].clone();
                let command = if r % 10 == 0 {
                    Command::MetaSet(MetaSet::new(key, value.clone()))
                } else {
                    let mut get = MetaGet::new(key);
                    get.value = true;
                    get.client_flags = true;
                    get.ttl = true;
                    Command::MetaGet(get)
                };
                connection
                    .ready()
                    .await
                    .unwrap()
                    .call(command)
                    .await
                    .expect("op");
                done += 1;
            }
            ops.fetch_add(done, Ordering::Relaxed);
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    ops.load(Ordering::Relaxed)
}

// ---- async-memcached ----

async fn async_memcached_client(addr: SocketAddr) -> async_memcached::Client {
    async_memcached::Client::new(format!("tcp://{addr}"))
        .await
        .expect("async-memcached connects")
}

async fn async_memcached_sequential(
    addr: SocketAddr,
    keys: &[String],
    gets: usize,
) -> Vec<Duration> {
    let mut client = async_memcached_client(addr).await;
    let mut rng = Rng::new(1, 0);
    let mut samples = Vec::with_capacity(gets);
    for i in 0..gets + gets / 10 {
        let key = &keys[rng.next_u64() as usize % KEYS];
        let started = Instant::now();
        let item = client.get(key).await.expect("get");
        let elapsed = started.elapsed();
        assert!(item.is_some(), "preloaded key missing");
        if i >= gets / 10 {
            samples.push(elapsed);
        }
    }
    samples
}

async fn async_memcached_mixed(
    addr: SocketAddr,
    keys: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let ops = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (keys, stop, ops) = (keys.clone(), stop.clone(), ops.clone());
        let mut client = async_memcached_client(addr).await;
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(7, task as u64);
            let value = vec![b'v'; VALUE_LEN];
            let mut done = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = rng.next_u64();
                let key = &keys[r as usize % KEYS];
                if r % 10 == 0 {
                    client
                        .set(key, value.as_slice(), None, None)
                        .await
                        .expect("set");
                } else {
                    client.get(key).await.expect("get");
                }
                done += 1;
            }
            ops.fetch_add(done, Ordering::Relaxed);
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    ops.load(Ordering::Relaxed)
}

// ---- memcache (blocking) ----

fn memcache_client(addr: SocketAddr, pool: u32) -> memcache::Client {
    let url = format!("memcache://{addr}?protocol=ascii&tcp_nodelay=true");
    memcache::Client::with_pool_size(url, pool).expect("memcache connects")
}

fn memcache_sequential(addr: SocketAddr, keys: &[String], gets: usize) -> Vec<Duration> {
    let client = memcache_client(addr, 1);
    let mut rng = Rng::new(1, 0);
    let mut samples = Vec::with_capacity(gets);
    for i in 0..gets + gets / 10 {
        let key = &keys[rng.next_u64() as usize % KEYS];
        let started = Instant::now();
        let item: Option<Vec<u8>> = client.get(key).expect("get");
        let elapsed = started.elapsed();
        assert!(item.is_some(), "preloaded key missing");
        if i >= gets / 10 {
            samples.push(elapsed);
        }
    }
    samples
}

fn memcache_mixed(client: &memcache::Client, keys: Arc<Vec<String>>, stop: Arc<AtomicBool>) -> u64 {
    let ops = AtomicU64::new(0);
    thread::scope(|scope| {
        for task in 0..TASKS {
            let (keys, stop, ops) = (keys.clone(), stop.clone(), &ops);
            scope.spawn(move || {
                let mut rng = Rng::new(7, task as u64);
                let value = vec![b'v'; VALUE_LEN];
                let mut done = 0;
                while !stop.load(Ordering::Relaxed) {
                    let r = rng.next_u64();
                    let key = &keys[r as usize % KEYS];
                    if r % 10 == 0 {
                        client.set(key, value.as_slice(), 0).expect("set");
                    } else {
                        let _: Option<Vec<u8>> = client.get(key).expect("get");
                    }
                    done += 1;
                }
                ops.fetch_add(done, Ordering::Relaxed);
            });
        }
    });
    ops.load(Ordering::Relaxed)
}

// ---- the raw yardsticks ----

#[path = "support/raw.rs"]
mod raw;

/// A raw client, single node or replicating.
#[derive(Clone)]
enum Raw {
    Mux(raw::RawMux),
    Repl(raw::RawRepl),
}

impl Raw {
    async fn get(&self, key: &memha_proto::Key, turn: usize) -> Option<Bytes> {
        match self {
            Raw::Mux(mux) => mux.get(key).await,
            Raw::Repl(repl) => repl.get(key, turn).await,
        }
    }

    async fn set(&self, key: &memha_proto::Key, value: Bytes) {
        match self {
            Raw::Mux(mux) => mux.set(key, value).await,
            Raw::Repl(repl) => repl.set(key, value).await,
        }
    }
}

fn raw_keys(keys: &[String]) -> Arc<Vec<memha_proto::Key>> {
    Arc::new(
        keys.iter()
            .map(|k| memha_proto::Key::new(k.clone()).expect("key"))
            .collect(),
    )
}

async fn raw_sequential(raw: Raw, keys: &[String], gets: usize) -> Vec<Duration> {
    let keys = raw_keys(keys);
    let mut rng = Rng::new(1, 0);
    let mut samples = Vec::with_capacity(gets);
    for i in 0..gets + gets / 10 {
        let key = &keys[rng.next_u64() as usize % KEYS];
        let started = Instant::now();
        raw.get(key, i).await.expect("a hit");
        if i >= gets / 10 {
            samples.push(started.elapsed());
        }
    }
    samples
}

async fn raw_mixed(raw: Raw, keys: Arc<Vec<String>>, stop: Arc<AtomicBool>) -> u64 {
    let keys = raw_keys(&keys);
    mixed(RawDriver { raw, keys }, stop).await
}

#[derive(Clone)]
struct RawDriver {
    raw: Raw,
    keys: Arc<Vec<memha_proto::Key>>,
}

impl Driver for RawDriver {
    async fn get(&self, key: usize, turn: usize) {
        self.raw.get(&self.keys[key], turn).await;
    }

    async fn set(&self, key: usize, value: Bytes) {
        self.raw.set(&self.keys[key], value).await;
    }
}

// ---- the run ----

/// Raises `stop` after `duration`, from a plain thread (so it works the
/// same for async and blocking peers).
fn stop_after(duration: Duration) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    thread::spawn(move || {
        thread::sleep(duration);
        flag.store(true, Ordering::Relaxed);
    });
    stop
}

struct Bench {
    runtime: Runtime,
    addr: SocketAddr,
    keys: Arc<Vec<String>>,
    node: NodeService,
    memha: Client,
    replicated: Client,
    /// Diagnostic variants of the node stack, built on demand.
    bare: Client,
    layered: Client,
    raw_mux: raw::RawMux,
    raw_repl: raw::RawRepl,
    memcache: memcache::Client,
}

impl Bench {
    /// The raw client `peer` names.
    fn raw(&self, peer: Peer) -> Raw {
        match peer {
            Peer::RawMux => Raw::Mux(self.raw_mux.clone()),
            _ => Raw::Repl(self.raw_repl.clone()),
        }
    }

    /// One timed run of the mixed workload: operations per second and this
    /// process's CPU time per operation.
    fn mixed(&self, peer: Peer, duration: Duration) -> (f64, Duration) {
        let stop = stop_after(duration);
        let cpu = process_cpu();
        let started = Instant::now();
        let keys = self.keys.clone();
        let ops = match peer {
            Peer::Memha => self.runtime.block_on(memha_mixed(&self.memha, keys, stop)),
            Peer::MemhaReplicated => {
                self.runtime
                    .block_on(memha_mixed(&self.replicated, keys, stop))
            }
            Peer::MemhaBare => self.runtime.block_on(memha_mixed(&self.bare, keys, stop)),
            Peer::MemhaLayered => self
                .runtime
                .block_on(memha_mixed(&self.layered, keys, stop)),
            Peer::MemhaConnection => self
                .runtime
                .block_on(connection_mixed(self.addr, keys, stop)),
            Peer::RawMux | Peer::RawRepl => {
                self.runtime.block_on(raw_mixed(self.raw(peer), keys, stop))
            }
            Peer::AsyncMemcached => self
                .runtime
                .block_on(async_memcached_mixed(self.addr, keys, stop)),
            Peer::Memcache => memcache_mixed(&self.memcache, keys, stop),
        };
        let elapsed = started.elapsed();
        let cpu = process_cpu().saturating_sub(cpu);
        (ops as f64 / elapsed.as_secs_f64(), cpu / ops.max(1) as u32)
    }

    fn sequential(&self, peer: Peer, gets: usize) -> Vec<Duration> {
        match peer {
            Peer::Memha => self
                .runtime
                .block_on(memha_sequential(&self.memha, &self.keys, gets)),
            Peer::MemhaReplicated => {
                self.runtime
                    .block_on(memha_sequential(&self.replicated, &self.keys, gets))
            }
            Peer::MemhaBare => self
                .runtime
                .block_on(memha_sequential(&self.bare, &self.keys, gets)),
            Peer::MemhaLayered => {
                self.runtime
                    .block_on(memha_sequential(&self.layered, &self.keys, gets))
            }
            Peer::MemhaConnection => self
                .runtime
                .block_on(connection_sequential(self.addr, &self.keys, gets)),
            Peer::RawMux | Peer::RawRepl => {
                self.runtime
                    .block_on(raw_sequential(self.raw(peer), &self.keys, gets))
            }
            Peer::AsyncMemcached => self
                .runtime
                .block_on(async_memcached_sequential(self.addr, &self.keys, gets)),
            Peer::Memcache => memcache_sequential(self.addr, &self.keys, gets),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn micros(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn per_op(count: u64, ops: u64) -> f64 {
    count as f64 / ops.max(1) as f64
}

fn main() {
    let settings = Settings::from_args();
    let cluster = MemcachedCluster::start(3).expect("start memcached");
    let addr = cluster.node(0).addr();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let node = runtime.block_on(async { memha_node(addr) });
    let memha = memha_client(&node);
    let replicated = runtime.block_on(memha_replicated(cluster.addrs()));
    let keys = keys();
    // Through the replicated client, so every node holds every key.
    let version = runtime.block_on(async {
        for key in keys.iter() {
            replicated.set(key, value()).await.expect("preload");
        }
        memha.version().await.expect("version")
    });
    let raw_mux = runtime.block_on(raw::RawMux::connect(addr));
    let raw_repl = runtime.block_on(raw::RawRepl::connect(&cluster.addrs()));
    let bench = Bench {
        runtime,
        addr,
        keys,
        node,
        memha,
        replicated,
        bare: diagnostic_client(addr, false),
        layered: diagnostic_client(addr, true),
        raw_mux,
        raw_repl,
        memcache: memcache_client(addr, TASKS as u32),
    };
    let workers = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "memcached {version} (-t 1, 3 nodes: the single-node clients use the first) \
         on {workers} cores shared with the client; {KEYS} keys, {VALUE_LEN}-byte values"
    );
    println!(
        "(a) sequential get: {} gets each, in {LATENCY_ROUNDS} turns; (b) {TASKS} tasks, \
         90% get / 10% set: {} runs of {:.1} s each, clients taking turns\n",
        settings.gets,
        settings.runs,
        settings.duration.as_secs_f64()
    );

    let mut results: Vec<(Peer, Results)> = settings
        .peers
        .iter()
        .map(|peer| (*peer, Results::default()))
        .collect();
    // The clients take turns in short rounds, so a change of the machine's
    // mood (other work waking up) hits their latencies alike.
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); results.len()];
    let per_round = settings.gets.div_ceil(LATENCY_ROUNDS);
    for _ in 0..LATENCY_ROUNDS {
        for ((peer, _), samples) in results.iter().zip(&mut samples) {
            samples.extend(bench.sequential(*peer, per_round));
        }
    }
    for ((_, result), samples) in results.iter_mut().zip(&mut samples) {
        samples.sort();
        result.p50 = percentile(samples, 0.50);
        result.p99 = percentile(samples, 0.99);
    }
    for (peer, _) in &results {
        bench.mixed(*peer, WARMUP);
    }
    let mut memha_metrics = (ConnectionMetrics::default(), 0u64);
    // Node requests, writes and reads, and client operations of the replicated client.
    let mut fan_out = (ConnectionMetrics::default(), 0u64);
    for _ in 0..settings.runs {
        for (peer, result) in &mut results {
            let before = bench.node.connection_metrics().unwrap_or_default();
            let cluster_before = cluster_metrics(&bench.replicated);
            let (ops_per_sec, cpu_per_op) = bench.mixed(*peer, settings.duration);
            result.cpu_per_op.push(cpu_per_op);
            if *peer == Peer::Memha {
                let after = bench.node.connection_metrics().unwrap_or_default();
                memha_metrics.0.writes += after.writes - before.writes;
                memha_metrics.0.reads += after.reads - before.reads;
                memha_metrics.1 += after.requests - before.requests;
            }
            if *peer == Peer::MemhaReplicated {
                let after = cluster_metrics(&bench.replicated);
                fan_out.0.requests += after.requests - cluster_before.requests;
                fan_out.0.writes += after.writes - cluster_before.writes;
                fan_out.0.reads += after.reads - cluster_before.reads;
                fan_out.1 += (ops_per_sec * settings.duration.as_secs_f64()) as u64;
            }
            result.throughput.push(ops_per_sec);
        }
    }

    println!(
        "{:<34} {:>10} {:>10} {:>13} {:>11}   runs",
        "client", "get p50", "get p99", "ops/s median", "client CPU"
    );
    for (peer, result) in &results {
        let runs: Vec<String> = result
            .throughput
            .iter()
            .map(|t| format!("{:.0}k", t / 1000.0))
            .collect();
        println!(
            "{:<34} {:>10} {:>10} {:>13.0} {:>8}/op   {}",
            peer.name(),
            micros(result.p50),
            micros(result.p99),
            result.median_throughput(),
            micros(result.median_cpu_per_op()),
            runs.join(" ")
        );
    }
    println!();
    let find = |wanted: Peer| {
        results
            .iter()
            .find(|(peer, _)| *peer == wanted)
            .map(|(_, r)| r)
    };
    if let Some(memha) = find(Peer::Memha) {
        for other in [Peer::AsyncMemcached, Peer::Memcache] {
            let Some(peer) = find(other) else { continue };
            let throughput_ratio = memha.median_throughput() / peer.median_throughput();
            let latency_ratio = memha.p50.as_secs_f64() / peer.p50.as_secs_f64();
            let targets = if other == Peer::AsyncMemcached {
                format!(
                    " (targets: ops/s >= 3x {}, p50 <= 1.1x {})",
                    verdict(throughput_ratio >= 3.0),
                    verdict(latency_ratio <= 1.1)
                )
            } else {
                String::new()
            };
            println!(
                "memha / {:<16} ops/s {throughput_ratio:.2}x, get p50 {latency_ratio:.2}x{targets}",
                other.id()
            );
        }
        let (metrics, requests) = memha_metrics;
        let writes = per_op(metrics.writes, requests);
        println!(
            "memha system calls in (b): {writes:.3} writes/op ({:.1} requests per write), {:.3} reads/op",
            1.0 / writes.max(f64::MIN_POSITIVE),
            per_op(metrics.reads, requests)
        );
    }
    if let Some(replicated) = find(Peer::MemhaReplicated) {
        if let Some(peer) = find(Peer::AsyncMemcached) {
            let throughput_ratio = replicated.median_throughput() / peer.median_throughput();
            let latency_ratio = replicated.p50.as_secs_f64() / peer.p50.as_secs_f64();
            println!(
                "memha replicated / async-memcached (1 node, unreplicated) ops/s \
                 {throughput_ratio:.2}x, get p50 {latency_ratio:.2}x (target: ops/s >= 2x {})",
                verdict(throughput_ratio >= 2.0)
            );
        }
        if let Some(single) = find(Peer::Memha) {
            println!(
                "memha replicated / memha single node: ops/s {:.2}x",
                replicated.median_throughput() / single.median_throughput()
            );
        }
        let (metrics, ops) = fan_out;
        println!(
            "memha replicated in (b): {:.2} node requests/op, {:.3} writes/op, {:.3} reads/op",
            per_op(metrics.requests, ops),
            per_op(metrics.writes, ops),
            per_op(metrics.reads, ops)
        );
    }
    // Against the yardsticks (issue targets: single node >= 0.9x raw mux
    // with p99 <= 1.5x; replicated >= 0.85x raw repl3, CPU <= 4.5 us/op).
    for (ours, yardstick, ops_target, cpu_target) in [
        (Peer::Memha, Peer::RawMux, 0.9, None),
        (Peer::MemhaReplicated, Peer::RawRepl, 0.85, Some(4.5)),
    ] {
        let (Some(ours_result), Some(raw)) = (find(ours), find(yardstick)) else {
            continue;
        };
        let throughput = ours_result.median_throughput() / raw.median_throughput();
        let p99 = ours_result.p99.as_secs_f64() / raw.p99.as_secs_f64();
        let cpu = ours_result.median_cpu_per_op().as_secs_f64() * 1e6;
        let raw_cpu = raw.median_cpu_per_op().as_secs_f64() * 1e6;
        let cpu_verdict = cpu_target.map_or(String::new(), |target| {
            format!(", CPU <= {target} us/op {}", verdict(cpu <= target))
        });
        println!(
            "{} / {}: ops/s {throughput:.2}x, get p99 {p99:.2}x, client CPU {cpu:.1} vs {raw_cpu:.1} us/op \
             (targets: ops/s >= {ops_target}x {}{}{cpu_verdict})",
            ours.id(),
            yardstick.id(),
            verdict(throughput >= ops_target),
            match ours {
                Peer::Memha => format!(", p99 <= 1.5x {}", verdict(p99 <= 1.5)),
                _ => String::new(),
            },
        );
    }
    drop(cluster);
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}
