//! The `tokio_util` codec runs on the same pipeline: tokens are tagged and
//! checked, and commands that may go unanswered are refused.
#![cfg(feature = "codec")]

use bytes::BytesMut;
use memha_proto::{Command, ErrorKind, Key, MemcachedCodec, MetaGet, MetaSet, Reply};
use tokio_util::codec::{Decoder, Encoder};

fn meta_get(name: &'static str) -> Command {
    let mut get = MetaGet::new(Key::new(name).unwrap());
    get.value = true;
    Command::MetaGet(get)
}

#[test]
fn replies_are_matched_to_commands_in_order_by_their_tokens() {
    let mut codec = MemcachedCodec::default();
    let mut out = BytesMut::new();
    codec.encode(meta_get("a"), &mut out).unwrap();
    codec.encode(Command::Version, &mut out).unwrap();
    codec.encode(meta_get("b"), &mut out).unwrap();
    assert_eq!(&out[..], b"mg a v O0\r\nversion\r\nmg b v O1\r\n");
    assert_eq!(codec.in_flight(), 3);
    let mut input = BytesMut::from(&b"VA 1 O0\r\nx\r\nVERSION 1.6.21\r\nEN O1\r\n"[..]);
    let Some(Reply::Meta(hit)) = codec.decode(&mut input).unwrap() else {
        panic!("a meta reply")
    };
    assert_eq!(hit.value.as_deref(), Some(&b"x"[..]));
    assert!(matches!(
        codec.decode(&mut input).unwrap(),
        Some(Reply::Version(_))
    ));
    assert!(matches!(
        codec.decode(&mut input).unwrap(),
        Some(Reply::Meta(_))
    ));
    assert_eq!(codec.in_flight(), 0);
    assert!(codec.decode(&mut input).unwrap().is_none());
}

#[test]
fn a_strangers_reply_and_unsolicited_bytes_are_errors() {
    let mut codec = MemcachedCodec::default();
    codec.encode(meta_get("a"), &mut BytesMut::new()).unwrap();
    let stranger = codec.decode(&mut BytesMut::from(&b"EN O5\r\n"[..]));
    assert_eq!(stranger.unwrap_err().kind(), ErrorKind::UnexpectedReply);
    let mut idle = MemcachedCodec::default();
    let unsolicited = idle.decode(&mut BytesMut::from(&b"HD\r\n"[..]));
    assert_eq!(unsolicited.unwrap_err().kind(), ErrorKind::UnexpectedReply);
}

#[test]
fn quiet_commands_are_refused_and_tokens_can_be_turned_off() {
    let mut codec = MemcachedCodec::default().tokens(false);
    let mut out = BytesMut::new();
    let mut quiet = MetaSet::new(Key::new("k").unwrap(), "v");
    quiet.quiet = true;
    let refused = codec.encode(Command::MetaSet(quiet), &mut out).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unanswerable);
    assert!(out.is_empty());
    assert_eq!(codec.in_flight(), 0);
    codec.encode(meta_get("a"), &mut out).unwrap();
    assert_eq!(&out[..], b"mg a v\r\n");
    let reply = codec.decode(&mut BytesMut::from(&b"EN\r\n"[..])).unwrap();
    assert!(matches!(reply, Some(Reply::Meta(_))));
}
