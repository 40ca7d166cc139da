//! Temporary: sequential latency probe.
#![allow(missing_docs)]
use std::time::{Duration, Instant};
use bytes::Bytes;
use memha_client::proto::{Command, Key, MetaGet};
use memha_client::{Client, Connection, NodeStackBuilder};
use memha_tests::MemcachedCluster;
use tower::{Service, ServiceExt};

fn main() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let addr = cluster.node(0).addr();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let node = rt.block_on(async { NodeStackBuilder::new().timeout(Duration::from_secs(2)).build(addr) });
    let client = Client::builder().build_with_node(node.clone());
    let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    rt.block_on(async { for k in &keys { client.set(k, Bytes::from(vec![b'v'; 100])).await.unwrap(); } });
    let conn = Connection::new(addr, Default::default());
    let mut am = rt.block_on(async_memcached::Client::new(format!("tcp://{addr}"))).unwrap();
    sizes(&client); if std::env::var_os("SIZES").is_some() { return; }
    let n = 5000;
    let mut res: Vec<(&str, Vec<Duration>)> = vec![("client", vec![]), ("conn", vec![]), ("async-mc", vec![])];
    for _round in 0..6 {
        rt.block_on(async {
            for i in 0..n { let t = Instant::now(); client.get(&keys[i % 100]).await.unwrap(); res[0].1.push(t.elapsed()); }
            let mut c = conn.clone();
            for i in 0..n {
                let t = Instant::now();
                let mut g = MetaGet::new(Key::new(keys[i % 100].clone()).unwrap()); g.value = true; g.client_flags = true; g.ttl = true;
                c.ready().await.unwrap().call(Command::MetaGet(g)).await.unwrap();
                res[1].1.push(t.elapsed());
            }
            use async_memcached::AsciiProtocol;
            for i in 0..n { let t = Instant::now(); am.get(&keys[i % 100]).await.unwrap(); res[2].1.push(t.elapsed()); }
        });
    }
    for (name, s) in &mut res { s.sort(); println!("{name:10} p50 {:?} p90 {:?}", s[s.len()/2], s[s.len()*9/10]); }
}
#[allow(dead_code)]
fn sizes(client: &Client) {
    println!("get future: {} bytes", std::mem::size_of_val(&client.get("k")));
    println!("send future: {} bytes", std::mem::size_of_val(&client.send(memha_client::proto::Command::Version)));
    println!("set future: {} bytes", std::mem::size_of_val(&client.set("k", "v").send()));
}
