//! Talking to a node with a plain `TcpStream`, independent of memha's codec.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Sends `request` to `addr` on a fresh connection and reads until the reply
/// ends with `until` (for example `b"END\r\n"` after a `get`).
///
/// The whole exchange, connect included, is bounded by `timeout`; running out
/// of time gives an error of kind [`io::ErrorKind::TimedOut`], and the server
/// closing the connection early gives [`io::ErrorKind::UnexpectedEof`].
/// Connection errors (such as [`io::ErrorKind::ConnectionRefused`]) are
/// returned as they are.
pub fn raw_roundtrip(
    addr: SocketAddr,
    request: &[u8],
    until: &[u8],
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    stream.write_all(request).map_err(normalize_timeout)?;

    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.ends_with(until) {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match stream.read(&mut buf).map_err(normalize_timeout)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{addr} closed the connection after {} reply bytes: {:?}",
                        reply.len(),
                        String::from_utf8_lossy(&reply)
                    ),
                ))
            }
            n => reply.extend_from_slice(&buf[..n]),
        }
    }
    Ok(reply)
}

/// Time left before `deadline`, or a `TimedOut` error when there is none
/// (socket timeouts must not be zero).
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no reply before the deadline",
        ))
    } else {
        Ok(left)
    }
}

/// Socket timeouts surface as `WouldBlock` on Unix; report them as `TimedOut`.
fn normalize_timeout(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, err)
    } else {
        err
    }
}
