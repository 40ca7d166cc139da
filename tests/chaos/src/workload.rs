//! The session workload: tasks creating, reading, updating, touching and
//! deleting their own keys (plus a few shared ones), recording every call.
//!
//! With several clients, the tasks are spread over them and the shared keys
//! are sessions every client uses: one client creates a session (`add` or
//! `set`), others read, update, touch and delete it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use memha_client::{Client, DeleteOutcome, Item, StoreOutcome, TouchOutcome, Ttl};

use crate::history::{Clock, Failure, Life, Op, Outcome, Phase, Record};
use memha_tests::Rng;

/// Bytes that look like protocol framing, slipped into some values.
const TRICKY: &[&[u8]] = &[
    b"\r\nEND\r\n",
    b"\r\nmn\r\n",
    b"\r\nVA 5 f1\r\n",
    b"\0\xff\r\n",
];

/// The key a task owns: `s<task>k<index>`.
pub fn owned_key(task: usize, index: usize) -> String {
    format!("s{task:02}k{index}")
}

/// A shared key: `shared<index>`.
pub fn shared_key(index: usize) -> String {
    format!("shared{index}")
}

/// What one task does.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) task: usize,
    /// The client the task uses, when the run has several.
    pub(crate) client: Option<usize>,
    pub(crate) keys: Vec<String>,
    pub(crate) shared: Arc<Vec<String>>,
    /// The shared keys are sessions used across clients (created, read,
    /// updated, touched and deleted by any task), not only set and read.
    pub(crate) sessions: bool,
    pub(crate) rng: Rng,
    pub(crate) clock: Clock,
    /// When to stop starting new calls.
    pub(crate) stop_at: Duration,
    /// Pause between two calls, in milliseconds.
    pub(crate) think_ms: (u64, u64),
}

impl Session {
    /// Runs until `stop_at` and returns the task's history.
    pub(crate) async fn run(mut self, client: Client) -> Vec<Record> {
        let mut history = Vec::new();
        let mut seq = 0u64;
        while self.clock.now() < self.stop_at {
            seq += 1;
            let shared =
                !self.shared.is_empty() && self.rng.chance(if self.sessions { 12 } else { 3 });
            let key = if shared {
                self.rng.pick(&self.shared).clone()
            } else {
                self.rng.pick(&self.keys).clone()
            };
            let op = if shared && self.sessions {
                self.session_op(&key, seq)
            } else if shared {
                if self.rng.chance(50) {
                    Op::Get
                } else {
                    self.store_op(&key, seq, false)
                }
            } else {
                match self.rng.below(100) {
                    0..=44 => Op::Get,
                    45..=72 => self.store_op(&key, seq, false),
                    73..=79 => self.store_op(&key, seq, true),
                    80..=89 => Op::Delete,
                    _ => Op::Touch { life: self.life() },
                }
            };
            history.push(
                call(
                    &client,
                    (self.task, self.client),
                    key,
                    op,
                    self.clock,
                    Phase::Load,
                )
                .await,
            );
            let think = self.rng.between(self.think_ms.0, self.think_ms.1);
            tokio::time::sleep(Duration::from_millis(think)).await;
        }
        history
    }

    /// An operation on a session shared by every client. Sessions live long
    /// (600 s or for ever), so that a miss always means a deletion.
    fn session_op(&mut self, key: &str, seq: u64) -> Op {
        let life = |rng: &mut Rng| {
            if rng.chance(30) {
                Life::Never
            } else {
                Life::Secs(600)
            }
        };
        match self.rng.below(100) {
            0..=44 => Op::Get,
            45..=79 => {
                let value = self.value(key, seq);
                let flags = self.rng.next_u64() as u32;
                let life = life(&mut self.rng);
                // Created (`add`) now and then, else updated (`set`).
                if self.rng.chance(30) {
                    Op::Add { value, flags, life }
                } else {
                    Op::Set { value, flags, life }
                }
            }
            80..=91 => Op::Delete,
            _ => Op::Touch {
                life: life(&mut self.rng),
            },
        }
    }

    fn life(&mut self) -> Life {
        match self.rng.below(100) {
            0..=9 => Life::Never,
            10..=34 => Life::Secs(self.rng.between(2, 5) as u32),
            _ => Life::Secs(600),
        }
    }

    fn store_op(&mut self, key: &str, seq: u64, add: bool) -> Op {
        let value = self.value(key, seq);
        let flags = self.rng.next_u64() as u32;
        let life = self.life();
        if add {
            Op::Add { value, flags, life }
        } else {
            Op::Set { value, flags, life }
        }
    }

    /// `<key>|t<task>s<seq>|<padding>`: unique, self-describing, and now
    /// and then holding bytes that look like protocol framing.
    fn value(&mut self, key: &str, seq: u64) -> Bytes {
        let mut value = format!("{key}|t{}s{seq}|", self.task).into_bytes();
        let padding = self.rng.below(64) as usize;
        for _ in 0..padding {
            value.push(b'a' + self.rng.below(26) as u8);
        }
        if self.rng.chance(5) {
            let tricky = self.rng.pick(TRICKY);
            value.extend_from_slice(tricky);
            value.push(b'z');
        }
        Bytes::from(value)
    }
}

fn ttl_of(life: Life) -> Ttl {
    match life {
        Life::Never => Ttl::Never,
        Life::Secs(secs) => Ttl::seconds(secs),
    }
}

fn item(item: Option<Item>) -> Outcome {
    match item {
        Some(item) => Outcome::Item {
            value: item.value,
            flags: item.flags,
            expires_in: item.expires_in,
        },
        None => Outcome::Miss,
    }
}

/// Makes one call and records it.
pub(crate) async fn call(
    client: &Client,
    (task, client_index): (usize, Option<usize>),
    key: String,
    op: Op,
    clock: Clock,
    phase: Phase,
) -> Record {
    let start = clock.now();
    let outcome = match &op {
        Op::Get => client.get(key.as_str()).await.map(item),
        Op::Set { value, flags, life } => client
            .set(key.as_str(), value.clone())
            .flags(*flags)
            .ttl(ttl_of(*life))
            .await
            .map(store),
        Op::Add { value, flags, life } => client
            .add(key.as_str(), value.clone())
            .flags(*flags)
            .ttl(ttl_of(*life))
            .await
            .map(store),
        Op::Delete => client
            .delete(key.as_str())
            .await
            .map(|outcome| match outcome {
                DeleteOutcome::Deleted => Outcome::Deleted,
                DeleteOutcome::NotFound => Outcome::NotFound,
            }),
        Op::Touch { life } => client
            .touch(key.as_str(), ttl_of(*life))
            .await
            .map(|outcome| match outcome {
                TouchOutcome::Touched => Outcome::Touched,
                TouchOutcome::NotFound => Outcome::NotFound,
            }),
    }
    .unwrap_or_else(|error| Outcome::Failed(Failure::of(&error)));
    let end = clock.now();
    Record {
        task,
        client: client_index,
        key,
        op,
        start,
        end,
        outcome,
        phase,
    }
}

fn store(outcome: StoreOutcome) -> Outcome {
    match outcome {
        StoreOutcome::Stored => Outcome::Stored,
        StoreOutcome::NotStored => Outcome::NotStored,
        // Neither may happen without a CAS token: the checker flags it.
        other => Outcome::Failed(Failure {
            kind: "Unexpected".to_owned(),
            message: format!("unexpected {other:?} without a CAS token"),
        }),
    }
}
