//! The tasks of a node connection: connecting, writing and reading.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use memha_proto::ReplyDecoder;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

use super::metrics::Counters;
use super::shared::{dispatch, Link, Pending, Shared};
use crate::error::{Error, ErrorKind};

/// Free room below which the read buffer grows before the next read.
const MIN_READ_ROOM: usize = 4 * 1024;

/// One connection attempt, bounded by the connect timeout.
pub(super) async fn connect(shared: Arc<Shared>) {
    let timeout = shared.config.connect_timeout;
    let attempt = tokio::time::timeout(timeout, TcpStream::connect(shared.addr)).await;
    let result =
        match attempt {
            Ok(Ok(stream)) => match stream.set_nodelay(true) {
                Ok(()) => Ok(stream),
                Err(err) => Err(Error::io(ErrorKind::Connect, err)),
            },
            Ok(Err(err)) => Err(Error::io(ErrorKind::Connect, err)),
            Err(_) => Err(Error::new(ErrorKind::Connect)
                .with_detail(format!("no connection within {timeout:?}"))),
        };
    shared.connected(result);
}

/// Sends what callers queued while a write was already under way or
/// requests were in flight. It yields once before taking the output, so
/// requests made meanwhile join the same write.
pub(super) async fn write_loop(shared: Arc<Shared>, link: Arc<Link>) {
    let mut out = BytesMut::new();
    loop {
        link.wake_writer.notified().await;
        if link.is_closed() {
            return;
        }
        tokio::task::yield_now().await;
        while shared.take_output(&link, &mut out) {
            if let Err(err) = write_all(&shared, &link, &mut out).await {
                shared.fail(&link, Error::io(ErrorKind::Connection, err));
                return;
            }
        }
        if link.is_closed() {
            return;
        }
    }
}

async fn write_all(shared: &Shared, link: &Link, out: &mut BytesMut) -> io::Result<()> {
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
pub(super) async fn read_loop(shared: Arc<Shared>, link: Arc<Link>, mut receiving: OwnedReadHalf) {
    let chunk = shared.config.read_buffer;
    let mut decoder = ReplyDecoder::new(shared.config.limits);
    let mut input = BytesMut::with_capacity(chunk);
    let mut taken = Taken {
        queue: VecDeque::new(),
        shared: Arc::clone(&shared),
        link: Arc::clone(&link),
    };
    let error = loop {
        if input.capacity() - input.len() < MIN_READ_ROOM {
            input.reserve(chunk);
        }
        // A read that does not fill the buffer shows the socket drained, so
        // the next read waits for readiness without a wasted system call.
        match receiving.read_buf(&mut input).await {
            Ok(0) => {
                break Error::new(ErrorKind::Connection).with_detail("closed by the server");
            }
            Ok(_) => Counters::add(&shared.counters.reads, 1),
            Err(err) => break Error::io(ErrorKind::Connection, err),
        }
        match dispatch(&shared, &link, &mut decoder, &mut input, &mut taken.queue) {
            // Under load, let the callers just answered run first: their
            // next requests go out before this task reads again, and more
            // answers gather for the next read. With nothing in flight there
            // is nothing to gather: wait for the next answer at once.
            Ok(1..) if shared.has_outstanding() => tokio::task::yield_now().await,
            Ok(_) => {}
            Err(err) => break err,
        }
        if link.is_closed() {
            break link.failure();
        }
    };
    shared.fail(&link, error);
    // Dropping `taken` fails the requests it holds.
}

/// The requests the reader took from the queue. However the reader ends
/// (the connection broke, or the runtime dropped the task), the requests
/// still in it are failed and their places in the window given back.
struct Taken {
    queue: VecDeque<Pending>,
    shared: Arc<Shared>,
    link: Arc<Link>,
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.shared.fail_taken(&self.link, &mut self.queue);
    }
}
