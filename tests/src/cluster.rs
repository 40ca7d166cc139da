//! Starting, faulting and stopping real `memcached` processes.

use std::collections::BTreeSet;
use std::env;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::raw::raw_roundtrip;

/// Where `memcached` is looked for when neither `MEMCACHED_BIN` nor `PATH`
/// has it.
const FALLBACK_BINARY: &str = "/usr/bin/memcached";
const DEFAULT_MEMORY_MB: u32 = 64;
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `pause` and `resume` wait for the kernel to report the new state.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two checks of a condition being awaited.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Bound on one readiness probe, so a hung server cannot stall startup.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How many fresh ports a new node tries when another process wins the race
/// for the port between our probe and memcached's `bind`.
const PORT_ATTEMPTS: usize = 10;
/// How much of a server's stderr is kept for error messages.
const STDERR_CAP: usize = 16 * 1024;

/// Ports held by nodes of this process (running or killed but not dropped),
/// so a new node never takes the port a killed node will restart on.
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Why the harness could not start or control a `memcached` process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// No `memcached` binary on `PATH` nor at `/usr/bin/memcached`.
    #[error("memcached not found: install it with apt-get install memcached")]
    MemcachedNotFound,
    /// `MEMCACHED_BIN` names something that is not a file.
    #[error("MEMCACHED_BIN is set to {}, which is not a file", .path.display())]
    BadMemcachedBin {
        /// The value of `MEMCACHED_BIN`.
        path: PathBuf,
    },
    /// No free loopback port could be reserved.
    #[error("could not reserve a free port on 127.0.0.1: {0}")]
    NoFreePort(#[source] io::Error),
    /// The `memcached` process could not be spawned.
    #[error("could not run {}: {source}", .binary.display())]
    Spawn {
        /// The binary that was run.
        binary: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `memcached` exited before it answered.
    #[error("memcached on port {port} exited during startup ({status}){}", stderr_suffix(.stderr))]
    ExitedAtStartup {
        /// The port it was asked to listen on.
        port: u16,
        /// How it exited.
        status: ExitStatus,
        /// What it printed on stderr (truncated).
        stderr: String,
    },
    /// `memcached` did not answer before the start deadline.
    #[error("memcached on port {port} did not answer within {waited:?}")]
    NotReady {
        /// The port it listens on.
        port: u16,
        /// How long the harness waited.
        waited: Duration,
    },
    /// A restart found its port taken by a process the harness did not start.
    #[error("port {port} is held by another process: cannot restart memcached on it")]
    PortTaken {
        /// The node's port.
        port: u16,
    },
    /// The node's process is not running (it was killed or exited).
    #[error("memcached at {addr} is not running")]
    NotRunning {
        /// The node's address.
        addr: SocketAddr,
    },
    /// Sending a signal to the node's process failed.
    #[error("sending {signal} to memcached (pid {pid}): {source}")]
    Signal {
        /// The process id.
        pid: u32,
        /// The signal's name.
        signal: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The process was signalled but did not reach the expected state in time.
    #[error("memcached (pid {pid}) was not {state} within {waited:?} after {signal}")]
    SignalNotObserved {
        /// The process id.
        pid: u32,
        /// The signal's name.
        signal: &'static str,
        /// The state that was expected.
        state: &'static str,
        /// How long the harness waited.
        waited: Duration,
    },
    /// Waiting for (reaping) the process failed.
    #[error("waiting for memcached (pid {pid}): {source}")]
    Wait {
        /// The process id.
        pid: u32,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// Finds the `memcached` binary: `MEMCACHED_BIN` if set, else `memcached` on
/// `PATH`, else `/usr/bin/memcached`.
///
/// # Errors
///
/// [`HarnessError::MemcachedNotFound`] when there is none, and
/// [`HarnessError::BadMemcachedBin`] when `MEMCACHED_BIN` is set to something
/// that is not a file.
pub fn memcached_binary() -> Result<PathBuf, HarnessError> {
    find_memcached(
        env::var_os("MEMCACHED_BIN"),
        env::var_os("PATH"),
        Path::new(FALLBACK_BINARY),
    )
}

fn find_memcached(
    explicit: Option<OsString>,
    path: Option<OsString>,
    fallback: &Path,
) -> Result<PathBuf, HarnessError> {
    if let Some(explicit) = explicit.filter(|value| !value.is_empty()) {
        let explicit = PathBuf::from(explicit);
        return if explicit.is_file() {
            Ok(explicit)
        } else {
            Err(HarnessError::BadMemcachedBin { path: explicit })
        };
    }
    path.iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join("memcached"))
        .chain([fallback.to_path_buf()])
        .find(|candidate| is_executable(candidate))
        .ok_or(HarnessError::MemcachedNotFound)
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A loopback port reserved for one node for its whole life; released on drop.
#[derive(Debug)]
struct PortReservation(u16);

impl PortReservation {
    /// Reserves a port the kernel reports free (bind to port 0, then release
    /// it) and that no other node of this process holds.
    fn free() -> Result<Self, HarnessError> {
        for _ in 0..100 {
            let listener =
                TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(HarnessError::NoFreePort)?;
            let port = listener
                .local_addr()
                .map_err(HarnessError::NoFreePort)?
                .port();
            if lock(&RESERVED_PORTS).insert(port) {
                return Ok(Self(port));
            }
        }
        Err(HarnessError::NoFreePort(io::Error::other(
            "every port offered was already held by this harness",
        )))
    }
}

impl Drop for PortReservation {
    fn drop(&mut self) {
        lock(&RESERVED_PORTS).remove(&self.0);
    }
}

/// How nodes are launched; shared by every node of a cluster.
#[derive(Debug)]
struct Launcher {
    binary: PathBuf,
    memory_mb: u32,
    extra_args: Vec<OsString>,
    start_timeout: Duration,
    as_root: bool,
}

impl Launcher {
    /// Spawns memcached on `port` and waits until it answers.
    fn start(&self, port: u16) -> Result<Process, HarnessError> {
        let mut process = self.spawn(port)?;
        process.wait_ready(port, self.start_timeout)?;
        Ok(process)
    }

    fn spawn(&self, port: u16) -> Result<Process, HarnessError> {
        let mut command = Command::new(&self.binary);
        command
            .args(["-l", "127.0.0.1", "-U", "0", "-t", "1"])
            .arg("-p")
            .arg(port.to_string())
            .arg("-m")
            .arg(self.memory_mb.to_string());
        if self.as_root {
            // memcached refuses to run as root unless told which user to be.
            command.args(["-u", "root"]);
        }
        command
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let spawn_error = |source| HarnessError::Spawn {
            binary: self.binary.clone(),
            source,
        };
        let mut child = command.spawn().map_err(spawn_error)?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = match child.stderr.take() {
            Some(pipe) => match drain_stderr(pipe, Arc::clone(&stderr), port) {
                Ok(reader) => Some(reader),
                Err(err) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(spawn_error(err));
                }
            },
            None => None,
        };
        Ok(Process {
            child,
            stderr,
            stderr_reader,
            paused: false,
        })
    }
}

/// Keeps draining the server's stderr so it never blocks on a full pipe,
/// remembering the first [`STDERR_CAP`] bytes for error messages.
fn drain_stderr(
    mut pipe: ChildStderr,
    sink: Arc<Mutex<Vec<u8>>>,
    port: u16,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("memcached-{port}-stderr"))
        .spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                let mut sink = lock(&sink);
                let room = STDERR_CAP.saturating_sub(sink.len());
                sink.extend_from_slice(&buf[..n.min(room)]);
            }
        })
}

/// One `memcached` process started by the harness. Dropping it kills and
/// reaps the process.
#[derive(Debug)]
struct Process {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
    paused: bool,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has not exited. Reaps it if it has.
    fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Polls until the server on `port` answers `stats` with this process's
    /// pid (so a foreign server that won the port race is not mistaken for
    /// ours), the process exits, or `timeout` passes.
    fn wait_ready(&mut self, port: u16, timeout: Duration) -> Result<(), HarnessError> {
        let started = Instant::now();
        let addr = loopback(port);
        let pid = self.pid();
        loop {
            let exited = self
                .child
                .try_wait()
                .map_err(|source| HarnessError::Wait { pid, source })?;
            if let Some(status) = exited {
                return Err(HarnessError::ExitedAtStartup {
                    port,
                    status,
                    stderr: self.collect_stderr(),
                });
            }
            if stats_pid(addr) == Some(pid) {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(HarnessError::NotReady {
                    port,
                    waited: timeout,
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The stderr captured so far; waits for the reader to see end-of-file,
    /// so call it only once the process has exited.
    fn collect_stderr(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        String::from_utf8_lossy(&lock(&self.stderr)).into_owned()
    }

    /// Sends `signal`, then polls until the kernel reports the process
    /// stopped (or no longer stopped), so callers observe the fault at once.
    fn signal(&mut self, signal: Signal, stopped: bool) -> Result<(), HarnessError> {
        let pid = self.pid();
        let raw_pid = i32::try_from(pid).expect("pids fit in i32");
        // The child is not reaped (we hold it and `is_alive` was checked under
        // the node's lock), so this pid is still ours.
        signal::kill(Pid::from_raw(raw_pid), signal).map_err(|errno| HarnessError::Signal {
            pid,
            signal: signal.as_str(),
            source: errno.into(),
        })?;
        let started = Instant::now();
        while let Some(state) = process_state(pid) {
            if (state == 'T') == stopped {
                return Ok(());
            }
            if started.elapsed() >= SIGNAL_TIMEOUT {
                return Err(HarnessError::SignalNotObserved {
                    pid,
                    signal: signal.as_str(),
                    state: if stopped { "stopped" } else { "running" },
                    waited: SIGNAL_TIMEOUT,
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
        // No `/proc` (not Linux): the signal was sent, trust it.
        Ok(())
    }

    /// Kills (`SIGKILL`, which also ends a stopped process) and reaps.
    fn terminate(&mut self) -> Result<(), HarnessError> {
        let pid = self.pid();
        self.child.kill().map_err(|source| HarnessError::Signal {
            pid,
            signal: Signal::SIGKILL.as_str(),
            source,
        })?;
        self.child
            .wait()
            .map_err(|source| HarnessError::Wait { pid, source })?;
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Both are no-ops once the child has been reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks the server at `addr` for its pid (`stats`), or `None` if it does not
/// answer properly within [`PROBE_TIMEOUT`].
fn stats_pid(addr: SocketAddr) -> Option<u32> {
    let reply = raw_roundtrip(addr, b"stats\r\n", b"END\r\n", PROBE_TIMEOUT).ok()?;
    let reply = String::from_utf8(reply).ok()?;
    reply
        .lines()
        .find_map(|line| line.strip_prefix("STAT pid "))
        .and_then(|pid| pid.trim().parse().ok())
}

/// The scheduler state letter of `pid` (`R`, `S`, `T` for stopped, ...), read
/// from `/proc/<pid>/stat`; `None` without `/proc`.
fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "<pid> (<comm>) <state> ...": comm may contain spaces and parentheses.
    let (_, after_comm) = stat.rsplit_once(')')?;
    after_comm.trim_start().chars().next()
}

/// One `memcached` server of a [`MemcachedCluster`], on a fixed loopback
/// port for its whole life (restarts included).
///
/// Every method takes `&self`, so a cluster can be shared (for example in an
/// `Arc`) between the code under test and a task injecting faults.
#[derive(Debug)]
pub struct MemcachedNode {
    // Field order matters: the process is killed before the port is released.
    process: Mutex<Option<Process>>,
    launcher: Arc<Launcher>,
    addr: SocketAddr,
    port: PortReservation,
}

impl MemcachedNode {
    /// Starts a node on a fresh port, trying another port when a process
    /// outside the harness takes the chosen one first.
    fn start(launcher: &Arc<Launcher>) -> Result<Self, HarnessError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = PortReservation::free()?;
            match launcher.start(port.0) {
                Ok(process) => {
                    return Ok(Self {
                        process: Mutex::new(Some(process)),
                        launcher: Arc::clone(launcher),
                        addr: loopback(port.0),
                        port,
                    })
                }
                Err(err) if is_port_in_use(&err) && attempts < PORT_ATTEMPTS => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// The address the node listens on (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's port.
    pub fn port(&self) -> u16 {
        self.port.0
    }

    /// The pid of the node's process, or `None` if it is not running. A
    /// restart gives a new pid.
    pub fn pid(&self) -> Option<u32> {
        let mut guard = lock(&self.process);
        self.running(&mut guard).ok().map(|process| process.pid())
    }

    /// Whether the node's process is alive (a paused node is running).
    pub fn is_running(&self) -> bool {
        lock(&self.process).as_mut().is_some_and(Process::is_alive)
    }

    /// Whether the node is paused by [`pause`](Self::pause).
    pub fn is_paused(&self) -> bool {
        lock(&self.process)
            .as_mut()
            .is_some_and(|p| p.paused && p.is_alive())
    }

    /// Kills the node (`SIGKILL`) and reaps it: connections to it are
    /// refused from now on. Does nothing if it is not running.
    ///
    /// # Errors
    ///
    /// If signalling or reaping the process fails.
    pub fn kill(&self) -> Result<(), HarnessError> {
        match lock(&self.process).take() {
            Some(mut process) => process.terminate(),
            None => Ok(()),
        }
    }

    /// Freezes the node (`SIGSTOP`): it still accepts connections (the
    /// kernel does) but answers nothing until [`resume`](Self::resume). Returns
    /// once the kernel reports the process stopped. Does nothing if already
    /// paused.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotRunning`] if the node is not running, or if the
    /// signal cannot be sent or observed.
    pub fn pause(&self) -> Result<(), HarnessError> {
        let mut guard = lock(&self.process);
        let process = self.running(&mut guard)?;
        if !process.paused {
            process.signal(Signal::SIGSTOP, true)?;
            process.paused = true;
        }
        Ok(())
    }

    /// Lets a paused node run again (`SIGCONT`); it then answers what was
    /// sent to it meanwhile. Does nothing if it is not paused.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotRunning`] if the node is not running, or if the
    /// signal cannot be sent or observed.
    pub fn resume(&self) -> Result<(), HarnessError> {
        let mut guard = lock(&self.process);
        let process = self.running(&mut guard)?;
        if process.paused {
            process.signal(Signal::SIGCONT, false)?;
            process.paused = false;
        }
        Ok(())
    }

    /// Restarts the node empty on the same port: kills it if it is running
    /// (paused or not), starts a new process and waits until it answers.
    ///
    /// # Errors
    ///
    /// [`HarnessError::PortTaken`] if another process took the port while
    /// the node was down, or any error of starting memcached.
    pub fn restart(&self) -> Result<(), HarnessError> {
        let mut guard = lock(&self.process);
        if let Some(mut old) = guard.take() {
            old.terminate()?;
        }
        let process = self.launcher.start(self.port.0).map_err(|err| {
            if is_port_in_use(&err) {
                HarnessError::PortTaken { port: self.port.0 }
            } else {
                err
            }
        })?;
        *guard = Some(process);
        Ok(())
    }

    fn running<'a>(
        &self,
        guard: &'a mut MutexGuard<'_, Option<Process>>,
    ) -> Result<&'a mut Process, HarnessError> {
        guard
            .as_mut()
            .and_then(|process| process.is_alive().then_some(process))
            .ok_or(HarnessError::NotRunning { addr: self.addr })
    }
}

fn is_port_in_use(err: &HarnessError) -> bool {
    matches!(err, HarnessError::ExitedAtStartup { stderr, .. } if stderr.contains("Address already in use"))
}

/// A set of real `memcached` processes on loopback ports.
///
/// Dropping the cluster kills (`SIGKILL`) and reaps every process it started,
/// also when a test panics; it never signals any other process.
#[derive(Debug)]
pub struct MemcachedCluster {
    nodes: Vec<MemcachedNode>,
    launcher: Arc<Launcher>,
}

impl MemcachedCluster {
    /// Starts `nodes` servers with the default settings (64 MB each) and
    /// waits until each answers.
    ///
    /// # Errors
    ///
    /// [`HarnessError::MemcachedNotFound`] without a `memcached` binary, or
    /// any error of starting a server.
    pub fn start(nodes: usize) -> Result<Self, HarnessError> {
        Self::builder().nodes(nodes).start()
    }

    /// A builder for a cluster with non-default settings.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The node at `index`.
    ///
    /// # Panics
    ///
    /// If `index` is out of range.
    pub fn node(&self, index: usize) -> &MemcachedNode {
        match self.nodes.get(index) {
            Some(node) => node,
            None => panic!(
                "node index {index} out of range: the cluster has {} nodes",
                self.nodes.len()
            ),
        }
    }

    /// All nodes, in start order.
    pub fn nodes(&self) -> &[MemcachedNode] {
        &self.nodes
    }

    /// The addresses of all nodes, in start order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(MemcachedNode::addr).collect()
    }

    /// The number of nodes (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Starts one more node with the cluster's settings and returns it (its
    /// index is the previous [`len`](Self::len)).
    ///
    /// # Errors
    ///
    /// Any error of starting a server.
    pub fn add_node(&mut self) -> Result<&MemcachedNode, HarnessError> {
        let node = MemcachedNode::start(&self.launcher)?;
        self.nodes.push(node);
        Ok(self.nodes.last().expect("just pushed"))
    }
}

/// Settings for [`MemcachedCluster`]; from [`MemcachedCluster::builder`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    nodes: usize,
    memory_mb: u32,
    extra_args: Vec<OsString>,
    start_timeout: Duration,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self {
            nodes: 1,
            memory_mb: DEFAULT_MEMORY_MB,
            extra_args: Vec::new(),
            start_timeout: DEFAULT_START_TIMEOUT,
        }
    }
}

impl ClusterBuilder {
    /// How many servers to start (default 1).
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Memory limit of each server in megabytes, memcached's `-m` (default 64).
    pub fn memory_mb(mut self, memory_mb: u32) -> Self {
        self.memory_mb = memory_mb;
        self
    }

    /// More command-line arguments for every server, appended after the
    /// harness's own (`-l 127.0.0.1 -U 0 -t 1 -p <port> -m <mb>`, plus
    /// `-u root` when running as root). Adds to earlier calls.
    pub fn extra_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// How long each server may take to answer after it is started or
    /// restarted (default 10 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Starts the servers and waits until each answers. If one fails, those
    /// already started are stopped.
    ///
    /// # Errors
    ///
    /// [`HarnessError::MemcachedNotFound`] without a `memcached` binary, or
    /// any error of starting a server.
    pub fn start(self) -> Result<MemcachedCluster, HarnessError> {
        let launcher = Arc::new(Launcher {
            binary: memcached_binary()?,
            memory_mb: self.memory_mb,
            extra_args: self.extra_args,
            start_timeout: self.start_timeout,
            as_root: nix::unistd::geteuid().is_root(),
        });
        let nodes = (0..self.nodes)
            .map(|_| MemcachedNode::start(&launcher))
            .collect::<Result<_, _>>()?;
        Ok(MemcachedCluster { nodes, launcher })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_has_the_documented_message() {
        let dir = env::temp_dir().join(format!("memha-no-memcached-{}", std::process::id()));
        let err = find_memcached(None, Some(dir.clone().into()), &dir.join("memcached"))
            .expect_err("no memcached there");
        assert!(matches!(err, HarnessError::MemcachedNotFound));
        assert_eq!(
            err.to_string(),
            "memcached not found: install it with apt-get install memcached"
        );
    }

    #[test]
    fn explicit_binary_must_exist() {
        let missing = env::temp_dir().join("memha-definitely-missing-memcached");
        let err = find_memcached(
            Some(missing.clone().into()),
            None,
            Path::new("/nonexistent"),
        )
        .expect_err("missing file");
        assert!(matches!(err, HarnessError::BadMemcachedBin { path } if path == missing));
    }

    #[test]
    fn path_is_searched_before_the_fallback() {
        let dir = env::temp_dir().join(format!("memha-fake-memcached-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let fake = dir.join("memcached");
        fs::write(&fake, "#!/bin/sh\n").expect("fake binary");
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = env::join_paths([Path::new("/nonexistent"), &dir]).expect("PATH");
        let found = find_memcached(None, Some(path), Path::new("/nonexistent/memcached"));
        fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(found.expect("found on PATH"), fake);
    }

    #[test]
    fn process_state_reads_own_state() {
        if Path::new("/proc/self/stat").exists() {
            // We are running, so not stopped.
            let state = process_state(std::process::id()).expect("own stat");
            assert_ne!(state, 'T');
        }
    }

    #[test]
    fn stderr_suffix_skips_blank() {
        assert_eq!(stderr_suffix(" \n"), "");
        assert_eq!(stderr_suffix("bad option\n"), ": bad option");
    }
}
