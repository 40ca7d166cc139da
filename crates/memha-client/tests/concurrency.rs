//! Many callers on one connection: each gets its own answer, also when
//! others give up mid-flight.

mod common;

use std::future::{poll_fn, Future, IntoFuture};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use memha_client::Client;
use tokio::sync::Barrier;

use common::{client, one_node};
use memha_tests::Rng;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_each_get_their_own_answer() {
    let cluster = one_node();
    let (client, node) = client(cluster.node(0).addr());
    let tasks = 1000;
    let start = Arc::new(Barrier::new(tasks));
    let mut handles = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let client = client.clone();
        let start = Arc::clone(&start);
        handles.push(tokio::spawn(async move {
            let key = format!("task:{i}");
            let value = format!("value of task {i} {}", "x".repeat(i % 300));
            start.wait().await;
            client
                .set(&key, value.clone())
                .flags(i as u32)
                .await
                .unwrap();
            for round in 0..3 {
                let item = client.get(&key).await.unwrap().expect("own key was stored");
                assert_eq!(
                    item.value, value,
                    "task {i} round {round} got another's answer"
                );
                assert_eq!(item.flags, i as u32);
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let metrics = node.connection_metrics().unwrap();
    assert_eq!(metrics.requests, 4000);
    assert_eq!(metrics.replies, 4000);
    assert_eq!(metrics.connects, 1, "one connection shared by all");
    assert!(
        metrics.writes < metrics.requests / 2,
        "concurrent requests should share writes: {metrics:?}"
    );
}

/// Polls `future` at most `polls` times, yielding in between, then drops it.
async fn poll_then_drop<F: Future>(future: F, polls: u64) -> Option<F::Output> {
    let mut future = pin!(future);
    for _ in 0..polls {
        if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await {
            return Some(output);
        }
        tokio::task::yield_now().await;
    }
    None
}

/// One operation on this task's keys, possibly abandoned; any answer that
/// does arrive must be this key's.
async fn chaotic_op(client: &Client, rng: &mut Rng, task: u64, cancelled: &AtomicU64) {
    let key = format!("chaos:{task}:{}", rng.below(8));
    let value = format!("{key}={}", rng.next_u64());
    let polls = rng.below(6);
    let done = match rng.below(3) {
        0 => poll_then_drop(client.set(&key, value).into_future(), polls)
            .await
            .map(|result| {
                result.unwrap();
            }),
        1 => poll_then_drop(client.get(&key), polls).await.map(|result| {
            if let Some(item) = result.unwrap() {
                let value = std::str::from_utf8(&item.value).unwrap();
                assert!(
                    value.starts_with(&format!("{key}=")),
                    "{key} got the answer {value}"
                );
            }
        }),
        _ => {
            let micros = rng.below(1500);
            tokio::time::timeout(Duration::from_micros(micros), client.get(&key))
                .await
                .ok()
                .map(|result| {
                    if let Some(item) = result.unwrap() {
                        assert!(item.value.starts_with(key.as_bytes()));
                    }
                })
        }
    };
    if done.is_none() {
        cancelled.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_futures_never_desynchronise_the_stream() {
    let cluster = one_node();
    let (client, node) = client(cluster.node(0).addr());
    let cancelled = Arc::new(AtomicU64::new(0));
    let seed = Rng::seed_from_time();
    println!("seed {seed}");

    // Phase 1: callers give up at random points.
    let mut handles = Vec::new();
    for task in 0..32u64 {
        let client = client.clone();
        let cancelled = Arc::clone(&cancelled);
        handles.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed, task);
            for _ in 0..400 {
                chaotic_op(&client, &mut rng, task, &cancelled).await;
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let cancelled = cancelled.load(Ordering::Relaxed);
    let abandoned_on_the_wire = node.connection_metrics().unwrap();
    println!("cancelled {cancelled} of 12800; {abandoned_on_the_wire:?}");
    assert!(cancelled > 1000, "the test must cancel many requests");

    // Phase 2: 10,000 requests, every answer checked.
    let mut handles = Vec::new();
    for task in 0..100u64 {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            for n in 0..50u64 {
                let key = format!("after:{task}:{n}");
                let value = format!("{key}#{}", n * 31 + task);
                client
                    .set(&key, value.clone())
                    .flags(n as u32)
                    .await
                    .unwrap();
                let item = client.get(&key).await.unwrap().expect("just stored");
                assert_eq!(item.value, value);
                assert_eq!(item.flags, n as u32);
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let metrics = node.connection_metrics().unwrap();
    assert_eq!(
        metrics.connects, 1,
        "no reconnection: the stream stayed in step"
    );
    assert_eq!(metrics.disconnects, 0);
    assert_eq!(
        metrics.requests, metrics.replies,
        "every request, abandoned or not, had its answer read"
    );
}
