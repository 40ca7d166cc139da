//! The incremental, bounded reply decoder.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Error, ErrorKind};
use crate::reply::{
    MetaFlags, MetaReply, MetaStatus, Reply, ReplyKind, ServerError, ServerErrorKind, Stat, Value,
};
use crate::Limits;

/// Decodes replies from a read buffer, one at a time, in the order the
/// commands were sent.
///
/// [`decode`](Self::decode) returns `Ok(None)` when it needs more bytes and
/// must then be called again with the same [`ReplyKind`] once more arrive.
/// Values are sliced from the buffer without a copy. Only corrupt framing is
/// an error; after one, the stream is out of step and must be closed.
///
/// The buffer never has to hold more than one status line
/// ([`Limits::max_line_len`]) or one value ([`Limits::max_value_len`]) plus
/// its header: longer lines and larger announced values are refused before
/// anything is allocated for them.
#[derive(Debug, Default)]
pub struct ReplyDecoder {
    limits: Limits,
    // A multi-item reply (values, stats) is consumed item by item as it
    // arrives, so the buffer never holds more than one item.
    values: Vec<Value>,
    stats: Vec<Stat>,
}

impl ReplyDecoder {
    /// A decoder with the given limits.
    pub fn new(limits: Limits) -> Self {
        ReplyDecoder {
            limits,
            values: Vec::new(),
            stats: Vec::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Forgets a partly decoded multi-item reply (after a reconnect).
    pub fn reset(&mut self) {
        self.values.clear();
        self.stats.clear();
    }

    /// Decodes the next reply, which answers a command of kind `kind`.
    pub fn decode(&mut self, src: &mut BytesMut, kind: ReplyKind) -> Result<Option<Reply>, Error> {
        let result = self.decode_inner(src, kind);
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn decode_inner(
        &mut self,
        src: &mut BytesMut,
        kind: ReplyKind,
    ) -> Result<Option<Reply>, Error> {
        loop {
            let Some(line_len) = self.find_line(src)? else {
                return Ok(None);
            };
            let line = &src[..line_len];
            if let Some(error) = server_error(line) {
                src.advance(line_len + 2);
                self.reset();
                return Ok(Some(Reply::Error(error)));
            }
            let single = match kind {
                ReplyKind::Meta => return self.meta(src, line_len),
                ReplyKind::Values { max_items } => {
                    if line == b"END" {
                        src.advance(line_len + 2);
                        return Ok(Some(Reply::Values(std::mem::take(&mut self.values))));
                    }
                    if self.value_block(src, line_len, max_items)? {
                        continue;
                    }
                    return Ok(None);
                }
                ReplyKind::Stats => {
                    if line == b"END" {
                        src.advance(line_len + 2);
                        return Ok(Some(Reply::Stats(std::mem::take(&mut self.stats))));
                    }
                    let stat = stat_line(line)?;
                    if self.stats.len() >= self.limits.max_items {
                        return Err(Error::new(ErrorKind::TooManyItems {
                            max: self.limits.max_items,
                        }));
                    }
                    self.stats.push(stat);
                    src.advance(line_len + 2);
                    continue;
                }
                ReplyKind::Config => return self.config(src, line_len),
                ReplyKind::Storage => match line {
                    b"STORED" => Reply::Stored,
                    b"NOT_STORED" => Reply::NotStored,
                    b"EXISTS" => Reply::Exists,
                    b"NOT_FOUND" => Reply::NotFound,
                    _ => return Err(unexpected(kind, line)),
                },
                ReplyKind::Delete => match line {
                    b"DELETED" => Reply::Deleted,
                    b"NOT_FOUND" => Reply::NotFound,
                    _ => return Err(unexpected(kind, line)),
                },
                ReplyKind::Touch => match line {
                    b"TOUCHED" => Reply::Touched,
                    b"NOT_FOUND" => Reply::NotFound,
                    _ => return Err(unexpected(kind, line)),
                },
                ReplyKind::Arithmetic => match line {
                    b"NOT_FOUND" => Reply::NotFound,
                    // Old servers pad the number with spaces.
                    _ => match parse_u64(trim_end_spaces(line)) {
                        Some(n) => Reply::Number(n),
                        None => return Err(unexpected(kind, line)),
                    },
                },
                ReplyKind::Ok => match line {
                    b"OK" => Reply::Ok,
                    _ => return Err(unexpected(kind, line)),
                },
                ReplyKind::Version => match line.strip_prefix(b"VERSION ") {
                    Some(version) => Reply::Version(String::from_utf8_lossy(version).into_owned()),
                    None => return Err(unexpected(kind, line)),
                },
            };
            src.advance(line_len + 2);
            return Ok(Some(single));
        }
    }

    /// The length of the first line without its `\r\n`, `None` if it has not all arrived.
    fn find_line(&self, src: &[u8]) -> Result<Option<usize>, Error> {
        let max = self.limits.max_line_len;
        let window = &src[..src.len().min(max + 2)];
        match memchr::memchr(b'\n', window) {
            Some(0) => Err(Error::malformed("empty line")),
            Some(lf) if window[lf - 1] == b'\r' => Ok(Some(lf - 1)),
            Some(_) => Err(Error::malformed("line ends without \\r\\n")),
            None if src.len() >= max + 2 => Err(Error::new(ErrorKind::LineTooLong { max })),
            None => Ok(None),
        }
    }

    /// Checks an announced value length and, when the whole block has not
    /// arrived, reserves room for it. Returns whether `total` bytes are there.
    fn await_block(&self, src: &mut BytesMut, len: u64, header: usize) -> Result<bool, Error> {
        if len > self.limits.max_value_len as u64 {
            return Err(Error::with_detail(
                ErrorKind::ValueTooLarge {
                    len,
                    max: self.limits.max_value_len,
                },
                "announced by the server",
            ));
        }
        let total = header + 2 + len as usize + 2;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(false);
        }
        Ok(true)
    }

    fn meta(&mut self, src: &mut BytesMut, line_len: usize) -> Result<Option<Reply>, Error> {
        let line = &src[..line_len];
        let status = MetaStatus::from_code(&line[..line.len().min(2)])
            .filter(|_| line.len() == 2 || line[2] == b' ')
            .ok_or_else(|| unexpected(ReplyKind::Meta, line))?;
        let mut flags_start = line_len.min(3);
        let mut value_len = None;
        if status == MetaStatus::Value {
            let (size, rest) = split_token(&line[flags_start..]);
            let size = parse_u64(size).ok_or_else(|| Error::malformed("VA without a size"))?;
            flags_start = line_len - rest.len();
            if !self.await_block(src, size, line_len)? {
                return Ok(None);
            }
            value_len = Some(size as usize);
        }
        let header = src.split_to(line_len + 2).freeze();
        let flags = meta_flags(&header, flags_start, line_len)?;
        let value = match value_len {
            Some(len) => Some(take_data(src, len)?),
            None => None,
        };
        Ok(Some(Reply::Meta(MetaReply {
            status,
            value,
            flags,
        })))
    }

    /// Consumes one `VALUE` block if it has all arrived; returns whether it did.
    fn value_block(
        &mut self,
        src: &mut BytesMut,
        line_len: usize,
        max_items: usize,
    ) -> Result<bool, Error> {
        let line = &src[..line_len];
        let rest = line
            .strip_prefix(b"VALUE ")
            .ok_or_else(|| unexpected(ReplyKind::Values { max_items }, line))?;
        let (key, rest) = split_token(rest);
        let (flags, rest) = split_token(rest);
        let (len, rest) = split_token(rest);
        let (cas, rest) = split_token(rest);
        let parsed = (
            parse_u64(flags).and_then(|f| u32::try_from(f).ok()),
            parse_u64(len),
            if cas.is_empty() {
                Some(None)
            } else {
                parse_u64(cas).map(Some)
            },
        );
        let (Some(flags), Some(len), Some(cas)) = parsed else {
            return Err(Error::malformed("bad VALUE line"));
        };
        if key.is_empty() || !rest.is_empty() {
            return Err(Error::malformed("bad VALUE line"));
        }
        let key_start = "VALUE ".len();
        let key_end = key_start + key.len();
        if !self.await_block(src, len, line_len)? {
            return Ok(false);
        }
        if self.values.len() >= max_items {
            return Err(Error::new(ErrorKind::TooManyItems { max: max_items }));
        }
        let header = src.split_to(line_len + 2).freeze();
        let data = take_data(src, len as usize)?;
        self.values.push(Value {
            key: header.slice(key_start..key_end),
            flags,
            cas,
            data,
        });
        Ok(true)
    }

    fn config(&mut self, src: &mut BytesMut, line_len: usize) -> Result<Option<Reply>, Error> {
        let line = &src[..line_len];
        let rest = line
            .strip_prefix(b"CONFIG cluster ")
            .ok_or_else(|| unexpected(ReplyKind::Config, line))?;
        let (_flags, rest) = split_token(rest);
        let (len, rest) = split_token(rest);
        let len = match parse_u64(len) {
            Some(len) if rest.is_empty() => len,
            _ => return Err(Error::malformed("bad CONFIG line")),
        };
        if !self.await_block(src, len, line_len)? {
            return Ok(None);
        }
        let end = line_len + 2 + len as usize + 2;
        if src.len() < end + 5 {
            src.reserve(end + 5 - src.len());
            return Ok(None);
        }
        if &src[end..end + 5] != b"END\r\n" {
            return Err(Error::malformed("CONFIG payload not followed by END"));
        }
        src.advance(line_len + 2);
        let payload = take_data(src, len as usize)?;
        src.advance(5);
        Ok(Some(Reply::Config(payload)))
    }
}

/// Splits the payload and its trailing `\r\n` off the buffer.
fn take_data(src: &mut BytesMut, len: usize) -> Result<Bytes, Error> {
    let data = src.split_to(len).freeze();
    if &src[..2] != b"\r\n" {
        return Err(Error::malformed("value not followed by \\r\\n"));
    }
    src.advance(2);
    Ok(data)
}

fn server_error(line: &[u8]) -> Option<ServerError> {
    let (kind, message): (_, &[u8]) = if line == b"ERROR" {
        (ServerErrorKind::UnknownCommand, b"")
    } else if let Some(message) = line.strip_prefix(b"ERROR ") {
        (ServerErrorKind::UnknownCommand, message)
    } else if let Some(message) = line.strip_prefix(b"CLIENT_ERROR") {
        (ServerErrorKind::Client, message)
    } else if let Some(message) = line.strip_prefix(b"SERVER_ERROR") {
        (ServerErrorKind::Server, message)
    } else {
        return None;
    };
    let message = message.strip_prefix(b" ").unwrap_or(message);
    Some(ServerError {
        kind,
        message: String::from_utf8_lossy(message).into_owned(),
    })
}

fn stat_line(line: &[u8]) -> Result<Stat, Error> {
    let rest = line
        .strip_prefix(b"STAT ")
        .ok_or_else(|| unexpected(ReplyKind::Stats, line))?;
    let (name, value) = split_token(rest);
    if name.is_empty() {
        return Err(Error::malformed("STAT line without a name"));
    }
    Ok(Stat {
        name: String::from_utf8_lossy(name).into_owned(),
        value: String::from_utf8_lossy(value).into_owned(),
    })
}

fn meta_flags(header: &Bytes, start: usize, end: usize) -> Result<MetaFlags, Error> {
    let mut flags = MetaFlags::default();
    let mut at = start;
    while at < end {
        let len = header[at..end]
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(end - at);
        if len > 0 {
            let token = &header[at..at + len];
            let arg = &token[1..];
            let bad = || Error::malformed(format!("bad meta flag '{}'", char::from(token[0])));
            match token[0] {
                b'c' => flags.cas = Some(parse_u64(arg).ok_or_else(bad)?),
                b'f' => {
                    flags.client_flags = Some(
                        parse_u64(arg)
                            .and_then(|f| u32::try_from(f).ok())
                            .ok_or_else(bad)?,
                    )
                }
                b't' => flags.ttl = Some(parse_i64(arg).ok_or_else(bad)?),
                b'k' if !arg.is_empty() => flags.set_key(Some(header.slice(at + 1..at + len))),
                b'O' => {
                    flags.opaque = Some(
                        parse_u64(arg)
                            .and_then(|o| u32::try_from(o).ok())
                            .ok_or_else(bad)?,
                    )
                }
                b's' => flags.set_size(Some(parse_u64(arg).ok_or_else(bad)?)),
                b'h' => flags.set_hit_before(Some(match arg {
                    b"0" => false,
                    b"1" => true,
                    _ => return Err(bad()),
                })),
                b'l' => flags.set_last_access(Some(parse_u64(arg).ok_or_else(bad)?)),
                b'W' => flags.won = true,
                b'X' => flags.stale = true,
                b'Z' => flags.win_pending = true,
                // Flags this crate does not know yet (newer servers) are skipped.
                _ => {}
            }
        }
        at += len + 1;
    }
    Ok(flags)
}

fn split_token(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

fn trim_end_spaces(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' '] = s {
        s = rest;
    }
    s
}

pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.strip_prefix(b"-") {
        Some(digits) => parse_u64(digits)
            .and_then(|n| i64::try_from(n).ok())
            .map(|n| -n),
        None => parse_u64(s).and_then(|n| i64::try_from(n).ok()),
    }
}

fn unexpected(kind: ReplyKind, line: &[u8]) -> Error {
    let shown = &line[..line.len().min(32)];
    Error::with_detail(
        ErrorKind::UnexpectedReply,
        format!(
            "expected a {kind:?} reply, got \"{}\"",
            shown.escape_ascii()
        ),
    )
}
