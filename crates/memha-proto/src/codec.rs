//! `tokio_util::codec` glue: encode [`Command`]s, decode their [`Reply`]s in order.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::error::Error;
use crate::{Command, Limits, Pipeline, Reply};

/// A codec for `Framed` streams, over a [`Pipeline`]: each encoded command
/// records the reply it expects, and replies are decoded and matched in
/// that order.
///
/// As in the pipeline, meta commands are tagged with opaque tokens that
/// their replies must echo, and commands the server may leave unanswered
/// (`noreply`, quiet meta commands) are refused with
/// [`ErrorKind::Unanswerable`](crate::ErrorKind::Unanswerable).
///
/// ```
/// use bytes::BytesMut;
/// use memha_proto::{Command, MemcachedCodec, Reply};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = MemcachedCodec::default();
/// let mut out = BytesMut::new();
/// codec.encode(Command::Version, &mut out)?;
/// assert_eq!(&out[..], b"version\r\n");
/// let reply = codec.decode(&mut BytesMut::from(&b"VERSION 1.6.21\r\n"[..]))?;
/// assert!(matches!(reply, Some(Reply::Version(v)) if v == "1.6.21"));
/// assert_eq!(codec.in_flight(), 0);
/// # Ok::<(), memha_proto::Error>(())
/// ```
#[derive(Debug)]
pub struct MemcachedCodec {
    pipeline: Pipeline<()>,
}

impl MemcachedCodec {
    /// A codec with the given limits.
    pub fn new(limits: Limits) -> Self {
        MemcachedCodec {
            pipeline: Pipeline::new(limits),
        }
    }

    /// Whether to tag meta commands with opaque tokens their replies must
    /// echo (on by default): see [`Pipeline::tokens`].
    pub fn tokens(self, on: bool) -> Self {
        MemcachedCodec {
            pipeline: self.pipeline.tokens(on),
        }
    }

    /// How many replies are awaited.
    pub fn in_flight(&self) -> usize {
        self.pipeline.len()
    }
}

impl Default for MemcachedCodec {
    fn default() -> Self {
        MemcachedCodec::new(Limits::DEFAULT)
    }
}

impl Encoder<Command> for MemcachedCodec {
    type Error = Error;

    fn encode(&mut self, mut command: Command, dst: &mut BytesMut) -> Result<(), Error> {
        self.pipeline.submit(&mut command, dst, ())
    }
}

impl Decoder for MemcachedCodec {
    type Item = Reply;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, Error> {
        Ok(self.pipeline.decode(src)?.map(|((), reply)| reply))
    }
}
