//! The pipeline matches replies to requests without a socket: tokens are
//! checked, unsolicited bytes refused, and after a failure it tells which
//! requests surely never left.

use bytes::{Bytes, BytesMut};
use memha_proto::{
    Command, ErrorKind, Key, Limits, MetaGet, MetaSet, MetaStatus, Pipeline, Reply, Retrieval,
    Storage,
};

fn key(name: &'static str) -> Key {
    Key::new(name).unwrap()
}

fn meta_get(name: &'static str) -> Command {
    let mut get = MetaGet::new(key(name));
    get.value = true;
    Command::MetaGet(get)
}

/// Four requests of different reply kinds, and their answers as memcached
/// sends them (the meta ones echoing the pipeline's tokens 0 and 1).
fn conversation() -> (Pipeline<usize>, Vec<u8>) {
    let mut pipeline = Pipeline::new(Limits::default());
    let mut out = BytesMut::new();
    let mut commands = [
        meta_get("a"),
        Command::Retrieve {
            kind: Retrieval::Get,
            keys: vec![key("b"), key("c")],
        },
        Command::MetaSet(MetaSet::new(key("d"), "v")),
        Command::Version,
    ];
    for (id, command) in commands.iter_mut().enumerate() {
        pipeline.submit(command, &mut out, id).unwrap();
    }
    assert_eq!(
        &out[..],
        b"mg a v O0\r\nget b c\r\nms d 1 MS O1\r\nv\r\nversion\r\n"
    );
    let replies = b"VA 2 O0\r\nhi\r\nVALUE b 0 1\r\nx\r\nVALUE c 3 2\r\nyz\r\nEND\r\nHD O1\r\nVERSION 1.6.21\r\n";
    (pipeline, replies.to_vec())
}

/// Feeds `bytes` in two pieces, cut at `cut`, decoding all it can after
/// each piece.
fn decode_split(mut pipeline: Pipeline<usize>, bytes: &[u8], cut: usize) -> Vec<(usize, Reply)> {
    let mut input = BytesMut::from(&bytes[..cut]);
    let mut answered = Vec::new();
    while let Some(item) = pipeline.decode(&mut input).unwrap() {
        answered.push(item);
    }
    input.extend_from_slice(&bytes[cut..]);
    while let Some(item) = pipeline.decode(&mut input).unwrap() {
        answered.push(item);
    }
    assert!(input.is_empty(), "bytes left over: {:?}", &input[..]);
    assert!(pipeline.is_empty());
    answered
}

#[test]
fn replies_split_at_every_offset_match_their_requests_in_order() {
    let (pipeline, bytes) = conversation();
    let whole = decode_split(pipeline, &bytes, bytes.len());
    let ids: Vec<usize> = whole.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [0, 1, 2, 3]);
    assert!(matches!(&whole[0].1, Reply::Meta(m) if m.value.as_deref() == Some(&b"hi"[..])));
    assert!(matches!(&whole[1].1, Reply::Values(v) if v.len() == 2));
    assert!(matches!(&whole[2].1, Reply::Meta(m) if m.status == MetaStatus::Stored));
    assert!(matches!(&whole[3].1, Reply::Version(v) if v == "1.6.21"));
    for cut in 0..bytes.len() {
        let (pipeline, bytes) = conversation();
        assert_eq!(decode_split(pipeline, &bytes, cut), whole, "split at {cut}");
    }
}

#[test]
fn a_reply_that_does_not_echo_its_token_is_refused() {
    for stranger in [&b"HD O1\r\n"[..], b"HD\r\n", b"EN O99\r\n"] {
        let mut pipeline = Pipeline::new(Limits::default());
        let mut out = BytesMut::new();
        pipeline.submit(&mut meta_get("a"), &mut out, ()).unwrap();
        let error = pipeline.decode(&mut BytesMut::from(stranger)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnexpectedReply, "{stranger:?}");
        assert!(error.is_decode());
    }
}

#[test]
fn a_callers_own_token_is_kept_and_checked_and_fresh_ones_are_given_back() {
    let mut pipeline = Pipeline::new(Limits::default());
    let mut out = BytesMut::new();
    let mut own = MetaGet::new(key("a"));
    own.opaque = Some(42);
    let mut own = Command::MetaGet(own);
    let mut fresh = meta_get("b");
    let fresh_before = fresh.clone();
    pipeline.submit(&mut own, &mut out, 1).unwrap();
    pipeline.submit(&mut fresh, &mut out, 2).unwrap();
    assert_eq!(&out[..], b"mg a O42\r\nmg b v O0\r\n");
    assert_eq!(fresh, fresh_before, "the command is given back untagged");
    let mut input = BytesMut::from(&b"HD O42\r\nEN O0\r\n"[..]);
    assert_eq!(pipeline.decode(&mut input).unwrap().unwrap().0, 1);
    assert_eq!(pipeline.decode(&mut input).unwrap().unwrap().0, 2);
    // Without tokens, a caller's own is still checked.
    let mut pipeline = Pipeline::new(Limits::default()).tokens(false);
    pipeline.submit(&mut own, &mut BytesMut::new(), ()).unwrap();
    let error = pipeline.decode(&mut BytesMut::from(&b"HD O7\r\n"[..]));
    assert_eq!(error.unwrap_err().kind(), ErrorKind::UnexpectedReply);
}

#[test]
fn bytes_no_request_asked_for_are_refused() {
    let mut pipeline: Pipeline<()> = Pipeline::new(Limits::default());
    assert!(pipeline.decode(&mut BytesMut::new()).unwrap().is_none());
    let error = pipeline
        .decode(&mut BytesMut::from(&b"HD\r\n"[..]))
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UnexpectedReply);
    // One past the last answer, too.
    pipeline
        .submit(&mut Command::Version, &mut BytesMut::new(), ())
        .unwrap();
    let mut input = BytesMut::from(&b"VERSION 1\r\nVERSION 1\r\n"[..]);
    assert!(pipeline.decode(&mut input).unwrap().is_some());
    let error = pipeline.decode(&mut input).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UnexpectedReply);
}

#[test]
fn commands_that_may_go_unanswered_or_are_too_large_are_refused_with_nothing_written() {
    let mut quiet = MetaSet::new(key("a"), "v");
    quiet.quiet = true;
    let mut quiet_get = MetaGet::new(key("a"));
    quiet_get.quiet = true;
    let noreply = |noreply| Command::Store {
        kind: Storage::Set,
        key: key("a"),
        flags: 0,
        exptime: 0,
        value: Bytes::from_static(b"v"),
        noreply,
    };
    let limits = Limits {
        max_value_len: 4,
        ..Limits::default()
    };
    let refused = [
        (Command::MetaSet(quiet), ErrorKind::Unanswerable),
        (Command::MetaGet(quiet_get), ErrorKind::Unanswerable),
        (noreply(true), ErrorKind::Unanswerable),
        (
            Command::Delete {
                key: key("a"),
                noreply: true,
            },
            ErrorKind::Unanswerable,
        ),
        (
            Command::MetaSet(MetaSet::new(key("a"), "large")),
            ErrorKind::ValueTooLarge { len: 5, max: 4 },
        ),
    ];
    let mut pipeline = Pipeline::new(limits);
    let mut out = BytesMut::from(&b"earlier"[..]);
    for (mut command, kind) in refused {
        let error = pipeline.submit(&mut command, &mut out, ()).unwrap_err();
        assert_eq!(error.kind(), kind, "{command:?}");
        assert_eq!(&out[..], b"earlier");
        assert!(pipeline.is_empty());
        assert_eq!(pipeline.submitted(), 0);
    }
    // The same set, answered, is accepted.
    pipeline.submit(&mut noreply(false), &mut out, ()).unwrap();
    assert_eq!(pipeline.len(), 1);
}

#[test]
fn fail_all_tells_which_requests_never_left_at_every_committed_offset() {
    let (mut pipeline, _) = conversation();
    let ends = [11, 20, 37, 46]; // where each request's bytes end
    let submitted = pipeline.submitted();
    assert_eq!(submitted, 46);
    for committed in 0..=submitted {
        let (mut pipeline, _) = conversation();
        let failed: Vec<(usize, bool)> = pipeline.fail_all(committed).collect();
        let expected: Vec<(usize, bool)> = ends
            .iter()
            .enumerate()
            .map(|(id, &end)| (id, end > committed))
            .collect();
        assert_eq!(failed, expected, "committed {committed}");
        assert!(pipeline.is_empty());
    }
    let failed: Vec<_> = pipeline.fail_all(0).collect();
    assert_eq!(failed.len(), 4);
    assert_eq!(pipeline.submitted(), 0);
}

#[test]
fn after_fail_all_a_new_stream_starts_clean() {
    let mut pipeline = Pipeline::new(Limits::default());
    let mut out = BytesMut::new();
    let mut get = Command::Retrieve {
        kind: Retrieval::Get,
        keys: vec![key("b"), key("c")],
    };
    pipeline.submit(&mut get, &mut out, 1).unwrap();
    // Half a multi-value reply, then the stream breaks.
    let mut input = BytesMut::from(&b"VALUE b 0 1\r\nx\r\n"[..]);
    assert!(pipeline.decode(&mut input).unwrap().is_none());
    assert_eq!(pipeline.fail_all(0).count(), 1);
    // On the new stream, the same request gets only its own answer.
    out.clear();
    pipeline.submit(&mut get, &mut out, 2).unwrap();
    assert_eq!(pipeline.submitted(), out.len() as u64);
    let mut input = BytesMut::from(&b"VALUE c 0 1\r\ny\r\nEND\r\n"[..]);
    let Some((2, Reply::Values(values))) = pipeline.decode(&mut input).unwrap() else {
        panic!("expected the values of request 2");
    };
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].key, "c");
}

#[test]
fn a_reader_takes_the_requests_submitted_meanwhile_in_order() {
    let mut writing = Pipeline::new(Limits::default());
    let mut reading = Pipeline::new(Limits::default());
    let mut out = BytesMut::new();
    writing.submit(&mut Command::Version, &mut out, 1).unwrap();
    reading.take_from(&mut writing);
    writing.submit(&mut meta_get("a"), &mut out, 2).unwrap();
    writing.submit(&mut Command::Version, &mut out, 3).unwrap();
    reading.take_from(&mut writing);
    assert!(writing.is_empty());
    assert_eq!(reading.len(), 3);
    let mut input = BytesMut::from(&b"VERSION 1\r\nEN O0\r\nVERSION 1\r\n"[..]);
    let mut ids = Vec::new();
    while let Some((id, _)) = reading.decode(&mut input).unwrap() {
        ids.push(id);
    }
    assert_eq!(ids, [1, 2, 3]);
}

#[test]
fn noop_carries_no_token_and_a_refused_command_takes_none() {
    let mut pipeline = Pipeline::new(Limits::default());
    let mut out = BytesMut::new();
    let mut quiet = MetaGet::new(key("q"));
    quiet.quiet = true;
    assert!(pipeline
        .submit(&mut Command::MetaGet(quiet), &mut out, ())
        .is_err());
    pipeline
        .submit(&mut Command::MetaNoop, &mut out, ())
        .unwrap();
    pipeline.submit(&mut meta_get("a"), &mut out, ()).unwrap();
    assert_eq!(&out[..], b"mn\r\nmg a v O0\r\n");
    let mut input = BytesMut::from(&b"MN\r\nEN O0\r\n"[..]);
    assert!(pipeline.decode(&mut input).unwrap().is_some());
    assert!(pipeline.decode(&mut input).unwrap().is_some());
}
