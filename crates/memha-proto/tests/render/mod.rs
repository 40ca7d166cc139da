//! A test-side writer: renders replies the way a memcached server writes
//! them, and strategies that generate every kind of reply.
// Each test crate uses a part of this module.
#![allow(dead_code)]

use bytes::Bytes;
use memha_proto::{
    MetaFlags, MetaReply, MetaStatus, Reply, ReplyKind, ServerError, ServerErrorKind, Stat, Value,
};
use proptest::prelude::*;

pub(crate) fn render(reply: &Reply, out: &mut Vec<u8>) {
    let line = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend_from_slice(s);
        out.extend_from_slice(b"\r\n");
    };
    match reply {
        Reply::Meta(meta) => {
            out.extend_from_slice(meta.status.code().as_bytes());
            if let Some(value) = &meta.value {
                out.extend_from_slice(format!(" {}", value.len()).as_bytes());
            }
            render_meta_flags(&meta.flags, out);
            line(out, b"");
            if let Some(value) = &meta.value {
                line(out, value);
            }
        }
        Reply::Values(values) => {
            for v in values {
                out.extend_from_slice(b"VALUE ");
                out.extend_from_slice(&v.key);
                out.extend_from_slice(format!(" {} {}", v.flags, v.data.len()).as_bytes());
                if let Some(cas) = v.cas {
                    out.extend_from_slice(format!(" {cas}").as_bytes());
                }
                line(out, b"");
                line(out, &v.data);
            }
            line(out, b"END");
        }
        Reply::Stored => line(out, b"STORED"),
        Reply::NotStored => line(out, b"NOT_STORED"),
        Reply::Exists => line(out, b"EXISTS"),
        Reply::NotFound => line(out, b"NOT_FOUND"),
        Reply::Deleted => line(out, b"DELETED"),
        Reply::Touched => line(out, b"TOUCHED"),
        Reply::Number(n) => line(out, n.to_string().as_bytes()),
        Reply::Ok => line(out, b"OK"),
        Reply::Version(v) => line(out, format!("VERSION {v}").as_bytes()),
        Reply::Stats(stats) => {
            for s in stats {
                line(out, format!("STAT {} {}", s.name, s.value).as_bytes());
            }
            line(out, b"END");
        }
        Reply::Config(payload) => {
            line(
                out,
                format!("CONFIG cluster 0 {}", payload.len()).as_bytes(),
            );
            line(out, payload);
            line(out, b"END");
        }
        Reply::Error(e) => match e.kind {
            ServerErrorKind::UnknownCommand => line(out, b"ERROR"),
            ServerErrorKind::Client => line(out, format!("CLIENT_ERROR {}", e.message).as_bytes()),
            ServerErrorKind::Server => line(out, format!("SERVER_ERROR {}", e.message).as_bytes()),
        },
        other => panic!("no renderer for {other:?}"),
    }
}

fn render_meta_flags(f: &MetaFlags, out: &mut Vec<u8>) {
    let mut put = |s: String| {
        out.push(b' ');
        out.extend_from_slice(s.as_bytes());
    };
    if let Some(v) = f.cas {
        put(format!("c{v}"));
    }
    if let Some(v) = f.client_flags {
        put(format!("f{v}"));
    }
    if let Some(v) = f.ttl {
        put(format!("t{v}"));
    }
    if let Some(k) = f.key() {
        put(format!("k{}", String::from_utf8(k.to_vec()).unwrap()));
    }
    if let Some(v) = f.opaque {
        put(format!("O{v}"));
    }
    if let Some(v) = f.size() {
        put(format!("s{v}"));
    }
    if let Some(v) = f.hit_before() {
        put(format!("h{}", u8::from(v)));
    }
    if let Some(v) = f.last_access() {
        put(format!("l{v}"));
    }
    if f.won {
        put("W".into());
    }
    if f.stale {
        put("X".into());
    }
    if f.win_pending {
        put("Z".into());
    }
}

/// Values with the bytes that broke a peer client once: CRLF, END, trailing spaces.
pub(crate) fn value_bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48).prop_map(Bytes::from),
        prop::sample::select(vec![
            &b"\r\nEND\r\n"[..],
            b"END\r\n",
            b"\r\n",
            b"trailing  ",
            b"VA 5 \r\nmn\r\n",
            b"",
        ])
        .prop_map(Bytes::from_static),
    ]
}

fn key_text() -> impl Strategy<Value = String> {
    "[!-~&&[^ ]]{1,16}"
}

fn line_text() -> impl Strategy<Value = String> {
    "[ -~]{0,24}"
}

fn meta_flags() -> impl Strategy<Value = MetaFlags> {
    (
        (
            any::<Option<u64>>(),
            any::<Option<u32>>(),
            prop::option::of(-1i64..=i64::MAX),
            prop::option::of(key_text()),
            any::<Option<u32>>(),
        ),
        (
            any::<Option<u64>>(),
            any::<Option<bool>>(),
            any::<Option<u64>>(),
            any::<(bool, bool, bool)>(),
        ),
    )
        .prop_map(
            |((cas, client_flags, ttl, key, opaque), (size, hit_before, last_access, wxz))| {
                let mut f = MetaFlags::default();
                f.cas = cas;
                f.client_flags = client_flags;
                f.ttl = ttl;
                f.set_key(key.map(Bytes::from));
                f.opaque = opaque;
                f.set_size(size);
                f.set_hit_before(hit_before);
                f.set_last_access(last_access);
                (f.won, f.stale, f.win_pending) = wxz;
                f
            },
        )
}

fn meta_reply() -> impl Strategy<Value = Reply> {
    let status = prop::sample::select(vec![
        MetaStatus::Stored,
        MetaStatus::Value,
        MetaStatus::Miss,
        MetaStatus::NotFound,
        MetaStatus::NotStored,
        MetaStatus::Exists,
        MetaStatus::Noop,
    ]);
    (status, value_bytes(), meta_flags()).prop_map(|(status, value, flags)| {
        Reply::Meta(MetaReply {
            status,
            value: (status == MetaStatus::Value).then_some(value),
            flags,
        })
    })
}

fn server_error() -> impl Strategy<Value = Reply> {
    prop_oneof![
        Just(Reply::Error(ServerError {
            kind: ServerErrorKind::UnknownCommand,
            message: String::new()
        })),
        line_text().prop_map(|message| Reply::Error(ServerError {
            kind: ServerErrorKind::Client,
            message
        })),
        line_text().prop_map(|message| Reply::Error(ServerError {
            kind: ServerErrorKind::Server,
            message
        })),
    ]
}

/// A reply of `kind`, sometimes a server error line instead (valid for any kind).
fn reply_for(kind: ReplyKind) -> BoxedStrategy<Reply> {
    let answer: BoxedStrategy<Reply> = match kind {
        ReplyKind::Meta => meta_reply().boxed(),
        ReplyKind::Values { max_items } => prop::collection::vec(
            (
                key_text(),
                any::<u32>(),
                any::<Option<u64>>(),
                value_bytes(),
            ),
            0..=max_items,
        )
        .prop_map(|values| {
            Reply::Values(
                values
                    .into_iter()
                    .map(|(key, flags, cas, data)| Value {
                        key: Bytes::from(key),
                        flags,
                        cas,
                        data,
                    })
                    .collect(),
            )
        })
        .boxed(),
        ReplyKind::Storage => prop::sample::select(vec![
            Reply::Stored,
            Reply::NotStored,
            Reply::Exists,
            Reply::NotFound,
        ])
        .boxed(),
        ReplyKind::Delete => prop::sample::select(vec![Reply::Deleted, Reply::NotFound]).boxed(),
        ReplyKind::Touch => prop::sample::select(vec![Reply::Touched, Reply::NotFound]).boxed(),
        ReplyKind::Arithmetic => {
            prop_oneof![any::<u64>().prop_map(Reply::Number), Just(Reply::NotFound)].boxed()
        }
        ReplyKind::Ok => Just(Reply::Ok).boxed(),
        ReplyKind::Version => "[!-~][ -~]{0,16}".prop_map(Reply::Version).boxed(),
        ReplyKind::Stats => prop::collection::vec(("[a-z_:0-9]{1,20}", line_text()), 0..8)
            .prop_map(|stats| {
                Reply::Stats(
                    stats
                        .into_iter()
                        .map(|(name, value)| Stat { name, value })
                        .collect(),
                )
            })
            .boxed(),
        ReplyKind::Config => value_bytes().prop_map(Reply::Config).boxed(),
    };
    prop_oneof![9 => answer, 1 => server_error()].boxed()
}

pub(crate) fn reply_kind() -> impl Strategy<Value = ReplyKind> {
    prop_oneof![
        Just(ReplyKind::Meta),
        (1usize..4).prop_map(|max_items| ReplyKind::Values { max_items }),
        Just(ReplyKind::Storage),
        Just(ReplyKind::Delete),
        Just(ReplyKind::Touch),
        Just(ReplyKind::Arithmetic),
        Just(ReplyKind::Ok),
        Just(ReplyKind::Version),
        Just(ReplyKind::Stats),
        Just(ReplyKind::Config),
    ]
}

/// A conversation: the kinds the client expects, the replies, and their bytes.
pub(crate) fn conversation() -> impl Strategy<Value = (Vec<(ReplyKind, Reply)>, Vec<u8>)> {
    prop::collection::vec(
        reply_kind().prop_flat_map(|k| (Just(k), reply_for(k))),
        1..5,
    )
    .prop_map(|pairs| {
        let mut bytes = Vec::new();
        for (_, reply) in &pairs {
            render(reply, &mut bytes);
        }
        (pairs, bytes)
    })
}
