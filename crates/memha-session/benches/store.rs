//! A session's load+save through [`TowerSessionStore`] against plain memha
//! get+set of the same bytes (same key, same TTL) on 3 local memcached
//! nodes: the store's overhead (decoding, encoding, the expiry checks).
//! Also the store's format against MessagePack of the record as it is
//! and JSON.
//!
//! Besides criterion's figures, a paired run alternates blocks of store
//! and plain operations (so machine load affects both alike) and prints
//! operations per second and the overhead, sequential and with 32
//! sessions in flight.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use memha_client::{Client, Ttl};
use memha_session::{decode_record, encode_record, TowerSessionStore};
use memha_tests::MemcachedCluster;
use tower_sessions::cookie::time::{self, OffsetDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::SessionStore;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A typical logged-in session: a user, a counter, a role, a CSRF token.
fn record() -> Record {
    let mut data = HashMap::new();
    data.insert("user".to_owned(), serde_json::json!("alice"));
    data.insert("visits".to_owned(), serde_json::json!(42));
    data.insert("role".to_owned(), serde_json::json!("admin"));
    data.insert(
        "csrf".to_owned(),
        serde_json::json!("b3f1c2d4e5a6978812345678abcdef01"),
    );
    Record {
        id: Id::default(),
        data,
        expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
    }
}

async fn store_op(store: &TowerSessionStore, id: &Id) {
    let record = store.load(id).await.expect("load").expect("a session");
    store.save(&record).await.expect("save");
}

/// Plain get+set with the store's codec work in between (decode, check,
/// encode, keeping the record until the set is done, as the store's
/// caller does): what the store costs beyond its encoding.
async fn codec_op(client: &Client, key: &str, ttl: Ttl) {
    let item = client.get(key).await.expect("get").expect("a session");
    let record = decode_record(&item.value).expect("decode");
    assert!(record.expiry_date > OffsetDateTime::now_utc());
    let bytes = encode_record(&record).expect("encode");
    client.set(key, bytes).ttl(ttl).await.expect("set");
}

async fn plain_op(client: &Client, key: &str, ttl: Ttl) {
    let item = client.get(key).await.expect("get").expect("a session");
    client.set(key, item.value).ttl(ttl).await.expect("set");
}

/// Operations per second of `ops` runs of `op` spread over `tasks` tokio
/// tasks (each a sequence, like the requests of one connection), task `t`
/// calling `op(t)`.
async fn rate<F, Fut>(ops: usize, tasks: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_task = ops / tasks;
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let op = op.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    op(task).await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("bench task");
    }
    (per_task * tasks) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn store_benches(c: &mut Criterion) {
    let cluster = MemcachedCluster::start(3).expect("start memcached");
    let rt = runtime();
    let (client, store, ids) = rt.block_on(async {
        let client = Client::builder()
            .nodes(cluster.addrs())
            .build()
            .await
            .expect("client");
        let store = TowerSessionStore::new(client.clone());
        let mut ids = Vec::new();
        for _ in 0..32 {
            let mut record = record();
            store.create(&mut record).await.expect("create");
            ids.push(record.id);
        }
        (client, store, ids)
    });
    let id = ids[0];
    let key = store.key(&id);
    // The TTL the store sends: the record's expiry.
    let stored = rt
        .block_on(store.load(&id))
        .expect("load")
        .expect("a session");
    let ttl = Ttl::At(stored.expiry_date.into());
    let keys: Arc<Vec<String>> = Arc::new(ids.iter().map(|id| store.key(id)).collect());
    let ids = Arc::new(ids);
    let shared_store = Arc::new(store.clone());

    let sample = record();
    let stored = encode_record(&sample).expect("store format");
    let msgpack = rmp_serde::to_vec(&sample).expect("msgpack");
    let json = serde_json::to_vec(&sample).expect("json");
    eprintln!(
        "session record: {} bytes as stored (MessagePack, expiry as 2 integers), \
         {} bytes as MessagePack of the record as it is, {} bytes as JSON",
        stored.len(),
        msgpack.len(),
        json.len()
    );

    let mut group = c.benchmark_group("codec");
    group.bench_function("msgpack/encode+decode", |b| {
        b.iter(|| {
            let bytes = rmp_serde::to_vec(&sample).unwrap();
            rmp_serde::from_slice::<Record>(&bytes).unwrap()
        });
    });
    group.bench_function("store-format/encode+decode", |b| {
        b.iter(|| {
            let bytes = encode_record(&sample).unwrap();
            decode_record(&bytes).unwrap()
        });
    });
    group.bench_function("json/encode+decode", |b| {
        b.iter(|| {
            let bytes = serde_json::to_vec(&sample).unwrap();
            serde_json::from_slice::<Record>(&bytes).unwrap()
        });
    });
    group.finish();

    let mut group = c.benchmark_group("session");
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    group.bench_function("store/load+save", |b| {
        b.to_async(&rt).iter(|| store_op(&store, &id));
    });
    group.bench_function("plain/get+set", |b| {
        b.to_async(&rt).iter(|| plain_op(&client, &key, ttl));
    });
    group.finish();

    // Paired: alternating blocks (in rotating order), so drifting machine
    // load hits each alike; an overhead is the median of the rounds'
    // ratios. The CPU this process spent per operation (the client's side;
    // memcached runs in other processes) is summed too. "codec" is plain
    // get+set with the store's decoding and encoding in between.
    for concurrency in [1, 32] {
        let mut rates: [Vec<f64>; 3] = Default::default();
        let mut cpu = [Duration::ZERO; 3];
        let mut total_ops = 0;
        rt.block_on(async {
            // About 4 s and 8 s: many short rounds, as this machine's
            // load drifts (one 30-round run's median ranged 8-17%).
            let (ops, rounds) = if concurrency == 1 {
                (300, 30)
            } else {
                (32 * 40, 90)
            };
            for round in 0..rounds {
                for turn in 0..3 {
                    let variant = (round + turn) % 3;
                    let (store, client, ids, keys) = (
                        shared_store.clone(),
                        client.clone(),
                        ids.clone(),
                        keys.clone(),
                    );
                    // Per operation, only reference counts are bumped (the
                    // same for every variant): no key or store is copied.
                    let (rate, spent) = timed_cpu(rate(ops, concurrency, move |task| {
                        let (store, client, ids, keys) =
                            (store.clone(), client.clone(), ids.clone(), keys.clone());
                        async move {
                            match variant {
                                0 => store_op(&store, &ids[task]).await,
                                1 => plain_op(&client, &keys[task], ttl).await,
                                _ => codec_op(&client, &keys[task], ttl).await,
                            }
                        }
                    }))
                    .await;
                    rates[variant].push(rate);
                    cpu[variant] += spent;
                }
                total_ops += ops / concurrency * concurrency;
            }
        });
        let per_op = |cpu: Duration| cpu.as_secs_f64() * 1e6 / total_ops as f64;
        let overhead = |variant: usize| {
            let ratios = rates[1]
                .iter()
                .zip(&rates[variant])
                .map(|(plain, other)| plain / other)
                .collect();
            (median(ratios) - 1.0) * 100.0
        };
        eprintln!(
            "paired, {concurrency} in flight: store load+save {:.0}/s, plain get+set {:.0}/s, \
             overhead {:.1}% (codec alone {:.1}%); client CPU per op: store {:.1} µs, \
             plain {:.1} µs, codec {:.1} µs",
            median(rates[0].clone()),
            median(rates[1].clone()),
            overhead(0),
            overhead(2),
            per_op(cpu[0]),
            per_op(cpu[1]),
            per_op(cpu[2]),
        );
    }
}

/// The rate `block` measured, and the CPU time this process spent meanwhile.
async fn timed_cpu(block: impl std::future::Future<Output = f64>) -> (f64, Duration) {
    let before = process_cpu();
    let rate = block.await;
    (rate, process_cpu().saturating_sub(before))
}

/// This process's CPU time (user and system) from `/proc/self/stat`, in
/// clock ticks of 10 ms; zero where there is no such file.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses): utime is
    // the 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

criterion_group!(benches, store_benches);
criterion_main!(benches);
