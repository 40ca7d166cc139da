use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use crate::node::NodeHealth;
use crate::observe::ClassifyOutcome;

pin_project! {
    /// The response future of [`Health`](super::Health): the inner future,
    /// whose result is recorded into the node's health when it completes.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        node: Option<NodeHealth>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, node: NodeHealth) -> Self {
        ResponseFuture {
            inner,
            node: Some(node),
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    T: ClassifyOutcome,
    E: ClassifyOutcome,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(node) = this.node.take() {
            node.record(result.observation());
        }
        Poll::Ready(result)
    }
}
