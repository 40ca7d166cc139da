//! The future of a request on a [`Connection`](super::Connection).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use memha_proto::Reply;

use super::shared::ReplyReceiver;
use super::Owner;
use crate::error::{Error, ErrorKind};

/// The answer to one request sent on a [`Connection`](super::Connection).
///
/// Dropping it before it completes is safe: the request stays in the
/// stream and its answer is read and discarded, so no later request ever
/// receives it.
pub struct ResponseFuture {
    state: State,
}

enum State {
    Waiting {
        reply: ReplyReceiver,
        /// The connection's timer bounds the request by its deadline.
        covered: bool,
        // Keeps the connection open while someone waits on it (`None` when
        // the caller holds a handle until the answer).
        _owner: Option<Arc<Owner>>,
    },
    Failed(Option<Error>),
}

impl ResponseFuture {
    pub(super) fn waiting(reply: ReplyReceiver, covered: bool, owner: Option<Arc<Owner>>) -> Self {
        ResponseFuture {
            state: State::Waiting {
                reply,
                covered,
                _owner: owner,
            },
        }
    }

    /// Whether the connection's timer bounds the request by the deadline
    /// it was sent with (a request that already failed needs no bound).
    pub(crate) fn is_covered(&self) -> bool {
        match self.state {
            State::Waiting { covered, .. } => covered,
            State::Failed(_) => true,
        }
    }

    pub(super) fn failed(error: Error) -> Self {
        ResponseFuture {
            state: State::Failed(Some(error)),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Reply, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Waiting { reply, .. } => Poll::Ready(match ready!(Pin::new(reply).poll(cx)) {
                Ok(result) => result,
                Err(_) => Err(Error::new(ErrorKind::Closed)
                    .with_detail("the connection's task stopped (runtime shut down?)")),
            }),
            State::Failed(error) => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Waiting { .. } => "waiting",
            State::Failed(_) => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
