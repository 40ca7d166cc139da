//! How the replication layer serves each command, decided once, as data
//! (the shape of redis-rs's `RoutingInfo`): [`Route::of`] is the one place
//! that reads a command's mode, CAS and flags to pick a path.

use memha_proto::{Command, Key, MetaDelete, MetaGet, SetMode};

use super::stale;
use crate::error::{Error, ErrorKind};

/// The path of one command through the replication layer.
#[derive(Debug)]
pub(super) enum Route {
    /// `mg` without a touch: a subset of the Up nodes, miss failover,
    /// read repair.
    Read(MetaGet),
    /// An unconditional `ms` (mode set, no CAS, no invalidation): every
    /// writable node as it is.
    Set(Command),
    /// `mg` with a touch: every writable node, the answers decided like a read's.
    Touch(MetaGet),
    /// An unconditional `md`: every writable node, leaving tombstones.
    Delete(MetaDelete),
    /// Decided by the key's primary, then copied to the others: add,
    /// replace, append, prepend, cas, incr/decr, a CAS-guarded or
    /// invalidating delete or set.
    Decide {
        /// The key, whose primary decides.
        key: Key,
        /// The command the primary runs.
        command: Command,
    },
    /// `flush_all`: every writable node, whatever the ack policy.
    FlushAll(Command),
    /// A query about the node, not a key (`mn`, `version`, `stats`): any
    /// readable node answers.
    AnyNode(Command),
}

impl Route {
    /// The route of `command`. Refused: a key in memha's own namespace
    /// (its stale markers), and the classic data commands and `config get
    /// cluster` (replication speaks the meta protocol).
    pub(super) fn of(command: Command) -> Result<Route, Error> {
        if command.key().is_some_and(stale::is_reserved) {
            return Err(Error::new(ErrorKind::InvalidKey).with_detail(format!(
                "keys starting with {:?} are memha's own bookkeeping",
                stale::RESERVED_PREFIX
            )));
        }
        Ok(match command {
            Command::MetaGet(get) if get.touch.is_none() => Route::Read(get),
            Command::MetaGet(get) => Route::Touch(get),
            Command::MetaSet(set)
                if set.mode == SetMode::Set && set.compare_cas.is_none() && !set.invalidate =>
            {
                Route::Set(Command::MetaSet(set))
            }
            Command::MetaSet(set) => Route::Decide {
                key: set.key.clone(),
                command: set.into(),
            },
            Command::MetaDelete(delete) if delete.compare_cas.is_none() && !delete.invalidate => {
                Route::Delete(delete)
            }
            Command::MetaDelete(delete) => Route::Decide {
                key: delete.key.clone(),
                command: delete.into(),
            },
            Command::MetaArithmetic(arithmetic) => Route::Decide {
                key: arithmetic.key.clone(),
                command: arithmetic.into(),
            },
            command @ Command::FlushAll { .. } => Route::FlushAll(command),
            command @ (Command::MetaNoop | Command::Version | Command::Stats(_)) => {
                Route::AnyNode(command)
            }
            command => {
                return Err(Error::new(ErrorKind::Unsupported).with_detail(format!(
                    "classic data commands bypass replication: use the meta commands (not `{}`)",
                    command.name()
                )))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use memha_proto::{ArithmeticMode, MetaArithmetic, MetaSet, StatsGroup, Storage};

    use super::*;

    fn key() -> Key {
        Key::new("k").unwrap()
    }

    /// Which route, by name: the table below.
    fn route_name(command: Command) -> &'static str {
        match Route::of(command) {
            Ok(Route::Read(_)) => "read",
            Ok(Route::Set(_)) => "set",
            Ok(Route::Touch(_)) => "touch",
            Ok(Route::Delete(_)) => "delete",
            Ok(Route::Decide { .. }) => "decide",
            Ok(Route::FlushAll(_)) => "flush_all",
            Ok(Route::AnyNode(_)) => "any node",
            Err(error) if error.kind() == ErrorKind::Unsupported => "unsupported",
            Err(error) if error.kind() == ErrorKind::InvalidKey => "invalid key",
            Err(_) => "other error",
        }
    }

    #[test]
    fn every_command_has_one_route() {
        let set = |change: fn(&mut MetaSet)| {
            let mut set = MetaSet::new(key(), "v");
            change(&mut set);
            Command::MetaSet(set)
        };
        let delete = |change: fn(&mut MetaDelete)| {
            let mut delete = MetaDelete::new(key());
            change(&mut delete);
            Command::MetaDelete(delete)
        };
        let mut touch = MetaGet::full(key());
        touch.touch = Some(60);
        let table = [
            (Command::MetaGet(MetaGet::full(key())), "read"),
            (Command::MetaGet(touch), "touch"),
            (set(|_| {}), "set"),
            (set(|s| s.mode = SetMode::Add), "decide"),
            (set(|s| s.mode = SetMode::Append), "decide"),
            (set(|s| s.compare_cas = Some(7)), "decide"),
            (set(|s| s.invalidate = true), "decide"),
            (delete(|_| {}), "delete"),
            (delete(|d| d.compare_cas = Some(7)), "decide"),
            (delete(|d| d.invalidate = true), "decide"),
            (
                Command::MetaArithmetic(MetaArithmetic::new(key(), ArithmeticMode::Increment, 1)),
                "decide",
            ),
            (
                Command::FlushAll {
                    delay: None,
                    noreply: false,
                },
                "flush_all",
            ),
            (Command::MetaNoop, "any node"),
            (Command::Version, "any node"),
            (Command::Stats(StatsGroup::General), "any node"),
            (Command::ConfigGetCluster, "unsupported"),
            (
                Command::Store {
                    kind: Storage::Set,
                    key: key(),
                    flags: 0,
                    exptime: 0,
                    value: Bytes::from_static(b"v"),
                    noreply: false,
                },
                "unsupported",
            ),
        ];
        for (command, expected) in table {
            let shown = format!("{command:?}");
            assert_eq!(route_name(command), expected, "{shown}");
        }
    }

    #[test]
    fn memha_s_own_keys_are_refused_on_every_route() {
        let reserved = Key::new(format!("{}anything", stale::RESERVED_PREFIX)).unwrap();
        assert_eq!(
            route_name(Command::MetaGet(MetaGet::full(reserved.clone()))),
            "invalid key"
        );
        assert_eq!(
            route_name(Command::MetaDelete(MetaDelete::new(reserved))),
            "invalid key"
        );
    }
}
