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
    /// Whether it came back empty ([`RejoinReason::Restarted`]) or may hold
    /// stale values ([`RejoinReason::Unreachable`], [`RejoinReason::Unknown`]).
    /// A node found restarted during a later attempt is reported restarted.
    pub reason: RejoinReason,
    /// 1 for the first attempt, then 2, 3... after failures.
    pub attempt: u32,
}

/// Makes a rejoining node safe to read before it turns Up: the replication
/// layer invalidates on it the keys written or deleted while it was away, or
/// flushes it.
///
/// Without a hook a rejoining node turns Up at once. When the hook fails
/// (or takes longer than [`HealthConfig::rejoin_timeout`](crate::HealthConfig::rejoin_timeout)),
/// the node stays Rejoining and the hook is called again after the next
/// probe, with backoff; if the node fails meanwhile it goes Down.
///
/// ```
/// use async_trait::async_trait;
/// use memha_health::{BoxError, RejoinHook, RejoinInfo};
///
/// struct Invalidate;
///
/// #[async_trait]
/// impl RejoinHook for Invalidate {
///     async fn make_safe(&self, info: RejoinInfo) -> Result<(), BoxError> {
///         if !info.reason.restarted() {
///             // replay the journal of keys changed while info.node was away...
///         }
///         Ok(())
///     }
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
