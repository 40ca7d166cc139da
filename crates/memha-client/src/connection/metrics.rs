//! Counters of a node connection.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a connection's counters since it was created.
///
/// `writes / requests` and `reads / replies` tell how well requests are
/// batched: each write and read is one system call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionMetrics {
    /// Requests queued for sending.
    pub requests: u64,
    /// Replies decoded and matched to their request.
    pub replies: u64,
    /// Write system calls that sent bytes.
    pub writes: u64,
    /// Read system calls that received bytes.
    pub reads: u64,
    /// TCP connections established.
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Established connections that broke or were closed for a protocol error.
    pub disconnects: u64,
    /// The largest capacity the read buffer reached, in bytes. The decoder
    /// refuses lines longer than [`Limits::max_line_len`] and values larger
    /// than [`Limits::max_value_len`] before buffering them, so this stays
    /// within the read chunk (64 KiB) plus the largest value and its header,
    /// whatever a server sends.
    ///
    /// [`Limits::max_line_len`]: memha_proto::Limits::max_line_len
    /// [`Limits::max_value_len`]: memha_proto::Limits::max_value_len
    pub read_buffer_peak: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) replies: AtomicU64,
    pub(super) writes: AtomicU64,
    pub(super) reads: AtomicU64,
    pub(super) connects: AtomicU64,
    pub(super) connect_failures: AtomicU64,
    pub(super) disconnects: AtomicU64,
    pub(super) read_buffer_peak: AtomicU64,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Raises `counter` to `n` if it is lower.
    pub(super) fn max(counter: &AtomicU64, n: u64) {
        counter.fetch_max(n, Ordering::Relaxed);
    }

    /// The counters, with `requests` counted elsewhere (under the state lock).
    pub(super) fn snapshot(&self, requests: u64) -> ConnectionMetrics {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ConnectionMetrics {
            requests,
            replies: load(&self.replies),
            writes: load(&self.writes),
            reads: load(&self.reads),
            connects: load(&self.connects),
            connect_failures: load(&self.connect_failures),
            disconnects: load(&self.disconnects),
            read_buffer_peak: load(&self.read_buffer_peak),
        }
    }
}
