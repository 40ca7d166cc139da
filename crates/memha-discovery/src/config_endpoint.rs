//! The ElastiCache configuration endpoint: `config get cluster`.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use memha_proto::{
    ClusterConfig, Command, Key, Limits, Pipeline, Reply, Retrieval, ServerErrorKind,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::addr::NodeAddr;
use crate::error::{Error, ErrorKind};
use crate::source::NodeSource;

/// The key that holds the configuration on engines before 1.4.14.
const LEGACY_KEY: &str = "AmazonElastiCache:cluster";

/// The nodes of an ElastiCache (memcached) cluster, read from its
/// configuration endpoint with `config get cluster`. Needs no AWS credentials.
///
/// Each poll opens a TCP connection, sends `config get cluster` and parses
/// the reply `CONFIG cluster 0 <bytes>\r\n<version>\n<host|ip|port ...>\n\r\nEND\r\n`.
/// An engine older than 1.4.14 answers `ERROR`; the source then asks for the
/// `AmazonElastiCache:cluster` item with `get`, which holds the same payload.
///
/// The configuration carries a version. A configuration older than the
/// newest one this source has seen (as happens while a change propagates
/// across the nodes behind the endpoint) is ignored: the source answers the
/// newer one again.
///
/// Connecting is bounded by [`connect_timeout`](Self::connect_timeout) and
/// each request's whole reply by [`read_timeout`](Self::read_timeout)
/// (2 s and 5 s by default). A truncated or malformed reply is an
/// [`ErrorKind::Protocol`] or [`ErrorKind::InvalidConfig`] error.
///
/// The source speaks plain TCP unless given an [`EndpointConnector`]: a
/// cluster with in-transit encryption needs TLS to its configuration
/// endpoint too (memha-client's `TlsConfig::endpoint_connector` makes one).
///
/// ```no_run
/// use memha_discovery::{ElastiCacheConfigSource, Watcher};
///
/// let source = ElastiCacheConfigSource::new("my-cache.abc123.cfg.use1.cache.amazonaws.com", 11211);
/// let watcher = Watcher::new(source);
/// ```
#[derive(Debug)]
pub struct ElastiCacheConfigSource {
    host: String,
    port: u16,
    connect_timeout: Duration,
    read_timeout: Duration,
    limits: Limits,
    label: String,
    connector: Option<Arc<dyn EndpointConnector>>,
    newest: Mutex<Option<Newest>>,
}

#[derive(Debug, Clone)]
struct Newest {
    version: u64,
    nodes: Vec<NodeAddr>,
}

impl ElastiCacheConfigSource {
    /// The configuration endpoint at `host:port` (usually port 11211).
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        let host = host.into();
        let label = format!("elasticache-config:{host}:{port}");
        ElastiCacheConfigSource {
            host,
            port,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
            limits: Limits::default(),
            label,
            connector: None,
            newest: Mutex::new(None),
        }
    }

    /// The bound on opening the TCP connection (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The bound on receiving each whole reply after sending a request (default 5 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Reaches the endpoint through `connector` (for example over TLS)
    /// instead of plain TCP. The connect timeout bounds it, handshake included.
    pub fn with_connector(mut self, connector: Arc<dyn EndpointConnector>) -> Self {
        self.connector = Some(connector);
        self
    }

    /// The version of the newest configuration seen, if any.
    pub fn version(&self) -> Option<u64> {
        self.lock().as_ref().map(|newest| newest.version)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Newest>> {
        self.newest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    async fn connect(&self) -> io::Result<EndpointStream> {
        match &self.connector {
            Some(connector) => connector.connect(&self.host, self.port).await,
            None => Ok(Box::new(
                TcpStream::connect((self.host.as_str(), self.port)).await?,
            )),
        }
    }

    async fn fetch(&self) -> Result<ClusterConfig, Error> {
        let endpoint = self.endpoint();
        let stream = tokio::time::timeout(self.connect_timeout, self.connect())
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "connecting to configuration endpoint {endpoint} took more than {:?}",
                        self.connect_timeout
                    ),
                )
            })?
            .map_err(|err| {
                Error::with_source(
                    ErrorKind::Io,
                    format!("connecting to configuration endpoint {endpoint}"),
                    err,
                )
            })?;
        let mut conn = Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
            pipeline: Pipeline::new(self.limits),
            read_timeout: self.read_timeout,
            endpoint: &endpoint,
        };
        let payload = match conn.request(Command::ConfigGetCluster).await? {
            Reply::Config(payload) => payload,
            Reply::Error(err) if err.kind == ServerErrorKind::UnknownCommand => {
                tracing::debug!(
                    endpoint = %endpoint,
                    "`config get cluster` unknown (engine before 1.4.14): falling back to `get {LEGACY_KEY}`"
                );
                self.legacy(&mut conn).await?
            }
            Reply::Error(err) => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("{endpoint} answered `config get cluster` with {err}"),
                ))
            }
            other => return Err(unexpected(&endpoint, "config get cluster", &other)),
        };
        ClusterConfig::parse(&payload).map_err(|err| {
            let text = err.to_string();
            let detail = text
                .strip_prefix("invalid cluster configuration: ")
                .unwrap_or(&text);
            let message = format!("from {endpoint}: {detail}");
            Error::with_cause(ErrorKind::InvalidConfig, message, err)
        })
    }

    async fn legacy(&self, conn: &mut Conn<'_>) -> Result<Bytes, Error> {
        let key = Key::new(LEGACY_KEY).map_err(|err| {
            Error::with_source(ErrorKind::Protocol, "encoding the legacy key", err)
        })?;
        let get = Command::Retrieve {
            kind: Retrieval::Get,
            keys: vec![key],
        };
        match conn.request(get).await? {
            Reply::Values(mut values) => match values.pop() {
                Some(value) if values.is_empty() && value.key == LEGACY_KEY.as_bytes() => {
                    Ok(value.data)
                }
                Some(_) => Err(Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "{} answered `get {LEGACY_KEY}` with another key",
                        conn.endpoint
                    ),
                )),
                None => Err(Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "{} knows neither `config get cluster` nor the {LEGACY_KEY} item: \
                         not an ElastiCache configuration endpoint",
                        conn.endpoint
                    ),
                )),
            },
            Reply::Error(err) => Err(Error::new(
                ErrorKind::Protocol,
                format!("{} answered `get {LEGACY_KEY}` with {err}", conn.endpoint),
            )),
            other => Err(unexpected(conn.endpoint, "get", &other)),
        }
    }

    fn to_nodes(&self, config: &ClusterConfig) -> Result<Vec<NodeAddr>, Error> {
        config
            .nodes
            .iter()
            .map(|node| {
                let ip = match node.ip.as_deref() {
                    None => None,
                    Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| {
                        Error::new(
                            ErrorKind::InvalidConfig,
                            format!(
                                "from {} (version {}): node {:?} has the invalid IP {ip:?}",
                                self.endpoint(),
                                config.version,
                                node.host
                            ),
                        )
                    })?),
                };
                Ok(match (node.host.is_empty(), ip) {
                    (true, Some(ip)) => NodeAddr::new(ip.to_string(), node.port),
                    (_, ip) => {
                        let addr = NodeAddr::new(node.host.clone(), node.port);
                        match ip {
                            Some(ip) => addr.with_ip(ip),
                            None => addr,
                        }
                    }
                })
            })
            .collect()
    }
}

#[async_trait]
impl NodeSource for ElastiCacheConfigSource {
    async fn nodes(&self) -> Result<Vec<NodeAddr>, Error> {
        let config = self.fetch().await?;
        let nodes = self.to_nodes(&config)?;
        let mut newest = self.lock();
        if let Some(seen) = newest.as_ref() {
            if config.version < seen.version {
                tracing::debug!(
                    endpoint = %self.endpoint(),
                    version = config.version,
                    newest = seen.version,
                    "ignoring an older cluster configuration"
                );
                return Ok(seen.nodes.clone());
            }
        }
        *newest = Some(Newest {
            version: config.version,
            nodes: nodes.clone(),
        });
        Ok(nodes)
    }

    fn name(&self) -> &str {
        &self.label
    }
}

/// A byte stream to a configuration endpoint, as an [`EndpointConnector`]
/// opens it: any tokio stream (TCP, TLS over TCP...).
pub trait EndpointIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> EndpointIo for T {}

/// A boxed [`EndpointIo`].
pub type EndpointStream = Box<dyn EndpointIo>;

/// How an [`ElastiCacheConfigSource`] reaches its endpoint when plain TCP
/// will not do: a cluster with in-transit encryption answers only over TLS.
/// memha-client's `TlsConfig::endpoint_connector` makes one from the same
/// TLS settings as the nodes'.
///
/// An error is reported as the source's [`ErrorKind::Io`] error, with this
/// error as its source.
///
/// ```
/// use std::io;
/// use std::sync::Arc;
/// use memha_discovery::{ElastiCacheConfigSource, EndpointConnector, EndpointStream};
///
/// /// Plain TCP, as the source does by default.
/// #[derive(Debug)]
/// struct Tcp;
///
/// #[async_trait::async_trait]
/// impl EndpointConnector for Tcp {
///     async fn connect(&self, host: &str, port: u16) -> io::Result<EndpointStream> {
///         Ok(Box::new(tokio::net::TcpStream::connect((host, port)).await?))
///     }
/// }
///
/// let source = ElastiCacheConfigSource::new("127.0.0.1", 11211).with_connector(Arc::new(Tcp));
/// # drop(source);
/// ```
#[async_trait]
pub trait EndpointConnector: fmt::Debug + Send + Sync + 'static {
    /// Opens a connection to `host:port` (`host` as given to the source: a
    /// name or an IP address), ready to carry memcached's protocol.
    async fn connect(&self, host: &str, port: u16) -> io::Result<EndpointStream>;
}

/// One connection to the endpoint.
struct Conn<'a> {
    stream: EndpointStream,
    buf: BytesMut,
    pipeline: Pipeline<()>,
    read_timeout: Duration,
    endpoint: &'a str,
}

impl Conn<'_> {
    async fn request(&mut self, mut command: Command) -> Result<Reply, Error> {
        let mut out = BytesMut::new();
        self.pipeline
            .submit(&mut command, &mut out, ())
            .map_err(|err| {
                let name = command.name();
                Error::with_source(ErrorKind::Protocol, format!("encoding `{name}`"), err)
            })?;
        // Messages name the request as it went on the wire.
        let line_end = out.iter().position(|&b| b == b'\r').unwrap_or(out.len());
        let request = String::from_utf8_lossy(&out[..line_end]).into_owned();
        let deadline = Instant::now() + self.read_timeout;
        let timed_out = || {
            Error::new(
                ErrorKind::Timeout,
                format!(
                    "{} did not answer `{request}` within {:?}",
                    self.endpoint, self.read_timeout
                ),
            )
        };
        tokio::time::timeout_at(deadline, self.stream.write_all(&out))
            .await
            .map_err(|_| timed_out())?
            .map_err(|err| {
                Error::with_source(
                    ErrorKind::Io,
                    format!("sending `{request}` to {}", self.endpoint),
                    err,
                )
            })?;
        loop {
            match self.pipeline.decode(&mut self.buf) {
                Ok(Some(((), reply))) => return Ok(reply),
                Ok(None) => {}
                Err(err) => {
                    return Err(Error::with_source(
                        ErrorKind::Protocol,
                        format!("bad reply from {} to `{request}`", self.endpoint),
                        err,
                    ))
                }
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| timed_out())?
                .map_err(|err| {
                    Error::with_source(
                        ErrorKind::Io,
                        format!("reading the reply to `{request}` from {}", self.endpoint),
                        err,
                    )
                })?;
            if read == 0 {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "{} closed the connection before a complete reply to `{request}` ({} bytes received)",
                        self.endpoint,
                        self.buf.len()
                    ),
                ));
            }
        }
    }
}

fn unexpected(endpoint: &str, command: &str, reply: &Reply) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("{endpoint} answered `{command}` with the unexpected {reply:?}"),
    )
}
