//! Conditional and read-modify-write operations, decided by the key's primary.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use memha_proto::{Command, Key, MetaDelete, MetaGet, MetaSet, MetaStatus, Reply, SetMode};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::time::Instant;
use tracing::Instrument;

use super::members::Member;
use super::placement::Placement;
use super::reply::is_stored;
use super::Shared;
use crate::error::{Error, ErrorKind};
use crate::Ttl;

/// A snapshot of the members.
type Members = Arc<Vec<Arc<Member>>>;

/// Serialises the coordinated operations of this client on one key, so the
/// copies it propagates reach the other nodes in the order the primary
/// applied them (32 concurrent increments end equal on every node).
///
/// One lock per key in use, not stripes shared by unrelated keys: under a
/// slow node a coordinated operation may take several timeouts, and an
/// operation on another key must not wait for it (single-client chaos
/// seed 19: adds on other keys of a shared stripe timed out). A key's
/// entry lives while an operation holds or awaits its lock.
#[derive(Default)]
pub(super) struct KeyLocks {
    in_use: std::sync::Mutex<HashMap<Key, KeyLock>>,
}

/// A key's lock, and how many operations hold or await it.
struct KeyLock {
    lock: Arc<Mutex<()>>,
    claims: usize,
}

impl KeyLocks {
    /// Waits for `key`'s lock until `until`: behind a call stuck on a hung
    /// node, the others fail in time rather than queue without end.
    /// Nothing was sent when this fails.
    async fn lock(&self, key: &Key, until: Instant) -> Result<KeyGuard<'_>, Error> {
        let lock = {
            let mut in_use = self.in_use();
            let entry = in_use.entry(key.clone()).or_insert_with(|| KeyLock {
                lock: Arc::default(),
                claims: 0,
            });
            entry.claims += 1;
            Arc::clone(&entry.lock)
        };
        // Made before the wait, so a wait that fails or is dropped gives
        // its claim back.
        let mut claim = KeyGuard {
            locks: self,
            key: key.clone(),
            _held: None,
        };
        let held = tokio::time::timeout_at(until, lock.lock_owned())
            .await
            .map_err(|_| {
                Error::new(ErrorKind::Timeout)
                    .with_unsent(true)
                    .with_detail(
                        "an earlier operation on the same key held its lock for two timeouts",
                    )
            })?;
        claim._held = Some(held);
        Ok(claim)
    }

    fn in_use(&self) -> std::sync::MutexGuard<'_, HashMap<Key, KeyLock>> {
        // Never left half-changed: a panic elsewhere leaves it usable.
        self.in_use.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A claim on one key's lock, held once `_held` is set. The key's entry
/// goes with its last claim.
struct KeyGuard<'l> {
    locks: &'l KeyLocks,
    key: Key,
    _held: Option<OwnedMutexGuard<()>>,
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut in_use = self.locks.in_use();
        if let Some(entry) = in_use.get_mut(&self.key) {
            entry.claims -= 1;
            if entry.claims == 0 {
                in_use.remove(&self.key);
            }
        }
    }
}

impl Shared {
    /// How long a coordinated operation waits for each of its requests:
    /// nine tenths of the node timeout. A primary that leaves one
    /// unanswered is taken Down and the next node in rank decides, so a
    /// primary that froze before the operation, or between two of its
    /// requests, costs it less than one timeout (the tenth left is the
    /// failover's: a priming read and a decision on a healthy node).
    fn coordinated_wait(&self) -> Duration {
        self.node_timeout - self.node_timeout / 10
    }

    /// The primary decides `command`; what it then holds is written to the others.
    pub(super) async fn coordinated(&self, key: Key, command: Command) -> Result<Reply, Error> {
        let wait = self.coordinated_wait();
        // Two timeouts: the operation holding the lock may itself take
        // over one (a node failing in its propagation).
        let lock_wait = Instant::now() + 2 * self.node_timeout;
        let _serialised = self.key_locks.lock(&key, lock_wait).await?;
        // It decides from what it holds: first make it hold the current copy.
        let is_add = matches!(&command, Command::MetaSet(set) if set.mode == SetMode::Add);
        // A primary that fails to answer the decision is taken Down (it may
        // have applied it: it is made safe before it serves again), so the
        // next node in rank becomes the primary: decide there instead, once.
        let mut failed_over = false;
        loop {
            let primed = self.primed_primary(&key, is_add, wait);
            let Some((members, primary)) = primed.await? else {
                return Ok(super::reply::status_reply(MetaStatus::NotStored));
            };
            let reply = match self.decide(&key, &command, &primary, is_add, wait).await {
                Ok(reply) => reply,
                // Only once it is out of reads: else the next priming read
                // could find what it applied, and take it for another's. A
                // request refused unsent (the primary went Down since it was
                // primed) applied nothing: fail over just the same.
                Err(error) if !failed_over && !primary.state().is_readable() => {
                    tracing::debug!(node = %primary.id, %error, "the primary failed to decide: failing over");
                    failed_over = true;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let applied = matches!(&reply, Reply::Meta(m) if matches!(m.status, MetaStatus::Stored | MetaStatus::Value));
            if applied {
                let placement = Placement::of(&members, key.as_bytes());
                let add = match &command {
                    Command::MetaSet(set) if is_add => Some(set),
                    _ => None,
                };
                self.propagate(&key, &primary, &placement, add, wait)
                    .await?;
            }
            return Ok(reply);
        }
    }

    /// Makes the key's primary hold the key's current copy, and returns
    /// the members and the primary (`None`: an `add` to refuse without
    /// writing, as the key exists). A node turning Up meanwhile may become
    /// the primary: prime again (at most [`PRIMING_ATTEMPTS`] in all), so
    /// the node that decides is the one primed. A primary that leaves the
    /// priming read unanswered for `wait` is taken Down, as one that fails
    /// to answer the decision would be: the next in rank is primed instead.
    async fn primed_primary(
        &self,
        key: &Key,
        is_add: bool,
        wait: Duration,
    ) -> Result<Option<(Members, Arc<Member>)>, Error> {
        let mut attempts = 0;
        loop {
            let primed = self.prime(key, is_add, wait).await?;
            if primed.exists {
                return Ok(None);
            }
            let members = self.members.snapshot();
            if primed.primary_silent {
                if let Some(silent) = members.iter().find(|m| m.seed() == primed.primary) {
                    tracing::debug!(node = %silent.id, "the primary did not answer the priming read: failing over");
                    // A read applied nothing: no key to journal.
                    silent.take_down(None);
                }
            }
            let placement = Placement::of(&members, key.as_bytes());
            let Some(primary) = placement.primary().cloned() else {
                return Err(self.no_nodes(&members));
            };
            if primary.seed() == primed.primary
                && primary.health.transition_count() == primed.primary_transitions
            {
                return Ok(Some((members, primary)));
            }
            // Deciding on a node that was not primed, or that changed state
            // since (say it restarted empty), could decide on a copy it
            // lacks: prime again, then fail safely.
            attempts += 1;
            if attempts == PRIMING_ATTEMPTS {
                return Err(Error::new(ErrorKind::NodeDown).with_detail(format!(
                    "the primary of the key changed while it was primed (now {}): retry",
                    primary.id
                )));
            }
        }
    }

    /// The primary's answer to `command`. A primary that fails to answer
    /// may have applied it: it is taken Down with the key journaled, so it
    /// is made safe before it serves reads again.
    async fn decide(
        &self,
        key: &Key,
        command: &Command,
        primary: &Arc<Member>,
        is_add: bool,
        wait: Duration,
    ) -> Result<Reply, Error> {
        let failed = |error: Error| {
            if !error.is_unsent() {
                primary.take_down(Some(key));
            }
            error
        };
        let mut attempts = 0;
        loop {
            let reply = primary
                .call_within(command.clone(), wait)
                .await
                .map_err(failed)?;
            // An add refused by a tombstone (a delete that landed after the
            // priming): the key is absent, so the add is written over it.
            let refused = matches!(&reply, Reply::Meta(m) if m.status == MetaStatus::NotStored);
            let Command::MetaSet(add) = command else {
                return Ok(reply);
            };
            if !(is_add && refused) {
                return Ok(reply);
            }
            attempts += 1;
            match self.overwrite_tombstone(key, primary, add).await {
                Ok(Some(Reply::Meta(m))) if m.status == MetaStatus::Stored => {
                    return Ok(Reply::Meta(m))
                }
                // The tombstone expired meanwhile: add again.
                Ok(Some(Reply::Meta(m))) if m.status == MetaStatus::NotFound && attempts < 3 => {
                    continue
                }
                Ok(_) => return Ok(reply),
                Err(error) => return Err(failed(error)),
            }
        }
    }

    /// The CAS of the tombstone `member` holds for `key`, if it holds one.
    async fn tombstone_cas(&self, key: &Key, member: &Member) -> Option<u64> {
        let mut get = MetaGet::new(key.clone());
        get.cas = true;
        match member.call(Command::MetaGet(get)).await {
            Ok(Reply::Meta(meta)) if meta.flags.stale => meta.flags.cas,
            _ => None,
        }
    }

    /// Copies what the primary holds for `key` to every other writable
    /// node, accounting for the nodes that miss it like any write. The
    /// primary's copy is read back within the operation's `deadline`.
    ///
    /// After `add` (the add the primary stored) the copy is added (`ME`)
    /// too: the key was absent everywhere, so a node that holds it now got
    /// a newer write (a set racing the add), which must not be overwritten
    /// with the older value. A tombstone there is written over (an older
    /// delete); should the primary turn out deleted too, the copies
    /// written are made tombstones again (a newer delete, on its way).
    /// A primary that holds another value already was overtaken by a
    /// newer set: that set's writer copies it, and nothing is written
    /// here (copying it over the tombstone of a delete that followed it
    /// would bring it back: multi-client chaos seed 7).
    async fn propagate(
        &self,
        key: &Key,
        primary: &Arc<Member>,
        placement: &Placement<'_>,
        add: Option<&MetaSet>,
        wait: Duration,
    ) -> Result<(), Error> {
        let mut targets = placement.writable_and_absent(key);
        let primary_target = targets
            .writable
            .iter()
            .copied()
            .find(|m| Arc::ptr_eq(m, primary));
        targets.writable.retain(|m| !Arc::ptr_eq(m, primary));
        if targets.writable.is_empty() && targets.complete() {
            return Ok(());
        }
        // Whether the primary is known to hold what is propagated.
        let mut primary_holds = true;
        let mut primary_cas = None;
        let read_back = MetaGet::full(key.clone()).into();
        let copy = match primary.call_within(read_back, wait).await {
            Ok(Reply::Meta(meta)) if meta.status == MetaStatus::Value && !meta.flags.stale => {
                primary_cas = meta.flags.cas;
                let value = meta.value.unwrap_or_default();
                let flags = meta.flags.client_flags.unwrap_or(0);
                let mut set = MetaSet::new(key.clone(), value);
                if let Some(add) = add {
                    if add.value != set.value || add.client_flags.unwrap_or(0) != flags {
                        return Ok(());
                    }
                    (set.mode, set.return_cas) = (SetMode::Add, true);
                }
                set.client_flags = meta.flags.client_flags;
                set.ttl = Some(Ttl::from_remaining(meta.flags.ttl.unwrap_or(-1)).exptime());
                Command::MetaSet(set)
            }
            // Emptied since it stored the add, yet no delete came (a delete
            // leaves a tombstone): another client's rejoin cleanup removed
            // what it had journaled for the node, outright (multi-client
            // chaos seed 9). The add's own copy is what the others get.
            Ok(Reply::Meta(meta))
                if meta.status == MetaStatus::Miss
                    && add.is_some()
                    && self.tombstone_exptime().is_some() =>
            {
                // The primary gets it back too: it holds nothing now.
                targets.writable.extend(primary_target);
                primary_holds = false;
                own_copy(key, add.expect("an add, as matched"))
            }
            // The primary stored the add, then stopped answering (it froze,
            // or its connection broke): what it holds is the add's copy, but
            // it cannot be counted on, nor hold markers.
            Err(_) if add.is_some() => {
                primary_holds = false;
                own_copy(key, add.expect("an add, as matched"))
            }
            // Gone already (expired, evicted, deleted since): gone everywhere,
            // leaving a tombstone like any delete.
            Ok(_) => {
                let mut delete = MetaDelete::new(key.clone());
                self.leave_tombstone(&mut delete);
                Command::MetaDelete(delete)
            }
            Err(error) => {
                // Without the primary's copy the others cannot be brought up to date:
                // they must not serve an older copy either.
                for member in &targets.writable {
                    member.record_missed(key);
                }
                let delete = Command::MetaDelete(MetaDelete::new(key.clone()));
                let _ = self.write_accounted(key, &delete, &targets, None).await;
                return Err(error);
            }
        };
        let also_holding = primary_holds.then_some(primary);
        if targets.writable.is_empty() {
            // Only absent nodes besides the primary: it holds the record.
            let absent: Vec<&Arc<Member>> = targets.absent.clone();
            let holders: Vec<&Arc<Member>> = also_holding.into_iter().collect();
            return self.mark_stale(key, &absent, &holders).await.map(drop);
        }
        let gathered = self
            .write_accounted(key, &copy, &targets, also_holding)
            .await?;
        if let Command::MetaSet(set) = &copy {
            if set.mode == SetMode::Add {
                // Refused where the node holds the key: keep a live copy
                // (a newer write), write over a tombstone (an older delete),
                // all at once.
                let refused: Vec<&Arc<Member>> = gathered
                    .answers
                    .iter()
                    .filter(|(_, answer)| {
                        matches!(answer, Ok(Reply::Meta(m)) if m.status == MetaStatus::NotStored)
                    })
                    .map(|(member, _)| *member)
                    .collect();
                let overwrites = refused
                    .iter()
                    .map(|member| self.overwrite_tombstone(key, member, set));
                let answers = futures_util::future::join_all(overwrites).await;
                let (mut replaced, mut unreplaced) = (Vec::new(), Vec::new());
                for (member, answer) in refused.into_iter().zip(answers) {
                    match answer {
                        // A live copy: a newer write, which accounts for itself.
                        Ok(None) => {}
                        Ok(Some(Reply::Meta(m))) if m.status == MetaStatus::Stored => {
                            replaced.push((Arc::clone(member), m.flags.cas.unwrap_or(0)));
                        }
                        // Its tombstone stayed (or went): it lacks the add,
                        // though its refusal counted as an acknowledgement.
                        _ => unreplaced.push(member),
                    }
                }
                if !unreplaced.is_empty() {
                    let mut holders: Vec<&Arc<Member>> = gathered
                        .answers
                        .iter()
                        .filter(|(_, answer)| is_stored(answer))
                        .map(|(member, _)| *member)
                        .chain(
                            targets
                                .writable
                                .iter()
                                .copied()
                                .filter(|m| replaced.iter().any(|(r, _)| Arc::ptr_eq(r, m))),
                        )
                        .collect();
                    holders.extend(also_holding);
                    self.mark_stale(key, &unreplaced, &holders).await?;
                }
                // Was that tombstone a newer delete, still on its way to the primary?
                if let (false, Some(read_cas)) = (replaced.is_empty(), primary_cas) {
                    let overtaken = super::read::undo_overtaken_adds(
                        key.clone(),
                        Arc::clone(primary),
                        read_cas,
                        replaced,
                        self.tombstone_exptime(),
                    );
                    tokio::spawn(overtaken.in_current_span());
                }
            }
        }
        Ok(())
    }

    /// Writes `set` over the tombstone `member` holds for `key`, if it
    /// holds one (a set guarded by the tombstone's CAS), and returns the
    /// answer to that set (`EX` when the CAS moved every time); `None`
    /// when it holds no tombstone (a live copy, or nothing). A tombstone
    /// whose CAS moved meanwhile (every delete and touch of it moves it:
    /// with several clients deleting a shared session, often) is still
    /// one: tried again, a few times (multi-client chaos seeds 7 and 9).
    async fn overwrite_tombstone(
        &self,
        key: &Key,
        member: &Member,
        set: &MetaSet,
    ) -> Result<Option<Reply>, Error> {
        let mut last = None;
        for _ in 0..TOMBSTONE_ATTEMPTS {
            let Some(cas) = self.tombstone_cas(key, member).await else {
                return Ok(None);
            };
            let mut overwrite = set.clone();
            overwrite.mode = SetMode::Set;
            overwrite.compare_cas = Some(cas);
            match member.call(Command::MetaSet(overwrite)).await? {
                Reply::Meta(meta) if meta.status == MetaStatus::Exists => {
                    last = Some(Reply::Meta(meta));
                }
                reply => return Ok(Some(reply)),
            }
        }
        // Still a tombstone, its CAS moving every time: the last `EX`.
        Ok(last)
    }
}

/// The copy an `add` the primary stored gives the other nodes (`ME`: it
/// never clobbers a newer write there).
fn own_copy(key: &Key, add: &MetaSet) -> Command {
    let mut set = MetaSet::new(key.clone(), add.value.clone());
    (set.mode, set.return_cas) = (SetMode::Add, true);
    (set.client_flags, set.ttl) = (add.client_flags, add.ttl);
    Command::MetaSet(set)
}

/// How many times a coordinated operation primes its key's primary while
/// it keeps changing (with several clients whose nodes rejoin often, twice
/// was not always enough: multi-client chaos seeds 8 and 10).
const PRIMING_ATTEMPTS: usize = 3;

/// How many times a write over a tombstone looks again after the
/// tombstone's CAS moved.
const TOMBSTONE_ATTEMPTS: usize = 5;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use memha_proto::Key;
    use tokio::time::Instant;

    use super::KeyLocks;

    fn key(name: &'static str) -> Key {
        Key::new(name).expect("a valid key")
    }

    #[tokio::test(start_paused = true)]
    async fn an_operation_on_another_key_does_not_wait() {
        let locks = KeyLocks::default();
        let _held = locks.lock(&key("a"), Instant::now()).await.expect("free");
        // A lock that is free is taken even at its deadline.
        let other = locks.lock(&key("b"), Instant::now()).await;
        assert!(other.is_ok(), "another key's operation waited");
        assert_eq!(locks.in_use().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_operation_on_the_same_key_waits_then_fails_in_time() {
        let locks = KeyLocks::default();
        let held = locks.lock(&key("a"), Instant::now()).await.expect("free");
        let start = Instant::now();
        let error = locks
            .lock(&key("a"), start + Duration::from_millis(500))
            .await
            .err()
            .expect("the key's lock is held");
        assert!(error.is_timeout() && error.is_unsent(), "{error:?}");
        // At its deadline (the timer wheel's millisecond ticks aside).
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(500) && waited <= Duration::from_millis(501),
            "{waited:?}"
        );
        drop(held);
        let again = locks.lock(&key("a"), Instant::now()).await;
        assert!(again.is_ok(), "a released lock is free");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_s_entry_goes_with_its_last_claim() {
        let locks = KeyLocks::default();
        let held = locks.lock(&key("a"), Instant::now()).await.expect("free");
        // A waiter dropped while it waits gives its claim back.
        let a = key("a");
        let mut waiter = Box::pin(locks.lock(&a, Instant::now() + Duration::from_secs(1)));
        let waited = tokio::time::timeout(Duration::from_millis(10), waiter.as_mut()).await;
        assert!(waited.is_err(), "the key's lock is held");
        drop(waiter);
        // So does one that timed out.
        let timed_out = locks.lock(&key("a"), Instant::now()).await;
        assert!(timed_out.is_err());
        assert_eq!(locks.in_use().len(), 1, "only the holder's key");
        drop(held);
        assert_eq!(locks.in_use().len(), 0, "an entry outlived its claims");
    }
}
