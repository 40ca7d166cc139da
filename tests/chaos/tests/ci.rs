//! The chaos suite, short and with a fixed seed, as part of the tests:
//! 15 s of the 64-task workload on 4 nodes under faults, then the heal,
//! the verification reads and the history check. Longer runs with other
//! seeds: `cargo xtask chaos --seconds N --seed S`.

use std::time::Duration;

use memha_chaos::ChaosConfig;

/// 4 nodes (3 + 19 % 3), anchor node 3 (19 % 4); a schedule with every
/// kind of fault (kills, pauses, empty restarts, resets, delays, blackholes).
const SEED: u64 = 19;
const SECONDS: u64 = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chaos_run_breaks_no_promise() {
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
