//! The future of a request on a [`NodeService`](super::NodeService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use memha_proto::Reply;

use crate::error::Error;

type BoxedFuture = Pin<Box<dyn Future<Output = Result<Reply, Error>> + Send + 'static>>;

/// The answer to one request sent through a node's stack.
pub struct ResponseFuture {
    inner: BoxedFuture,
}

impl ResponseFuture {
    pub(super) fn new(inner: BoxedFuture) -> Self {
        ResponseFuture { inner }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Reply, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
