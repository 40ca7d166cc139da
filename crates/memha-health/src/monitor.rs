//! The probe loop of one node, as a tokio task.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::{sleep_until, Instant};

use crate::backoff::{random_seed, Backoff};
use crate::config::HealthConfig;
use crate::error::chain;
use crate::hook::{RejoinHook, RejoinInfo};
use crate::node::NodeHealth;
use crate::observe::ClassifyOutcome;
use crate::probe::Probe;
use crate::state::NodeState;

/// Owns a node's probe task; dropping it stops the task.
#[derive(Debug)]
pub(crate) struct Monitor {
    task: AbortHandle,
}

impl Monitor {
    /// Spawns the probe loop on the current tokio runtime.
    pub(crate) fn spawn(
        node: NodeHealth,
        probe: Box<dyn Probe>,
        hook: Option<Arc<dyn RejoinHook>>,
        config: HealthConfig,
    ) -> Monitor {
        let seed = random_seed(&node.addr());
        let task = tokio::spawn(run(node, probe, hook, config, seed));
        Monitor {
            task: task.abort_handle(),
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Probe, run the rejoin hook if the node is rejoining, sleep, repeat.
///
/// The sleep is `up_interval` (jittered) for a healthy Up node; the backoff
/// delay for a Joining, Down or Rejoining node and for an Up node with
/// failures since its last answer. The backoff starts over when the node
/// enters Down or Rejoining and after a full healthy interval. A wake-up (a
/// passive failure) reschedules the next probe relative to the last round, so
/// passive traffic can hasten probes but never push them past the schedule.
async fn run(
    node: NodeHealth,
    probe: Box<dyn Probe>,
    hook: Option<Arc<dyn RejoinHook>>,
    config: HealthConfig,
    seed: u64,
) {
    let shared = Arc::clone(&node.shared);
    let mut backoff = Backoff::from_config(&config, seed);
    let mut previous = shared.state();
    loop {
        match probe.probe().await {
            Ok(report) => shared.probe_succeeded(report),
            Err(err) => {
                tracing::debug!(node = %shared.name(), error = %chain(&err), "probe failed");
                shared.probe_failed(err.observation());
            }
        }
        if let Some((epoch, reason, attempt)) = shared.begin_rejoin_attempt() {
            let info = RejoinInfo {
                node: shared.addr(),
                reason,
                attempt,
            };
            let safe = match &hook {
                None => true,
                Some(hook) => {
                    match tokio::time::timeout(config.rejoin_timeout, hook.make_safe(info)).await {
                        Ok(Ok(())) => true,
                        Ok(Err(err)) => {
                            tracing::warn!(node = %shared.name(), attempt, error = %chain(err.as_ref()), "rejoin hook failed");
                            false
                        }
                        Err(_) => {
                            tracing::warn!(node = %shared.name(), attempt, timeout = ?config.rejoin_timeout, "rejoin hook timed out");
                            false
                        }
                    }
                }
            };
            if safe {
                shared.made_safe(epoch);
            }
        }
        // Delays run from the end of the round, so a slow probe or hook is
        // never retried back to back.
        let round_end = Instant::now();

        let up_delay = backoff.jittered(config.up_interval);
        let mut fast_delay: Option<Duration> = None;
        loop {
            let state = shared.state();
            if state != previous {
                if matches!(state, NodeState::Down | NodeState::Rejoining) {
                    backoff.reset();
                    fast_delay = None;
                }
                previous = state;
            }
            let healthy = state == NodeState::Up && shared.failures() == 0;
            let delay = if healthy {
                up_delay
            } else {
                *fast_delay.get_or_insert_with(|| backoff.next_delay())
            };
            tokio::select! {
                () = sleep_until(round_end + delay) => {
                    if healthy && fast_delay.is_none() {
                        // A full healthy interval: a later failure starts
                        // the backoff over.
                        backoff.reset();
                    }
                    break;
                }
                () = shared.wake.notified() => {}
            }
        }
    }
}
