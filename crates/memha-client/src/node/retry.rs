//! Which failed requests a node retries: only those a retry cannot apply twice.

use memha_proto::Command;

use crate::error::{Error, ErrorKind};

/// How a node stack retries: plain configuration, which the node stack's
/// one retry loop follows (the same future that bounds the request and
/// records its outcomes into the node's health).
///
/// A failed request is tried again, at most [`max_retries`](Self::max_retries)
/// times, only when a retry is surely harmless:
/// - any request that surely never reached the server (the node could not
///   be reached, or the connection broke before the request was written:
///   [`Error::is_unsent`]);
/// - a read (`mg`, `mn`, classic retrievals, `version`, `stats`, `config`:
///   [`Command::is_read`]) after any transport failure (connection or
///   protocol error).
///
/// A write whose fate is unknown (an `incr` or `append` that may have been
/// applied before the connection broke) is never retried, nor is any
/// server answer (`SERVER_ERROR` ...). The stack's timeout bounds a
/// request with all its retries; a timeout is not retried.
///
/// To retry differently, turn this off ([`RetryPolicy::never`]) and add a
/// tower layer of your own with
/// [`NodeStackBuilder::layer`](crate::NodeStackBuilder::layer): it sees
/// every attempt.
///
/// ```
/// use memha_client::RetryPolicy;
/// let policy = RetryPolicy::new(3);
/// assert_eq!(policy.max_retries(), 3);
/// assert_eq!(RetryPolicy::never().max_retries(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: usize,
}

impl RetryPolicy {
    /// Retries a request at most `max_retries` times.
    pub fn new(max_retries: usize) -> Self {
        RetryPolicy { max_retries }
    }

    /// Never retries.
    pub fn never() -> Self {
        RetryPolicy::new(0)
    }

    /// The most retries of one request.
    pub fn max_retries(&self) -> usize {
        self.max_retries
    }

    /// Whether retrying `command` after `error` is harmless (see the type's docs).
    pub fn is_retry_safe(command: &Command, error: &Error) -> bool {
        let transport = matches!(
            error.kind(),
            ErrorKind::Connect | ErrorKind::Connection | ErrorKind::Protocol
        );
        transport && (error.is_unsent() || command.is_read())
    }
}

impl Default for RetryPolicy {
    /// Two retries.
    fn default() -> Self {
        RetryPolicy::new(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memha_proto::{ArithmeticMode, Key, MetaArithmetic, MetaGet, MetaSet, Reply};
    use std::time::Duration;
    use tower::ServiceExt;
    use tower_test::mock;

    use crate::node::call::{Attempts, NodeCall, Route};
    use crate::node::BoxedService;

    /// A call of `command` with `policy`'s retries, its attempts going to
    /// the mock `service`: the node stack's own retry loop.
    fn call_through(
        service: mock::Mock<Command, Reply>,
        policy: RetryPolicy,
        command: Command,
    ) -> NodeCall {
        let attempts = BoxedService::new(service.map_err(Error::from_boxed));
        let route = Route {
            addr: "127.0.0.1:11211".parse().unwrap(),
            attempts: Attempts::Layered(attempts),
            max_retries: policy.max_retries(),
            health: None,
        };
        NodeCall::new(route, command)
    }

    fn key() -> Key {
        Key::new("k").unwrap()
    }

    fn get() -> Command {
        MetaGet::full(key()).into()
    }

    fn incr() -> Command {
        MetaArithmetic::new(key(), ArithmeticMode::Increment, 1).into()
    }

    fn lost(unsent: bool) -> Error {
        Error::new(ErrorKind::Connection).with_unsent(unsent)
    }

    #[test]
    fn classification() {
        let set: Command = MetaSet::new(key(), "v").into();
        assert!(RetryPolicy::is_retry_safe(&get(), &lost(false)));
        assert!(RetryPolicy::is_retry_safe(&Command::Version, &lost(false)));
        assert!(RetryPolicy::is_retry_safe(
            &get(),
            &Error::new(ErrorKind::Protocol)
        ));
        assert!(!RetryPolicy::is_retry_safe(&incr(), &lost(false)));
        assert!(!RetryPolicy::is_retry_safe(&set, &lost(false)));
        assert!(RetryPolicy::is_retry_safe(&incr(), &lost(true)));
        assert!(RetryPolicy::is_retry_safe(
            &set,
            &Error::new(ErrorKind::Connect)
        ));
        assert!(!RetryPolicy::is_retry_safe(
            &get(),
            &Error::server("out of memory")
        ));
        assert!(!RetryPolicy::is_retry_safe(
            &get(),
            &Error::new(ErrorKind::Timeout)
        ));
        assert!(!RetryPolicy::is_retry_safe(
            &get(),
            &Error::new(ErrorKind::Closed)
        ));
    }

    #[tokio::test]
    async fn retries_a_read_then_succeeds() {
        let (service, mut handle) = mock::pair::<Command, Reply>();
        let call = tokio::spawn(call_through(service, RetryPolicy::new(2), get()));

        let (request, respond) = handle.next_request().await.unwrap();
        assert_eq!(request, get());
        respond.send_error(lost(false));
        let (request, respond) = handle.next_request().await.unwrap();
        assert_eq!(request, get());
        respond.send_response(Reply::Ok);
        assert_eq!(call.await.unwrap().unwrap(), Reply::Ok);
    }

    #[tokio::test]
    async fn never_retries_a_write_that_may_have_applied() {
        let (service, mut handle) = mock::pair::<Command, Reply>();
        let call = tokio::spawn(call_through(service, RetryPolicy::new(2), incr()));

        let (_, respond) = handle.next_request().await.unwrap();
        respond.send_error(lost(false));
        let error = call.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connection);
        assert!(
            no_more_requests(&mut handle).await,
            "the write must not be sent again"
        );
    }

    #[tokio::test]
    async fn retries_an_unsent_write_and_stops_at_the_bound() {
        let (service, mut handle) = mock::pair::<Command, Reply>();
        let call = tokio::spawn(call_through(service, RetryPolicy::new(2), incr()));

        for _ in 0..3 {
            let (request, respond) = handle.next_request().await.unwrap();
            assert_eq!(request, incr());
            respond.send_error(Error::new(ErrorKind::Connect));
        }
        let error = call.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connect);
        assert!(no_more_requests(&mut handle).await);
    }

    /// True when no further request reaches the mock (it may be gone).
    async fn no_more_requests(handle: &mut mock::Handle<Command, Reply>) -> bool {
        let next = tokio::time::timeout(Duration::from_millis(20), handle.next_request()).await;
        !matches!(next, Ok(Some(_)))
    }
}
