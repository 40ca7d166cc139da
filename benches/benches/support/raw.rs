//! The yardsticks of memha's overhead: minimal pipelined meta clients
//! ("raw mux" and "raw repl3" in ../shared/PERFORMANCE.md). One TCP
//! connection per node; a caller encodes its request into the shared
//! output and writes it at once itself when nothing is in flight, else the
//! writer task sends it with whatever else was queued (after one yield, so
//! more requests join the write); a reader task decodes the replies and
//! hands them out in order. No timeout, retry, health or replication
//! logic: what any client must do, and nothing more. Failures panic.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use memha_proto::{Command, Key, Limits, MetaGet, MetaSet, Reply, ReplyDecoder, ReplyKind};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

struct State {
    out: BytesMut,
    waiting: VecDeque<oneshot::Sender<Reply>>,
    in_flight: usize,
    writer_busy: bool,
}

struct Shared {
    state: Mutex<State>,
    stream: Arc<tokio::net::tcp::OwnedWriteHalf>,
    wake_writer: Notify,
}

/// One pipelined connection to one node.
#[derive(Clone)]
pub(crate) struct RawMux {
    shared: Arc<Shared>,
}

impl RawMux {
    pub(crate) async fn connect(addr: SocketAddr) -> RawMux {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (read, write) = stream.into_split();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                out: BytesMut::with_capacity(64 * 1024),
                waiting: VecDeque::new(),
                in_flight: 0,
                writer_busy: false,
            }),
            stream: Arc::new(write),
            wake_writer: Notify::new(),
        });
        tokio::spawn(read_loop(Arc::clone(&shared), read));
        tokio::spawn(write_loop(Arc::clone(&shared)));
        RawMux { shared }
    }

    async fn call(&self, command: &Command) -> Reply {
        let (reply, answer) = oneshot::channel();
        {
            let mut state = self.shared.state.lock().unwrap();
            command
                .encode(&mut state.out, &Limits::default())
                .expect("encode");
            state.waiting.push_back(reply);
            state.in_flight += 1;
            if !state.writer_busy {
                if state.in_flight == 1 {
                    // Nothing else in flight: write now, from this task.
                    if let Ok(written) = self.shared.stream.try_write(&state.out) {
                        state.out.advance(written);
                    }
                }
                if !state.out.is_empty() {
                    state.writer_busy = true;
                    self.shared.wake_writer.notify_one();
                }
            }
        }
        answer.await.expect("answered")
    }

    /// `mg key v f t`: the value, if a hit.
    pub(crate) async fn get(&self, key: &Key) -> Option<Bytes> {
        let mut get = MetaGet::new(key.clone());
        (get.value, get.client_flags, get.ttl) = (true, true, true);
        match self.call(&Command::MetaGet(get)).await {
            Reply::Meta(meta) => meta.value,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// `ms key S<len>`.
    pub(crate) async fn set(&self, key: &Key, value: Bytes) {
        self.call(&Command::MetaSet(MetaSet::new(key.clone(), value)))
            .await;
    }
}

async fn write_loop(shared: Arc<Shared>) {
    let mut out = BytesMut::new();
    loop {
        shared.wake_writer.notified().await;
        tokio::task::yield_now().await;
        {
            let mut state = shared.state.lock().unwrap();
            std::mem::swap(&mut out, &mut state.out);
            state.writer_busy = false;
        }
        while !out.is_empty() {
            match shared.stream.try_write(&out) {
                Ok(written) => out.advance(written),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    shared.stream.writable().await.expect("writable")
                }
                Err(_) => return,
            }
        }
        out.clear();
    }
}

async fn read_loop(shared: Arc<Shared>, mut read: OwnedReadHalf) {
    let mut decoder = ReplyDecoder::new(Limits::default());
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut answered = Vec::new();
    loop {
        if input.capacity() - input.len() < 4096 {
            input.reserve(64 * 1024);
        }
        match read.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while let Some(reply) = decoder.decode(&mut input, ReplyKind::Meta).expect("decode") {
            answered.push(reply);
        }
        let senders: Vec<_> = {
            let mut state = shared.state.lock().unwrap();
            state.in_flight -= answered.len();
            state.waiting.drain(..answered.len()).collect()
        };
        for (sender, reply) in senders.into_iter().zip(answered.drain(..)) {
            let _ = sender.send(reply);
        }
    }
}

/// The minimal replicating client: a set to every node at once, a get
/// from the first two (of a rotating pair) at once, the first hit wins.
#[derive(Clone)]
pub(crate) struct RawRepl {
    nodes: Arc<Vec<RawMux>>,
}

impl RawRepl {
    pub(crate) async fn connect(addrs: &[SocketAddr]) -> RawRepl {
        let mut nodes = Vec::new();
        for &addr in addrs {
            nodes.push(RawMux::connect(addr).await);
        }
        RawRepl {
            nodes: Arc::new(nodes),
        }
    }

    pub(crate) async fn get(&self, key: &Key, turn: usize) -> Option<Bytes> {
        let n = self.nodes.len();
        let (a, b) = (&self.nodes[turn % n], &self.nodes[(turn + 1) % n]);
        let (first, second) = tokio::join!(a.get(key), b.get(key));
        first.or(second)
    }

    pub(crate) async fn set(&self, key: &Key, value: Bytes) {
        let sets = self.nodes.iter().map(|node| node.set(key, value.clone()));
        futures_join_all(sets).await;
    }
}

/// Awaits every future of `futures` (at most a handful) together.
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|future| future.as_mut().poll(cx).is_pending());
        match pending.is_empty() {
            true => std::task::Poll::Ready(()),
            false => std::task::Poll::Pending,
        }
    })
    .await;
}
