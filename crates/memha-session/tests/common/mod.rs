//! What the end-to-end tests share: a client that notices node changes
//! quickly, bounded waits on node states, direct reads of a node, and a
//! browser-like HTTP visitor that keeps cookies.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use memha_client::discovery::NodeId;
use memha_client::{Client, HealthConfig, NodeState};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::StatusCode;

/// The most any wait for a node's state takes.
pub(crate) const STATE_WAIT: Duration = Duration::from_secs(20);

/// A client of `nodes` with short timeouts and frequent probes, so a dead,
/// cut off or returning node is noticed within a second or so.
pub(crate) async fn client(nodes: Vec<SocketAddr>) -> Client {
    Client::builder()
        .nodes(nodes)
        .timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(300))
        .health(
            HealthConfig::default()
                .up_interval(Duration::from_millis(100))
                .backoff(Duration::from_millis(50), 1.5, Duration::from_millis(300)),
        )
        .build()
        .await
        .expect("client")
}

/// Waits (at most [`STATE_WAIT`]) until the client sees node `addr` in `wanted`.
pub(crate) async fn wait_state(client: &Client, addr: SocketAddr, wanted: NodeState) {
    let cluster = client.cluster().expect("a replicated client");
    let id: NodeId = cluster
        .metrics()
        .nodes
        .into_iter()
        .find(|node| node.addr == addr)
        .map(|node| node.id)
        .unwrap_or_else(|| panic!("{addr} is not a member"));
    cluster
        .wait_for_node_state(&id, |state| state == wanted, STATE_WAIT)
        .await
        .unwrap_or_else(|err| panic!("{addr} never became {wanted:?}: {err}"));
}

/// The live value of `key` on the node at `addr`, read directly with the
/// meta protocol (no memha in the way): `None` when the node has no such
/// item or only a tombstone of it (memha's deletes leave the item marked
/// stale for a few seconds, `X` in the reply, which memha reads as deleted).
pub(crate) fn value_on_node(addr: SocketAddr, key: &str) -> Option<Vec<u8>> {
    let request = format!("mg {key} v\r\nmn\r\n");
    let reply =
        memha_tests::raw_roundtrip(addr, request.as_bytes(), b"MN\r\n", Duration::from_secs(5))
            .unwrap_or_else(|err| panic!("reading {key} on {addr}: {err}"));
    if reply.starts_with(b"EN\r\n") {
        return None;
    }
    // VA <len> <flags>\r\n<data>\r\nMN\r\n
    let header_end = reply
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("a header line");
    let header = String::from_utf8_lossy(&reply[..header_end]).into_owned();
    let mut fields = header.split(' ');
    assert_eq!(fields.next(), Some("VA"), "unexpected reply {header:?}");
    let len: usize = fields
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a length");
    if fields.any(|flag| flag == "X") {
        return None; // a tombstone
    }
    Some(reply[header_end + 2..header_end + 2 + len].to_vec())
}

/// What `GET /` answers: the user (`None` when anonymous) and the visit count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Home {
    pub(crate) user: Option<String>,
    pub(crate) visits: u64,
}

impl Home {
    fn parse(body: &str) -> Home {
        let mut user = None;
        let mut visits = None;
        for field in body.split_whitespace() {
            match field.split_once('=') {
                Some(("user", "-")) => {}
                Some(("user", name)) => user = Some(name.to_owned()),
                Some(("visits", n)) => visits = n.parse().ok(),
                _ => panic!("unexpected answer {body:?}"),
            }
        }
        Home {
            user,
            visits: visits.unwrap_or_else(|| panic!("no visit count in {body:?}")),
        }
    }
}

/// A browser: an HTTP client keeping the site's cookies.
pub(crate) struct Visitor {
    http: reqwest::Client,
    jar: Arc<Jar>,
    base: reqwest::Url,
}

impl Visitor {
    /// A visitor of the site at `addr`, with an empty cookie jar.
    pub(crate) fn new(addr: SocketAddr) -> Visitor {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        Visitor {
            http,
            jar,
            base: format!("http://{addr}/").parse().expect("url"),
        }
    }

    /// `GET /`, which must succeed.
    pub(crate) async fn home(&self) -> Home {
        let response = self
            .http
            .get(self.base.clone())
            .send()
            .await
            .expect("GET /");
        let status = response.status();
        let body = response.text().await.expect("body");
        assert_eq!(status, StatusCode::OK, "GET / answered {status}: {body}");
        Home::parse(&body)
    }

    /// `POST /login`; the status.
    pub(crate) async fn login(&self, user: &str, password: &str) -> StatusCode {
        self.http
            .post(self.base.join("login").expect("url"))
            .form(&[("user", user), ("password", password)])
            .send()
            .await
            .expect("POST /login")
            .status()
    }

    /// `POST /logout`, which must succeed.
    pub(crate) async fn logout(&self) {
        let response = self
            .http
            .post(self.base.join("logout").expect("url"))
            .send()
            .await
            .expect("POST /logout");
        assert_eq!(response.status(), StatusCode::OK, "logout failed");
    }

    /// The value of the session cookie `name`, if the jar holds one.
    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        let header = self.jar.cookies(&self.base)?;
        let header = header.to_str().expect("ascii cookies").to_owned();
        header.split("; ").find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| value.to_owned())
        })
    }
}

/// `GET /` with exactly this `Cookie` header and no cookie jar: the status,
/// the body and the `Set-Cookie` headers.
pub(crate) async fn get_with_cookie(
    addr: SocketAddr,
    cookie: &str,
) -> (StatusCode, String, Vec<String>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let response = http
        .get(format!("http://{addr}/"))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .expect("GET /");
    let status = response.status();
    let set_cookies = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|value| value.to_str().expect("ascii").to_owned())
        .collect();
    (status, response.text().await.expect("body"), set_cookies)
}

/// Parses an answer of `GET /`.
pub(crate) fn parse_home(body: &str) -> Home {
    Home::parse(body)
}

/// Three visits, each counted once more than the last.
pub(crate) async fn counts_on(visitor: &Visitor, user: &str, visits: &mut u64) {
    for _ in 0..3 {
        let home = visitor.home().await;
        *visits += 1;
        assert_eq!(home.user.as_deref(), Some(user), "logged out: {home:?}");
        assert_eq!(home.visits, *visits, "the counter skipped: {home:?}");
    }
}
