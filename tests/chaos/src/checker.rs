//! The history checker.
//!
//! Each task owns its keys and calls one at a time, so the history of an
//! owned key is sequential and the checker can be exact. It keeps, per key,
//! the set of states a read may legitimately see:
//! - an acknowledged `set` (or `add` that stored) leaves exactly its value;
//!   an acknowledged `delete` leaves exactly "absent";
//! - a failed write may or may not have applied (on some nodes): its value
//!   (or "absent" for a delete) joins the states allowed, next to the ones
//!   before it, until the next acknowledged write;
//! - a value with a lifetime may be gone from `start + ttl - slack` on and is
//!   surely gone after `end + ttl + slack` (memcached's clock has whole
//!   seconds, and read repair copies the remaining lifetime truncated);
//!   `touch` moves that window.
//!
//! A read (or the observation a delete, touch or add makes) outside those
//! states is a violation: a miss where only values are allowed is a lost
//! acknowledged write (promise 1); a deleted key's value is a resurrection
//! (promise 2); an older value is a stale read. Shared keys, written by
//! every task at once, are checked loosely with one client: a read returns
//! nothing or a value some `set` of that key wrote, with its flags.
//!
//! With several clients the shared keys are sessions every client creates,
//! reads, updates, touches and deletes, and they are checked on the one
//! clock all clients share, by real time: a call may observe what a write
//! left (a value, or "absent" for a delete) when the write started before
//! the call ended and no acknowledged write started after the write ended
//! and ended before the call started (failed writes may have applied, and
//! concurrent writes may land in any order). A value outside that is a
//! resurrection when what superseded it last was an acknowledged delete,
//! else a stale read (a lost update); a miss where only values are allowed
//! is a lost write.
//!
//! Reads are not taken to narrow the states: after a failed write, replicas
//! may hold either copy, and reads may alternate between them until the
//! next acknowledged write.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use memha_client::NodeState;

use crate::converge::{Copy, KeyCopies};
use crate::history::{FaultRecord, HealthRecord, Life, Op, Outcome, Record, ShowValue};

/// Expiry uncertainty, in seconds: memcached's clock ticks in whole
/// seconds and read repair copies the remaining lifetime, truncated.
pub const EXPIRY_SLACK: f64 = 2.0;
/// Copies whose remaining lifetimes differ by at most this many seconds agree.
pub const TTL_AGREEMENT: i64 = 2;
/// Copies this close to expiry are left out of the convergence check: they
/// may expire on one node between two looks.
pub const EXPIRING_SOON: i64 = 3;
/// The error kinds a call may fail with under faults. Any other one
/// (a protocol error, an invalid key, ...) is a violation.
pub const EXPECTED_ERRORS: &[&str] = &[
    "Timeout",
    "Connect",
    "Connection",
    "NoNodes",
    "NodeDown",
    "PartialWrite",
];

/// What kind of promise a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A read missed an acknowledged write (promise 1).
    LostWrite,
    /// A delete, touch or add behaved as if an acknowledged value were absent.
    MissedLiveValue,
    /// A read returned a deleted key's value (promise 2).
    Resurrection,
    /// A read returned a value older than the last acknowledged write.
    StaleRead,
    /// A read returned a value never written to the key.
    ForeignValue,
    /// A read returned a value after it surely expired.
    ExpiredValue,
    /// A delete, touch or add found a value where none may exist.
    PhantomValue,
    /// A read returned the right value with other flags.
    WrongFlags,
    /// A read returned the right value with a lifetime it cannot have.
    WrongTtl,
    /// A value outlived its lifetime, within what a write held up by a
    /// fault and applied late explains (a relative lifetime starts when a
    /// node applies it): shown, not counted.
    TtlDrift,
    /// After the faults healed and the key was read, nodes disagree (promise 3).
    NotConverged,
    /// A node did not come back Up after the faults healed.
    NotHealed,
    /// A call took longer than its budget (promise 5).
    OverBudget,
    /// A call failed with an error that faults do not explain (promise 5).
    UnexpectedError,
    /// A task panicked (promise 5).
    Panic,
}

impl Kind {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::LostWrite => "lost acknowledged write (false miss)",
            Kind::MissedLiveValue => "delete/touch/add missed a live value",
            Kind::Resurrection => "deleted key read back",
            Kind::StaleRead => "stale read",
            Kind::ForeignValue => "value never written",
            Kind::ExpiredValue => "expired value read back",
            Kind::PhantomValue => "delete/touch/add found a value that cannot exist",
            Kind::WrongFlags => "wrong flags",
            Kind::WrongTtl => "wrong TTL",
            Kind::TtlDrift => "TTL extended by a late write",
            Kind::NotConverged => "replicas not converged",
            Kind::NotHealed => "node not healed",
            Kind::OverBudget => "over the timeout budget",
            Kind::UnexpectedError => "unexpected error",
            Kind::Panic => "panic",
        }
    }

    /// Whether the anchor being seen Down can explain it (writes then skip
    /// the anchor, so other nodes restarting may lose them legitimately).
    fn excusable(self) -> bool {
        matches!(self, Kind::LostWrite | Kind::MissedLiveValue)
    }
}

/// One broken promise, with the shortest history that shows it.
#[derive(Debug, Clone)]
pub struct Violation {
    /// What broke.
    pub kind: Kind,
    /// The key, if one.
    pub key: Option<String>,
    /// What was seen against what was allowed.
    pub detail: String,
    /// The operations on the key from the last acknowledged write before
    /// the violation, with the faults and health changes of that window.
    pub history: Vec<String>,
}

impl Violation {
    /// Prints the violation with the run's seed.
    pub fn display(&self, seed: u64) -> impl fmt::Display + '_ {
        ShowViolation {
            violation: self,
            seed,
        }
    }
}

struct ShowViolation<'a> {
    violation: &'a Violation,
    seed: u64,
}

impl fmt::Display for ShowViolation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.violation;
        write!(f, "VIOLATION [{}] seed {}", v.kind.name(), self.seed)?;
        if let Some(key) = &v.key {
            write!(f, " key {key}")?;
        }
        writeln!(f, ": {}", v.detail)?;
        for line in &v.history {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// What the checker needs besides the history.
#[derive(Debug, Clone)]
pub struct CheckInput<'a> {
    /// Every call, load and verification.
    pub records: &'a [Record],
    /// Every fault.
    pub faults: &'a [FaultRecord],
    /// Every health change the client saw.
    pub health: &'a [HealthRecord],
    /// What each node held after every key was read once.
    pub copies_after_one_read: &'a [KeyCopies],
    /// What each node held after every key was read from every node.
    pub copies_after_full_read: &'a [KeyCopies],
    /// How late a write held up by a fault may reach a node (the longest
    /// fault plus a timeout): a relative lifetime may end that much later.
    pub late_apply: Duration,
    /// The node never faulted.
    pub anchor: usize,
    /// The client's per-node timeout.
    pub node_timeout: Duration,
    /// What a call may take beyond its timeouts (scheduling).
    pub budget_slack: Duration,
    /// The shared keys (checked loosely, unless `sessions`).
    pub shared: &'a [String],
    /// The shared keys are sessions used by several clients, checked by
    /// real time ([`check`]).
    pub sessions: bool,
}

/// The checker's findings.
#[derive(Debug, Default)]
pub struct Findings {
    /// Broken promises.
    pub violations: Vec<Violation>,
    /// Misses the anchor being seen Down explains (not violations).
    pub excused: Vec<Violation>,
    /// Lifetimes extended by late writes, within the bound (not violations).
    pub drift: Vec<Violation>,
    /// Deletes of a session key that found a copy where only absence was
    /// allowed (a copy an earlier delete missed on a node some client could
    /// not reach), and removed it: not violations.
    pub stale_deletes: usize,
    /// Keys whose copies were compared after the verification reads.
    pub keys_compared: usize,
    /// Of those, keys left out because a copy was about to expire.
    pub keys_expiring: usize,
}

#[derive(Debug, Clone)]
struct Val {
    value: Bytes,
    flags: u32,
    /// It may have no expiry.
    never: bool,
    /// It may expire: from when it may be gone, to when it should be gone
    /// (the lifetime with the clock's slack), to when it surely is (that,
    /// plus how late a write held up by a fault may be applied: a relative
    /// lifetime starts when a node applies the write).
    expiring: Option<Expiry>,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// When a value may be gone, should be gone, and surely is gone (seconds
/// since the start).
#[derive(Debug, Clone, Copy)]
struct Expiry {
    lo: f64,
    due: f64,
    hi: f64,
}

impl Expiry {
    fn union(self, other: Expiry) -> Expiry {
        Expiry {
            lo: self.lo.min(other.lo),
            due: self.due.max(other.due),
            hi: self.hi.max(other.hi),
        }
    }
}

/// When a value stored (or touched) by `record` with `life` may be gone,
/// should be, and surely is, given writes applied up to `late` seconds late.
fn window(record: &Record, life: Life, late: f64) -> Option<Expiry> {
    match life {
        Life::Never => None,
        Life::Secs(ttl) => {
            let due = secs(record.end) + f64::from(ttl) + EXPIRY_SLACK;
            Some(Expiry {
                lo: secs(record.start) + f64::from(ttl) - EXPIRY_SLACK,
                due,
                hi: due + late,
            })
        }
    }
}

impl Val {
    fn new(value: &Bytes, flags: u32, life: Life, record: &Record, late: f64) -> Val {
        Val {
            value: value.clone(),
            flags,
            never: life == Life::Never,
            expiring: window(record, life, late),
        }
    }

    /// Whether it may still be there at some moment from `at` on.
    fn may_live_at(&self, at: Duration) -> bool {
        self.never || self.expiring.is_some_and(|e| secs(at) < e.hi)
    }

    /// Whether it should still be there at some moment from `at` on, if
    /// no write were applied late.
    fn due_at(&self, at: Duration) -> bool {
        self.never || self.expiring.is_some_and(|e| secs(at) < e.due)
    }

    /// Whether it may be gone (expired) by `at`.
    fn may_be_gone_by(&self, at: Duration) -> bool {
        self.expiring.is_some_and(|e| e.lo <= secs(at))
    }

    fn describe(&self) -> String {
        let mut shown = format!("{} f{}", ShowValue(&self.value), self.flags);
        if self.never {
            shown.push_str(" no expiry");
        }
        if let Some(e) = self.expiring {
            if self.never {
                shown.push_str(" or");
            }
            shown.push_str(&format!(
                " expiring {:.1}..{:.1} (late writes: {:.1})",
                e.lo, e.due, e.hi
            ));
        }
        shown
    }
}

#[derive(Debug, Clone)]
enum State {
    Absent,
    Value(Val),
}

/// The states allowed for one owned key.
#[derive(Debug, Clone)]
struct Model {
    states: Vec<State>,
}

impl Model {
    fn new() -> Model {
        Model {
            states: vec![State::Absent],
        }
    }

    fn may_be_absent(&self, record: &Record) -> bool {
        self.states.iter().any(|s| match s {
            State::Absent => true,
            State::Value(v) => v.may_be_gone_by(record.end),
        })
    }

    fn may_be_present(&self, record: &Record) -> bool {
        self.states
            .iter()
            .any(|s| matches!(s, State::Value(v) if v.may_live_at(record.start)))
    }

    fn value(&self, value: &[u8]) -> Option<&Val> {
        self.states.iter().find_map(|s| match s {
            State::Value(v) if v.value == value => Some(v),
            _ => None,
        })
    }

    fn describe(&self) -> String {
        let states: Vec<String> = self
            .states
            .iter()
            .map(|s| match s {
                State::Absent => "absent".to_owned(),
                State::Value(v) => v.describe(),
            })
            .collect();
        format!("allowed: {}", states.join(" | "))
    }

    /// A touch with `life`: it applied (`widen` false) or may have (`widen` true).
    fn retime(&mut self, record: &Record, life: Life, widen: bool, late: f64) {
        let expiring = window(record, life, late);
        for state in &mut self.states {
            if let State::Value(v) = state {
                if !v.may_live_at(record.start) {
                    continue;
                }
                if widen {
                    v.never |= life == Life::Never;
                    v.expiring = match (v.expiring, expiring) {
                        (Some(a), Some(b)) => Some(a.union(b)),
                        (a, b) => a.or(b),
                    };
                } else {
                    v.never = life == Life::Never;
                    v.expiring = expiring;
                }
            }
        }
    }
}

/// Checks a whole run.
pub fn check(input: &CheckInput<'_>) -> Findings {
    let mut findings = Findings::default();
    let mut by_key: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in input.records {
        by_key.entry(record.key.as_str()).or_default().push(record);
        check_call(input, record, &mut findings);
    }
    for records in by_key.values_mut() {
        records.sort_by_key(|r| (r.start, r.end));
    }
    let checker = Checker { input };
    for (key, records) in &by_key {
        if input.shared.iter().any(|k| k == key) {
            if input.sessions {
                checker.session_key(key, records, &mut findings);
            } else {
                checker.shared_key(key, records, &mut findings);
            }
        } else {
            checker.owned_key(key, records, &mut findings);
        }
    }
    for copies in input.copies_after_one_read {
        checker.converged(
            copies,
            by_key.get(copies.key.as_str()),
            false,
            &mut findings,
        );
    }
    for copies in input.copies_after_full_read {
        checker.converged(copies, by_key.get(copies.key.as_str()), true, &mut findings);
    }
    findings
}

/// How many per-node timeouts a call may spend, one after the other, by
/// the replication layer's code paths:
/// - `get`: its subset of nodes, then the others on a miss, then the repairs: 3;
/// - `set`, `delete`: every node at once, then, on a node that refused with
///   a server error, a clean-up delete: 2;
/// - `touch`: every node at once (and clean-ups), then the repairs: 3;
/// - `add` (decided by the key's primary): the primary read, the other
///   nodes read and the primary repaired when it missed, the add itself,
///   the primary read again for its copy, the copy written to the others
///   (and clean-ups): 7, plus one for waiting for an earlier coordinated
///   call of the same client on the same key: 8. (That wait may last two
///   timeouts, and the README's bounds count rounds more that rarely take
///   a timeout each: these budgets are the paths a run meets, not those
///   bounds.)
pub fn timeouts(op: &Op) -> u32 {
    match op {
        Op::Get | Op::Touch { .. } => READ_TIMEOUTS,
        Op::Set { .. } | Op::Delete => WRITE_TIMEOUTS,
        Op::Add { .. } => COORDINATED_TIMEOUTS,
    }
}

/// The [`timeouts`] of `get` and `touch`.
pub const READ_TIMEOUTS: u32 = 3;
/// The [`timeouts`] of `set` and `delete`.
pub const WRITE_TIMEOUTS: u32 = 2;
/// The [`timeouts`] of `add`.
pub const COORDINATED_TIMEOUTS: u32 = 8;

/// The longest `op` may take: [`timeouts`] per-node timeouts plus the slack.
pub fn budget(op: &Op, node_timeout: Duration, slack: Duration) -> Duration {
    node_timeout * timeouts(op) + slack
}

/// The budget and error kind of every call.
fn check_call(input: &CheckInput<'_>, record: &Record, findings: &mut Findings) {
    let budget = budget(&record.op, input.node_timeout, input.budget_slack);
    if record.latency() > budget {
        findings.violations.push(Violation {
            kind: Kind::OverBudget,
            key: Some(record.key.clone()),
            detail: format!(
                "{} took {:?}, budget {:?} ({} x the per-node timeout + slack)",
                record.op.name(),
                record.latency(),
                budget,
                timeouts(&record.op)
            ),
            history: vec![record.to_string()],
        });
    }
    if let Outcome::Failed(failure) = &record.outcome {
        if !EXPECTED_ERRORS.contains(&failure.kind.as_str()) {
            findings.violations.push(Violation {
                kind: Kind::UnexpectedError,
                key: Some(record.key.clone()),
                detail: format!("{} failed with {}", record.op.name(), failure.kind),
                history: vec![record.to_string()],
            });
        }
    }
}

struct Checker<'a> {
    input: &'a CheckInput<'a>,
}

impl Checker<'_> {
    fn late(&self) -> f64 {
        self.input.late_apply.as_secs_f64()
    }

    fn owned_key(&self, key: &str, records: &[&Record], findings: &mut Findings) {
        let mut model = Model::new();
        // Index of the last acknowledged write: where histories start.
        let mut anchor_op = 0usize;
        for (i, record) in records.iter().enumerate() {
            let mut found: Vec<(Kind, String, Option<usize>)> = Vec::new();
            let mut report = |kind: Kind, detail: String, from: Option<usize>| {
                found.push((kind, detail, from));
            };
            match (&record.op, &record.outcome) {
                (_, Outcome::Failed(_)) => {}
                (Op::Get, Outcome::Miss) => {
                    if !model.may_be_absent(record) {
                        report(
                            Kind::LostWrite,
                            format!("read missed; {}", model.describe()),
                            None,
                        );
                    }
                }
                (
                    Op::Get,
                    Outcome::Item {
                        value,
                        flags,
                        expires_in,
                    },
                ) => self.read_hit(&model, records, i, value, *flags, *expires_in, &mut report),
                (Op::Set { .. }, Outcome::Stored) => {}
                (Op::Add { .. }, Outcome::Stored) => {
                    if !model.may_be_absent(record) {
                        report(
                            Kind::MissedLiveValue,
                            format!("add stored over a live value; {}", model.describe()),
                            None,
                        );
                    }
                }
                (Op::Add { .. }, Outcome::NotStored) => {
                    if !model.may_be_present(record) {
                        report(
                            Kind::PhantomValue,
                            format!("add found the key taken; {}", model.describe()),
                            None,
                        );
                    }
                }
                (Op::Delete, Outcome::Deleted) => {
                    // A delete reports Deleted when a node holds the key's
                    // tombstone (a recent delete marks the item stale for a
                    // few seconds), or a copy some earlier delete missed,
                    // which it removes: no broken promise, only counted.
                    if !model.may_be_present(record) {
                        findings.stale_deletes += 1;
                    }
                }
                (Op::Touch { .. }, Outcome::Touched) => {
                    if !model.may_be_present(record) {
                        report(
                            Kind::PhantomValue,
                            format!("{} found a value; {}", record.op.name(), model.describe()),
                            None,
                        );
                    }
                }
                (Op::Delete | Op::Touch { .. }, Outcome::NotFound) => {
                    if !model.may_be_absent(record) {
                        report(
                            Kind::MissedLiveValue,
                            format!("{} found nothing; {}", record.op.name(), model.describe()),
                            None,
                        );
                    }
                }
                (op, outcome) => report(
                    Kind::UnexpectedError,
                    format!("{} answered {outcome:?}", op.name()),
                    None,
                ),
            }
            for (kind, detail, from) in found {
                // From the last acknowledged write on; with the older write
                // a stale value came from, when it is before that.
                let mut window: Vec<&Record> = Vec::new();
                if let Some(from) = from.filter(|&f| f < anchor_op) {
                    window.push(records[from]);
                }
                window.extend_from_slice(&records[anchor_op..=i]);
                self.push(findings, kind, key, detail, &window);
            }
            // The effect on the allowed states.
            let failed = record.outcome.is_failure();
            match (&record.op, &record.outcome) {
                (Op::Set { value, flags, life }, _) | (Op::Add { value, flags, life }, _)
                    if failed || record.outcome == Outcome::Stored =>
                {
                    let val = State::Value(Val::new(value, *flags, *life, record, self.late()));
                    if failed {
                        model.states.push(val);
                    } else {
                        model.states = vec![val];
                        anchor_op = i;
                    }
                }
                (Op::Delete, Outcome::Failed(_)) => model.states.push(State::Absent),
                (Op::Delete, _) => {
                    model.states = vec![State::Absent];
                    anchor_op = i;
                }
                (Op::Touch { life }, Outcome::Touched | Outcome::Failed(_)) => {
                    model.retime(record, *life, failed, self.late())
                }
                _ => {}
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn read_hit(
        &self,
        model: &Model,
        records: &[&Record],
        i: usize,
        value: &Bytes,
        flags: u32,
        expires_in: Option<Duration>,
        report: &mut impl FnMut(Kind, String, Option<usize>),
    ) {
        let record = records[i];
        let Some(val) = model.value(value) else {
            // Which write did it come from?
            let written = records[..i].iter().rposition(|r| {
                matches!(&r.op, Op::Set { value: v, .. } | Op::Add { value: v, .. } if v == value)
            });
            let only_absent = model.states.iter().all(|s| matches!(s, State::Absent));
            let kind = match written {
                None => Kind::ForeignValue,
                Some(_) if only_absent => Kind::Resurrection,
                Some(_) => Kind::StaleRead,
            };
            report(
                kind,
                format!("read {}; {}", ShowValue(value), model.describe()),
                written,
            );
            return;
        };
        if !val.may_live_at(record.start) {
            report(
                Kind::ExpiredValue,
                format!(
                    "read {} after it expired; {}",
                    ShowValue(value),
                    model.describe()
                ),
                None,
            );
        } else if !val.due_at(record.start) {
            report(
                Kind::TtlDrift,
                format!(
                    "read {} after it was due to expire; {}",
                    ShowValue(value),
                    model.describe()
                ),
                None,
            );
        }
        if val.flags != flags {
            report(
                Kind::WrongFlags,
                format!("read flags {flags}, written {}", val.flags),
                None,
            );
        }
        match (expires_in, val.expiring) {
            (None, _) if val.never => {}
            (None, _) => report(
                Kind::WrongTtl,
                format!("read without expiry; {}", model.describe()),
                None,
            ),
            (Some(left), None) => report(
                Kind::WrongTtl,
                format!("read with {}s left; {}", left.as_secs(), model.describe()),
                None,
            ),
            (Some(left), Some(expiry)) => {
                // The item says it expires in [start + left, end + left + 1].
                let (earliest, latest) = (
                    secs(record.start) + left.as_secs_f64(),
                    secs(record.end) + left.as_secs_f64() + 1.0,
                );
                let kind = if latest < expiry.lo - 1.0 || earliest > expiry.hi + 1.0 {
                    Some(Kind::WrongTtl)
                } else if earliest > expiry.due + 1.0 {
                    Some(Kind::TtlDrift)
                } else {
                    None
                };
                if let Some(kind) = kind {
                    report(
                        kind,
                        format!(
                            "read with {}s left, so expiring {earliest:.1}..{latest:.1}; {}",
                            left.as_secs(),
                            model.describe()
                        ),
                        None,
                    );
                }
            }
        }
    }

    fn shared_key(&self, key: &str, records: &[&Record], findings: &mut Findings) {
        for (i, record) in records.iter().enumerate() {
            let Outcome::Item { value, flags, .. } = &record.outcome else {
                continue;
            };
            let writer = records.iter().position(|w| {
                w.start <= record.end
                    && matches!(&w.op, Op::Set { value: v, flags: f, .. } | Op::Add { value: v, flags: f, .. } if v == value && f == flags)
            });
            if writer.is_none() {
                self.push(
                    findings,
                    Kind::ForeignValue,
                    key,
                    format!(
                        "shared key read {} f{flags}, which no set wrote",
                        ShowValue(value)
                    ),
                    &records[i..=i],
                );
            }
        }
    }

    /// Checks a session key shared by several clients, by real time (see
    /// the module's documentation).
    fn session_key(&self, key: &str, records: &[&Record], findings: &mut Findings) {
        let writes = session_writes(records);
        let by_value: BTreeMap<&[u8], usize> = writes
            .iter()
            .enumerate()
            .filter_map(|(w, write)| write.value.map(|(value, ..)| (value.as_ref(), w)))
            .collect();
        let touches: Vec<&Record> = records
            .iter()
            .copied()
            .filter(|r| {
                matches!(
                    r.op,
                    Op::Touch {
                        life: Life::Secs(_)
                    }
                )
            })
            .collect();
        for (i, record) in records.iter().enumerate() {
            if record.outcome.is_failure() {
                continue;
            }
            let candidates: Vec<&SessionWrite<'_>> = writes
                .iter()
                .filter(|w| w.index != Some(i) && w.may_be_seen_by(record))
                .collect();
            let may_be_absent = || {
                candidates.iter().any(|w| match w.value {
                    None => true,
                    Some((_, _, life)) => may_expire(w.start, life, record),
                }) || touches.iter().any(|t| match t.op {
                    Op::Touch { life } => t.start < record.end && may_expire(t.start, life, record),
                    _ => false,
                })
            };
            let may_be_present = || candidates.iter().any(|w| w.value.is_some());
            let mut found: Option<(Kind, String, Option<usize>)> = None;
            match (&record.op, &record.outcome) {
                (Op::Get, Outcome::Miss) => {
                    if !may_be_absent() {
                        found = Some((
                            Kind::LostWrite,
                            format!("read missed; {}", show_allowed(&candidates)),
                            None,
                        ));
                    }
                }
                (Op::Delete | Op::Touch { .. }, Outcome::NotFound)
                | (Op::Add { .. }, Outcome::Stored) => {
                    if !may_be_absent() {
                        found = Some((
                            Kind::MissedLiveValue,
                            format!(
                                "{} {}; {}",
                                record.op.name(),
                                if record.outcome == Outcome::Stored {
                                    "stored over a live value"
                                } else {
                                    "found nothing"
                                },
                                show_allowed(&candidates)
                            ),
                            None,
                        ));
                    }
                }
                (Op::Delete, Outcome::Deleted) => {
                    // A tombstone of a recent delete, or a copy a delete
                    // missed on a node some client could not reach: this
                    // delete removes it, so it is no broken promise, only
                    // shown.
                    if !may_be_present() {
                        findings.stale_deletes += 1;
                    }
                }
                (Op::Touch { .. }, Outcome::Touched) | (Op::Add { .. }, Outcome::NotStored) => {
                    if !may_be_present() {
                        found = Some((
                            Kind::PhantomValue,
                            format!(
                                "{} found a value; {}",
                                record.op.name(),
                                show_allowed(&candidates)
                            ),
                            None,
                        ));
                    }
                }
                (Op::Get, Outcome::Item { value, flags, .. }) => {
                    match by_value.get(value.as_ref()).map(|&w| &writes[w]) {
                        None => {
                            found = Some((
                                Kind::ForeignValue,
                                format!("read {}, which no write stored", ShowValue(value)),
                                None,
                            ))
                        }
                        Some(write) if write.start >= record.end => {
                            found = Some((
                                Kind::ForeignValue,
                                format!(
                                    "read {}, written only after the read ended",
                                    ShowValue(value)
                                ),
                                write.index,
                            ))
                        }
                        Some(write) if !write.may_be_seen_by(record) => {
                            let kind = if candidates.iter().all(|w| w.value.is_none()) {
                                Kind::Resurrection
                            } else {
                                Kind::StaleRead
                            };
                            found = Some((
                                kind,
                                format!(
                                    "read {}, overwritten by an acknowledged {} that ended at {:.3} s, before the read started; {}",
                                    ShowValue(value),
                                    write.superseded_by.map_or("write", |r| records[r].op.name()),
                                    write.superseded_at.as_secs_f64(),
                                    show_allowed(&candidates)
                                ),
                                write.index,
                            ));
                        }
                        Some(write) => {
                            if write.value.is_some_and(|(_, f, _)| f != *flags) {
                                found = Some((
                                    Kind::WrongFlags,
                                    format!("read flags {flags}, {}", write.describe()),
                                    None,
                                ));
                            }
                        }
                    }
                }
                (Op::Set { .. }, Outcome::Stored) => {}
                (op, outcome) => {
                    found = Some((
                        Kind::UnexpectedError,
                        format!("{} answered {outcome:?}", op.name()),
                        None,
                    ))
                }
            }
            if let Some((kind, detail, from)) = found {
                // The write read (if one), the writes allowed, and the
                // calls just before.
                let mut shown: Vec<usize> = candidates.iter().filter_map(|w| w.index).collect();
                shown.extend(from);
                shown.extend(i.saturating_sub(SESSION_CONTEXT)..=i);
                shown.sort_unstable();
                shown.dedup();
                let window: Vec<&Record> = shown.into_iter().map(|r| records[r]).collect();
                self.push(findings, kind, key, detail, &window);
            }
        }
    }

    /// Compares what the nodes hold for one key, after it was read once
    /// through the workload's client (`full` false) and again from every
    /// node (`full`): every node must hold the same copy (promise 3), or
    /// none may.
    fn converged(
        &self,
        copies: &KeyCopies,
        records: Option<&Vec<&Record>>,
        full: bool,
        findings: &mut Findings,
    ) {
        let expiring = copies
            .copies
            .iter()
            .flatten()
            .flatten()
            .any(|c| c.ttl >= 0 && c.ttl <= EXPIRING_SOON);
        if expiring {
            if full {
                findings.keys_expiring += 1;
            }
            return;
        }
        if full {
            findings.keys_compared += 1;
        }
        let readable: Vec<Option<&Copy>> = copies
            .copies
            .iter()
            .filter_map(|copy| copy.as_ref().ok().map(Option::as_ref))
            .collect();
        let held: Vec<&Copy> = readable.iter().flatten().copied().collect();
        let unreadable = readable.len() < copies.copies.len();
        let disagree = held
            .windows(2)
            .any(|pair| !agree(Some(pair[0]), Some(pair[1])));
        let missing = !held.is_empty() && held.len() < readable.len();
        let (kind, detail) = if unreadable || disagree {
            (
                Kind::NotConverged,
                if full {
                    "after the faults healed and every node was read, the nodes disagree"
                } else {
                    "after the faults healed and the key was read once, the nodes holding it disagree"
                },
            )
        } else if missing {
            (
                Kind::NotConverged,
                if full {
                    "after the faults healed and every node was read, a node lacks the key"
                } else {
                    "after the faults healed and the key was read once, a node lacks the key"
                },
            )
        } else {
            return;
        };
        let mut history: Vec<String> = copies
            .copies
            .iter()
            .enumerate()
            .map(|(node, copy)| format!("node {node} holds {}", show_copy(copy)))
            .collect();
        if let Some(records) = records {
            let tail = records.len().saturating_sub(8);
            history.extend(records[tail..].iter().map(|r| r.to_string()));
        }
        let violation = Violation {
            kind,
            key: Some(copies.key.clone()),
            detail: detail.to_owned(),
            history,
        };
        findings.violations.push(violation);
    }

    fn push(
        &self,
        findings: &mut Findings,
        kind: Kind,
        key: &str,
        detail: String,
        window: &[&Record],
    ) {
        let (from, to) = (
            window.first().map_or(Duration::ZERO, |r| r.start),
            window.last().map_or(Duration::ZERO, |r| r.end),
        );
        let mut lines: Vec<(Duration, String)> =
            window.iter().map(|r| (r.start, r.to_string())).collect();
        lines.extend(
            self.input
                .faults
                .iter()
                .filter(|f| f.start <= to && f.end.map_or(true, |end| end >= from))
                .map(|f| (f.start, f.to_string())),
        );
        lines.extend(
            self.input
                .health
                .iter()
                .filter(|h| h.at >= from && h.at <= to)
                .map(|h| (h.at, h.to_string())),
        );
        lines.sort_by_key(|(at, _)| *at);
        // The clients that made the calls (all of them with one client).
        let mut clients: Vec<Option<usize>> = window.iter().map(|r| r.client).collect();
        clients.sort_unstable();
        clients.dedup();
        let anchor_down = self.anchor_left_up(&clients, from, to);
        let violation = Violation {
            kind,
            key: Some(key.to_owned()),
            detail,
            history: lines.into_iter().map(|(_, line)| line).collect(),
        };
        if kind == Kind::TtlDrift {
            findings.drift.push(violation);
        } else if kind.excusable() && anchor_down {
            findings.excused.push(violation);
        } else {
            findings.violations.push(violation);
        }
    }

    /// Whether one of `clients` saw the anchor other than Up at any time
    /// in `from..=to`.
    fn anchor_left_up(&self, clients: &[Option<usize>], from: Duration, to: Duration) -> bool {
        clients.iter().any(|&client| {
            let anchor: Vec<&HealthRecord> = self
                .input
                .health
                .iter()
                .filter(|h| h.node == self.input.anchor && h.client == client)
                .collect();
            // The state at `from` is the last transition before it (Up at the start).
            let before = anchor
                .iter()
                .rev()
                .find(|h| h.at < from)
                .is_some_and(|h| h.transition.to != NodeState::Up);
            before || anchor.iter().any(|h| h.at >= from && h.at <= to)
        })
    }
}

/// The calls before a violation shown with it, for session keys.
const SESSION_CONTEXT: usize = 10;

/// What a write to a session key may leave: a value, or nothing (a delete).
#[derive(Debug, Clone)]
struct SessionWrite<'r> {
    /// Its index in the key's records; `None` for the initial absence.
    index: Option<usize>,
    start: Duration,
    end: Duration,
    value: Option<(&'r Bytes, u32, Life)>,
    /// The earliest end of an acknowledged write that started after this
    /// one ended: from then on, no call may observe this one.
    superseded_at: Duration,
    /// That write's index.
    superseded_by: Option<usize>,
    acknowledged: bool,
}

impl SessionWrite<'_> {
    /// Whether `call` may observe what it left: it started before the call
    /// ended, and no acknowledged write started after it and ended before
    /// the call started.
    fn may_be_seen_by(&self, call: &Record) -> bool {
        self.start < call.end && self.superseded_at >= call.start
    }

    fn describe(&self) -> String {
        let what = match self.value {
            None => "absent".to_owned(),
            Some((value, flags, life)) => format!("{} f{flags} ttl {life}", ShowValue(value)),
        };
        format!(
            "{what} ({} {:.3}..{:.3})",
            if self.index.is_none() {
                "initially"
            } else if self.acknowledged {
                "acknowledged"
            } else {
                "failed"
            },
            secs(self.start),
            secs(self.end)
        )
    }
}

/// The writes a call may observe.
fn show_allowed(candidates: &[&SessionWrite<'_>]) -> String {
    let shown: Vec<String> = candidates.iter().map(|w| w.describe()).collect();
    format!("allowed: {}", shown.join(" | "))
}

/// Every write of a session key (`records` sorted by start), with when it
/// was superseded, after the initial absence.
fn session_writes<'r>(records: &[&'r Record]) -> Vec<SessionWrite<'r>> {
    let mut writes = vec![SessionWrite {
        index: None,
        start: Duration::ZERO,
        end: Duration::ZERO,
        value: None,
        superseded_at: Duration::MAX,
        superseded_by: None,
        acknowledged: true,
    }];
    for (index, &record) in records.iter().enumerate() {
        let failed = record.outcome.is_failure();
        let (value, acknowledged) = match (&record.op, &record.outcome) {
            (Op::Set { value, flags, life } | Op::Add { value, flags, life }, outcome)
                if failed || *outcome == Outcome::Stored =>
            {
                (Some((value, *flags, *life)), !failed)
            }
            (Op::Delete, _) => (None, !failed),
            _ => continue,
        };
        writes.push(SessionWrite {
            index: Some(index),
            start: record.start,
            end: record.end,
            value,
            superseded_at: Duration::MAX,
            superseded_by: None,
            acknowledged,
        });
    }
    // The acknowledged writes by start, with the earliest end from each on.
    let mut acked: Vec<(Duration, Duration, Option<usize>)> = writes
        .iter()
        .filter(|w| w.acknowledged && w.index.is_some())
        .map(|w| (w.start, w.end, w.index))
        .collect();
    acked.sort_by_key(|&(start, ..)| start);
    let mut earliest: Vec<(Duration, Option<usize>)> = vec![(Duration::MAX, None); acked.len() + 1];
    for k in (0..acked.len()).rev() {
        earliest[k] = if acked[k].1 < earliest[k + 1].0 {
            (acked[k].1, acked[k].2)
        } else {
            earliest[k + 1]
        };
    }
    for write in &mut writes {
        let first_after = acked.partition_point(|&(start, ..)| start <= write.end);
        (write.superseded_at, write.superseded_by) = earliest[first_after];
    }
    writes
}

/// Whether a value stored (or touched) at `start` with `life` may have
/// expired by the end of `call`.
fn may_expire(start: Duration, life: Life, call: &Record) -> bool {
    match life {
        Life::Never => false,
        Life::Secs(ttl) => secs(start) + f64::from(ttl) - EXPIRY_SLACK <= secs(call.end),
    }
}

fn agree(a: Option<&Copy>, b: Option<&Copy>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.value == b.value
                && a.flags == b.flags
                && (a.ttl == b.ttl
                    || (a.ttl >= 0 && b.ttl >= 0 && (a.ttl - b.ttl).abs() <= TTL_AGREEMENT))
        }
        _ => false,
    }
}

fn show_copy(copy: &Result<Option<Copy>, String>) -> String {
    match copy {
        Err(error) => format!("? ({error})"),
        Ok(None) => "nothing".to_owned(),
        Ok(Some(copy)) => format!(
            "{} f{} ttl {}",
            ShowValue(&copy.value),
            copy.flags,
            if copy.ttl < 0 {
                "never".to_owned()
            } else {
                format!("{}s", copy.ttl)
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Failure, Phase};

    fn rec(key: &str, op: Op, at: f64, outcome: Outcome) -> Record {
        Record {
            task: 0,
            client: None,
            key: key.to_owned(),
            op,
            start: Duration::from_secs_f64(at),
            end: Duration::from_secs_f64(at + 0.01),
            outcome,
            phase: Phase::Load,
        }
    }

    fn set(v: &str, life: Life) -> Op {
        Op::Set {
            value: Bytes::from(v.to_owned()),
            flags: 1,
            life,
        }
    }

    fn hit(v: &str) -> Outcome {
        Outcome::Item {
            value: Bytes::from(v.to_owned()),
            flags: 1,
            expires_in: None,
        }
    }

    fn failed() -> Outcome {
        Outcome::Failed(Failure {
            kind: "Timeout".to_owned(),
            message: "timed out".to_owned(),
        })
    }

    fn run(records: &[Record]) -> Findings {
        run_with(records, &[], false)
    }

    /// `records` checked with no faults, `shared` keys, and the session rules or not.
    fn run_with(records: &[Record], shared: &[String], sessions: bool) -> Findings {
        check(&CheckInput {
            records,
            faults: &[],
            health: &[],
            copies_after_one_read: &[],
            copies_after_full_read: &[],
            late_apply: Duration::from_secs(1),
            anchor: 0,
            node_timeout: Duration::from_millis(250),
            budget_slack: Duration::from_millis(250),
            shared,
            sessions,
        })
    }

    fn kinds(findings: &Findings) -> Vec<Kind> {
        findings.violations.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let h = [
            rec("k", Op::Get, 0.0, Outcome::Miss),
            rec("k", set("k|1|", Life::Never), 1.0, Outcome::Stored),
            rec("k", Op::Get, 2.0, hit("k|1|")),
            rec("k", Op::Delete, 3.0, Outcome::Deleted),
            rec("k", Op::Get, 4.0, Outcome::Miss),
        ];
        assert!(run(&h).violations.is_empty());
    }

    #[test]
    fn lost_writes_resurrections_and_stale_reads_are_caught() {
        let h = [
            rec("k", set("k|1|", Life::Never), 1.0, Outcome::Stored),
            rec("k", Op::Get, 2.0, Outcome::Miss),
            rec("k", set("k|2|", Life::Never), 3.0, Outcome::Stored),
            rec("k", Op::Get, 4.0, hit("k|1|")),
            rec("k", Op::Delete, 5.0, Outcome::Deleted),
            rec("k", Op::Get, 6.0, hit("k|2|")),
            rec("k", Op::Get, 7.0, hit("other")),
        ];
        let findings = run(&h);
        assert_eq!(
            kinds(&findings),
            [
                Kind::LostWrite,
                Kind::StaleRead,
                Kind::Resurrection,
                Kind::ForeignValue
            ]
        );
        // The stale read's history starts at the write it read.
        assert!(findings.violations[1].history[0].contains("#1"));
    }

    #[test]
    fn a_failed_write_allows_both_values_until_the_next_acknowledged_one() {
        let h = [
            rec("k", set("k|1|", Life::Never), 1.0, Outcome::Stored),
            rec("k", set("k|2|", Life::Never), 2.0, failed()),
            rec("k", Op::Get, 3.0, hit("k|1|")),
            rec("k", Op::Get, 4.0, hit("k|2|")),
            rec("k", Op::Get, 5.0, hit("k|1|")),
            rec("k", Op::Delete, 6.0, failed()),
            rec("k", Op::Get, 7.0, Outcome::Miss),
            rec("k", set("k|3|", Life::Never), 8.0, Outcome::Stored),
            rec("k", Op::Get, 9.0, hit("k|2|")),
        ];
        assert_eq!(kinds(&run(&h)), [Kind::StaleRead]);
    }

    #[test]
    fn expiry_is_allowed_only_inside_its_window() {
        let h = [
            rec("k", set("k|1|", Life::Secs(5)), 0.0, Outcome::Stored),
            rec("k", Op::Get, 2.0, Outcome::Miss),
            rec("k", Op::Get, 3.5, Outcome::Miss),
            rec("k", Op::Get, 6.0, hit("k|1|")),
            rec("k", Op::Get, 7.5, hit("k|1|")),
            rec("k", Op::Get, 9.0, hit("k|1|")),
        ];
        let findings = run(&h);
        // Read at 2 s missed too early; at 9 s it had surely expired (7 s,
        // plus 1 s for a late write); the hits carry no TTL although it was
        // written with one.
        assert_eq!(
            kinds(&findings),
            [
                Kind::LostWrite,
                Kind::WrongTtl,
                Kind::WrongTtl,
                Kind::ExpiredValue,
                Kind::WrongTtl
            ]
        );
        // At 7.5 s it was due to expire but a late write may explain it.
        assert_eq!(findings.drift.len(), 1);
    }

    #[test]
    fn touch_moves_the_window() {
        let h = [
            rec("k", set("k|1|", Life::Secs(3)), 0.0, Outcome::Stored),
            rec("k", Op::Touch { life: Life::Never }, 0.5, Outcome::Touched),
            rec("k", Op::Get, 20.0, hit("k|1|")),
        ];
        assert!(run(&h).violations.is_empty());
    }

    #[test]
    fn a_failed_touch_allows_either_lifetime() {
        let with_ttl = |left: u64| Outcome::Item {
            value: Bytes::from("k|1|"),
            flags: 1,
            expires_in: Some(Duration::from_secs(left)),
        };
        let h = [
            rec("k", set("k|1|", Life::Never), 0.0, Outcome::Stored),
            rec(
                "k",
                Op::Touch {
                    life: Life::Secs(600),
                },
                1.0,
                failed(),
            ),
            rec("k", Op::Get, 2.0, with_ttl(598)),
            rec("k", Op::Get, 3.0, hit("k|1|")),
            rec("k", Op::Get, 4.0, with_ttl(30)),
        ];
        assert_eq!(kinds(&run(&h)), [Kind::WrongTtl]);
    }

    #[test]
    fn add_and_delete_outcomes_are_observations() {
        let add = |v: &str| Op::Add {
            value: Bytes::from(v.to_owned()),
            flags: 1,
            life: Life::Never,
        };
        let h = [
            rec("k", set("k|1|", Life::Never), 0.0, Outcome::Stored),
            rec("k", add("k|2|"), 1.0, Outcome::Stored),
            rec("k", Op::Delete, 2.0, Outcome::Deleted),
            rec("k", Op::Delete, 3.0, Outcome::Deleted),
            rec("k", add("k|3|"), 4.0, Outcome::NotStored),
        ];
        // The second delete found the first one's tombstone: counted, not a violation.
        let findings = run(&h);
        assert_eq!(
            kinds(&findings),
            [Kind::MissedLiveValue, Kind::PhantomValue]
        );
        assert_eq!(findings.stale_deletes, 1);
    }

    fn session_run(records: &[Record]) -> Findings {
        run_with(records, &["k".to_owned()], true)
    }

    /// A call on a session key from `at` to `to`, by client `client`.
    fn srec(op: Op, at: f64, to: f64, client: usize, outcome: Outcome) -> Record {
        Record {
            task: client,
            client: Some(client),
            key: "k".to_owned(),
            op,
            start: Duration::from_secs_f64(at),
            end: Duration::from_secs_f64(to),
            outcome,
            phase: Phase::Load,
        }
    }

    #[test]
    fn sessions_across_clients_are_checked_by_real_time() {
        let h = [
            srec(set("k|1|", Life::Never), 0.0, 0.1, 0, Outcome::Stored),
            srec(Op::Get, 0.2, 0.3, 1, hit("k|1|")),
            // Two concurrent updates: either may be read, in any order.
            srec(set("k|2|", Life::Never), 1.0, 1.5, 1, Outcome::Stored),
            srec(set("k|3|", Life::Never), 1.1, 1.4, 2, Outcome::Stored),
            srec(Op::Get, 1.2, 1.3, 0, hit("k|1|")),
            srec(Op::Get, 1.6, 1.7, 0, hit("k|2|")),
            srec(Op::Get, 1.8, 1.9, 2, hit("k|3|")),
            // A failed update may or may not have applied.
            srec(set("k|4|", Life::Never), 2.0, 2.3, 0, failed()),
            srec(Op::Get, 2.4, 2.5, 1, hit("k|4|")),
            srec(Op::Get, 2.6, 2.7, 2, hit("k|3|")),
            srec(Op::Delete, 3.0, 3.1, 1, Outcome::Deleted),
            srec(Op::Get, 3.2, 3.3, 2, Outcome::Miss),
            srec(Op::Delete, 3.4, 3.5, 0, Outcome::NotFound),
            // A copy the first delete missed, found and removed: shown only.
            srec(Op::Delete, 3.6, 3.7, 2, Outcome::Deleted),
        ];
        let findings = session_run(&h);
        assert!(findings.violations.is_empty(), "{:?}", findings.violations);
        assert_eq!(findings.stale_deletes, 1);
    }

    #[test]
    fn lost_updates_resurrections_and_lost_writes_across_clients_are_caught() {
        let h = [
            srec(set("k|1|", Life::Never), 0.0, 0.1, 0, Outcome::Stored),
            srec(set("k|2|", Life::Never), 1.0, 1.1, 1, Outcome::Stored),
            // Older than an update that ended before it started.
            srec(Op::Get, 1.2, 1.3, 2, hit("k|1|")),
            srec(Op::Get, 1.4, 1.5, 2, Outcome::Miss),
            srec(Op::Delete, 2.0, 2.1, 2, Outcome::Deleted),
            srec(Op::Get, 2.2, 2.3, 0, hit("k|2|")),
            srec(
                Op::Touch { life: Life::Never },
                2.4,
                2.5,
                1,
                Outcome::Touched,
            ),
            srec(
                Op::Add {
                    value: Bytes::from("k|5|"),
                    flags: 1,
                    life: Life::Never,
                },
                3.0,
                3.1,
                0,
                Outcome::Stored,
            ),
            srec(Op::Delete, 3.2, 3.3, 1, Outcome::NotFound),
            srec(Op::Get, 3.4, 3.5, 2, hit("k|9|")),
        ];
        assert_eq!(
            kinds(&session_run(&h)),
            [
                Kind::StaleRead,
                Kind::LostWrite,
                Kind::Resurrection,
                Kind::PhantomValue,
                Kind::MissedLiveValue,
                Kind::ForeignValue
            ]
        );
    }

    #[test]
    fn over_budget_and_unexpected_errors_are_violations() {
        let mut slow = rec("k", Op::Get, 0.0, Outcome::Miss);
        slow.end = Duration::from_secs(3);
        let odd = rec(
            "k",
            Op::Get,
            4.0,
            Outcome::Failed(Failure {
                kind: "Protocol".to_owned(),
                message: "bad".to_owned(),
            }),
        );
        assert_eq!(
            kinds(&run(&[slow, odd])),
            [Kind::OverBudget, Kind::UnexpectedError]
        );
    }
}
