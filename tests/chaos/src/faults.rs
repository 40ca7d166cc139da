//! The seeded fault schedule: process faults (kill, pause, restart empty)
//! and network faults (through each node's proxy), on every node but the
//! anchor, which is never faulted.
//!
//! Why an anchor: a restart empties a node, so a key written while only
//! nodes A and B were up, then A and B restarted one after the other, is
//! legitimately lost even though at most one node was ever down at a time.
//! Keeping one node untouched keeps every acknowledged write on at least
//! one live, reachable node for the whole run (with acknowledgement by
//! every writable node, the anchor holds every acknowledged write), so the
//! checker can demand that no acknowledged write is ever lost. Every other
//! node may be faulty at once: up to n-1 nodes of n.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use memha_tests::{FaultProxy, MemcachedCluster, ProxyMode};

use crate::history::{Clock, FaultKind, FaultRecord};
use crate::rng::Rng;

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
}

struct Active {
    record: usize,
    ends_at: Duration,
}

/// Runs the schedule on the calling thread (the harness is synchronous)
/// and returns what it did.
pub(crate) fn inject(
    cluster: &MemcachedCluster,
    proxies: &[Arc<FaultProxy>],
    plan: &FaultPlan,
    mut rng: Rng,
    clock: Clock,
) -> Vec<FaultRecord> {
    let mut records: Vec<FaultRecord> = Vec::new();
    let mut active: Vec<Option<Active>> = (0..cluster.len()).map(|_| None).collect();
    sleep_until(clock, plan.start_after);
    let mut next_decision = clock.now();
    loop {
        let now = clock.now();
        if now >= plan.heal_by {
            break;
        }
        for (node, slot) in active.iter_mut().enumerate() {
            if let Some(done) = slot.take_if(|a| a.ends_at <= now) {
                heal(cluster, proxies, node, &mut records[done.record], clock);
            }
        }
        if now >= next_decision {
            let healthy: Vec<usize> = (0..cluster.len())
                .filter(|&node| node != plan.anchor && active[node].is_none())
                .collect();
            if !healthy.is_empty() && rng.chance(75) {
                let node = *rng.pick(&healthy);
                let kind = choose(&mut rng);
                let length = Duration::from_millis(rng.between(plan.length_ms.0, plan.length_ms.1));
                let mut record = FaultRecord {
                    node,
                    kind,
                    start: clock.now(),
                    end: None,
                    error: None,
                };
                match apply(cluster, &proxies[node], node, kind) {
                    Ok(()) if kind == FaultKind::Restart => record.end = Some(clock.now()),
                    Ok(()) => {
                        active[node] = Some(Active {
                            record: records.len(),
                            ends_at: (record.start + length).min(plan.heal_by),
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
            heal(cluster, proxies, node, &mut records[done.record], clock);
        }
    }
    records
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

fn apply(
    cluster: &MemcachedCluster,
    proxy: &FaultProxy,
    node: usize,
    kind: FaultKind,
) -> Result<(), String> {
    let node = cluster.node(node);
    match kind {
        FaultKind::Kill => node.kill().map_err(|e| e.to_string()),
        FaultKind::Pause => node.pause().map_err(|e| e.to_string()),
        FaultKind::Restart => node.restart().map_err(|e| e.to_string()),
        FaultKind::ProxyDrop => {
            proxy.set_mode(ProxyMode::Drop);
            Ok(())
        }
        FaultKind::ProxyDelay(delay) => {
            proxy.set_mode(ProxyMode::Delay(delay));
            Ok(())
        }
        FaultKind::Blackhole { .. } => {
            proxy.set_mode(ProxyMode::Blackhole);
            Ok(())
        }
    }
}

fn heal(
    cluster: &MemcachedCluster,
    proxies: &[Arc<FaultProxy>],
    index: usize,
    record: &mut FaultRecord,
    clock: Clock,
) {
    let node = cluster.node(index);
    let proxy = &proxies[index];
    let result = match record.kind {
        FaultKind::Kill | FaultKind::Restart => node.restart().map_err(|e| e.to_string()),
        FaultKind::Pause => node.resume().map_err(|e| e.to_string()),
        FaultKind::Blackhole { discard: true } => {
            proxy.drop_connections();
            proxy.set_mode(ProxyMode::Pass);
            Ok(())
        }
        FaultKind::ProxyDrop
        | FaultKind::ProxyDelay(_)
        | FaultKind::Blackhole { discard: false } => {
            proxy.set_mode(ProxyMode::Pass);
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
pub(crate) fn heal_all(cluster: &MemcachedCluster, proxies: &[Arc<FaultProxy>]) -> Vec<String> {
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
    for proxy in proxies {
        proxy.set_mode(ProxyMode::Pass);
    }
    errors
}
