//! The state machine and probe schedule, with a scripted probe and paused
//! tokio time: every transition, the backoff between probes, the probe
//! budget per minute, rejoin hooks and `wait_for_nodes`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use memha_health::{
    Backoff, BoxError, Cause, Error, ErrorKind, HealthConfig, HealthTable, NodeHealth, NodeState,
    Observation, Probe, ProbeReport, RejoinHook, RejoinInfo, RejoinReason, Transition, Transitions,
};
use tokio::time::{sleep, timeout, Instant};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// What a scripted probe does when called.
#[derive(Debug, Clone)]
enum Step {
    /// Answers with this report.
    Answer(ProbeReport),
    /// Fails at once with a refused connection.
    Refused,
    /// Hangs for this long, then fails with a timeout.
    Hang(Duration),
    /// Waits this long, then answers.
    SlowAnswer(Duration, ProbeReport),
}

fn answer(pid: u32, uptime: u64) -> Step {
    Step::Answer(
        ProbeReport::new()
            .with_pid(pid)
            .with_uptime(uptime)
            .with_time(1_000_000 + uptime),
    )
}

#[derive(Debug)]
struct ScriptState {
    queue: VecDeque<Step>,
    default: Step,
    calls: Vec<Instant>,
}

/// A probe that plays queued steps, then repeats a default step, and
/// records when it was called.
#[derive(Debug, Clone)]
struct Script(Arc<Mutex<ScriptState>>);

impl Script {
    fn new(default: Step) -> Self {
        Script(Arc::new(Mutex::new(ScriptState {
            queue: VecDeque::new(),
            default,
            calls: Vec::new(),
        })))
    }

    fn then(&self, step: Step) -> &Self {
        self.0.lock().unwrap().queue.push_back(step);
        self
    }

    fn set_default(&self, step: Step) {
        self.0.lock().unwrap().default = step;
    }

    fn calls(&self) -> Vec<Instant> {
        self.0.lock().unwrap().calls.clone()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().calls.len()
    }
}

#[async_trait]
impl Probe for Script {
    async fn probe(&self) -> Result<ProbeReport, Error> {
        let step = {
            let mut state = self.0.lock().unwrap();
            state.calls.push(Instant::now());
            let default = state.default.clone();
            state.queue.pop_front().unwrap_or(default)
        };
        match step {
            Step::Answer(report) => Ok(report),
            Step::Refused => Err(Error::probe(
                Observation::ConnectionFailed,
                io::Error::from(io::ErrorKind::ConnectionRefused),
            )),
            Step::Hang(duration) => {
                sleep(duration).await;
                Err(Error::probe(
                    Observation::Timeout,
                    io::Error::from(io::ErrorKind::TimedOut),
                ))
            }
            Step::SlowAnswer(duration, report) => {
                sleep(duration).await;
                Ok(report)
            }
        }
    }
}

/// The next transition, within a minute of (paused) time.
async fn next(transitions: &mut Transitions) -> Transition {
    timeout(60 * SEC, transitions.recv())
        .await
        .expect("a transition within a minute")
        .expect("the stream is open")
}

async fn expect(transitions: &mut Transitions, from: NodeState, to: NodeState, cause: Cause) {
    let t = next(transitions).await;
    assert_eq!(
        (t.from, t.to, t.cause),
        (from, to, cause),
        "unexpected transition {t}"
    );
}

/// A table with one node already Up (pid 1, uptime 100).
async fn up_node(config: HealthConfig, script: &Script) -> (HealthTable, NodeHealth, Transitions) {
    table_with_up_node(HealthTable::new(config), script).await
}

async fn table_with_up_node(
    table: HealthTable,
    script: &Script,
) -> (HealthTable, NodeHealth, Transitions) {
    let mut transitions = table.transitions();
    let node = table.add_node(addr(1), script.clone());
    expect(
        &mut transitions,
        NodeState::Joining,
        NodeState::Up,
        Cause::Answered,
    )
    .await;
    (table, node, transitions)
}

#[tokio::test(start_paused = true)]
async fn joining_node_turns_up_on_its_first_probe_at_once() {
    let table = HealthTable::new(HealthConfig::default());
    let mut transitions = table.transitions();
    let start = Instant::now();
    let script = Script::new(answer(1, 100));
    let node = table.add_node(addr(1), script.clone());
    assert_eq!(node.state(), NodeState::Joining);
    assert!(!node.is_readable() && !node.is_writable());
    let t = next(&mut transitions).await;
    assert_eq!(t.node, addr(1));
    assert_eq!(
        (t.from, t.to, t.cause),
        (NodeState::Joining, NodeState::Up, Cause::Answered)
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(node.is_readable() && node.is_writable());
    assert_eq!(node.last_report().unwrap().pid, Some(1));
    assert_eq!(table.state(addr(1)), Some(NodeState::Up));
    assert_eq!(table.up_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn joining_node_that_is_refused_goes_down_then_up_when_it_first_answers() {
    let table = HealthTable::new(HealthConfig::default());
    let mut transitions = table.transitions();
    let script = Script::new(Step::Refused);
    let node = table.add_node(addr(1), script.clone());
    expect(
        &mut transitions,
        NodeState::Joining,
        NodeState::Down,
        Cause::ConnectionFailed,
    )
    .await;
    sleep(SEC).await;
    script.set_default(answer(1, 5));
    // It never answered before: nothing can be stale, it joins like a new node.
    expect(
        &mut transitions,
        NodeState::Down,
        NodeState::Up,
        Cause::Answered,
    )
    .await;
    assert_eq!(node.state(), NodeState::Up);
}

#[tokio::test(start_paused = true)]
async fn joining_node_that_hangs_goes_down_after_the_threshold_of_timeouts() {
    let table = HealthTable::new(HealthConfig::default());
    let mut transitions = table.transitions();
    let script = Script::new(Step::Hang(SEC));
    table.add_node(addr(1), script.clone());
    expect(
        &mut transitions,
        NodeState::Joining,
        NodeState::Down,
        Cause::Failures { consecutive: 3 },
    )
    .await;
    assert_eq!(script.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_marks_an_up_node_down_at_once() {
    let script = Script::new(answer(1, 100));
    let (_table, node, mut transitions) = up_node(HealthConfig::default(), &script).await;
    node.record(Observation::ConnectionFailed);
    // Synchronously: the very next request sees it.
    assert_eq!(node.state(), NodeState::Down);
    expect(
        &mut transitions,
        NodeState::Up,
        NodeState::Down,
        Cause::ConnectionFailed,
    )
    .await;
    // A second failure is no new transition.
    node.record(Observation::ConnectionFailed);
    node.record(Observation::Timeout);
    assert_eq!(transitions.try_recv(), None);
}

#[tokio::test(start_paused = true)]
async fn consecutive_timeouts_mark_down_at_the_threshold_and_answers_reset_the_count() {
    let script = Script::new(answer(1, 100));
    let (_table, node, mut transitions) = up_node(HealthConfig::default(), &script).await;
    node.record(Observation::Timeout);
    node.record(Observation::Timeout);
    assert_eq!(node.state(), NodeState::Up);
    assert_eq!(node.consecutive_failures(), 2);
    // A miss or NOT_STORED is an answer: the count starts over.
    node.record(Observation::Success);
    assert_eq!(node.consecutive_failures(), 0);
    node.record(Observation::Timeout);
    node.record(Observation::Failure);
    // Neutral outcomes (invalid key, cancelled call) change nothing.
    node.record(Observation::Neutral);
    assert_eq!(node.consecutive_failures(), 2);
    assert_eq!(node.state(), NodeState::Up);
    node.record(Observation::Timeout);
    assert_eq!(node.state(), NodeState::Down);
    expect(
        &mut transitions,
        NodeState::Up,
        NodeState::Down,
        Cause::Failures { consecutive: 3 },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_timeout_threshold_is_configurable() {
    let script = Script::new(answer(1, 100));
    let config = HealthConfig::default().timeout_threshold(5);
    let (_table, node, mut transitions) = up_node(config, &script).await;
    for _ in 0..4 {
        node.record(Observation::Timeout);
    }
    assert_eq!(node.state(), NodeState::Up);
    node.record(Observation::Timeout);
    assert_eq!(node.state(), NodeState::Down);
    expect(
        &mut transitions,
        NodeState::Up,
        NodeState::Down,
        Cause::Failures { consecutive: 5 },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn probe_timeouts_of_a_hung_up_node_mark_it_down_on_the_fast_schedule() {
    let script = Script::new(answer(1, 100));
    let (_table, node, mut transitions) = up_node(HealthConfig::default(), &script).await;
    let start = Instant::now();
    script.set_default(Step::Hang(SEC));
    expect(
        &mut transitions,
        NodeState::Up,
        NodeState::Down,
        Cause::Failures { consecutive: 3 },
    )
    .await;
    // One probe after at most 5 s, then the fast schedule: not 3 x 5 s.
    let calls = script.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(calls[1] - calls[0] <= 5 * SEC && calls[1] - calls[0] >= 4 * SEC);
    for pair in calls[1..].windows(2) {
        // The probe's own second, then a backoff delay of at most 150 ms.
        let gap = pair[1] - pair[0];
        assert!(gap > SEC && gap <= SEC + 150 * MS, "{gap:?}");
    }
    assert!(start.elapsed() <= 5 * SEC + 3 * SEC + 250 * MS);
    assert_eq!(node.state(), NodeState::Down);
}

#[tokio::test(start_paused = true)]
async fn a_returning_process_rejoins_unreachable_and_turns_up_at_once_without_a_hook() {
    let script = Script::new(answer(1, 100));
    let (_table, node, mut transitions) = up_node(HealthConfig::default(), &script).await;
    script.set_default(Step::Refused);
    node.record(Observation::ConnectionFailed);
    expect(
        &mut transitions,
        NodeState::Up,
        NodeState::Down,
        Cause::ConnectionFailed,
    )
    .await;
    sleep(10 * SEC).await;
    assert_eq!(node.state(), NodeState::Down);
    // Same pid, uptime grew by the time away: it was paused or partitioned.
    script.set_default(answer(1, 110));
    expect(
        &mut transitions,
        NodeState::Down,
        NodeState::Rejoining,
        Cause::Returned(RejoinReason::Unreachable),
    )
    .await;
    expect(
        &mut transitions,
        NodeState::Rejoining,
        NodeState::Up,
        Cause::MadeSafe,
    )
    .await;
    assert_eq!(node.state(), NodeState::Up);
}

#[tokio::test(start_paused = true)]
async fn a_new_pid_or_a_backwards_uptime_rejoins_restarted() {
    for comeback in [answer(2, 3), answer(1, 3)] {
        let script = Script::new(answer(1, 100));
        let (_table, node, mut transitions) = up_node(HealthConfig::default(), &script).await;
        script.set_default(Step::Refused);
        node.record(Observation::ConnectionFailed);
        expect(
            &mut transitions,
            NodeState::Up,
            NodeState::Down,
            Cause::ConnectionFailed,
        )
        .await;
        script.set_default(comeback.clone());
        expect(
            &mut transitions,
            NodeState::Down,
            NodeState::Rejoining,
            Cause::Returned(RejoinReason::Restarted),
        )
        .await;
        expect(
            &mut transitions,
            NodeState::Rejoining,
            NodeState::Up,
            Cause::MadeSafe,
        )
        .await;
    }
}

#[tokio::test(start_paused = true)]
async fn probes_without_pid_or_uptime_rejoin_unknown() {
    let script = Script::new(Step::Answer(ProbeReport::new()));
    let (_table, node, mut transitions) = up_node(HealthConfig::default(), &script).await;
    node.record(Observation::ConnectionFailed);
    expect(
        &mut transitions,
        NodeState::Up,
        NodeState::Down,
        Cause::ConnectionFailed,
    )
    .await;
    expect(
        &mut transitions,
        NodeState::Down,
        NodeState::Rejoining,
        Cause::Returned(RejoinReason::Unknown),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_up_node_that_restarted_between_probes_goes_through_rejoining() {
    let script = Script::new(answer(1, 100));
    let (_table, node, mut transitions) = up_node(HealthConfig::default(), &script).await;
    let start = Instant::now();
    script.set_default(answer(2, 1));
    expect(
        &mut transitions,
        NodeState::Up,
        NodeState::Rejoining,
        Cause::Returned(RejoinReason::Restarted),
    )
    .await;
    assert!(start.elapsed() <= 5 * SEC);
    expect(
        &mut transitions,
        NodeState::Rejoining,
        NodeState::Up,
        Cause::MadeSafe,
    )
    .await;
    assert_eq!(node.state(), NodeState::Up);
    // The same new process again: no further transition.
    sleep(30 * SEC).await;
    assert_eq!(transitions.try_recv(), None);
}

/// A hook that fails its first `failures` attempts and records every call.
#[derive(Debug, Clone, Default)]
struct RecordingHook {
    failures: u32,
    delay: Duration,
    calls: Arc<Mutex<Vec<(Instant, RejoinInfo)>>>,
}

impl RecordingHook {
    fn calls(&self) -> Vec<(Instant, RejoinInfo)> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl RejoinHook for RecordingHook {
    async fn make_safe(&self, info: RejoinInfo) -> Result<(), BoxError> {
        let attempt = info.attempt;
        self.calls.lock().unwrap().push((Instant::now(), info));
        sleep(self.delay).await;
        if attempt <= self.failures {
            Err("journal replay failed".into())
        } else {
            Ok(())
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_hook_keeps_the_node_rejoining_and_is_retried_with_backoff() {
    let hook = RecordingHook {
        failures: 2,
        ..RecordingHook::default()
    };
    let script = Script::new(answer(1, 100));
    let table = HealthTable::with_rejoin_hook(HealthConfig::default(), hook.clone());
    let (_table, node, mut transitions) = table_with_up_node(table, &script).await;
    node.record(Observation::ConnectionFailed);
    expect(
        &mut transitions,
        NodeState::Up,
        NodeState::Down,
        Cause::ConnectionFailed,
    )
    .await;
    expect(
        &mut transitions,
        NodeState::Down,
        NodeState::Rejoining,
        Cause::Returned(RejoinReason::Unreachable),
    )
    .await;
    assert_eq!(node.state(), NodeState::Rejoining);
    assert!(node.is_writable() && !node.is_readable());
    expect(
        &mut transitions,
        NodeState::Rejoining,
        NodeState::Up,
        Cause::MadeSafe,
    )
    .await;
    let calls = hook.calls();
    let attempts: Vec<_> = calls
        .iter()
        .map(|(_, info)| (info.node, info.reason, info.attempt))
        .collect();
    assert_eq!(
        attempts,
        [
            (addr(1), RejoinReason::Unreachable, 1),
            (addr(1), RejoinReason::Unreachable, 2),
            (addr(1), RejoinReason::Unreachable, 3),
        ]
    );
    // Retries follow the backoff: about 100 ms, then about 150 ms.
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps[0] >= 80 * MS && gaps[0] <= 100 * MS, "{gaps:?}");
    assert!(gaps[1] >= 120 * MS && gaps[1] <= 150 * MS, "{gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn a_rejoining_node_that_fails_goes_down_and_a_late_hook_does_not_turn_it_up() {
    let hook = RecordingHook {
        delay: 2 * SEC,
        ..RecordingHook::default()
    };
    let script = Script::new(answer(1, 100));
    let table = HealthTable::with_rejoin_hook(HealthConfig::default(), hook.clone());
    let (_table, node, mut transitions) = table_with_up_node(table, &script).await;
    script.set_default(Step::Refused);
    node.record(Observation::ConnectionFailed);
    expect(
        &mut transitions,
        NodeState::Up,
        NodeState::Down,
        Cause::ConnectionFailed,
    )
    .await;
    script.then(answer(1, 101));
    expect(
        &mut transitions,
        NodeState::Down,
        NodeState::Rejoining,
        Cause::Returned(RejoinReason::Unreachable),
    )
    .await;
    // While the hook runs, a write to the node is refused.
    node.record(Observation::ConnectionFailed);
    expect(
        &mut transitions,
        NodeState::Rejoining,
        NodeState::Down,
        Cause::ConnectionFailed,
    )
    .await;
    // The hook then succeeds, too late: the node stays down.
    sleep(3 * SEC).await;
    assert_eq!(hook.calls().len(), 1);
    assert_eq!(node.state(), NodeState::Down);
    assert_eq!(transitions.try_recv(), None);
    // It comes back restarted this time: the hook is told so.
    script.set_default(answer(9, 1));
    expect(
        &mut transitions,
        NodeState::Down,
        NodeState::Rejoining,
        Cause::Returned(RejoinReason::Restarted),
    )
    .await;
    expect(
        &mut transitions,
        NodeState::Rejoining,
        NodeState::Up,
        Cause::MadeSafe,
    )
    .await;
    let calls = hook.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[1].1.reason, calls[1].1.attempt),
        (RejoinReason::Restarted, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_that_restarts_while_rejoining_is_reported_restarted_to_the_next_attempt() {
    let hook = RecordingHook {
        failures: 1,
        ..RecordingHook::default()
    };
    let script = Script::new(answer(1, 100));
    let table = HealthTable::with_rejoin_hook(HealthConfig::default(), hook.clone());
    let (_table, node, mut transitions) = table_with_up_node(table, &script).await;
    node.record(Observation::ConnectionFailed);
    script.then(answer(1, 110)).then(answer(7, 1));
    expect(
        &mut transitions,
        NodeState::Up,
        NodeState::Down,
        Cause::ConnectionFailed,
    )
    .await;
    expect(
        &mut transitions,
        NodeState::Down,
        NodeState::Rejoining,
        Cause::Returned(RejoinReason::Unreachable),
    )
    .await;
    expect(
        &mut transitions,
        NodeState::Rejoining,
        NodeState::Up,
        Cause::MadeSafe,
    )
    .await;
    let reasons: Vec<_> = hook
        .calls()
        .iter()
        .map(|(_, info)| (info.reason, info.attempt))
        .collect();
    assert_eq!(
        reasons,
        [(RejoinReason::Unreachable, 1), (RejoinReason::Restarted, 2)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_hook_that_hangs_times_out_and_is_retried() {
    let hook = RecordingHook {
        delay: 10 * SEC,
        ..RecordingHook::default()
    };
    let config = HealthConfig::default().rejoin_timeout(SEC);
    let script = Script::new(answer(1, 100));
    let table = HealthTable::with_rejoin_hook(config, hook.clone());
    let (_table, node, mut transitions) = table_with_up_node(table, &script).await;
    node.record(Observation::ConnectionFailed);
    next(&mut transitions).await;
    expect(
        &mut transitions,
        NodeState::Down,
        NodeState::Rejoining,
        Cause::Returned(RejoinReason::Unreachable),
    )
    .await;
    sleep(5 * SEC).await;
    assert_eq!(node.state(), NodeState::Rejoining);
    let calls = hook.calls();
    assert!(calls.len() >= 3, "{} attempts", calls.len());
    for pair in calls.windows(2) {
        // A timed-out attempt takes the full second, then a backoff delay.
        assert!(pair[1].0 - pair[0].0 > SEC, "{:?}", pair[1].0 - pair[0].0);
    }
}

/// The nominal (jitter-free) backoff delays of the default configuration.
fn nominal_delays(n: usize) -> Vec<Duration> {
    let mut backoff = Backoff::with_seed(100 * MS, 1.5, 3 * SEC, 0.0, 0);
    (0..n).map(|_| backoff.next_delay()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_down_node_is_probed_with_jittered_backoff_from_100ms_to_3s() {
    let script = Script::new(Step::Refused);
    let table = HealthTable::new(HealthConfig::default());
    let start = Instant::now();
    table.add_node(addr(1), script.clone());
    sleep(60 * SEC).await;
    let calls = script.calls();
    assert_eq!(calls[0], start, "a new node is probed at once");
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    let nominal = nominal_delays(gaps.len());
    for (i, (gap, nominal)) in gaps.iter().zip(&nominal).enumerate() {
        // tokio's timer rounds a sleep up to the next whole millisecond.
        assert!(
            *gap <= *nominal + MS && *gap >= nominal.mul_f64(0.8),
            "probe gap {i} is {gap:?}, nominal {nominal:?}"
        );
    }
    assert_eq!(nominal[9], 3 * SEC, "the cap is reached after 9 steps");
    // Jitter really spreads the capped delays.
    let capped: Vec<_> = gaps[10..].to_vec();
    assert!(capped.iter().min() < capped.iter().max(), "{capped:?}");
    // Per minute: at most 10 ramp-up probes plus 60 s / 2.4 s, at least
    // the ramp-up plus 60 s / 3 s less the ramp's duration.
    let probes = calls.len();
    assert!((24..=36).contains(&probes), "{probes} probes in a minute");
}

#[tokio::test(start_paused = true)]
async fn an_up_node_is_probed_every_up_interval() {
    let script = Script::new(answer(1, 100));
    let (_table, _node, _transitions) = up_node(HealthConfig::default(), &script).await;
    sleep(60 * SEC).await;
    let calls = script.calls();
    for pair in calls.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap <= 5 * SEC && gap >= 4 * SEC, "{gap:?}");
    }
    // The first at 0 s, then 12 to 15 more within the minute.
    assert!((13..=16).contains(&calls.len()), "{} probes", calls.len());
}

#[tokio::test(start_paused = true)]
async fn the_probe_schedule_is_configurable() {
    let config = HealthConfig::default()
        .up_interval(SEC)
        .backoff(10 * MS, 2.0, 500 * MS)
        .jitter(0.0);
    let script = Script::new(answer(1, 100));
    let (_table, node, _transitions) = up_node(config, &script).await;
    sleep(10 * SEC + 500 * MS).await;
    assert_eq!(script.count(), 11);
    script.set_default(Step::Refused);
    node.record(Observation::ConnectionFailed);
    let from = script.count();
    let down_at = Instant::now();
    sleep(SEC + 5 * MS).await;
    // Woken at once by the failure (the 10 ms step has long passed since
    // the last probe), then 20, 40, 80, 160, 320 ms, then the 500 ms cap.
    let gaps: Vec<Duration> = script.calls()[from..]
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    assert_eq!(script.calls()[from], down_at);
    assert_eq!(gaps, [20 * MS, 40 * MS, 80 * MS, 160 * MS, 320 * MS]);
}

#[tokio::test(start_paused = true)]
async fn flapping_passive_failures_cannot_cause_a_probe_storm() {
    let script = Script::new(answer(1, 100));
    let (_table, node, _transitions) = up_node(HealthConfig::default(), &script).await;
    let start = script.count();
    // A timeout then an answer every 10 ms for a minute: 6000 wake-ups.
    for _ in 0..6000 {
        node.record(Observation::Timeout);
        sleep(5 * MS).await;
        node.record(Observation::Success);
        sleep(5 * MS).await;
    }
    assert_eq!(node.state(), NodeState::Up);
    let probes = script.count() - start;
    // The fast schedule's ramp (10 probes) then one per 2.4..3 s.
    assert!(probes <= 36, "{probes} probes in a minute");
    assert!(probes >= 20, "suspect node probed only {probes} times");
}

#[tokio::test(start_paused = true)]
async fn a_slow_probe_delays_the_next_one_by_the_full_interval() {
    // The schedule runs from the end of a probe: a probe taking 2 s never
    // overlaps the next one.
    let script = Script::new(Step::SlowAnswer(2 * SEC, ProbeReport::new().with_pid(1)));
    let table = HealthTable::new(HealthConfig::default().jitter(0.0));
    table.add_node(addr(1), script.clone());
    sleep(30 * SEC).await;
    let calls = script.calls();
    for pair in calls.windows(2) {
        assert_eq!(pair[1] - pair[0], 7 * SEC);
    }
    assert_eq!(calls.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn wait_for_nodes_returns_when_enough_are_up_or_fails_typed_at_the_deadline() {
    let table = HealthTable::new(HealthConfig::default());
    // Nothing wanted: at once, even with no node.
    table.wait_for_nodes(0, Duration::ZERO).await.unwrap();
    let start = Instant::now();
    for port in [1, 2] {
        let script = Script::new(answer(u32::from(port), 100));
        script.then(Step::SlowAnswer(
            2 * SEC * u32::from(port),
            ProbeReport::new().with_pid(u32::from(port)),
        ));
        table.add_node(addr(port), script);
    }
    table.add_node(addr(3), Script::new(Step::Refused));
    table.wait_for_nodes(1, 10 * SEC).await.unwrap();
    assert_eq!(
        start.elapsed(),
        2 * SEC,
        "returns as soon as the first is up"
    );
    table.wait_for_nodes(2, 10 * SEC).await.unwrap();
    assert_eq!(start.elapsed(), 4 * SEC);
    table.wait_for_nodes(2, Duration::ZERO).await.unwrap();
    let err = table.wait_for_nodes(3, 5 * SEC).await.unwrap_err();
    assert_eq!(start.elapsed(), 9 * SEC);
    assert_eq!(
        err.kind(),
        ErrorKind::NotEnoughNodes {
            wanted: 3,
            up: 2,
            waited: 5 * SEC
        }
    );
    assert!(err.to_string().contains("only 2 node(s) up"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn removing_a_node_or_dropping_the_table_stops_its_probes() {
    let table = HealthTable::new(HealthConfig::default());
    let kept = Script::new(answer(1, 100));
    let removed = Script::new(answer(2, 100));
    table.add_node(addr(1), kept.clone());
    let node = table.add_node(addr(2), removed.clone());
    sleep(SEC).await;
    assert_eq!(table.nodes().len(), 2);
    assert_eq!(table.up_count(), 2);
    let handle = table.remove_node(addr(2)).expect("was in the table");
    assert!(handle.ptr_eq(&node));
    assert!(table.remove_node(addr(2)).is_none());
    assert_eq!(table.nodes().len(), 1);
    assert!(table.node(addr(2)).is_none());
    assert_eq!(table.up_count(), 1);
    let (kept_before, removed_before) = (kept.count(), removed.count());
    sleep(60 * SEC).await;
    assert_eq!(removed.count(), removed_before);
    assert!(kept.count() > kept_before);
    // The handle keeps its last state.
    assert_eq!(node.state(), NodeState::Up);

    let kept_before = kept.count();
    drop(table);
    sleep(60 * SEC).await;
    assert_eq!(kept.count(), kept_before);
}

#[tokio::test(start_paused = true)]
async fn adding_a_node_twice_keeps_the_first_entry() {
    let table = HealthTable::new(HealthConfig::default());
    let first = Script::new(answer(1, 100));
    let second = Script::new(answer(2, 100));
    let a = table.add_node(addr(1), first.clone());
    let b = table.add_node(addr(1), second.clone());
    assert!(a.ptr_eq(&b));
    sleep(SEC).await;
    assert_eq!(second.count(), 0);
    assert_eq!(first.count(), 1);
    assert_eq!(table.nodes().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_observer_skips_the_oldest_transitions_and_counts_them() {
    let script = Script::new(answer(1, 100));
    // Damping off: the node flaps on purpose.
    let config = HealthConfig::default().flap_hold(Duration::ZERO, Duration::ZERO);
    let (table, node, _transitions) = up_node(config, &script).await;
    let mut slow = table.transitions();
    // 400 cycles of Up -> Down -> Rejoining -> Up: 1200 transitions.
    for _ in 0..400 {
        node.record(Observation::ConnectionFailed);
        sleep(SEC).await;
        assert_eq!(node.state(), NodeState::Up);
    }
    let mut received = 0;
    while slow.try_recv().is_some() {
        received += 1;
    }
    assert_eq!(received, 1024, "the buffer keeps the newest 1024");
    assert_eq!(slow.missed(), 1200 - 1024);
    // Still usable afterwards.
    node.record(Observation::ConnectionFailed);
    let t = next(&mut slow).await;
    assert_eq!((t.from, t.to), (NodeState::Up, NodeState::Down));
}

#[tokio::test(start_paused = true)]
async fn the_transition_stream_ends_when_the_table_and_its_nodes_are_gone() {
    let script = Script::new(answer(1, 100));
    let (table, node, mut transitions) = up_node(HealthConfig::default(), &script).await;
    drop(table);
    // A handle still in use keeps reporting.
    node.record(Observation::ConnectionFailed);
    assert_eq!(next(&mut transitions).await.to, NodeState::Down);
    drop(node);
    assert_eq!(transitions.recv().await, None);
}

/// Marks the node Down and returns how long it took to be Up again.
async fn down_until_up(node: &NodeHealth, transitions: &mut Transitions) -> Duration {
    node.record(Observation::ConnectionFailed);
    let down_at = Instant::now();
    while next(transitions).await.to != NodeState::Up {}
    Instant::now() - down_at
}

#[tokio::test(start_paused = true)]
async fn a_node_failing_soon_after_each_return_is_held_down_longer_each_time() {
    let script = Script::new(answer(1, 100));
    let (_table, node, mut transitions) = up_node(HealthConfig::default(), &script).await;
    // The first failure is a blip: back at the next probe. Then each
    // failure soon after a return holds it down twice as long, up to 30 s,
    // whatever its probes answer (which come on the backoff schedule, at
    // most 3 s apart).
    for hold in [0, 1, 2, 4, 8, 16, 30, 30].map(Duration::from_secs) {
        let down_for = down_until_up(&node, &mut transitions).await;
        assert!(
            down_for >= hold && down_for <= hold + 3 * SEC,
            "held {down_for:?}, expected {hold:?}"
        );
    }
    // Up for the longest hold-down: its flaps are forgotten.
    sleep(30 * SEC).await;
    assert!(down_until_up(&node, &mut transitions).await < SEC);
}
