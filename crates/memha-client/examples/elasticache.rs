//! Nodes discovered from AWS ElastiCache (memcached engine).
//!
//! ```sh
//! # The cluster's configuration endpoint (`config get cluster`, no AWS credentials):
//! cargo run -p memha-client --example elasticache -- my-cache.abc123.cfg.use1.cache.amazonaws.com:11211
//! # A cluster with in-transit encryption: TLS to the endpoint and the nodes,
//! # checked against the system's trusted roots, behind the `tls` feature:
//! cargo run -p memha-client --features tls --example elasticache -- my-cache.abc123.cfg.use1.cache.amazonaws.com:11211 --tls
//! # The ElastiCache API (DescribeCacheClusters; region and credentials from the
//! # usual AWS environment), behind the `elasticache` feature:
//! cargo run -p memha-client --features elasticache --example elasticache -- --api my-cache
//! # Without arguments: 2 local memcached nodes behind a stand-in configuration
//! # endpoint on localhost (memcached must be installed).
//! cargo run -p memha-client --example elasticache
//! ```
//!
//! The client polls the source (every 5 s here, 10 s by default): nodes
//! added to the cluster are probed and then take traffic, nodes removed are
//! drained. A configuration older than one already seen is ignored, and a
//! failing source keeps its last good list of nodes.

use std::time::Duration;

use memha_client::discovery::ElastiCacheConfigSource;
use memha_client::{Client, ClientBuilder, Ttl};
use memha_tests::MemcachedCluster;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let builder = Client::builder()
        .timeout(Duration::from_millis(500))
        .discovery_interval(Duration::from_secs(5));
    // Keeps the local stand-in running while the client uses it.
    let mut _local = None;
    let builder = match args.as_slice() {
        [flag, cluster_id] if flag == "--api" => api(builder, cluster_id).await?,
        [endpoint] => builder.source(config_endpoint(endpoint)?),
        [endpoint, flag] if flag == "--tls" => encrypted(builder, config_endpoint(endpoint)?)?,
        [] => {
            let (cluster, endpoint) = stand_in().await?;
            println!("stand-in configuration endpoint on {endpoint}");
            _local = Some(cluster);
            builder.source(ElastiCacheConfigSource::new("127.0.0.1", endpoint.port()))
        }
        _ => return Err("usage: elasticache [HOST:PORT [--tls] | --api CLUSTER_ID]".into()),
    };

    let client = builder.build().await?;
    let cluster = client.cluster().expect("a replicated client");
    println!("nodes: {:?}", cluster.metrics().nodes);

    client
        .set("elasticache:hello", "world")
        .ttl(Ttl::seconds(60))
        .await?;
    let item = client.get("elasticache:hello").await?;
    println!("read back: {:?}", item.map(|item| item.value));
    Ok(())
}

fn config_endpoint(endpoint: &str) -> Result<ElastiCacheConfigSource, Box<dyn std::error::Error>> {
    let (host, port) = endpoint
        .rsplit_once(':')
        .ok_or("the configuration endpoint is host:port")?;
    Ok(ElastiCacheConfigSource::new(host, port.parse()?))
}

/// TLS to the configuration endpoint and to the nodes (feature `tls`): each
/// certificate is checked against the name the endpoint is given, or the
/// name it lists the node under.
#[cfg(feature = "tls")]
fn encrypted(
    builder: ClientBuilder,
    source: ElastiCacheConfigSource,
) -> Result<ClientBuilder, Box<dyn std::error::Error>> {
    let tls = memha_client::TlsConfig::builder().native_roots().build()?;
    Ok(builder
        .source(source.with_connector(tls.endpoint_connector()))
        .tls(tls))
}

#[cfg(not(feature = "tls"))]
fn encrypted(
    _builder: ClientBuilder,
    _source: ElastiCacheConfigSource,
) -> Result<ClientBuilder, Box<dyn std::error::Error>> {
    Err("TLS needs `--features tls`".into())
}

/// The ElastiCache API source (feature `elasticache`).
#[cfg(feature = "elasticache")]
async fn api(
    builder: ClientBuilder,
    cluster_id: &str,
) -> Result<ClientBuilder, Box<dyn std::error::Error>> {
    use memha_client::discovery::ElastiCacheApiSource;

    // Region and credentials are resolved here, so a missing one fails now.
    let source = ElastiCacheApiSource::builder(cluster_id)
        .timeout(Duration::from_secs(10))
        .build()
        .await?;
    Ok(builder.source(source))
}

#[cfg(not(feature = "elasticache"))]
async fn api(
    _builder: ClientBuilder,
    _cluster_id: &str,
) -> Result<ClientBuilder, Box<dyn std::error::Error>> {
    Err("the ElastiCache API source needs `--features elasticache`".into())
}

/// Two local memcached nodes, and a TCP server answering
/// `config get cluster` with them as ElastiCache does.
async fn stand_in() -> Result<(MemcachedCluster, std::net::SocketAddr), Box<dyn std::error::Error>>
{
    let cluster = MemcachedCluster::start(2)?;
    let nodes: Vec<String> = cluster
        .addrs()
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("node-{i}.local|{}|{}", addr.ip(), addr.port()))
        .collect();
    // `<version>\n<host|ip|port ...>\n`
    let payload = format!("1\n{}\n", nodes.join(" "));
    let reply = format!("CONFIG cluster 0 {}\r\n{payload}\r\nEND\r\n", payload.len());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let answer = match line.trim() {
                        "config get cluster" => reply.as_str(),
                        _ => "ERROR\r\n",
                    };
                    if write.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((cluster, endpoint))
}
