//! Golden tests: every command memha-proto encodes is sent to a real
//! memcached over a plain `TcpStream`, and the reply decoded and checked.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use memha_proto::{
    Arithmetic, ArithmeticMode, Command, Key, Limits, MetaArithmetic, MetaDelete, MetaGet,
    MetaReply, MetaSet, MetaStatus, Reply, ReplyDecoder, Retrieval, ServerErrorKind, SetMode,
    StatsGroup, Storage,
};
use memha_tests::MemcachedCluster;

/// Values that once broke a peer client: protocol terminators inside the data.
const TRICKY: [&[u8]; 6] = [
    b"line one\r\nline two",
    b"END\r\n",
    b"\r\nEND\r\n",
    b"trailing whitespace \t ",
    b"\r\nmn\r\nVA 3 \r\n",
    b"",
];

/// A plain connection that encodes with memha-proto and decodes its replies.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    decoder: ReplyDecoder,
}

impl Conn {
    fn open(cluster: &MemcachedCluster) -> Conn {
        let stream = TcpStream::connect(cluster.node(0).addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Conn {
            stream,
            buf: BytesMut::new(),
            decoder: ReplyDecoder::default(),
        }
    }

    /// Sends all `commands` in one write (pipelined) and decodes their replies in order.
    fn pipeline(&mut self, commands: &[Command]) -> Vec<Reply> {
        let mut out = BytesMut::new();
        for command in commands {
            command
                .encode(&mut out, &Limits::default())
                .expect("encode");
        }
        self.stream.write_all(&out).expect("write");
        commands
            .iter()
            .filter_map(Command::reply_kind)
            .map(|kind| loop {
                if let Some(reply) = self.decoder.decode(&mut self.buf, kind).expect("decode") {
                    break reply;
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).expect("read");
                assert!(n > 0, "server closed the connection");
                self.buf.extend_from_slice(&chunk[..n]);
            })
            .collect()
    }

    fn send(&mut self, command: Command) -> Reply {
        self.pipeline(&[command]).remove(0)
    }
}

fn key(s: &str) -> Key {
    Key::new(s.to_owned()).unwrap()
}

fn meta(reply: Reply) -> MetaReply {
    match reply {
        Reply::Meta(meta) => meta,
        other => panic!("expected a meta reply, got {other:?}"),
    }
}

fn store(kind: Storage, k: &str, flags: u32, exptime: u32, value: &'static [u8]) -> Command {
    Command::Store {
        kind,
        key: key(k),
        flags,
        exptime,
        value: Bytes::from_static(value),
        noreply: false,
    }
}

fn get(kind: Retrieval, keys: &[&str]) -> Command {
    Command::Retrieve {
        kind,
        keys: keys.iter().map(|k| key(k)).collect(),
    }
}

#[test]
fn meta_set_and_get_round_trip_value_flags_ttl_and_cas() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let mut conn = Conn::open(&cluster);
    let mut set = MetaSet::new(key("m:1"), "hello");
    set.ttl = Some(300);
    set.client_flags = Some(42);
    set.return_cas = true;
    let stored = meta(conn.send(set.into()));
    assert_eq!(stored.status, MetaStatus::Stored);
    let cas = stored.flags.cas.expect("c returns the CAS token");

    let mut get = MetaGet::full(key("m:1"));
    get.return_key = true;
    get.opaque = Some(77);
    let hit = meta(conn.send(get.into()));
    assert_eq!(hit.status, MetaStatus::Value);
    assert_eq!(hit.value.as_deref(), Some(&b"hello"[..]));
    assert_eq!(hit.flags.client_flags, Some(42));
    assert!(
        matches!(hit.flags.ttl, Some(299..=300)),
        "{:?}",
        hit.flags.ttl
    );
    assert_eq!(hit.flags.cas, Some(cas));
    assert_eq!(hit.flags.key().map(|k| &k[..]), Some(&b"m:1"[..]));
    assert_eq!(hit.flags.opaque, Some(77));

    let miss = meta(conn.send(MetaGet::full(key("m:absent")).into()));
    assert_eq!(miss.status, MetaStatus::Miss);

    // A value stored without a TTL reports -1.
    conn.send(MetaSet::new(key("m:forever"), "x").into());
    let forever = meta(conn.send(MetaGet::full(key("m:forever")).into()));
    assert_eq!(forever.flags.ttl, Some(-1));
}

#[test]
fn meta_set_modes_and_compare_and_swap() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let mut conn = Conn::open(&cluster);
    let with_mode = |k: &str, v: &'static str, mode| {
        let mut set = MetaSet::new(key(k), v);
        set.mode = mode;
        Command::from(set)
    };
    let statuses: Vec<MetaStatus> = conn
        .pipeline(&[
            with_mode("mode", "b", SetMode::Replace), // absent: not stored
            with_mode("mode", "b", SetMode::Add),     // stored
            with_mode("mode", "x", SetMode::Add),     // present: not stored
            with_mode("mode", "c", SetMode::Append),
            with_mode("mode", "a", SetMode::Prepend),
            with_mode("mode", "abc!", SetMode::Replace),
            with_mode("mode", "abc", SetMode::Set),
            Command::MetaNoop,
        ])
        .into_iter()
        .map(|r| meta(r).status)
        .collect();
    use MetaStatus::*;
    assert_eq!(
        statuses,
        [NotStored, Stored, NotStored, Stored, Stored, Stored, Stored, Noop]
    );
    let hit = meta(conn.send(MetaGet::full(key("mode")).into()));
    assert_eq!(hit.value.as_deref(), Some(&b"abc"[..]));
    let cas = hit.flags.cas.unwrap();

    let mut stale = MetaSet::new(key("mode"), "lost");
    stale.compare_cas = Some(cas + 1000);
    assert_eq!(meta(conn.send(stale.into())).status, Exists);
    let mut fresh = MetaSet::new(key("mode"), "won");
    fresh.compare_cas = Some(cas);
    assert_eq!(meta(conn.send(fresh.into())).status, Stored);
}

#[test]
fn meta_delete_and_arithmetic() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let mut conn = Conn::open(&cluster);
    assert_eq!(
        meta(conn.send(MetaDelete::new(key("d")).into())).status,
        MetaStatus::NotFound
    );
    conn.send(MetaSet::new(key("d"), "x").into());
    assert_eq!(
        meta(conn.send(MetaDelete::new(key("d")).into())).status,
        MetaStatus::Stored
    );

    let incr = |delta| MetaArithmetic::new(key("n"), ArithmeticMode::Increment, delta);
    assert_eq!(meta(conn.send(incr(1).into())).status, MetaStatus::NotFound);
    let mut vivify = incr(5);
    vivify.vivify = Some(0);
    vivify.initial = Some(10);
    let created = meta(conn.send(vivify.into()));
    assert_eq!(
        created.value.as_deref(),
        Some(&b"10"[..]),
        "J is the initial value"
    );
    let bumped = meta(conn.send(incr(5).into()));
    assert_eq!(bumped.value.as_deref(), Some(&b"15"[..]));
    let mut down = MetaArithmetic::new(key("n"), ArithmeticMode::Decrement, 100);
    down.return_ttl = true;
    let floored = meta(conn.send(down.into()));
    assert_eq!(
        floored.value.as_deref(),
        Some(&b"0"[..]),
        "decr stops at zero"
    );
    assert_eq!(floored.flags.ttl, Some(-1));
}

#[test]
fn tricky_values_come_back_byte_exact_through_meta_and_classic_gets() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let mut conn = Conn::open(&cluster);
    for (i, value) in TRICKY.iter().enumerate() {
        let k = format!("tricky:{i}");
        let mut set = MetaSet::new(key(&k), Bytes::from_static(value));
        set.client_flags = Some(i as u32);
        let replies = conn.pipeline(&[
            set.into(),
            MetaGet::full(key(&k)).into(),
            get(Retrieval::Gets, &[&k]),
        ]);
        let hit = meta(replies[1].clone());
        assert_eq!(hit.value.as_deref(), Some(*value), "mg of {value:?}");
        let Reply::Values(values) = &replies[2] else {
            panic!("expected values, got {:?}", replies[2])
        };
        assert_eq!(values.len(), 1);
        assert_eq!(&values[0].data[..], *value, "gets of {value:?}");
        assert_eq!(values[0].flags, i as u32);
        assert_eq!(values[0].cas, hit.flags.cas);
    }
}

#[test]
fn classic_storage_commands() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let mut conn = Conn::open(&cluster);
    let replies = conn.pipeline(&[
        store(Storage::Replace, "c", 0, 0, b"x"),
        store(Storage::Add, "c", 5, 0, b"mid"),
        store(Storage::Add, "c", 5, 0, b"again"),
        store(Storage::Append, "c", 0, 0, b">"),
        store(Storage::Prepend, "c", 0, 0, b"<"),
        store(Storage::Set, "other", 9, 3600, b"o"),
        get(Retrieval::Get, &["c", "absent", "other"]),
    ]);
    assert_eq!(
        replies[..6],
        [
            Reply::NotStored,
            Reply::Stored,
            Reply::NotStored,
            Reply::Stored,
            Reply::Stored,
            Reply::Stored
        ]
    );
    let Reply::Values(values) = &replies[6] else {
        panic!("expected values, got {:?}", replies[6])
    };
    let found: Vec<(&[u8], u32, &[u8])> = values
        .iter()
        .map(|v| (&v.key[..], v.flags, &v.data[..]))
        .collect();
    assert_eq!(
        found,
        [(&b"c"[..], 5, &b"<mid>"[..]), (&b"other"[..], 9, &b"o"[..])]
    );
    assert!(values.iter().all(|v| v.cas.is_none()), "get returns no CAS");
}

#[test]
fn classic_cas_gat_touch_delete_and_counters() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let mut conn = Conn::open(&cluster);
    conn.send(store(Storage::Set, "k", 1, 0, b"v1"));
    let Reply::Values(values) = conn.send(get(Retrieval::Gats(100), &["k"])) else {
        panic!("expected values")
    };
    let token = values[0].cas.expect("gats returns CAS");
    assert_eq!(
        conn.send(store(Storage::Cas(token + 1), "k", 1, 0, b"v2")),
        Reply::Exists
    );
    assert_eq!(
        conn.send(store(Storage::Cas(token), "k", 1, 0, b"v2")),
        Reply::Stored
    );
    // gat touched the item to 100 s: the meta TTL shows it, then touch sets 500.
    let Reply::Values(values) = conn.send(get(Retrieval::Gat(0), &["k"])) else {
        panic!("expected values")
    };
    assert_eq!(&values[0].data[..], b"v2");
    assert_eq!(
        meta(conn.send(MetaGet::full(key("k")).into())).flags.ttl,
        Some(-1)
    );
    let touch = |k: &str| Command::Touch {
        key: key(k),
        exptime: 500,
        noreply: false,
    };
    assert_eq!(conn.send(touch("k")), Reply::Touched);
    assert_eq!(conn.send(touch("nope")), Reply::NotFound);
    assert!(matches!(
        meta(conn.send(MetaGet::full(key("k")).into())).flags.ttl,
        Some(499..=500)
    ));

    let delete = |k: &str| Command::Delete {
        key: key(k),
        noreply: false,
    };
    assert_eq!(conn.send(delete("k")), Reply::Deleted);
    assert_eq!(conn.send(delete("k")), Reply::NotFound);

    let arith = |kind, delta| Command::Arithmetic {
        kind,
        key: key("ctr"),
        delta,
        noreply: false,
    };
    assert_eq!(conn.send(arith(Arithmetic::Incr, 1)), Reply::NotFound);
    conn.send(store(Storage::Set, "ctr", 0, 0, b"41"));
    assert_eq!(conn.send(arith(Arithmetic::Incr, 1)), Reply::Number(42));
    assert_eq!(conn.send(arith(Arithmetic::Decr, 50)), Reply::Number(0));

    // noreply commands get no reply: the next reply is the version's.
    let replies = conn.pipeline(&[
        Command::Delete {
            key: key("ctr"),
            noreply: true,
        },
        Command::Version,
    ]);
    assert!(matches!(&replies[..], [Reply::Version(v)] if v.starts_with("1.")));
}

#[test]
fn admin_commands_and_errors() {
    let cluster = MemcachedCluster::start(1).unwrap();
    let mut conn = Conn::open(&cluster);
    let Reply::Stats(stats) = conn.send(Command::Stats(StatsGroup::General)) else {
        panic!("expected stats")
    };
    let pid = stats.iter().find(|s| s.name == "pid").expect("pid stat");
    assert_eq!(
        pid.value.parse::<u32>().ok(),
        cluster.node(0).pid(),
        "stats pid is the harness's process"
    );
    let Reply::Stats(settings) = conn.send(Command::Stats(StatsGroup::Settings)) else {
        panic!("expected settings")
    };
    assert!(settings.iter().any(|s| s.name == "item_size_max"));

    conn.send(store(Storage::Set, "f", 0, 0, b"x"));
    assert_eq!(
        conn.send(Command::FlushAll {
            delay: None,
            noreply: false
        }),
        Reply::Ok
    );
    assert_eq!(
        meta(conn.send(MetaGet::full(key("f")).into())).status,
        MetaStatus::Miss
    );

    // Plain memcached is no ElastiCache configuration endpoint: `ERROR` is an item.
    match conn.send(Command::ConfigGetCluster) {
        Reply::Error(e) => assert_eq!(e.kind, ServerErrorKind::UnknownCommand),
        other => panic!("expected ERROR, got {other:?}"),
    }
    // The connection is still in step after the error.
    assert!(matches!(conn.send(Command::Version), Reply::Version(_)));
}

#[test]
fn a_value_over_the_servers_item_limit_is_refused_before_sending() {
    let limits = Limits::default();
    let too_big = Bytes::from(vec![b'x'; limits.max_value_len + 1]);
    let mut out = BytesMut::new();
    let err = Command::from(MetaSet::new(key("big"), too_big))
        .encode(&mut out, &limits)
        .unwrap_err();
    assert!(err.is_value_too_large());
    assert!(out.is_empty(), "nothing was encoded");
}
