//! A scripted stand-in for a node: for what real memcached cannot do
//! (malformed or hostile replies, replies held back on cue).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A listener on a free loopback port whose connections the test answers
/// by hand, one at a time ([`next_connection`](Self::next_connection)) or
/// each in a task of its own ([`serve_each`](Self::serve_each)).
///
/// ```no_run
/// use std::time::Duration;
/// use memha_tests::{read_lines, FakeServer};
/// use tokio::io::AsyncWriteExt;
///
/// # async fn demo() -> std::io::Result<()> {
/// let mut server = FakeServer::start().await?;
/// // ... point a client at server.addr() and send `version` ...
/// let mut connection = server.next_connection(Duration::from_secs(5)).await.expect("a client");
/// assert_eq!(read_lines(&mut connection, 1, Duration::from_secs(5)).await?, "version\r\n");
/// connection.write_all(b"VERSION 1.6.21\r\n").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FakeServer {
    addr: SocketAddr,
    accepted: mpsc::UnboundedReceiver<TcpStream>,
}

impl FakeServer {
    /// Listens on a free loopback port; must be called within a tokio
    /// runtime, which runs the accept loop until the server is dropped.
    pub async fn start() -> io::Result<FakeServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (sender, accepted) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if sender.send(stream).is_err() {
                    break;
                }
            }
        });
        Ok(FakeServer { addr, accepted })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next connection a client made, waiting at most `within`:
    /// `None` when none came.
    pub async fn next_connection(&mut self, within: Duration) -> Option<TcpStream> {
        tokio::time::timeout(within, self.accepted.recv())
            .await
            .ok()
            .flatten()
    }

    /// Hands every connection, now and later, to `serve` in a task of its
    /// own, with its number (1 for the first).
    pub fn serve_each<F, Fut>(mut self, mut serve: F)
    where
        F: FnMut(TcpStream, u64) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(async move {
            let mut count = 0;
            while let Some(stream) = self.accepted.recv().await {
                count += 1;
                tokio::spawn(serve(stream, count));
            }
        });
    }
}

/// Reads from `stream` until `lines` request lines (ending in `\r\n`)
/// have arrived, waiting at most `within` for each read. Fails when the
/// client closes the connection first or a read times out.
pub async fn read_lines(
    stream: &mut TcpStream,
    lines: usize,
    within: Duration,
) -> io::Result<String> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while received.windows(2).filter(|w| w == b"\r\n").count() < lines {
        let read = tokio::time::timeout(within, stream.read(&mut chunk))
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "no request within the bound")
            })??;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        received.extend_from_slice(&chunk[..read]);
    }
    String::from_utf8(received).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}
