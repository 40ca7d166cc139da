//! A loopback TCP proxy that injects network faults between clients and one
//! server while the server process keeps running.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// How long the proxy waits for the target to accept a connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The most one read takes from a socket before forwarding it.
const CHUNK: usize = 16 * 1024;

/// What a [`FaultProxy`] does with the traffic it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProxyMode {
    /// Forward everything at once (the default).
    #[default]
    Pass,
    /// Forward everything, each chunk this much later than it arrived, in
    /// both directions (a slow network). Order is kept.
    Delay(Duration),
    /// Accept and keep connections, but forward nothing in either direction
    /// (a partition that drops packets). What was sent meanwhile is held and
    /// delivered, in order, when the mode changes back, like TCP
    /// retransmissions after the partition heals; [`FaultProxy::drop_connections`]
    /// discards it instead.
    Blackhole,
    /// Reset every connection (`RST`): those open when the mode is set, and
    /// every new one at once after it is accepted.
    Drop,
}

/// Which way bytes go through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

/// The state the proxy's thread and its handle share.
#[derive(Debug)]
struct Control {
    mode: watch::Sender<ProxyMode>,
    /// Bumped to reset every connection open at that moment.
    generation: watch::Sender<u64>,
    /// The bytes clients sent, while capturing.
    capture: Mutex<Option<Vec<u8>>>,
    client_bytes: AtomicU64,
    server_bytes: AtomicU64,
    accepted: AtomicU64,
    open: AtomicUsize,
}

impl Control {
    fn capture(&self) -> MutexGuard<'_, Option<Vec<u8>>> {
        self.capture.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, direction: Direction, bytes: &[u8]) {
        let len = bytes.len() as u64;
        match direction {
            Direction::ToServer => {
                self.client_bytes.fetch_add(len, Ordering::SeqCst);
                if let Some(captured) = self.capture().as_mut() {
                    captured.extend_from_slice(bytes);
                }
            }
            Direction::ToClient => {
                self.server_bytes.fetch_add(len, Ordering::SeqCst);
            }
        }
    }
}

/// A TCP proxy on a free loopback port in front of one server, whose
/// behaviour can be switched at run time between forwarding, delaying,
/// blackholing and resetting ([`ProxyMode`]). It can also capture every
/// byte clients send through it.
///
/// It runs on its own thread (with its own single-threaded tokio runtime),
/// so it can be used from synchronous and asynchronous tests alike, and its
/// methods never block on the traffic. Each client connection gets its own
/// connection to the target, made when the client connects; when the target
/// refuses, the client connection is reset. Dropping the proxy (or
/// [`stop`](Self::stop)) closes the listener and every connection.
///
/// ```no_run
/// use memha_tests::{FaultProxy, MemcachedCluster, ProxyMode};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = MemcachedCluster::start(1)?;
/// let proxy = FaultProxy::start(cluster.node(0).addr())?;
/// // Clients connect to proxy.addr() instead of the node.
/// proxy.set_mode(ProxyMode::Delay(Duration::from_millis(50)));
/// proxy.set_mode(ProxyMode::Blackhole); // the node runs on, unreachable
/// proxy.set_mode(ProxyMode::Pass); // held bytes flow again
/// proxy.drop_connections(); // reset whatever is open
/// # Ok(())
/// # }
/// ```
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    control: Arc<Control>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `target` on a free loopback port, in
    /// [`ProxyMode::Pass`].
    ///
    /// # Errors
    ///
    /// If the port cannot be bound or the proxy's thread cannot start.
    pub fn start(target: SocketAddr) -> io::Result<FaultProxy> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let control = Arc::new(Control {
            mode: watch::Sender::new(ProxyMode::Pass),
            generation: watch::Sender::new(0),
            capture: Mutex::new(None),
            client_bytes: AtomicU64::new(0),
            server_bytes: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            open: AtomicUsize::new(0),
        });
        let (shutdown, stopped) = oneshot::channel();
        let thread_control = Arc::clone(&control);
        let thread = thread::Builder::new()
            .name(format!("memha-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(_) => return,
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = accept_loop(listener, target, thread_control) => {}
                    }
                });
                // Dropping the runtime drops every connection task, and so
                // closes every socket.
                drop(runtime);
            })?;
        Ok(FaultProxy {
            addr,
            target,
            control,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// One proxy in front of each of `targets`, in order.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), for the first proxy that fails.
    pub fn in_front_of(
        targets: impl IntoIterator<Item = SocketAddr>,
    ) -> io::Result<Vec<FaultProxy>> {
        targets.into_iter().map(FaultProxy::start).collect()
    }

    /// The address clients connect to (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        *self.control.mode.borrow()
    }

    /// Switches the mode; it applies at once to open connections too.
    /// Switching to [`ProxyMode::Drop`] resets every open connection.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.control.mode.send_replace(mode);
        if mode == ProxyMode::Drop {
            self.drop_connections();
        }
    }

    /// Resets (`RST`) every connection open now, in both directions,
    /// discarding what they hold. New connections are served as the mode says.
    pub fn drop_connections(&self) {
        self.control
            .generation
            .send_modify(|generation| *generation += 1);
    }

    /// How many client connections are open now.
    pub fn open_connections(&self) -> usize {
        self.control.open.load(Ordering::SeqCst)
    }

    /// How many client connections were accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.control.accepted.load(Ordering::SeqCst)
    }

    /// How many bytes clients sent to the proxy since the start (counted as
    /// they are received, forwarded or not).
    pub fn bytes_from_clients(&self) -> u64 {
        self.control.client_bytes.load(Ordering::SeqCst)
    }

    /// How many bytes the target sent to the proxy since the start.
    pub fn bytes_from_server(&self) -> u64 {
        self.control.server_bytes.load(Ordering::SeqCst)
    }

    /// Starts (or, with `false`, stops) keeping a copy of every byte clients
    /// send; starting clears what was captured before.
    pub fn capture(&self, on: bool) {
        *self.control.capture() = on.then(Vec::new);
    }

    /// The bytes clients sent since the capture started (or since the last
    /// [`take_captured`](Self::take_captured)), all connections together in
    /// the order they were received.
    pub fn captured(&self) -> Vec<u8> {
        self.control.capture().clone().unwrap_or_default()
    }

    /// Like [`captured`](Self::captured), and clears the capture (it goes on).
    pub fn take_captured(&self) -> Vec<u8> {
        self.control
            .capture()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Stops the proxy: the listener and every connection close. Also done
    /// on drop.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("target", &self.target)
            .field("mode", &self.mode())
            .field("open_connections", &self.open_connections())
            .finish()
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, control: Arc<Control>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors or similar: try again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        control.accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(serve(client, target, Arc::clone(&control)));
    }
}

/// Counts an open client connection for as long as it lives.
struct OpenGuard(Arc<Control>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Makes closing `stream` send a reset and discard what it holds.
fn reset_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn serve(client: TcpStream, target: SocketAddr, control: Arc<Control>) {
    control.open.fetch_add(1, Ordering::SeqCst);
    let _open = OpenGuard(Arc::clone(&control));
    let mut generation = control.generation.subscribe();
    let born = *generation.borrow_and_update();
    reset_on_close(&client);
    if *control.mode.borrow() == ProxyMode::Drop {
        return;
    }
    let upstream = tokio::select! {
        connected = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(target)) => {
            match connected {
                Ok(Ok(upstream)) => upstream,
                _ => return,
            }
        }
        () = reset_requested(&mut generation, born) => return,
    };
    reset_on_close(&upstream);
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = upstream.into_split();
    let to_server = pipe(client_read, server_write, &control, Direction::ToServer);
    let to_client = pipe(server_read, client_write, &control, Direction::ToClient);
    // Either side closing (or failing) ends the whole connection: memcached
    // clients never half-close.
    tokio::select! {
        () = to_server => {}
        () = to_client => {}
        () = reset_requested(&mut generation, born) => {}
    }
}

/// Resolves once the connections born at `born` must be reset.
async fn reset_requested(generation: &mut watch::Receiver<u64>, born: u64) {
    if generation.wait_for(|now| *now != born).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Waits until the proxy is not blackholing.
async fn flowing(mode: &mut watch::Receiver<ProxyMode>) {
    if mode
        .wait_for(|mode| *mode != ProxyMode::Blackhole)
        .await
        .is_err()
    {
        std::future::pending::<()>().await;
    }
}

/// Forwards one direction: a reader hands chunks (with the time they are
/// due) to a writer, so a delay delays each chunk without holding up the
/// ones behind it.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    control: &Control,
    direction: Direction,
) {
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let mut reader_mode = control.mode.subscribe();
    let mut writer_mode = control.mode.subscribe();
    let reader = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            flowing(&mut reader_mode).await;
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            control.record(direction, &buf[..n]);
            let delay = match *reader_mode.borrow() {
                ProxyMode::Delay(delay) => delay,
                _ => Duration::ZERO,
            };
            if chunks
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = due.recv().await {
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
            flowing(&mut writer_mode).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    // The reader ending (end of stream) lets the writer drain what it took.
    tokio::join!(reader, writer);
}
