//! Reading the typed outcome of each operation out of a server reply.

use std::collections::BTreeMap;
use std::time::Duration;

use memha_proto::{MetaReply, MetaStatus, Reply, ServerError};

use crate::error::Error;
use crate::item::{DeleteOutcome, Item, StoreOutcome, TouchOutcome};

/// The meta frame of a reply; a server error line becomes an error.
fn meta(reply: Reply) -> Result<MetaReply, Error> {
    match reply {
        Reply::Meta(meta) => Ok(meta),
        other => Err(not_meta(other)),
    }
}

fn not_meta(reply: Reply) -> Error {
    match reply {
        Reply::Error(error) => server_error(error),
        other => unexpected(&other),
    }
}

pub(super) fn server_error(error: ServerError) -> Error {
    Error::server(error.to_string())
}

fn unexpected(reply: &Reply) -> Error {
    Error::protocol(format!("reply does not answer the request: {reply:?}"))
}

fn unexpected_status(status: MetaStatus) -> Error {
    Error::protocol(format!(
        "meta reply {} does not answer the request",
        status.code()
    ))
}

/// `mg`: an item or a miss.
pub(super) fn item(reply: Reply) -> Result<Option<Item>, Error> {
    let meta = meta(reply)?;
    match meta.status {
        MetaStatus::Value => Ok(Some(Item {
            value: meta.value.unwrap_or_default(),
            flags: meta.flags.client_flags.unwrap_or(0),
            expires_in: meta
                .flags
                .ttl
                .and_then(|ttl| u64::try_from(ttl).ok())
                .map(Duration::from_secs),
            cas: meta.flags.cas,
        })),
        MetaStatus::Miss => Ok(None),
        other => Err(unexpected_status(other)),
    }
}

/// `ms`.
pub(super) fn store(reply: Reply) -> Result<StoreOutcome, Error> {
    Ok(match meta(reply)?.status {
        MetaStatus::Stored => StoreOutcome::Stored,
        MetaStatus::NotStored => StoreOutcome::NotStored,
        MetaStatus::Exists => StoreOutcome::Exists,
        MetaStatus::NotFound => StoreOutcome::NotFound,
        other => return Err(unexpected_status(other)),
    })
}

/// `md`.
pub(super) fn delete(reply: Reply) -> Result<DeleteOutcome, Error> {
    Ok(match meta(reply)?.status {
        MetaStatus::Stored => DeleteOutcome::Deleted,
        MetaStatus::NotFound => DeleteOutcome::NotFound,
        other => return Err(unexpected_status(other)),
    })
}

/// `mg` with only a touch: `HD` on a hit, `EN` on a miss.
pub(super) fn touch(reply: Reply) -> Result<TouchOutcome, Error> {
    Ok(match meta(reply)?.status {
        MetaStatus::Stored | MetaStatus::Value => TouchOutcome::Touched,
        MetaStatus::Miss | MetaStatus::NotFound => TouchOutcome::NotFound,
        other => return Err(unexpected_status(other)),
    })
}

/// `ma` with `v`: the counter's new value, or `None` when it does not exist.
pub(super) fn counter(reply: Reply) -> Result<Option<u64>, Error> {
    let meta = meta(reply)?;
    match meta.status {
        MetaStatus::Value => {
            let digits = meta.value.unwrap_or_default();
            std::str::from_utf8(&digits)
                .ok()
                .and_then(|digits| digits.trim().parse().ok())
                .map(Some)
                .ok_or_else(|| Error::protocol("counter value is not a number"))
        }
        MetaStatus::NotFound | MetaStatus::Miss => Ok(None),
        other => Err(unexpected_status(other)),
    }
}

/// `flush_all`.
pub(super) fn ok(reply: Reply) -> Result<(), Error> {
    match reply {
        Reply::Ok => Ok(()),
        other => Err(not_meta(other)),
    }
}

/// `version`.
pub(super) fn version(reply: Reply) -> Result<String, Error> {
    match reply {
        Reply::Version(version) => Ok(version),
        other => Err(not_meta(other)),
    }
}

/// `stats`.
pub(super) fn stats(reply: Reply) -> Result<BTreeMap<String, String>, Error> {
    match reply {
        Reply::Stats(stats) => Ok(stats
            .into_iter()
            .map(|stat| (stat.name, stat.value))
            .collect()),
        other => Err(not_meta(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use bytes::Bytes;
    use memha_proto::ServerErrorKind;
    use memha_proto::{MetaFlags, ReplyDecoder, ReplyKind};

    fn decode(wire: &str) -> Reply {
        let mut input = bytes::BytesMut::from(wire.as_bytes());
        ReplyDecoder::default()
            .decode(&mut input, ReplyKind::Meta)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn items() {
        let hit = item(decode("VA 2 f7 t-1 c9\r\nhi\r\n")).unwrap().unwrap();
        assert_eq!(hit.value, Bytes::from_static(b"hi"));
        assert_eq!((hit.flags, hit.expires_in, hit.cas), (7, None, Some(9)));
        let hit = item(decode("VA 0 t30\r\n\r\n")).unwrap().unwrap();
        assert_eq!(hit.expires_in, Some(Duration::from_secs(30)));
        assert_eq!(item(decode("EN\r\n")).unwrap(), None);
        assert_eq!(
            item(decode("NS\r\n")).unwrap_err().kind(),
            ErrorKind::Protocol
        );
    }

    #[test]
    fn outcomes() {
        assert_eq!(store(decode("HD\r\n")).unwrap(), StoreOutcome::Stored);
        assert_eq!(store(decode("NS\r\n")).unwrap(), StoreOutcome::NotStored);
        assert_eq!(store(decode("EX\r\n")).unwrap(), StoreOutcome::Exists);
        assert_eq!(store(decode("NF\r\n")).unwrap(), StoreOutcome::NotFound);
        assert_eq!(delete(decode("NF\r\n")).unwrap(), DeleteOutcome::NotFound);
        assert_eq!(touch(decode("EN\r\n")).unwrap(), TouchOutcome::NotFound);
        assert_eq!(counter(decode("VA 2\r\n42\r\n")).unwrap(), Some(42));
        assert_eq!(counter(decode("NF\r\n")).unwrap(), None);
    }

    #[test]
    fn server_errors_are_typed() {
        let reply = Reply::Error(ServerError {
            kind: ServerErrorKind::Server,
            message: "out of memory storing object".into(),
        });
        let error = store(reply).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Server);
        assert_eq!(
            error.server_message(),
            Some("SERVER_ERROR out of memory storing object")
        );
        let meta = Reply::Meta(MetaReply {
            status: MetaStatus::Stored,
            value: None,
            flags: MetaFlags::default(),
        });
        assert_eq!(version(meta).unwrap_err().kind(), ErrorKind::Protocol);
    }
}
