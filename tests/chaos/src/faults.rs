//! The seeded fault schedule: process faults (kill, pause, restart empty)
//! and network faults (through the proxies in front of each node), on every
//! node but the anchor, which is never faulted.
//!
//! Why an anchor: a restart empties a node, so a key written while only
//! nodes A and B were up, then A and B restarted one after the other, is
//! legitimately lost even though at most one node was ever down at a time.
//! Keeping one node untouched keeps every acknowledged write on at least
//! one live, reachable node for the whole run: the anchor is sent every
//! write, and one it fails takes it Down in the writer's view (which the
//! checker sees and lets excuse a loss), while one it answers late is
//! still applied there. So the checker can demand that no acknowledged
//! write is ever lost. Every other
//! node may be faulty at once: up to n-1 nodes of n; with
//! [`FaultPlan::single`], one at a time.
//!
//! With several clients, each reaches each node through its own proxy: a
//! process fault hits every client, a network fault the proxies of one
//! client, of some clients, or of all of them (a one-sided partition, delay
//! or reset leaves the other clients reaching the node). A node is faulty
//! while a process fault or any client's network fault holds it.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use memha_client::health::Transitions;
use memha_tests::{FaultProxy, MemcachedCluster, ProxyMode};

use crate::history::{Clock, FaultKind, FaultRecord};
use crate::ClientsView;
use memha_tests::Rng;

/// When and how faults are injected.
#[derive(Debug, Clone)]
pub(crate) struct FaultPlan {
    /// The node never faulted.
    pub(crate) anchor: usize,
    /// No fault starts before this.
    pub(crate) start_after: Duration,
    /// Every fault is healed by this time.
    pub(crate) heal_by: Duration,
    /// Shortest and longest fault, in milliseconds.
    pub(crate) length_ms: (u64, u64),
    /// Shortest and longest pause between two decisions, in milliseconds.
    pub(crate) gap_ms: (u64, u64),
    /// How many clients (each with its own proxy to every node).
    pub(crate) clients: usize,
    /// At most one faulty node at a time: a fault starts only when no node
    /// is faulty, and a node stays faulty after its heal (or its empty
    /// restart) until every client sees every node Up again (and, for a
    /// process that was killed or restarted, has seen it change state).
    pub(crate) single: bool,
    /// The longest wait for the clients to see the node back, in the
    /// single-fault mode.
    pub(crate) settle_within: Duration,
}

struct Active {
    record: usize,
    ends_at: Duration,
    /// The clients' health changes since the fault began (a kill, in the
    /// single-fault mode).
    watched: Option<Vec<Transitions>>,
}

/// Runs the schedule on the calling thread (the harness is synchronous)
/// and returns what it did. `proxies[node][client]` is `client`'s proxy to
/// `node`; `view` (the clients' health) is used in the single-fault mode only.
pub(crate) fn inject(
    cluster: &MemcachedCluster,
    proxies: &[Vec<Arc<FaultProxy>>],
    plan: &FaultPlan,
    mut rng: Rng,
    clock: Clock,
    view: &ClientsView,
) -> Vec<FaultRecord> {
    let mut records: Vec<FaultRecord> = Vec::new();
    let mut active: Vec<Option<Active>> = (0..cluster.len()).map(|_| None).collect();
    // Waits, in the single-fault mode, until every client has seen `node`
    // change state (when watched) and sees every node Up again, within the
    // plan's bound and never past the heal.
    let settled = |node: usize, watched: Option<Vec<Transitions>>| {
        if plan.single {
            let left = plan.heal_by.saturating_sub(clock.now());
            view.settle(node, watched, plan.settle_within.min(left));
        }
    };
    sleep_until(clock, plan.start_after);
    let mut next_decision = clock.now();
    loop {
        let now = clock.now();
        if now >= plan.heal_by {
            break;
        }
        for (node, slot) in active.iter_mut().enumerate() {
            if let Some(done) = slot.take_if(|a| a.ends_at <= now) {
                heal(
                    cluster,
                    &proxies[node],
                    node,
                    &mut records[done.record],
                    clock,
                );
                settled(node, done.watched);
            }
        }
        if now >= next_decision {
            let healthy: Vec<usize> = (0..cluster.len())
                .filter(|&node| node != plan.anchor && active[node].is_none())
                .filter(|_| !plan.single || active.iter().all(Option::is_none))
                .collect();
            if !healthy.is_empty() && rng.chance(75) {
                let node = *rng.pick(&healthy);
                let kind = choose(&mut rng);
                let length = Duration::from_millis(rng.between(plan.length_ms.0, plan.length_ms.1));
                let clients = if kind.is_network() {
                    scope(&mut rng, plan.clients)
                } else {
                    None
                };
                // An empty restart may go unseen by a client that is not
                // watching for it when it looks again.
                let watched = (plan.single && matches!(kind, FaultKind::Kill | FaultKind::Restart))
                    .then(|| view.watch());
                let mut record = FaultRecord {
                    node,
                    kind,
                    start: clock.now(),
                    end: None,
                    error: None,
                    clients,
                };
                match apply(cluster, &proxies[node], &record) {
                    Ok(()) if kind == FaultKind::Restart => {
                        record.end = Some(clock.now());
                        settled(node, watched);
                    }
                    Ok(()) => {
                        active[node] = Some(Active {
                            record: records.len(),
                            ends_at: (record.start + length).min(plan.heal_by),
                            watched,
                        })
                    }
                    Err(error) => {
                        record.error = Some(error);
                        record.end = Some(clock.now());
                    }
                }
                records.push(record);
            }
            next_decision =
                clock.now() + Duration::from_millis(rng.between(plan.gap_ms.0, plan.gap_ms.1));
        }
        let wake = active
            .iter()
            .flatten()
            .map(|a| a.ends_at)
            .chain([next_decision, plan.heal_by])
            .min()
            .expect("not empty");
        sleep_until(clock, wake);
    }
    for (node, slot) in active.iter_mut().enumerate() {
        if let Some(done) = slot.take() {
            heal(
                cluster,
                &proxies[node],
                node,
                &mut records[done.record],
                clock,
            );
        }
    }
    records
}

/// Which clients' proxies a network fault hits: `None` for all of them.
/// With several clients, most network faults are one-sided: one client
/// (55%), some clients (20%), or every client (25%).
fn scope(rng: &mut Rng, clients: usize) -> Option<Vec<usize>> {
    if clients <= 1 {
        return None;
    }
    match rng.below(100) {
        0..=54 => Some(vec![rng.below(clients as u64) as usize]),
        55..=74 if clients > 2 => {
            // Between one and all but one of them.
            let mut some: Vec<usize> = (0..clients).collect();
            let keep = rng.between(1, clients as u64 - 1) as usize;
            while some.len() > keep {
                some.remove(rng.below(some.len() as u64) as usize);
            }
            Some(some)
        }
        55..=74 => Some(vec![rng.below(clients as u64) as usize]),
        _ => None,
    }
}

/// The proxies `record` faults (or heals) among `proxies` (one per client).
fn targets<'a>(
    proxies: &'a [Arc<FaultProxy>],
    record: &'a FaultRecord,
) -> impl Iterator<Item = &'a Arc<FaultProxy>> + 'a {
    proxies
        .iter()
        .enumerate()
        .filter_map(move |(client, proxy)| {
            record
                .clients
                .as_ref()
                .map_or(true, |clients| clients.contains(&client))
                .then_some(proxy)
        })
}

fn sleep_until(clock: Clock, at: Duration) {
    let left = at.saturating_sub(clock.now());
    if !left.is_zero() {
        thread::sleep(left);
    }
}

fn choose(rng: &mut Rng) -> FaultKind {
    match rng.below(100) {
        0..=14 => FaultKind::Kill,
        15..=34 => FaultKind::Pause,
        35..=49 => FaultKind::Restart,
        50..=64 => FaultKind::ProxyDrop,
        65..=79 => {
            FaultKind::ProxyDelay(Duration::from_millis(*rng.pick(&[20, 50, 100, 200, 400])))
        }
        _ => FaultKind::Blackhole {
            discard: rng.chance(50),
        },
    }
}

/// Applies `record`'s fault: to the node's process, or to the proxies of
/// the clients it names among `proxies` (the node's, one per client).
fn apply(
    cluster: &MemcachedCluster,
    proxies: &[Arc<FaultProxy>],
    record: &FaultRecord,
) -> Result<(), String> {
    let node = cluster.node(record.node);
    let mode = match record.kind {
        FaultKind::Kill => return node.kill().map_err(|e| e.to_string()),
        FaultKind::Pause => return node.pause().map_err(|e| e.to_string()),
        FaultKind::Restart => return node.restart().map_err(|e| e.to_string()),
        FaultKind::ProxyDrop => ProxyMode::Drop,
        FaultKind::ProxyDelay(delay) => ProxyMode::Delay(delay),
        FaultKind::Blackhole { .. } => ProxyMode::Blackhole,
    };
    for proxy in targets(proxies, record) {
        proxy.set_mode(mode);
    }
    Ok(())
}

fn heal(
    cluster: &MemcachedCluster,
    proxies: &[Arc<FaultProxy>],
    index: usize,
    record: &mut FaultRecord,
    clock: Clock,
) {
    let node = cluster.node(index);
    let result = match record.kind {
        FaultKind::Kill | FaultKind::Restart => node.restart().map_err(|e| e.to_string()),
        FaultKind::Pause => node.resume().map_err(|e| e.to_string()),
        FaultKind::Blackhole { discard: true } => {
            for proxy in targets(proxies, record) {
                proxy.drop_connections();
                proxy.set_mode(ProxyMode::Pass);
            }
            Ok(())
        }
        FaultKind::ProxyDrop
        | FaultKind::ProxyDelay(_)
        | FaultKind::Blackhole { discard: false } => {
            for proxy in targets(proxies, record) {
                proxy.set_mode(ProxyMode::Pass);
            }
            Ok(())
        }
    };
    record.end = Some(clock.now());
    if let Err(error) = result {
        record.error = Some(error);
    }
}

/// Heals whatever is still faulty (after the schedule, or after a panic in
/// it): every process running and resumed, every proxy passing.
pub(crate) fn heal_all(
    cluster: &MemcachedCluster,
    proxies: &[Vec<Arc<FaultProxy>>],
) -> Vec<String> {
    let mut errors = Vec::new();
    for (index, node) in cluster.nodes().iter().enumerate() {
        if node.is_paused() {
            if let Err(error) = node.resume() {
                errors.push(format!("resuming node {index}: {error}"));
            }
        }
        if !node.is_running() {
            if let Err(error) = node.restart() {
                errors.push(format!("restarting node {index}: {error}"));
            }
        }
    }
    for proxy in proxies.iter().flatten() {
        proxy.set_mode(ProxyMode::Pass);
    }
    errors
}
