//! Item lifetimes and their mapping to memcached's expiration time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long an item lives.
///
/// memcached reads an expiration time up to 30 days as seconds from now and
/// anything larger as a Unix time; [`Ttl::exptime`] picks the right form, so
/// a `Ttl` of 60 days or a point in time 2 hours away both mean what they say.
///
/// ```
/// use std::time::Duration;
/// use memha_client::Ttl;
///
/// assert_eq!(Ttl::Never.exptime(), 0);
/// assert_eq!(Ttl::seconds(90).exptime(), 90);
/// assert_eq!(Ttl::from(Duration::from_millis(1500)).exptime(), 2); // rounded up
/// assert!(Ttl::After(Duration::from_secs(60 * 86_400)).exptime() > 1_700_000_000); // a Unix time
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Ttl {
    /// The item never expires (it may still be evicted).
    #[default]
    Never,
    /// The item expires this long from now. Sub-second parts round up to
    /// the next whole second; [`Duration::ZERO`] expires the item at once.
    After(Duration),
    /// The item expires at this time; a time in the past expires it at once.
    At(SystemTime),
}

impl Ttl {
    /// The longest expiration memcached reads as relative seconds: 30 days.
    pub const MAX_RELATIVE_SECS: u64 = 30 * 24 * 60 * 60;

    /// Expires `secs` seconds from now; 0 expires the item at once (unlike
    /// memcached's raw exptime, where 0 means never: use [`Ttl::Never`]).
    pub fn seconds(secs: u32) -> Ttl {
        Ttl::After(Duration::from_secs(u64::from(secs)))
    }

    /// The expiration time to send to memcached, computed against the local
    /// clock now: 0 for never, -1 for already expired, seconds from now up to
    /// 30 days, a Unix time beyond.
    pub fn exptime(&self) -> i64 {
        self.exptime_at(SystemTime::now())
    }

    /// The lifetime an item has left, as memcached's `t` flag reports it:
    /// -1 for none, else seconds.
    pub fn from_remaining(secs: i64) -> Ttl {
        match secs {
            -1 => Ttl::Never,
            ..=0 => Ttl::After(Duration::ZERO),
            secs => Ttl::After(Duration::from_secs(secs.unsigned_abs())),
        }
    }

    /// [`exptime`](Self::exptime) against a given "now".
    pub fn exptime_at(&self, now: SystemTime) -> i64 {
        let remaining = match *self {
            Ttl::Never => return 0,
            Ttl::After(after) => after,
            Ttl::At(at) => match at.duration_since(now) {
                Ok(remaining) => remaining,
                Err(_) => return -1,
            },
        };
        if remaining.is_zero() {
            return -1;
        }
        let secs = remaining
            .as_secs()
            .saturating_add(u64::from(remaining.subsec_nanos() > 0));
        if secs <= Self::MAX_RELATIVE_SECS {
            return secs as i64;
        }
        let now_unix = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        i64::try_from(now_unix.saturating_add(secs)).unwrap_or(i64::MAX)
    }
}

impl From<Duration> for Ttl {
    fn from(after: Duration) -> Ttl {
        Ttl::After(after)
    }
}

impl From<SystemTime> for Ttl {
    fn from(at: SystemTime) -> Ttl {
        Ttl::At(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn relative_up_to_thirty_days() {
        assert_eq!(Ttl::Never.exptime_at(now()), 0);
        assert_eq!(Ttl::seconds(1).exptime_at(now()), 1);
        assert_eq!(Ttl::seconds(0).exptime_at(now()), -1);
        assert_eq!(
            Ttl::After(Duration::from_millis(1)).exptime_at(now()),
            1,
            "a sub-second TTL must not become 0 (never)"
        );
        let thirty_days = Ttl::MAX_RELATIVE_SECS;
        assert_eq!(
            Ttl::After(Duration::from_secs(thirty_days)).exptime_at(now()),
            thirty_days as i64
        );
    }

    #[test]
    fn absolute_beyond_thirty_days() {
        let secs = Ttl::MAX_RELATIVE_SECS + 1;
        assert_eq!(
            Ttl::After(Duration::from_secs(secs)).exptime_at(now()),
            1_800_000_000 + secs as i64
        );
        let far = now() + Duration::from_secs(40 * 86_400);
        assert_eq!(Ttl::At(far).exptime_at(now()), 1_800_000_000 + 40 * 86_400);
    }

    #[test]
    fn points_in_time() {
        assert_eq!(
            Ttl::At(now() + Duration::from_secs(7200)).exptime_at(now()),
            7200
        );
        assert_eq!(Ttl::At(now()).exptime_at(now()), -1);
        assert_eq!(
            Ttl::At(now() - Duration::from_secs(5)).exptime_at(now()),
            -1
        );
    }
}
