//! Keys: every invalid key is refused with the rule it broke; every valid key encodes byte-exact.

use bytes::BytesMut;
use memha_proto::{Command, ErrorKind, Key, KeyRule, Limits, MetaDelete};
use proptest::prelude::*;

fn valid_byte() -> impl Strategy<Value = u8> {
    (0x21u8..=0xff).prop_filter("not DEL", |&b| b != 0x7f)
}

fn forbidden_byte() -> impl Strategy<Value = u8> {
    prop_oneof![0u8..=0x20, Just(0x7f)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn valid_keys_are_accepted_and_encode_byte_exact(key in prop::collection::vec(valid_byte(), 1..=250)) {
        let parsed = Key::new(key.clone()).expect("valid key");
        prop_assert_eq!(parsed.as_bytes(), &key[..]);
        let mut out = BytesMut::new();
        Command::from(MetaDelete::new(parsed)).encode(&mut out, &Limits::default()).unwrap();
        let mut expected = b"md ".to_vec();
        expected.extend_from_slice(&key);
        expected.extend_from_slice(b"\r\n");
        prop_assert_eq!(&out[..], &expected[..]);
    }

    #[test]
    fn a_forbidden_byte_anywhere_is_refused(
        mut key in prop::collection::vec(valid_byte(), 1..=250),
        bad in forbidden_byte(),
        at in any::<prop::sample::Index>(),
    ) {
        let position = at.index(key.len());
        key[position] = bad;
        let err = Key::new(key).unwrap_err();
        prop_assert_eq!(err.kind(), ErrorKind::InvalidKey(KeyRule::ForbiddenByte { byte: bad, position }));
        prop_assert!(err.is_invalid_key());
    }

    #[test]
    fn keys_over_250_bytes_are_refused(key in prop::collection::vec(valid_byte(), 251..=600)) {
        let len = key.len();
        let err = Key::new(key).unwrap_err();
        prop_assert_eq!(err.kind(), ErrorKind::InvalidKey(KeyRule::TooLong { len }));
    }
}

#[test]
fn the_empty_key_is_refused() {
    let err = Key::new("").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidKey(KeyRule::Empty));
    assert_eq!(err.to_string(), "invalid key: key is empty");
}

#[test]
fn the_error_names_the_byte_and_offset() {
    let err = Key::new("user 42").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid key: key has the forbidden byte 0x20 at offset 4 (no whitespace, control bytes or DEL)"
    );
}
