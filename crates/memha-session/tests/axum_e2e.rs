//! The axum example's site over real HTTP on 3 real memcached nodes: a
//! user stays logged in (and counting) through a node killed and restarted
//! empty, stays logged out after logging out while a node was cut off, and
//! a forged cookie gets a fresh anonymous session.

mod common;

#[path = "../examples/axum_sessions.rs"]
#[allow(dead_code)]
mod site;

use std::net::SocketAddr;

use common::{counts_on, get_with_cookie, parse_home, value_on_node, wait_state, Visitor};
use memha_client::{Client, NodeState};
use memha_session::TowerSessionStore;
use memha_tests::{FaultProxy, MemcachedCluster, ProxyMode};
use reqwest::StatusCode;
use tower_sessions::session::Id;

/// tower-sessions' cookie name.
const COOKIE: &str = "id";

/// Serves the example's site over `client` on a free loopback port.
async fn serve(client: Client) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = site::app(TowerSessionStore::new(client));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stays_logged_in_through_a_node_killed_and_restarted_empty() {
    let cluster = MemcachedCluster::start(3).expect("memcached");
    let client = common::client(cluster.addrs()).await;
    let addr = serve(client.clone()).await;
    let visitor = Visitor::new(addr);

    let first = visitor.home().await;
    assert_eq!((first.user, first.visits), (None, 1));
    let anonymous_id = visitor.cookie(COOKIE).expect("a session cookie");
    assert_eq!(
        visitor.login("alice", "wrong").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(visitor.login("alice", "wonderland").await, StatusCode::OK);
    let id = visitor.cookie(COOKIE).expect("a session cookie");
    assert_ne!(id, anonymous_id, "login must give a new session id");
    let mut visits = 1;
    counts_on(&visitor, "alice", &mut visits).await;

    let key = format!("session:{id}");
    for node in cluster.addrs() {
        assert!(
            value_on_node(node, &key).is_some(),
            "{node} lacks the session"
        );
    }
    let old_key = format!("session:{anonymous_id}");
    for node in cluster.addrs() {
        assert!(
            value_on_node(node, &old_key).is_none(),
            "{node} kept the pre-login session"
        );
    }

    // A node dies: still logged in, still counting.
    cluster.node(0).kill().expect("kill");
    wait_state(&client, cluster.node(0).addr(), NodeState::Down).await;
    counts_on(&visitor, "alice", &mut visits).await;

    // It comes back empty: still logged in, and the next saves write it there too.
    cluster.node(0).restart().expect("restart");
    wait_state(&client, cluster.node(0).addr(), NodeState::Up).await;
    counts_on(&visitor, "alice", &mut visits).await;
    let stored: Vec<_> = cluster
        .addrs()
        .into_iter()
        .map(|node| value_on_node(node, &key))
        .collect();
    assert!(
        stored[0].is_some(),
        "the restarted node never got the session"
    );
    assert!(
        stored.windows(2).all(|pair| pair[0] == pair[1]),
        "the nodes disagree"
    );

    // Another node dies: the restarted one serves the session.
    cluster.node(1).kill().expect("kill");
    wait_state(&client, cluster.node(1).addr(), NodeState::Down).await;
    counts_on(&visitor, "alice", &mut visits).await;

    visitor.logout().await;
    assert_eq!(visitor.home().await.user, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_out_while_a_node_was_cut_off_stays_logged_out() {
    let cluster = MemcachedCluster::start(3).expect("memcached");
    let proxies: Vec<FaultProxy> = cluster
        .addrs()
        .into_iter()
        .map(|node| FaultProxy::start(node).expect("proxy"))
        .collect();
    let client = common::client(proxies.iter().map(FaultProxy::addr).collect()).await;
    let addr = serve(client.clone()).await;
    let visitor = Visitor::new(addr);

    assert_eq!(visitor.login("bob", "builder").await, StatusCode::OK);
    let mut visits = 0;
    counts_on(&visitor, "bob", &mut visits).await;
    let id = visitor.cookie(COOKIE).expect("a session cookie");
    let key = format!("session:{id}");
    for node in cluster.addrs() {
        assert!(
            value_on_node(node, &key).is_some(),
            "{node} lacks the session"
        );
    }

    // Node 0 is cut off (it runs on, holding the session), bob logs out.
    proxies[0].set_mode(ProxyMode::Blackhole);
    wait_state(&client, proxies[0].addr(), NodeState::Down).await;
    visitor.logout().await;
    assert_eq!(
        visitor.cookie(COOKIE),
        None,
        "the cookie outlived the logout"
    );
    assert!(
        value_on_node(cluster.node(0).addr(), &key).is_some(),
        "the cut-off node should still hold the session until it rejoins"
    );

    // The partition heals: the node rejoins, and the session must not come back.
    proxies[0].set_mode(ProxyMode::Pass);
    wait_state(&client, proxies[0].addr(), NodeState::Up).await;
    for _ in 0..6 {
        assert_eq!(visitor.home().await.user, None, "logged in again");
    }
    // Even replaying the old cookie.
    for _ in 0..6 {
        let (status, body, _) = get_with_cookie(addr, &format!("{COOKIE}={id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(parse_home(&body).user, None, "the old session came back");
    }
    for node in cluster.addrs() {
        assert_eq!(
            value_on_node(node, &key),
            None,
            "{node} still holds the session"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_garbage_cookie_gets_a_fresh_anonymous_session() {
    let cluster = MemcachedCluster::start(3).expect("memcached");
    let client = common::client(cluster.addrs()).await;
    let addr = serve(client).await;

    // A well-formed id no session has, garbage, an oversized value, and
    // an id of the wrong length.
    let unknown = Id::default().to_string();
    let long = "A".repeat(3000);
    let forged = [
        unknown.as_str(),
        "garbage!",
        "%00%ff%20",
        long.as_str(),
        "AAAA",
        "",
    ];
    for value in forged {
        let (status, body, set_cookies) = get_with_cookie(addr, &format!("{COOKIE}={value}")).await;
        assert_eq!(status, StatusCode::OK, "cookie {value:?}: {body}");
        let home = parse_home(&body);
        assert_eq!((home.user, home.visits), (None, 1), "cookie {value:?}");
        let fresh = set_cookies
            .iter()
            .find_map(|c| c.strip_prefix(&format!("{COOKIE}=")))
            .and_then(|c| c.split(';').next())
            .unwrap_or_else(|| panic!("no fresh session for cookie {value:?}: {set_cookies:?}"));
        assert_ne!(fresh, value, "the forged id was adopted");
        assert!(fresh.parse::<Id>().is_ok(), "not a session id: {fresh}");
    }
}
