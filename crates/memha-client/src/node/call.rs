//! One request on one node: waiting for room, the attempt, the retries.
//!
//! [`NodeCall`] is a plain state machine over the node's attempt service,
//! with no timer of its own: whoever awaits it bounds it ([`bounded`], only
//! when the connection's timer does not; a replicated operation bounds all
//! its node calls with one timer), and with a deadline it retries nothing
//! past it. It is `Unpin`, so a fan-out keeps its calls in a `Vec` without
//! boxing them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use memha_health::{ClassifyOutcome, NodeHealth, Observation};
use memha_proto::{Command, Reply};
use tower::Service;

use super::retry::RetryPolicy;
use super::BoxedService;
use crate::connection::{self, Connection};
use crate::error::{Error, ErrorKind};

/// Where a node's attempts go.
#[derive(Clone)]
pub(crate) enum Attempts {
    /// Straight to the connection: the stack has no layers of the user's.
    Connection(Connection),
    /// Through the user's layers (or a whole service given by hand).
    Layered(BoxedService),
}

impl Attempts {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match self {
            Attempts::Connection(connection) => connection.poll_ready(cx),
            Attempts::Layered(service) => service.poll_ready(cx),
        }
    }

    /// Sends `command`, taking it if no retry may need it again. Only the
    /// user's layers need a copy to keep one: the connection borrows it,
    /// and may bound it by `deadline` with its own timer.
    fn call(
        &mut self,
        command: &mut Option<Command>,
        keep: bool,
        deadline: Option<Instant>,
    ) -> Attempt {
        match self {
            Attempts::Connection(connection) => {
                let command_ref = command.as_mut().expect("a command to send");
                // The call keeps its route, and so this handle, until the answer.
                let attempt = connection.send_held(command_ref, deadline);
                if !keep {
                    *command = None;
                }
                Attempt::Connection(attempt)
            }
            Attempts::Layered(service) => {
                let command = match keep {
                    true => command.clone(),
                    false => command.take(),
                };
                Attempt::Layered(service.call(command.expect("a command to send")))
            }
        }
    }
}

type BoxedFuture = Pin<Box<dyn Future<Output = Result<Reply, Error>> + Send + 'static>>;

/// One attempt in flight.
enum Attempt {
    Connection(connection::ResponseFuture),
    Layered(BoxedFuture),
}

impl Attempt {
    /// Whether the connection's timer bounds it.
    fn is_covered(&self) -> bool {
        match self {
            Attempt::Connection(future) => future.is_covered(),
            Attempt::Layered(_) => false,
        }
    }
}

impl Future for Attempt {
    type Output = Result<Reply, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Attempt::Connection(future) => Pin::new(future).poll(cx),
            Attempt::Layered(future) => future.as_mut().poll(cx),
        }
    }
}

/// How requests reach a node: where attempts go, how often one is
/// retried, where outcomes are recorded. Cheap to clone: each clone waits
/// for its own room in the connection.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) addr: SocketAddr,
    pub(crate) attempts: Attempts,
    pub(crate) max_retries: usize,
    /// The node's health, for a replicated node: it learns from every
    /// attempt (timeouts included) and refuses requests while Down.
    pub(crate) health: Option<NodeHealth>,
}

impl Route {
    /// Waits for room for one attempt. A Down node fails fast, so nothing
    /// queues on a dead node.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Some(Err(refused)) = self.health.as_ref().map(NodeHealth::admit) {
            return Poll::Ready(Err(Error::from(refused).with_node(self.addr)));
        }
        let ready = ready!(self.attempts.poll_ready(cx));
        Poll::Ready(ready.map_err(|error| {
            self.record(error.observation());
            error.with_node(self.addr)
        }))
    }

    fn record(&self, observation: Observation) {
        if let Some(health) = &self.health {
            health.record(observation);
        }
    }
}

/// One request on one node with its retries, with no timer of its own:
/// see the module's docs. With a deadline ([`within`](Self::within)),
/// its attempts ask the connection's timer to bound them and it retries
/// nothing past it. Drop it to give up; [`time_out`](Self::time_out)
/// gives up with the timeout error and counts the timeout against the
/// node.
pub(crate) struct NodeCall {
    route: Route,
    retries_left: usize,
    step: Step,
    /// The command: to send while `Queued`; once sent, kept while a retry
    /// may need it.
    command: Option<Command>,
    /// When the call gives up, if it is bounded: its attempts go to the
    /// connection with it, whose timer may bound them.
    deadline: Option<Instant>,
}

enum Step {
    /// Waiting for room to send the command.
    Queued,
    InFlight(Attempt),
    /// Refused before anything was sent; reported by the next poll.
    Refused(Error),
    Done,
}

impl NodeCall {
    /// A call that sends `command` on its first poll, once there is room.
    /// `route` may already hold a place reserved by its `poll_ready`.
    pub(crate) fn new(route: Route, command: Command) -> Self {
        NodeCall {
            retries_left: route.max_retries,
            route,
            step: Step::Queued,
            command: Some(command),
            deadline: None,
        }
    }

    /// The call bounded by `timeout` from now (see [`bounded`]), its
    /// attempts too (the connection's timer may bound them).
    pub(crate) fn within(mut self, timeout: Duration) -> Self {
        self.deadline = Some(Instant::now() + timeout);
        self
    }

    /// Whether the attempt in flight is bounded by the connection's timer
    /// (so its awaiter needs no timer of its own).
    fn is_covered(&self) -> bool {
        matches!(&self.step, Step::InFlight(attempt) if attempt.is_covered())
    }

    /// Sends the command now if there is room, so requests made one after
    /// another are pipelined before any is awaited.
    pub(crate) fn send_now(&mut self) {
        let waker = futures_util::task::noop_waker();
        let _ = self.poll_send(&mut Context::from_waker(&waker));
    }

    /// Gives up at the deadline. An attempt in flight counts as a timeout
    /// against the node's health; a request still waiting for room does not
    /// (the requests filling the window count).
    pub(crate) fn time_out(&mut self, timeout: Duration) -> Error {
        let error = Error::new(ErrorKind::Timeout).with_node(self.route.addr);
        self.command = None;
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::InFlight(_) => {
                self.route.record(Observation::Timeout);
                error.with_detail(format!("no answer within {timeout:?}"))
            }
            // Never sent: unsent, so nothing takes it for the node's fault.
            _ => error
                .with_unsent(true)
                .with_detail(format!("no room in the connection within {timeout:?}")),
        }
    }

    /// Waits for room, then sends the queued command (or keeps why not).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !matches!(self.step, Step::Queued) {
            return Poll::Ready(());
        }
        self.step = match ready!(self.route.poll_ready(cx)) {
            Ok(()) => {
                let keep = self.retries_left > 0;
                Step::InFlight(
                    self.route
                        .attempts
                        .call(&mut self.command, keep, self.deadline),
                )
            }
            Err(error) => {
                self.command = None;
                Step::Refused(error)
            }
        };
        Poll::Ready(())
    }
}

impl Future for NodeCall {
    type Output = Result<Reply, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            ready!(this.poll_send(cx));
            let attempt = match &mut this.step {
                Step::InFlight(attempt) => attempt,
                Step::Refused(_) => {
                    let Step::Refused(error) = std::mem::replace(&mut this.step, Step::Done) else {
                        unreachable!("matched above")
                    };
                    return Poll::Ready(Err(error));
                }
                Step::Queued | Step::Done => panic!("NodeCall polled after completion"),
            };
            let result = ready!(Pin::new(attempt).poll(cx));
            this.step = Step::Done;
            this.route.record(result.observation());
            let error = match result {
                Ok(reply) => return Poll::Ready(Ok(reply)),
                Err(error) => error,
            };
            // Never past the deadline: nothing is left for another attempt.
            let in_time = this
                .deadline
                .map_or(true, |deadline| Instant::now() < deadline);
            let retry = in_time
                && this
                    .command
                    .as_ref()
                    .is_some_and(|command| RetryPolicy::is_retry_safe(command, &error));
            if !retry {
                this.command = None;
                return Poll::Ready(Err(error.with_node(this.route.addr)));
            }
            this.retries_left -= 1;
            let node = this.route.addr;
            tracing::debug!(%node, %error, remaining = this.retries_left, "retrying");
            this.step = Step::Queued;
        }
    }
}

/// Awaits `call` until its deadline (set with
/// [`NodeCall::within`], `timeout` after it was made), the wait for
/// room and the retries included. While its attempt is covered by the connection's one
/// timer (see [`Connection`](crate::Connection)), no timer of its own is
/// made; the first poll that finds it uncovered (waiting for room, the
/// connection idle before it, the user's layers, a retry) makes one.
// An `async move` block rather than an `async fn`: the call is kept once
// in the future, not once as an argument and once as a local.
#[allow(clippy::manual_async_fn)]
pub(crate) fn bounded(
    mut call: NodeCall,
    timeout: Duration,
) -> impl Future<Output = Result<Reply, Error>> + Send + 'static {
    async move {
        let deadline = call.deadline.expect("a bounded call carries its deadline");
        // Boxed: made only when the call is not covered (its `Sleep` would
        // more than double the size of every call's future, which callers
        // move whole).
        let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
        std::future::poll_fn(|cx| {
            // An answer that came in time wins over the deadline.
            if let Poll::Ready(result) = Pin::new(&mut call).poll(cx) {
                return Poll::Ready(result);
            }
            if timer.is_none() && !call.is_covered() {
                timer = Some(Box::pin(tokio::time::sleep_until(deadline)));
            }
            if let Some(timer) = timer.as_mut() {
                ready!(timer.as_mut().poll(cx));
                return Poll::Ready(Err(call.time_out(timeout)));
            }
            Poll::Pending
        })
        .await
    }
}
