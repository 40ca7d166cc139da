//! Typed memcached commands and their encoder.
//!
//! Meta commands (`mg`, `ms`, `md`, `ma`, `mn`) carry typed flags; classic
//! text commands are kept for reuse (ElastiCache discovery, tooling). Every
//! key is a validated [`Key`], and the encoder refuses an oversized value
//! before writing a byte, so an invalid command never reaches the wire.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, ErrorKind};
use crate::{Key, Limits, ReplyKind};

/// Meta get (`mg`): which parts of the item to return, and side effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaGet {
    /// The item's key.
    pub key: Key,
    /// Return the value (`v`).
    pub value: bool,
    /// Return the client flags (`f`).
    pub client_flags: bool,
    /// Return the remaining TTL in seconds, -1 for none (`t`).
    pub ttl: bool,
    /// Return the CAS token (`c`).
    pub cas: bool,
    /// Return the key (`k`).
    pub return_key: bool,
    /// Return the value's size (`s`).
    pub size: bool,
    /// Return whether the item was read before (`h`).
    pub hit_before: bool,
    /// Return seconds since the last access (`l`).
    pub last_access: bool,
    /// Do not bump the item in the LRU (`u`).
    pub no_lru_bump: bool,
    /// Suppress the miss reply (`q`); match replies with [`opaque`](Self::opaque) and end the batch with `mn`.
    /// A [`Pipeline`](crate::Pipeline), which matches replies in order, refuses quiet commands.
    pub quiet: bool,
    /// An opaque token echoed in the reply (`O`).
    pub opaque: Option<u32>,
    /// Update the item's TTL while reading it (`T`), in the protocol's exptime units.
    pub touch: Option<i64>,
    /// On a miss, create a placeholder item with this TTL (`N`).
    pub vivify: Option<u32>,
}

impl MetaGet {
    /// Asks for nothing but whether the item exists; set the fields you want.
    pub fn new(key: Key) -> Self {
        MetaGet {
            key,
            value: false,
            client_flags: false,
            ttl: false,
            cas: false,
            return_key: false,
            size: false,
            hit_before: false,
            last_access: false,
            no_lru_bump: false,
            quiet: false,
            opaque: None,
            touch: None,
            vivify: None,
        }
    }

    /// Asks for the value, its client flags, remaining TTL and CAS token:
    /// everything a replicating client needs in one round trip.
    pub fn full(key: Key) -> Self {
        MetaGet {
            value: true,
            client_flags: true,
            ttl: true,
            cas: true,
            ..MetaGet::new(key)
        }
    }
}

/// The mode of a meta set (`M` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetMode {
    /// Store unconditionally (`MS`).
    Set,
    /// Store only if the key is absent (`ME`).
    Add,
    /// Store only if the key is present (`MR`).
    Replace,
    /// Append to the present value (`MA`).
    Append,
    /// Prepend to the present value (`MP`).
    Prepend,
}

impl SetMode {
    fn token(self) -> &'static [u8] {
        match self {
            SetMode::Set => b"MS",
            SetMode::Add => b"ME",
            SetMode::Replace => b"MR",
            SetMode::Append => b"MA",
            SetMode::Prepend => b"MP",
        }
    }
}

/// Meta set (`ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaSet {
    /// The item's key.
    pub key: Key,
    /// The value, stored byte-exact.
    pub value: Bytes,
    /// How to store it.
    pub mode: SetMode,
    /// The TTL in the protocol's exptime units (`T`); `None` or 0 never expires.
    pub ttl: Option<i64>,
    /// The client flags (`F`).
    pub client_flags: Option<u32>,
    /// Store only if the item's CAS token equals this one (`C`).
    pub compare_cas: Option<u64>,
    /// Return the new CAS token (`c`).
    pub return_cas: bool,
    /// Return the key (`k`).
    pub return_key: bool,
    /// With `compare_cas`: mark the item stale instead of failing on an older token (`I`).
    pub invalidate: bool,
    /// Suppress the success reply (`q`).
    pub quiet: bool,
    /// An opaque token echoed in the reply (`O`).
    pub opaque: Option<u32>,
}

impl MetaSet {
    /// An unconditional set with no TTL and no flags; set the fields you want.
    pub fn new(key: Key, value: impl Into<Bytes>) -> Self {
        MetaSet {
            key,
            value: value.into(),
            mode: SetMode::Set,
            ttl: None,
            client_flags: None,
            compare_cas: None,
            return_cas: false,
            return_key: false,
            invalidate: false,
            quiet: false,
            opaque: None,
        }
    }
}

/// Meta delete (`md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaDelete {
    /// The item's key.
    pub key: Key,
    /// Delete only if the item's CAS token equals this one (`C`).
    pub compare_cas: Option<u64>,
    /// Mark the item stale instead of removing it (`I`).
    pub invalidate: bool,
    /// With `invalidate`: the stale item's new TTL (`T`).
    pub ttl: Option<i64>,
    /// Return the key (`k`).
    pub return_key: bool,
    /// Suppress the success reply (`q`).
    pub quiet: bool,
    /// An opaque token echoed in the reply (`O`).
    pub opaque: Option<u32>,
}

impl MetaDelete {
    /// An unconditional delete.
    pub fn new(key: Key) -> Self {
        MetaDelete {
            key,
            compare_cas: None,
            invalidate: false,
            ttl: None,
            return_key: false,
            quiet: false,
            opaque: None,
        }
    }
}

/// The direction of a meta arithmetic command (`M` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArithmeticMode {
    /// Add the delta (`MI`).
    Increment,
    /// Subtract the delta, stopping at zero (`MD`).
    Decrement,
}

/// Meta arithmetic (`ma`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaArithmetic {
    /// The counter's key.
    pub key: Key,
    /// Increment or decrement.
    pub mode: ArithmeticMode,
    /// The amount (`D`); memcached's default is 1.
    pub delta: u64,
    /// On a miss, create the counter with [`initial`](Self::initial) and this TTL (`N`).
    pub vivify: Option<i64>,
    /// The value a vivified counter starts at (`J`).
    pub initial: Option<u64>,
    /// Update the counter's TTL (`T`).
    pub ttl: Option<i64>,
    /// Apply only if the CAS token equals this one (`C`).
    pub compare_cas: Option<u64>,
    /// Return the new value (`v`).
    pub return_value: bool,
    /// Return the remaining TTL (`t`).
    pub return_ttl: bool,
    /// Return the CAS token (`c`).
    pub return_cas: bool,
    /// Suppress the success reply (`q`).
    pub quiet: bool,
    /// An opaque token echoed in the reply (`O`).
    pub opaque: Option<u32>,
}

impl MetaArithmetic {
    /// Increments or decrements by `delta` and returns the new value.
    pub fn new(key: Key, mode: ArithmeticMode, delta: u64) -> Self {
        MetaArithmetic {
            key,
            mode,
            delta,
            vivify: None,
            initial: None,
            ttl: None,
            compare_cas: None,
            return_value: true,
            return_ttl: false,
            return_cas: false,
            quiet: false,
            opaque: None,
        }
    }
}

/// Which classic retrieval command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retrieval {
    /// `get`: values and flags.
    Get,
    /// `gets`: values, flags and CAS tokens.
    Gets,
    /// `gat`: get and touch to the given exptime.
    Gat(u32),
    /// `gats`: gets and touch to the given exptime.
    Gats(u32),
}

/// Which classic storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Storage {
    /// `set`.
    Set,
    /// `add`.
    Add,
    /// `replace`.
    Replace,
    /// `append`.
    Append,
    /// `prepend`.
    Prepend,
    /// `cas` with the token from `gets`.
    Cas(u64),
}

/// Which classic arithmetic command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arithmetic {
    /// `incr`.
    Incr,
    /// `decr`.
    Decr,
}

/// Which `stats` group to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatsGroup {
    /// `stats`: general counters (pid, uptime, items...).
    General,
    /// `stats settings`.
    Settings,
    /// `stats items`.
    Items,
    /// `stats slabs`.
    Slabs,
    /// `stats conns`.
    Conns,
}

/// A memcached command, ready to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `mg`.
    MetaGet(MetaGet),
    /// `ms`.
    MetaSet(MetaSet),
    /// `md`.
    MetaDelete(MetaDelete),
    /// `ma`.
    MetaArithmetic(MetaArithmetic),
    /// `mn`: answers `MN`; ends a pipelined batch of quiet commands (which
    /// a caller encoding them itself matches by opaque token: a
    /// [`Pipeline`](crate::Pipeline) refuses them).
    MetaNoop,
    /// `get`, `gets`, `gat`, `gats` for one or more keys.
    Retrieve {
        /// Which retrieval command.
        kind: Retrieval,
        /// The keys, at least one.
        keys: Vec<Key>,
    },
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas`.
    Store {
        /// Which storage command.
        kind: Storage,
        /// The item's key.
        key: Key,
        /// Client flags.
        flags: u32,
        /// Expiration: 0 never, up to 30 days relative seconds, beyond a Unix time.
        exptime: u32,
        /// The value, stored byte-exact.
        value: Bytes,
        /// Ask the server not to answer.
        noreply: bool,
    },
    /// `delete`.
    Delete {
        /// The item's key.
        key: Key,
        /// Ask the server not to answer.
        noreply: bool,
    },
    /// `touch`.
    Touch {
        /// The item's key.
        key: Key,
        /// The new expiration.
        exptime: u32,
        /// Ask the server not to answer.
        noreply: bool,
    },
    /// `incr` or `decr`.
    Arithmetic {
        /// Which direction.
        kind: Arithmetic,
        /// The counter's key.
        key: Key,
        /// The amount.
        delta: u64,
        /// Ask the server not to answer.
        noreply: bool,
    },
    /// `flush_all`: invalidates every item, now or after `delay` seconds.
    FlushAll {
        /// Seconds before the flush takes effect.
        delay: Option<u32>,
        /// Ask the server not to answer.
        noreply: bool,
    },
    /// `version`.
    Version,
    /// `stats` with an optional group.
    Stats(StatsGroup),
    /// `config get cluster` (ElastiCache configuration endpoint).
    ConfigGetCluster,
}

impl Command {
    /// The key the command is about (the first one of a multi-key
    /// retrieval); `None` for a command about no key (`mn`, `flush_all`,
    /// `version`, `stats`, `config get cluster`).
    ///
    /// ```
    /// use memha_proto::{Command, Key, MetaGet};
    ///
    /// let key = Key::new("session:1").unwrap();
    /// assert_eq!(Command::MetaGet(MetaGet::new(key.clone())).key(), Some(&key));
    /// assert_eq!(Command::Version.key(), None);
    /// ```
    pub fn key(&self) -> Option<&Key> {
        match self {
            Command::MetaGet(get) => Some(&get.key),
            Command::MetaSet(set) => Some(&set.key),
            Command::MetaDelete(delete) => Some(&delete.key),
            Command::MetaArithmetic(arithmetic) => Some(&arithmetic.key),
            Command::Retrieve { keys, .. } => keys.first(),
            Command::Store { key, .. }
            | Command::Delete { key, .. }
            | Command::Touch { key, .. }
            | Command::Arithmetic { key, .. } => Some(key),
            Command::MetaNoop
            | Command::FlushAll { .. }
            | Command::Version
            | Command::Stats(_)
            | Command::ConfigGetCluster => None,
        }
    }

    /// The opaque token field (`O`) of a meta data command, which its reply
    /// echoes; `None` for commands that carry no token (`mn` and the
    /// classic commands).
    ///
    /// ```
    /// use memha_proto::{Command, Key, MetaGet};
    ///
    /// let mut get = Command::MetaGet(MetaGet::new(Key::new("k").unwrap()));
    /// *get.opaque_mut().unwrap() = Some(9);
    /// assert!(matches!(get, Command::MetaGet(MetaGet { opaque: Some(9), .. })));
    /// assert!(Command::Version.opaque_mut().is_none());
    /// ```
    pub fn opaque_mut(&mut self) -> Option<&mut Option<u32>> {
        match self {
            Command::MetaGet(c) => Some(&mut c.opaque),
            Command::MetaSet(c) => Some(&mut c.opaque),
            Command::MetaDelete(c) => Some(&mut c.opaque),
            Command::MetaArithmetic(c) => Some(&mut c.opaque),
            _ => None,
        }
    }

    /// What the command does, named after the operation a client offers
    /// for it (`get`, `gets`, `get_and_touch`, `touch`, `set`, `add`,
    /// `replace`, `append`, `prepend`, `cas`, `delete`, `increment`,
    /// `decrement`, `noop`, `flush_all`, `version`, `stats`,
    /// `config_get_cluster`), whichever protocol carries it: for logs,
    /// traces and metrics.
    ///
    /// ```
    /// use memha_proto::{Command, Key, MetaSet, SetMode};
    ///
    /// let mut add = MetaSet::new(Key::new("k").unwrap(), "v");
    /// add.mode = SetMode::Add;
    /// assert_eq!(Command::MetaSet(add).name(), "add");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Command::MetaGet(get) => match (get.value, get.touch.is_some()) {
                (false, true) => "touch",
                (true, true) => "get_and_touch",
                (_, false) if get.cas => "gets",
                _ => "get",
            },
            Command::MetaSet(set) if set.compare_cas.is_some() => "cas",
            Command::MetaSet(set) => match set.mode {
                SetMode::Set => "set",
                SetMode::Add => "add",
                SetMode::Replace => "replace",
                SetMode::Append => "append",
                SetMode::Prepend => "prepend",
            },
            Command::MetaDelete(_) | Command::Delete { .. } => "delete",
            Command::MetaArithmetic(arithmetic) => match arithmetic.mode {
                ArithmeticMode::Increment => "increment",
                ArithmeticMode::Decrement => "decrement",
            },
            Command::MetaNoop => "noop",
            Command::Retrieve { kind, .. } => match kind {
                Retrieval::Get => "get",
                Retrieval::Gets => "gets",
                Retrieval::Gat(_) | Retrieval::Gats(_) => "get_and_touch",
            },
            Command::Store { kind, .. } => match kind {
                Storage::Set => "set",
                Storage::Add => "add",
                Storage::Replace => "replace",
                Storage::Append => "append",
                Storage::Prepend => "prepend",
                Storage::Cas(_) => "cas",
            },
            Command::Touch { .. } => "touch",
            Command::Arithmetic { kind, .. } => match kind {
                Arithmetic::Incr => "increment",
                Arithmetic::Decr => "decrement",
            },
            Command::FlushAll { .. } => "flush_all",
            Command::Version => "version",
            Command::Stats(_) => "stats",
            Command::ConfigGetCluster => "config_get_cluster",
        }
    }

    /// Whether the command changes no item, so sending it twice does what
    /// sending it once does (a retrieval that touches sets the same
    /// expiration again): safe to retry after any failure.
    ///
    /// ```
    /// use memha_proto::{Command, Key, MetaDelete, MetaGet};
    ///
    /// let key = Key::new("k").unwrap();
    /// assert!(Command::MetaGet(MetaGet::new(key.clone())).is_read());
    /// assert!(!Command::MetaDelete(MetaDelete::new(key)).is_read());
    /// ```
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Command::MetaGet(_)
                | Command::MetaNoop
                | Command::Retrieve { .. }
                | Command::Version
                | Command::Stats(_)
                | Command::ConfigGetCluster
        )
    }

    /// Whether the server may leave the command unanswered: a quiet meta
    /// command (answered only on failure, or a hit) or a `noreply` one
    /// (never answered). A connection that matches answers to requests in
    /// order cannot send these.
    ///
    /// ```
    /// use memha_proto::{Command, Key, MetaSet};
    ///
    /// let mut set = MetaSet::new(Key::new("k").unwrap(), "v");
    /// assert!(!Command::MetaSet(set.clone()).is_quiet());
    /// set.quiet = true;
    /// assert!(Command::MetaSet(set).is_quiet());
    /// ```
    pub fn is_quiet(&self) -> bool {
        match self {
            Command::MetaGet(c) => c.quiet,
            Command::MetaSet(c) => c.quiet,
            Command::MetaDelete(c) => c.quiet,
            Command::MetaArithmetic(c) => c.quiet,
            _ => self.reply_kind().is_none(),
        }
    }

    /// The kind of reply this command gets, or `None` when the server sends
    /// none (`noreply`). A quiet meta command may or may not be answered:
    /// its kind is [`ReplyKind::Meta`] and callers match by opaque token.
    pub fn reply_kind(&self) -> Option<ReplyKind> {
        Some(match self {
            Command::MetaGet(_)
            | Command::MetaSet(_)
            | Command::MetaDelete(_)
            | Command::MetaArithmetic(_)
            | Command::MetaNoop => ReplyKind::Meta,
            Command::Retrieve { keys, .. } => ReplyKind::Values {
                max_items: keys.len(),
            },
            Command::Store { noreply: true, .. }
            | Command::Delete { noreply: true, .. }
            | Command::Touch { noreply: true, .. }
            | Command::Arithmetic { noreply: true, .. }
            | Command::FlushAll { noreply: true, .. } => return None,
            Command::Store { .. } => ReplyKind::Storage,
            Command::Delete { .. } => ReplyKind::Delete,
            Command::Touch { .. } => ReplyKind::Touch,
            Command::Arithmetic { .. } => ReplyKind::Arithmetic,
            Command::FlushAll { .. } => ReplyKind::Ok,
            Command::Version => ReplyKind::Version,
            Command::Stats(_) => ReplyKind::Stats,
            Command::ConfigGetCluster => ReplyKind::Config,
        })
    }

    /// Appends the command's wire form to `dst`.
    ///
    /// Fails, writing nothing, if a value is larger than `limits` allow or a
    /// retrieval names no key.
    pub fn encode(&self, dst: &mut BytesMut, limits: &Limits) -> Result<(), Error> {
        self.check(limits)?;
        let mut w = Writer(dst);
        match self {
            Command::MetaGet(c) => {
                w.head(b"mg", &c.key);
                w.flag_if(c.value, b'v');
                w.flag_if(c.client_flags, b'f');
                w.flag_if(c.ttl, b't');
                w.flag_if(c.cas, b'c');
                w.flag_if(c.return_key, b'k');
                w.flag_if(c.size, b's');
                w.flag_if(c.hit_before, b'h');
                w.flag_if(c.last_access, b'l');
                w.flag_if(c.no_lru_bump, b'u');
                w.flag_if(c.quiet, b'q');
                w.flag_u64(b'O', c.opaque.map(u64::from));
                w.flag_i64(b'T', c.touch);
                w.flag_u64(b'N', c.vivify.map(u64::from));
                w.end_line();
            }
            Command::MetaSet(c) => {
                w.head(b"ms", &c.key);
                w.space();
                w.uint(c.value.len() as u64);
                w.space();
                w.raw(c.mode.token());
                w.flag_i64(b'T', c.ttl);
                w.flag_u64(b'F', c.client_flags.map(u64::from));
                w.flag_u64(b'C', c.compare_cas);
                w.flag_if(c.return_cas, b'c');
                w.flag_if(c.return_key, b'k');
                w.flag_if(c.invalidate, b'I');
                w.flag_if(c.quiet, b'q');
                w.flag_u64(b'O', c.opaque.map(u64::from));
                w.end_line();
                w.data(&c.value);
            }
            Command::MetaDelete(c) => {
                w.head(b"md", &c.key);
                w.flag_u64(b'C', c.compare_cas);
                w.flag_if(c.invalidate, b'I');
                w.flag_i64(b'T', c.ttl);
                w.flag_if(c.return_key, b'k');
                w.flag_if(c.quiet, b'q');
                w.flag_u64(b'O', c.opaque.map(u64::from));
                w.end_line();
            }
            Command::MetaArithmetic(c) => {
                w.head(b"ma", &c.key);
                w.space();
                w.raw(match c.mode {
                    ArithmeticMode::Increment => b"MI",
                    ArithmeticMode::Decrement => b"MD",
                });
                w.flag_u64(b'D', Some(c.delta));
                w.flag_i64(b'N', c.vivify);
                w.flag_u64(b'J', c.initial);
                w.flag_i64(b'T', c.ttl);
                w.flag_u64(b'C', c.compare_cas);
                w.flag_if(c.return_value, b'v');
                w.flag_if(c.return_ttl, b't');
                w.flag_if(c.return_cas, b'c');
                w.flag_if(c.quiet, b'q');
                w.flag_u64(b'O', c.opaque.map(u64::from));
                w.end_line();
            }
            Command::MetaNoop => w.raw(b"mn\r\n"),
            Command::Retrieve { kind, keys } => {
                match kind {
                    Retrieval::Get => w.raw(b"get"),
                    Retrieval::Gets => w.raw(b"gets"),
                    Retrieval::Gat(exptime) => {
                        w.raw(b"gat ");
                        w.uint(u64::from(*exptime));
                    }
                    Retrieval::Gats(exptime) => {
                        w.raw(b"gats ");
                        w.uint(u64::from(*exptime));
                    }
                }
                for key in keys {
                    w.space();
                    w.raw(key.as_bytes());
                }
                w.end_line();
            }
            Command::Store {
                kind,
                key,
                flags,
                exptime,
                value,
                noreply,
            } => {
                w.head(
                    match kind {
                        Storage::Set => b"set",
                        Storage::Add => b"add",
                        Storage::Replace => b"replace",
                        Storage::Append => b"append",
                        Storage::Prepend => b"prepend",
                        Storage::Cas(_) => b"cas",
                    },
                    key,
                );
                for n in [u64::from(*flags), u64::from(*exptime), value.len() as u64] {
                    w.space();
                    w.uint(n);
                }
                if let Storage::Cas(token) = kind {
                    w.space();
                    w.uint(*token);
                }
                w.noreply(*noreply);
                w.end_line();
                w.data(value);
            }
            Command::Delete { key, noreply } => {
                w.head(b"delete", key);
                w.noreply(*noreply);
                w.end_line();
            }
            Command::Touch {
                key,
                exptime,
                noreply,
            } => {
                w.head(b"touch", key);
                w.space();
                w.uint(u64::from(*exptime));
                w.noreply(*noreply);
                w.end_line();
            }
            Command::Arithmetic {
                kind,
                key,
                delta,
                noreply,
            } => {
                let verb: &[u8] = match kind {
                    Arithmetic::Incr => b"incr",
                    Arithmetic::Decr => b"decr",
                };
                w.head(verb, key);
                w.space();
                w.uint(*delta);
                w.noreply(*noreply);
                w.end_line();
            }
            Command::FlushAll { delay, noreply } => {
                w.raw(b"flush_all");
                if let Some(delay) = delay {
                    w.space();
                    w.uint(u64::from(*delay));
                }
                w.noreply(*noreply);
                w.end_line();
            }
            Command::Version => w.raw(b"version\r\n"),
            Command::Stats(group) => w.raw(match group {
                StatsGroup::General => b"stats\r\n",
                StatsGroup::Settings => b"stats settings\r\n",
                StatsGroup::Items => b"stats items\r\n",
                StatsGroup::Slabs => b"stats slabs\r\n",
                StatsGroup::Conns => b"stats conns\r\n",
            }),
            Command::ConfigGetCluster => w.raw(b"config get cluster\r\n"),
        }
        Ok(())
    }

    pub(crate) fn check(&self, limits: &Limits) -> Result<(), Error> {
        let value = match self {
            Command::MetaSet(c) => &c.value,
            Command::Store { value, .. } => value,
            Command::Retrieve { keys, .. } if keys.is_empty() => {
                return Err(Error::new(ErrorKind::NoKeys))
            }
            _ => return Ok(()),
        };
        if value.len() > limits.max_value_len {
            return Err(Error::new(ErrorKind::ValueTooLarge {
                len: value.len() as u64,
                max: limits.max_value_len,
            }));
        }
        Ok(())
    }
}

macro_rules! impl_from_meta {
    ($($ty:ident),*) => {$(
        impl From<$ty> for Command {
            fn from(command: $ty) -> Command {
                Command::$ty(command)
            }
        }
    )*};
}
impl_from_meta!(MetaGet, MetaSet, MetaDelete, MetaArithmetic);

struct Writer<'a>(&'a mut BytesMut);

impl Writer<'_> {
    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn space(&mut self) {
        self.0.put_u8(b' ');
    }

    fn head(&mut self, verb: &[u8], key: &Key) {
        self.raw(verb);
        self.space();
        self.raw(key.as_bytes());
    }

    fn uint(&mut self, n: u64) {
        self.raw(itoa::Buffer::new().format(n).as_bytes());
    }

    fn flag_if(&mut self, on: bool, flag: u8) {
        if on {
            self.space();
            self.0.put_u8(flag);
        }
    }

    fn flag_u64(&mut self, flag: u8, value: Option<u64>) {
        if let Some(value) = value {
            self.space();
            self.0.put_u8(flag);
            self.uint(value);
        }
    }

    fn flag_i64(&mut self, flag: u8, value: Option<i64>) {
        if let Some(value) = value {
            self.space();
            self.0.put_u8(flag);
            self.raw(itoa::Buffer::new().format(value).as_bytes());
        }
    }

    fn noreply(&mut self, noreply: bool) {
        if noreply {
            self.raw(b" noreply");
        }
    }

    fn end_line(&mut self) {
        self.raw(b"\r\n");
    }

    fn data(&mut self, value: &[u8]) {
        self.0.reserve(value.len() + 2);
        self.raw(value);
        self.end_line();
    }
}
