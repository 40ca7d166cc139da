//! The DNS source with `localhost` (resolved from /etc/hosts: no network).

use std::collections::BTreeSet;

use memha_discovery::{DnsSource, NodeSource, Watcher};
use tower::discover::Change;

#[tokio::test]
async fn localhost_resolves_to_loopback_nodes() {
    let source = DnsSource::new("localhost", 11311);
    let nodes = source.nodes().await.unwrap();

    assert!(!nodes.is_empty());
    let ips: BTreeSet<_> = nodes.iter().map(|node| node.ip.unwrap()).collect();
    assert_eq!(ips.len(), nodes.len(), "each address once: {nodes:?}");
    for node in &nodes {
        assert_eq!(node.host, "localhost");
        assert_eq!(node.port, 11311);
        assert!(node.ip.unwrap().is_loopback(), "{node:?}");
        assert_eq!(node.id().as_str(), node.socket_addr().unwrap().to_string());
    }
    assert!(
        ips.contains(&"127.0.0.1".parse().unwrap()) || ips.contains(&"::1".parse().unwrap()),
        "{ips:?}"
    );
    assert_eq!(source.name(), "dns:localhost:11311");
}

#[tokio::test]
async fn a_watcher_over_dns_inserts_every_record() {
    let expected = DnsSource::new("localhost", 11311).nodes().await.unwrap();
    let mut watcher = Watcher::new(DnsSource::new("localhost", 11311));
    assert_eq!(watcher.ready().await.unwrap().len(), expected.len());
    let mut inserted = Vec::new();
    for _ in 0..expected.len() {
        match watcher.next_change().await.unwrap() {
            Change::Insert(_, addr) => inserted.push(addr),
            Change::Remove(id) => panic!("unexpected remove of {id}"),
        }
    }
    inserted.sort();
    let mut expected = expected;
    expected.sort();
    assert_eq!(inserted, expected);
}
