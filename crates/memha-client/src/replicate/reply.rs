//! The replies the replication layer makes up or reshapes, and the
//! repair commands it sends.

use memha_proto::{Command, MetaFlags, MetaGet, MetaReply, MetaSet, MetaStatus, Reply, SetMode};

use super::resolve::{Copy, Repair};
use crate::error::Error;

/// Whether a node answered a write (or a delete) with `Stored` (`HD`).
pub(super) fn is_stored(answer: &Result<Reply, Error>) -> bool {
    matches!(answer, Ok(Reply::Meta(m)) if m.status == MetaStatus::Stored)
}

/// A meta reply of `status` alone (no value, no flags).
pub(super) fn status_reply(status: MetaStatus) -> Reply {
    Reply::Meta(MetaReply {
        status,
        value: None,
        flags: MetaFlags::default(),
    })
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
        Repair::Delete { .. } => unreachable!("a delete is not a set"),
    }
    Command::MetaSet(set)
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
