//! An IO-free memcached codec: the meta protocol and the classic text
//! protocol, bytes in and bytes out.
//!
//! This crate does no IO and reads no clock. It gives:
//! - [`Key`], a validated key: the only way to put a key into a command, so an
//!   invalid key (whitespace, control bytes, over 250 bytes) never reaches the wire;
//! - [`Command`], typed commands with typed flags, and an encoder that refuses
//!   an oversized value before writing a byte;
//! - [`ReplyDecoder`], an incremental decoder told in order which kind of reply
//!   comes next; values are sliced from the read buffer without a copy, every
//!   server outcome (`NS`, `NOT_STORED`, `SERVER_ERROR` ...) is a [`Reply`],
//!   and a hostile server can never make it allocate past [`Limits`];
//! - [`Pipeline`], which matches the replies of a pipelined stream to its
//!   requests: opaque tokens checked, unsolicited bytes refused, and after a
//!   failure which requests surely never left;
//! - [`ClusterConfig`], the ElastiCache `config get cluster` payload;
//! - with the `codec` feature, a `tokio_util::codec` implementation.
//!
//! It is usable on its own, with any transport: the example below encodes
//! a pipeline of two commands and decodes their answers, arriving in pieces.
//!
//! ```
//! use bytes::BytesMut;
//! use memha_proto::{Command, Key, Limits, MetaGet, MetaSet, MetaStatus, Reply, ReplyDecoder};
//!
//! let limits = Limits::default();
//! let key = Key::new("session:4f2a")?;
//!
//! // Encode a set with a TTL and flags, then a get asking for value, flags, TTL and CAS.
//! let mut out = BytesMut::new();
//! let mut set = MetaSet::new(key.clone(), "alice");
//! set.ttl = Some(900);
//! set.client_flags = Some(7);
//! Command::from(set).encode(&mut out, &limits)?;
//! let get = Command::from(MetaGet::full(key));
//! get.encode(&mut out, &limits)?;
//! assert_eq!(&out[..], b"ms session:4f2a 5 MS T900 F7\r\nalice\r\nmg session:4f2a v f t c\r\n");
//!
//! // Decode the server's answers, which may arrive in any number of pieces.
//! let mut decoder = ReplyDecoder::new(limits);
//! let mut input = BytesMut::from(&b"HD\r\nVA 5 f7 t900 c42\r\nal"[..]);
//! let stored = decoder.decode(&mut input, memha_proto::ReplyKind::Meta)?;
//! assert!(matches!(stored, Some(Reply::Meta(m)) if m.status == MetaStatus::Stored));
//! assert_eq!(decoder.decode(&mut input, get.reply_kind().unwrap())?, None); // needs more
//! input.extend_from_slice(b"ice\r\n");
//! let Some(Reply::Meta(hit)) = decoder.decode(&mut input, memha_proto::ReplyKind::Meta)? else {
//!     panic!("expected a meta reply");
//! };
//! assert_eq!(hit.value.as_deref(), Some(&b"alice"[..]));
//! assert_eq!((hit.flags.client_flags, hit.flags.ttl, hit.flags.cas), (Some(7), Some(900), Some(42)));
//! # Ok::<(), memha_proto::Error>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cluster_config;
#[cfg(feature = "codec")]
mod codec;
mod command;
mod decode;
mod error;
mod key;
mod pipeline;
mod reply;

pub use cluster_config::{ClusterConfig, ClusterNode};
#[cfg(feature = "codec")]
pub use codec::MemcachedCodec;
pub use command::{
    Arithmetic, ArithmeticMode, Command, MetaArithmetic, MetaDelete, MetaGet, MetaSet, Retrieval,
    SetMode, StatsGroup, Storage,
};
pub use decode::ReplyDecoder;
pub use error::{Error, ErrorKind, KeyRule};
pub use key::Key;
pub use pipeline::Pipeline;
pub use reply::{
    MetaFlags, MetaReply, MetaStatus, Reply, ReplyKind, ServerError, ServerErrorKind, Stat, Value,
};

/// Bounds that keep a hostile or broken server from growing buffers without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest value encoded or accepted in a reply (default 1 MiB, memcached's item limit).
    pub max_value_len: usize,
    /// The longest status line accepted without its `\r\n` (default 8 KiB).
    pub max_line_len: usize,
    /// The most `STAT` lines in one reply (default 16,384).
    pub max_items: usize,
}

impl Limits {
    /// memcached's defaults: 1 MiB values, 8 KiB lines, 16,384 stats.
    pub const DEFAULT: Limits = Limits {
        max_value_len: 1024 * 1024,
        max_line_len: 8 * 1024,
        max_items: 16 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
