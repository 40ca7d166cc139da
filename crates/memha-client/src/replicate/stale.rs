//! Stale markers: what one client knows about a copy that missed a write,
//! kept where every other client finds it (docs/consistency.md).
//!
//! When a write of key `K` is not stored by some node `N` (Down or Joining
//! in this client's view, or failing the write), the writer appends an
//! entry "`N` missed a write of `K`" to the marker of `K` on the nodes that
//! did store it, before it acknowledges. A read that finds the nodes
//! disagreeing reads the markers and lets every marked copy lose. The
//! writer removes its entries once it has invalidated `K` on `N` (the
//! node's rejoin); a marker also expires by itself.
//!
//! Markers cost nothing while every node is healthy: none is written, and
//! none is read unless a read finds copies that disagree.

use std::hash::BuildHasher;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use memha_proto::{Command, Key, MetaDelete, MetaGet, MetaSet, MetaStatus, Reply, SetMode};

use super::counters::Event;
use super::fanout::{Calls, Order, Stragglers, Watched};
use super::members::Member;
use super::reply::is_stored;
use super::Shared;
use crate::error::Error;
use crate::Ttl;

/// Every key memha keeps for itself starts with this; user keys may not.
pub const RESERVED_PREFIX: &str = "__memha:";

/// A stale marker's key: the prefix, then the user key (or, when that
/// would pass memcached's 250 bytes, `#` and a 128-bit hash of it).
const MARKER_PREFIX: &str = "__memha:stale:";

/// Entries read from one marker at most: a marker is appended to once per
/// missed write, so a long fault on a hot key can grow it.
const MAX_ENTRIES: usize = 4096;

/// Whether `key` lies in memha's reserved space.
pub(crate) fn is_reserved(key: &Key) -> bool {
    key.as_bytes().starts_with(RESERVED_PREFIX.as_bytes())
}

/// The key of `key`'s stale marker.
pub(crate) fn marker_key(key: &Key) -> Key {
    let bytes = key.as_bytes();
    let mut marker = Vec::with_capacity(MARKER_PREFIX.len() + bytes.len().min(33));
    marker.extend_from_slice(MARKER_PREFIX.as_bytes());
    if marker.len() + bytes.len() <= Key::MAX_LEN {
        marker.extend_from_slice(bytes);
    } else {
        let (a, b) = (crate::hash::score(1, bytes), crate::hash::score(2, bytes));
        marker.extend_from_slice(format!("#{a:016x}{b:016x}").as_bytes());
    }
    Key::try_from(marker).expect("a prefix and a valid key, or a hash, is a valid key")
}

/// One line of a marker: node `node` (its identity's seed) missed a write
/// that writer `writer` made at `at_ms` (Unix milliseconds, the writer's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) node: u64,
    pub(crate) writer: u64,
    pub(crate) at_ms: u64,
}

impl Entry {
    fn encode(&self, out: &mut BytesMut) {
        out.put_slice(
            format!("{:016x} {:016x} {}\n", self.node, self.writer, self.at_ms).as_bytes(),
        );
    }

    fn parse(line: &[u8]) -> Option<Entry> {
        let line = std::str::from_utf8(line).ok()?;
        let mut fields = line.split(' ');
        let node = u64::from_str_radix(fields.next()?, 16).ok()?;
        let writer = u64::from_str_radix(fields.next()?, 16).ok()?;
        let at_ms = fields.next()?.parse().ok()?;
        fields.next().is_none().then_some(Entry {
            node,
            writer,
            at_ms,
        })
    }
}

/// The entries of a marker's value; lines that do not parse are skipped
/// (a marker is bookkeeping: a garbled one must not fail a read).
pub(crate) fn parse_entries(value: &[u8]) -> Vec<Entry> {
    value
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(Entry::parse)
        .take(MAX_ENTRIES)
        .collect()
}

fn encode_entries(entries: &[Entry]) -> Bytes {
    let mut out = BytesMut::with_capacity(entries.len() * 52);
    for entry in entries {
        entry.encode(&mut out);
    }
    out.freeze()
}

/// The nodes known (from the markers read) to hold a stale copy of a key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Marked {
    seeds: Vec<u64>,
}

impl Marked {
    pub(crate) fn contains(&self, member: &Member) -> bool {
        self.seeds.contains(&member.seed())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.seeds.is_empty()
    }

    fn add(&mut self, entries: &[Entry]) {
        for entry in entries {
            if !self.seeds.contains(&entry.node) {
                self.seeds.push(entry.node);
            }
        }
    }
}

/// Sorts the holders' answers to a marker write: stored, or refused
/// (`NS`) into `refused`. A failure is dropped.
fn stored_or_refused<'v, 'h>(
    stored: &'v mut Vec<&'h Arc<Member>>,
    refused: &'v mut Vec<&'h Arc<Member>>,
) -> impl FnMut(&'h Arc<Member>, Result<Reply, Error>) + 'v {
    move |node, answer| match answer {
        answer if is_stored(&answer) => stored.push(node),
        Ok(Reply::Meta(m)) if m.status == MetaStatus::NotStored => refused.push(node),
        _ => {}
    }
}

/// How many times in all a marker is added, should it vanish from every
/// holder each time between the add that found it and the append (a
/// cleanup removing its last entries: chaos seed 19).
const MARKER_ATTEMPTS: usize = 3;

/// A random identity of this client: whose entries a cleanup may remove.
pub(crate) fn writer_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id()))
}

pub(crate) fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

impl Shared {
    /// Records on `holders` (the nodes that stored a write of `key`) that
    /// every node of `missed` missed it. Succeeds once at least one holder
    /// keeps the record: a reader that finds the write's copy disagreeing
    /// with a missed node's asks every node it can reach for markers.
    ///
    /// Returns the time the entries carry, for [`clear_late`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::PartialWrite`](crate::ErrorKind::PartialWrite) when no holder stored the record: the
    /// write must not be acknowledged.
    pub(super) async fn mark_stale(
        &self,
        key: &Key,
        missed: &[&Arc<Member>],
        holders: &[&Arc<Member>],
    ) -> Result<u64, Error> {
        let (at_ms, stored) = self.write_markers(key, missed, holders).await;
        if !stored.is_empty() {
            return Ok(at_ms);
        }
        let failed = holders.iter().map(|m| m.addr).collect();
        Err(Error::new_partial_write(0, 1, failed)
            .with_detail("no node stored the record of the nodes that missed the write"))
    }

    /// Records on `nodes` that every node of `missed` missed a write of
    /// `key`, and returns the time the entries carry and the nodes that
    /// stored the record. A write to nodes already known to be missing
    /// sends this beside itself, so the record costs no round trip more.
    pub(super) async fn write_markers<'h>(
        &self,
        key: &Key,
        missed: &[&Arc<Member>],
        nodes: &[&'h Arc<Member>],
    ) -> (u64, Vec<&'h Arc<Member>>) {
        let at_ms = now_ms();
        let entries: Vec<Entry> = missed
            .iter()
            .map(|m| Entry {
                node: m.seed(),
                writer: self.writer,
                at_ms,
            })
            .collect();
        let value = encode_entries(&entries);
        let marker = marker_key(key);
        let exptime = Ttl::After(self.config.stale_marker_ttl).exptime();
        // A marker is new (add, with its lifetime) or exists (append). One
        // that went between the two (a cleanup removed its last entries)
        // is added again, only while no holder keeps the record: a round
        // more costs the write a round trip (a timeout on a slow node).
        let mut add = MetaSet::new(marker.clone(), value.clone());
        add.mode = SetMode::Add;
        add.ttl = Some(exptime);
        let mut append = MetaSet::new(marker, value);
        append.mode = SetMode::Append;
        let mut stored = Vec::new();
        let mut to_add: Vec<&'h Arc<Member>> = nodes.to_vec();
        for _ in 0..MARKER_ATTEMPTS {
            // Refused by an add: the marker exists, so it is appended to.
            let mut exists = Vec::new();
            let before = stored.len();
            let sort = stored_or_refused(&mut stored, &mut exists);
            self.on_holders(&to_add, &add, before, sort).await;
            to_add.clear();
            if exists.is_empty() {
                break;
            }
            // Refused by an append: the marker went meanwhile.
            let before = stored.len();
            let sort = stored_or_refused(&mut stored, &mut to_add);
            self.on_holders(&exists, &append, before, sort).await;
            if to_add.is_empty() || !stored.is_empty() {
                break;
            }
        }
        self.counters.record(Event::Marked {
            key,
            missed: missed.len(),
            holders: stored.len(),
        });
        (at_ms, stored)
    }

    /// Sends `command` to every one of `holders` and hands each answer to
    /// `each`. Every holder is awaited (so the record is on each that
    /// answers: readers pass stalled nodes over), except ones that are
    /// stalled once a holder (`stored_before` or since) stored it: they
    /// finish in the background.
    async fn on_holders<'h>(
        &self,
        holders: &[&'h Arc<Member>],
        command: &MetaSet,
        stored_before: usize,
        mut each: impl FnMut(&'h Arc<Member>, Result<Reply, Error>),
    ) {
        let mut deadline = pin!(tokio::time::sleep(self.node_timeout));
        let mut calls = Calls::new(
            deadline.as_mut(),
            self.node_timeout,
            Order::Sent,
            holders.len(),
        );
        for &holder in holders {
            calls.push(holder, holder.start(Command::MetaSet(command.clone())));
        }
        let stall_after = self.config.stall_after;
        calls.watch_stalls(stall_after);
        let mut stored = stored_before;
        while let Some(next) = calls.next_watched(stall_after, stored > 0).await {
            match next {
                Watched::Answer(holder, answer) => {
                    if is_stored(&answer) {
                        stored += 1;
                    }
                    each(holder, answer);
                }
                Watched::OnlyStalled => {
                    Stragglers::new(calls, None).spawn();
                    break;
                }
            }
        }
    }

    /// Reads `key`'s markers from `nodes`: the nodes known to hold a stale
    /// copy. A node that fails to answer adds nothing. With `leave_after`,
    /// the round ends without nodes that are stalled once more than that
    /// many answered: with at most one faulty node, every other node that
    /// stored a write holds its marker (the writer waited for them all).
    pub(super) async fn marked(
        &self,
        key: &Key,
        nodes: &[&Arc<Member>],
        leave_after: Option<usize>,
    ) -> Marked {
        let mut get = MetaGet::new(marker_key(key));
        get.value = true;
        let command = Command::MetaGet(get);
        let mut marked = Marked::default();
        let mut deadline = pin!(tokio::time::sleep(self.node_timeout));
        let mut calls = Calls::new(
            deadline.as_mut(),
            self.node_timeout,
            Order::Sent,
            nodes.len(),
        );
        for &node in nodes {
            calls.push(node, node.start(command.clone()));
        }
        let stall_after = self.config.stall_after;
        if leave_after.is_some() {
            calls.watch_stalls(stall_after);
        }
        let mut answered = 0;
        while let Some(next) = calls
            .next_watched(
                stall_after,
                leave_after.is_some_and(|enough| answered > enough),
            )
            .await
        {
            match next {
                Watched::Answer(_, answer) => {
                    answered += 1;
                    if let Ok(Reply::Meta(meta)) = answer {
                        if let (MetaStatus::Value, Some(value)) = (meta.status, &meta.value) {
                            marked.add(&parse_entries(value));
                        }
                    }
                }
                Watched::OnlyStalled => {
                    Stragglers::new(calls, None).spawn();
                    break;
                }
            }
        }
        marked
    }

    /// After `keys` were invalidated on `node`, removes this client's
    /// entries for it (made before `since_ms`) from the markers on `holders`:
    /// the node no longer holds those copies. Other clients' entries stay
    /// until their own cleanup or the marker's expiry. Best effort: a
    /// marker left behind only makes a fresh copy lose a divergence, and
    /// it expires.
    pub(super) async fn clear_marks(
        &self,
        node: &Member,
        keys: &[Key],
        holders: &[Arc<Member>],
        since_ms: u64,
    ) {
        const CHUNK: usize = 64;
        for chunk in keys.chunks(CHUNK) {
            let mut clears: FuturesUnordered<_> = chunk
                .iter()
                .flat_map(|key| holders.iter().map(move |holder| (key, holder)))
                .map(|(key, holder)| {
                    clear_entries(self.writer, node.seed(), key, holder, 0..=since_ms)
                })
                .collect();
            while clears.next().await.is_some() {}
        }
    }
}

/// What a write left on a node.
pub(crate) enum Left {
    /// A live copy of this value and these flags.
    Value(Bytes, u32),
    /// No live copy.
    Gone,
}

impl Left {
    /// What `command` (a set, delete or touch) left on a node that
    /// answered it with `reply`: a set's value, nothing after a delete,
    /// and after a touch the copy the node held (its reply shows it).
    pub(crate) fn after(command: &Command, reply: &Reply) -> Left {
        match (command, reply) {
            (Command::MetaSet(set), _) => {
                Left::Value(set.value.clone(), set.client_flags.unwrap_or(0))
            }
            (Command::MetaGet(_), Reply::Meta(meta)) => match (&meta.value, meta.flags.stale) {
                (Some(value), false) if meta.status == MetaStatus::Value => {
                    Left::Value(value.clone(), meta.flags.client_flags.unwrap_or(0))
                }
                _ => Left::Gone,
            },
            _ => Left::Gone,
        }
    }
}

/// Whether every one of `holders` holds `left` for `key`: then a node that
/// applied a write late and holds `left` is in line with them, rather than
/// holding it over a newer write or delete.
pub(crate) async fn still_left(key: &Key, left: &Left, holders: &[Arc<Member>]) -> bool {
    let mut get = MetaGet::new(key.clone());
    (get.value, get.client_flags) = (true, true);
    let mut reads: FuturesUnordered<_> = holders
        .iter()
        .map(|holder| holder.call(Command::MetaGet(get.clone())))
        .collect();
    while let Some(answer) = reads.next().await {
        let Ok(Reply::Meta(meta)) = answer else {
            return false;
        };
        let live = meta.status == MetaStatus::Value && !meta.flags.stale;
        let as_left = match left {
            Left::Gone => !live,
            Left::Value(value, flags) => {
                live && meta.value.as_ref() == Some(value)
                    && meta.flags.client_flags.unwrap_or(0) == *flags
            }
        };
        if !as_left {
            return false;
        }
    }
    true
}

/// After nodes counted as missing a write (silent after the grace) applied
/// it after all, removes the entries that marking made for them (writer
/// `writer`, time `at_ms`) from the markers on `holders`, so their copies
/// do not lose a later divergence to a copy that may be gone by then.
/// Only that marking's entries go: any other miss still marks the node.
pub(crate) async fn clear_late(
    writer: u64,
    key: &Key,
    applied: &[Arc<Member>],
    holders: &[Arc<Member>],
    at_ms: u64,
) {
    let mut clears: FuturesUnordered<_> = applied
        .iter()
        .flat_map(|node| holders.iter().map(move |holder| (node, holder)))
        .map(|(node, holder)| clear_entries(writer, node.seed(), key, holder, at_ms..=at_ms))
        .collect();
    while clears.next().await.is_some() {}
}

/// Removes writer `writer`'s entries for node `node` made at a time in
/// `at` from `key`'s marker on `holder`.
async fn clear_entries(
    writer: u64,
    node: u64,
    key: &Key,
    holder: &Member,
    at: std::ops::RangeInclusive<u64>,
) {
    // CAS-guarded: an entry appended meanwhile must not be lost. On a
    // conflict (other clients append to shared keys' markers all the
    // time) read it again: an entry left behind would condemn the node's
    // fresh copies of the key for the marker's whole lifetime.
    for _ in 0..4 {
        let marker = marker_key(key);
        let mut get = MetaGet::new(marker.clone());
        (get.value, get.cas, get.ttl) = (true, true, true);
        let Ok(Reply::Meta(meta)) = holder.call(Command::MetaGet(get)).await else {
            return;
        };
        let (MetaStatus::Value, Some(value)) = (meta.status, &meta.value) else {
            return;
        };
        let entries = parse_entries(value);
        let kept: Vec<Entry> = entries
            .iter()
            .copied()
            .filter(|e| !(e.node == node && e.writer == writer && at.contains(&e.at_ms)))
            .collect();
        if kept.len() == entries.len() {
            return;
        }
        let Some(cas) = meta.flags.cas else { return };
        let command = if kept.is_empty() {
            let mut delete = MetaDelete::new(marker);
            delete.compare_cas = Some(cas);
            Command::MetaDelete(delete)
        } else {
            let mut set = MetaSet::new(marker, encode_entries(&kept));
            set.compare_cas = Some(cas);
            set.ttl = Some(Ttl::from_remaining(meta.flags.ttl.unwrap_or(-1)).exptime());
            Command::MetaSet(set)
        };
        match holder.call(command).await {
            Ok(Reply::Meta(meta)) if meta.status == MetaStatus::Exists => continue,
            _ => return,
        }
    }
}

/// How long a stale marker lives by default: it must outlast the time a
/// node may hold a stale copy unnoticed by the writer (until the writer
/// sees it return and invalidates the key there).
pub(crate) const DEFAULT_MARKER_TTL: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_garbage_is_skipped() {
        let entries = [
            Entry {
                node: 1,
                writer: u64::MAX,
                at_ms: 1_700_000_000_000,
            },
            Entry {
                node: 0xabcdef,
                writer: 7,
                at_ms: 0,
            },
        ];
        let mut value = BytesMut::from(&encode_entries(&entries)[..]);
        value.put_slice(b"garbage line\n\xff\xfe\n0 1\n1 2 3 4\n");
        assert_eq!(parse_entries(&value), entries);
    }

    #[test]
    fn marker_keys_are_reserved_and_valid_for_every_key_length() {
        let short = Key::new("session:1").unwrap();
        assert_eq!(marker_key(&short).as_bytes(), b"__memha:stale:session:1");
        let long = Key::new("k".repeat(Key::MAX_LEN)).unwrap();
        let marker = marker_key(&long);
        assert!(marker.as_bytes().len() <= Key::MAX_LEN);
        assert!(is_reserved(&marker) && is_reserved(&marker_key(&short)));
        assert_ne!(
            marker,
            marker_key(&Key::new("j".repeat(Key::MAX_LEN)).unwrap()),
            "long keys hash apart"
        );
        assert!(!is_reserved(&short));
    }
}
