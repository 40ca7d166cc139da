//! Sending commands to many nodes at once, under one deadline, and counting
//! acknowledgements.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use memha_proto::{Command, Key, MetaDelete, MetaStatus, Reply};
use tokio::time::{Instant, Sleep};
use tracing::Instrument;

use super::members::Member;
use crate::error::Error;
use crate::node::call::NodeCall;

/// Calls on several nodes at once under one deadline: one timer for them
/// all. Each call is tagged with its node.
///
/// The calls are polled in turn: fine for the few nodes a key lives on, and
/// nothing to allocate per call. An answered call is dropped in place.
pub(crate) struct Calls<'d, T> {
    calls: Vec<(T, Option<NodeCall>)>,
    pending: usize,
    order: Order,
    deadline: Pin<&'d mut Sleep>,
    timeout: Duration,
    /// The real deadline while the timer is set for a hedge.
    after_hedge: Option<Instant>,
}

/// What [`Calls::next_step`] gives.
pub(crate) enum Step<T> {
    Answer(T, Result<Reply, Error>),
    /// The hedge delay passed with calls still pending.
    Hedge,
}

/// Which answer [`Calls::next`] gives next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Whichever comes first: for an ack policy short of all the nodes, or
    /// a read that forwards its first hit.
    Arrival,
    /// The order the calls were made in, when every answer is awaited anyway.
    /// Every call is sent at once, but only the one awaited wakes the task:
    /// a task woken once per operation rather than once per node.
    Sent,
}

impl<'d, T: Clone> Calls<'d, T> {
    /// Calls bounded by `deadline`, a sleep of `timeout` (named in errors),
    /// with room for `expected` calls at once (letting the first push size
    /// it would make room for four: past the allocator's per-thread cache,
    /// see the module's docs).
    pub(crate) fn new(
        deadline: Pin<&'d mut Sleep>,
        timeout: Duration,
        order: Order,
        expected: usize,
    ) -> Self {
        Calls {
            calls: Vec::with_capacity(expected),
            pending: 0,
            order,
            deadline,
            timeout,
            after_hedge: None,
        }
    }

    /// Fires a [`Step::Hedge`] at `at` if calls are still pending then
    /// (one timer serves both), and from then on gives answers as they come.
    pub(crate) fn hedge_at(&mut self, at: Instant) {
        let end = self.deadline();
        if at < end {
            self.after_hedge = Some(end);
            self.deadline.as_mut().reset(at);
        }
    }

    /// When the calls time out (a hedge set meanwhile aside).
    pub(crate) fn deadline(&self) -> Instant {
        self.after_hedge.unwrap_or_else(|| self.deadline.deadline())
    }

    /// The calls not answered yet, by node.
    pub(crate) fn pending_nodes(&self) -> impl Iterator<Item = &T> {
        self.calls
            .iter()
            .filter(|(_, call)| call.is_some())
            .map(|(node, _)| node)
    }

    pub(crate) fn push(&mut self, node: T, mut call: NodeCall) {
        if self.order == Order::Sent {
            // Polled only in its turn: it must not wait for that to be sent.
            call.send_now();
        }
        self.calls.push((node, Some(call)));
        self.pending += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// The calls not answered yet.
    pub(crate) fn into_pending(self) -> impl Iterator<Item = (T, NodeCall)> {
        self.calls
            .into_iter()
            .filter_map(|(node, call)| Some((node, call?)))
    }

    /// The next answer, in the [`Order`] asked for; `None` when every call
    /// has answered. Once the deadline has passed, the calls left time out.
    pub(crate) async fn next(&mut self) -> Option<(T, Result<Reply, Error>)> {
        loop {
            match self.next_step().await? {
                Step::Answer(node, answer) => return Some((node, answer)),
                Step::Hedge => continue,
            }
        }
    }

    /// The next answer, or the hedge (see [`hedge_at`](Self::hedge_at)).
    pub(crate) async fn next_step(&mut self) -> Option<Step<T>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Step<T>>> {
        if self.pending == 0 {
            return Poll::Ready(None);
        }
        for (node, slot) in &mut self.calls {
            let Some(call) = slot else { continue };
            if let Poll::Ready(answer) = Pin::new(call).poll(cx) {
                *slot = None;
                self.pending -= 1;
                return Poll::Ready(Some(Step::Answer(node.clone(), answer)));
            }
            if self.order == Order::Sent {
                break;
            }
        }
        ready!(self.deadline.as_mut().poll(cx));
        if let Some(end) = self.after_hedge.take() {
            self.deadline.as_mut().reset(end);
            self.order = Order::Arrival;
            return Poll::Ready(Some(Step::Hedge));
        }
        let (node, slot) = self
            .calls
            .iter_mut()
            .find(|(_, slot)| slot.is_some())
            .expect("a call is pending");
        let answer = Err(slot.take().expect("found").time_out(self.timeout));
        self.pending -= 1;
        Poll::Ready(Some(Step::Answer(node.clone(), answer)))
    }
}

/// How often a round looks whether the nodes it still waits for are
/// stalled: a quarter of `stall_after`, at least a millisecond.
pub(crate) fn recheck(stall_after: Duration) -> Duration {
    (stall_after / 4).max(Duration::from_millis(1))
}

/// What [`Calls::next_watched`] gives.
pub(crate) enum Watched<T> {
    Answer(T, Result<Reply, Error>),
    /// Every call left is on a stalled node.
    OnlyStalled,
}

impl<'m> Calls<'_, &'m Arc<Member>> {
    /// Whether every node not answered yet is stalled.
    pub(crate) fn only_stalled_left(&self, stall_after: Duration) -> bool {
        let now = std::time::Instant::now();
        self.pending_nodes()
            .all(|m| m.is_stalled_at(stall_after, now))
    }

    /// Makes [`next_watched`](Self::next_watched) look at the nodes still
    /// silent every [`recheck`] (nothing when `stall_after` is zero).
    pub(crate) fn watch_stalls(&mut self, stall_after: Duration) {
        if !stall_after.is_zero() {
            self.hedge_at(Instant::now() + recheck(stall_after));
        }
    }

    /// The next answer, or (when `may_leave`) word that only stalled nodes
    /// are left, for the caller to finish them in the background rather
    /// than wait for their timeout. `None` when every call has answered.
    pub(crate) async fn next_watched(
        &mut self,
        stall_after: Duration,
        may_leave: bool,
    ) -> Option<Watched<&'m Arc<Member>>> {
        loop {
            match self.next_step().await? {
                Step::Answer(node, answer) => return Some(Watched::Answer(node, answer)),
                Step::Hedge if may_leave && self.only_stalled_left(stall_after) => {
                    return Some(Watched::OnlyStalled)
                }
                Step::Hedge => self.watch_stalls(stall_after),
            }
        }
    }
}

type NodeAnswer<'a> = (&'a Arc<Member>, Result<Reply, Error>);

/// The answers gathered before a fan-out returned.
pub(crate) struct Gathered<'a> {
    pub(crate) answers: Vec<NodeAnswer<'a>>,
    pub(crate) acked: usize,
    /// The targets that had not answered when the fan-out returned: they
    /// may or may not store the write.
    pub(crate) pending: Vec<&'a Arc<Member>>,
    /// Their calls, for the caller to finish in the background.
    pub(crate) stragglers: Option<Stragglers>,
}

impl<'a> Gathered<'a> {
    /// The nodes that did not acknowledge.
    pub(crate) fn failed(&self) -> Vec<std::net::SocketAddr> {
        self.answers
            .iter()
            .filter(|(_, answer)| !is_ack(answer))
            .map(|(m, _)| m.addr)
            .collect()
    }

    /// The nodes that acknowledged.
    pub(crate) fn holders(&self) -> Vec<&'a Arc<Member>> {
        self.answers
            .iter()
            .filter(|(_, answer)| is_ack(answer))
            .map(|(m, _)| *m)
            .collect()
    }

    /// The nodes that did not acknowledge, or had not answered yet.
    pub(crate) fn missed(&self) -> impl Iterator<Item = &'a Arc<Member>> + '_ {
        self.answers
            .iter()
            .filter(|(_, answer)| !is_ack(answer))
            .map(|(m, _)| *m)
            .chain(self.pending.iter().copied())
    }

    /// The first answer of a node that acknowledged, preferring `first` (the primary).
    pub(crate) fn reply_of(&self, first: Option<&Arc<Member>>) -> Option<&Reply> {
        let acked = |(m, a): &&NodeAnswer<'_>| is_ack(a).then_some(m.addr);
        first
            .and_then(|p| self.answers.iter().find(|x| acked(x) == Some(p.addr)))
            .or_else(|| self.answers.iter().find(|x| acked(x).is_some()))
            .and_then(|(_, a)| a.as_ref().ok())
    }
}

/// A node acknowledged a write when it answered without an error: a miss or
/// `NF` of a delete is an acknowledgement too (the key is gone there).
pub(crate) fn is_ack(answer: &Result<Reply, Error>) -> bool {
    matches!(answer, Ok(Reply::Meta(_) | Reply::Ok))
}

/// Sends `command` to every target and returns once `required` of them
/// acknowledged and the others answered or `grace` passed since, or all
/// answered. Those still pending are listed in [`Gathered::pending`], and
/// their calls are in [`Gathered::stragglers`], within the same deadline.
///
/// A node that fails a write of `key` may hold a stale copy: the key is
/// journaled for it and it is taken Down, so it is made safe before it
/// serves reads again. A node that refuses the write with a server error
/// (out of memory) gets a best-effort delete instead.
// Not an `async fn`: see the `replicate` module's docs on future size.
#[allow(clippy::manual_async_fn)]
pub(crate) fn write<'s, 'a: 's>(
    targets: &'s [&'a Arc<Member>],
    command: &'s Command,
    key: Option<&'s Key>,
    required: usize,
    grace: Duration,
    stall_after: Duration,
    timeout: Duration,
) -> impl Future<Output = Gathered<'a>> + Send + 's {
    async move {
        let mut deadline = pin!(tokio::time::sleep(timeout));
        // Only a policy short of all the nodes needs the first answers first.
        let order = match required < targets.len() {
            true => Order::Arrival,
            false => Order::Sent,
        };
        let mut calls = Calls::new(deadline.as_mut(), timeout, order, targets.len());
        for &member in targets {
            calls.push(member, member.start(command.clone()));
        }
        // The answers and the count of acks only: the rest of `Gathered`
        // is made after the last await (a smaller future).
        let mut answers = Vec::with_capacity(targets.len());
        let mut acked = 0;
        // Nodes that stopped answering are not waited for: the grace ends
        // once every node still pending is stalled (looked at every quarter
        // of `stall_after`).
        let mut grace_ends: Option<Instant> = None;
        loop {
            let next = match grace_ends {
                None => calls.next().await,
                Some(end) => {
                    let look = match stall_after.is_zero() {
                        true => end,
                        false => end.min(Instant::now() + recheck(stall_after)),
                    };
                    match tokio::time::timeout_at(look, calls.next()).await {
                        Ok(next) => next,
                        Err(_) if look >= end || calls.only_stalled_left(stall_after) => break,
                        Err(_) => continue,
                    }
                }
            };
            let Some((member, answer)) = next else { break };
            let clean_up = key.and_then(|key| after_write(member, key, &answer));
            acked += usize::from(is_ack(&answer));
            answers.push((member, answer));
            if let Some(clean_up) = clean_up {
                clean_up.await;
            }
            if acked >= required && grace_ends.is_none() {
                let stalled = calls.only_stalled_left(stall_after);
                grace_ends = Some(Instant::now() + if stalled { Duration::ZERO } else { grace });
            }
        }
        let mut gathered = Gathered {
            answers,
            acked,
            pending: Vec::new(),
            stragglers: None,
        };
        if !calls.is_empty() {
            gathered.pending = targets
                .iter()
                .copied()
                .filter(|t| !gathered.answers.iter().any(|(m, _)| Arc::ptr_eq(m, t)))
                .collect();
            gathered.stragglers = Some(Stragglers::new(calls, key.cloned()));
        }
        gathered
    }
}

/// The calls of a write that returned before they answered.
pub(crate) struct Stragglers {
    calls: Vec<(Arc<Member>, NodeCall)>,
    key: Option<Key>,
    deadline: Instant,
    timeout: Duration,
}

impl Stragglers {
    /// The calls left in `calls`, for `key` (none for a read), under
    /// their deadline.
    pub(crate) fn new<'d>(calls: Calls<'d, &Arc<Member>>, key: Option<Key>) -> Self {
        let (timeout, deadline) = (calls.timeout, calls.deadline());
        Stragglers {
            calls: calls
                .into_pending()
                .map(|(member, call)| (Arc::clone(member), call))
                .collect(),
            key,
            deadline,
            timeout,
        }
    }

    /// Awaits the calls (within the write's deadline), accounting for each
    /// answer like the fan-out does, and returns the nodes that applied
    /// the write after all, with their answers.
    pub(crate) async fn finish(self) -> Vec<(Arc<Member>, Reply)> {
        let deadline = pin!(tokio::time::sleep_until(self.deadline));
        let mut calls = Calls::new(deadline, self.timeout, Order::Sent, self.calls.len());
        for (member, call) in self.calls {
            calls.push(member, call);
        }
        let mut applied = Vec::new();
        while let Some((member, answer)) = calls.next().await {
            if let Some(key) = &self.key {
                if let Some(clean_up) = after_write(&member, key, &answer) {
                    clean_up.await;
                }
            }
            if let (true, Ok(reply)) = (is_applied(&answer), answer) {
                applied.push((member, reply));
            }
        }
        applied
    }

    /// Finishes the calls on a task of their own.
    pub(crate) fn spawn(self) {
        tokio::spawn(self.finish().in_current_span());
    }
}

/// A node applied a write: it stored, deleted or touched the key, or the
/// key was already gone there (a delete's `NF`), unlike an answer that
/// refused it (`NS`, `EX`).
fn is_applied(answer: &Result<Reply, Error>) -> bool {
    match answer {
        Ok(Reply::Meta(meta)) => !matches!(meta.status, MetaStatus::NotStored | MetaStatus::Exists),
        Ok(Reply::Ok) => true,
        _ => false,
    }
}

/// Accounts for one node's answer to a write of `key`; a node that refused
/// it with a server error is cleaned up by the future returned.
fn after_write<'m>(
    member: &'m Member,
    key: &Key,
    answer: &Result<Reply, Error>,
) -> Option<Pin<Box<dyn Future<Output = ()> + Send + 'm>>> {
    match answer {
        Ok(Reply::Meta(meta)) if meta.status != MetaStatus::Noop => None,
        Ok(Reply::Error(_)) => {
            // The node is alive but did not store: make sure it keeps no older
            // copy. (Boxed: rare, and awaited inline it would make every
            // write's future larger.)
            let delete = MetaDelete::new(key.clone()).into();
            Some(Box::pin(async move {
                let _ = member.call(delete).await;
            }))
        }
        Err(err) if err.is_unsent() && member.state() == memha_health::NodeState::Down => {
            member.record_missed(key);
            None
        }
        _ => {
            member.take_down(Some(key));
            None
        }
    }
}
