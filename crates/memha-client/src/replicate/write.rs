//! Writes that go to every writable node: set, delete, touch, flush.

use std::pin::pin;
use std::sync::Arc;

use memha_proto::{Command, Key, MetaDelete, MetaGet, MetaReply, MetaStatus, Reply};

use super::counters::Event;
use super::fanout::{self, Calls, Gathered, Order};
use super::members::{Member, Placement};
use super::read::{repair_command, shaped};
use super::resolve::{Copy, Repair};
use super::Shared;
use crate::error::{Error, ErrorKind};

impl Shared {
    /// A plain set (`command` is an `ms`): every writable node, then the ack
    /// policy decides.
    pub(super) async fn set(&self, command: Command) -> Result<Reply, Error> {
        let Command::MetaSet(set) = &command else {
            unreachable!("a set")
        };
        let key = &set.key;
        let members = self.members.snapshot();
        let placement = Placement::of(&members, key.as_bytes());
        let targets = self.writable(&members, &placement, key)?;
        let gathered = self.fan_out(&targets, &command, key).await?;
        Ok(gathered
            .reply_of(placement.primary())
            .cloned()
            .expect("an acknowledged write has a reply"))
    }

    /// A delete: every writable node; deleted if any node had the key.
    pub(super) async fn delete(&self, delete: MetaDelete) -> Result<Reply, Error> {
        let key = delete.key.clone();
        let members = self.members.snapshot();
        let placement = Placement::of(&members, key.as_bytes());
        let targets = self.writable(&members, &placement, &key)?;
        let trusted = readable_now(&targets);
        let gathered = self
            .fan_out(&targets, &Command::MetaDelete(delete), &key)
            .await?;
        // A Rejoining node may still hold a copy it is about to lose: only
        // the nodes that were Up say whether the key existed.
        let deleted = gathered.answers.iter().any(|(member, answer)| {
            trusted.contains(&member.addr)
                && matches!(answer, Ok(Reply::Meta(m)) if m.status == MetaStatus::Stored)
        });
        Ok(meta_status(if deleted {
            MetaStatus::Stored
        } else {
            MetaStatus::NotFound
        }))
    }

    /// A touch (`mg` with `T`, maybe with the value): every writable node;
    /// a node that lacked the key gets it from one that had it.
    pub(super) async fn touch(&self, caller: MetaGet) -> Result<Reply, Error> {
        let key = caller.key.clone();
        let members = self.members.snapshot();
        let placement = Placement::of(&members, key.as_bytes());
        let targets = self.writable(&members, &placement, &key)?;
        let trusted = readable_now(&targets);
        let mut get = caller.clone();
        (get.value, get.client_flags, get.ttl, get.cas) = (true, true, true, true);
        let gathered = self.fan_out(&targets, &Command::MetaGet(get), &key).await?;
        let primary = placement.primary();
        // Like a read, trust only the nodes that were Up: a Rejoining node
        // may hold a deleted or overwritten copy, which must be neither
        // reported nor copied to the others (promise 2).
        let Some((_, best)) = gathered
            .answers
            .iter()
            .filter_map(hit_of)
            .filter(|(m, _)| trusted.contains(&m.addr))
            .max_by_key(|(m, _)| primary.is_some_and(|p| Arc::ptr_eq(p, m)))
        else {
            return Ok(shaped(&caller, meta_status(MetaStatus::Miss)));
        };
        let copy = Copy {
            value: best.value.clone().unwrap_or_default(),
            flags: best.flags.client_flags.unwrap_or(0),
            ttl: best.flags.ttl.unwrap_or(-1),
            cas: 0,
        };
        // memcached reports the TTL from before the touch: the new one is the caller's.
        let exptime = caller.touch.unwrap_or(0);
        let mut answer = best.clone();
        let mut deadline = pin!(tokio::time::sleep(self.probe_timeout));
        let mut repairs = Calls::new(deadline.as_mut(), self.probe_timeout, Order::Sent);
        for (member, answer) in &gathered.answers {
            if matches!(answer, Ok(Reply::Meta(m)) if m.status == MetaStatus::Miss) {
                let command = repair_command(&caller, &copy, exptime, Repair::Add);
                repairs.push(*member, member.start(command));
            }
        }
        while let Some((member, result)) = repairs.next().await {
            if let Ok(Reply::Meta(meta)) = result {
                if meta.status == MetaStatus::Stored {
                    self.counters.record(Event::Repaired {
                        node: &member.id,
                        key: &caller.key,
                        why: "touch",
                    });
                    if primary.is_some_and(|p| Arc::ptr_eq(p, member)) {
                        answer.flags.cas = meta.flags.cas;
                    }
                }
            }
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
        let required = self.config.ack.required(targets.len());
        let gathered = fanout::write(&targets, &command, None, required, self.probe_timeout).await;
        self.check_acks(&gathered, required)?;
        Ok(Reply::Ok)
    }

    /// The writable nodes for `key` (journaling it for Down nodes).
    pub(super) fn writable<'a>(
        &self,
        members: &[Arc<Member>],
        placement: &Placement<'a>,
        key: &Key,
    ) -> Result<Vec<&'a Arc<Member>>, Error> {
        let targets = placement.writable_journaling(key);
        if targets.is_empty() {
            return Err(self.no_nodes(members));
        }
        Ok(targets)
    }

    /// Writes to `targets` under the ack policy.
    pub(super) async fn fan_out<'a>(
        &self,
        targets: &[&'a Arc<Member>],
        command: &Command,
        key: &Key,
    ) -> Result<Gathered<'a>, Error> {
        let required = self.config.ack.required(targets.len());
        let gathered =
            fanout::write(targets, command, Some(key), required, self.probe_timeout).await;
        self.check_acks(&gathered, required)?;
        Ok(gathered)
    }

    /// Writes to `targets`, `required` of which must acknowledge.
    pub(super) async fn fan_out_required(
        &self,
        targets: &[&Arc<Member>],
        command: &Command,
        key: &Key,
        required: usize,
    ) -> Result<(), Error> {
        let gathered =
            fanout::write(targets, command, Some(key), required, self.probe_timeout).await;
        self.check_acks(&gathered, required)
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
        let mut error = Error::new(ErrorKind::PartialWrite {
            acked: gathered.acked,
            required,
            failed,
        });
        if let Some(cause) = first_error {
            error = error.with_source(cause);
        }
        Err(error)
    }
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

fn hit_of<'a, 'm>(
    answer: &'a (&'m Arc<Member>, Result<Reply, Error>),
) -> Option<(&'m Arc<Member>, &'a MetaReply)> {
    match &answer.1 {
        Ok(Reply::Meta(meta)) if meta.status == MetaStatus::Value => Some((answer.0, meta)),
        _ => None,
    }
}

pub(super) fn meta_status(status: MetaStatus) -> Reply {
    Reply::Meta(MetaReply {
        status,
        value: None,
        flags: Default::default(),
    })
}
