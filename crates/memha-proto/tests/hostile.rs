//! A hostile or broken server can never make the decoder panic or hold more
//! than its limits allow.

mod render;

use bytes::BytesMut;
use memha_proto::{ErrorKind, Limits, Reply, ReplyDecoder, ReplyKind};
use proptest::prelude::*;

const SMALL: Limits = Limits {
    max_value_len: 512,
    max_line_len: 128,
    max_items: 8,
};

/// The most bytes a decoder may ask to buffer for one item under `limits`.
fn bound(limits: &Limits) -> usize {
    limits.max_line_len + 2 + limits.max_value_len + 2 + "END\r\n".len()
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::sample::select(vec![
            &b"VA 4294967296 \r\n"[..],
            b"VA 600 \r\n",
            b"VALUE k 0 99999999999999999999\r\n",
            b"VALUE k 0 3\r\nabc\r\n",
            b"VALUE k 0 3 7\r\nabcXY",
            b"STAT a b\r\n",
            b"END\r\n",
            b"HD c1 f2 t-1\r\n",
            b"\r\n",
            b"\n",
            b"CONFIG cluster 0 5\r\n1\nab\r\nEND\r\n",
            b"SERVER_ERROR out of memory\r\n",
        ])
        .prop_map(<[u8]>::to_vec),
    ];
    prop::collection::vec(fragment, 0..12).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic_nor_exceed_limits(
        bytes in garbage(),
        kinds in prop::collection::vec(render::reply_kind(), 1..8),
        chunk in 1usize..300,
    ) {
        let mut decoder = ReplyDecoder::new(SMALL);
        let mut buf = BytesMut::new();
        let mut next = 0;
        'feed: for piece in bytes.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(&kind) = kinds.get(next) {
                match decoder.decode(&mut buf, kind) {
                    Ok(Some(reply)) => {
                        next += 1;
                        match reply {
                            Reply::Values(v) => prop_assert!(v.len() <= SMALL.max_items),
                            Reply::Stats(s) => prop_assert!(s.len() <= SMALL.max_items),
                            Reply::Meta(m) => prop_assert!(m.value.map_or(0, |v| v.len()) <= SMALL.max_value_len),
                            _ => {}
                        }
                    }
                    Ok(None) => {
                        // Waiting for more: what is buffered is at most one item.
                        prop_assert!(buf.len() < bound(&SMALL) + chunk, "buffered {}", buf.len());
                        prop_assert!(buf.capacity() <= 2 * (bound(&SMALL) + chunk), "capacity {}", buf.capacity());
                        break;
                    }
                    Err(_) => break 'feed,
                }
            }
        }
    }
}

#[test]
fn a_4_gib_value_is_refused_before_allocating() {
    let mut buf = BytesMut::from(&b"VA 4294967296 f0\r\n"[..]);
    let before = buf.capacity();
    let err = ReplyDecoder::default()
        .decode(&mut buf, ReplyKind::Meta)
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::ValueTooLarge {
            len: 4 << 30,
            max: 1 << 20
        }
    );
    assert_eq!(buf.capacity(), before);
}

#[test]
fn a_line_that_never_ends_is_refused_at_the_bound() {
    let mut decoder = ReplyDecoder::default();
    let mut buf = BytesMut::new();
    let err = loop {
        buf.extend_from_slice(&[b'x'; 1000]);
        match decoder.decode(&mut buf, ReplyKind::Storage) {
            Ok(None) => assert!(buf.len() < 8 * 1024 + 2),
            Ok(Some(reply)) => panic!("decoded {reply:?} from garbage"),
            Err(err) => break err,
        }
    };
    assert_eq!(err.kind(), ErrorKind::LineTooLong { max: 8 * 1024 });
    assert!(err.is_decode());
}

#[test]
fn more_values_than_keys_asked_is_refused() {
    let mut buf = BytesMut::from(&b"VALUE a 0 1\r\nx\r\nVALUE b 0 1\r\ny\r\nEND\r\n"[..]);
    let err = ReplyDecoder::default()
        .decode(&mut buf, ReplyKind::Values { max_items: 1 })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManyItems { max: 1 });
}

#[test]
fn a_reply_of_the_wrong_kind_is_a_decode_error() {
    let mut buf = BytesMut::from(&b"STORED\r\n"[..]);
    let err = ReplyDecoder::default()
        .decode(&mut buf, ReplyKind::Meta)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedReply);
}

#[test]
fn a_bare_line_feed_is_malformed() {
    let mut buf = BytesMut::from(&b"HD\n"[..]);
    let err = ReplyDecoder::default()
        .decode(&mut buf, ReplyKind::Meta)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Malformed);
}

#[test]
fn server_errors_are_items_not_decode_errors() {
    let mut buf = BytesMut::from(&b"SERVER_ERROR out of memory storing object\r\n"[..]);
    let reply = ReplyDecoder::default()
        .decode(&mut buf, ReplyKind::Meta)
        .unwrap();
    assert!(matches!(reply, Some(Reply::Error(e)) if e.message == "out of memory storing object"));
}
