//! Validated memcached keys.

use std::fmt;

use bytes::Bytes;

use crate::error::{Error, KeyRule};

/// A memcached key that the protocol accepts: 1 to 250 bytes, none of them
/// whitespace, a control byte or DEL.
///
/// It is the only way to put a key into a [`Command`](crate::Command), so an
/// invalid key can never reach the wire. Cloning is cheap (reference counted).
///
/// ```
/// use memha_proto::Key;
///
/// let key = Key::new("session:4f2a")?;
/// assert_eq!(key.as_bytes(), b"session:4f2a");
/// assert!(Key::new("two words").unwrap_err().is_invalid_key());
/// # Ok::<(), memha_proto::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Bytes);

impl Key {
    /// The longest key memcached accepts, in bytes.
    pub const MAX_LEN: usize = 250;

    /// Validates `key`.
    pub fn new(key: impl Into<Bytes>) -> Result<Key, Error> {
        let key = key.into();
        Self::check(&key)?;
        Ok(Key(key))
    }

    /// Checks `key` against the protocol's rules without keeping it.
    pub fn check(key: &[u8]) -> Result<(), KeyRule> {
        if key.is_empty() {
            return Err(KeyRule::Empty);
        }
        if key.len() > Self::MAX_LEN {
            return Err(KeyRule::TooLong { len: key.len() });
        }
        match key.iter().position(|&b| b <= b' ' || b == 0x7f) {
            Some(position) => Err(KeyRule::ForbiddenByte {
                byte: key[position],
                position,
            }),
            None => Ok(()),
        }
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key's bytes as a cheap clone.
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// The key's length in bytes.
    #[allow(clippy::len_without_is_empty)] // a key is never empty
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<&str> for Key {
    type Error = Error;
    fn try_from(key: &str) -> Result<Key, Error> {
        Key::new(Bytes::copy_from_slice(key.as_bytes()))
    }
}

impl TryFrom<String> for Key {
    type Error = Error;
    fn try_from(key: String) -> Result<Key, Error> {
        Key::new(key)
    }
}

impl TryFrom<&[u8]> for Key {
    type Error = Error;
    fn try_from(key: &[u8]) -> Result<Key, Error> {
        Key::new(Bytes::copy_from_slice(key))
    }
}

impl TryFrom<Vec<u8>> for Key {
    type Error = Error;
    fn try_from(key: Vec<u8>) -> Result<Key, Error> {
        Key::new(key)
    }
}

impl TryFrom<Bytes> for Key {
    type Error = Error;
    fn try_from(key: Bytes) -> Result<Key, Error> {
        Key::new(key)
    }
}

// Keys are often session ids: Debug shows them (they are printable by
// construction) but callers decide whether to log them at all.
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}
