//! Thresholds and probe schedule.

use std::time::Duration;

/// Health thresholds and the probe schedule.
///
/// ```
/// use memha_health::HealthConfig;
/// use std::time::Duration;
///
/// let config = HealthConfig::default()
///     .timeout_threshold(5)
///     .up_interval(Duration::from_secs(2));
/// assert_eq!(config.timeout_threshold, 5);
/// assert_eq!(config.backoff_max, Duration::from_secs(3));
/// ```
///
/// Out-of-range values are clamped when used: a threshold of at least 1, a
/// factor of at least 1, a jitter between 0 and 1, intervals of at least 1 ms
/// and a cap no smaller than the initial delay.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HealthConfig {
    /// Consecutive timeouts (or failures) that mark a node down (default 3).
    /// A refused or reset connection marks it down at once.
    pub timeout_threshold: u32,
    /// How often an Up node is probed (default 5 s).
    pub up_interval: Duration,
    /// The first delay between probes of a Down, Joining or Rejoining node,
    /// or of an Up node that just failed (default 100 ms).
    pub backoff_initial: Duration,
    /// How much each following delay grows (default 1.5).
    pub backoff_factor: f64,
    /// The longest delay between probes of a failing node (default 3 s).
    pub backoff_max: Duration,
    /// How much of each delay is random: a delay `d` becomes a uniform
    /// value in `[d * (1 - jitter), d]` (default 0.2). Jitter only ever
    /// shortens delays, so `up_interval` and `backoff_max` are upper bounds.
    pub jitter: f64,
    /// How long the rejoin hook may take before the attempt counts as failed
    /// and is retried (default 60 s).
    pub rejoin_timeout: Duration,
    /// The first hold-down of a flapping node (default 1 s; zero turns
    /// damping off). A node that goes Down again less than
    /// [`flap_hold_max`](Self::flap_hold_max) after it returned Up is
    /// flapping (it answers probes but not its traffic, say): it stays Down
    /// at least this long, whatever its probes answer, doubled at each
    /// further flap. The first Down of a node that had been Up longer is
    /// not held: a blip recovers at the next probe.
    pub flap_hold_initial: Duration,
    /// The longest hold-down, and how long a node must stay Up for its
    /// flaps to be forgotten (default 30 s).
    pub flap_hold_max: Duration,
}

impl HealthConfig {
    /// The defaults: 3 timeouts, probes every 5 s when up, backoff from
    /// 100 ms by 1.5x to 3 s, jitter 0.2, rejoin timeout 60 s, flapping
    /// nodes held down from 1 s to 30 s.
    pub const DEFAULT: HealthConfig = HealthConfig {
        timeout_threshold: 3,
        up_interval: Duration::from_secs(5),
        backoff_initial: Duration::from_millis(100),
        backoff_factor: 1.5,
        backoff_max: Duration::from_secs(3),
        jitter: 0.2,
        rejoin_timeout: Duration::from_secs(60),
        flap_hold_initial: Duration::from_secs(1),
        flap_hold_max: Duration::from_secs(30),
    };

    /// Sets [`timeout_threshold`](#structfield.timeout_threshold).
    pub fn timeout_threshold(mut self, threshold: u32) -> Self {
        self.timeout_threshold = threshold;
        self
    }

    /// Sets [`up_interval`](#structfield.up_interval).
    pub fn up_interval(mut self, interval: Duration) -> Self {
        self.up_interval = interval;
        self
    }

    /// Sets the backoff of failing nodes: first delay, growth factor, cap.
    pub fn backoff(mut self, initial: Duration, factor: f64, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_factor = factor;
        self.backoff_max = max;
        self
    }

    /// Sets [`jitter`](#structfield.jitter).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets [`rejoin_timeout`](#structfield.rejoin_timeout).
    pub fn rejoin_timeout(mut self, timeout: Duration) -> Self {
        self.rejoin_timeout = timeout;
        self
    }

    /// Sets the hold-down of flapping nodes: the first, and the longest
    /// (see [`flap_hold_initial`](Self::flap_hold_initial)). A zero
    /// `initial` turns damping off.
    pub fn flap_hold(mut self, initial: Duration, max: Duration) -> Self {
        self.flap_hold_initial = initial;
        self.flap_hold_max = max;
        self
    }

    /// The configuration with every value clamped into range.
    pub(crate) fn normalized(&self) -> HealthConfig {
        const MIN: Duration = Duration::from_millis(1);
        let initial = self.backoff_initial.max(MIN);
        HealthConfig {
            timeout_threshold: self.timeout_threshold.max(1),
            up_interval: self.up_interval.max(MIN),
            backoff_initial: initial,
            backoff_factor: if self.backoff_factor >= 1.0 && self.backoff_factor.is_finite() {
                self.backoff_factor
            } else {
                1.0
            },
            backoff_max: self.backoff_max.max(initial),
            jitter: if self.jitter.is_nan() {
                0.0
            } else {
                self.jitter.clamp(0.0, 1.0)
            },
            rejoin_timeout: self.rejoin_timeout.max(MIN),
            flap_hold_initial: self.flap_hold_initial,
            flap_hold_max: self.flap_hold_max.max(self.flap_hold_initial),
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig::DEFAULT
    }
}
