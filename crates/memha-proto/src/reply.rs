//! Decoded replies: every server outcome is an item, never an error.

use std::fmt;

use bytes::Bytes;

/// The shape of reply a command gets; the decoder is told it for each reply, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    /// One meta frame: `HD`, `VA`, `EN`, `NF`, `NS`, `EX` or `MN`.
    Meta,
    /// `VALUE` blocks then `END`, for a retrieval of `max_items` keys.
    Values {
        /// How many keys were asked for: more values than this is a decode error.
        max_items: usize,
    },
    /// `STORED`, `NOT_STORED`, `EXISTS` or `NOT_FOUND`.
    Storage,
    /// `DELETED` or `NOT_FOUND`.
    Delete,
    /// `TOUCHED` or `NOT_FOUND`.
    Touch,
    /// A decimal number or `NOT_FOUND`.
    Arithmetic,
    /// `OK`.
    Ok,
    /// `VERSION <version>`.
    Version,
    /// `STAT` lines then `END`.
    Stats,
    /// `CONFIG cluster <flags> <len>`, the payload, then `END`.
    Config,
}

/// The status of a meta reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaStatus {
    /// `HD`: success, no value.
    Stored,
    /// `VA`: success with a value.
    Value,
    /// `EN`: miss.
    Miss,
    /// `NF`: not found (delete, arithmetic, touch).
    NotFound,
    /// `NS`: not stored (add of a present key, replace of an absent one...).
    NotStored,
    /// `EX`: exists: the CAS token did not match.
    Exists,
    /// `MN`: the answer to `mn`.
    Noop,
}

impl MetaStatus {
    /// The two-letter code on the wire.
    pub fn code(self) -> &'static str {
        match self {
            MetaStatus::Stored => "HD",
            MetaStatus::Value => "VA",
            MetaStatus::Miss => "EN",
            MetaStatus::NotFound => "NF",
            MetaStatus::NotStored => "NS",
            MetaStatus::Exists => "EX",
            MetaStatus::Noop => "MN",
        }
    }

    pub(crate) fn from_code(code: &[u8]) -> Option<MetaStatus> {
        Some(match code {
            b"HD" => MetaStatus::Stored,
            b"VA" => MetaStatus::Value,
            b"EN" => MetaStatus::Miss,
            b"NF" => MetaStatus::NotFound,
            b"NS" => MetaStatus::NotStored,
            b"EX" => MetaStatus::Exists,
            b"MN" => MetaStatus::Noop,
            _ => return None,
        })
    }
}

/// The flags a meta reply returned; each is `None` or `false` unless asked for.
///
/// The flags few requests ask for (`k`, `s`, `h`, `l`) are read through
/// methods: they are kept apart, allocated only when a reply carries one,
/// so a reply stays small enough to be moved cheaply (every reply is moved
/// through each layer between the socket and its caller).
///
/// ```
/// use memha_proto::{Limits, Reply, ReplyDecoder, ReplyKind};
///
/// let mut input = bytes::BytesMut::from(&b"HD c7 kmy-key s5\r\n"[..]);
/// let mut decoder = ReplyDecoder::new(Limits::default());
/// let Some(Reply::Meta(meta)) = decoder.decode(&mut input, ReplyKind::Meta)? else {
///     unreachable!("a whole reply")
/// };
/// assert_eq!(meta.flags.cas, Some(7));
/// assert_eq!(meta.flags.key().map(|k| &k[..]), Some(&b"my-key"[..]));
/// assert_eq!(meta.flags.size(), Some(5));
/// assert_eq!(meta.flags.last_access(), None);
/// # Ok::<(), memha_proto::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetaFlags {
    /// The CAS token (`c`).
    pub cas: Option<u64>,
    /// The client flags (`f`).
    pub client_flags: Option<u32>,
    /// Remaining TTL in seconds, -1 when the item never expires (`t`).
    pub ttl: Option<i64>,
    /// The opaque token echoed (`O`).
    pub opaque: Option<u32>,
    /// This client won the right to recache the item (`W`).
    pub won: bool,
    /// The item is stale (`X`).
    pub stale: bool,
    /// Another client already won the recache (`Z`).
    pub win_pending: bool,
    rare: Option<Box<RareFlags>>,
}

/// The flags of [`MetaFlags`] few requests ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RareFlags {
    key: Option<Bytes>,
    size: Option<u64>,
    hit_before: Option<bool>,
    last_access: Option<u64>,
}

impl MetaFlags {
    /// The key (`k`).
    pub fn key(&self) -> Option<&Bytes> {
        self.rare.as_ref()?.key.as_ref()
    }

    /// The value's size (`s`).
    pub fn size(&self) -> Option<u64> {
        self.rare.as_ref()?.size
    }

    /// Whether the item had been read before (`h`).
    pub fn hit_before(&self) -> Option<bool> {
        self.rare.as_ref()?.hit_before
    }

    /// Seconds since the item was last accessed (`l`).
    pub fn last_access(&self) -> Option<u64> {
        self.rare.as_ref()?.last_access
    }

    /// Sets the key (`k`), as a reply that carries it would (for tests
    /// and servers' doubles).
    ///
    /// ```
    /// let mut flags = memha_proto::MetaFlags::default();
    /// flags.set_key(Some("k".into()));
    /// assert_eq!(flags.key().map(|k| &k[..]), Some(&b"k"[..]));
    /// flags.set_key(None);
    /// assert_eq!(flags, memha_proto::MetaFlags::default());
    /// ```
    pub fn set_key(&mut self, key: Option<Bytes>) {
        self.set_rare(|rare| rare.key = key);
    }

    /// Sets the value's size (`s`); see [`set_key`](Self::set_key).
    pub fn set_size(&mut self, size: Option<u64>) {
        self.set_rare(|rare| rare.size = size);
    }

    /// Sets whether the item had been read before (`h`); see
    /// [`set_key`](Self::set_key).
    pub fn set_hit_before(&mut self, hit_before: Option<bool>) {
        self.set_rare(|rare| rare.hit_before = hit_before);
    }

    /// Sets the seconds since the item was last accessed (`l`); see
    /// [`set_key`](Self::set_key).
    pub fn set_last_access(&mut self, last_access: Option<u64>) {
        self.set_rare(|rare| rare.last_access = last_access);
    }

    /// Changes the rare flags, keeping none allocated when none is set (so
    /// flags that read the same compare equal).
    fn set_rare(&mut self, change: impl FnOnce(&mut RareFlags)) {
        match &mut self.rare {
            Some(rare) => {
                change(rare);
                if **rare == RareFlags::default() {
                    self.rare = None;
                }
            }
            None => {
                let mut rare = RareFlags::default();
                change(&mut rare);
                if rare != RareFlags::default() {
                    self.rare = Some(Box::new(rare));
                }
            }
        }
    }
}

// Every flag as a field, the rare ones too (how they are kept is not shown).
impl fmt::Debug for MetaFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaFlags")
            .field("cas", &self.cas)
            .field("client_flags", &self.client_flags)
            .field("ttl", &self.ttl)
            .field("key", &self.key())
            .field("opaque", &self.opaque)
            .field("size", &self.size())
            .field("hit_before", &self.hit_before())
            .field("last_access", &self.last_access())
            .field("won", &self.won)
            .field("stale", &self.stale)
            .field("win_pending", &self.win_pending)
            .finish()
    }
}

/// A meta reply frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaReply {
    /// The outcome.
    pub status: MetaStatus,
    /// The value, for `VA`, sliced from the read buffer without a copy.
    pub value: Option<Bytes>,
    /// The returned flags.
    pub flags: MetaFlags,
}

/// One item of a classic retrieval reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The item's key.
    pub key: Bytes,
    /// The client flags.
    pub flags: u32,
    /// The CAS token, for `gets` and `gats`.
    pub cas: Option<u64>,
    /// The value, sliced from the read buffer without a copy.
    pub data: Bytes,
}

/// One `STAT name value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The statistic's name.
    pub name: String,
    /// Its value, as the server wrote it.
    pub value: String,
}

/// Which error line a server sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerErrorKind {
    /// `ERROR`: the server does not know the command.
    UnknownCommand,
    /// `CLIENT_ERROR <msg>`: the request was malformed.
    Client,
    /// `SERVER_ERROR <msg>`: the server could not serve it (out of memory...).
    Server,
}

/// An error line from the server: an item of the stream, not a decode error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// Which error line.
    pub kind: ServerErrorKind,
    /// The server's message, empty for `ERROR`.
    pub message: String,
}

/// The error line as the server wrote it.
///
/// ```
/// use memha_proto::{ServerError, ServerErrorKind};
///
/// let full = ServerError { kind: ServerErrorKind::Server, message: "out of memory".into() };
/// assert_eq!(full.to_string(), "SERVER_ERROR out of memory");
/// let bare = ServerError { kind: ServerErrorKind::UnknownCommand, message: String::new() };
/// assert_eq!(bare.to_string(), "ERROR");
/// ```
impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = match self.kind {
            ServerErrorKind::UnknownCommand => "ERROR",
            ServerErrorKind::Client => "CLIENT_ERROR",
            ServerErrorKind::Server => "SERVER_ERROR",
        };
        match self.message.is_empty() {
            true => f.write_str(line),
            false => write!(f, "{line} {}", self.message),
        }
    }
}

/// A decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// A meta frame.
    Meta(MetaReply),
    /// The values found by a classic retrieval (empty when all missed).
    Values(Vec<Value>),
    /// `STORED`.
    Stored,
    /// `NOT_STORED`.
    NotStored,
    /// `EXISTS`.
    Exists,
    /// `NOT_FOUND`.
    NotFound,
    /// `DELETED`.
    Deleted,
    /// `TOUCHED`.
    Touched,
    /// The new value of `incr`/`decr`.
    Number(u64),
    /// `OK`.
    Ok,
    /// `VERSION <version>`.
    Version(String),
    /// The `STAT` lines of `stats`.
    Stats(Vec<Stat>),
    /// The payload of `CONFIG cluster`: parse it with [`ClusterConfig::parse`](crate::ClusterConfig::parse).
    Config(Bytes),
    /// `ERROR`, `CLIENT_ERROR` or `SERVER_ERROR`.
    Error(ServerError),
}

#[cfg(test)]
mod tests {
    use super::Reply;

    /// Every reply is moved through each layer between the socket and its
    /// caller, several times per request. On x86-64 (SSE2) LLVM inlines a
    /// move of at most 128 bytes; at 160 bytes (before the rare flags were
    /// set apart) each was a call to `memmove`, about 5% of a replicated
    /// run's CPU.
    #[test]
    fn a_reply_is_small_enough_to_move_inline() {
        let size = std::mem::size_of::<Reply>();
        assert!(size <= 128, "a reply takes {size} bytes");
    }
}
