//! Making a returning node safe before it serves reads.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::BoxError;
use crate::state::RejoinReason;

/// What a [`RejoinHook`] is told about a rejoining node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RejoinInfo {
    /// The node.
    pub node: SocketAddr,
    /// What the probes tell: a new process ([`RejoinReason::Restarted`]),
    /// the same one ([`RejoinReason::Unreachable`]), or they cannot tell
    /// ([`RejoinReason::Unknown`]). For logs and metrics: in every case the
    /// node may hold stale values, since a restart may predate writes it took
    /// before it went away. A node found restarted during a later attempt is
    /// reported restarted.
    pub reason: RejoinReason,
    /// 1 for the first attempt, then 2, 3... after failures.
    pub attempt: u32,
}

/// Makes a rejoining node safe to read before it turns Up: the replication
/// layer invalidates on it the keys written or deleted while it was away, or
/// flushes it, whatever the [`RejoinReason`].
///
/// Without a hook a rejoining node turns Up at once. When the hook fails
/// (or takes longer than [`HealthConfig::rejoin_timeout`](crate::HealthConfig::rejoin_timeout)),
/// the node stays Rejoining and the hook is called again after the next
/// probe, with backoff; if the node fails meanwhile it goes Down.
///
/// A hook that deletes on the node the keys it missed, kept by whoever
/// writes (the delete is a stand-in for a real request):
///
/// ```
/// use std::collections::{HashMap, HashSet};
/// use std::net::SocketAddr;
/// use std::sync::Mutex;
///
/// use async_trait::async_trait;
/// use memha_health::{BoxError, RejoinHook, RejoinInfo};
///
/// struct Invalidate {
///     /// The keys each node missed while it was away.
///     journal: Mutex<HashMap<SocketAddr, HashSet<String>>>,
/// }
///
/// #[async_trait]
/// impl RejoinHook for Invalidate {
///     async fn make_safe(&self, info: RejoinInfo) -> Result<(), BoxError> {
///         // Whatever `info.reason` says: a node that restarted may have
///         // taken writes after the restart and then missed newer ones.
///         let missed = self.journal.lock().unwrap().remove(&info.node);
///         let mut failed = HashSet::new();
///         for key in missed.unwrap_or_default() {
///             if delete(info.node, &key).await.is_err() {
///                 failed.insert(key);
///             }
///         }
///         if failed.is_empty() {
///             return Ok(());
///         }
///         // Kept for the next attempt; the node stays Rejoining meanwhile.
///         let count = failed.len();
///         self.journal.lock().unwrap().entry(info.node).or_default().extend(failed);
///         Err(format!("{count} deletes on {} failed", info.node).into())
///     }
/// }
///
/// async fn delete(node: SocketAddr, key: &str) -> Result<(), BoxError> {
///     // Send `md <key>` to `node`...
///     # let _ = (node, key);
///     Ok(())
/// }
/// ```
#[async_trait]
pub trait RejoinHook: Send + Sync + 'static {
    /// Makes the node safe; `Ok` turns it Up.
    async fn make_safe(&self, info: RejoinInfo) -> Result<(), BoxError>;
}

#[async_trait]
impl<H: RejoinHook + ?Sized> RejoinHook for Arc<H> {
    async fn make_safe(&self, info: RejoinInfo) -> Result<(), BoxError> {
        (**self).make_safe(info).await
    }
}

#[async_trait]
impl<H: RejoinHook + ?Sized> RejoinHook for Box<H> {
    async fn make_safe(&self, info: RejoinInfo) -> Result<(), BoxError> {
        (**self).make_safe(info).await
    }
}
