//! memha's client against a real memcached started by the harness:
//! one round trip (`get` hit and miss, `set`), a pipelined `get_many`, and
//! 64 concurrent gets sharing the connection.
#![allow(missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use memha_client::Client;
use memha_tests::MemcachedCluster;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn client_benches(c: &mut Criterion) {
    let cluster = MemcachedCluster::start(1).expect("start memcached");
    let rt = runtime();
    let client = rt.block_on(async {
        let client = Client::new(cluster.node(0).addr());
        for i in 0..1000 {
            client
                .set(format!("bench:{i}"), Bytes::from(vec![b'v'; 100]))
                .await
                .expect("preload");
        }
        client
    });

    let mut group = c.benchmark_group("client");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_millis(500));

    group.bench_function("get/hit", |b| {
        b.to_async(&rt)
            .iter(|| async { client.get("bench:7").await.expect("get").expect("hit") });
    });
    group.bench_function("get/miss", |b| {
        b.to_async(&rt)
            .iter(|| async { client.get("bench:absent").await.expect("get") });
    });
    let value = Bytes::from(vec![b'v'; 100]);
    group.bench_function("set/100B", |b| {
        b.to_async(&rt)
            .iter(|| async { client.set("bench:set", value.clone()).await.expect("set") });
    });

    let keys: Vec<String> = (0..100).map(|i| format!("bench:{i}")).collect();
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("get_many/100", |b| {
        b.to_async(&rt)
            .iter(|| async { client.get_many(&keys).await.expect("get_many") });
    });

    group.throughput(Throughput::Elements(64));
    group.bench_function("concurrent_get/64", |b| {
        b.to_async(&rt).iter_batched(
            || client.clone(),
            |client| async move {
                let tasks: Vec<_> = (0..64)
                    .map(|i| {
                        let client = client.clone();
                        tokio::spawn(async move { client.get(format!("bench:{i}")).await })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task").expect("get");
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
    drop(client);
    drop(cluster);
}

criterion_group!(benches, client_benches);
criterion_main!(benches);
