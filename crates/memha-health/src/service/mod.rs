//! The tower middleware: records each result of a node service into the
//! node's health and refuses requests to a Down node in `poll_ready`.

mod future;
mod layer;

use std::task::{Context, Poll};

use tower::Service;

use crate::error::Error;
use crate::node::NodeHealth;
use crate::observe::ClassifyOutcome;

pub use self::future::ResponseFuture;
pub use self::layer::HealthLayer;

/// Wraps one node's service: records each result (and each `poll_ready`
/// error) into the node's health, and fails `poll_ready` at once with
/// [`ErrorKind::NodeDown`](crate::ErrorKind::NodeDown) while the node is
/// [`NodeState::Down`](crate::NodeState::Down), without polling the inner service, so nothing queues
/// on a dead node.
///
/// The refusal is transient: unlike most `poll_ready` errors it does not
/// mean the service is broken, and the same service becomes ready again once
/// the node is back. Middleware that treats a `poll_ready` error as fatal
/// (`tower::buffer`) must therefore sit below `Health`, not above it.
///
/// Results are classified with [`ClassifyOutcome`]; the inner error type
/// must also convert from this crate's [`Error`] to carry the refusal
/// (`Box<dyn Error + Send + Sync>`, as `tower` middleware uses, does). A
/// request whose future is dropped before it completes is not recorded: a
/// timeout is only counted when it is an error the wrapped service returns,
/// so put the per-request `tower::timeout::Timeout` below `Health`, or let
/// the connection return its own timeout errors.
#[derive(Debug, Clone)]
pub struct Health<S> {
    inner: S,
    node: NodeHealth,
}

impl<S> Health<S> {
    /// Wraps `inner`, the service of the node `node`.
    pub fn new(inner: S, node: NodeHealth) -> Self {
        Health { inner, node }
    }

    /// The node's health handle.
    pub fn node(&self) -> &NodeHealth {
        &self.node
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Request> Service<Request> for Health<S>
where
    S: Service<Request>,
    S::Response: ClassifyOutcome,
    S::Error: ClassifyOutcome + From<Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Err(refused) = self.node.admit() {
            return Poll::Ready(Err(refused.into()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(err)) => {
                self.node.record(err.observation());
                Poll::Ready(Err(err))
            }
            other => other,
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        ResponseFuture::new(self.inner.call(request), self.node.clone())
    }
}
