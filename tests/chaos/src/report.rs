//! The run's summary, ending in `violations: N`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use memha_client::{NodeState, ReplicationMetrics};

use crate::checker::{self, Findings, Kind};
use crate::history::{FaultRecord, HealthRecord, Outcome, Phase, Record};
use crate::ChaosConfig;

/// Everything a run did and found.
#[derive(Debug)]
pub struct Report {
    /// The settings.
    pub config: ChaosConfig,
    /// The node never faulted.
    pub anchor: usize,
    /// Calls made under faults.
    pub load_ops: usize,
    /// How long the load ran.
    pub load_time: Duration,
    /// How long the clients took to see every node Up after the heal (the
    /// last of them).
    pub all_up_after: Duration,
    /// The whole run, set-up and checks included.
    pub total_time: Duration,
    /// Every call.
    pub records: Vec<Record>,
    /// Every fault.
    pub faults: Vec<FaultRecord>,
    /// Every health change the clients saw, by time.
    pub health: Vec<HealthRecord>,
    /// Each client's replication counters at the end, in client order.
    pub stats: Vec<ReplicationMetrics>,
    /// What the checker found.
    pub findings: Findings,
    /// Faults the harness could not inject or heal.
    pub harness_errors: Vec<String>,
}

impl Report {
    /// How many promises were broken.
    pub fn violations(&self) -> usize {
        self.findings.violations.len()
    }

    /// The replication counters summed over the clients: repairs,
    /// divergences, miss failovers, partial writes, invalidated keys,
    /// flushes, stale markers written, copies that lost to a marker.
    pub fn summed(&self) -> [u64; 8] {
        self.stats.iter().fold([0; 8], |sum, s| {
            [
                sum[0] + s.repairs,
                sum[1] + s.divergences,
                sum[2] + s.miss_failovers,
                sum[3] + s.partial_writes,
                sum[4] + s.invalidated,
                sum[5] + s.flushes,
                sum[6] + s.stale_marks,
                sum[7] + s.stale_copies,
            ]
        })
    }

    /// The faults that hit some clients only.
    pub fn one_sided(&self) -> usize {
        self.faults.iter().filter(|f| f.one_sided()).count()
    }

    /// The violations of one kind.
    pub fn count(&self, kind: Kind) -> usize {
        self.findings
            .violations
            .iter()
            .filter(|v| v.kind == kind)
            .count()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "memha chaos: seed {}, {} nodes (anchor: node {}, never faulted), {} tasks x {} keys + {} shared keys",
            c.seed, c.nodes, self.anchor, c.tasks, c.keys_per_task, c.shared_keys
        )?;
        if c.clients > 1 {
            writeln!(
                f,
                "  {} clients, each through its own proxy to every node (tasks spread over them; the shared keys are sessions every client uses)",
                c.clients
            )?;
        }
        if c.single_fault {
            writeln!(f, "  single fault: at most one faulty node at a time")?;
        }
        writeln!(
            f,
            "  per-node timeout {}, call budgets: get and touch {}, set and delete {}, add {} timeouts, + {} slack; load {:.1}s, whole run {:.1}s",
            ms(c.node_timeout),
            checker::READ_TIMEOUTS,
            checker::WRITE_TIMEOUTS,
            checker::COORDINATED_TIMEOUTS,
            ms(c.budget_slack),
            self.load_time.as_secs_f64(),
            self.total_time.as_secs_f64()
        )?;

        // Operations.
        let mut per_op: BTreeMap<&str, (usize, usize, Vec<Duration>)> = BTreeMap::new();
        let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        for record in self.records.iter().filter(|r| r.phase == Phase::Load) {
            let entry = per_op.entry(record.op.name()).or_default();
            entry.0 += 1;
            entry.2.push(record.latency());
            if let Outcome::Failed(failure) = &record.outcome {
                entry.1 += 1;
                *errors.entry(failure.kind.as_str()).or_default() += 1;
            } else {
                let outcome = match &record.outcome {
                    Outcome::Item { .. } => "hit",
                    Outcome::Miss => "miss",
                    Outcome::Stored => "stored",
                    Outcome::NotStored => "not-stored",
                    Outcome::Deleted => "deleted",
                    Outcome::NotFound => "not-found",
                    Outcome::Touched => "touched",
                    Outcome::Failed(_) => "failed",
                };
                *outcomes
                    .entry(format!("{} {outcome}", record.op.name()))
                    .or_default() += 1;
            }
        }
        let verified = self.records.len() - self.load_ops;
        writeln!(
            f,
            "operations checked: {} ({} under load, {:.0}/s; {} verification reads)",
            self.records.len(),
            self.load_ops,
            self.load_ops as f64 / self.load_time.as_secs_f64().max(0.001),
            verified
        )?;
        for (op, (count, failed, latencies)) in &mut per_op {
            latencies.sort();
            writeln!(
                f,
                "  {op:6} {count:7}  failed {failed:6}  p50 {}  p99 {}  max {}",
                ms(percentile(latencies, 0.5)),
                ms(percentile(latencies, 0.99)),
                ms(latencies.last().copied().unwrap_or_default())
            )?;
        }
        let shown: Vec<String> = outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(f, "  outcomes: {}", shown.join(", "))?;
        let shown: Vec<String> = errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            f,
            "  errors by kind: {}",
            if shown.is_empty() {
                "none".to_owned()
            } else {
                shown.join(", ")
            }
        )?;
        // The failed calls themselves (their messages name the node and
        // why), the first few: what to look at first.
        const FAILED_SHOWN: usize = 8;
        let failed: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.outcome.is_failure())
            .collect();
        for record in failed.iter().take(FAILED_SHOWN) {
            writeln!(f, "    {record}")?;
        }
        if failed.len() > FAILED_SHOWN {
            writeln!(f, "    ... and {} more", failed.len() - FAILED_SHOWN)?;
        }

        // Faults.
        let mut families: BTreeMap<&str, usize> = BTreeMap::new();
        for fault in &self.faults {
            *families.entry(fault.kind.family()).or_default() += 1;
        }
        let shown: Vec<String> = families.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let max_faulty = max_concurrent(&self.faults);
        writeln!(
            f,
            "faults injected: {} ({}); at most {} of {} nodes faulty at once",
            self.faults.len(),
            if shown.is_empty() {
                "none".to_owned()
            } else {
                shown.join(", ")
            },
            max_faulty,
            c.nodes
        )?;
        if c.clients > 1 {
            let mut one_sided: BTreeMap<&str, usize> = BTreeMap::new();
            for fault in self.faults.iter().filter(|f| f.one_sided()) {
                *one_sided.entry(fault.kind.family()).or_default() += 1;
            }
            let shown: Vec<String> = one_sided.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(
                f,
                "  one-sided (some clients only): {}{}",
                self.one_sided(),
                if shown.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", shown.join(", "))
                }
            )?;
        }
        if !self.harness_errors.is_empty() {
            writeln!(f, "  harness errors: {}", self.harness_errors.len())?;
            for error in self.harness_errors.iter().take(5) {
                writeln!(f, "    {error}")?;
            }
        }

        // What the client saw and did.
        let downs = self
            .health
            .iter()
            .filter(|h| h.transition.to == NodeState::Down)
            .count();
        let anchor_changes = self.health.iter().filter(|h| h.node == self.anchor).count();
        writeln!(
            f,
            "health: {} transitions{}, {} to Down; anchor changes {}; all Up {} after the heal",
            self.health.len(),
            if c.clients > 1 {
                format!(" (seen by {} clients)", c.clients)
            } else {
                String::new()
            },
            downs,
            anchor_changes,
            ms(self.all_up_after)
        )?;
        let [repairs, divergences, failovers, partial, invalidated, flushes, marks, stale] =
            self.summed();
        writeln!(
            f,
            "{}: repairs {repairs}, divergences {divergences}, miss failovers {failovers}, partial writes {partial}, invalidated {invalidated}, flushes {flushes}, stale markers {marks}, stale copies lost {stale}",
            if c.clients > 1 {
                format!("clients (summed over {})", self.stats.len())
            } else {
                "client".to_owned()
            }
        )?;
        if c.clients > 1 {
            let shown: Vec<String> = self
                .stats
                .iter()
                .map(|s| format!("{}/{}", s.repairs, s.divergences))
                .collect();
            writeln!(f, "  repairs/divergences by client: {}", shown.join(", "))?;
        }
        writeln!(
            f,
            "convergence: {} keys compared on every node, {} left out (a copy about to expire)",
            self.findings.keys_compared, self.findings.keys_expiring
        )?;

        // Findings.
        let mut kinds: BTreeMap<Kind, usize> = BTreeMap::new();
        for violation in &self.findings.violations {
            *kinds.entry(violation.kind).or_default() += 1;
        }
        for (kind, count) in &kinds {
            writeln!(f, "  {count:6}  {}", kind.name())?;
        }
        if !self.findings.drift.is_empty() {
            writeln!(
                f,
                "TTL drift (not counted): {} reads saw a lifetime extended by a write a fault held up (relative TTLs start when a node applies them)",
                self.findings.drift.len()
            )?;
        }
        if self.findings.stale_deletes > 0 {
            writeln!(
                f,
                "stale copies deleted (not counted): {} deletes of a deleted session found a copy an earlier delete missed, and removed it",
                self.findings.stale_deletes
            )?;
        }
        if !self.findings.excused.is_empty() {
            writeln!(
                f,
                "excused (the anchor was seen Down, so a write may have skipped it): {}",
                self.findings.excused.len()
            )?;
        }
        for violation in self.findings.violations.iter().take(c.show_violations) {
            write!(f, "{}", violation.display(c.seed))?;
        }
        if self.violations() > c.show_violations {
            writeln!(
                f,
                "... and {} more violations",
                self.violations() - c.show_violations
            )?;
        }
        for excused in self.findings.excused.iter().take(3) {
            write!(f, "(excused) {}", excused.display(c.seed))?;
        }
        for drift in self.findings.drift.iter().take(2) {
            write!(f, "(not counted) {}", drift.display(c.seed))?;
        }
        writeln!(f, "violations: {}", self.violations())
    }
}

/// The most faults open at the same moment.
fn max_concurrent(faults: &[FaultRecord]) -> usize {
    let mut events: Vec<(Duration, i32)> = Vec::new();
    for fault in faults {
        if fault.error.is_some() {
            continue;
        }
        let end = fault.end.unwrap_or(Duration::MAX);
        if end > fault.start {
            events.push((fault.start, 1));
            events.push((end, -1));
        }
    }
    events.sort();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, change) in events {
        open += change;
        most = most.max(open);
    }
    most as usize
}
