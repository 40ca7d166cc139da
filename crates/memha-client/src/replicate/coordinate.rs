//! Conditional and read-modify-write operations, decided by the key's primary.

use std::sync::Arc;
use std::time::Duration;

use memha_health::Observation;
use memha_proto::{Command, Key, MetaDelete, MetaGet, MetaSet, MetaStatus, Reply, SetMode};
use tokio::sync::{Mutex, MutexGuard};

use super::members::{Member, Placement};
use super::Shared;
use crate::error::{Error, ErrorKind};
use crate::Ttl;

/// A snapshot of the members.
type Members = Arc<Vec<Arc<Member>>>;

/// Serialises the coordinated operations of this client on one key, so the
/// copies it propagates reach the other nodes in the order the primary
/// applied them (32 concurrent increments end equal on every node).
pub(super) struct KeyLocks {
    stripes: Vec<Mutex<()>>,
}

impl KeyLocks {
    pub(super) fn new(stripes: usize) -> Self {
        KeyLocks {
            stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Waits at most `timeout` for the key's stripe: behind a call stuck on
    /// a hung node, the others fail in time rather than queue without end.
    /// Nothing was sent when this fails.
    async fn lock(&self, key: &Key, timeout: Duration) -> Result<MutexGuard<'_, ()>, Error> {
        let stripe = super::placement::score(0, key.as_bytes()) as usize % self.stripes.len();
        tokio::time::timeout(timeout, self.stripes[stripe].lock())
            .await
            .map_err(|_| {
                Error::new(ErrorKind::Timeout).with_detail(format!(
                    "an earlier operation on a key of the same lock stripe took over {timeout:?}"
                ))
            })
    }
}

impl Shared {
    /// The primary decides `command`; what it then holds is written to the others.
    pub(super) async fn coordinated(&self, key: Key, command: Command) -> Result<Reply, Error> {
        let _serialised = self.key_locks.lock(&key, self.probe_timeout).await?;
        // It decides from what it holds: first make it hold the current copy.
        let is_add = matches!(&command, Command::MetaSet(set) if set.mode == SetMode::Add);
        // A primary that fails to answer the decision is taken Down (it may
        // have applied it: it is made safe before it serves again), so the
        // next node in rank becomes the primary: decide there instead, once.
        let mut failed_over = false;
        loop {
            let Some((members, primary)) = self.primed_primary(&key, is_add).await? else {
                return Ok(super::write::meta_status(MetaStatus::NotStored));
            };
            let reply = match self.decide(&key, &command, &primary, is_add).await {
                Ok(reply) => reply,
                // Only once it is out of reads: else the next priming read
                // could find what it applied, and take it for another's.
                Err(error)
                    if !failed_over && !error.is_unsent() && !primary.state().is_readable() =>
                {
                    tracing::debug!(node = %primary.id, %error, "the primary failed to decide: failing over");
                    failed_over = true;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let applied = matches!(&reply, Reply::Meta(m) if matches!(m.status, MetaStatus::Stored | MetaStatus::Value));
            if applied {
                let placement = Placement::of(&members, key.as_bytes());
                self.propagate(&key, &primary, &placement, is_add).await?;
            }
            return Ok(reply);
        }
    }

    /// Makes the key's primary hold the key's current copy, and returns
    /// the members and the primary (`None`: an `add` to refuse without
    /// writing, as the key exists). A node turning Up meanwhile may become
    /// the primary: prime once more, so the node that decides is the one
    /// primed.
    async fn primed_primary(
        &self,
        key: &Key,
        is_add: bool,
    ) -> Result<Option<(Members, Arc<Member>)>, Error> {
        let mut attempts = 0;
        loop {
            let primed = self.prime(key, is_add).await?;
            if primed.exists {
                return Ok(None);
            }
            let members = self.members.snapshot();
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
            if attempts == 2 {
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
    ) -> Result<Reply, Error> {
        let mut attempts = 0;
        loop {
            let reply = match primary.call(command.clone()).await {
                Ok(reply) => reply,
                Err(error) => {
                    if !error.is_unsent() {
                        primary.record_missed(key);
                        primary.health.record(Observation::ConnectionFailed);
                    }
                    return Err(error);
                }
            };
            // An add refused by a tombstone (a delete that landed after the
            // priming): the key is absent, so remove it and add again.
            let refused = matches!(&reply, Reply::Meta(m) if m.status == MetaStatus::NotStored);
            attempts += 1;
            if !(is_add && refused && attempts < 3 && self.remove_tombstone(key, primary).await) {
                return Ok(reply);
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

    /// Removes the tombstone `member` holds for `key`, if it holds one
    /// (CAS-guarded). Returns whether it did.
    async fn remove_tombstone(&self, key: &Key, member: &Member) -> bool {
        let Some(cas) = self.tombstone_cas(key, member).await else {
            return false;
        };
        let mut delete = MetaDelete::new(key.clone());
        delete.compare_cas = Some(cas);
        matches!(
            member.call(Command::MetaDelete(delete)).await,
            Ok(Reply::Meta(meta)) if meta.status == MetaStatus::Stored
        )
    }

    /// Copies what the primary holds for `key` to every other writable
    /// node, accounting for the nodes that miss it like any write.
    ///
    /// After an `add` the copy is added (`ME`) too: the key was absent
    /// everywhere, so a node that holds it now got a newer write (a set
    /// racing the add, or the tombstone of a racing delete), which must
    /// not be overwritten with the older value.
    async fn propagate(
        &self,
        key: &Key,
        primary: &Arc<Member>,
        placement: &Placement<'_>,
        after_add: bool,
    ) -> Result<(), Error> {
        let mut targets = placement.writable_and_absent(key);
        targets.writable.retain(|m| !Arc::ptr_eq(m, primary));
        if targets.writable.is_empty() && targets.complete() {
            return Ok(());
        }
        let copy = match primary.call(MetaGet::full(key.clone()).into()).await {
            Ok(Reply::Meta(meta)) if meta.status == MetaStatus::Value && !meta.flags.stale => {
                let mut set = MetaSet::new(key.clone(), meta.value.unwrap_or_default());
                if after_add {
                    set.mode = SetMode::Add;
                }
                set.client_flags = meta.flags.client_flags;
                set.ttl = Some(Ttl::from_remaining(meta.flags.ttl.unwrap_or(-1)).exptime());
                Command::MetaSet(set)
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
        if targets.writable.is_empty() {
            // Only absent nodes besides the primary: it holds the record.
            let absent: Vec<&Arc<Member>> = targets.absent.clone();
            return self.mark_stale(key, &absent, &[primary]).await.map(drop);
        }
        let gathered = self
            .write_accounted(key, &copy, &targets, Some(primary))
            .await?;
        if let Command::MetaSet(set) = &copy {
            if set.mode == SetMode::Add {
                // Refused where the node holds the key: keep a live copy
                // (a newer write), replace a tombstone (an older delete).
                for (member, answer) in &gathered.answers {
                    if matches!(answer, Ok(Reply::Meta(m)) if m.status == MetaStatus::NotStored) {
                        self.replace_tombstone(key, member, set).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `set` over the tombstone `member` holds for `key`, if it
    /// holds one (CAS-guarded). A tombstone whose CAS moved meanwhile (a
    /// touch gave it back its lifetime) is still one: tried again, a few
    /// times (multi-client chaos seed 9: the add's copy stayed on the
    /// primary alone, and its restart lost it).
    async fn replace_tombstone(&self, key: &Key, member: &Member, set: &MetaSet) {
        for _ in 0..3 {
            let Some(cas) = self.tombstone_cas(key, member).await else {
                return;
            };
            let mut overwrite = set.clone();
            overwrite.mode = SetMode::Set;
            overwrite.compare_cas = Some(cas);
            match member.call(Command::MetaSet(overwrite)).await {
                Ok(Reply::Meta(meta)) if meta.status == MetaStatus::Exists => continue,
                _ => return,
            }
        }
    }
}
