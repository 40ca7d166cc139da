//! Node addresses and their identity.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::error::{Error, ErrorKind};

/// The address of one memcached node, as a source reports it.
///
/// `host` is a DNS name or an IP address written as text; `ip` is the
/// resolved address when the source knows it (DNS records, the ElastiCache
/// configuration endpoint). Connect to `ip` when it is known, else resolve
/// `host`; use `host` for TLS server names.
///
/// Two addresses name the same node when their [`NodeId`]s are equal; see
/// [`NodeAddr::id`] for the rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct NodeAddr {
    /// The node's DNS name, or its IP address as text.
    pub host: String,
    /// The node's port.
    pub port: u16,
    /// The node's resolved IP address, when known.
    pub ip: Option<IpAddr>,
    /// `host` names several nodes (a DNS name with many records), so the
    /// node is known by its address: see [`NodeAddr::id`].
    known_by_address: bool,
}

impl NodeAddr {
    /// A node at `host:port`. When `host` is an IP address (`10.0.0.1`,
    /// `::1` or `[::1]`), it is also the node's [`ip`](Self::ip).
    ///
    /// ```
    /// use memha_discovery::NodeAddr;
    ///
    /// let named = NodeAddr::new("cache-1.internal", 11211);
    /// assert_eq!(named.ip, None);
    /// let literal = NodeAddr::new("10.0.0.7", 11211);
    /// assert_eq!(literal.ip, Some("10.0.0.7".parse().unwrap()));
    /// ```
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        let host = host.into();
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => NodeAddr {
                host: ip.to_string(),
                port,
                ip: Some(ip),
                known_by_address: false,
            },
            Err(_) => NodeAddr {
                host,
                port,
                ip: None,
                known_by_address: false,
            },
        }
    }

    /// The same node with its resolved IP address.
    pub fn with_ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// The same node, known by its address rather than its name: for a
    /// name that stands for several nodes (every record of a DNS name is a
    /// node), so the name identifies none of them.
    ///
    /// ```
    /// use memha_discovery::NodeAddr;
    ///
    /// let record = NodeAddr::new("memcached.svc", 11211)
    ///     .with_ip("10.0.0.7".parse().unwrap())
    ///     .known_by_address();
    /// assert_eq!(record.id().as_str(), "10.0.0.7:11211");
    /// ```
    pub fn known_by_address(mut self) -> Self {
        self.known_by_address = true;
        self
    }

    /// The node's identity: what placement ranks (so every client picks the
    /// same primary for a key), what snapshots are diffed by, and what
    /// health, stats and tracing show.
    ///
    /// A node is known by the name it was discovered by: `host:port`, the
    /// host in lower case and without a trailing dot, whether or not its IP
    /// is known. So a node whose IP changes under the same name (a replaced
    /// ElastiCache node) keeps its identity and its place, and clients that
    /// reach it through different addresses agree on it. A node given by
    /// IP alone, or one of several records of a DNS name
    /// ([`known_by_address`](Self::known_by_address)), is known by `ip:port`.
    ///
    /// ```
    /// use memha_discovery::NodeAddr;
    ///
    /// let a = NodeAddr::new("cache-1.internal", 11211).with_ip("10.0.0.7".parse().unwrap());
    /// let b = NodeAddr::new("cache-1.internal", 11211).with_ip("10.0.0.9".parse().unwrap());
    /// assert_eq!(a.id(), b.id(), "a new IP under the same name");
    /// assert_eq!(a.id().as_str(), "cache-1.internal:11211");
    /// assert_eq!(NodeAddr::new("10.0.0.7", 11211).id().as_str(), "10.0.0.7:11211");
    /// assert_eq!(NodeAddr::new("Cache-1.Internal.", 11211).id().as_str(), "cache-1.internal:11211");
    /// ```
    pub fn id(&self) -> NodeId {
        let named = self.host.parse::<IpAddr>().is_err() && !self.known_by_address;
        match self.ip {
            Some(ip) if !named => NodeId(SocketAddr::new(ip, self.port).to_string()),
            _ => {
                let host = self.host.trim_end_matches('.').to_ascii_lowercase();
                if host.contains(':') {
                    NodeId(format!("[{host}]:{}", self.port))
                } else {
                    NodeId(format!("{host}:{}", self.port))
                }
            }
        }
    }

    /// The socket address to connect to, when the IP is known.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.ip.map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        match self.ip {
            Some(ip) if ip.to_string() != self.host => write!(f, " ({ip})"),
            _ => Ok(()),
        }
    }
}

impl FromStr for NodeAddr {
    type Err = Error;

    /// Parses `host:port`, `ip:port` or `[ipv6]:port`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |why: &str| {
            Error::new(
                ErrorKind::InvalidAddress,
                format!("{s:?} is not host:port ({why})"),
            )
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, rest) = rest.split_once(']').ok_or_else(|| invalid("unclosed ["))?;
            let port = rest.strip_prefix(':').ok_or_else(|| invalid("no port"))?;
            (host, port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or_else(|| invalid("no port"))?;
            if host.contains(':') {
                return Err(invalid("an IPv6 address must be written [addr]:port"));
            }
            (host, port)
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(invalid("bad host"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| invalid("bad port"))?;
        Ok(NodeAddr::new(host, port))
    }
}

/// The identity of a node: `host:port` when it has a name, else `ip:port`
/// (see [`NodeAddr::id`]). It is the key of the watcher's
/// [`Change`](tower::discover::Change)s, and what placement ranks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// An identity given as it is (a node's name, `host:port` or any
    /// stable label); [`NodeAddr::id`] derives one from an address.
    ///
    /// ```
    /// use memha_discovery::NodeId;
    ///
    /// assert_eq!(NodeId::new("cache-1:11211").as_str(), "cache-1:11211");
    /// ```
    pub fn new(identity: impl Into<String>) -> Self {
        NodeId(identity.into())
    }

    /// The identity as text, e.g. `10.0.0.7:11211` or `cache-1.internal:11211`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&NodeAddr> for NodeId {
    fn from(addr: &NodeAddr) -> Self {
        addr.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_identifies() {
        let v6: NodeAddr = "[::1]:11211".parse().unwrap();
        assert_eq!(v6.ip, Some("::1".parse().unwrap()));
        assert_eq!(v6.id().as_str(), "[::1]:11211");
        assert_eq!(v6.to_string(), "[::1]:11211");
        let named: NodeAddr = "cache.example:11211".parse().unwrap();
        assert_eq!(named.ip, None);
        assert_eq!(named.to_string(), "cache.example:11211");
        for bad in [
            "",
            "host",
            "host:",
            ":11211",
            "host:0",
            "host:70000",
            "::1:11211",
            "[::1]",
        ] {
            let err = bad.parse::<NodeAddr>().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidAddress, "{bad}");
        }
    }
}
