//! Looking at what every node holds, directly (bypassing the proxies and
//! memha), to check that replicas converged.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use memha_client::proto::{Limits, MetaStatus, Reply, ReplyDecoder, ReplyKind};

/// The bound on one node's whole answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One node's copy of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// The value.
    pub value: Bytes,
    /// The flags.
    pub flags: u32,
    /// The remaining lifetime in seconds, -1 for none.
    pub ttl: i64,
}

/// What every node holds for one key, in node order: `Ok(None)` for
/// nothing, `Err` when the node could not be asked.
#[derive(Debug, Clone)]
pub struct KeyCopies {
    /// The key.
    pub key: String,
    /// One entry per node.
    pub copies: Vec<Result<Option<Copy>, String>>,
}

/// Asks every node for every key (`mg <key> v f t`, pipelined on one plain
/// connection per node, ended by `mn`).
pub fn fetch(nodes: &[SocketAddr], keys: &[String]) -> Vec<KeyCopies> {
    let per_node: Vec<Result<Vec<Option<Copy>>, String>> = nodes
        .iter()
        .map(|&addr| fetch_node(addr, keys).map_err(|e| e.to_string()))
        .collect();
    keys.iter()
        .enumerate()
        .map(|(i, key)| KeyCopies {
            key: key.clone(),
            copies: per_node
                .iter()
                .map(|node| match node {
                    Ok(copies) => Ok(copies[i].clone()),
                    Err(error) => Err(error.clone()),
                })
                .collect(),
        })
        .collect()
}

fn fetch_node(addr: SocketAddr, keys: &[String]) -> io::Result<Vec<Option<Copy>>> {
    let mut stream = TcpStream::connect_timeout(&addr, FETCH_TIMEOUT)?;
    stream.set_read_timeout(Some(FETCH_TIMEOUT))?;
    stream.set_write_timeout(Some(FETCH_TIMEOUT))?;
    let mut decoder = ReplyDecoder::new(Limits::default());
    let mut input = BytesMut::new();
    let mut copies = Vec::with_capacity(keys.len());
    let mut buf = vec![0u8; 64 * 1024];
    // In batches, so neither side's buffers fill up while the other writes.
    for batch in keys.chunks(64) {
        let mut request = Vec::new();
        for key in batch {
            request.extend_from_slice(format!("mg {key} v f t\r\n").as_bytes());
        }
        request.extend_from_slice(b"mn\r\n");
        stream.write_all(&request)?;
        let mut expected = batch.len() + 1;
        while expected > 0 {
            match decoder.decode(&mut input, ReplyKind::Meta) {
                Ok(Some(Reply::Meta(meta))) => {
                    expected -= 1;
                    match meta.status {
                        // A tombstone (a delete marks the item stale, `X`)
                        // is no copy: the key is deleted there.
                        MetaStatus::Value if meta.flags.stale => copies.push(None),
                        MetaStatus::Value => copies.push(Some(Copy {
                            value: meta.value.unwrap_or_default(),
                            flags: meta.flags.client_flags.unwrap_or(0),
                            ttl: meta.flags.ttl.unwrap_or(-1),
                        })),
                        MetaStatus::Miss => copies.push(None),
                        MetaStatus::Noop if expected == 0 => {}
                        other => {
                            return Err(io::Error::other(format!(
                                "{addr} answered {} to mg",
                                other.code()
                            )))
                        }
                    }
                }
                Ok(Some(other)) => {
                    return Err(io::Error::other(format!("{addr} answered {other:?}")))
                }
                Ok(None) => {
                    let n = stream.read(&mut buf)?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("{addr} closed the connection"),
                        ));
                    }
                    input.extend_from_slice(&buf[..n]);
                }
                Err(error) => return Err(io::Error::other(format!("{addr}: {error}"))),
            }
        }
    }
    Ok(copies)
}
