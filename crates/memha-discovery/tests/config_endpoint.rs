//! The ElastiCache configuration endpoint source against a fake endpoint on
//! 127.0.0.1 that speaks the exact wire format.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use memha_discovery::{ElastiCacheConfigSource, ErrorKind, NodeAddr, NodeSource};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the fake endpoint answers.
#[derive(Clone)]
enum Behaviour {
    /// A modern engine: `config get cluster` answers this payload.
    Config(String),
    /// An engine before 1.4.14: `ERROR`, then the payload as the
    /// `AmazonElastiCache:cluster` item (or a miss when `None`).
    Legacy(Option<String>),
    /// These bytes whatever the request, then the connection is closed.
    Raw(Vec<u8>),
    /// Reads requests and never answers.
    Silent,
}

struct FakeEndpoint {
    port: u16,
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeEndpoint {
    async fn start(behaviour: Behaviour) -> FakeEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let behaviour = Arc::new(Mutex::new(behaviour));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (b, r) = (behaviour.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(socket, b.clone(), r.clone()));
            }
        });
        FakeEndpoint {
            port,
            behaviour,
            requests,
        }
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn source(&self) -> ElastiCacheConfigSource {
        ElastiCacheConfigSource::new("127.0.0.1", self.port)
    }
}

async fn serve(
    socket: tokio::net::TcpStream,
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        requests.lock().unwrap().push(line.clone());
        let behaviour = behaviour.lock().unwrap().clone();
        let reply: Vec<u8> = match (behaviour, line.as_str()) {
            (Behaviour::Config(payload), "config get cluster") => config_reply(&payload),
            (Behaviour::Legacy(_), "config get cluster") => b"ERROR\r\n".to_vec(),
            (Behaviour::Legacy(Some(payload)), "get AmazonElastiCache:cluster") => format!(
                "VALUE AmazonElastiCache:cluster 0 {}\r\n{payload}\r\nEND\r\n",
                payload.len()
            )
            .into_bytes(),
            (Behaviour::Legacy(None), "get AmazonElastiCache:cluster") => b"END\r\n".to_vec(),
            (Behaviour::Raw(bytes), _) => {
                let _ = write.write_all(&bytes).await;
                return;
            }
            (Behaviour::Silent, _) => continue,
            _ => b"ERROR\r\n".to_vec(),
        };
        if write.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// `CONFIG cluster 0 <bytes>\r\n<payload>\r\nEND\r\n`, as ElastiCache sends it.
fn config_reply(payload: &str) -> Vec<u8> {
    format!("CONFIG cluster 0 {}\r\n{payload}\r\nEND\r\n", payload.len()).into_bytes()
}

fn node(host: &str, ip: &str, port: u16) -> NodeAddr {
    NodeAddr::new(host, port).with_ip(ip.parse().unwrap())
}

#[tokio::test]
async fn several_nodes_with_an_empty_ip() {
    let payload = "12\n\
        mycluster.abc.0001.use1.cache.amazonaws.com|10.82.235.120|11211 \
        mycluster.abc.0002.use1.cache.amazonaws.com||11211 \
        mycluster.abc.0003.use1.cache.amazonaws.com|10.80.249.27|11212\n";
    let fake = FakeEndpoint::start(Behaviour::Config(payload.into())).await;
    let source = fake.source();

    let nodes = source.nodes().await.unwrap();

    assert_eq!(
        nodes,
        vec![
            node(
                "mycluster.abc.0001.use1.cache.amazonaws.com",
                "10.82.235.120",
                11211
            ),
            NodeAddr::new("mycluster.abc.0002.use1.cache.amazonaws.com", 11211),
            node(
                "mycluster.abc.0003.use1.cache.amazonaws.com",
                "10.80.249.27",
                11212
            ),
        ]
    );
    assert_eq!(nodes[1].ip, None, "an empty IP stays unknown");
    assert_eq!(
        nodes[1].id().as_str(),
        "mycluster.abc.0002.use1.cache.amazonaws.com:11211"
    );
    assert_eq!(source.version(), Some(12));
    assert_eq!(fake.requests(), ["config get cluster"]);
}

#[tokio::test]
async fn an_older_version_is_ignored() {
    let fake = FakeEndpoint::start(Behaviour::Config(
        "5\na|10.0.0.1|11211 b|10.0.0.2|11211 c|10.0.0.3|11211\n".into(),
    ))
    .await;
    let source = fake.source();
    let v5 = source.nodes().await.unwrap();
    assert_eq!(v5.len(), 3);

    // A node behind the endpoint that has not seen the change yet.
    fake.set(Behaviour::Config("3\na|10.0.0.1|11211\n".into()));
    assert_eq!(
        source.nodes().await.unwrap(),
        v5,
        "version 3 < 5 must be ignored"
    );
    assert_eq!(source.version(), Some(5));

    // The same version again, and then a newer one, are taken.
    fake.set(Behaviour::Config(
        "5\na|10.0.0.1|11211 b|10.0.0.2|11211 c|10.0.0.3|11211\n".into(),
    ));
    assert_eq!(source.nodes().await.unwrap(), v5);
    fake.set(Behaviour::Config(
        "6\na|10.0.0.1|11211 c|10.0.0.3|11211\n".into(),
    ));
    assert_eq!(
        source.nodes().await.unwrap(),
        vec![node("a", "10.0.0.1", 11211), node("c", "10.0.0.3", 11211)]
    );
    assert_eq!(source.version(), Some(6));
    assert_eq!(fake.requests().len(), 4, "one request per poll");
}

#[tokio::test]
async fn error_falls_back_to_the_legacy_item() {
    let fake = FakeEndpoint::start(Behaviour::Legacy(Some(
        "7\nold.0001.cache.amazonaws.com|10.1.0.1|11211 old.0002.cache.amazonaws.com|10.1.0.2|11211\n".into(),
    )))
    .await;
    let source = fake.source();

    let nodes = source.nodes().await.unwrap();

    assert_eq!(
        nodes,
        vec![
            node("old.0001.cache.amazonaws.com", "10.1.0.1", 11211),
            node("old.0002.cache.amazonaws.com", "10.1.0.2", 11211),
        ]
    );
    assert_eq!(source.version(), Some(7));
    assert_eq!(
        fake.requests(),
        ["config get cluster", "get AmazonElastiCache:cluster"]
    );
}

#[tokio::test]
async fn a_plain_memcached_is_not_a_configuration_endpoint() {
    let fake = FakeEndpoint::start(Behaviour::Legacy(None)).await;
    let err = fake.source().nodes().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(
        err.to_string()
            .contains("not an ElastiCache configuration endpoint"),
        "{err}"
    );
}

#[tokio::test]
async fn malformed_or_truncated_replies_are_typed_errors() {
    let fake = FakeEndpoint::start(Behaviour::Silent).await;
    let cases: Vec<(&str, Vec<u8>, ErrorKind)> = vec![
        (
            "bad version",
            config_reply("twelve\na|10.0.0.1|11211\n"),
            ErrorKind::InvalidConfig,
        ),
        (
            "entry without port",
            config_reply("12\na|10.0.0.1\n"),
            ErrorKind::InvalidConfig,
        ),
        (
            "port out of range",
            config_reply("12\na|10.0.0.1|70000\n"),
            ErrorKind::InvalidConfig,
        ),
        (
            "bad ip",
            config_reply("12\na|10.0.0.300|11211\n"),
            ErrorKind::InvalidConfig,
        ),
        ("no nodes", config_reply("12\n\n"), ErrorKind::InvalidConfig),
        ("empty payload", config_reply(""), ErrorKind::InvalidConfig),
        (
            "payload cut short",
            b"CONFIG cluster 0 64\r\n12\na|10.0.0.1|11211 b|10.0".to_vec(),
            ErrorKind::Protocol,
        ),
        (
            "header cut short",
            b"CONFIG clus".to_vec(),
            ErrorKind::Protocol,
        ),
        ("nothing at all", Vec::new(), ErrorKind::Protocol),
        (
            "not a config reply",
            b"STORED\r\n".to_vec(),
            ErrorKind::Protocol,
        ),
        (
            "byte count lies",
            b"CONFIG cluster 0 3\r\n12\na|10.0.0.1|11211\n\r\nEND\r\n".to_vec(),
            ErrorKind::Protocol,
        ),
        (
            "server error",
            b"SERVER_ERROR out of memory\r\n".to_vec(),
            ErrorKind::Protocol,
        ),
    ];
    for (what, reply, kind) in cases {
        fake.set(Behaviour::Raw(reply));
        let source = fake.source();
        let err = source
            .nodes()
            .await
            .expect_err(&format!("{what}: expected an error"));
        assert_eq!(err.kind(), kind, "{what}: {err}");
        assert!(err.is_protocol(), "{what}");
        assert!(err.to_string().contains("127.0.0.1"), "{what}: {err}");
        assert_eq!(source.version(), None, "{what}: nothing was accepted");
    }
}

#[tokio::test]
async fn refused_connection_is_an_io_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = ElastiCacheConfigSource::new("127.0.0.1", port)
        .nodes()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.is_transient());
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test(start_paused = true)]
async fn a_silent_endpoint_times_out() {
    let fake = FakeEndpoint::start(Behaviour::Silent).await;
    let started = tokio::time::Instant::now();
    let err = fake
        .source()
        .read_timeout(Duration::from_secs(3))
        .nodes()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(fake.requests(), ["config get cluster"]);
}
