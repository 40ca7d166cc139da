//! The tower-sessions store.

use std::fmt::Write as _;
use std::time::SystemTime;

use async_trait::async_trait;
use memha_client::{Client, Ttl};
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, SessionStore};

use crate::{decode, encode, Backend, Error};

/// A [tower-sessions](https://docs.rs/tower-sessions) 0.15 session store
/// over memha: each session [`Record`] is MessagePack under
/// `<prefix><id>` on every healthy node (cargo feature `tower-sessions`).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use memha_client::Client;
/// use memha_session::TowerSessionStore;
/// use tower_sessions::SessionManagerLayer;
///
/// let client = Client::builder()
///     .nodes(["10.0.0.1:11211".parse()?, "10.0.0.2:11211".parse()?])
///     .build()
///     .await?;
/// let store = TowerSessionStore::new(client).with_prefix("myapp:session:");
/// let layer = SessionManagerLayer::new(store); // .layer(...) on your router
/// # drop(layer);
/// # Ok(())
/// # }
/// ```
///
/// See the [crate documentation](crate) for ids, expiry and errors.
#[derive(Debug, Clone)]
pub struct TowerSessionStore {
    backend: Backend,
}

impl TowerSessionStore {
    /// A store over `client`, under the prefix [`DEFAULT_PREFIX`](crate::DEFAULT_PREFIX).
    pub fn new(client: Client) -> TowerSessionStore {
        TowerSessionStore {
            backend: Backend::new(client),
        }
    }

    /// Keeps sessions under `prefix` followed by the session id. With the
    /// id (22 characters), the key must stay a valid memcached key: at most
    /// 250 bytes, no whitespace or control characters.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> TowerSessionStore {
        self.backend.prefix = prefix.into().into();
        self
    }

    /// How many random ids [`create`](SessionStore::create) tries before
    /// failing with [`Error::IdCollision`] (at least 1; default
    /// [`DEFAULT_CREATE_ATTEMPTS`](crate::DEFAULT_CREATE_ATTEMPTS)).
    pub fn with_create_attempts(mut self, attempts: u32) -> TowerSessionStore {
        self.backend.create_attempts = attempts.max(1);
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.backend.prefix
    }

    /// The memcached key of session `id`.
    pub fn key(&self, id: &Id) -> String {
        // One allocation of the exact size: the id is written straight
        // after the prefix.
        let prefix = &self.backend.prefix;
        let mut key = String::with_capacity(prefix.len() + ID_LEN);
        key.push_str(prefix);
        write!(key, "{id}").expect("writing to a String cannot fail");
        key
    }

    /// The client the store uses.
    pub fn client(&self) -> &Client {
        &self.backend.client
    }

    /// Creates the session, drawing a new id for `record` while its id is
    /// taken.
    ///
    /// # Errors
    ///
    /// [`Error::IdCollision`] when every attempt found its id taken, and
    /// the errors of [`save_record`](Self::save_record).
    pub async fn create_record(&self, record: &mut Record) -> Result<(), Error> {
        let ttl = ttl_of(record);
        let mut value = encode_record(record)?;
        if crate::is_expired(ttl) {
            // Already over: nothing to keep, but the session has an id.
            return Ok(());
        }
        for attempt in 1..=self.backend.create_attempts {
            if self
                .backend
                .add(self.key(&record.id), value.clone(), ttl)
                .await?
            {
                return Ok(());
            }
            if attempt < self.backend.create_attempts {
                record.id = Id::default();
                value = encode_record(record)?;
            }
        }
        Err(Error::IdCollision {
            attempts: self.backend.create_attempts,
        })
    }

    /// Writes the session, or deletes it if its expiry has passed.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] over the client's value limit, [`Error::Encode`]
    /// for data MessagePack cannot hold, [`Error::Backend`] when memcached
    /// fails.
    pub async fn save_record(&self, record: &Record) -> Result<(), Error> {
        let value = encode_record(record)?;
        self.backend
            .set(self.key(&record.id), value, ttl_of(record))
            .await
    }

    /// The session `id`: `None` if it is missing or expired.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when the stored value is not a record of session
    /// `id`, [`Error::Backend`] when memcached fails.
    pub async fn load_record(&self, id: &Id) -> Result<Option<Record>, Error> {
        let Some(value) = self.backend.get(self.key(id)).await? else {
            return Ok(None);
        };
        let record = decode_record(&value)?;
        if record.id != *id {
            return Err(Error::Decode(
                format!("the record under session {id} is for another session").into(),
            ));
        }
        if SystemTime::from(record.expiry_date) <= SystemTime::now() {
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// Deletes the session `id`; deleting a missing session succeeds.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when memcached fails.
    pub async fn delete_record(&self, id: &Id) -> Result<(), Error> {
        self.backend.delete(self.key(id)).await
    }
}

/// The length of a session id as text: 16 bytes in unpadded base64.
const ID_LEN: usize = 22;

/// The record's expiry as memcached's expiration (relative up to 30 days,
/// absolute beyond, through [`Ttl`]).
fn ttl_of(record: &Record) -> Ttl {
    Ttl::At(SystemTime::from(record.expiry_date))
}

/// A [`Record`] as the store writes it: MessagePack of `[id, [unix
/// seconds, nanoseconds], data]`. The expiry as two integers, rather than
/// the nine of `time`'s own form (year, ordinal day, hour... offset),
/// makes encoding plus decoding a typical session about 40% faster and
/// the record a few bytes smaller; the offset is not kept (an expiry is an
/// instant: it loads as UTC).
///
/// ```
/// use memha_session::{decode_record, encode_record};
/// use tower_sessions::session::{Id, Record};
/// use tower_sessions::cookie::time::{Duration, OffsetDateTime};
///
/// let record = Record {
///     id: Id::default(),
///     data: Default::default(),
///     expiry_date: OffsetDateTime::now_utc() + Duration::hours(1),
/// };
/// let bytes = encode_record(&record)?;
/// assert_eq!(decode_record(&bytes)?, record);
/// # Ok::<(), memha_session::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Encode`] for data MessagePack cannot hold.
pub fn encode_record(record: &Record) -> Result<bytes::Bytes, Error> {
    let expiry = record.expiry_date;
    encode(&StoredRecord {
        id: record.id.0,
        expiry: (expiry.unix_timestamp(), expiry.nanosecond()),
        data: &record.data,
    })
}

/// A [`Record`] from what [`encode_record`] wrote.
///
/// # Errors
///
/// [`Error::Decode`] for anything else, never a panic.
pub fn decode_record(bytes: &[u8]) -> Result<Record, Error> {
    let stored: StoredRecord<_> = decode(bytes)?;
    let (seconds, nanoseconds) = stored.expiry;
    let expiry_date = time::OffsetDateTime::from_unix_timestamp(seconds)
        .and_then(|at| at.replace_nanosecond(nanoseconds))
        .map_err(|err| Error::Decode(Box::new(err)))?;
    Ok(Record {
        id: Id(stored.id),
        data: stored.data,
        expiry_date,
    })
}

/// The stored form of a record (see [`encode_record`]); `D` is the
/// record's data, borrowed to encode and owned once decoded.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRecord<D> {
    id: i128,
    expiry: (i64, u32),
    data: D,
}

impl From<Error> for session_store::Error {
    fn from(err: Error) -> session_store::Error {
        match err {
            Error::Encode(_) | Error::TooLarge { .. } => session_store::Error::Encode(err.chain()),
            Error::Decode(_) => session_store::Error::Decode(err.chain()),
            Error::Backend(_) | Error::IdCollision { .. } => {
                session_store::Error::Backend(err.chain())
            }
        }
    }
}

#[async_trait]
impl SessionStore for TowerSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        Ok(self.create_record(record).await?)
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        Ok(self.save_record(record).await?)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        Ok(self.load_record(id).await?)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        Ok(self.delete_record(id).await?)
    }
}
