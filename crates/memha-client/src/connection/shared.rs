//! The state one node connection shares between its handles and its tasks.
//!
//! Requests are encoded into one output buffer and queued, in the same
//! critical section, so the order of the queue is the order of the bytes on
//! the wire and replies can be matched first in, first out. The reader task
//! takes the whole queue at once when it runs out of requests to match, so
//! the lock is taken once per batch of replies, not once per reply.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use memha_proto::{Command, Limits, Reply, ReplyDecoder, ReplyKind};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify, Semaphore};

use super::config::ConnectionConfig;
use super::metrics::Counters;
use super::transport::{Parts, Reader, Sender, Writer};
use crate::error::{Error, ErrorKind};

/// The answer channel of one request.
pub(super) type ReplySender = oneshot::Sender<Result<Reply, Error>>;
/// Where a caller waits for its answer.
pub(super) type ReplyReceiver = oneshot::Receiver<Result<Reply, Error>>;

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
    state: Mutex<State>,
    /// Requests queued and neither answered nor failed yet.
    outstanding: AtomicUsize,
    /// When the connection last made progress (answers read, or requests
    /// queued with none outstanding), in nanoseconds since `epoch`: a node
    /// with requests outstanding and no progress for a while is stalled.
    progress: AtomicU64,
    epoch: Instant,
}

#[derive(Debug)]
struct State {
    link: LinkState,
    /// Consecutive failed connection attempts.
    connect_failures: u32,
    /// Encoded requests not yet handed to the socket.
    out: BytesMut,
    /// Requests whose answer the reader has not taken yet, in wire order.
    queue: VecDeque<Pending>,
    /// Bytes encoded since the current connection (or attempt) began.
    encoded: u64,
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
        retry_at: Instant,
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

/// A request awaiting its answer.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) kind: ReplyKind,
    /// The opaque token a meta reply must echo: a reply that does not is no
    /// answer to this request (a confused or hostile server), and the
    /// connection is closed rather than handing it a stranger's value.
    opaque: Option<u32>,
    /// Where the request's bytes end in the connection's output.
    end: u64,
    reply: ReplySender,
}

impl Pending {
    /// Hands the answer over; a caller that gave up is simply not there.
    pub(super) fn complete(self, reply: Reply) {
        let _ = self.reply.send(Ok(reply));
    }

    /// Fails the request, telling whether it surely never left.
    pub(super) fn fail(self, error: &Error, committed: u64) {
        let unsent = self.end > committed;
        let _ = self.reply.send(Err(error.clone().with_unsent(unsent)));
    }
}

/// A link just connected, with the halves its reader and writer tasks take.
pub(super) struct Started {
    pub(super) link: Arc<Link>,
    pub(super) reader: Reader,
    pub(super) writer: Writer,
}

impl Shared {
    pub(super) fn new(addr: SocketAddr, config: ConnectionConfig) -> Self {
        Shared {
            addr,
            window: Arc::new(Semaphore::new(config.max_in_flight)),
            config,
            counters: Counters::default(),
            state: Mutex::new(State {
                link: LinkState::Idle,
                connect_failures: 0,
                out: BytesMut::new(),
                queue: VecDeque::new(),
                encoded: 0,
                writer_busy: false,
                requests: 0,
            }),
            outstanding: AtomicUsize::new(0),
            progress: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn progressed(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.progress.store(now, Ordering::Relaxed);
    }

    /// How long requests have been outstanding with no answer read: zero
    /// when none is outstanding.
    pub(super) fn stalled_for(&self) -> Duration {
        if !self.has_outstanding() {
            return Duration::ZERO;
        }
        let since = Duration::from_nanos(self.progress.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(since)
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
    ) -> Result<(ReplyReceiver, Option<Handle>), Error> {
        let mut connect = None;
        let result = self.enqueue(command, &mut connect);
        if result.is_err() {
            self.release(1);
        }
        result.map(|receiver| (receiver, connect))
    }

    fn enqueue(
        &self,
        command: &mut Command,
        connect: &mut Option<Handle>,
    ) -> Result<ReplyReceiver, Error> {
        let kind = reply_kind(command).map_err(|err| err.with_node(self.addr))?;
        let mut guard = self.lock();
        let state = &mut *guard;
        let must_connect = match &state.link {
            LinkState::Closed => {
                return Err(Error::new(ErrorKind::Closed)
                    .with_unsent(true)
                    .with_node(self.addr))
            }
            LinkState::Backoff { retry_at, error } if Instant::now() < *retry_at => {
                return Err(error.clone());
            }
            LinkState::Idle | LinkState::Backoff { .. } => true,
            LinkState::Connecting | LinkState::Connected(_) => false,
        };
        let before = state.out.len();
        let limits = &self.config.limits;
        let tagged = match self.config.reply_tokens {
            true => encode_tagged(command, state.requests as u32, &mut state.out, limits),
            false => None,
        };
        let encoded = match tagged {
            Some(tagged) => tagged.map(Some),
            None => command.encode(&mut state.out, limits).map(|()| None),
        };
        let opaque = match encoded {
            Ok(opaque) => opaque,
            Err(err) => {
                state.out.truncate(before);
                return Err(Error::from_proto(err).with_node(self.addr));
            }
        };
        // Only for a request that is sent: one refused leaves it idle.
        if must_connect {
            match self.start_connect(state) {
                Ok(runtime) => *connect = Some(runtime),
                Err(error) => {
                    state.out.truncate(before);
                    return Err(error);
                }
            }
        }
        state.encoded += (state.out.len() - before) as u64;
        let (reply, receiver) = oneshot::channel();
        state.queue.push_back(Pending {
            kind,
            opaque,
            end: state.encoded,
            reply,
        });
        state.requests += 1;
        let nothing_in_flight = self.outstanding.fetch_add(1, Ordering::Relaxed) == 0;
        if nothing_in_flight {
            self.progressed();
        }
        if let LinkState::Connected(link) = &state.link {
            if !state.writer_busy {
                if nothing_in_flight {
                    if let Err(err) = self.write_now(link, &mut state.out, state.encoded) {
                        let link = Arc::clone(link);
                        self.fail_link(state, &link, Error::io(ErrorKind::Connection, err));
                        return Ok(receiver);
                    }
                }
                if !state.out.is_empty() {
                    state.writer_busy = true;
                    link.wake_writer.notify_one();
                }
            }
        }
        Ok(receiver)
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

    /// Marks the link Connecting and returns the runtime to connect on.
    fn start_connect(&self, state: &mut State) -> Result<Handle, Error> {
        let runtime = Handle::try_current().map_err(|_| {
            Error::new(ErrorKind::Closed)
                .with_unsent(true)
                .with_node(self.addr)
                .with_detail("a connection needs a tokio runtime")
        })?;
        state.link = LinkState::Connecting;
        Ok(runtime)
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
                state.connect_failures = 0;
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
                state.connect_failures = state.connect_failures.saturating_add(1);
                let delay = self.config.backoff(state.connect_failures);
                let error = error.with_node(self.addr);
                tracing::debug!(node = %self.addr, %error, ?delay, "connection attempt failed");
                self.fail_queue(state, &error, 0);
                state.link = LinkState::Backoff {
                    retry_at: Instant::now() + delay,
                    error,
                };
                None
            }
        }
    }

    /// Moves every queued request to the reader, if `link` is still the
    /// connection in use. Returns false when it is not.
    pub(super) fn take_queue(&self, link: &Arc<Link>, into: &mut VecDeque<Pending>) -> bool {
        let mut state = self.lock();
        if !is_current(&state, link) {
            return false;
        }
        std::mem::swap(&mut state.queue, into);
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
        link.commit(state.encoded);
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

    /// Fails the requests the reader had taken, after the link closed.
    pub(super) fn fail_taken(&self, link: &Link, taken: &mut VecDeque<Pending>) {
        let error = link.failure();
        let committed = link.committed();
        let count = taken.len();
        for pending in taken.drain(..) {
            pending.fail(&error, committed);
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
        let count = state.queue.len();
        for pending in state.queue.drain(..) {
            pending.fail(error, committed);
        }
        self.outstanding.fetch_sub(count, Ordering::Relaxed);
        self.release(count);
        state.out.clear();
        state.encoded = 0;
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

/// Encodes `command` with an opaque token to echo (a caller's own token is
/// kept and checked), and returns the token; `None`, with nothing encoded,
/// for commands that carry none (classic ones, `mn`). The token is set in
/// place for the encoding only: tagging a copy would clone the key and the
/// value of every request.
fn encode_tagged(
    command: &mut Command,
    token: u32,
    out: &mut BytesMut,
    limits: &Limits,
) -> Option<Result<u32, memha_proto::Error>> {
    let slot = opaque_slot(command)?;
    let own = slot.is_some();
    let token = *slot.get_or_insert(token);
    let encoded = command.encode(out, limits);
    if !own {
        if let Some(slot) = opaque_slot(command) {
            *slot = None;
        }
    }
    Some(encoded.map(|()| token))
}

/// The opaque token field of a meta data command.
fn opaque_slot(command: &mut Command) -> Option<&mut Option<u32>> {
    match command {
        Command::MetaGet(c) => Some(&mut c.opaque),
        Command::MetaSet(c) => Some(&mut c.opaque),
        Command::MetaDelete(c) => Some(&mut c.opaque),
        Command::MetaArithmetic(c) => Some(&mut c.opaque),
        _ => None,
    }
}

/// The kind of answer `command` gets. Commands the server may leave
/// unanswered (`noreply`, quiet meta commands) would break first-in,
/// first-out matching, so they are refused.
fn reply_kind(command: &Command) -> Result<ReplyKind, Error> {
    match command.reply_kind() {
        Some(kind) if !command.is_quiet() => Ok(kind),
        _ => Err(Error::new(ErrorKind::Unsupported)
            .with_detail("quiet and noreply commands cannot be matched to an answer")),
    }
}

/// Decodes every complete reply in `input` and hands each to its request.
/// Returns how many it handed over.
pub(super) fn dispatch(
    shared: &Shared,
    link: &Arc<Link>,
    decoder: &mut ReplyDecoder,
    input: &mut BytesMut,
    taken: &mut VecDeque<Pending>,
) -> Result<usize, Error> {
    let mut replies = 0;
    let result = loop {
        let Some(kind) = taken.front().map(|pending| pending.kind) else {
            if input.is_empty() || !shared.take_queue(link, taken) {
                break Ok(());
            }
            if taken.is_empty() {
                break Err(Error::protocol(
                    "the server sent bytes no request asked for",
                ));
            }
            continue;
        };
        match decoder.decode(input, kind) {
            Ok(Some(reply)) => {
                let expected = taken.front().and_then(|pending| pending.opaque);
                if let (Some(expected), Reply::Meta(meta)) = (expected, &reply) {
                    if meta.flags.opaque != Some(expected) {
                        break Err(Error::protocol(
                            "a reply does not echo its request's token, connection closed",
                        ));
                    }
                }
                if let Some(pending) = taken.pop_front() {
                    pending.complete(reply);
                }
                replies += 1;
            }
            Ok(None) => break Ok(()),
            Err(err) => {
                break Err(Error::new(ErrorKind::Protocol)
                    .with_detail("undecodable reply, connection closed")
                    .with_source(err))
            }
        }
    };
    shared.answered(replies);
    result.map(|()| replies)
}

#[cfg(test)]
mod tests {
    use memha_proto::{Key, MetaGet};

    use super::*;

    fn get(opaque: Option<u32>) -> Command {
        let mut get = MetaGet::new(Key::new("k").unwrap());
        get.opaque = opaque;
        Command::MetaGet(get)
    }

    #[test]
    fn tagging_encodes_the_token_and_gives_the_command_back_untouched() {
        let mut out = BytesMut::new();
        let mut command = get(None);
        let token = encode_tagged(&mut command, 7, &mut out, &Limits::DEFAULT);
        assert_eq!(token.unwrap().unwrap(), 7);
        assert_eq!(&out[..], b"mg k O7\r\n");
        // A retry sends it afresh, with a token of its own.
        assert!(matches!(
            command,
            Command::MetaGet(MetaGet { opaque: None, .. })
        ));
    }

    #[test]
    fn tagging_keeps_a_callers_own_token() {
        let mut out = BytesMut::new();
        let mut command = get(Some(42));
        let token = encode_tagged(&mut command, 7, &mut out, &Limits::DEFAULT);
        assert_eq!(token.unwrap().unwrap(), 42);
        assert!(matches!(
            command,
            Command::MetaGet(MetaGet {
                opaque: Some(42),
                ..
            })
        ));
    }

    #[test]
    fn commands_without_tokens_are_left_to_the_caller() {
        let mut out = BytesMut::new();
        let token = encode_tagged(&mut Command::MetaNoop, 7, &mut out, &Limits::DEFAULT);
        assert!(token.is_none());
        assert!(out.is_empty());
    }
}
