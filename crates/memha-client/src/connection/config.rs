//! Settings of a node connection.

use std::net::SocketAddr;
use std::time::Duration;

use memha_health::{Backoff, MemcachedProbe};
use memha_proto::Limits;

#[cfg(feature = "tls")]
use super::tls::TlsConfig;

/// Settings of a [`Connection`](super::Connection).
///
/// ```
/// use std::time::Duration;
/// use memha_client::ConnectionConfig;
///
/// let config = ConnectionConfig::default()
///     .connect_timeout(Duration::from_millis(500))
///     .max_in_flight(512)
///     .reconnect_backoff(Duration::from_millis(20), Duration::from_secs(2));
/// assert_eq!(config.max_in_flight, 512);
/// ```
///
/// Each setting has a chainable setter; out-of-range values are
/// clamped when a connection is made (a window of at least 1, a connect
/// timeout of at least 1 ms, a backoff cap no smaller than its start,
/// reads of 4 KiB to 16 MiB), and
/// [`Connection::config`](crate::Connection::config) shows them clamped.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// How long a connection attempt may take, a TLS handshake included
    /// (default 1 s).
    pub connect_timeout: Duration,
    /// How many requests may await their answer at once (default 1024).
    pub max_in_flight: usize,
    /// Whether meta requests carry an opaque token their replies must echo
    /// (default true).
    pub reply_tokens: bool,
    /// The wait before the attempt after a first failed one (default 50 ms).
    pub backoff_min: Duration,
    /// The longest wait between failed attempts (default 1 s).
    pub backoff_max: Duration,
    /// Bounds on values and reply lines (default: memcached's 1 MiB items).
    pub limits: Limits,
    /// How much the reader asks of the socket at a time (default 64 KiB).
    pub read_buffer: usize,
    /// The TLS settings, when the connection speaks TLS (feature `tls`).
    #[cfg(feature = "tls")]
    pub tls: Option<TlsConfig>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig::DEFAULT
    }
}

impl ConnectionConfig {
    /// The defaults: 1 s connect timeout, 1024 requests in flight, reply
    /// tokens on, reconnect backoff from 50 ms to 1 s, memcached's limits,
    /// 64 KiB reads, no TLS.
    pub const DEFAULT: ConnectionConfig = ConnectionConfig {
        connect_timeout: Duration::from_secs(1),
        max_in_flight: 1024,
        reply_tokens: true,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_secs(1),
        limits: Limits::DEFAULT,
        read_buffer: 64 * 1024,
        #[cfg(feature = "tls")]
        tls: None,
    };

    /// How long a connection attempt may take (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether each meta request carries an opaque token that its reply
    /// must echo (default true). A reply that does not is no answer to that
    /// request (a confused or hostile server) and closes the connection, so
    /// no caller ever gets another request's value. Costs a few bytes a
    /// request; turn it off only for a peer that cannot echo tokens.
    pub fn reply_tokens(mut self, on: bool) -> Self {
        self.reply_tokens = on;
        self
    }

    /// How many requests may await their answer at once (default 1024);
    /// beyond that `poll_ready` waits for room. At least 1.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// The wait before a new connection attempt after a failed one: `min`
    /// after the first failure, doubling up to `max`, with jitter (defaults
    /// 50 ms and 1 s; a `min` under 1 ms is taken as 1 ms, as health
    /// probes' backoff is). The first attempt after a working connection broke is
    /// made at once. Requests made while waiting fail at once with
    /// [`ErrorKind::Connect`](crate::ErrorKind::Connect).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// Bounds on values and reply lines (default: memcached's 1 MiB items).
    /// Larger values are refused before sending; a server announcing more
    /// is treated as broken and disconnected.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How much the reader asks of the socket at a time (default 64 KiB;
    /// 4 KiB to 16 MiB).
    pub fn read_buffer(mut self, bytes: usize) -> Self {
        self.read_buffer = bytes;
        self
    }

    /// Speaks TLS to the node (feature `tls`): the connect timeout then
    /// bounds the TLS handshake too, and health probes built by
    /// [`probe`](Self::probe) use the same settings. Every write goes
    /// through the connection's writer task (over plain TCP, a caller with
    /// nothing else in flight writes its request itself).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// These settings for a node discovered by the name `host` (not an IP
    /// address): over TLS, its certificate is checked against `host` unless
    /// a server name was set.
    pub(crate) fn for_host(&self, host: &str) -> ConnectionConfig {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_ref().and_then(|tls| tls.named(host)) {
            return ConnectionConfig {
                tls: Some(tls),
                ..self.clone()
            };
        }
        #[cfg(not(feature = "tls"))]
        let _ = host;
        self.clone()
    }

    /// A health probe of the node at `addr` (`stats` on a short-lived
    /// connection, bounded by `timeout`) that reaches it as these settings
    /// do: over TLS when `tls` is set (feature `tls`).
    pub fn probe(&self, addr: SocketAddr, timeout: Duration) -> MemcachedProbe {
        let probe = MemcachedProbe::new(addr).with_timeout(timeout);
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return probe.with_connector(tls.probe_connector());
        }
        probe
    }

    /// The settings with every value clamped into range: a window of at
    /// least 1, a connect timeout of at least 1 ms, a backoff cap no
    /// smaller than its start, reads of 4 KiB to 16 MiB.
    pub(crate) fn normalized(&self) -> ConnectionConfig {
        ConnectionConfig {
            connect_timeout: self.connect_timeout.max(Duration::from_millis(1)),
            max_in_flight: self.max_in_flight.max(1),
            backoff_max: self.backoff_max.max(self.backoff_min),
            read_buffer: self.read_buffer.clamp(4 * 1024, 16 * 1024 * 1024),
            ..self.clone()
        }
    }

    /// The reconnection backoff: from `backoff_min`, doubling up to
    /// `backoff_max`, each wait shortened by up to half at random (the
    /// same jittered backoff as health probes, `memha_health::Backoff`).
    pub(crate) fn reconnect(&self) -> Backoff {
        Backoff::new(self.backoff_min, 2.0, self.backoff_max, 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backoff_doubles_to_its_cap_with_jitter() {
        let config = ConnectionConfig::default()
            .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(2));
        let mut backoff = config.reconnect();
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        backoff.next_delay();
        let third = backoff.next_delay();
        assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
        for _ in 0..1000 {
            let late = backoff.next_delay();
            assert!(late <= Duration::from_secs(2));
        }
        assert!(backoff.next_delay() >= Duration::from_secs(1));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
