//! What a node missed while it was away, so it can be made safe on rejoin.

use std::collections::HashSet;

use memha_proto::Key;

/// The keys written or deleted while a node was unreachable, bounded.
///
/// When more keys than the bound were touched, the journal forgets them and
/// remembers only that it overflowed: the node must then be flushed.
#[derive(Debug)]
pub(crate) struct Journal {
    keys: HashSet<Key>,
    capacity: usize,
    overflowed: bool,
    /// The keys whose stale markers name the node for this client already
    /// (written while it was Down, so no late apply removes them): until
    /// it returns, later writes of them need no entry of their own, and a
    /// hot key's marker stays one line per writer instead of one per write.
    marked: HashSet<Key>,
}

/// What a returning node needs before it may serve reads.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Remedy {
    /// It missed nothing.
    Nothing,
    /// Delete these keys on it.
    Invalidate(Vec<Key>),
    /// It missed too much to list: flush it.
    Flush,
}

impl Remedy {
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Remedy::Nothing => "none",
            Remedy::Invalidate(_) => "invalidate missed keys",
            Remedy::Flush => "flush",
        }
    }
}

impl Journal {
    pub(crate) fn new(capacity: usize) -> Self {
        Journal {
            keys: HashSet::new(),
            capacity,
            overflowed: false,
            marked: HashSet::new(),
        }
    }

    pub(crate) fn record(&mut self, key: &Key) {
        if self.overflowed || self.keys.contains(key) {
            return;
        }
        if self.keys.len() >= self.capacity {
            self.keys = HashSet::new();
            self.overflowed = true;
            return;
        }
        self.keys.insert(key.clone());
    }

    /// Whether a marker entry of this client already names the node for `key`.
    pub(crate) fn is_marked(&self, key: &Key) -> bool {
        self.marked.contains(key)
    }

    /// Notes that a marker entry of this client now names the node for
    /// `key` (bounded like the journal: past it, nothing more is noted and
    /// every write adds its entry).
    pub(crate) fn note_marked(&mut self, key: &Key) {
        if self.marked.len() < self.capacity {
            self.marked.insert(key.clone());
        }
    }

    /// Takes what the node needs, leaving the journal empty (and forgetting
    /// the markers: the rejoin removes this client's entries).
    pub(crate) fn take_remedy(&mut self) -> Remedy {
        self.marked = HashSet::new();
        let overflowed = std::mem::take(&mut self.overflowed);
        let keys = std::mem::take(&mut self.keys);
        if overflowed {
            Remedy::Flush
        } else if keys.is_empty() {
            Remedy::Nothing
        } else {
            Remedy::Invalidate(keys.into_iter().collect())
        }
    }

    /// Forgets the keys and asks for a flush (a failed flush is retried).
    pub(crate) fn overflow(&mut self) {
        self.keys = HashSet::new();
        self.overflowed = true;
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Key {
        Key::new(format!("k{i}")).unwrap()
    }

    #[test]
    fn records_each_key_once_and_hands_them_over() {
        let mut journal = Journal::new(10);
        journal.record(&key(1));
        journal.record(&key(1));
        journal.record(&key(2));
        let Remedy::Invalidate(mut keys) = journal.take_remedy() else {
            panic!("expected keys")
        };
        keys.sort();
        assert_eq!(keys, [key(1), key(2)]);
        assert_eq!(journal.take_remedy(), Remedy::Nothing);
    }

    #[test]
    fn marked_keys_are_remembered_until_the_node_returns() {
        let mut journal = Journal::new(2);
        journal.note_marked(&key(1));
        assert!(journal.is_marked(&key(1)) && !journal.is_marked(&key(2)));
        journal.note_marked(&key(2));
        journal.note_marked(&key(3));
        assert!(
            !journal.is_marked(&key(3)),
            "bounded: past it, every write marks"
        );
        journal.take_remedy();
        assert!(
            !journal.is_marked(&key(1)),
            "the rejoin removes the entries"
        );
    }

    #[test]
    fn overflow_turns_into_a_flush_and_frees_the_memory() {
        let mut journal = Journal::new(3);
        for i in 0..5 {
            journal.record(&key(i));
        }
        assert_eq!(journal.len(), 0);
        assert_eq!(journal.take_remedy(), Remedy::Flush);
        assert_eq!(journal.take_remedy(), Remedy::Nothing);
    }
}
