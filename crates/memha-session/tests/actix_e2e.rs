//! The actix example's site over real HTTP on 3 real memcached nodes: log
//! in, stay logged in (and counting) through a node killed and restarted
//! empty, log out and find the session gone from every node; a forged
//! cookie gets a fresh anonymous session. The store is wrapped to note
//! the keys it saves (the cookie is encrypted), so each node can be
//! checked directly.

mod common;

#[path = "../examples/actix_sessions.rs"]
#[allow(dead_code)]
mod site;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time;

use actix_web::cookie::Key;
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer};
use common::{counts_on, get_with_cookie, parse_home, value_on_node, wait_state, Visitor};
use memha_client::{Client, NodeState};
use memha_session::ActixSessionStore;
use memha_tests::MemcachedCluster;
use reqwest::StatusCode;

/// actix-session's cookie name.
const COOKIE: &str = "id";

/// The running site; stopped when dropped.
struct Site {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl Drop for Site {
    fn drop(&mut self) {
        // Stopping completes on the server's own thread.
        drop(self.handle.stop(false));
    }
}

/// Serves the example's site over `client` on a free loopback port, on
/// its own thread with its own actix system, as `HttpServer` runs.
fn serve(client: Client) -> (Site, Saved) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let saved = Saved::default();
    let store = Recording {
        inner: ActixSessionStore::new(client),
        saved: saved.clone(),
    };
    let key = Key::generate();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .wrap(site::sessions(store.clone(), key.clone()))
                    .configure(site::routes)
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .expect("listen")
            .run();
            let _ = tx.send(server.handle());
            server.await
        })
    });
    let handle = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server started");
    (Site { addr, handle }, saved)
}

/// The memcached keys of the sessions the site saved, latest last.
#[derive(Clone, Default)]
struct Saved(Arc<Mutex<Vec<String>>>);

impl Saved {
    fn push(&self, key: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(key);
    }

    fn last(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .cloned()
    }
}

/// The memha store, noting the key of every session saved or updated, so
/// the test can look for it on each node.
#[derive(Clone)]
struct Recording {
    inner: ActixSessionStore,
    saved: Saved,
}

type State = HashMap<String, String>;

impl SessionStore for Recording {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        self.inner.load(key).await
    }

    async fn save(&self, state: State, ttl: &time::Duration) -> Result<SessionKey, SaveError> {
        let key = self.inner.save(state, ttl).await?;
        self.saved.push(self.inner.key(&key));
        Ok(key)
    }

    async fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &time::Duration,
    ) -> Result<SessionKey, UpdateError> {
        let key = self.inner.update(key, state, ttl).await?;
        self.saved.push(self.inner.key(&key));
        Ok(key)
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &time::Duration) -> anyhow::Result<()> {
        self.inner.update_ttl(key, ttl).await
    }

    async fn delete(&self, key: &SessionKey) -> anyhow::Result<()> {
        self.inner.delete(key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_node_kill_restart_and_logout() {
    let cluster = MemcachedCluster::start(3).expect("memcached");
    let client = common::client(cluster.addrs()).await;
    let (site, saved) = serve(client.clone());
    let visitor = Visitor::new(site.addr);
    let on_every_node = |key: &str| {
        cluster
            .addrs()
            .into_iter()
            .map(|node| value_on_node(node, key).is_some())
            .collect::<Vec<_>>()
    };

    let first = visitor.home().await;
    assert_eq!((first.user, first.visits), (None, 1));
    let anonymous = saved.last().expect("the anonymous session was saved");

    assert_eq!(
        visitor.login("alice", "nope").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(visitor.login("alice", "wonderland").await, StatusCode::OK);
    let mut visits = 1;
    counts_on(&visitor, "alice", &mut visits).await;
    // Login renewed the key: the anonymous session is gone, the new one is
    // on every node and kept its key through the updates.
    let key = saved.last().expect("the session was saved");
    assert_ne!(key, anonymous, "login must give a new session key");
    assert_eq!(on_every_node(&key), [true; 3], "{key}");
    assert_eq!(on_every_node(&anonymous), [false; 3], "{anonymous}");

    cluster.node(0).kill().expect("kill");
    wait_state(&client, cluster.node(0).addr(), NodeState::Down).await;
    counts_on(&visitor, "alice", &mut visits).await;

    cluster.node(0).restart().expect("restart");
    wait_state(&client, cluster.node(0).addr(), NodeState::Up).await;
    counts_on(&visitor, "alice", &mut visits).await;
    assert_eq!(
        saved.last().as_deref(),
        Some(key.as_str()),
        "the key changed"
    );
    assert_eq!(
        on_every_node(&key),
        [true; 3],
        "the restarted node never got it"
    );

    visitor.logout().await;
    assert_eq!(
        visitor.cookie(COOKIE),
        None,
        "the cookie outlived the logout"
    );
    assert_eq!(
        on_every_node(&key),
        [false; 3],
        "the session outlived the logout"
    );
    // A fresh anonymous session, counting from 1.
    for visit in 1..=3 {
        let home = visitor.home().await;
        assert_eq!((home.user, home.visits), (None, visit), "logged in again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cookie_gets_a_fresh_anonymous_session() {
    let cluster = MemcachedCluster::start(3).expect("memcached");
    let client = common::client(cluster.addrs()).await;
    let (site, _) = serve(client);
    let long = "x".repeat(3000);
    for value in [
        "garbage",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        long.as_str(),
        "",
    ] {
        let (status, body, set_cookies) =
            get_with_cookie(site.addr, &format!("{COOKIE}={value}")).await;
        assert_eq!(status, StatusCode::OK, "cookie {value:?}: {body}");
        let home = parse_home(&body);
        assert_eq!((home.user, home.visits), (None, 1), "cookie {value:?}");
        assert!(
            set_cookies
                .iter()
                .any(|c| c.starts_with(&format!("{COOKIE}="))),
            "no fresh session for cookie {value:?}"
        );
    }
}
