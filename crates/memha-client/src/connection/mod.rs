//! One multiplexed, pipelined connection to one memcached node, as a
//! [`tower::Service`].
//!
//! Every clone of a [`Connection`] shares one TCP connection:
//! - requests from every caller are encoded into one output buffer and sent
//!   in batches, many per write system call; answers are read in batches and
//!   matched to requests first in, first out;
//! - when nothing is in flight the calling task writes its request at once
//!   itself (lowest latency); otherwise a writer task sends the batch, after
//!   yielding once so more requests join it;
//! - at most [`ConnectionConfig::max_in_flight`] requests await their answer;
//!   `poll_ready` waits for room (backpressure);
//! - a caller that drops its future never desynchronises the stream: its
//!   answer is read and discarded;
//! - replies come back in order, so one timer per connection, in its reader
//!   task, bounds the requests the node stack sends with a deadline: armed
//!   at the earliest deadline awaiting a reply, it fails those past theirs
//!   with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) (their late
//!   answers are read and discarded);
//! - a broken connection fails every request queued or in flight with
//!   [`ErrorKind::Connection`](crate::ErrorKind::Connection) (telling by
//!   [`Error::is_unsent`](crate::Error::is_unsent) which surely never left);
//!   an undecodable reply closes it and fails them with
//!   [`ErrorKind::Protocol`](crate::ErrorKind::Protocol);
//! - the connection is made on first use and remade on demand, each attempt
//!   bounded by the connect timeout; after a failed attempt, requests fail at
//!   once with [`ErrorKind::Connect`](crate::ErrorKind::Connect) until an
//!   exponential, capped backoff has passed.
//!
//! With the `tls` feature and [`ConnectionConfig::tls`], the connection
//! speaks TLS (rustls): the handshake is part of the connection attempt
//! and bounded by the connect timeout, a failed one is an
//! [`ErrorKind::Connect`](crate::ErrorKind::Connect) error whose source is
//! a `TlsError`, and every write goes through the writer task.
//!
//! Requests must be made from within a tokio runtime: the connection's
//! tasks are spawned on the runtime of the request that opens it.

mod config;
mod future;
mod metrics;
mod shared;
mod task;
#[cfg(feature = "tls")]
mod tls;
mod transport;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use memha_proto::{Command, Reply};
use tokio::sync::TryAcquireError;
use tokio_util::sync::PollSemaphore;
use tower::Service;

pub use config::ConnectionConfig;
pub use future::ResponseFuture;
pub use metrics::ConnectionMetrics;
#[cfg(feature = "tls")]
pub use tls::{TlsConfig, TlsConfigBuilder, TlsError, TlsErrorKind};

use crate::error::{Error, ErrorKind};
use shared::Shared;

/// A cloneable handle to the one connection to a memcached node.
///
/// It answers any [`Command`] that gets a reply with the decoded [`Reply`];
/// the [`Client`](crate::Client) builds the commands and reads the replies.
///
/// ```no_run
/// use memha_client::{Connection, ConnectionConfig};
/// use memha_proto::{Command, Reply};
/// use tower::{Service, ServiceExt};
///
/// # async fn demo() -> Result<(), memha_client::Error> {
/// let mut connection = Connection::new("127.0.0.1:11211".parse().unwrap(), ConnectionConfig::default());
/// let reply = connection.ready().await?.call(Command::Version).await?;
/// assert!(matches!(reply, Reply::Version(_)));
/// # Ok(())
/// # }
/// ```
pub struct Connection {
    owner: Arc<Owner>,
    /// This handle holds a place in the window, reserved by `poll_ready`.
    reserved: bool,
    /// Waits for a place when the window is full (the slow path only).
    waiting: Option<PollSemaphore>,
}

/// Owned by every handle and by each pending response that outlives its
/// handle (a response sent with `send_held` holds none: its node stack's
/// handle does): when the last one goes, the connection closes and its
/// tasks end.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl Connection {
    /// A connection to `addr`. Nothing happens until the first request,
    /// which connects.
    pub fn new(addr: SocketAddr, config: ConnectionConfig) -> Self {
        Connection {
            owner: Arc::new(Owner {
                shared: Arc::new(Shared::new(addr, config)),
            }),
            reserved: false,
            waiting: None,
        }
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.owner.shared.addr
    }

    /// The settings in force.
    pub fn config(&self) -> &ConnectionConfig {
        &self.owner.shared.config
    }

    /// Whether a TCP connection is established now.
    pub fn is_connected(&self) -> bool {
        self.owner.shared.is_connected()
    }

    /// How long requests have been outstanding on this connection with no
    /// answer read, as of `now` (zero when none is outstanding): a node
    /// that stopped answering shows here long before its requests time out.
    pub(crate) fn stalled_for(&self, now: std::time::Instant) -> std::time::Duration {
        self.owner.shared.stalled_for(now)
    }

    /// The connection's counters since it was created.
    pub fn metrics(&self) -> ConnectionMetrics {
        let shared = &self.owner.shared;
        shared.counters.snapshot(shared.requests())
    }
}

impl Clone for Connection {
    /// Another handle to the same connection (its own place in the
    /// window is reserved by its own `poll_ready`).
    fn clone(&self) -> Self {
        Connection {
            owner: Arc::clone(&self.owner),
            reserved: false,
            waiting: None,
        }
    }
}

impl Drop for Connection {
    /// Gives back a place reserved and never used.
    fn drop(&mut self) {
        if self.reserved {
            self.owner.shared.release(1);
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr())
            .field("ready", &self.reserved)
            .finish()
    }
}

impl Service<Command> for Connection {
    type Response = Reply;
    type Error = Error;
    type Future = ResponseFuture;

    /// Reserves a place in the in-flight window, waiting while it is full.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.reserved {
            return Poll::Ready(Ok(()));
        }
        let window = &self.owner.shared.window;
        if self.waiting.is_none() {
            match window.try_acquire() {
                Ok(permit) => {
                    // Given back in bulk by the reader when the answer is read.
                    permit.forget();
                    self.reserved = true;
                    return Poll::Ready(Ok(()));
                }
                Err(TryAcquireError::Closed) => {
                    return Poll::Ready(Err(Error::new(ErrorKind::Closed)))
                }
                Err(TryAcquireError::NoPermits) => {}
            }
        }
        let waiting = self
            .waiting
            .get_or_insert_with(|| PollSemaphore::new(Arc::clone(window)));
        match ready!(waiting.poll_acquire(cx)) {
            Some(permit) => {
                permit.forget();
                self.waiting = None;
                self.reserved = true;
                Poll::Ready(Ok(()))
            }
            None => Poll::Ready(Err(Error::new(ErrorKind::Closed))),
        }
    }

    /// Queues the request. It is sent before this returns when nothing else
    /// is in flight, else with the next batch.
    ///
    /// # Panics
    ///
    /// If `poll_ready` did not return `Ready(Ok)` first.
    fn call(&mut self, mut command: Command) -> ResponseFuture {
        self.send(&mut command, None)
    }
}

impl Connection {
    /// [`call`](Service::call) with a borrowed command, given back as it
    /// came: the node stack keeps it for a retry without copying it.
    ///
    /// With a `deadline`, the connection's one timer may bound the request
    /// (failing it with [`ErrorKind::Timeout`] once the deadline passed):
    /// [`ResponseFuture::is_covered`] tells whether it does, else the
    /// caller bounds it.
    pub(crate) fn send(
        &mut self,
        command: &mut Command,
        deadline: Option<tokio::time::Instant>,
    ) -> ResponseFuture {
        let owner = Arc::clone(&self.owner);
        self.submit(command, deadline, Some(owner))
    }

    /// [`send`](Self::send) for a caller that keeps this handle until the
    /// answer (the node stack's calls): the future does not hold the
    /// connection open itself, which saves two updates of a count every
    /// request on every thread shares.
    pub(crate) fn send_held(
        &mut self,
        command: &mut Command,
        deadline: Option<tokio::time::Instant>,
    ) -> ResponseFuture {
        self.submit(command, deadline, None)
    }

    fn submit(
        &mut self,
        command: &mut Command,
        deadline: Option<tokio::time::Instant>,
        owner: Option<Arc<Owner>>,
    ) -> ResponseFuture {
        assert!(
            std::mem::take(&mut self.reserved),
            "Connection::call without a successful poll_ready"
        );
        match self.owner.shared.submit(command, deadline) {
            Ok(submitted) => {
                if let Some(runtime) = submitted.connect {
                    runtime.spawn(task::connect(Arc::clone(&self.owner.shared)));
                }
                ResponseFuture::waiting(submitted.reply, submitted.covered, owner)
            }
            Err(error) => ResponseFuture::failed(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use memha_proto::{Key, MetaGet};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio::time::Instant;

    use super::*;

    const BOUND: Duration = Duration::from_secs(5);

    fn get(key: &'static str) -> Command {
        Command::MetaGet(MetaGet::new(Key::new(key).unwrap()))
    }

    async fn send(
        connection: &mut Connection,
        key: &'static str,
        deadline: Instant,
    ) -> ResponseFuture {
        std::future::poll_fn(|cx| connection.poll_ready(cx))
            .await
            .unwrap();
        connection.send(&mut get(key), Some(deadline))
    }

    /// Waits, a bounded number of turns, for the reader to arm its timer.
    async fn wait_armed(connection: &Connection) {
        for _ in 0..100_000 {
            if connection.owner.shared.is_armed() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the reader did not arm its timer");
    }

    /// Reads until `count` request lines have arrived.
    async fn requests(server: &mut tokio::net::TcpStream, count: usize) {
        memha_tests::read_lines(server, count, BOUND)
            .await
            .expect("requests arrive");
    }

    #[tokio::test]
    async fn requests_sent_while_the_reader_s_timer_is_armed_are_covered_by_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = ConnectionConfig::default().reply_tokens(false);
        let mut connection = Connection::new(listener.local_addr().unwrap(), config);
        let deadline = Instant::now() + Duration::from_secs(60);
        // The connection was idle: not covered, the caller bounds it.
        let first = send(&mut connection, "a", deadline).await;
        assert!(!first.is_covered());
        let (mut server, _) = listener.accept().await.unwrap();
        requests(&mut server, 1).await;
        let second = send(&mut connection, "b", deadline).await;
        assert!(!second.is_covered());
        requests(&mut server, 1).await;
        // Answering the first with the second outstanding arms the timer.
        server.write_all(b"EN\r\n").await.unwrap();
        first.await.unwrap();
        wait_armed(&connection).await;
        let third = send(&mut connection, "c", deadline).await;
        assert!(third.is_covered());
        // A deadline before the timer's is not covered: it bounds itself.
        let early = send(
            &mut connection,
            "d",
            Instant::now() + Duration::from_secs(1),
        )
        .await;
        assert!(!early.is_covered());
        // No deadline, no cover.
        std::future::poll_fn(|cx| connection.poll_ready(cx))
            .await
            .unwrap();
        assert!(!connection.send(&mut get("e"), None).is_covered());
    }

    #[tokio::test(start_paused = true)]
    async fn the_reader_s_timer_gives_up_covered_requests_at_their_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = ConnectionConfig::default().reply_tokens(false);
        let mut connection = Connection::new(listener.local_addr().unwrap(), config);
        let start = Instant::now();
        let first = send(&mut connection, "a", start + Duration::from_secs(10)).await;
        let (mut server, _) = listener.accept().await.unwrap();
        let second = send(&mut connection, "b", start + Duration::from_secs(10)).await;
        requests(&mut server, 2).await;
        server.write_all(b"EN\r\n").await.unwrap();
        first.await.unwrap();
        wait_armed(&connection).await;
        let third = send(&mut connection, "c", start + Duration::from_secs(20)).await;
        assert!(third.is_covered());
        requests(&mut server, 1).await;
        // Nothing but the connection's timer bounds `c` (the bound here
        // only turns a broken timer into a failure, on paused time).
        let err = tokio::time::timeout(Duration::from_secs(100), third)
            .await
            .expect("the connection's timer ends `c`")
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert!(!err.is_unsent());
        assert_eq!(Instant::now() - start, Duration::from_secs(20));
        assert!(second.await.unwrap_err().is_timeout());
        // Their replies come late, and are dropped: the next request gets its own.
        server.write_all(b"EN\r\nEN\r\n").await.unwrap();
        let next = send(&mut connection, "d", start + Duration::from_secs(60)).await;
        requests(&mut server, 1).await;
        server.write_all(b"HD\r\n").await.unwrap();
        let reply = next.await.unwrap();
        assert!(matches!(reply, Reply::Meta(m) if m.status == memha_proto::MetaStatus::Stored));
    }
}
