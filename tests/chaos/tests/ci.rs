//! The chaos suite, short and with fixed seeds, as part of the tests:
//! 15 s of the 64-task workload on 4 nodes under faults through one client,
//! and 14 s of it spread over 4 clients with one faulty node at a time;
//! each followed by the heal, the verification reads and the history
//! check.
//! Longer runs with other seeds: `cargo xtask chaos --seconds N --seed S
//! [--clients M] [--single-fault]`.
//!
//! The two runs take turns: a run counts every panic in the process, and
//! the machine running CI may have two cores only.

use std::time::Duration;

use memha_chaos::ChaosConfig;
use tokio::sync::Mutex;

/// One run at a time.
static ONE_RUN: Mutex<()> = Mutex::const_new(());

/// 4 nodes (3 + 19 % 3), anchor node 3 (19 % 4); a schedule with every
/// kind of fault (kills, pauses, empty restarts, resets, delays, blackholes).
const SEED: u64 = 19;
const SECONDS: u64 = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chaos_run_breaks_no_promise() {
    let _turn = ONE_RUN.lock().await;
    let config = ChaosConfig::new(SEED, Duration::from_secs(SECONDS));
    let report = memha_chaos::run(config).await.expect("the run sets up");
    println!("{report}");
    assert!(
        report.load_ops > 10_000,
        "too little load: {}",
        report.load_ops
    );
    assert!(
        report.faults.len() >= 10,
        "too few faults: {}",
        report.faults.len()
    );
    assert_eq!(
        report.violations(),
        0,
        "replay with `cargo xtask chaos --seconds {SECONDS} --seed {SEED}`:\n{report}"
    );
}

/// 4 clients on 4 nodes (3 + 7 % 3), anchor node 3 (7 % 4), one faulty
/// node at a time; most network faults cut off one or some clients only.
/// Faults come one after the other, each awaited until every client sees
/// every node Up again, so a loaded machine makes fewer of them: the
/// bound on their number only guards against a schedule that did nothing.
const MULTI_SEED: u64 = 7;
const MULTI_SECONDS: u64 = 14;
const MULTI_CLIENTS: usize = 4;

/// Races between clients' concurrent writes of one key while their views
/// of the nodes differ are still open on the shared sessions (see the
/// assertion below); every other key is held to every promise (40 runs of
/// 40 under CPU load passed when this joined the default run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_multi_client_run_with_one_fault_at_a_time_breaks_no_promise_outside_shared_sessions(
) {
    let _turn = ONE_RUN.lock().await;
    let mut config = ChaosConfig::new(MULTI_SEED, Duration::from_secs(MULTI_SECONDS))
        .clients(MULTI_CLIENTS)
        .single_fault(true);
    // Shorter faults: one at a time, each followed by the wait for every
    // client to see every node Up, still make a dozen in the time.
    config.fault_ms = (200, 1200);
    let report = memha_chaos::run(config).await.expect("the run sets up");
    println!("{report}");
    assert!(
        report.load_ops > 5_000,
        "too little load: {}",
        report.load_ops
    );
    assert!(
        report.faults.len() >= 3,
        "too few faults: {}",
        report.faults.len()
    );
    // Sessions every client creates, updates and deletes at once (the
    // shared keys) still meet races between clients' concurrent writes
    // while their views of the nodes differ (docs/consistency.md, issue
    // 11's note): they are printed, not asserted. Everything else is.
    let shared = |v: &&memha_chaos::Violation| {
        v.key
            .as_deref()
            .is_some_and(|key| key.starts_with("shared"))
    };
    let broken: Vec<_> = report
        .findings
        .violations
        .iter()
        .filter(|v| !shared(v))
        .collect();
    println!(
        "shared-session violations (not asserted): {}",
        report.findings.violations.iter().filter(shared).count()
    );
    assert!(
        broken.is_empty(),
        "replay with `cargo xtask chaos --seconds {MULTI_SECONDS} --seed {MULTI_SEED} --clients {MULTI_CLIENTS} --single-fault`:\n{report}"
    );
}
