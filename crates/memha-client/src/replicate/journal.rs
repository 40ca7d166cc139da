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

    /// Takes what the node needs, leaving the journal empty.
    pub(crate) fn take_remedy(&mut self) -> Remedy {
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
