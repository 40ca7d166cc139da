//! Tests of the memcached cluster harness itself, with plain sockets and the
//! text protocol.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use memha_tests::{raw_roundtrip, HarnessError, MemcachedCluster};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

const TIMEOUT: Duration = Duration::from_secs(2);

fn version(addr: SocketAddr) -> io::Result<Vec<u8>> {
    raw_roundtrip(addr, b"version\r\n", b"\r\n", TIMEOUT)
}

fn assert_answers(addr: SocketAddr) {
    let reply = version(addr).unwrap_or_else(|err| panic!("{addr} should answer: {err}"));
    assert!(
        reply.starts_with(b"VERSION "),
        "unexpected reply {:?}",
        String::from_utf8_lossy(&reply)
    );
}

fn get(addr: SocketAddr, key: &str) -> String {
    let reply = raw_roundtrip(
        addr,
        format!("get {key}\r\n").as_bytes(),
        b"END\r\n",
        TIMEOUT,
    )
    .expect("get");
    String::from_utf8(reply).expect("utf-8 reply")
}

fn set(addr: SocketAddr, key: &str, value: &str) {
    let request = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
    let reply = raw_roundtrip(addr, request.as_bytes(), b"\r\n", TIMEOUT).expect("set");
    assert_eq!(reply, b"STORED\r\n");
}

fn stats_settings(addr: SocketAddr) -> String {
    let reply =
        raw_roundtrip(addr, b"stats settings\r\n", b"END\r\n", TIMEOUT).expect("stats settings");
    String::from_utf8(reply).expect("utf-8 reply")
}

/// Whether a process with this pid exists (zombies included).
fn process_exists(pid: u32) -> bool {
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
    match kill(pid, None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(err) => panic!("kill({pid}, 0): {err}"),
    }
}

#[test]
fn started_nodes_answer_on_distinct_ports() {
    let cluster = MemcachedCluster::start(2).expect("start cluster");
    assert_eq!(cluster.len(), 2);
    let addrs = cluster.addrs();
    assert_ne!(addrs[0], addrs[1]);
    for node in cluster.nodes() {
        assert!(node.addr().ip().is_loopback());
        assert_eq!(node.addr().port(), node.port());
        assert!(node.is_running());
        assert!(!node.is_paused());
        assert!(node.pid().is_some());
        assert_answers(node.addr());
    }
    assert_ne!(cluster.node(0).pid(), cluster.node(1).pid());
}

#[test]
fn killed_node_refuses_connections() {
    let cluster = MemcachedCluster::start(2).expect("start cluster");
    let node = cluster.node(0);
    let pid = node.pid().expect("running");
    node.kill().expect("kill");

    assert!(!node.is_running());
    assert_eq!(node.pid(), None);
    assert!(!process_exists(pid), "killed process must be reaped");
    let err = version(node.addr()).expect_err("killed node must not answer");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    assert!(matches!(
        node.pause(),
        Err(HarnessError::NotRunning { addr }) if addr == node.addr()
    ));
    node.kill().expect("killing twice is a no-op");

    assert_answers(cluster.node(1).addr());
}

#[test]
fn paused_node_times_out_then_answers_after_resume() {
    let cluster = MemcachedCluster::start(1).expect("start cluster");
    let node = cluster.node(0);
    node.pause().expect("pause");
    node.pause().expect("pausing twice is a no-op");
    assert!(node.is_paused());
    assert!(node.is_running());

    let err = raw_roundtrip(
        node.addr(),
        b"version\r\n",
        b"\r\n",
        Duration::from_millis(200),
    )
    .expect_err("paused node must not answer");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");

    node.resume().expect("resume");
    assert!(!node.is_paused());
    assert_answers(node.addr());
    node.resume().expect("resuming a running node is a no-op");
}

#[test]
fn restart_comes_back_empty_on_the_same_port() {
    let cluster = MemcachedCluster::start(1).expect("start cluster");
    let node = cluster.node(0);
    let addr = node.addr();
    let old_pid = node.pid().expect("running");
    set(addr, "session:1", "alice");
    assert_eq!(
        get(addr, "session:1"),
        "VALUE session:1 0 5\r\nalice\r\nEND\r\n"
    );

    node.restart().expect("restart");

    assert_eq!(node.addr(), addr);
    let new_pid = node.pid().expect("running again");
    assert_ne!(new_pid, old_pid);
    assert!(!process_exists(old_pid), "old process must be reaped");
    assert_eq!(get(addr, "session:1"), "END\r\n", "restarted node is empty");
}

#[test]
fn killed_or_paused_nodes_can_be_restarted() {
    let cluster = MemcachedCluster::start(2).expect("start cluster");
    cluster.node(0).kill().expect("kill");
    cluster.node(0).restart().expect("restart after kill");
    assert_answers(cluster.node(0).addr());

    cluster.node(1).pause().expect("pause");
    cluster.node(1).restart().expect("restart while paused");
    assert!(!cluster.node(1).is_paused());
    assert_answers(cluster.node(1).addr());
}

#[test]
fn drop_kills_every_process() {
    let cluster = MemcachedCluster::start(2).expect("start cluster");
    cluster.node(1).pause().expect("pause");
    let pids: Vec<u32> = cluster.nodes().iter().filter_map(|n| n.pid()).collect();
    assert_eq!(pids.len(), 2);

    drop(cluster);

    for pid in pids {
        assert!(!process_exists(pid), "pid {pid} survived the drop");
    }
}

#[test]
fn drop_on_panic_kills_every_process() {
    let (pids_tx, pids_rx) = mpsc::channel();
    let test = thread::spawn(move || {
        let cluster = MemcachedCluster::start(2).expect("start cluster");
        let pids: Vec<u32> = cluster.nodes().iter().filter_map(|n| n.pid()).collect();
        pids_tx.send(pids).expect("send pids");
        panic!("simulated test failure (expected)");
    });
    assert!(test.join().is_err(), "the thread panicked");

    let pids = pids_rx.recv().expect("pids");
    assert_eq!(pids.len(), 2);
    for pid in pids {
        assert!(!process_exists(pid), "pid {pid} survived the panic");
    }
}

#[test]
fn builder_passes_memory_and_extra_args() {
    let cluster = MemcachedCluster::builder()
        .nodes(1)
        .memory_mb(16)
        .extra_args(["-I", "2m"])
        .start()
        .expect("start cluster");
    let settings = stats_settings(cluster.node(0).addr());
    assert!(
        settings.contains("STAT maxbytes 16777216\r\n"),
        "{settings}"
    );
    assert!(
        settings.contains("STAT item_size_max 2097152\r\n"),
        "{settings}"
    );
    assert!(settings.contains("STAT udpport 0\r\n"), "{settings}");
}

#[test]
fn bad_arguments_report_memcached_stderr() {
    let err = MemcachedCluster::builder()
        .extra_args(["--no-such-option"])
        .start()
        .expect_err("memcached rejects the option");
    match &err {
        HarnessError::ExitedAtStartup { stderr, .. } => {
            assert!(stderr.contains("no-such-option"), "stderr: {stderr}");
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(err.to_string().contains("exited during startup"), "{err}");
}

#[test]
fn add_node_grows_the_cluster() {
    let mut cluster = MemcachedCluster::start(0).expect("empty cluster");
    assert!(cluster.is_empty());
    let addr = cluster.add_node().expect("add node").addr();
    assert_eq!(cluster.len(), 1);
    assert_eq!(cluster.node(0).addr(), addr);
    assert_answers(addr);
}
