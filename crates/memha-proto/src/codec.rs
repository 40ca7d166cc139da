//! `tokio_util::codec` glue: encode [`Command`]s, decode their [`Reply`]s in order.

use std::collections::VecDeque;

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::error::{Error, ErrorKind};
use crate::{Command, Limits, MetaStatus, Reply, ReplyDecoder, ReplyKind};

/// A codec for `Framed` streams: each encoded command queues the kind of
/// reply it expects, and replies are decoded against that queue.
///
/// Quiet meta commands (`q`) may go unanswered: end a batch of them with
/// [`Command::MetaNoop`] and match their replies by opaque token. The
/// codec forgets the expectations of quiet commands when `MN` arrives.
#[derive(Debug, Default)]
pub struct MemcachedCodec {
    limits: Limits,
    decoder: ReplyDecoder,
    expected: VecDeque<Expected>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Reply(ReplyKind),
    QuietMeta,
    Noop,
}

impl MemcachedCodec {
    /// A codec with the given limits.
    pub fn new(limits: Limits) -> Self {
        MemcachedCodec {
            limits,
            decoder: ReplyDecoder::new(limits),
            expected: VecDeque::new(),
        }
    }

    /// How many replies are awaited.
    pub fn in_flight(&self) -> usize {
        self.expected.len()
    }
}

impl Encoder<Command> for MemcachedCodec {
    type Error = Error;

    fn encode(&mut self, command: Command, dst: &mut BytesMut) -> Result<(), Error> {
        command.encode(dst, &self.limits)?;
        let expected = match command.reply_kind() {
            Some(ReplyKind::Meta) if command.is_quiet() => Expected::QuietMeta,
            _ if command == Command::MetaNoop => Expected::Noop,
            Some(kind) => Expected::Reply(kind),
            None => return Ok(()),
        };
        self.expected.push_back(expected);
        Ok(())
    }
}

impl Decoder for MemcachedCodec {
    type Item = Reply;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, Error> {
        if src.is_empty() {
            return Ok(None);
        }
        let kind = match self.expected.front() {
            Some(Expected::Reply(kind)) => *kind,
            Some(Expected::QuietMeta | Expected::Noop) => ReplyKind::Meta,
            None => {
                return Err(Error::with_detail(
                    ErrorKind::UnexpectedReply,
                    "a reply arrived with no command awaiting it",
                ))
            }
        };
        let Some(reply) = self.decoder.decode(src, kind)? else {
            return Ok(None);
        };
        if let Reply::Meta(meta) = &reply {
            if meta.status == MetaStatus::Noop {
                // Every quiet command before the noop has been answered or suppressed.
                while let Some(expected) = self.expected.pop_front() {
                    if expected == Expected::Noop {
                        break;
                    }
                }
                return Ok(Some(reply));
            }
        }
        self.expected.pop_front();
        Ok(Some(reply))
    }
}
