//! Every kind of reply, rendered by a test-side writer, decodes to the same
//! items whole, split at every offset, and in random chunks.

mod render;

use bytes::BytesMut;
use memha_proto::{Limits, Reply, ReplyDecoder, ReplyKind};
use proptest::prelude::*;

/// Feeds `bytes` to a decoder in the given chunks, decoding as it goes.
fn decode_in_chunks(kinds: &[ReplyKind], bytes: &[u8], cuts: &[usize]) -> Vec<Reply> {
    let mut decoder = ReplyDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut replies = Vec::new();
    let mut fed = 0;
    let mut boundaries: Vec<usize> = cuts.iter().copied().filter(|&c| c < bytes.len()).collect();
    boundaries.sort_unstable();
    boundaries.push(bytes.len());
    for end in boundaries {
        buf.extend_from_slice(&bytes[fed..end]);
        fed = end;
        while let Some(&kind) = kinds.get(replies.len()) {
            match decoder.decode(&mut buf, kind).expect("well-formed input") {
                Some(reply) => replies.push(reply),
                None => break,
            }
        }
    }
    assert!(buf.is_empty(), "bytes left over: {:?}", &buf[..]);
    replies
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn whole_and_split_at_every_offset((pairs, bytes) in render::conversation()) {
        let kinds: Vec<ReplyKind> = pairs.iter().map(|(k, _)| *k).collect();
        let expected: Vec<Reply> = pairs.into_iter().map(|(_, r)| r).collect();
        prop_assert_eq!(&decode_in_chunks(&kinds, &bytes, &[]), &expected);
        for offset in 0..bytes.len() {
            prop_assert_eq!(&decode_in_chunks(&kinds, &bytes, &[offset]), &expected, "split at {}", offset);
        }
    }

    #[test]
    fn random_chunks((pairs, bytes) in render::conversation(), cuts in prop::collection::vec(0usize..2048, 0..32)) {
        let kinds: Vec<ReplyKind> = pairs.iter().map(|(k, _)| *k).collect();
        let expected: Vec<Reply> = pairs.into_iter().map(|(_, r)| r).collect();
        prop_assert_eq!(decode_in_chunks(&kinds, &bytes, &cuts), expected);
    }
}

#[test]
fn values_are_sliced_from_the_read_buffer() {
    let mut buf = BytesMut::from(&b"VA 5 f1\r\nhello\r\n"[..]);
    let start = buf.as_ptr() as usize;
    let mut decoder = ReplyDecoder::default();
    let Some(Reply::Meta(meta)) = decoder.decode(&mut buf, ReplyKind::Meta).unwrap() else {
        panic!("expected a meta reply")
    };
    let value = meta.value.unwrap();
    // The value points into the original allocation: no copy was made.
    assert_eq!(value.as_ptr() as usize, start + b"VA 5 f1\r\n".len());
}
