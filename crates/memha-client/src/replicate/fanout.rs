//! Sending one command to many nodes at once and counting acknowledgements.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use memha_health::Observation;
use memha_proto::{Command, Key, MetaDelete, MetaStatus, Reply};

use super::members::Member;
use crate::error::Error;

type NodeAnswer = (Arc<Member>, Result<Reply, Error>);
type Pending = FuturesUnordered<Pin<Box<dyn Future<Output = NodeAnswer> + Send>>>;

/// The answers gathered before a fan-out returned.
pub(crate) struct Gathered {
    pub(crate) answers: Vec<NodeAnswer>,
    pub(crate) acked: usize,
}

impl Gathered {
    /// The nodes that did not acknowledge.
    pub(crate) fn failed(&self) -> Vec<std::net::SocketAddr> {
        self.answers
            .iter()
            .filter(|(_, answer)| !is_ack(answer))
            .map(|(m, _)| m.addr)
            .collect()
    }

    /// The first answer of a node that acknowledged, preferring `first` (the primary).
    pub(crate) fn reply_of(&self, first: Option<&Arc<Member>>) -> Option<&Reply> {
        let acked = |(m, a): &&NodeAnswer| is_ack(a).then_some(()).map(|_| m.addr);
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
/// acknowledged or all answered. The others finish in the background.
///
/// A node that fails a write of `key` may hold a stale copy: the key is
/// journaled for it and it is taken Down, so it is made safe before it
/// serves reads again. A node that refuses the write with a server error
/// (out of memory) gets a best-effort delete instead.
pub(crate) async fn write(
    targets: &[Arc<Member>],
    command: Command,
    key: Option<&Key>,
    required: usize,
) -> Gathered {
    let mut pending: Pending = targets
        .iter()
        .map(|member| {
            let member = member.clone();
            let command = command.clone();
            let key = key.cloned();
            Box::pin(async move {
                let answer = member.call(command).await;
                if let Some(key) = key {
                    after_write(&member, &key, &answer).await;
                }
                (member, answer)
            }) as Pin<Box<dyn Future<Output = NodeAnswer> + Send>>
        })
        .collect();
    let mut gathered = Gathered {
        answers: Vec::with_capacity(targets.len()),
        acked: 0,
    };
    while gathered.acked < required {
        let Some((member, answer)) = pending.next().await else {
            break;
        };
        gathered.acked += usize::from(is_ack(&answer));
        gathered.answers.push((member, answer));
    }
    if !pending.is_empty() {
        tokio::spawn(async move { while pending.next().await.is_some() {} });
    }
    gathered
}

async fn after_write(member: &Member, key: &Key, answer: &Result<Reply, Error>) {
    match answer {
        Ok(Reply::Meta(meta)) if meta.status != MetaStatus::Noop => {}
        Ok(Reply::Error(_)) => {
            // The node is alive but did not store: make sure it keeps no older copy.
            let _ = member.call(MetaDelete::new(key.clone()).into()).await;
        }
        Err(err) if err.is_unsent() && member.state() == memha_health::NodeState::Down => {
            member.record_missed(key);
        }
        _ => {
            member.record_missed(key);
            member.health.record(Observation::ConnectionFailed);
        }
    }
}
