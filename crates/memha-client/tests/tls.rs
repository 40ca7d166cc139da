//! TLS to real memcached servers started with `-Z` (TLS on), with
//! certificates made here by rcgen.
#![cfg(feature = "tls")]

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memha_client::discovery::{
    ElastiCacheConfigSource, ErrorKind as DiscoveryErrorKind, NodeSource,
};
use memha_client::health::Probe;
use memha_client::{
    Client, ConnectionConfig, ErrorKind, TlsConfig, TlsConfigBuilder, TlsError, TlsErrorKind,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for `names` (DNS names or IP addresses): (chain PEM, key PEM).
    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// One memcached process with TLS on, killed on drop.
struct TlsNode {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl TlsNode {
    /// A node presenting a certificate for 127.0.0.1 and `memcached.test`,
    /// signed by `ca`. With `client_ca`, it requires a client certificate
    /// signed by it.
    fn start(ca: &Ca, client_ca: Option<&Ca>) -> TlsNode {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "memha-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        let (chain, key) = ca.issue(
            &["127.0.0.1", "memcached.test"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        fs::write(dir.join("server.pem"), chain).unwrap();
        fs::write(dir.join("server.key"), key).unwrap();
        let mut options = format!(
            "ssl_chain_cert={},ssl_key={}",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        );
        if let Some(client_ca) = client_ca {
            fs::write(dir.join("client-ca.pem"), client_ca.pem()).unwrap();
            options.push_str(&format!(
                ",ssl_ca_cert={},ssl_verify_mode=2",
                dir.join("client-ca.pem").display()
            ));
        }
        let port = free_port();
        let child = Command::new(memha_tests::memcached_binary().expect("memcached"))
            .args(["-l", "127.0.0.1", "-U", "0", "-t", "1", "-m", "16"])
            // Ignored unless run as root, where memcached requires it.
            .args(["-u", "root"])
            .arg("-p")
            .arg(port.to_string())
            .arg("-Z")
            .arg("-o")
            .arg(options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn memcached");
        let mut node = TlsNode {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        node.wait_listening();
        node
    }

    fn wait_listening(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!("memcached -Z exited at start ({status}): {stderr}");
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "memcached -Z did not listen on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn trusting(ca: &Ca) -> TlsConfigBuilder {
    TlsConfig::builder().ca_pem(ca.pem())
}

/// A single-node client (the node stack alone) with these connection settings.
fn client(addr: SocketAddr, connection: ConnectionConfig) -> Client {
    Client::builder()
        .node(addr)
        .timeout(Duration::from_secs(2))
        .connection(connection)
        .build_single_node()
        .unwrap()
}

fn tls(config: TlsConfig) -> ConnectionConfig {
    ConnectionConfig::default().tls(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_a_custom_ca() {
    let ca = Ca::new("memha test CA");
    let node = TlsNode::start(&ca, None);
    let client = client(node.addr, tls(trusting(&ca).build().unwrap()));

    client.set("tls:key", "over TLS").flags(3).await.unwrap();
    let item = client.gets("tls:key").await.unwrap().expect("stored");
    assert_eq!((&item.value[..], item.flags), (&b"over TLS"[..], 3));
    assert_eq!(
        client
            .cas("tls:key", "swapped", item.cas.unwrap())
            .await
            .unwrap(),
        memha_client::StoreOutcome::Stored
    );
    assert_eq!(
        client.increment("tls:n", 5).initial(1).await.unwrap(),
        Some(1)
    );
    assert_eq!(client.increment("tls:n", 5).await.unwrap(), Some(6));
    assert_eq!(
        client.delete("tls:key").await.unwrap(),
        memha_client::DeleteOutcome::Deleted
    );
    assert!(client.get("tls:key").await.unwrap().is_none());

    // Many concurrent requests share the one pipelined TLS connection.
    let value = vec![b'v'; 40_000];
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let client = client.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let key = format!("tls:many:{i}");
                client.set(key.as_str(), value.clone()).await.unwrap();
                let got = client.get(key.as_str()).await.unwrap().expect("stored");
                assert_eq!(got.value, value);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn server_name_override_is_checked() {
    let ca = Ca::new("memha test CA");
    let node = TlsNode::start(&ca, None);

    let named = client(
        node.addr,
        tls(trusting(&ca).server_name("memcached.test").build().unwrap()),
    );
    named.set("k", "v").await.unwrap();

    let wrong = client(
        node.addr,
        tls(trusting(&ca).server_name("elsewhere.test").build().unwrap()),
    );
    let err = wrong.get("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    let cause = TlsError::find(&err).expect("a TLS cause");
    assert_eq!(cause.kind(), TlsErrorKind::NameMismatch, "{err}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_typed_connect_error() {
    let ca = Ca::new("memha test CA");
    let node = TlsNode::start(&ca, None);
    let other = Ca::new("another CA");
    let client = client(node.addr, tls(trusting(&other).build().unwrap()));

    let started = Instant::now();
    let err = client.set("k", "v").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "fails fast");
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(err.is_unsent(), "nothing was sent: {err:?}");
    assert_eq!(err.node(), Some(node.addr));
    let cause = TlsError::find(&err).expect("a TLS cause");
    assert_eq!(cause.kind(), TlsErrorKind::UntrustedCertificate, "{err}");
    let message = err.to_string();
    assert!(message.contains("not trusted"), "{message}");
    assert!(message.contains("UnknownIssuer"), "{message}");
}

#[tokio::test]
async fn a_plaintext_client_against_a_tls_node_fails_clearly_and_fast() {
    let ca = Ca::new("memha test CA");
    let node = TlsNode::start(&ca, None);
    let client = client(node.addr, ConnectionConfig::default());

    let started = Instant::now();
    let err = client.get("k").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2) + Duration::from_millis(500),
        "{took:?}"
    );
    assert!(err.is_connection(), "{err:?}");
    assert!(err.to_string().contains("does it require TLS?"), "{err}");
}

#[tokio::test]
async fn a_tls_client_against_a_plaintext_node_fails_clearly() {
    let cluster = memha_tests::MemcachedCluster::start(1).unwrap();
    let ca = Ca::new("memha test CA");
    let client = Client::builder()
        .node(cluster.addrs()[0])
        .timeout(Duration::from_secs(2))
        .connection(tls(trusting(&ca).build().unwrap()).connect_timeout(Duration::from_millis(500)))
        .build_single_node()
        .unwrap();

    let started = Instant::now();
    let err = client.get("k").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "bounded by the connect timeout: {took:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    let cause = TlsError::find(&err).expect("a TLS cause");
    assert_eq!(cause.kind(), TlsErrorKind::NotTls, "{err}");
}

#[tokio::test]
async fn client_certificates() {
    let ca = Ca::new("memha test CA");
    let client_ca = Ca::new("memha client CA");
    let node = TlsNode::start(&ca, Some(&client_ca));

    let (chain, key) = client_ca.issue(&["memha-client"], ExtendedKeyUsagePurpose::ClientAuth);
    let with_cert = client(
        node.addr,
        tls(trusting(&ca).client_cert_pem(chain, key).build().unwrap()),
    );
    with_cert.set("mtls", "yes").await.unwrap();
    assert_eq!(
        &with_cert.get("mtls").await.unwrap().unwrap().value[..],
        b"yes"
    );

    // Without a certificate, or with one the node does not trust, the node
    // refuses: a clear error, never a hang.
    let (stranger_chain, stranger_key) =
        Ca::new("stranger CA").issue(&["memha-client"], ExtendedKeyUsagePurpose::ClientAuth);
    for config in [
        trusting(&ca).build().unwrap(),
        trusting(&ca)
            .client_cert_pem(stranger_chain, stranger_key)
            .build()
            .unwrap(),
    ] {
        let refused = client(node.addr, tls(config));
        let started = Instant::now();
        let err = refused.get("mtls").await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "{err}");
        assert!(err.is_connection(), "{err:?}");
        let cause = TlsError::find(&err).expect("a TLS cause");
        assert_eq!(cause.kind(), TlsErrorKind::Refused, "{err}");
    }
}

#[tokio::test]
async fn health_probes_use_the_connection_tls_settings() {
    let ca = Ca::new("memha test CA");
    let node = TlsNode::start(&ca, None);
    let timeout = Duration::from_secs(1);

    let over_tls = tls(trusting(&ca).build().unwrap()).probe(node.addr, timeout);
    let report = over_tls.probe().await.expect("a TLS probe");
    assert_eq!(report.pid, Some(node.child.id()));

    let plain = ConnectionConfig::default().probe(node.addr, timeout);
    assert!(plain.probe().await.is_err(), "a plaintext probe fails");
}

#[test]
fn unusable_settings_are_config_errors() {
    let kind = |builder: TlsConfigBuilder| builder.build().unwrap_err().kind();
    assert_eq!(kind(TlsConfig::builder()), TlsErrorKind::Config);
    assert_eq!(
        kind(TlsConfig::builder().ca_pem("junk")),
        TlsErrorKind::Config
    );
    assert_eq!(
        kind(TlsConfig::builder().ca_pem_file("/nonexistent/ca.pem")),
        TlsErrorKind::Config
    );
    let ca = Ca::new("memha test CA");
    assert_eq!(
        kind(trusting(&ca).server_name("not a name")),
        TlsErrorKind::Config
    );
    let (chain, _) = ca.issue(&["a"], ExtendedKeyUsagePurpose::ClientAuth);
    let (_, other_key) = ca.issue(&["b"], ExtendedKeyUsagePurpose::ClientAuth);
    assert_eq!(
        kind(trusting(&ca).client_cert_pem(chain.clone(), "no key")),
        TlsErrorKind::Config
    );
    // A key that is not the certificate's.
    assert_eq!(
        kind(trusting(&ca).client_cert_pem(chain, other_key)),
        TlsErrorKind::Config
    );
    let config = trusting(&ca).server_name("memcached.test").build().unwrap();
    assert_eq!(config.server_name().as_deref(), Some("memcached.test"));
}

#[tokio::test]
async fn rustls_settings_of_your_own() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let ca = Ca::new("memha test CA");
    let node = TlsNode::start(&ca, None);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = TlsConfig::from_rustls(std::sync::Arc::new(config), Some("memcached.test")).unwrap();
    let client = client(node.addr, self::tls(tls));
    client.set("own", "rustls").await.unwrap();
    assert_eq!(
        &client.get("own").await.unwrap().unwrap().value[..],
        b"rustls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_client_over_tls() {
    let ca = Ca::new("memha test CA");
    let nodes = [TlsNode::start(&ca, None), TlsNode::start(&ca, None)];
    let client = Client::builder()
        .nodes(nodes.iter().map(|node| node.addr))
        .timeout(Duration::from_secs(2))
        .tls(trusting(&ca).build().unwrap())
        .build()
        .await
        .unwrap();
    // Health probes speak TLS too: both nodes are Up.
    let stats = client.cluster().unwrap().metrics();
    assert!(
        stats
            .nodes
            .iter()
            .all(|node| node.state == memha_client::NodeState::Up),
        "{stats:?}"
    );
    client.set("tls:replicated", "both").await.unwrap();
    assert_on_every_node(&ca, &nodes, "tls:replicated", b"both").await;
}

/// Reads `key` from each node directly over TLS: `value` on every one.
async fn assert_on_every_node(ca: &Ca, nodes: &[TlsNode], key: &str, value: &[u8]) {
    for node in nodes {
        let direct = client(node.addr, tls(trusting(ca).build().unwrap()));
        let item = direct.get(key).await.unwrap().expect("on every node");
        assert_eq!(&item.value[..], value, "on {}", node.addr);
    }
}

/// A fake ElastiCache configuration endpoint over TLS (memcached has no
/// `config get cluster`): presents a certificate for `localhost` signed by
/// `ca` and answers every `config get cluster` with `nodes`, each listed
/// under the host name `node_name` with its IP address.
struct TlsConfigEndpoint {
    port: u16,
    served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsConfigEndpoint {
    async fn start(ca: &Ca, node_name: &str, nodes: &[SocketAddr]) -> TlsConfigEndpoint {
        use memha_client::rustls::pki_types::pem::PemObject;
        use memha_client::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (chain, key) = ca.issue(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
        let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let provider = Arc::new(memha_client::rustls::crypto::aws_lc_rs::default_provider());
        let config = memha_client::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let body = format!(
            "1\n{}\n",
            nodes
                .iter()
                .map(|node| format!("{node_name}|{}|{}", node.ip(), node.port()))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let reply = format!("CONFIG cluster 0 {}\r\n{body}\r\nEND\r\n", body.len());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, reply, counter) = (acceptor.clone(), reply.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    while !request.ends_with(b"\r\n") {
                        match stream.read_u8().await {
                            Ok(byte) => request.push(byte),
                            Err(_) => return,
                        }
                    }
                    assert_eq!(request, b"config get cluster\r\n");
                    stream.write_all(reply.as_bytes()).await.unwrap();
                    counter.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        TlsConfigEndpoint { port, served, task }
    }
}

impl Drop for TlsConfigEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A replicated client of the nodes `endpoint` lists, reaching the
/// endpoint with `endpoint_tls` (its certificate checked against the name
/// given to the source, `localhost`) and the nodes with `node_tls`.
async fn discovered_client(
    endpoint: &TlsConfigEndpoint,
    endpoint_tls: &TlsConfig,
    node_tls: TlsConfig,
) -> Client {
    let source = ElastiCacheConfigSource::new("localhost", endpoint.port)
        .with_connector(endpoint_tls.endpoint_connector());
    Client::builder()
        .source(source)
        .timeout(Duration::from_secs(2))
        .tls(node_tls)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_found_through_a_tls_configuration_endpoint() {
    let ca = Ca::new("memha test CA");
    let nodes = [TlsNode::start(&ca, None), TlsNode::start(&ca, None)];
    let addrs: Vec<SocketAddr> = nodes.iter().map(|node| node.addr).collect();
    // The nodes' certificates name `memcached.test`: each is checked
    // against the name it is listed under (its IP is in the certificate
    // too, so a client checking IPs would not notice a mismatch: see below).
    let endpoint = TlsConfigEndpoint::start(&ca, "memcached.test", &addrs).await;
    let settings = trusting(&ca).build().unwrap();
    let client = discovered_client(&endpoint, &settings, settings.clone()).await;
    assert!(endpoint.served.load(Ordering::SeqCst) >= 1);
    let mut found: Vec<SocketAddr> = client
        .cluster()
        .unwrap()
        .metrics()
        .nodes
        .iter()
        .map(|node| node.addr)
        .collect();
    found.sort();
    let mut expected = addrs.clone();
    expected.sort();
    assert_eq!(found, expected);
    client.set("tls:discovered", "found").await.unwrap();
    assert_on_every_node(&ca, &nodes, "tls:discovered", b"found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_configuration_endpoint_is_verified_and_refuses_plaintext() {
    let ca = Ca::new("memha test CA");
    let endpoint =
        TlsConfigEndpoint::start(&ca, "memcached.test", &["127.0.0.1:11211".parse().unwrap()])
            .await;

    // A certificate from a CA the client does not trust.
    let stranger = trusting(&Ca::new("another CA")).build().unwrap();
    let err = ElastiCacheConfigSource::new("localhost", endpoint.port)
        .with_connector(stranger.endpoint_connector())
        .nodes()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), DiscoveryErrorKind::Io, "{err}");
    let tls = TlsError::find(&err).unwrap_or_else(|| panic!("no TlsError in {err:?}"));
    assert_eq!(tls.kind(), TlsErrorKind::UntrustedCertificate);

    // A name the certificate does not cover.
    let trusted = trusting(&ca).build().unwrap();
    let err = ElastiCacheConfigSource::new("127.0.0.1", endpoint.port)
        .with_connector(trusted.endpoint_connector())
        .nodes()
        .await
        .unwrap_err();
    let tls = TlsError::find(&err).unwrap_or_else(|| panic!("no TlsError in {err:?}"));
    assert_eq!(tls.kind(), TlsErrorKind::NameMismatch);

    // Plaintext to a TLS endpoint: an error, never a node list.
    let err = ElastiCacheConfigSource::new("localhost", endpoint.port)
        .read_timeout(Duration::from_secs(5))
        .nodes()
        .await
        .unwrap_err();
    assert_ne!(err.kind(), DiscoveryErrorKind::Timeout, "{err}");
    assert_eq!(endpoint.served.load(Ordering::SeqCst), 0);

    // The same endpoint with the right settings answers.
    let nodes = ElastiCacheConfigSource::new("localhost", endpoint.port)
        .with_connector(trusted.endpoint_connector())
        .nodes()
        .await
        .unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(endpoint.served.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_node_is_checked_against_the_name_it_is_listed_under() {
    let ca = Ca::new("memha test CA");
    let node = TlsNode::start(&ca, None);
    // Listed under a name its certificate does not cover (though it covers
    // the node's IP address).
    let endpoint = TlsConfigEndpoint::start(&ca, "impostor.test", &[node.addr]).await;
    let settings = trusting(&ca).build().unwrap();
    let client = discovered_client(&endpoint, &settings, settings.clone()).await;
    let stats = client.cluster().unwrap().metrics();
    assert_eq!(stats.nodes.len(), 1, "{stats:?}");
    assert_ne!(
        stats.nodes[0].state,
        memha_client::NodeState::Up,
        "{stats:?}"
    );
    let err = client.set("tls:impostor", "no").await.unwrap_err();
    assert!(
        err.is_connection() || err.kind() == ErrorKind::NoNodes,
        "{err:?}"
    );

    // An explicit server name wins over the listed name.
    let endpoint = TlsConfigEndpoint::start(&ca, "impostor.test", &[node.addr]).await;
    let named = trusting(&ca).server_name("memcached.test").build().unwrap();
    let client = discovered_client(&endpoint, &settings, named).await;
    client.set("tls:overridden", "yes").await.unwrap();
}
