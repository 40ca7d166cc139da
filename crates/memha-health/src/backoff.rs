//! Jittered exponential backoff.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use crate::config::HealthConfig;

/// Exponential backoff with jitter: the delays a failing node is probed at.
///
/// The nominal delay starts at `initial` and is multiplied by `factor` after
/// each use up to `max`; each delay handed out is the nominal one shortened
/// by a random fraction of at most `jitter`, so it lies in
/// `[nominal * (1 - jitter), nominal]`.
///
/// ```
/// use memha_health::Backoff;
/// use std::time::Duration;
///
/// let mut backoff = Backoff::new(Duration::from_millis(100), 1.5, Duration::from_secs(3), 0.0);
/// let delays: Vec<_> = (0..3).map(|_| backoff.next_delay()).collect();
/// assert_eq!(delays, [Duration::from_millis(100), Duration::from_millis(150), Duration::from_millis(225)]);
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    factor: f64,
    max: Duration,
    jitter: f64,
    nominal: Duration,
    rng: SplitMix64,
}

impl Backoff {
    /// A backoff from `initial` growing by `factor` to `max`, with `jitter`
    /// (0 to 1) of each delay random, seeded from the OS's randomness.
    ///
    /// Values are clamped as in [`HealthConfig`].
    pub fn new(initial: Duration, factor: f64, max: Duration, jitter: f64) -> Self {
        Self::with_seed(initial, factor, max, jitter, random_seed(&()))
    }

    /// Like [`new`](Self::new) with a fixed seed: the same seed gives the
    /// same delays.
    pub fn with_seed(
        initial: Duration,
        factor: f64,
        max: Duration,
        jitter: f64,
        seed: u64,
    ) -> Self {
        let config = HealthConfig::default()
            .backoff(initial, factor, max)
            .jitter(jitter)
            .normalized();
        Backoff::from_config(&config, seed)
    }

    pub(crate) fn from_config(config: &HealthConfig, seed: u64) -> Self {
        Backoff {
            initial: config.backoff_initial,
            factor: config.backoff_factor,
            max: config.backoff_max,
            jitter: config.jitter,
            nominal: config.backoff_initial,
            rng: SplitMix64(seed),
        }
    }

    /// The next delay; grows the nominal delay for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal;
        self.nominal = self.nominal.mul_f64(self.factor).min(self.max);
        self.jittered(nominal)
    }

    /// The nominal delay the next [`next_delay`](Self::next_delay) is drawn from.
    pub fn peek_nominal(&self) -> Duration {
        self.nominal
    }

    /// Starts over from the initial delay.
    pub fn reset(&mut self) {
        self.nominal = self.initial;
    }

    /// `delay` shortened by a random fraction of at most the jitter.
    pub fn jittered(&mut self, delay: Duration) -> Duration {
        delay.mul_f64(1.0 - self.jitter * self.rng.next_f64())
    }
}

/// A seed from the process's random hasher keys and `value`.
pub(crate) fn random_seed(value: &impl Hash) -> u64 {
    RandomState::new().hash_one(value)
}

/// A tiny, fast, statistically sound generator (Steele, Lea, Flood 2014).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn nominal_sequence_grows_by_factor_to_the_cap() {
        let mut backoff = Backoff::with_seed(100 * MS, 1.5, 3000 * MS, 0.0, 7);
        let delays: Vec<u128> = (0..12).map(|_| backoff.next_delay().as_micros()).collect();
        assert_eq!(
            delays,
            [
                100_000, 150_000, 225_000, 337_500, 506_250, 759_375, 1_139_062, 1_708_593,
                2_562_890, 3_000_000, 3_000_000, 3_000_000
            ]
        );
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::with_seed(100 * MS, 2.0, 1000 * MS, 0.0, 1);
        for _ in 0..5 {
            backoff.next_delay();
        }
        assert_eq!(backoff.peek_nominal(), 1000 * MS);
        backoff.reset();
        assert_eq!(backoff.next_delay(), 100 * MS);
        assert_eq!(backoff.next_delay(), 200 * MS);
    }

    #[test]
    fn jitter_stays_within_bounds_and_spreads() {
        for seed in 0..50 {
            let mut backoff = Backoff::with_seed(100 * MS, 1.5, 3000 * MS, 0.2, seed);
            let mut reference = Backoff::with_seed(100 * MS, 1.5, 3000 * MS, 0.0, seed);
            for _ in 0..20 {
                let nominal = reference.next_delay();
                let delay = backoff.next_delay();
                assert!(delay <= nominal, "{delay:?} > {nominal:?}");
                assert!(
                    delay >= nominal.mul_f64(0.8),
                    "{delay:?} < 0.8 * {nominal:?}"
                );
            }
        }
        // Jitter actually varies the delays: 1000 draws of a 1 s delay cover
        // most of [800 ms, 1000 ms] and average near 900 ms.
        let mut backoff = Backoff::with_seed(100 * MS, 1.5, 3000 * MS, 0.2, 99);
        let draws: Vec<Duration> = (0..1000).map(|_| backoff.jittered(1000 * MS)).collect();
        let min = draws.iter().min().unwrap();
        let max = draws.iter().max().unwrap();
        assert!(*min < 810 * MS && *max > 990 * MS, "{min:?}..{max:?}");
        let mean = draws.iter().sum::<Duration>() / 1000;
        assert!(mean > 880 * MS && mean < 920 * MS, "{mean:?}");
    }

    #[test]
    fn same_seed_same_delays_other_seed_other_delays() {
        let run = |seed| {
            let mut b = Backoff::with_seed(100 * MS, 1.5, 3000 * MS, 0.5, seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        let mut backoff = Backoff::with_seed(Duration::ZERO, 0.5, Duration::ZERO, 7.0, 5);
        // initial 1 ms, factor 1, cap 1 ms, jitter 1: delays in [0, 1 ms].
        for _ in 0..10 {
            assert!(backoff.next_delay() <= MS);
        }
        assert_eq!(backoff.peek_nominal(), MS);
    }
}
