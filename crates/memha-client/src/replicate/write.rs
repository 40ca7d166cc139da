//! Writes that go to every writable node: set, delete, touch, flush.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use memha_health::NodeState;
use memha_proto::{Command, Key, MetaDelete, MetaGet, MetaStatus, Reply};

use super::counters::Event;
use super::fanout::{self, Gathered};
use super::members::Member;
use super::placement::{Placement, WriteTargets};
use super::read::{asked_of, Asked};
use super::reply::{is_stored, shaped, status_reply};
use super::resolve;
use super::stale::{self, Marked};
use super::Shared;
use crate::error::Error;
use tracing::Instrument;

/// How long a write that met its ack policy waits for the other writable
/// nodes before it counts them as missing it (and records that): under
/// [`AckPolicy::All`](super::AckPolicy::All) every node is awaited anyway.
const WRITE_GRACE: Duration = Duration::from_millis(50);

impl Shared {
    /// A plain set (`command` is an `ms`): every writable node, then the ack
    /// policy decides.
    // Not an `async fn`: see the `replicate` module's docs on future size.
    #[allow(clippy::manual_async_fn)]
    pub(super) fn set(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<Reply, Error>> + Send + '_ {
        async move {
            let Command::MetaSet(set) = &command else {
                unreachable!("a set")
            };
            let key = &set.key;
            let members = self.members.snapshot();
            let placement = Placement::of(&members, key.as_bytes());
            let targets = self.targets(&members, &placement, key)?;
            let gathered = self.write_accounted(key, &command, &targets, None).await?;
            Ok(gathered
                .reply_of(placement.primary())
                .cloned()
                .expect("an acknowledged write has a reply"))
        }
    }

    /// A delete: every writable node, leaving a tombstone (see
    /// [`ReplicationConfig::tombstone`](super::ReplicationConfig::tombstone));
    /// deleted if any node had the key.
    pub(super) async fn delete(&self, mut delete: MetaDelete) -> Result<Reply, Error> {
        let key = delete.key.clone();
        self.leave_tombstone(&mut delete);
        let members = self.members.snapshot();
        let placement = Placement::of(&members, key.as_bytes());
        let targets = self.targets(&members, &placement, &key)?;
        let trusted = readable_now(&targets.writable);
        let gathered = self
            .write_accounted(&key, &Command::MetaDelete(delete), &targets, None)
            .await?;
        // A Rejoining node may still hold a copy it is about to lose: only
        // the nodes that were Up say whether the key existed.
        let deleted = gathered
            .answers
            .iter()
            .any(|(member, answer)| trusted.contains(&member.addr) && is_stored(answer));
        Ok(status_reply(if deleted {
            MetaStatus::Stored
        } else {
            MetaStatus::NotFound
        }))
    }

    /// A touch (`mg` with `T`, maybe with the value): every writable node.
    /// The answers are decided like a read's (copies known to be stale
    /// lose); a node that lacked the key gets it from the winner, one that
    /// held another copy is overwritten, and when no trusted node holds
    /// the key, the stale copies are deleted and the answer is a miss.
    pub(super) async fn touch(&self, caller: MetaGet) -> Result<Reply, Error> {
        let key = caller.key.clone();
        let members = self.members.snapshot();
        let placement = Placement::of(&members, key.as_bytes());
        let targets = self.targets(&members, &placement, &key)?;
        let trusted = readable_now(&targets.writable);
        let mut get = caller.clone();
        (get.value, get.client_flags, get.ttl, get.cas) = (true, true, true, true);
        let gathered = self
            .write_accounted(&key, &Command::MetaGet(get), &targets, None)
            .await?;
        let mut asked: Vec<Asked<'_>> = gathered
            .answers
            .into_iter()
            .map(|(member, answer)| asked_of(member, answer))
            .collect();
        let mut marked = Marked::default();
        if resolve::disagree(&asked) {
            let up: Vec<&Arc<Member>> = targets
                .writable
                .iter()
                .copied()
                .filter(|m| trusted.contains(&m.addr))
                .collect();
            marked = self.marked(&key, &up, Some(members.len() / 2)).await;
        }
        let primary = placement.primary();
        let primary_index = asked
            .iter()
            .position(|a| primary.is_some_and(|p| Arc::ptr_eq(p, a.member)));
        // Like a read, trust only the nodes that were Up: a Rejoining node
        // may hold a deleted or overwritten copy, which must be neither
        // reported nor copied to the others (promise 2).
        let known_stale =
            |i: usize| marked.contains(asked[i].member) || !trusted.contains(&asked[i].member.addr);
        let mut resolution = resolve::resolve(&asked, primary_index, known_stale);
        // Two live copies, neither known to be stale: most often a write on
        // its way (on some nodes, not yet on the primary). Overwriting one
        // could put the older copy over the newer one for good; the next
        // read resolves what is still there after it settles.
        resolution.repairs.retain(|&(i, repair)| {
            !matches!(repair, resolve::Repair::Overwrite { .. }) || known_stale(i)
        });
        if resolution.stale_lost > 0 && !marked.is_empty() {
            self.counters.record(Event::StaleLost {
                key: &key,
                copies: resolution.stale_lost,
            });
        }
        // The touch extended any tombstone it met: give it back its
        // lifetime, CAS-guarded (a write may have replaced it since). In
        // the background: the answer does not depend on it, and a node
        // that stopped answering since must not hold the touch up.
        if !self.config.tombstone.is_zero() {
            for a in &asked {
                if let resolve::NodeRead::Hit(copy) = &a.read {
                    if copy.server_stale {
                        let mut delete = MetaDelete::new(key.clone());
                        self.leave_tombstone(&mut delete);
                        delete.compare_cas = Some(copy.cas);
                        let member = Arc::clone(a.member);
                        tokio::spawn(
                            async move { member.call(Command::MetaDelete(delete)).await }
                                .in_current_span(),
                        );
                    }
                }
            }
        }
        // memcached reports the TTL from before the touch: the new one is the caller's.
        let exptime = caller.touch.unwrap_or(0);
        let Some(winner) = resolution.winner else {
            if !resolution.repairs.is_empty() {
                Box::pin(self.repair(&caller, &asked, None, &resolution.repairs, None, "touch"))
                    .await;
            }
            return Ok(shaped(&caller, status_reply(MetaStatus::Miss)));
        };
        let mut answer = asked[winner].reply.take().expect("a hit has a reply");
        if !resolution.repairs.is_empty() {
            let primary_cas = Box::pin(self.repair(
                &caller,
                &asked,
                Some((winner, exptime)),
                &resolution.repairs,
                primary,
                "touch",
            ))
            .await;
            answer.flags.cas = primary_cas.or(answer.flags.cas);
        }
        Ok(shaped(&caller, Reply::Meta(answer)))
    }

    /// `flush_all` on every writable node.
    pub(super) async fn flush_all(&self, command: Command) -> Result<Reply, Error> {
        let members = self.members.snapshot();
        let targets: Vec<&Arc<Member>> =
            members.iter().filter(|m| m.state().is_writable()).collect();
        if targets.is_empty() {
            return Err(self.no_nodes(&members));
        }
        // Every writable node, whatever the ack policy: a node that kept its
        // items would serve them again, and no marker covers a whole node.
        let required = targets.len();
        let mut gathered = fanout::write(
            &targets,
            &command,
            None,
            required,
            WRITE_GRACE,
            Duration::ZERO,
            self.node_timeout,
        )
        .await;
        if let Some(stragglers) = gathered.stragglers.take() {
            stragglers.spawn();
        }
        self.check_acks(&gathered, required)?;
        Ok(Reply::Ok)
    }

    /// Makes `delete` leave a tombstone, when tombstones are on.
    pub(super) fn leave_tombstone(&self, delete: &mut MetaDelete) {
        if let Some(exptime) = self.tombstone_exptime() {
            (delete.invalidate, delete.ttl) = (true, Some(exptime));
        }
    }

    /// The exptime a delete gives its tombstones (`None`: deletes remove).
    pub(super) fn tombstone_exptime(&self) -> Option<i64> {
        (!self.config.tombstone.is_zero()).then(|| tombstone_exptime(self.config.tombstone))
    }

    /// The nodes a write of `key` goes to, and those that miss it.
    pub(super) fn targets<'a>(
        &self,
        members: &[Arc<Member>],
        placement: &Placement<'a>,
        key: &Key,
    ) -> Result<WriteTargets<'a>, Error> {
        let targets = placement.writable_and_absent(key);
        if targets.writable.is_empty() {
            return Err(self.no_nodes(members));
        }
        Ok(targets)
    }

    /// Writes `command` (of `key`) to the writable targets under the ack
    /// policy, and accounts for every node that missed it: the absent
    /// ones, those that failed, and those still silent after the grace.
    /// Before the write is acknowledged, the nodes that stored it (and
    /// `also_holding`, a primary that decided it) record which nodes
    /// missed it, where every client's read will find it (see
    /// [`mark_stale`](Shared::mark_stale)). In the steady state nothing is
    /// missed and nothing more is sent.
    // Not an `async fn`: see the `replicate` module's docs on future size.
    #[allow(clippy::manual_async_fn)]
    pub(super) fn write_accounted<'s, 'a: 's>(
        &'s self,
        key: &'s Key,
        command: &'s Command,
        targets: &'s WriteTargets<'a>,
        also_holding: Option<&'a Arc<Member>>,
    ) -> impl Future<Output = Result<Gathered<'a>, Error>> + Send + 's {
        async move {
            let extra = usize::from(also_holding.is_some());
            let required = self
                .config
                .ack
                .required(targets.writable.len() + extra)
                .saturating_sub(extra);
            // A set's outcome is the same whoever stores it: a stalled node is
            // not waited for. A delete's or touch's outcome (found or not) may
            // rest on the one node that holds the key: it gets the grace.
            let stall_after = match command {
                Command::MetaSet(_) => self.config.stall_after,
                _ => Duration::ZERO,
            };
            // A Down node this client already named in the key's marker
            // during this outage needs no new entry (one line per writer, not
            // one per write of a hot key).
            let down = |m: &Arc<Member>| m.state() == NodeState::Down;
            let absent: Vec<&Arc<Member>> = targets
                .absent
                .iter()
                .copied()
                .filter(|m| !(down(m) && m.journal().is_marked(key)))
                .collect();
            let write = fanout::write(
                &targets.writable,
                command,
                Some(key),
                required,
                WRITE_GRACE,
                stall_after,
                self.node_timeout,
            );
            // The nodes known to miss the write are recorded beside it, on
            // every writable node, rather than after it on those that stored
            // it: a fault costs the write no round trip more.
            let (mut gathered, early) = match (absent.is_empty(), targets.writable.is_empty()) {
                (false, false) => {
                    // On the primary that decided the write too, when there is one.
                    let mut on: Vec<&Arc<Member>> = targets.writable.clone();
                    on.extend(also_holding);
                    let record = self.write_markers(key, &absent, &on);
                    // Boxed, as the marking below: only during a fault, and
                    // held inline they would make every write's future (moved
                    // whole into its box) larger.
                    let (gathered, (_, stored)) =
                        Box::pin(futures_util::future::join(write, record)).await;
                    (gathered, stored)
                }
                _ => (write.await, Vec::new()),
            };
            let stragglers = gathered.stragglers.take();
            let mut marked = Ok(None);
            let mut holders = gathered.holders();
            holders.extend(also_holding);
            // Known to a reader only where a node that stored the write holds
            // it: else recorded again, after the write, like a new miss.
            let early_held = holders
                .iter()
                .any(|h| early.iter().any(|m| Arc::ptr_eq(h, m)));
            if early_held {
                for member in absent.iter().filter(|m| down(m)) {
                    member.journal().note_marked(key);
                }
            }
            if (!absent.is_empty() && !early_held) || gathered.missed().next().is_some() {
                let missed: Vec<&Arc<Member>> = absent
                    .iter()
                    .copied()
                    .filter(|_| !early_held)
                    .chain(gathered.missed())
                    .collect();
                if !holders.is_empty() && !missed.is_empty() {
                    marked = Box::pin(self.mark_stale(key, &missed, &holders))
                        .await
                        .map(|at_ms| Some((at_ms, holders.into_iter().cloned().collect())));
                    if marked.is_ok() {
                        for member in missed.iter().filter(|m| down(m)) {
                            member.journal().note_marked(key);
                        }
                    }
                }
            }
            if let Some(stragglers) = stragglers {
                // A node counted as missing the write may apply it after all:
                // then its entries go, or its fresh copy would lose a later
                // divergence to copies that may be gone by then. Only while the
                // nodes that stored the write still hold what the late node now
                // holds, though: a late set or delete may have landed over a
                // newer write or delete of another client (multi-client chaos
                // seed 10), and a late touch touched whatever copy the node had
                // (chaos seed 19: one the others lacked, the touch answered "not
                // found"); such a node keeps its entries and loses the next read.
                let marking: Option<(u64, Vec<Arc<Member>>)> =
                    marked.as_ref().ok().cloned().flatten();
                let (writer, key, command) = (self.writer, key.clone(), command.clone());
                tokio::spawn(
                    async move {
                        let Some((at_ms, holders)) = marking else {
                            stragglers.finish().await;
                            return;
                        };
                        let mut in_line = Vec::new();
                        for (member, late) in stragglers.finish().await {
                            let now_holds = stale::Left::after(&command, &late);
                            if stale::still_left(&key, &now_holds, &holders).await {
                                in_line.push(member);
                            }
                        }
                        if !in_line.is_empty() {
                            stale::clear_late(writer, &key, &in_line, &holders, at_ms).await;
                        }
                    }
                    .in_current_span(),
                );
            }
            marked?;
            let required = self.required_after(&gathered, targets, extra, required);
            self.check_acks(&gathered, required)?;
            Ok(gathered)
        }
    }

    /// How many acknowledgements the write needs once its answers are in:
    /// a node that failed it and is Down now (journaled, and named in the
    /// markers with the others that missed it) counts as absent, as if it
    /// had been Down when the write began, so the write needs a majority of
    /// the nodes still writable (a node dying while another is already
    /// Down fails no write in flight; the demo's restart while a node is
    /// killed). Not with [`AckPolicy::All`](super::AckPolicy::All), and
    /// never fewer than one node holding it.
    fn required_after(
        &self,
        gathered: &Gathered<'_>,
        targets: &WriteTargets<'_>,
        extra: usize,
        required: usize,
    ) -> usize {
        if self.config.ack == super::AckPolicy::All {
            return required;
        }
        let gone = gathered
            .answers
            .iter()
            .filter(|(m, answer)| !fanout::is_ack(answer) && m.state() == NodeState::Down)
            .count();
        let writable = (targets.writable.len() + extra).saturating_sub(gone);
        self.config
            .ack
            .required(writable)
            .max(1)
            .saturating_sub(extra)
            .min(required)
    }

    fn check_acks(&self, gathered: &Gathered<'_>, required: usize) -> Result<(), Error> {
        if gathered.acked >= required {
            return Ok(());
        }
        let failed = gathered.failed();
        self.counters.record(Event::PartialWrite {
            acked: gathered.acked,
            required,
            failed: &failed,
        });
        let first_error = gathered
            .answers
            .iter()
            .find_map(|(_, answer)| answer.as_ref().err().cloned());
        let mut error = Error::new_partial_write(gathered.acked, required, failed);
        if let Some(cause) = first_error {
            error = error.with_source(cause);
        }
        Err(error)
    }
}

/// A tombstone's lifetime in memcached's units: whole seconds, at least one.
pub(super) fn tombstone_exptime(lifetime: Duration) -> i64 {
    i64::try_from(lifetime.as_secs().max(1)).unwrap_or(i64::MAX)
}

/// The addresses of the nodes among `targets` that are Up now (made safe,
/// so their answers can be trusted like a read's).
fn readable_now(targets: &[&Arc<Member>]) -> Vec<std::net::SocketAddr> {
    targets
        .iter()
        .filter(|m| m.state().is_readable())
        .map(|m| m.addr)
        .collect()
}
