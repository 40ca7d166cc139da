//! What memha tells `tracing`, and how it keeps keys out of it.
//!
//! Every operation runs in a `memha` span at `DEBUG` with its name and a
//! hash of its key; the replication layer's events (repairs, divergences,
//! failovers, partial writes, rejoins) and the health and discovery events
//! happen inside it or name their node. Keys are often session ids, and a
//! log is no place for them: only [`key_hash`] ever reaches a trace, and
//! values never do.

use memha_proto::{Arithmetic, ArithmeticMode, Command, Key, MetaGet, Retrieval, SetMode, Storage};
use tracing::Span;

use crate::replicate::placement;

/// A hash of `key` for traces: the same key always gives the same hash, so
/// one session can be followed across events without the key being logged.
/// Not a secret: a guessable key can be checked against it.
pub(crate) fn key_hash(key: &Key) -> u64 {
    placement::score(0x006d_656d_6861, key.as_bytes())
}

/// The span of one client operation; disabled (and free) unless a
/// subscriber wants `memha_client` at `DEBUG`.
pub(crate) fn operation_span(command: &Command) -> Span {
    match command_key(command) {
        Some(key) => tracing::debug_span!(
            "memha",
            op = operation_name(command),
            key_hash = key_hash(key)
        ),
        None => tracing::debug_span!("memha", op = operation_name(command)),
    }
}

/// The span of a pipelined read of many keys.
pub(crate) fn get_many_span(keys: usize) -> Span {
    tracing::debug_span!("memha", op = "get_many", keys)
}

/// The key a command is about: the first one, for a multi-key retrieval.
fn command_key(command: &Command) -> Option<&Key> {
    match command {
        Command::MetaGet(get) => Some(&get.key),
        Command::MetaSet(set) => Some(&set.key),
        Command::MetaDelete(delete) => Some(&delete.key),
        Command::MetaArithmetic(arithmetic) => Some(&arithmetic.key),
        Command::Retrieve { keys, .. } => keys.first(),
        Command::Store { key, .. }
        | Command::Delete { key, .. }
        | Command::Touch { key, .. }
        | Command::Arithmetic { key, .. } => Some(key),
        _ => None,
    }
}

/// The name of the [`Client`](crate::Client) method a command comes from.
fn operation_name(command: &Command) -> &'static str {
    match command {
        Command::MetaGet(get) => meta_get_name(get),
        Command::MetaSet(set) if set.compare_cas.is_some() => "cas",
        Command::MetaSet(set) => match set.mode {
            SetMode::Set => "set",
            SetMode::Add => "add",
            SetMode::Replace => "replace",
            SetMode::Append => "append",
            SetMode::Prepend => "prepend",
        },
        Command::MetaDelete(_) | Command::Delete { .. } => "delete",
        Command::MetaArithmetic(arithmetic) => match arithmetic.mode {
            ArithmeticMode::Increment => "increment",
            ArithmeticMode::Decrement => "decrement",
        },
        Command::MetaNoop => "noop",
        Command::Retrieve { kind, .. } => match kind {
            Retrieval::Get => "get",
            Retrieval::Gets => "gets",
            Retrieval::Gat(_) | Retrieval::Gats(_) => "get_and_touch",
        },
        Command::Store { kind, .. } => match kind {
            Storage::Set => "set",
            Storage::Add => "add",
            Storage::Replace => "replace",
            Storage::Append => "append",
            Storage::Prepend => "prepend",
            Storage::Cas(_) => "cas",
        },
        Command::Touch { .. } => "touch",
        Command::Arithmetic { kind, .. } => match kind {
            Arithmetic::Incr => "increment",
            Arithmetic::Decr => "decrement",
        },
        Command::FlushAll { .. } => "flush_all",
        Command::Version => "version",
        Command::Stats(_) => "stats",
        Command::ConfigGetCluster => "config_get_cluster",
        _ => "other",
    }
}

fn meta_get_name(get: &MetaGet) -> &'static str {
    match (get.value, get.touch.is_some()) {
        (false, true) => "touch",
        (true, true) => "get_and_touch",
        (_, false) if get.cas => "gets",
        _ => "get",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_after_the_client_methods() {
        let key = Key::new("k").unwrap();
        let mut get = MetaGet::full(key.clone());
        get.cas = false;
        assert_eq!(operation_name(&Command::MetaGet(get.clone())), "get");
        get.cas = true;
        assert_eq!(operation_name(&Command::MetaGet(get.clone())), "gets");
        get.touch = Some(5);
        assert_eq!(
            operation_name(&Command::MetaGet(get.clone())),
            "get_and_touch"
        );
        get.value = false;
        assert_eq!(operation_name(&Command::MetaGet(get)), "touch");
        let mut set = memha_proto::MetaSet::new(key.clone(), "v");
        set.mode = SetMode::Add;
        assert_eq!(operation_name(&Command::MetaSet(set.clone())), "add");
        set.compare_cas = Some(1);
        assert_eq!(operation_name(&Command::MetaSet(set)), "cas");
        assert_eq!(operation_name(&Command::Version), "version");
    }

    #[test]
    fn a_key_hash_is_stable_and_tells_keys_apart() {
        let a = Key::new("session:1").unwrap();
        let b = Key::new("session:2").unwrap();
        assert_eq!(key_hash(&a), key_hash(&a.clone()));
        assert_ne!(key_hash(&a), key_hash(&b));
    }
}
