//! Making a returning node safe before it serves reads (promise 2).

use std::sync::{Arc, Weak};

use futures_util::stream::{FuturesUnordered, StreamExt};
use memha_health::{BoxError, RejoinHook, RejoinInfo};
use memha_proto::{Command, MetaDelete, Reply};

use super::config::RejoinPolicy;
use super::counters::Event;
use super::journal::Remedy;
use super::Shared;

/// How many deletes a rejoin keeps in flight at once.
const INVALIDATION_CHUNK: usize = 256;

/// The health table's hook: a returning node gets the keys it missed deleted
/// on it (or a flush), restarted or not. A restart seen on return is only
/// known to have happened since the node's previous probe: it may predate
/// writes the node took before it went away, so it may hold values from
/// before the writes it missed (found by the chaos suite, seed 23).
pub(super) struct MakeSafe {
    pub(super) shared: Weak<Shared>,
}

#[async_trait::async_trait]
impl RejoinHook for MakeSafe {
    async fn make_safe(&self, info: RejoinInfo) -> Result<(), BoxError> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        let Some(member) = shared.members.get(info.node) else {
            return Ok(());
        };
        // Whatever the remedy, it returns lacking keys (restarted, or with
        // the keys it missed deleted): reads ask it for a while.
        member.begin_catch_up();
        // Entries this client wrote before now are about copies the remedy removes.
        let since_ms = super::stale::now_ms();
        let remedy = member.journal().take_remedy();
        let remedy = match shared.config.rejoin {
            RejoinPolicy::Trust => Remedy::Nothing,
            RejoinPolicy::Flush => Remedy::Flush,
            RejoinPolicy::Invalidate => remedy,
        };
        tracing::info!(node = %member.id, reason = ?info.reason, remedy = remedy.describe(), "making a returning node safe");
        match remedy {
            Remedy::Nothing => Ok(()),
            Remedy::Flush => {
                let flush = Command::FlushAll {
                    delay: None,
                    noreply: false,
                };
                match member.call(flush).await {
                    Ok(Reply::Ok) => {
                        shared.counters.record(Event::Flushed { node: &member.id });
                        Ok(())
                    }
                    other => {
                        member.journal().overflow();
                        Err(format!("flush of {} failed: {other:?}", member.id).into())
                    }
                }
            }
            Remedy::Invalidate(keys) => {
                // In chunks: a long journal must not overflow the connection's window.
                let (mut invalidated, mut failed) = (Vec::with_capacity(keys.len()), 0);
                for chunk in keys.chunks(INVALIDATION_CHUNK) {
                    let mut deletes: FuturesUnordered<_> = chunk
                        .iter()
                        .map(|key| {
                            let member = member.clone();
                            async move {
                                let result = member.call(MetaDelete::new(key.clone()).into()).await;
                                (key, result)
                            }
                        })
                        .collect();
                    while let Some((key, result)) = deletes.next().await {
                        match result {
                            Ok(Reply::Meta(_)) => invalidated.push(key.clone()),
                            _ => {
                                failed += 1;
                                member.record_missed(key);
                            }
                        }
                    }
                }
                shared.counters.record(Event::Invalidated {
                    node: &member.id,
                    keys: invalidated.len(),
                });
                // The node no longer holds those copies: the records that it
                // missed them are not needed any more.
                let holders: Vec<_> = shared
                    .members
                    .snapshot()
                    .iter()
                    .filter(|m| !Arc::ptr_eq(m, &member) && m.state().is_writable())
                    .cloned()
                    .collect();
                shared
                    .clear_marks(&member, &invalidated, &holders, since_ms)
                    .await;
                match failed {
                    0 => Ok(()),
                    n => Err(format!("{n} invalidations on {} failed", member.id).into()),
                }
            }
        }
    }
}
