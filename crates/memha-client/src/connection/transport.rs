//! The byte stream under a connection: plain TCP, or TLS (feature `tls`).
//!
//! Over plain TCP the stream is split in two owned halves: callers write on
//! the sending half directly when nothing is in flight, the writer task
//! otherwise. A TLS stream's halves share the TLS session, so every write
//! goes through the writer task and callers never write themselves.

use std::io;
use std::net::{Shutdown, SocketAddr};

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::config::ConnectionConfig;
use crate::error::{Error, ErrorKind};

#[cfg(feature = "tls")]
type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// A connection ready to use, in the pieces its tasks take.
pub(super) struct Parts {
    /// Kept by the link shared by the connection's handles and tasks.
    pub(super) sender: Sender,
    /// Taken by the writer task.
    pub(super) writer: Writer,
    /// Taken by the reader task.
    pub(super) reader: Reader,
}

/// Opens a connection to `addr`: TCP, then the TLS handshake when TLS is
/// configured. The caller bounds the time it takes.
pub(super) async fn open(addr: SocketAddr, config: &ConnectionConfig) -> Result<Parts, Error> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|err| Error::io(ErrorKind::Connect, err))?;
    stream
        .set_nodelay(true)
        .map_err(|err| Error::io(ErrorKind::Connect, err))?;
    #[cfg(feature = "tls")]
    if let Some(tls) = &config.tls {
        // A duplicate of the socket, to shut it down from the link.
        let socket = socket2::SockRef::from(&stream)
            .try_clone()
            .map_err(|err| Error::io(ErrorKind::Connect, err))?;
        let stream = tls
            .connect(addr, stream)
            .await
            .map_err(|err| Error::new(ErrorKind::Connect).with_source(err))?;
        let (reader, writer) = tokio::io::split(stream);
        return Ok(Parts {
            sender: Sender::Tls(socket),
            writer: Writer::Tls(writer),
            reader: Reader::Tls(reader),
        });
    }
    #[cfg(not(feature = "tls"))]
    let _ = config;
    let (reader, sender) = stream.into_split();
    Ok(Parts {
        sender: Sender::Plain(sender),
        writer: Writer::Plain,
        reader: Reader::Plain(reader),
    })
}

/// What the link keeps of the stream.
#[derive(Debug)]
pub(super) enum Sender {
    /// The sending half, written by callers and the writer task.
    Plain(OwnedWriteHalf),
    /// A duplicate of the socket, only to shut it down: the writer task
    /// owns the TLS stream's sending half.
    #[cfg(feature = "tls")]
    Tls(socket2::Socket),
}

impl Sender {
    /// Whether callers may write on it themselves: over TLS only the
    /// writer task writes.
    #[inline]
    pub(super) fn writes_directly(&self) -> bool {
        match self {
            Sender::Plain(_) => true,
            #[cfg(feature = "tls")]
            Sender::Tls(_) => false,
        }
    }

    /// Writes what the socket takes without waiting. Over TLS nothing is
    /// written (`WouldBlock`): the writer task sends it.
    #[inline]
    pub(super) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sender::Plain(stream) => stream.try_write(buf),
            #[cfg(feature = "tls")]
            Sender::Tls(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Waits until the plain socket can take more.
    pub(super) async fn writable(&self) -> io::Result<()> {
        match self {
            Sender::Plain(stream) => stream.writable().await,
            #[cfg(feature = "tls")]
            Sender::Tls(_) => Err(io::Error::other("a TLS stream is written by its writer")),
        }
    }

    /// Shuts the socket down both ways: no write goes out after this, and
    /// both tasks see the end.
    pub(super) fn shutdown(&self) {
        let _ = match self {
            Sender::Plain(stream) => {
                let socket: &TcpStream = stream.as_ref();
                socket2::SockRef::from(socket).shutdown(Shutdown::Both)
            }
            #[cfg(feature = "tls")]
            Sender::Tls(socket) => socket.shutdown(Shutdown::Both),
        };
    }
}

/// How the writer task writes.
pub(super) enum Writer {
    /// Through the link's sending half.
    Plain,
    /// Through the TLS stream's sending half, which it owns.
    #[cfg(feature = "tls")]
    Tls(tokio::io::WriteHalf<TlsStream>),
}

/// The receiving half, owned by the reader task.
pub(super) enum Reader {
    Plain(OwnedReadHalf),
    #[cfg(feature = "tls")]
    Tls(tokio::io::ReadHalf<TlsStream>),
}

/// The error of a failed read: over TLS, a failure of the TLS session (an
/// alert from the node, such as one refusing the client certificate after
/// a TLS 1.3 handshake) says so.
pub(super) fn read_error(err: io::Error) -> Error {
    #[cfg(feature = "tls")]
    if err
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
    {
        return Error::new(ErrorKind::Connection).with_source(super::tls::TlsError::handshake(err));
    }
    Error::io(ErrorKind::Connection, err)
}

/// The error of a plain connection that broke before the node ever
/// answered on it says what a TLS-only node looks like from a plaintext
/// client: it resets or closes the connection at the first request.
pub(super) fn unanswered(config: &ConnectionConfig, answered: bool, error: Error) -> Error {
    #[cfg(feature = "tls")]
    if config.tls.is_some() {
        return error;
    }
    #[cfg(not(feature = "tls"))]
    let _ = config;
    if answered {
        error
    } else {
        error.with_detail(
            "the node broke the connection before answering anything \
             (does it require TLS?)",
        )
    }
}
