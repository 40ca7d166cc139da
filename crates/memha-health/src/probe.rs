//! Active health probes.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use memha_proto::{Command, Limits, Pipeline, Reply, Stat, StatsGroup};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::Error;
use crate::observe::ClassifyOutcome;
use crate::state::Observation;
use crate::state::RejoinReason;

/// What a successful probe learnt about the server.
///
/// `pid`, `uptime` and `time` come from `stats`; a probe that cannot get them
/// (one that sends `mn` or `version`) leaves them `None`, and restarts then
/// cannot be detected ([`RejoinReason::Unknown`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeReport {
    /// The server's process id (`STAT pid`).
    pub pid: Option<u32>,
    /// Seconds since the server started (`STAT uptime`).
    pub uptime: Option<u64>,
    /// The server's clock, Unix seconds (`STAT time`).
    pub time: Option<u64>,
    /// The server's version (`STAT version`).
    pub version: Option<String>,
}

impl ProbeReport {
    /// A report that only says the node answered.
    pub fn new() -> Self {
        ProbeReport::default()
    }

    /// Sets the pid.
    pub fn with_pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// Sets the uptime in seconds.
    pub fn with_uptime(mut self, uptime: u64) -> Self {
        self.uptime = Some(uptime);
        self
    }

    /// Sets the server's clock in Unix seconds.
    pub fn with_time(mut self, time: u64) -> Self {
        self.time = Some(time);
        self
    }

    /// Reads `pid`, `uptime`, `time` and `version` from a `stats` reply;
    /// missing or unparsable ones stay `None`.
    pub fn from_stats(stats: &[Stat]) -> Self {
        let mut report = ProbeReport::new();
        for stat in stats {
            match stat.name.as_str() {
                "pid" => report.pid = stat.value.parse().ok(),
                "uptime" => report.uptime = stat.value.parse().ok(),
                "time" => report.time = stat.value.parse().ok(),
                "version" => report.version = Some(stat.value.clone()),
                _ => {}
            }
        }
        report
    }

    /// When the server process started by its own clock (`time - uptime`),
    /// constant for the life of a process.
    pub fn started_at(&self) -> Option<u64> {
        self.time?.checked_sub(self.uptime?)
    }

    /// Compares this report with one from the same node earlier: the node
    /// restarted if its pid changed, its uptime went backwards or its start
    /// time moved by more than 2 s. [`RejoinReason::Unknown`] if neither
    /// report has a pid or uptime to compare.
    ///
    /// A restart is only claimed when it is sure: a false "restarted" would
    /// admit a node that may hold stale values.
    ///
    /// ```
    /// use memha_health::{ProbeReport, RejoinReason};
    ///
    /// let before = ProbeReport::new().with_pid(10).with_uptime(500).with_time(10_500);
    /// let paused = ProbeReport::new().with_pid(10).with_uptime(530).with_time(10_530);
    /// let restarted = ProbeReport::new().with_pid(11).with_uptime(2).with_time(10_532);
    /// assert_eq!(paused.compare(&before), RejoinReason::Unreachable);
    /// assert_eq!(restarted.compare(&before), RejoinReason::Restarted);
    /// assert_eq!(ProbeReport::new().compare(&before), RejoinReason::Unknown);
    /// ```
    pub fn compare(&self, earlier: &ProbeReport) -> RejoinReason {
        /// Seconds a start time may move without being a restart (memcached's
        /// clock has whole-second steps).
        const START_SLACK: u64 = 2;
        let pids = earlier.pid.zip(self.pid);
        let uptimes = earlier.uptime.zip(self.uptime);
        if pids.is_some_and(|(before, now)| before != now)
            || uptimes.is_some_and(|(before, now)| now < before)
            || earlier
                .started_at()
                .zip(self.started_at())
                .is_some_and(|(before, now)| before.abs_diff(now) > START_SLACK)
        {
            RejoinReason::Restarted
        } else if pids.is_some() || uptimes.is_some() {
            RejoinReason::Unreachable
        } else {
            RejoinReason::Unknown
        }
    }
}

/// Checks whether a node answers, and what it is.
///
/// The monitor of each node calls it on its schedule; a probe bounds its own
/// time (a hung node must fail the probe with [`Observation::Timeout`], see
/// [`Error::probe`]). [`MemcachedProbe`] is the real one; tests script their
/// own, for example with [`probe_fn`].
#[async_trait]
pub trait Probe: Send + Sync + 'static {
    /// Probes the node once.
    async fn probe(&self) -> Result<ProbeReport, Error>;
}

#[async_trait]
impl<P: Probe + ?Sized> Probe for Arc<P> {
    async fn probe(&self) -> Result<ProbeReport, Error> {
        (**self).probe().await
    }
}

#[async_trait]
impl<P: Probe + ?Sized> Probe for Box<P> {
    async fn probe(&self) -> Result<ProbeReport, Error> {
        (**self).probe().await
    }
}

/// A [`Probe`] made of an async closure; see [`probe_fn`].
#[derive(Clone)]
pub struct ProbeFn<F>(F);

impl<F> fmt::Debug for ProbeFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProbeFn")
    }
}

/// A [`Probe`] that calls `f` for each probe.
///
/// ```
/// use memha_health::{probe_fn, Probe, ProbeReport};
///
/// let probe = probe_fn(|| async { Ok(ProbeReport::new().with_pid(7)) });
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(probe.probe().await.unwrap().pid, Some(7));
/// # });
/// ```
pub fn probe_fn<F, Fut>(f: F) -> ProbeFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ProbeReport, Error>> + Send,
{
    ProbeFn(f)
}

#[async_trait]
impl<F, Fut> Probe for ProbeFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ProbeReport, Error>> + Send,
{
    async fn probe(&self) -> Result<ProbeReport, Error> {
        (self.0)().await
    }
}

/// The real probe: a short-lived TCP connection to a memcached server that
/// sends `stats`, reads `pid`, `uptime` and `time`, and closes.
///
/// The whole exchange, connect included, is bounded by the probe's timeout
/// (default 1 s). A refused, reset or early-closed connection fails with
/// [`Observation::ConnectionFailed`]; running out of time with
/// [`Observation::Timeout`]; a reply that cannot be decoded with
/// [`Observation::Failure`]. Any well-framed reply, even an error line,
/// shows the node alive.
///
/// By default it connects over plain TCP; [`with_connector`](Self::with_connector)
/// makes it reach the node another way, such as over TLS.
#[derive(Debug, Clone)]
pub struct MemcachedProbe {
    addr: SocketAddr,
    timeout: Duration,
    connector: Option<Arc<dyn ProbeConnector>>,
}

/// A byte stream a [`MemcachedProbe`] talks over.
pub trait ProbeIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> ProbeIo for T {}

/// A connection made by a [`ProbeConnector`].
pub type ProbeStream = Box<dyn ProbeIo>;

/// How a [`MemcachedProbe`] reaches its node when plain TCP will not do:
/// for instance memha-client's TLS settings make one, so probes use the
/// same TLS as the node's connection.
///
/// Errors are classified like any I/O error (see [`ClassifyOutcome`]): a
/// refused or closed connection is [`Observation::ConnectionFailed`], a
/// failed TLS handshake (`InvalidData`) an [`Observation::Failure`].
///
/// ```
/// use std::io;
/// use std::net::SocketAddr;
/// use memha_health::{MemcachedProbe, ProbeConnector, ProbeStream};
///
/// /// Plain TCP, as the probe does by default.
/// #[derive(Debug)]
/// struct Tcp;
///
/// #[async_trait::async_trait]
/// impl ProbeConnector for Tcp {
///     async fn connect(&self, addr: SocketAddr) -> io::Result<ProbeStream> {
///         Ok(Box::new(tokio::net::TcpStream::connect(addr).await?))
///     }
/// }
///
/// let probe = MemcachedProbe::new("127.0.0.1:11211".parse().unwrap())
///     .with_connector(std::sync::Arc::new(Tcp));
/// # drop(probe);
/// ```
#[async_trait]
pub trait ProbeConnector: fmt::Debug + Send + Sync + 'static {
    /// Opens a connection to `addr`, ready to carry memcached's protocol.
    /// The probe's timeout bounds it.
    async fn connect(&self, addr: SocketAddr) -> io::Result<ProbeStream>;
}

impl MemcachedProbe {
    /// The default time a probe may take: 1 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A probe of the memcached server at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        MemcachedProbe {
            addr,
            timeout: Self::DEFAULT_TIMEOUT,
            connector: None,
        }
    }

    /// Sets the time one probe may take, connect included.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reaches the node through `connector` (for example over TLS) instead
    /// of plain TCP.
    pub fn with_connector(mut self, connector: Arc<dyn ProbeConnector>) -> Self {
        self.connector = Some(connector);
        self
    }

    /// The probed address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The time one probe may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn exchange(&self) -> Result<ProbeReport, Error> {
        let io_error = |err: io::Error| Error::probe(err.observation(), err);
        match &self.connector {
            None => {
                let stream = TcpStream::connect(self.addr).await.map_err(io_error)?;
                stream.set_nodelay(true).map_err(io_error)?;
                self.stats(stream).await
            }
            Some(connector) => {
                let stream = connector.connect(self.addr).await.map_err(io_error)?;
                self.stats(stream).await
            }
        }
    }

    /// Sends `stats` on `stream` and reads the answer.
    async fn stats<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
    ) -> Result<ProbeReport, Error> {
        let io_error = |err: io::Error| Error::probe(err.observation(), err);
        let mut pipeline = Pipeline::new(Limits::default());
        let mut request = BytesMut::new();
        pipeline
            .submit(&mut Command::Stats(StatsGroup::General), &mut request, ())
            .map_err(|err| Error::probe(Observation::Failure, err))?;
        stream.write_all(&request).await.map_err(io_error)?;
        stream.flush().await.map_err(io_error)?;

        let mut buffer = BytesMut::with_capacity(4096);
        loop {
            match pipeline.decode(&mut buffer) {
                Ok(Some(((), Reply::Stats(stats)))) => return Ok(ProbeReport::from_stats(&stats)),
                Ok(Some(_)) => return Ok(ProbeReport::new()),
                Ok(None) => {}
                Err(err) => return Err(Error::probe(Observation::Failure, err)),
            }
            if stream.read_buf(&mut buffer).await.map_err(io_error)? == 0 {
                return Err(io_error(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} closed the connection before answering stats", self.addr),
                )));
            }
        }
    }
}

#[async_trait]
impl Probe for MemcachedProbe {
    async fn probe(&self) -> Result<ProbeReport, Error> {
        match tokio::time::timeout(self.timeout, self.exchange()).await {
            Ok(result) => result,
            Err(_) => Err(Error::probe(
                Observation::Timeout,
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} did not answer stats within {:?}",
                        self.addr, self.timeout
                    ),
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(pid: Option<u32>, uptime: Option<u64>, time: Option<u64>) -> ProbeReport {
        ProbeReport {
            pid,
            uptime,
            time,
            version: None,
        }
    }

    #[test]
    fn restart_needs_a_changed_pid_a_backwards_uptime_or_a_moved_start() {
        let before = report(Some(100), Some(1000), Some(50_000));
        // Same process, later (paused or partitioned).
        assert_eq!(
            report(Some(100), Some(1300), Some(50_300)).compare(&before),
            RejoinReason::Unreachable
        );
        // Same process seen again at once: not a restart.
        assert_eq!(before.compare(&before), RejoinReason::Unreachable);
        // New pid.
        assert_eq!(
            report(Some(101), Some(1300), Some(50_300)).compare(&before),
            RejoinReason::Restarted
        );
        // Uptime went backwards (same pid, as in a container).
        assert_eq!(
            report(Some(100), Some(3), Some(50_003)).compare(&before),
            RejoinReason::Restarted
        );
        // Same pid, uptime larger than before, but the process started after
        // the earlier probe: a restart after a long outage.
        assert_eq!(
            report(Some(100), Some(1200), Some(60_000)).compare(&before),
            RejoinReason::Restarted
        );
        // Start time moved by the clock's step only: not a restart.
        assert_eq!(
            report(Some(100), Some(1300), Some(50_302)).compare(&before),
            RejoinReason::Unreachable
        );
        // Only uptimes: still comparable.
        assert_eq!(
            report(None, Some(10), None).compare(&report(None, Some(20), None)),
            RejoinReason::Restarted
        );
        assert_eq!(
            report(None, Some(30), None).compare(&report(None, Some(20), None)),
            RejoinReason::Unreachable
        );
        // Nothing to compare.
        assert_eq!(
            report(None, None, None).compare(&before),
            RejoinReason::Unknown
        );
        assert_eq!(
            before.compare(&report(None, None, None)),
            RejoinReason::Unknown
        );
    }

    #[test]
    fn report_from_stats_reads_pid_uptime_time_version() {
        let stat = |name: &str, value: &str| Stat {
            name: name.into(),
            value: value.into(),
        };
        let report = ProbeReport::from_stats(&[
            stat("pid", "4242"),
            stat("uptime", "17"),
            stat("time", "1700000017"),
            stat("version", "1.6.18"),
            stat("curr_connections", "2"),
        ]);
        assert_eq!(report.pid, Some(4242));
        assert_eq!(report.uptime, Some(17));
        assert_eq!(report.started_at(), Some(1_700_000_000));
        assert_eq!(report.version.as_deref(), Some("1.6.18"));
        let garbled = ProbeReport::from_stats(&[stat("pid", "x"), stat("uptime", "-1")]);
        assert_eq!(garbled, ProbeReport::new());
    }
}
