//! The source trait and the simple sources: a static list and a DNS name.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;

use crate::addr::NodeAddr;
use crate::error::{Error, ErrorKind};

/// Something that knows the current nodes of a cluster.
///
/// [`nodes`](Self::nodes) returns the **full** current list every time, not
/// a delta; the [`Watcher`](crate::Watcher) diffs successive snapshots.
/// An error means "I do not know right now": the watcher then keeps this
/// source's last good snapshot, so an error never removes a node. A source
/// that answers `Ok` with an empty list does remove all its nodes.
///
/// Duplicates in the list are harmless (the watcher drops them). The watcher
/// bounds each call with its own timeout, so a source need not, and calls it
/// through `&self`: a source that keeps state uses interior mutability.
///
/// ```
/// use memha_discovery::{async_trait, Error, NodeAddr, NodeSource};
///
/// /// Nodes listed in an environment variable, comma separated.
/// #[derive(Debug)]
/// struct EnvSource(&'static str);
///
/// #[async_trait]
/// impl NodeSource for EnvSource {
///     async fn nodes(&self) -> Result<Vec<NodeAddr>, Error> {
///         let list = std::env::var(self.0).map_err(Error::custom)?;
///         list.split(',').map(|addr| addr.trim().parse()).collect()
///     }
///
///     fn name(&self) -> &str {
///         self.0
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// std::env::set_var("CACHE_NODES", "10.0.0.1:11211, cache-2.internal:11211");
/// let nodes = EnvSource("CACHE_NODES").nodes().await?;
/// assert_eq!(nodes[1], NodeAddr::new("cache-2.internal", 11211));
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait NodeSource: Send + Sync {
    /// The full current list of nodes.
    async fn nodes(&self) -> Result<Vec<NodeAddr>, Error>;

    /// A short name for logs (the default is `"custom"`).
    fn name(&self) -> &str {
        "custom"
    }
}

#[async_trait]
impl<S: NodeSource + ?Sized> NodeSource for Arc<S> {
    async fn nodes(&self) -> Result<Vec<NodeAddr>, Error> {
        (**self).nodes().await
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}

#[async_trait]
impl<S: NodeSource + ?Sized> NodeSource for Box<S> {
    async fn nodes(&self) -> Result<Vec<NodeAddr>, Error> {
        (**self).nodes().await
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}

/// A fixed list of nodes.
///
/// ```
/// use memha_discovery::{NodeSource, StaticSource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), memha_discovery::Error> {
/// let source = StaticSource::parse(["10.0.0.1:11211", "cache-2.internal:11211", "[::1]:11211"])?;
/// assert_eq!(source.nodes().await?.len(), 3);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSource {
    nodes: Vec<NodeAddr>,
}

impl StaticSource {
    /// A source that always answers `nodes`.
    pub fn new(nodes: impl IntoIterator<Item = NodeAddr>) -> Self {
        StaticSource {
            nodes: nodes.into_iter().collect(),
        }
    }

    /// A source from `host:port` strings; fails with
    /// [`ErrorKind::InvalidAddress`] on the first that does not parse.
    pub fn parse<I>(addrs: I) -> Result<Self, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let nodes = addrs
            .into_iter()
            .map(|addr| addr.as_ref().parse())
            .collect::<Result<Vec<NodeAddr>, Error>>()?;
        Ok(StaticSource { nodes })
    }
}

#[async_trait]
impl NodeSource for StaticSource {
    async fn nodes(&self) -> Result<Vec<NodeAddr>, Error> {
        Ok(self.nodes.clone())
    }

    fn name(&self) -> &str {
        "static"
    }
}

/// Every A and AAAA record of a DNS name is a node (as with a Kubernetes
/// headless service).
///
/// Resolution uses the system resolver (`getaddrinfo`, through
/// [`tokio::net::lookup_host`]), so `/etc/hosts` and the search domains apply.
/// Each node has the name as its [`host`](NodeAddr::host) and the record as
/// its [`ip`](NodeAddr::ip). A name that does not resolve, or resolves to no
/// address, is an [`ErrorKind::Dns`] error, so a resolver outage keeps the
/// last good list instead of removing every node.
///
/// ```
/// use memha_discovery::{DnsSource, NodeSource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), memha_discovery::Error> {
/// let nodes = DnsSource::new("localhost", 11211).nodes().await?;
/// assert!(nodes.iter().all(|node| node.host == "localhost" && node.ip.is_some()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSource {
    dns_name: String,
    port: u16,
    label: String,
}

impl DnsSource {
    /// The nodes behind DNS name `name`, all on `port`.
    pub fn new(name: impl Into<String>, port: u16) -> Self {
        let name = name.into();
        let label = format!("dns:{name}:{port}");
        DnsSource {
            dns_name: name,
            port,
            label,
        }
    }
}

#[async_trait]
impl NodeSource for DnsSource {
    async fn nodes(&self) -> Result<Vec<NodeAddr>, Error> {
        let resolved = tokio::net::lookup_host((self.dns_name.as_str(), self.port))
            .await
            .map_err(|err| {
                Error::with_source(
                    ErrorKind::Dns,
                    format!("resolving {:?}", self.dns_name),
                    err,
                )
            })?;
        // getaddrinfo may list an address once per socket type: keep each once.
        let ips: BTreeSet<_> = resolved.map(|addr| addr.ip()).collect();
        if ips.is_empty() {
            return Err(Error::new(
                ErrorKind::Dns,
                format!("{:?} has no A or AAAA record", self.dns_name),
            ));
        }
        Ok(ips
            .into_iter()
            .map(|ip| {
                NodeAddr::new(self.dns_name.clone(), self.port)
                    .with_ip(ip)
                    .known_by_address()
            })
            .collect())
    }

    fn name(&self) -> &str {
        &self.label
    }
}
