//! The actix-session store.

use std::collections::HashMap;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use memha_client::{Client, Ttl};
use rand::distr::{Alphanumeric, SampleString};

use crate::{decode, encode, Backend, Error};

/// What actix-session keeps in a session: JSON-encoded values by name.
type SessionState = HashMap<String, String>;

/// The length of a session key: 64 alphanumeric characters (381 bits of
/// randomness), as actix-session's Redis store draws them.
const KEY_LEN: usize = 64;

/// An [actix-session](https://docs.rs/actix-session) 0.11 session store
/// over memha: each session's state is MessagePack under `<prefix><key>`
/// on every healthy node (cargo feature `actix-session`).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use actix_session::SessionMiddleware;
/// use actix_web::cookie::Key;
/// use memha_client::Client;
/// use memha_session::ActixSessionStore;
///
/// let client = Client::builder()
///     .nodes(["10.0.0.1:11211".parse()?, "10.0.0.2:11211".parse()?])
///     .build()
///     .await?;
/// let store = ActixSessionStore::new(client);
/// let key = Key::generate(); // in production, load a stable key
/// let middleware = SessionMiddleware::new(store, key); // .wrap(...) on your App
/// # drop(middleware);
/// # Ok(())
/// # }
/// ```
///
/// Keys are 64 random alphanumeric characters. `save` stores a new
/// session with `add` (a new key on a collision); `update` replaces the
/// session only if it is still there, and otherwise saves it under a new
/// key (it expired or was deleted meanwhile), as actix-session's Redis
/// store does; `update_ttl` is a `touch`. A TTL of zero or less stores
/// nothing (and deletes the session for `update` and `update_ttl`).
#[derive(Debug, Clone)]
pub struct ActixSessionStore {
    backend: Backend,
}

impl ActixSessionStore {
    /// A store over `client`, under the prefix [`DEFAULT_PREFIX`](crate::DEFAULT_PREFIX).
    pub fn new(client: Client) -> ActixSessionStore {
        ActixSessionStore {
            backend: Backend::new(client),
        }
    }

    /// Keeps sessions under `prefix` followed by the session key. With the
    /// key (64 characters), the memcached key must stay valid: at most 250
    /// bytes, no whitespace or control characters.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> ActixSessionStore {
        self.backend.prefix = prefix.into().into();
        self
    }

    /// How many random keys `save` tries before failing with
    /// [`Error::IdCollision`] (at least 1; default
    /// [`DEFAULT_CREATE_ATTEMPTS`](crate::DEFAULT_CREATE_ATTEMPTS)).
    pub fn with_create_attempts(mut self, attempts: u32) -> ActixSessionStore {
        self.backend.create_attempts = attempts.max(1);
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.backend.prefix
    }

    /// The memcached key of session `key`.
    pub fn key(&self, key: &SessionKey) -> String {
        self.backend.key(key.as_ref())
    }

    /// The client the store uses.
    pub fn client(&self) -> &Client {
        &self.backend.client
    }

    async fn load_state(&self, key: &SessionKey) -> Result<Option<SessionState>, Error> {
        match self.backend.get(self.key(key)).await? {
            Some(value) => decode(&value).map(Some),
            None => Ok(None),
        }
    }

    async fn save_state(&self, state: &SessionState, ttl: Ttl) -> Result<SessionKey, Error> {
        let value = encode(state)?;
        self.backend.check_size(&value)?;
        if crate::is_expired(ttl) {
            return Ok(new_key());
        }
        for _ in 0..self.backend.create_attempts {
            let key = new_key();
            if self.backend.add(self.key(&key), value.clone(), ttl).await? {
                return Ok(key);
            }
        }
        Err(Error::IdCollision {
            attempts: self.backend.create_attempts,
        })
    }

    async fn update_state(
        &self,
        key: SessionKey,
        state: &SessionState,
        ttl: Ttl,
    ) -> Result<SessionKey, Error> {
        let value = encode(state)?;
        if crate::is_expired(ttl) {
            self.backend.delete(self.key(&key)).await?;
            return Ok(key);
        }
        if self.backend.replace(self.key(&key), value, ttl).await? {
            return Ok(key);
        }
        // Expired or deleted since it was loaded: a new key, never the old
        // one, so a session that was logged out stays out.
        self.save_state(state, ttl).await
    }
}

/// A new random session key.
fn new_key() -> SessionKey {
    Alphanumeric
        .sample_string(&mut rand::rng(), KEY_LEN)
        .try_into()
        .expect("64 characters are within a session key's 4064")
}

/// actix's TTL as memha's: memcached's relative-or-absolute rule comes
/// with [`Ttl`]; zero or negative is already expired.
fn ttl_of(ttl: &time::Duration) -> Ttl {
    match std::time::Duration::try_from(*ttl) {
        Ok(ttl) => Ttl::After(ttl),
        Err(_) => Ttl::After(std::time::Duration::ZERO),
    }
}

/// A memcached failure as the memha error itself; the others as this
/// crate's error.
fn anyhow_of(err: Error) -> anyhow::Error {
    match err {
        Error::Backend(err) => anyhow::Error::new(err),
        err => anyhow::Error::new(err),
    }
}

impl SessionStore for ActixSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        self.load_state(key).await.map_err(|err| match err {
            Error::Decode(_) => LoadError::Deserialization(anyhow_of(err)),
            err => LoadError::Other(anyhow_of(err)),
        })
    }

    async fn save(
        &self,
        state: SessionState,
        ttl: &time::Duration,
    ) -> Result<SessionKey, SaveError> {
        self.save_state(&state, ttl_of(ttl))
            .await
            .map_err(|err| match err {
                Error::Encode(_) | Error::TooLarge { .. } => {
                    SaveError::Serialization(anyhow_of(err))
                }
                err => SaveError::Other(anyhow_of(err)),
            })
    }

    async fn update(
        &self,
        key: SessionKey,
        state: SessionState,
        ttl: &time::Duration,
    ) -> Result<SessionKey, UpdateError> {
        self.update_state(key, &state, ttl_of(ttl))
            .await
            .map_err(|err| match err {
                Error::Encode(_) | Error::TooLarge { .. } => {
                    UpdateError::Serialization(anyhow_of(err))
                }
                err => UpdateError::Other(anyhow_of(err)),
            })
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &time::Duration) -> anyhow::Result<()> {
        self.backend
            .touch(self.key(key), ttl_of(ttl))
            .await
            .map_err(anyhow_of)
    }

    async fn delete(&self, key: &SessionKey) -> anyhow::Result<()> {
        self.backend.delete(self.key(key)).await.map_err(anyhow_of)
    }
}
