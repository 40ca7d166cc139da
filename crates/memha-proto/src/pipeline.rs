//! Matching replies to the requests of one pipelined stream, without IO.

use std::collections::VecDeque;

use bytes::BytesMut;

use crate::error::{Error, ErrorKind};
use crate::{Command, Limits, Reply, ReplyDecoder, ReplyKind};

/// The requests sent on one stream and awaiting their replies, in order.
///
/// Many requests can be written before the first reply is read, and
/// memcached answers them in the order they arrived. A `Pipeline` keeps
/// what each one expects, so that the replies are decoded and matched
/// first in, first out, with no IO and no clock:
/// - [`submit`](Self::submit) encodes a request and records it with a
///   payload of the caller's (an answer channel, an id, or `()`). It tags
///   each meta command with an opaque token for its reply to echo, and
///   refuses commands the server may leave unanswered (`noreply`, quiet
///   meta commands), which would put every later reply out of step;
/// - [`decode`](Self::decode) gives the next reply with its request's
///   payload. A reply that does not echo its request's token, and bytes
///   that arrive when no request awaits a reply, are errors: the stream
///   cannot be trusted any more and must be closed;
/// - [`fail_all`](Self::fail_all), once the stream broke, gives every
///   request back, telling which surely never reached the server.
///
/// ```
/// use bytes::BytesMut;
/// use memha_proto::{Command, Key, MetaGet, Pipeline, Reply};
///
/// let mut pipeline = Pipeline::new(Default::default());
/// let mut out = BytesMut::new();
/// for (id, key) in [(1, "a"), (2, "b")] {
///     let mut get = MetaGet::new(Key::new(key)?);
///     get.value = true;
///     pipeline.submit(&mut Command::from(get), &mut out, id)?;
/// }
/// assert_eq!(&out[..], b"mg a v O0\r\nmg b v O1\r\n");
///
/// // The replies arrive, in pieces, in the order of the requests.
/// let mut input = BytesMut::from(&b"EN O0\r\nVA 1 O"[..]);
/// let Some((1, Reply::Meta(miss))) = pipeline.decode(&mut input)? else { panic!() };
/// assert!(miss.value.is_none());
/// assert!(pipeline.decode(&mut input)?.is_none()); // needs more
/// input.extend_from_slice(b"1\r\nx\r\n");
/// let Some((2, Reply::Meta(hit))) = pipeline.decode(&mut input)? else { panic!() };
/// assert_eq!(hit.value.as_deref(), Some(&b"x"[..]));
/// assert!(pipeline.is_empty());
/// # Ok::<(), memha_proto::Error>(())
/// ```
#[derive(Debug)]
pub struct Pipeline<T> {
    limits: Limits,
    decoder: ReplyDecoder,
    tokens: bool,
    next_token: u32,
    /// Bytes encoded since the stream began (or last failed).
    submitted: u64,
    awaiting: VecDeque<Awaiting<T>>,
}

/// A request awaiting its reply.
#[derive(Debug)]
struct Awaiting<T> {
    kind: ReplyKind,
    /// The token its reply must echo: a reply that does not is no answer
    /// to this request (a confused or hostile server).
    token: Option<u32>,
    /// Where the request's bytes end in the stream.
    end: u64,
    payload: T,
}

impl<T> Pipeline<T> {
    /// An empty pipeline that tags meta commands with opaque tokens and
    /// bounds replies by `limits`.
    pub fn new(limits: Limits) -> Self {
        Pipeline {
            limits,
            decoder: ReplyDecoder::new(limits),
            tokens: true,
            next_token: 0,
            submitted: 0,
            awaiting: VecDeque::new(),
        }
    }

    /// Whether to tag meta commands with opaque tokens (on by default).
    /// Off, the bytes on the wire are the commands as given, and replies
    /// are matched by order alone (a token the caller set is still
    /// checked).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use memha_proto::{Command, Key, MetaGet, Pipeline};
    ///
    /// let mut pipeline = Pipeline::new(Default::default()).tokens(false);
    /// let mut out = BytesMut::new();
    /// pipeline.submit(&mut Command::from(MetaGet::new(Key::new("a")?)), &mut out, ())?;
    /// assert_eq!(&out[..], b"mg a\r\n");
    /// # Ok::<(), memha_proto::Error>(())
    /// ```
    pub fn tokens(mut self, on: bool) -> Self {
        self.tokens = on;
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many requests await their reply.
    pub fn len(&self) -> usize {
        self.awaiting.len()
    }

    /// Whether no request awaits a reply.
    pub fn is_empty(&self) -> bool {
        self.awaiting.is_empty()
    }

    /// How many bytes were submitted since the stream began or last
    /// failed: a writer that records how far its writes went can tell
    /// [`fail_all`](Self::fail_all) which requests never left.
    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Whether [`submit`](Self::submit) would take `command`: it fails as
    /// `submit` would, for a command the server may leave unanswered, an
    /// oversized value or a retrieval with no key; else it gives the kind
    /// of reply the command gets. Encodes nothing.
    ///
    /// ```
    /// use memha_proto::{Command, ErrorKind, Pipeline, ReplyKind};
    ///
    /// let pipeline: Pipeline<()> = Pipeline::new(Default::default());
    /// assert_eq!(pipeline.check(&Command::Version)?, ReplyKind::Version);
    /// let noop = pipeline.check(&Command::MetaNoop)?; // `mn` is always answered
    /// assert_eq!(noop, ReplyKind::Meta);
    /// # Ok::<(), memha_proto::Error>(())
    /// ```
    pub fn check(&self, command: &Command) -> Result<ReplyKind, Error> {
        let kind = match command.reply_kind() {
            Some(kind) if !command.is_quiet() => kind,
            _ => return Err(Error::new(ErrorKind::Unanswerable)),
        };
        command.check(&self.limits)?;
        Ok(kind)
    }

    /// Appends `command`'s wire form to `out` and records that its reply,
    /// handed back with `payload`, comes after those of the requests
    /// submitted before it.
    ///
    /// A meta command without a token of its own gets one for this
    /// encoding only: `command` is given back as it came, so a caller can
    /// submit it again (a retry gets a fresh token). A caller's own token
    /// is kept and checked.
    ///
    /// Fails, with nothing appended to `out` and nothing recorded, for a
    /// command the server may leave unanswered
    /// ([`ErrorKind::Unanswerable`]), an oversized value or a retrieval
    /// with no key.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use memha_proto::{Command, ErrorKind, Key, MetaSet, Pipeline};
    ///
    /// let mut set = MetaSet::new(Key::new("k")?, "v");
    /// set.quiet = true;
    /// let mut pipeline = Pipeline::new(Default::default());
    /// let mut out = BytesMut::new();
    /// let refused = pipeline.submit(&mut Command::from(set), &mut out, ()).unwrap_err();
    /// assert_eq!(refused.kind(), ErrorKind::Unanswerable);
    /// assert!(out.is_empty() && pipeline.is_empty());
    /// # Ok::<(), memha_proto::Error>(())
    /// ```
    pub fn submit(
        &mut self,
        command: &mut Command,
        out: &mut BytesMut,
        payload: T,
    ) -> Result<(), Error> {
        let kind = self.check(command)?;
        let before = out.len();
        let (token, fresh_token) = match command.opaque_mut() {
            Some(Some(own)) => (Some(*own), false),
            Some(slot) if self.tokens => {
                *slot = Some(self.next_token);
                (Some(self.next_token), true)
            }
            _ => (None, false),
        };
        let encoded = command.encode(out, &self.limits);
        if fresh_token {
            // Given back as it came: tagging a copy would clone the key and
            // the value of every request.
            set_token(command, None);
        }
        encoded?;
        if fresh_token {
            self.next_token = self.next_token.wrapping_add(1);
        }
        self.submitted += (out.len() - before) as u64;
        self.awaiting.push_back(Awaiting {
            kind,
            token,
            end: self.submitted,
            payload,
        });
        Ok(())
    }

    /// Decodes the next reply from `input` and gives it with its request's
    /// payload; `Ok(None)` when `input` holds no complete reply yet.
    ///
    /// Fails when the reply is undecodable, when it does not echo its
    /// request's token, or when `input` holds bytes and no request awaits
    /// a reply ([`ErrorKind::UnexpectedReply`]). After an error the stream
    /// is out of step: close it and [`fail_all`](Self::fail_all).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use memha_proto::{Command, ErrorKind, Key, MetaGet, Pipeline};
    ///
    /// let mut pipeline = Pipeline::new(Default::default());
    /// let mut out = BytesMut::new();
    /// pipeline.submit(&mut Command::from(MetaGet::new(Key::new("a")?)), &mut out, ())?;
    /// // The reply echoes a stranger's token: it answers someone else.
    /// let stranger = pipeline.decode(&mut BytesMut::from(&b"EN O7\r\n"[..])).unwrap_err();
    /// assert_eq!(stranger.kind(), ErrorKind::UnexpectedReply);
    /// # Ok::<(), memha_proto::Error>(())
    /// ```
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Option<(T, Reply)>, Error> {
        let Some(next) = self.awaiting.front() else {
            if input.is_empty() {
                return Ok(None);
            }
            return Err(Error::with_detail(
                ErrorKind::UnexpectedReply,
                "the server sent bytes no request asked for",
            ));
        };
        let Some(reply) = self.decoder.decode(input, next.kind)? else {
            return Ok(None);
        };
        if let (Some(token), Reply::Meta(meta)) = (next.token, &reply) {
            if meta.flags.opaque != Some(token) {
                return Err(Error::with_detail(
                    ErrorKind::UnexpectedReply,
                    "a reply does not echo its request's token",
                ));
            }
        }
        let answered = self.awaiting.pop_front().map(|awaiting| awaiting.payload);
        Ok(answered.map(|payload| (payload, reply)))
    }

    /// Moves every request awaiting its reply in `submitted` behind this
    /// pipeline's own, in order: a reader that decodes from its own
    /// pipeline takes the requests written meanwhile in one batch.
    pub fn take_from(&mut self, submitted: &mut Pipeline<T>) {
        if self.awaiting.is_empty() {
            std::mem::swap(&mut self.awaiting, &mut submitted.awaiting);
        } else {
            self.awaiting.append(&mut submitted.awaiting);
        }
    }

    /// Visits the payload of every request awaiting its reply, in order: a
    /// caller that gives up on some requests (at a deadline, say) marks
    /// their payloads, and their replies, when they come, are still
    /// matched and then dropped.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use memha_proto::{Command, Pipeline};
    ///
    /// let mut pipeline = Pipeline::new(Default::default());
    /// let mut out = BytesMut::new();
    /// pipeline.submit(&mut Command::Version, &mut out, Some("waiting"))?;
    /// pipeline.visit_awaiting(|payload| *payload = None); // given up
    /// let reply = pipeline.decode(&mut BytesMut::from(&b"VERSION 1\r\n"[..]))?;
    /// assert!(matches!(reply, Some((None, _))));
    /// # Ok::<(), memha_proto::Error>(())
    /// ```
    pub fn visit_awaiting(&mut self, mut visit: impl FnMut(&mut T)) {
        for awaiting in &mut self.awaiting {
            visit(&mut awaiting.payload);
        }
    }

    /// Empties the pipeline after its stream broke, giving back each
    /// request's payload with whether it surely never reached the server:
    /// `committed` is how many bytes of the stream may have been handed
    /// to it (count pessimistically: before a write, what it will have
    /// sent after). The next submission starts a new stream.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use memha_proto::{Command, Key, MetaGet, Pipeline};
    ///
    /// let mut pipeline = Pipeline::new(Default::default());
    /// let mut out = BytesMut::new();
    /// for id in [1, 2] {
    ///     pipeline.submit(&mut Command::from(MetaGet::new(Key::new("a")?)), &mut out, id)?;
    /// }
    /// // Only the first request's bytes were written before the stream broke.
    /// let failed: Vec<_> = pipeline.fail_all(11).collect();
    /// assert_eq!(failed, [(1, false), (2, true)]);
    /// assert_eq!(pipeline.submitted(), 0);
    /// # Ok::<(), memha_proto::Error>(())
    /// ```
    pub fn fail_all(&mut self, committed: u64) -> impl Iterator<Item = (T, bool)> + '_ {
        self.submitted = 0;
        self.decoder.reset();
        self.awaiting
            .drain(..)
            .map(move |awaiting| (awaiting.payload, awaiting.end > committed))
    }
}

fn set_token(command: &mut Command, token: Option<u32>) {
    if let Some(slot) = command.opaque_mut() {
        *slot = token;
    }
}
