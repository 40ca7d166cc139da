//! What operations return: items and typed outcomes.

use std::time::Duration;

use bytes::Bytes;

use crate::Ttl;

/// An item read from memcached: its value with the flags, remaining
/// lifetime and (for [`gets`](crate::Client::gets)) CAS token that came
/// back in the same round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Item {
    /// The value, byte-exact as it was stored.
    pub value: Bytes,
    /// The client flags stored with the value.
    pub flags: u32,
    /// How long the item has left to live, `None` if it never expires.
    pub expires_in: Option<Duration>,
    /// The CAS token, when it was asked for.
    pub cas: Option<u64>,
}

impl Item {
    /// The remaining lifetime as a [`Ttl`], to store the item elsewhere with
    /// the same expiry.
    pub fn ttl(&self) -> Ttl {
        self.expires_in.map_or(Ttl::Never, Ttl::After)
    }
}

/// The outcome of a store (`set`, `add`, `replace`, `append`, `prepend`, `cas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOutcome {
    /// The value was stored.
    Stored,
    /// The condition failed: `add` of a present key, `replace`, `append` or
    /// `prepend` of an absent one.
    NotStored,
    /// `cas`: the item changed since its token was read.
    Exists,
    /// `cas`: the item is gone.
    NotFound,
}

impl StoreOutcome {
    /// True when the value was stored.
    pub fn is_stored(self) -> bool {
        self == StoreOutcome::Stored
    }
}

/// The outcome of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeleteOutcome {
    /// The item was deleted.
    Deleted,
    /// There was no such item.
    NotFound,
}

/// The outcome of a touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TouchOutcome {
    /// The item's lifetime was updated.
    Touched,
    /// There was no such item.
    NotFound,
}
