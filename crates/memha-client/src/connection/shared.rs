//! The state one node connection shares between its handles and its tasks.
//!
//! Replies come back in order, so one timer per connection can bound the
//! requests given a deadline: the reader task keeps it armed at the
//! earliest deadline of the requests awaiting replies, and a request is
//! covered by it when submitted while it is armed no later than the
//! request's own deadline. A caller whose request is not covered (the
//! first after the connection was idle, say) bounds it with a timer of
//! its own.
//!
//! Requests are submitted to one [`Pipeline`] and encoded into one output
//! buffer in the same critical section, so the pipeline's order is the
//! order of the bytes on the wire and replies are matched first in, first
//! out. The reader task moves every submitted request into its own
//! pipeline at once when it runs out of requests to match, so the lock is
//! taken once per batch of replies, not once per reply.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use memha_health::Backoff;
use memha_proto::{Command, Pipeline, Reply};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify, Semaphore};
use tokio::time::Instant;

use super::config::ConnectionConfig;
use super::metrics::Counters;
use super::transport::{Parts, Reader, Sender, Writer};
use crate::error::{Error, ErrorKind};

/// The answer channel of one request.
pub(super) type ReplySender = oneshot::Sender<Result<Reply, Error>>;

/// A request awaiting its reply, as the pipeline keeps it.
#[derive(Debug)]
pub(super) struct Request {
    /// `None` once the request was given up at its deadline: its reply is
    /// still read, and dropped.
    reply: Option<ReplySender>,
    deadline: Option<Instant>,
}

impl Request {
    /// Hands the answer over (a caller that gave up is simply not there).
    pub(super) fn answer(self, answer: Result<Reply, Error>) {
        if let Some(reply) = self.reply {
            let _ = reply.send(answer);
        }
    }

    /// Fails the request now; its reply, when it comes, is dropped.
    fn give_up(&mut self, error: Error) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(Err(error));
        }
    }
}

/// Where a caller waits for its answer.
pub(super) type ReplyReceiver = oneshot::Receiver<Result<Reply, Error>>;

/// A value aligned to, and filling, whole cache lines (128 bytes: two
/// lines, as adjacent lines are fetched together), so that writes to it
/// and to its neighbours do not contend for the same line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct CacheLines<T>(T);

impl<T> std::ops::Deref for CacheLines<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Everything a connection's handles and tasks share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) addr: SocketAddr,
    pub(super) config: ConnectionConfig,
    pub(super) counters: Counters,
    /// The in-flight window: a request holds one permit from `poll_ready`
    /// until its answer is read or it fails. Permits are taken one by one
    /// and given back in bulk, once per batch of answers.
    pub(super) window: Arc<Semaphore>,
    /// On cache lines of its own: callers and the reader take the lock
    /// while they update the counters beside it.
    state: CacheLines<Mutex<State>>,
    /// Requests queued and neither answered nor failed yet.
    outstanding: AtomicUsize,
    /// A request with a deadline was submitted while the reader's timer
    /// was not armed: the reader arms it after its next batch.
    needs_arm: AtomicBool,
    /// When the connection last made progress (answers read, or requests
    /// queued with none outstanding), in nanoseconds since `epoch`: a node
    /// with requests outstanding and no progress for a while is stalled.
    progress: AtomicU64,
    epoch: std::time::Instant,
}

#[derive(Debug)]
struct State {
    link: LinkState,
    /// The wait before the next attempt, after failed ones.
    reconnect: Backoff,
    /// Encoded requests not yet handed to the socket.
    out: BytesMut,
    /// Requests submitted since the current connection (or attempt) began
    /// and not yet taken by the reader, in wire order.
    submitted: Pipeline<Request>,
    /// When the reader's timer fires, if armed: requests with a deadline
    /// no earlier are covered by it.
    armed_at: Option<Instant>,
    /// The writer task owns the next flush of `out`; callers must not write.
    writer_busy: bool,
    /// Requests queued since the connection was created.
    requests: u64,
}

#[derive(Debug)]
enum LinkState {
    /// Not connected; the next request starts an attempt at once.
    Idle,
    /// An attempt is under way; requests queue up behind it.
    Connecting,
    Connected(Arc<Link>),
    /// The last attempt failed; requests fail at once until `retry_at`.
    Backoff {
        retry_at: std::time::Instant,
        error: Error,
    },
    /// Every handle was dropped.
    Closed,
}

/// One connection and what its tasks need to coordinate over it.
#[derive(Debug)]
pub(super) struct Link {
    /// The sending half (or, over TLS, a handle to shut the socket down);
    /// the reader task owns the receiving half.
    pub(super) stream: Sender,
    pub(super) wake_writer: Notify,
    /// How many bytes of the connection's output were handed to the kernel,
    /// counted pessimistically (before the write returns): requests ending
    /// past it surely never reached the server.
    committed: AtomicU64,
    closed: AtomicBool,
    failure: OnceLock<Error>,
}

impl Link {
    fn new(stream: Sender) -> Self {
        Link {
            stream,
            wake_writer: Notify::new(),
            committed: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            failure: OnceLock::new(),
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Records before a write how far the output will have gone after it.
    pub(super) fn commit(&self, encoded: u64) {
        self.committed.store(encoded, Ordering::SeqCst);
    }

    /// Closes the link: the socket is shut down first (so no write can go
    /// out after this returns), then the tasks are woken. Returns how many
    /// bytes may have reached the server.
    fn close(&self, error: Error) -> u64 {
        let _ = self.failure.set(error);
        self.closed.store(true, Ordering::Release);
        self.stream.shutdown();
        self.wake_writer.notify_one();
        self.committed.load(Ordering::SeqCst)
    }

    /// Why the link closed.
    pub(super) fn failure(&self) -> Error {
        self.failure
            .get()
            .cloned()
            .unwrap_or_else(|| Error::new(ErrorKind::Connection))
    }

    pub(super) fn committed(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }
}

/// A request handed to the connection.
pub(super) struct Submitted {
    pub(super) reply: ReplyReceiver,
    /// Whether the reader's timer bounds it by its deadline.
    pub(super) covered: bool,
    /// The runtime to open the connection on, when it is to be opened.
    pub(super) connect: Option<Handle>,
}

/// A link just connected, with the halves its reader and writer tasks take.
pub(super) struct Started {
    pub(super) link: Arc<Link>,
    pub(super) reader: Reader,
    pub(super) writer: Writer,
}

impl Shared {
    pub(super) fn new(addr: SocketAddr, config: ConnectionConfig) -> Self {
        let config = config.normalized();
        let submitted = Pipeline::new(config.limits).tokens(config.reply_tokens);
        let reconnect = config.reconnect();
        Shared {
            addr,
            window: Arc::new(Semaphore::new(config.max_in_flight)),
            config,
            counters: Counters::default(),
            state: CacheLines(Mutex::new(State {
                link: LinkState::Idle,
                reconnect,
                out: BytesMut::new(),
                submitted,
                armed_at: None,
                writer_busy: false,
                requests: 0,
            })),
            outstanding: AtomicUsize::new(0),
            needs_arm: AtomicBool::new(false),
            progress: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        }
    }

    fn progressed(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.progress.store(now, Ordering::Relaxed);
    }

    /// How long requests have been outstanding with no answer read, as of
    /// `now`: zero when none is outstanding.
    pub(super) fn stalled_for(&self, now: std::time::Instant) -> Duration {
        if !self.has_outstanding() {
            return Duration::ZERO;
        }
        let since = Duration::from_nanos(self.progress.load(Ordering::Relaxed));
        now.saturating_duration_since(self.epoch)
            .saturating_sub(since)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn is_connected(&self) -> bool {
        matches!(self.lock().link, LinkState::Connected(_))
    }

    pub(super) fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// Gives places in the in-flight window back.
    pub(super) fn release(&self, permits: usize) {
        if permits > 0 {
            self.window.add_permits(permits);
        }
    }

    /// Queues a request that holds a place in the window and, when nothing
    /// else is in flight, writes it from the calling task at once; otherwise
    /// the writer task sends it with the others that arrive before it runs.
    /// A request refused here gives its place back at once.
    ///
    /// `command` is only borrowed, so a caller that may retry keeps it
    /// without a copy; it is given back as it came (its opaque token is
    /// set for the encoding only).
    ///
    /// With a runtime handle when the connection is to be opened: the
    /// caller spawns the connect task on it (this
    /// state never spawns its own tasks).
    pub(super) fn submit(
        &self,
        command: &mut Command,
        deadline: Option<Instant>,
    ) -> Result<Submitted, Error> {
        let mut connect = None;
        let result = self.enqueue(command, deadline, &mut connect);
        if result.is_err() {
            self.release(1);
        }
        result.map(|(reply, covered)| Submitted {
            reply,
            covered,
            connect,
        })
    }

    fn enqueue(
        &self,
        command: &mut Command,
        deadline: Option<Instant>,
        connect: &mut Option<Handle>,
    ) -> Result<(ReplyReceiver, bool), Error> {
        let mut guard = self.lock();
        let state = &mut *guard;
        // A request refused for what it is says so, whatever the link's
        // state (on a live link, `submit` checks it).
        if !matches!(state.link, LinkState::Connected(_)) {
            if let Err(err) = state.submitted.check(command) {
                return Err(Error::from_proto(err).with_node(self.addr));
            }
        }
        let must_connect = match &state.link {
            LinkState::Closed => {
                return Err(Error::new(ErrorKind::Closed)
                    .with_unsent(true)
                    .with_node(self.addr))
            }
            LinkState::Backoff { retry_at, error } if std::time::Instant::now() < *retry_at => {
                return Err(error.clone());
            }
            LinkState::Idle | LinkState::Backoff { .. } => true,
            LinkState::Connecting | LinkState::Connected(_) => false,
        };
        let runtime = match must_connect {
            true => Some(self.runtime()?),
            false => None,
        };
        let (reply, receiver) = oneshot::channel();
        let request = Request {
            reply: Some(reply),
            deadline,
        };
        if let Err(err) = state.submitted.submit(command, &mut state.out, request) {
            return Err(Error::from_proto(err).with_node(self.addr));
        }
        let covered = match (deadline, state.armed_at) {
            (Some(deadline), Some(armed_at)) => armed_at <= deadline,
            (Some(_), None) => {
                self.needs_arm.store(true, Ordering::Relaxed);
                false
            }
            (None, _) => false,
        };
        // Only for a request that is sent: one refused leaves it idle.
        if let Some(runtime) = runtime {
            state.link = LinkState::Connecting;
            *connect = Some(runtime);
        }
        state.requests += 1;
        let nothing_in_flight = self.outstanding.fetch_add(1, Ordering::Relaxed) == 0;
        if nothing_in_flight {
            self.progressed();
        }
        if let LinkState::Connected(link) = &state.link {
            if !state.writer_busy {
                if nothing_in_flight {
                    let submitted = state.submitted.submitted();
                    if let Err(err) = self.write_now(link, &mut state.out, submitted) {
                        let link = Arc::clone(link);
                        self.fail_link(state, &link, Error::io(ErrorKind::Connection, err));
                        return Ok((receiver, covered));
                    }
                }
                if !state.out.is_empty() {
                    state.writer_busy = true;
                    link.wake_writer.notify_one();
                }
            }
        }
        Ok((receiver, covered))
    }

    /// Writes what it can without waiting; the writer task sends the rest
    /// (all of it over TLS).
    fn write_now(&self, link: &Link, out: &mut BytesMut, encoded: u64) -> io::Result<()> {
        if !link.stream.writes_directly() {
            return Ok(());
        }
        link.commit(encoded);
        match link.stream.try_write(out) {
            Ok(written) => {
                Counters::add(&self.counters.writes, 1);
                out.advance(written);
                Ok(())
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The runtime to open the connection on.
    fn runtime(&self) -> Result<Handle, Error> {
        Handle::try_current().map_err(|_| {
            Error::new(ErrorKind::Closed)
                .with_unsent(true)
                .with_node(self.addr)
                .with_detail("a connection needs a tokio runtime")
        })
    }

    /// The end of a connection attempt: the new link with the halves its
    /// reader and writer tasks take (the caller spawns them), or `None`.
    pub(super) fn connected(&self, attempt: Result<Parts, Error>) -> Option<Started> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if !matches!(state.link, LinkState::Connecting) {
            return None; // closed meanwhile
        }
        match attempt {
            Ok(Parts {
                sender,
                writer,
                reader,
            }) => {
                tracing::debug!(node = %self.addr, "connected");
                Counters::add(&self.counters.connects, 1);
                state.reconnect.reset();
                let link = Arc::new(Link::new(sender));
                state.link = LinkState::Connected(Arc::clone(&link));
                // The writer task finds this wake-up once it runs.
                if !state.out.is_empty() {
                    state.writer_busy = true;
                    link.wake_writer.notify_one();
                }
                Some(Started {
                    link,
                    reader,
                    writer,
                })
            }
            Err(error) => {
                Counters::add(&self.counters.connect_failures, 1);
                let delay = state.reconnect.next_delay();
                let error = error.with_node(self.addr);
                tracing::debug!(node = %self.addr, %error, ?delay, "connection attempt failed");
                self.fail_queue(state, &error, 0);
                state.link = LinkState::Backoff {
                    retry_at: std::time::Instant::now() + delay,
                    error,
                };
                None
            }
        }
    }

    /// Moves every submitted request into the reader's pipeline, if `link`
    /// is still the connection in use. Returns false when it is not.
    pub(super) fn take_submitted(&self, link: &Arc<Link>, into: &mut Pipeline<Request>) -> bool {
        let mut state = self.lock();
        if !is_current(&state, link) {
            return false;
        }
        into.take_from(&mut state.submitted);
        true
    }

    /// Takes the pending output for the writer task, or clears
    /// `writer_busy` when there is none. Returns false when there is nothing
    /// to write or `link` is no longer in use.
    pub(super) fn take_output(&self, link: &Arc<Link>, into: &mut BytesMut) -> bool {
        let mut state = self.lock();
        if !is_current(&state, link) {
            return false;
        }
        if state.out.is_empty() {
            state.writer_busy = false;
            return false;
        }
        state.writer_busy = true;
        into.clear();
        std::mem::swap(&mut state.out, into);
        link.commit(state.submitted.submitted());
        true
    }

    /// Whether requests are queued or in flight.
    pub(super) fn has_outstanding(&self) -> bool {
        self.outstanding.load(Ordering::Relaxed) > 0
    }

    /// Counts answered requests and gives their places in the window back.
    pub(super) fn answered(&self, replies: usize) {
        if replies > 0 {
            self.progressed();
            self.outstanding.fetch_sub(replies, Ordering::Relaxed);
            Counters::add(&self.counters.replies, replies as u64);
            self.release(replies);
        }
    }

    /// Closes a broken connection and fails the requests still queued; the
    /// next request reconnects. Does nothing if `link` was already replaced.
    pub(super) fn fail(&self, link: &Arc<Link>, error: Error) {
        let mut state = self.lock();
        if is_current(&state, link) {
            self.fail_link(&mut state, link, error.with_node(self.addr));
        }
    }

    /// Whether the reader's timer is armed.
    #[cfg(test)]
    pub(super) fn is_armed(&self) -> bool {
        self.lock().armed_at.is_some()
    }

    /// Whether the reader should arm its timer: requests with deadlines
    /// were submitted while it was not armed, and requests are outstanding.
    pub(super) fn should_arm(&self) -> bool {
        self.needs_arm.load(Ordering::Relaxed)
            && self.has_outstanding()
            && self.needs_arm.swap(false, Ordering::Relaxed)
    }

    /// The reader's timer: takes the requests submitted meanwhile, gives
    /// up those whose deadline has passed (their replies are still read,
    /// and dropped), and returns when the timer is to fire next (the
    /// earliest deadline left), which covers the requests submitted from
    /// now on with a deadline no earlier. `None` disarms it.
    pub(super) fn rearm(&self, link: &Arc<Link>, taken: &mut Pipeline<Request>) -> Option<Instant> {
        let mut state = self.lock();
        if !is_current(&state, link) {
            return None;
        }
        taken.take_from(&mut state.submitted);
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        taken.visit_awaiting(|request| {
            let Some(deadline) = request.deadline.filter(|_| request.reply.is_some()) else {
                return;
            };
            if deadline <= now {
                // Not unsent, even if not written yet: the writer may
                // still send it.
                let error = Error::new(ErrorKind::Timeout)
                    .with_node(self.addr)
                    .with_detail("no answer by the request's deadline");
                request.give_up(error);
            } else {
                next = Some(next.map_or(deadline, |next| next.min(deadline)));
            }
        });
        state.armed_at = next;
        next
    }

    /// Fails the requests the reader had taken, after the link closed.
    pub(super) fn fail_taken(&self, link: &Link, taken: &mut Pipeline<Request>) {
        self.fail_requests(taken, &link.failure(), link.committed());
    }

    /// Fails every request of `pipeline`, telling each whether it surely
    /// never left, and gives their places in the window back.
    fn fail_requests(&self, pipeline: &mut Pipeline<Request>, error: &Error, committed: u64) {
        let count = pipeline.len();
        for (request, unsent) in pipeline.fail_all(committed) {
            request.answer(Err(error.clone().with_unsent(unsent)));
        }
        self.outstanding.fetch_sub(count, Ordering::Relaxed);
        self.release(count);
    }

    fn fail_link(&self, state: &mut State, link: &Arc<Link>, error: Error) {
        tracing::warn!(node = %self.addr, %error, "connection lost");
        Counters::add(&self.counters.disconnects, 1);
        let committed = link.close(error.clone());
        self.fail_queue(state, &error, committed);
        state.link = LinkState::Idle;
    }

    fn fail_queue(&self, state: &mut State, error: &Error, committed: u64) {
        self.fail_requests(&mut state.submitted, error, committed);
        // A new link's reader arms its own timer.
        state.armed_at = None;
        state.out.clear();
        state.writer_busy = false;
    }

    /// Shuts the connection down when its last handle is dropped.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        let error = Error::new(ErrorKind::Closed).with_node(self.addr);
        match std::mem::replace(&mut state.link, LinkState::Closed) {
            LinkState::Connected(link) => {
                let committed = link.close(error.clone());
                self.fail_queue(&mut state, &error, committed);
            }
            _ => self.fail_queue(&mut state, &error, 0),
        }
    }
}

fn is_current(state: &State, link: &Arc<Link>) -> bool {
    matches!(&state.link, LinkState::Connected(current) if Arc::ptr_eq(current, link))
}
