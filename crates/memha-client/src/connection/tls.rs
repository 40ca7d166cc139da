//! TLS to nodes (feature `tls`): rustls with the aws-lc-rs crypto provider.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use memha_discovery::{EndpointConnector, EndpointStream};
use memha_health::{ProbeConnector, ProbeStream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// TLS settings for the connections to the nodes, and for their health
/// probes. Built with [`TlsConfig::builder`]; cheap to clone.
///
/// The node's certificate is always verified: it must chain to one of the
/// trusted CAs given ([`TlsConfigBuilder::ca_pem`], ...), and be valid for
/// the name set with [`TlsConfigBuilder::server_name`] if one is set; else
/// for the host name the node was discovered by (a source listing names:
/// ElastiCache, DNS, a static list of names); else for its IP address
/// (nodes given by address).
///
/// ```no_run
/// use memha_client::{Client, ConnectionConfig, TlsConfig};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = TlsConfig::builder()
///     .ca_pem(std::fs::read("ca.pem")?)
///     // Optional: a client certificate, for servers that ask for one.
///     .client_cert_pem(std::fs::read("client.pem")?, std::fs::read("client.key")?)
///     // The name the node certificates are issued for.
///     .server_name("memcached.internal")
///     .build()?;
/// let client = Client::builder()
///     .node("10.0.0.1:11211".parse()?)
///     .connection(ConnectionConfig::default().tls(tls))
///     .build()
///     .await?;
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl TlsConfig {
    /// Settings to fill in, then [`build`](TlsConfigBuilder::build).
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder::default()
    }

    /// Settings made with rustls directly (an escape hatch: for a custom
    /// certificate verifier, session resumption, ...). The configuration
    /// is used as it is: build it with [`crate::rustls`], the version this
    /// crate uses. `server_name` as in [`TlsConfigBuilder::server_name`].
    ///
    /// # Errors
    ///
    /// [`TlsErrorKind::Config`] when `server_name` is not a valid DNS name
    /// or IP address.
    pub fn from_rustls(
        config: Arc<ClientConfig>,
        server_name: Option<&str>,
    ) -> Result<TlsConfig, TlsError> {
        Ok(TlsConfig {
            connector: TlsConnector::from(config),
            server_name: server_name.map(parse_server_name).transpose()?,
        })
    }

    /// The name every node certificate is checked against, when one was set.
    pub fn server_name(&self) -> Option<String> {
        self.server_name
            .as_ref()
            .map(|name| name.to_str().into_owned())
    }

    /// Connects to `addr` and makes the TLS handshake. The caller bounds
    /// the time it takes.
    pub(crate) async fn connect(
        &self,
        addr: SocketAddr,
        stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>, TlsError> {
        self.handshake(self.name_for_ip(addr.ip()), stream).await
    }

    /// The name a certificate is checked against when reaching `ip`: the
    /// server name set, else the address.
    fn name_for_ip(&self, ip: IpAddr) -> ServerName<'static> {
        self.server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(ip.into()))
    }

    /// These settings checking certificates against `host` (the name a
    /// node was discovered by), when no server name was set; `None` when
    /// nothing changes.
    pub(crate) fn named(&self, host: &str) -> Option<TlsConfig> {
        if self.server_name.is_some() {
            return None;
        }
        match parse_server_name(host) {
            Ok(name) => Some(TlsConfig {
                connector: self.connector.clone(),
                server_name: Some(name),
            }),
            Err(err) => {
                tracing::warn!(host, error = %err, "node name is not a TLS server name; checking its IP address");
                None
            }
        }
    }

    async fn handshake(
        &self,
        name: ServerName<'static>,
        stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>, TlsError> {
        self.connector
            .connect(name, stream)
            .await
            .map_err(TlsError::handshake)
    }

    /// A connector for health probes that reaches nodes with these settings.
    pub(crate) fn probe_connector(&self) -> Arc<dyn ProbeConnector> {
        Arc::new(TlsDialer { tls: self.clone() })
    }

    /// A connector for an [`ElastiCacheConfigSource`] whose cluster has
    /// in-transit encryption: the endpoint is reached over TLS with these
    /// settings. Its certificate is checked against the host name given to
    /// the source; when that is an IP address, against the
    /// [`server_name`](TlsConfigBuilder::server_name) if one is set, else
    /// the address.
    ///
    /// ```no_run
    /// use memha_client::discovery::ElastiCacheConfigSource;
    /// use memha_client::{Client, TlsConfig};
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let tls = TlsConfig::builder()
    ///     .native_roots()
    ///     .build()?;
    /// // Each node is checked against the name the endpoint lists it under.
    /// let endpoint = "my-cache.abc123.cfg.use1.cache.amazonaws.com";
    /// let client = Client::builder()
    ///     .source(ElastiCacheConfigSource::new(endpoint, 11211).with_connector(tls.endpoint_connector()))
    ///     .tls(tls)
    ///     .build()
    ///     .await?;
    /// # drop(client);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`ElastiCacheConfigSource`]: crate::discovery::ElastiCacheConfigSource
    pub fn endpoint_connector(&self) -> Arc<dyn EndpointConnector> {
        Arc::new(TlsDialer { tls: self.clone() })
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name())
            .finish_non_exhaustive()
    }
}

/// Where trusted CA certificates come from.
#[derive(Clone)]
enum Trust {
    Pem(Vec<u8>),
    PemFile(PathBuf),
    Der(Vec<u8>),
    Native,
}

/// The settings of a [`TlsConfig`], checked by [`build`](Self::build).
#[derive(Clone, Default)]
pub struct TlsConfigBuilder {
    trust: Vec<Trust>,
    client_cert: Option<(Vec<u8>, Vec<u8>)>,
    server_name: Option<String>,
}

impl TlsConfigBuilder {
    /// Trusts the CA certificates in `pem` (one or more `CERTIFICATE` blocks).
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.trust.push(Trust::Pem(pem.into()));
        self
    }

    /// Trusts the CA certificates of a PEM file, read by
    /// [`build`](Self::build).
    pub fn ca_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.trust.push(Trust::PemFile(path.into()));
        self
    }

    /// Trusts one CA certificate in DER form.
    pub fn ca_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.trust.push(Trust::Der(der.into()));
        self
    }

    /// Trusts the operating system's CA certificates (for nodes with
    /// publicly issued certificates, such as ElastiCache's).
    pub fn native_roots(mut self) -> Self {
        self.trust.push(Trust::Native);
        self
    }

    /// Presents a client certificate: `chain_pem` holds the certificate
    /// (then any intermediates), `key_pem` its private key (PKCS#8, PKCS#1
    /// or SEC1).
    pub fn client_cert_pem(
        mut self,
        chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_cert = Some((chain_pem.into(), key_pem.into()));
        self
    }

    /// Checks every node certificate against this DNS name (or IP address)
    /// instead of the name each node was discovered by, or its IP address.
    /// Also sent as SNI.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Reads and checks everything given.
    ///
    /// # Errors
    ///
    /// [`TlsErrorKind::Config`] when no CA is trusted, a PEM holds no
    /// certificate or cannot be read, a certificate or key is malformed,
    /// the key does not suit the certificate, or the server name is invalid.
    pub fn build(self) -> Result<TlsConfig, TlsError> {
        let mut roots = RootCertStore::empty();
        for trust in &self.trust {
            match trust {
                Trust::Pem(pem) => add_pem(&mut roots, pem, "CA PEM")?,
                Trust::PemFile(path) => {
                    let pem = std::fs::read(path).map_err(|err| {
                        TlsError::config(format!("cannot read {}", path.display())).source(err)
                    })?;
                    add_pem(&mut roots, &pem, &path.display().to_string())?;
                }
                Trust::Der(der) => roots
                    .add(CertificateDer::from(der.clone()))
                    .map_err(|err| TlsError::config("invalid CA certificate").source(err))?,
                Trust::Native => {
                    let native = rustls_native_certs::load_native_certs();
                    let (added, _) = roots.add_parsable_certificates(native.certs);
                    if added == 0 {
                        return Err(TlsError::config(
                            "no usable CA certificate in the operating system's store",
                        ));
                    }
                }
            }
        }
        if roots.is_empty() {
            return Err(TlsError::config(
                "no CA to trust: give one with ca_pem, ca_pem_file, ca_der or native_roots",
            ));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::config("no usable TLS version").source(err))?
            .with_root_certificates(roots);
        let config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((chain_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(chain_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|err| {
                        TlsError::config("unreadable client certificate PEM").source(err)
                    })?;
                if chain.is_empty() {
                    return Err(TlsError::config(
                        "no CERTIFICATE in the client certificate PEM",
                    ));
                }
                let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|err| {
                    TlsError::config("no usable private key in the client key PEM").source(err)
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|err| {
                    TlsError::config("the client certificate and key cannot be used").source(err)
                })?
            }
        };
        Ok(TlsConfig {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: self
                .server_name
                .as_deref()
                .map(parse_server_name)
                .transpose()?,
        })
    }
}

impl fmt::Debug for TlsConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfigBuilder")
            .field("trusted_sources", &self.trust.len())
            .field("client_cert", &self.client_cert.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

fn add_pem(roots: &mut RootCertStore, pem: &[u8], what: &str) -> Result<(), TlsError> {
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert =
            cert.map_err(|err| TlsError::config(format!("unreadable {what}")).source(err))?;
        roots.add(cert).map_err(|err| {
            TlsError::config(format!("invalid CA certificate in {what}")).source(err)
        })?;
        found += 1;
    }
    if found == 0 {
        return Err(TlsError::config(format!("no CERTIFICATE in {what}")));
    }
    Ok(())
}

fn parse_server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned())
        .map_err(|err| TlsError::config(format!("invalid server name {name:?}")).source(err))
}

/// What kind of TLS failure a [`TlsError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// Settings that cannot be used (from [`TlsConfigBuilder::build`]).
    Config,
    /// The node's certificate does not chain to a trusted CA (or is
    /// malformed, or its signature is bad).
    UntrustedCertificate,
    /// The node's certificate is not valid for the name checked: the
    /// node's IP address, or [`TlsConfigBuilder::server_name`].
    NameMismatch,
    /// The node's certificate is expired or not valid yet.
    Expired,
    /// The node refused the handshake with an alert: for example it wants
    /// a client certificate, or does not trust the one presented.
    Refused,
    /// The node does not speak TLS (it answered with something that is not
    /// a TLS record: a plaintext memcached?).
    NotTls,
    /// The node closed the connection during the handshake.
    Closed,
    /// Any other failure.
    Other,
}

/// A TLS failure: bad settings, or a handshake with a node that failed.
///
/// A failed handshake makes the request fail with
/// [`ErrorKind::Connect`](crate::ErrorKind::Connect) (nothing was sent, and
/// the node's health counts it as a failed connection), with a `TlsError`
/// as its source: [`TlsError::find`] gets it back.
///
/// ```
/// # #[cfg(feature = "tls")] {
/// use memha_client::{TlsConfig, TlsErrorKind};
///
/// let err = TlsConfig::builder().build().unwrap_err();
/// assert_eq!(err.kind(), TlsErrorKind::Config); // no CA to trust
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TlsError {
    kind: TlsErrorKind,
    message: String,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl TlsError {
    fn config(message: impl Into<String>) -> TlsError {
        TlsError {
            kind: TlsErrorKind::Config,
            message: message.into(),
            source: None,
        }
    }

    fn source(mut self, source: impl StdError + Send + Sync + 'static) -> TlsError {
        self.source = Some(Arc::new(source));
        self
    }

    /// Classifies a failed handshake.
    pub(crate) fn handshake(err: io::Error) -> TlsError {
        let (kind, message) = match err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            Some(rustls_error) => classify(rustls_error),
            None if err.kind() == io::ErrorKind::UnexpectedEof => (
                TlsErrorKind::Closed,
                "the node closed the connection during the TLS handshake",
            ),
            None => (TlsErrorKind::Other, "TLS handshake failed"),
        };
        TlsError {
            kind,
            message: message.to_owned(),
            source: Some(Arc::new(err)),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> TlsErrorKind {
        self.kind
    }

    /// The `TlsError` somewhere in `error`'s chain of sources (`error`
    /// included), such as the cause of a
    /// [`ErrorKind::Connect`](crate::ErrorKind::Connect) error.
    ///
    /// ```no_run
    /// # async fn demo(client: memha_client::Client) {
    /// use memha_client::{TlsError, TlsErrorKind};
    ///
    /// if let Err(err) = client.get("k").await {
    ///     if let Some(tls) = TlsError::find(&err) {
    ///         assert_eq!(tls.kind(), TlsErrorKind::UntrustedCertificate);
    ///     }
    /// }
    /// # }
    /// ```
    pub fn find<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a TlsError> {
        let mut current = Some(error);
        while let Some(error) = current {
            if let Some(tls) = error.downcast_ref::<TlsError>() {
                return Some(tls);
            }
            // An I/O error's `source` skips the error it wraps.
            current = match error
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
            {
                Some(wrapped) => Some(wrapped as &(dyn StdError + 'static)),
                None => error.source(),
            };
        }
        None
    }
}

fn classify(error: &rustls::Error) -> (TlsErrorKind, &'static str) {
    use rustls::Error as E;
    match error {
        E::InvalidCertificate(cert) => match cert {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                (
                    TlsErrorKind::NameMismatch,
                    "the node's certificate is not valid for the name checked",
                )
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => (
                TlsErrorKind::Expired,
                "the node's certificate is expired or not valid yet",
            ),
            _ => (
                TlsErrorKind::UntrustedCertificate,
                "the node's certificate is not trusted",
            ),
        },
        E::AlertReceived(AlertDescription::CloseNotify) => (
            TlsErrorKind::Closed,
            "the node closed the connection during the TLS handshake",
        ),
        E::AlertReceived(_) => (TlsErrorKind::Refused, "the node refused the TLS handshake"),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => (
            TlsErrorKind::NotTls,
            "the node does not speak TLS (is TLS enabled on it?)",
        ),
        _ => (TlsErrorKind::Other, "TLS handshake failed"),
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for TlsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

/// Opens a TCP connection and makes the handshake with these settings:
/// for health probes (the same TLS as the node connections) and for
/// configuration endpoints ([`TlsConfig::endpoint_connector`]).
#[derive(Debug)]
struct TlsDialer {
    tls: TlsConfig,
}

impl TlsDialer {
    async fn dial(
        &self,
        target: impl tokio::net::ToSocketAddrs,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream<TcpStream>> {
        let stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        self.tls.handshake(name, stream).await.map_err(io_error)
    }
}

#[async_trait]
impl ProbeConnector for TlsDialer {
    async fn connect(&self, addr: SocketAddr) -> io::Result<ProbeStream> {
        let name = self.tls.name_for_ip(addr.ip());
        Ok(Box::new(self.dial(addr, name).await?))
    }
}

#[async_trait]
impl EndpointConnector for TlsDialer {
    async fn connect(&self, host: &str, port: u16) -> io::Result<EndpointStream> {
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => self.tls.name_for_ip(ip),
            Err(_) => parse_server_name(host)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?,
        };
        Ok(Box::new(self.dial((host, port), name).await?))
    }
}

/// A TLS failure as an I/O error, classified like one: a closed connection
/// is `UnexpectedEof`, anything else (a refused handshake) `InvalidData`.
fn io_error(err: TlsError) -> io::Error {
    let kind = match err.kind() {
        TlsErrorKind::Closed => io::ErrorKind::UnexpectedEof,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, err)
}
