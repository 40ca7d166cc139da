//! A discovery source of your own: the nodes listed in a file, one
//! `host:port` a line, re-read on every poll.
//!
//! ```sh
//! cargo run -p memha-client --example custom_source
//! ```
//!
//! It starts 3 local memcached nodes (memcached must be installed), lists
//! two of them in a file, and builds a client that follows the file. Then
//! it adds the third node to the file: the client probes it and starts
//! writing to it (reads repair what it missed); and it removes the first
//! one: the client drains and forgets it. A source that fails (the file is
//! gone) keeps its last good list: a source error never removes a node.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use memha_client::discovery::{async_trait, Error, NodeAddr, NodeSource};
use memha_client::{Client, NodeState};
use memha_tests::MemcachedCluster;

/// The nodes listed in a file.
#[derive(Debug)]
struct FileSource {
    path: PathBuf,
}

#[async_trait]
impl NodeSource for FileSource {
    /// The full current list: the watcher diffs it with the previous one.
    async fn nodes(&self) -> Result<Vec<NodeAddr>, Error> {
        // A small file: reading it blocks for microseconds.
        let text = std::fs::read_to_string(&self.path).map_err(Error::custom)?;
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::parse)
            .collect()
    }

    fn name(&self) -> &str {
        "node-file"
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = MemcachedCluster::start(3)?;
    let [a, b, c] = [0, 1, 2].map(|i| cluster.node(i).addr());
    let path = std::env::temp_dir().join(format!("memha-nodes-{}.txt", std::process::id()));
    std::fs::write(&path, format!("# memcached nodes\n{a}\n{b}\n"))?;

    let client = Client::builder()
        .source(FileSource { path: path.clone() })
        .discovery_interval(Duration::from_millis(200))
        .build()
        .await?;
    let cluster_view = client.cluster().expect("a replicated client");
    println!("following {}: {:?}", path.display(), nodes(&client));

    client.set("greeting", "hello").await?;

    // A node added to the file joins: probed first, then it takes traffic.
    std::fs::write(&path, format!("{a}\n{b}\n{c}\n"))?;
    wait_until(|| {
        nodes(&client)
            .iter()
            .any(|&(addr, state)| addr == c && state == NodeState::Up)
    })
    .await?;
    println!("{c} added: {:?}", nodes(&client));
    // It is empty: a read finds the value on the others and repairs it there.
    let item = client.get("greeting").await?.expect("stored before");
    println!(
        "read {:?}; repairs so far: {}",
        item.value,
        cluster_view.metrics().repairs
    );

    // A node removed from the file is drained and forgotten.
    std::fs::write(&path, format!("{b}\n{c}\n"))?;
    wait_until(|| nodes(&client).iter().all(|&(addr, _)| addr != a)).await?;
    println!("{a} removed: {:?}", nodes(&client));

    // The file disappears: the source fails, and its last list stays.
    std::fs::remove_file(&path)?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    println!("file gone, nodes kept: {:?}", nodes(&client));
    println!(
        "still there: {:?}",
        client.get("greeting").await?.map(|item| item.value)
    );
    Ok(())
}

/// The client's nodes and their states.
fn nodes(client: &Client) -> Vec<(std::net::SocketAddr, NodeState)> {
    let stats = client.cluster().expect("a replicated client").metrics();
    stats
        .nodes
        .iter()
        .map(|node| (node.addr, node.state))
        .collect()
}

async fn wait_until(done: impl Fn() -> bool) -> Result<(), String> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > Duration::from_secs(10) {
            return Err("the change was not seen within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
