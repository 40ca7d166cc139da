//! What a replicated client tells `tracing`, and what it never does: the
//! keys and values of the sessions it carries.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memha_client::{Client, HealthConfig, NodeState};
use memha_tests::{raw_roundtrip, MemcachedCluster};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::fmt::MakeWriter;

/// Everything the subscriber writes, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

const KEY: &str = "session:7f3a9c21d4e8";
const VALUE: &str = "user=alice;csrf=5be1c0de";

fn delete_on_node(addr: std::net::SocketAddr, key: &str) {
    let reply = raw_roundtrip(
        addr,
        format!("md {key}\r\n").as_bytes(),
        b"\r\n",
        Duration::from_secs(2),
    )
    .expect("raw md");
    assert!(
        reply.starts_with(b"HD"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}

// One thread: the subscriber is this thread's default, so every task the
// client spawns (repairs, probes, discovery) reports to it.
#[tokio::test(flavor = "current_thread")]
async fn operations_repairs_and_transitions_are_traced_without_keys_or_values() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        // A line as each span closes, so spans without events show too.
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(captured.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let cluster = MemcachedCluster::start(3).unwrap();
    let client = Client::builder()
        .nodes(cluster.addrs())
        .timeout(Duration::from_millis(500))
        .health(HealthConfig::default().backoff(
            Duration::from_millis(20),
            1.5,
            Duration::from_millis(200),
        ))
        .build()
        .await
        .unwrap();
    let cluster_view = client.cluster().unwrap();
    cluster_view
        .health()
        .wait_for_nodes(3, Duration::from_secs(5))
        .await
        .unwrap();

    client.set(KEY, VALUE).await.unwrap();
    // Two nodes lose their copy: whichever nodes a read asks, one missed.
    delete_on_node(cluster.addrs()[0], KEY);
    delete_on_node(cluster.addrs()[1], KEY);
    let item = client.get(KEY).await.unwrap().expect("a copy lives");
    assert_eq!(&item.value[..], VALUE.as_bytes());
    assert!(
        cluster_view.metrics().repairs >= 1,
        "{:?}",
        cluster_view.metrics()
    );

    // A node dies; the next write finds out.
    let mut transitions = cluster_view.health().transitions();
    let dead = cluster.addrs()[2];
    cluster.node(2).kill().unwrap();
    let _ = client.set(KEY, VALUE).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(t) = transitions.recv().await {
            if t.node == dead && t.to == NodeState::Down {
                return;
            }
        }
    })
    .await
    .expect("the dead node goes Down");
    client.delete(KEY).await.unwrap();

    let text = captured.text();
    for expected in [
        "memha{op=\"set\" key_hash=",
        "memha{op=\"get\" key_hash=",
        "memha{op=\"delete\" key_hash=",
        "repaired",
        "node down",
        "node added",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    // The repair is reported inside the read's span.
    assert!(
        text.lines()
            .any(|line| line.contains("memha{op=\"get\"") && line.contains("repaired")),
        "{text}"
    );
    assert!(!text.contains("7f3a9c21d4e8"), "a key was logged:\n{text}");
    assert!(!text.contains("alice"), "a value was logged:\n{text}");

    let stats = cluster_view.metrics();
    assert_eq!(stats.nodes_added, 3);
    let dead_status = stats.nodes.iter().find(|n| n.addr == dead).unwrap();
    // Joining -> Up, then Up -> Down.
    assert!(dead_status.transitions >= 2, "{stats:?}");
}
