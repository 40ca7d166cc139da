//! The tasks of a node connection: connecting, writing and reading.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use memha_proto::Pipeline;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::metrics::Counters;
use super::shared::{Link, Request, Shared, Started};
use super::transport::{self, Reader, Writer};
use crate::error::{Error, ErrorKind};

/// Free room below which the read buffer grows before the next read.
const MIN_READ_ROOM: usize = 4 * 1024;

/// One connection attempt (the TLS handshake included), bounded by the
/// connect timeout.
pub(super) async fn connect(shared: Arc<Shared>) {
    let timeout = shared.config.connect_timeout;
    let attempt = tokio::time::timeout(timeout, transport::open(shared.addr, &shared.config)).await;
    let result =
        match attempt {
            Ok(result) => result,
            Err(_) => Err(Error::new(ErrorKind::Connect)
                .with_detail(format!("no connection within {timeout:?}"))),
        };
    if let Some(started) = shared.connected(result) {
        spawn_link(&shared, started);
    }
}

/// Starts the reader and writer tasks of a link just connected.
fn spawn_link(shared: &Arc<Shared>, started: Started) {
    let Started {
        link,
        reader,
        writer,
    } = started;
    match reader {
        Reader::Plain(receiving) => {
            tokio::spawn(read_loop(Arc::clone(shared), Arc::clone(&link), receiving));
        }
        #[cfg(feature = "tls")]
        Reader::Tls(receiving) => {
            tokio::spawn(read_loop(Arc::clone(shared), Arc::clone(&link), receiving));
        }
    }
    tokio::spawn(write_loop(Arc::clone(shared), link, writer));
}

/// Sends what callers queued while a write was already under way or
/// requests were in flight. It yields once before taking the output, so
/// requests made meanwhile join the same write.
pub(super) async fn write_loop(shared: Arc<Shared>, link: Arc<Link>, mut writer: Writer) {
    let mut out = BytesMut::new();
    loop {
        link.wake_writer.notified().await;
        if link.is_closed() {
            return;
        }
        tokio::task::yield_now().await;
        while shared.take_output(&link, &mut out) {
            if let Err(err) = write_all(&shared, &link, &mut writer, &mut out).await {
                shared.fail(&link, Error::io(ErrorKind::Connection, err));
                return;
            }
        }
        if link.is_closed() {
            return;
        }
    }
}

async fn write_all(
    shared: &Shared,
    link: &Link,
    writer: &mut Writer,
    out: &mut BytesMut,
) -> io::Result<()> {
    #[cfg(feature = "tls")]
    if let Writer::Tls(stream) = writer {
        use tokio::io::AsyncWriteExt;
        stream.write_all(out).await?;
        stream.flush().await?;
        Counters::add(&shared.counters.writes, 1);
        out.clear();
        return Ok(());
    }
    let _ = writer;
    while !out.is_empty() {
        match link.stream.try_write(out) {
            Ok(written) => {
                Counters::add(&shared.counters.writes, 1);
                out.advance(written);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => link.stream.writable().await?,
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Reads replies and hands each to its request, in order, until the
/// connection breaks or is closed; then fails the requests it had taken.
pub(super) async fn read_loop<R: AsyncRead + Unpin>(
    shared: Arc<Shared>,
    link: Arc<Link>,
    mut receiving: R,
) {
    let chunk = shared.config.read_buffer;
    let mut input = BytesMut::with_capacity(chunk);
    Counters::max(&shared.counters.read_buffer_peak, input.capacity() as u64);
    let mut taken = Taken {
        pipeline: Pipeline::new(shared.config.limits),
        shared: Arc::clone(&shared),
        link: Arc::clone(&link),
    };
    // Whether the node ever answered on this connection.
    let mut answered = false;
    // The connection's one timer (see `Shared::rearm`): armed while
    // requests with a deadline await replies.
    let mut timer = std::pin::pin!(tokio::time::sleep(std::time::Duration::ZERO));
    let mut armed = false;
    let error = loop {
        if input.capacity() - input.len() < MIN_READ_ROOM {
            input.reserve(chunk);
            Counters::max(&shared.counters.read_buffer_peak, input.capacity() as u64);
        }
        // A read that does not fill the buffer shows the socket drained, so
        // the next read waits for readiness without a wasted system call.
        let read = tokio::select! {
            biased;
            read = receiving.read_buf(&mut input) => read,
            () = &mut timer, if armed => {
                armed = arm(&shared, &link, &mut taken.pipeline, timer.as_mut());
                if link.is_closed() {
                    break link.failure();
                }
                continue;
            }
        };
        match read {
            Ok(0) => {
                let error = Error::new(ErrorKind::Connection).with_detail("closed by the server");
                break transport::unanswered(&shared.config, answered, error);
            }
            Ok(_) => Counters::add(&shared.counters.reads, 1),
            Err(err) => {
                break transport::unanswered(&shared.config, answered, transport::read_error(err))
            }
        }
        match dispatch(&shared, &link, &mut input, &mut taken.pipeline) {
            // Under load, let the callers just answered run first: their
            // next requests go out before this task reads again, and more
            // answers gather for the next read. With nothing in flight there
            // is nothing to gather: wait for the next answer at once.
            Ok(1..) if shared.has_outstanding() => {
                answered = true;
                tokio::task::yield_now().await
            }
            Ok(n) => answered |= n > 0,
            Err(err) => break err,
        }
        // Requests with deadlines may be waiting: the first batch after an
        // idle spell arms the timer (then only its firing re-arms it). The
        // read comes first in the select, so while replies keep coming the
        // timer is looked at here.
        if armed {
            if timer.deadline() <= tokio::time::Instant::now() {
                armed = arm(&shared, &link, &mut taken.pipeline, timer.as_mut());
            }
        } else if shared.should_arm() {
            armed = arm(&shared, &link, &mut taken.pipeline, timer.as_mut());
        }
        if link.is_closed() {
            break link.failure();
        }
    };
    shared.fail(&link, error);
    // Dropping `taken` fails the requests it holds.
}

/// Re-arms the reader's timer (see `Shared::rearm`); false when nothing
/// awaits a deadline.
fn arm(
    shared: &Shared,
    link: &Arc<Link>,
    taken: &mut Pipeline<Request>,
    timer: std::pin::Pin<&mut tokio::time::Sleep>,
) -> bool {
    match shared.rearm(link, taken) {
        Some(next) => {
            timer.reset(next);
            true
        }
        None => false,
    }
}

/// Decodes every complete reply in `input` and hands each to its request,
/// taking the requests submitted meanwhile when those taken are answered.
/// Returns how many it handed over.
fn dispatch(
    shared: &Shared,
    link: &Arc<Link>,
    input: &mut BytesMut,
    taken: &mut Pipeline<Request>,
) -> Result<usize, Error> {
    let mut replies = 0;
    let result = loop {
        if taken.is_empty() && (input.is_empty() || !shared.take_submitted(link, taken)) {
            break Ok(());
        }
        match taken.decode(input) {
            Ok(Some((request, answer))) => {
                request.answer(Ok(answer));
                replies += 1;
            }
            Ok(None) => break Ok(()),
            Err(err) => {
                break Err(Error::new(ErrorKind::Protocol)
                    .with_detail("connection closed")
                    .with_source(err))
            }
        }
    };
    shared.answered(replies);
    result.map(|()| replies)
}

/// The requests the reader took from the queue. However the reader ends
/// (the connection broke, or the runtime dropped the task), the requests
/// still in it are failed and their places in the window given back.
struct Taken {
    pipeline: Pipeline<Request>,
    shared: Arc<Shared>,
    link: Arc<Link>,
}

impl Drop for Taken {
    fn drop(&mut self) {
        // A reader dropped with its runtime leaves no link behind (nor a
        // timer that requests would count on).
        let stopped = Error::new(ErrorKind::Closed).with_detail("the connection's reader stopped");
        self.shared.fail(&self.link, stopped);
        self.shared.fail_taken(&self.link, &mut self.pipeline);
    }
}
