//! Which failed requests a node retries: only those a retry cannot apply twice.

use std::future::{ready, Ready};

use memha_proto::{Command, Reply};
use tower::retry::Policy;

use crate::error::{Error, ErrorKind};

/// The retry policy of a node stack, for `tower::retry::Retry`.
///
/// A failed request is tried again, at most [`max_retries`](Self::max_retries)
/// times, only when a retry is surely harmless:
/// - any request that surely never reached the server (the node could not
///   be reached, or the connection broke before the request was written:
///   [`Error::is_unsent`]);
/// - a read (`mg`, `mn`, classic retrievals, `version`, `stats`, `config`)
///   after any transport failure (connection or protocol error).
///
/// A write whose fate is unknown (an `incr` or `append` that may have been
/// applied before the connection broke) is never retried, nor is any
/// server answer (`SERVER_ERROR` ...). Timeouts are decided above the retry
/// layer and are not retried either.
///
/// ```
/// use memha_client::RetryPolicy;
/// let policy = RetryPolicy::new(3);
/// assert_eq!(policy.max_retries(), 3);
/// assert_eq!(RetryPolicy::never().max_retries(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_retries: usize,
    remaining: usize,
}

impl RetryPolicy {
    /// Retries a request at most `max_retries` times.
    pub fn new(max_retries: usize) -> Self {
        RetryPolicy {
            max_retries,
            remaining: max_retries,
        }
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

impl Policy<Command, Reply, Error> for RetryPolicy {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        command: &mut Command,
        result: &mut Result<Reply, Error>,
    ) -> Option<Self::Future> {
        let Err(error) = result else {
            return None;
        };
        if self.remaining == 0 || !Self::is_retry_safe(command, error) {
            return None;
        }
        self.remaining -= 1;
        tracing::debug!(%error, remaining = self.remaining, "retrying");
        Some(ready(()))
    }

    fn clone_request(&mut self, command: &Command) -> Option<Command> {
        (self.remaining > 0).then(|| command.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memha_proto::{ArithmeticMode, Key, MetaArithmetic, MetaGet, MetaSet};
    use std::time::Duration;
    use tower::retry::RetryLayer;
    use tower::{Layer, ServiceExt};
    use tower_test::mock;

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
            &Error::new(ErrorKind::Server("out of memory".into()))
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
        let retry = RetryLayer::new(RetryPolicy::new(2)).layer(service.map_err(Error::from_boxed));
        let call = tokio::spawn(retry.oneshot(get()));

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
        let retry = RetryLayer::new(RetryPolicy::new(2)).layer(service.map_err(Error::from_boxed));
        let call = tokio::spawn(retry.oneshot(incr()));

        let (_, respond) = handle.next_request().await.unwrap();
        respond.send_error(lost(false));
        let error = call.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::Connection);
        assert!(
            no_more_requests(&mut handle).await,
            "the write must not be sent again"
        );
    }

    #[tokio::test]
    async fn retries_an_unsent_write_and_stops_at_the_bound() {
        let (service, mut handle) = mock::pair::<Command, Reply>();
        let retry = RetryLayer::new(RetryPolicy::new(2)).layer(service.map_err(Error::from_boxed));
        let call = tokio::spawn(retry.oneshot(incr()));

        for _ in 0..3 {
            let (request, respond) = handle.next_request().await.unwrap();
            assert_eq!(request, incr());
            respond.send_error(Error::new(ErrorKind::Connect));
        }
        let error = call.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::Connect);
        assert!(no_more_requests(&mut handle).await);
    }

    /// True when no further request reaches the mock (it may be gone).
    async fn no_more_requests(handle: &mut mock::Handle<Command, Reply>) -> bool {
        let next = tokio::time::timeout(Duration::from_millis(20), handle.next_request()).await;
        !matches!(next, Ok(Some(_)))
    }
}
