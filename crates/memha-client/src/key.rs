//! Turning what callers pass as keys into validated [`Key`]s.

use bytes::Bytes;
pub use memha_proto::Key;

use crate::Error;

/// Anything an operation accepts as a key: text, bytes, or a [`Key`]
/// validated earlier.
///
/// Validation happens before anything is sent: an invalid key fails the
/// operation with [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey).
pub trait IntoKey {
    /// Validates the key.
    fn into_key(self) -> Result<Key, Error>;
}

impl IntoKey for Key {
    fn into_key(self) -> Result<Key, Error> {
        Ok(self)
    }
}

impl IntoKey for &Key {
    fn into_key(self) -> Result<Key, Error> {
        Ok(self.clone())
    }
}

macro_rules! into_key_via_try_from {
    ($($ty:ty),*) => {$(
        impl IntoKey for $ty {
            fn into_key(self) -> Result<Key, Error> {
                Key::try_from(self).map_err(Error::invalid_key)
            }
        }
    )*};
}
into_key_via_try_from!(&str, String, &[u8], Vec<u8>, Bytes);

impl IntoKey for &String {
    fn into_key(self) -> Result<Key, Error> {
        self.as_str().into_key()
    }
}

impl<const N: usize> IntoKey for &[u8; N] {
    fn into_key(self) -> Result<Key, Error> {
        self.as_slice().into_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn validates() {
        assert_eq!("a:b".into_key().unwrap().as_bytes(), b"a:b");
        assert_eq!(b"bytes".into_key().unwrap().as_bytes(), b"bytes");
        for bad in ["", "two words", "line\r\nbreak"] {
            assert_eq!(bad.into_key().unwrap_err().kind(), ErrorKind::InvalidKey);
        }
        assert_eq!(
            "x".repeat(251).into_key().unwrap_err().kind(),
            ErrorKind::InvalidKey
        );
    }
}
