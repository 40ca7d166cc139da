//! Reads: a subset of Up nodes, miss failover, read repair, divergence.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use memha_proto::{Command, MetaFlags, MetaGet, MetaReply, MetaSet, MetaStatus, Reply, SetMode};
use tokio::sync::oneshot;

use super::members::{Member, Placement};
use super::resolve::{self, Copy, NodeRead, Repair};
use super::Shared;
use crate::error::{Error, ErrorKind};
use crate::Ttl;

struct Asked {
    member: Arc<Member>,
    read: NodeRead,
    reply: Option<MetaReply>,
    error: Option<Error>,
}

impl Shared {
    pub(super) async fn read(self: &Arc<Self>, get: MetaGet) -> Result<Reply, Error> {
        if !self.config.return_on_first_hit {
            return self.read_and_repair(get, None).await;
        }
        let (first_hit, early) = oneshot::channel();
        let this = self.clone();
        let full = tokio::spawn(async move { this.read_and_repair(get, Some(first_hit)).await });
        match early.await {
            Ok(hit) => Ok(hit),
            // No hit came early: the whole read's answer is the answer.
            Err(_) => full.await.unwrap_or_else(|_| {
                Err(Error::new(ErrorKind::Closed).with_detail("the read task stopped"))
            }),
        }
    }

    pub(super) async fn read_and_repair(
        &self,
        caller: MetaGet,
        mut first_hit: Option<oneshot::Sender<Reply>>,
    ) -> Result<Reply, Error> {
        let members = self.members.snapshot();
        let placement = Placement::of(&members, caller.key.as_bytes());
        let up = placement.readable();
        if up.is_empty() {
            return Err(self.no_nodes(&members));
        }
        let wanted = self.config.read_count(up.len());
        let (first, rest) = self.choose_subset(&up, wanted);
        let mut get = caller.clone();
        (get.value, get.client_flags, get.ttl, get.cas) = (true, true, true, true);
        let command = Command::MetaGet(get);

        let mut asked = ask(&first, &command, &mut first_hit).await;
        if !asked.iter().any(|a| matches!(a.read, NodeRead::Hit(_))) && !rest.is_empty() {
            self.counters.miss_failovers.fetch_add(1, Relaxed);
            asked.extend(ask(&rest, &command, &mut first_hit).await);
        }

        let reads: Vec<NodeRead> = asked.iter().map(|a| a.read.clone()).collect();
        let primary = asked.iter().position(|a| Arc::ptr_eq(&a.member, &up[0]));
        let resolution = resolve::resolve(&reads, primary);
        let Some(winner) = resolution.winner else {
            return match asked.iter().any(|a| a.read == NodeRead::Miss) {
                true => Ok(shaped(&caller, miss())),
                false => Err(asked
                    .into_iter()
                    .find_map(|a| a.error)
                    .unwrap_or_else(|| self.no_nodes(&members))),
            };
        };
        if resolution.diverged {
            self.counters.divergences.fetch_add(1, Relaxed);
            tracing::debug!(key_hash = self.key_hash(&caller.key), "replicas diverged");
        }
        let NodeRead::Hit(best) = &asked[winner].read else {
            unreachable!("the winner hit")
        };
        let mut answer = asked[winner].reply.clone().expect("a hit has a reply");
        // The CAS token a read returns is the primary's: `cas` is checked there.
        // (When the primary hit, it is the winner.) Without it, the winner's
        // token is returned, and a `cas` with it fails safely at the primary.
        let mut primary_cas = None;
        let repairs = resolution.repairs.iter().map(|&(i, repair)| {
            let member = asked[i].member.clone();
            let exptime = Ttl::from_remaining(best.ttl).exptime();
            let command = repair_command(&caller, best, exptime, repair);
            async move { (member.clone(), member.call(command).await) }
        });
        let mut repairs: FuturesUnordered<_> = repairs.collect();
        while let Some((member, result)) = repairs.next().await {
            if let Ok(Reply::Meta(meta)) = &result {
                if meta.status == MetaStatus::Stored {
                    self.counters.repairs.fetch_add(1, Relaxed);
                    if Arc::ptr_eq(&member, &up[0]) {
                        primary_cas = meta.flags.cas;
                    }
                }
            }
        }
        answer.flags.cas = primary_cas.or(answer.flags.cas);
        Ok(shaped(&caller, Reply::Meta(answer)))
    }

    /// The primary plus `wanted - 1` other Up nodes, rotating so every node
    /// is read (and so repaired) over time; and the Up nodes left out.
    fn choose_subset(
        &self,
        up: &[Arc<Member>],
        wanted: usize,
    ) -> (Vec<Arc<Member>>, Vec<Arc<Member>>) {
        let others = &up[1..];
        let mut first = vec![up[0].clone()];
        let mut rest = Vec::new();
        if !others.is_empty() {
            let start = self.rotation.fetch_add(1, Relaxed) % others.len();
            for (n, member) in others
                .iter()
                .cycle()
                .skip(start)
                .take(others.len())
                .enumerate()
            {
                if n + 1 < wanted {
                    first.push(member.clone());
                } else {
                    rest.push(member.clone());
                }
            }
        }
        (first, rest)
    }
}

/// Asks every node in `nodes`, forwarding the first hit as soon as it comes.
async fn ask(
    nodes: &[Arc<Member>],
    command: &Command,
    first_hit: &mut Option<oneshot::Sender<Reply>>,
) -> Vec<Asked> {
    let mut pending: FuturesUnordered<_> = nodes
        .iter()
        .map(|member| {
            let member = member.clone();
            let command = command.clone();
            async move {
                let answer = member.call(command).await;
                (member, answer)
            }
        })
        .collect();
    let mut asked = Vec::with_capacity(nodes.len());
    while let Some((member, answer)) = pending.next().await {
        let entry = match answer {
            Ok(Reply::Meta(meta)) => match (&meta.status, &meta.value) {
                (MetaStatus::Value, Some(value)) => {
                    if let Some(sender) = first_hit.take() {
                        let _ = sender.send(Reply::Meta(meta.clone()));
                    }
                    Asked {
                        read: NodeRead::Hit(Copy {
                            value: value.clone(),
                            flags: meta.flags.client_flags.unwrap_or(0),
                            ttl: meta.flags.ttl.unwrap_or(-1),
                            cas: meta.flags.cas.unwrap_or(0),
                        }),
                        reply: Some(meta),
                        member,
                        error: None,
                    }
                }
                (MetaStatus::Miss, _) => Asked {
                    read: NodeRead::Miss,
                    reply: None,
                    member,
                    error: None,
                },
                _ => Asked {
                    read: NodeRead::Failed,
                    reply: None,
                    member,
                    error: Some(Error::protocol(format!(
                        "unexpected {} to mg",
                        meta.status.code()
                    ))),
                },
            },
            Ok(other) => Asked {
                read: NodeRead::Failed,
                reply: None,
                member,
                error: Some(Error::protocol(format!("unexpected {other:?} to mg"))),
            },
            Err(error) => Asked {
                read: NodeRead::Failed,
                reply: None,
                member,
                error: Some(error),
            },
        };
        asked.push(entry);
    }
    asked
}

/// The write that repairs a node: an add where it missed (never clobbers a
/// newer write), a CAS-guarded set where it held another copy.
/// `exptime` is in memcached's units (0 never, seconds up to 30 days, a Unix time beyond).
pub(super) fn repair_command(
    caller: &MetaGet,
    best: &Copy,
    exptime: i64,
    repair: Repair,
) -> Command {
    let mut set = MetaSet::new(caller.key.clone(), best.value.clone());
    set.client_flags = Some(best.flags);
    set.ttl = Some(exptime);
    set.return_cas = true;
    match repair {
        Repair::Add => set.mode = SetMode::Add,
        Repair::Overwrite { cas } => set.compare_cas = Some(cas),
    }
    Command::MetaSet(set)
}

fn miss() -> Reply {
    Reply::Meta(MetaReply {
        status: MetaStatus::Miss,
        value: None,
        flags: MetaFlags::default(),
    })
}

/// Gives the caller the reply its own `mg` would have had: the replication
/// layer always asks for value, flags, TTL and CAS, the caller maybe not.
pub(super) fn shaped(caller: &MetaGet, reply: Reply) -> Reply {
    let Reply::Meta(mut meta) = reply else {
        return reply;
    };
    if !caller.value && meta.status == MetaStatus::Value {
        meta.status = MetaStatus::Stored;
        meta.value = None;
    }
    if !caller.client_flags {
        meta.flags.client_flags = None;
    }
    if !caller.ttl {
        meta.flags.ttl = None;
    }
    if !caller.cas {
        meta.flags.cas = None;
    }
    Reply::Meta(meta)
}
