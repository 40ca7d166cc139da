//! What memha tells `tracing`, and how it keeps keys out of it.
//!
//! Every operation runs in a `memha` span at `DEBUG` with its name and a
//! hash of its key; the replication layer's events (repairs, divergences,
//! failovers, partial writes, rejoins) and the health and discovery events
//! happen inside it or name their node. Keys are often session ids, and a
//! log is no place for them: only [`key_hash`] ever reaches a trace, and
//! values never do.

use memha_proto::{Command, Key};
use tracing::Span;

/// A hash of `key` for traces: the same key always gives the same hash, so
/// one session can be followed across events without the key being logged.
/// Not a secret: a guessable key can be checked against it.
pub(crate) fn key_hash(key: &Key) -> u64 {
    crate::hash::score(0x006d_656d_6861, key.as_bytes())
}

/// The span of one client operation; disabled (and free) unless a
/// subscriber wants `memha_client` at `DEBUG`.
pub(crate) fn operation_span(command: &Command) -> Span {
    match command.key() {
        Some(key) => tracing::debug_span!("memha", op = command.name(), key_hash = key_hash(key)),
        None => tracing::debug_span!("memha", op = command.name()),
    }
}

/// The span of a pipelined read of many keys.
pub(crate) fn get_many_span(keys: usize) -> Span {
    tracing::debug_span!("memha", op = "get_many", keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_hash_is_stable_and_tells_keys_apart() {
        let a = Key::new("session:1").unwrap();
        let b = Key::new("session:2").unwrap();
        assert_eq!(key_hash(&a), key_hash(&a.clone()));
        assert_ne!(key_hash(&a), key_hash(&b));
    }
}
