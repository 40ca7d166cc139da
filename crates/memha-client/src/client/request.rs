//! Requests with options: await them directly, or set the options first.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use bytes::Bytes;
use memha_proto::{ArithmeticMode, Command, MetaArithmetic, MetaSet, SetMode};

use super::{outcome, Client};
use crate::error::{Error, ErrorKind};
use crate::item::StoreOutcome;
use crate::key::{IntoKey, Key};
use crate::Ttl;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// A store (`set`, `add`, `replace`, `append`, `prepend`, `cas`) to send:
/// `.await` it, after setting a lifetime and flags if you want.
///
/// ```no_run
/// # async fn demo(client: memha_client::Client) -> Result<(), memha_client::Error> {
/// use memha_client::{StoreOutcome, Ttl};
///
/// client.set("greeting", "hello").await?;
/// let outcome = client.add("lock:42", "me").ttl(Ttl::seconds(30)).flags(1).await?;
/// if outcome == StoreOutcome::NotStored {
///     // someone else holds the lock
/// }
/// # Ok(())
/// # }
/// ```
#[must_use = "a request does nothing until it is awaited"]
#[derive(Debug)]
pub struct StoreRequest<'a> {
    client: &'a Client,
    key: Result<Key, Error>,
    value: Bytes,
    mode: SetMode,
    compare_cas: Option<u64>,
    ttl: Ttl,
    flags: u32,
}

impl<'a> StoreRequest<'a> {
    pub(super) fn new(
        client: &'a Client,
        key: impl IntoKey,
        value: Bytes,
        mode: SetMode,
        compare_cas: Option<u64>,
    ) -> Self {
        StoreRequest {
            client,
            key: key.into_key(),
            value,
            mode,
            compare_cas,
            ttl: Ttl::Never,
            flags: 0,
        }
    }

    /// How long the item lives (default [`Ttl::Never`]). Ignored by
    /// `append` and `prepend`, which keep the item's lifetime.
    pub fn ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.ttl = ttl.into();
        self
    }

    /// The client flags stored with the value (default 0). Ignored by
    /// `append` and `prepend`, which keep the item's flags.
    pub fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }

    /// Sends the request; the same as awaiting it.
    pub async fn send(self) -> Result<StoreOutcome, Error> {
        let key = self.key?;
        let max = self.client.limits().max_value_len;
        if self.value.len() > max {
            return Err(Error::new(ErrorKind::ValueTooLarge {
                len: self.value.len(),
                max,
            }));
        }
        let mut set = MetaSet::new(key, self.value);
        set.mode = self.mode;
        set.compare_cas = self.compare_cas;
        if !matches!(self.mode, SetMode::Append | SetMode::Prepend) {
            set.ttl = match self.ttl {
                Ttl::Never => None,
                ttl => Some(ttl.exptime()),
            };
            set.client_flags = (self.flags != 0).then_some(self.flags);
        }
        outcome::store(self.client.send(Command::MetaSet(set)).await?)
    }
}

impl<'a> IntoFuture for StoreRequest<'a> {
    type Output = Result<StoreOutcome, Error>;
    type IntoFuture = BoxFuture<'a, StoreOutcome>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// An increment or decrement to send: `.await` it, after asking for the
/// counter to be created when missing if you want. It resolves to the new
/// value, or `None` when the counter does not exist.
///
/// ```no_run
/// # async fn demo(client: memha_client::Client) -> Result<(), memha_client::Error> {
/// use memha_client::Ttl;
///
/// let hits = client.increment("hits", 1).initial(1).ttl(Ttl::seconds(3600)).await?;
/// assert!(hits >= Some(1));
/// # Ok(())
/// # }
/// ```
#[must_use = "a request does nothing until it is awaited"]
#[derive(Debug)]
pub struct ArithmeticRequest<'a> {
    client: &'a Client,
    key: Result<Key, Error>,
    mode: ArithmeticMode,
    delta: u64,
    initial: Option<u64>,
    ttl: Ttl,
}

impl<'a> ArithmeticRequest<'a> {
    pub(super) fn new(
        client: &'a Client,
        key: impl IntoKey,
        mode: ArithmeticMode,
        delta: u64,
    ) -> Self {
        ArithmeticRequest {
            client,
            key: key.into_key(),
            mode,
            delta,
            initial: None,
            ttl: Ttl::Never,
        }
    }

    /// When the counter does not exist, create it with this value (the
    /// delta is not applied to it) instead of returning `None`.
    pub fn initial(mut self, value: u64) -> Self {
        self.initial = Some(value);
        self
    }

    /// The lifetime of a counter created by [`initial`](Self::initial)
    /// (default [`Ttl::Never`]). An existing counter keeps its lifetime.
    pub fn ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.ttl = ttl.into();
        self
    }

    /// Sends the request; the same as awaiting it.
    pub async fn send(self) -> Result<Option<u64>, Error> {
        let mut arithmetic = MetaArithmetic::new(self.key?, self.mode, self.delta);
        if let Some(initial) = self.initial {
            arithmetic.vivify = Some(self.ttl.exptime());
            arithmetic.initial = Some(initial);
        }
        outcome::counter(
            self.client
                .send(Command::MetaArithmetic(arithmetic))
                .await?,
        )
    }
}

impl<'a> IntoFuture for ArithmeticRequest<'a> {
    type Output = Result<Option<u64>, Error>;
    type IntoFuture = BoxFuture<'a, Option<u64>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}
