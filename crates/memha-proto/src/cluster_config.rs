//! The ElastiCache cluster configuration payload.

use crate::decode::parse_u64;
use crate::error::{Error, ErrorKind};

/// One node of an ElastiCache cluster configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterNode {
    /// The node's DNS name.
    pub host: String,
    /// The node's IP address, when the configuration gives one.
    pub ip: Option<String>,
    /// The node's port.
    pub port: u16,
}

/// The payload of `config get cluster`: `<version>\n<host|ip|port> ...\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The configuration's version; it grows with every change of the cluster.
    pub version: u64,
    /// The nodes, in the order given.
    pub nodes: Vec<ClusterNode>,
}

impl ClusterConfig {
    /// Parses the payload of a [`Reply::Config`](crate::Reply::Config)
    /// (or of the `AmazonElastiCache:cluster` value on old engines).
    ///
    /// ```
    /// use memha_proto::ClusterConfig;
    ///
    /// let config = ClusterConfig::parse(b"12\nnode-1.cache.amazonaws.com|10.0.0.1|11211 node-2.cache.amazonaws.com||11211\n")?;
    /// assert_eq!(config.version, 12);
    /// assert_eq!(config.nodes[1].ip, None);
    /// # Ok::<(), memha_proto::Error>(())
    /// ```
    pub fn parse(payload: &[u8]) -> Result<ClusterConfig, Error> {
        let invalid = |detail: &str| Error::with_detail(ErrorKind::InvalidClusterConfig, detail);
        let text = std::str::from_utf8(payload).map_err(|_| invalid("not UTF-8"))?;
        let mut lines = text.split('\n');
        let version = lines
            .next()
            .and_then(|v| parse_u64(v.trim_end_matches('\r').as_bytes()))
            .ok_or_else(|| invalid("missing or bad version line"))?;
        let nodes_line = lines
            .next()
            .map(|l| l.trim_end_matches('\r'))
            .ok_or_else(|| invalid("missing node list"))?;
        if lines.any(|rest| !rest.trim().is_empty()) {
            return Err(invalid("unexpected lines after the node list"));
        }
        let nodes = nodes_line
            .split(' ')
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let mut parts = entry.split('|');
                let (Some(host), Some(ip), Some(port), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(invalid("node entry is not host|ip|port"));
                };
                if host.is_empty() && ip.is_empty() {
                    return Err(invalid("node entry has neither host nor ip"));
                }
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| invalid("bad port"))?;
                Ok(ClusterNode {
                    host: host.to_owned(),
                    ip: (!ip.is_empty()).then(|| ip.to_owned()),
                    port,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.is_empty() {
            return Err(invalid("no nodes"));
        }
        Ok(ClusterConfig { version, nodes })
    }
}
