//! memha as the session store of web frameworks: every session is written
//! to every healthy memcached node, so a user stays logged in when a node
//! dies, hangs or comes back empty.
//!
//! - [`TowerSessionStore`] (cargo feature `tower-sessions`): a
//!   [`tower_sessions_core::SessionStore`] for
//!   [tower-sessions](https://docs.rs/tower-sessions) 0.15, the session layer
//!   of axum and other tower servers.
//! - [`ActixSessionStore`] (cargo feature `actix-session`): an
//!   [`actix_session::storage::SessionStore`] for
//!   [actix-session](https://docs.rs/actix-session) 0.11.
//!
//! Both take a [`memha_client::Client`] built with any settings (nodes,
//! discovery, timeouts, TLS, ack policy) and keep each session under
//! `<prefix><session id>`, the prefix being `session:` unless set with
//! `with_prefix`.
//!
//! # Behaviour
//!
//! - **New sessions** are stored with memcached's `add`, which the key's
//!   primary node decides: a new session never overwrites another one. On
//!   the (astronomically unlikely) collision a new random id is drawn, at
//!   most [`DEFAULT_CREATE_ATTEMPTS`] times, after which the store fails
//!   with [`Error::IdCollision`] rather than loop.
//! - **Missing or expired sessions** load as "no session" (`Ok(None)`),
//!   never as an error, so a stale, forged or replayed cookie gets a fresh
//!   anonymous session. A stored value that does not decode is a typed
//!   decode error, never a panic.
//! - **Expiry**: a session's lifetime becomes the item's memcached
//!   expiration through [`memha_client::Ttl`], which follows memcached's
//!   rule: up to 30 days as seconds from now, beyond that as an absolute
//!   Unix time (a relative 60 days would otherwise be read as a date in
//!   1970, expiring the session at once). Sub-second remainders round up.
//!   A session whose expiry has already passed is not stored: its key is
//!   deleted instead. memcached expires to the second, so loads also check
//!   the recorded expiry and drop a session that is past it.
//! - **Deleting** is idempotent: deleting a session that does not exist
//!   succeeds.
//! - **Size**: an encoded session larger than the client's value limit
//!   ([`memha_client::Client::limits`], 1 MiB by default) fails with
//!   [`Error::TooLarge`] before anything is sent.
//!
//! # Serialization: MessagePack
//!
//! Sessions are encoded with MessagePack ([`rmp_serde`], compact array
//! form), as tower-sessions' Redis store does. It is a binary JSON: the
//! same data model (the `serde_json::Value`s tower-sessions keeps, the
//! string map of actix-session round-trip exactly), but lengths are
//! prefixes rather than quotes and escapes, numbers are binary, and the
//! record's fields are positional rather than named. A tower-sessions
//! record is stored as `[id, [unix seconds, nanoseconds], data]`
//! ([`encode_record`]): `time`'s own form of the expiry is nine integers
//! to encode and validate. A typical logged-in session (id, expiry, user
//! name, counter, role, CSRF token) is about 100 bytes so, against about
//! 190 as JSON, and encoding plus decoding it takes about 0.65 µs, a
//! quarter less than MessagePack of the record as it is (0.86 µs), which
//! takes itself a third less than JSON (1.36 µs), on a 2-core test
//! machine (`cargo bench -p memha-session --all-features`, which also
//! compares a session's load+save through the store with plain memha
//! get+set of the same bytes: about 13% fewer per second with 32 in
//! flight, 4% one at a time). Smaller items also mean more sessions per
//! memcached node and less to copy on every write and repair. Values stay
//! readable by any MessagePack library; memha stores them byte for byte,
//! with no header.
//!
//! # Errors
//!
//! Every failure is an [`Error`] first, then mapped to the framework's
//! error type: for actix-session, a memcached failure is the `anyhow`
//! error inside `LoadError::Other` and friends, so
//! `err.source()` is the [`memha_client::Error`] itself. tower-sessions'
//! error type carries only strings, so there the message includes the
//! memha error and its causes (`Backend`), and decode and encode failures
//! map to its `Decode` and `Encode` variants.
//!
//! # Cargo features
//!
//! - `tower-sessions`: [`TowerSessionStore`].
//! - `actix-session`: [`ActixSessionStore`].
//!
//! Neither is on by default, and memha-client depends on neither.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a framework feature, only the error type is left to use.
#![cfg_attr(
    not(any(feature = "tower-sessions", feature = "actix-session")),
    allow(dead_code)
)]

use std::cell::RefCell;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use memha_client::{Client, StoreOutcome, Ttl};

#[cfg(feature = "actix-session")]
mod actix;
#[cfg(feature = "tower-sessions")]
mod tower;

#[cfg(feature = "actix-session")]
pub use actix::ActixSessionStore;
#[cfg(feature = "tower-sessions")]
pub use tower::{decode_record, encode_record, TowerSessionStore};

/// The key prefix sessions are stored under unless set otherwise.
pub const DEFAULT_PREFIX: &str = "session:";

/// How many random ids creating a session tries before giving up with
/// [`Error::IdCollision`].
pub const DEFAULT_CREATE_ATTEMPTS: u32 = 8;

/// What can go wrong in a session store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The memcached request failed (no node reachable, timeout, partial
    /// write...): the memha error is the source.
    #[error("the session store's memcached request failed")]
    Backend(#[from] memha_client::Error),
    /// The session could not be encoded.
    #[error("the session could not be encoded")]
    Encode(#[source] Box<dyn StdError + Send + Sync>),
    /// The stored value is not a session this store wrote (garbage, another
    /// application's value under the same key, a record for another id).
    #[error("the stored session could not be decoded")]
    Decode(#[source] Box<dyn StdError + Send + Sync>),
    /// The encoded session is larger than the client's value limit.
    #[error("the encoded session is {len} bytes, over the client's value limit of {max} bytes")]
    TooLarge {
        /// The encoded session's size in bytes.
        len: usize,
        /// The client's limit ([`memha_client::Client::limits`]).
        max: usize,
    },
    /// Every id tried for a new session was taken.
    #[error("no free session id after {attempts} attempts")]
    IdCollision {
        /// How many ids were tried.
        attempts: u32,
    },
}

impl Error {
    /// The memha error behind this one, if a memcached request failed.
    pub fn memha(&self) -> Option<&memha_client::Error> {
        match self {
            Error::Backend(err) => Some(err),
            _ => None,
        }
    }

    /// This error and its causes, `: `-separated (for error types that hold
    /// only a message).
    #[cfg(feature = "tower-sessions")]
    fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = StdError::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// What both stores share: the client, the key prefix, the id attempts.
/// Cloning it allocates nothing.
#[derive(Clone)]
struct Backend {
    client: Client,
    prefix: Arc<str>,
    create_attempts: u32,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("prefix", &self.prefix)
            .field("create_attempts", &self.create_attempts)
            .field("client_timeout", &self.client.timeout())
            .finish_non_exhaustive()
    }
}

/// A lifetime memcached would not keep the item for: already past.
fn is_expired(ttl: Ttl) -> bool {
    ttl.exptime() < 0
}

impl Backend {
    fn new(client: Client) -> Backend {
        Backend {
            client,
            prefix: Arc::from(DEFAULT_PREFIX),
            create_attempts: DEFAULT_CREATE_ATTEMPTS,
        }
    }

    /// The key of session `id`, built in one allocation of its exact size
    /// (so the client takes it over without copying it).
    #[cfg(feature = "actix-session")]
    fn key(&self, id: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + id.len());
        key.push_str(&self.prefix);
        key.push_str(id);
        key
    }

    /// Refuses a value over the client's limit before anything is sent.
    fn check_size(&self, value: &[u8]) -> Result<(), Error> {
        let max = self.client.limits().max_value_len;
        if value.len() > max {
            return Err(Error::TooLarge {
                len: value.len(),
                max,
            });
        }
        Ok(())
    }

    /// The stored value under `key`; `None` when it is missing or `key`
    /// is not a valid key (such a session cannot exist).
    async fn get(&self, key: String) -> Result<Option<Bytes>, Error> {
        match self.client.get(key).await {
            Ok(item) => Ok(item.map(|item| item.value)),
            Err(err) if err.kind() == memha_client::ErrorKind::InvalidKey => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Stores `value` under `key` only if the key is free: `false` when it
    /// is taken.
    async fn add(&self, key: String, value: Bytes, ttl: Ttl) -> Result<bool, Error> {
        self.check_size(&value)?;
        let outcome = self.client.add(key, value).ttl(ttl).await?;
        Ok(outcome == StoreOutcome::Stored)
    }

    /// Stores `value` under `key`, or deletes the key when `ttl` has passed.
    #[cfg(feature = "tower-sessions")]
    async fn set(&self, key: String, value: Bytes, ttl: Ttl) -> Result<(), Error> {
        if is_expired(ttl) {
            return self.delete(key).await;
        }
        self.check_size(&value)?;
        self.client.set(key, value).ttl(ttl).await?;
        Ok(())
    }

    /// Replaces the value under `key` if it is there: `false` when it is
    /// not (expired, deleted, or not a valid key).
    #[cfg(feature = "actix-session")]
    async fn replace(&self, key: String, value: Bytes, ttl: Ttl) -> Result<bool, Error> {
        self.check_size(&value)?;
        match self.client.replace(key, value).ttl(ttl).await {
            Ok(outcome) => Ok(outcome == StoreOutcome::Stored),
            Err(err) if err.kind() == memha_client::ErrorKind::InvalidKey => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Sets the lifetime of the session under `key`, if it is there.
    #[cfg(feature = "actix-session")]
    async fn touch(&self, key: String, ttl: Ttl) -> Result<(), Error> {
        if is_expired(ttl) {
            return self.delete(key).await;
        }
        match self.client.touch(key, ttl).await {
            Ok(_) => Ok(()),
            Err(err) if err.kind() == memha_client::ErrorKind::InvalidKey => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Deletes the session under `key`; deleting a missing one succeeds.
    async fn delete(&self, key: String) -> Result<(), Error> {
        match self.client.delete(key).await {
            Ok(_) => Ok(()),
            Err(err) if err.kind() == memha_client::ErrorKind::InvalidKey => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

/// Encoding buffers larger than this are not kept for the next session.
const SCRATCH_KEEP: usize = 64 * 1024;

thread_local! {
    /// Where sessions are encoded before being copied out at their exact
    /// size: one allocation per encoded session, none for growing a buffer.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `value` as MessagePack (compact array form), in a buffer of its exact
/// size.
fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Bytes, Error> {
    fn encode_into<T: serde::Serialize + ?Sized>(
        out: &mut Vec<u8>,
        value: &T,
    ) -> Result<Bytes, Error> {
        out.clear();
        let encoded = rmp_serde::encode::write(out, value)
            .map(|()| Bytes::copy_from_slice(out))
            .map_err(|err| Error::Encode(Box::new(err)));
        if out.capacity() > SCRATCH_KEEP {
            *out = Vec::new();
        }
        encoded
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut out) => encode_into(&mut out, value),
        // Only if a `Serialize` implementation encoded a session itself.
        Err(_) => encode_into(&mut Vec::new(), value),
    })
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    rmp_serde::from_slice(bytes).map_err(|err| Error::Decode(Box::new(err)))
}

// The README's example runs as a doctest; the workspace README's Sessions
// section holds the same snippet (checked by `tests/readme.rs`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
