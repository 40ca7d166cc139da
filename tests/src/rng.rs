//! A small seedable generator, so a seed replays the same choices: the
//! one every test, benchmark and example of the workspace uses.

/// SplitMix64: fast, good enough for test choices, and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`; `stream` derives independent generators
    /// from one seed (one per task, one for the faults).
    pub fn new(seed: u64, stream: u64) -> Rng {
        // Mixed, not just offset: SplitMix states that differ by a multiple
        // of its increment give the same sequence shifted.
        Rng(mix(mix(seed) ^ mix(stream ^ 0x5851_f42d_4c95_7f2d)))
    }

    /// A seed from the clock, for tests whose choices vary run to run
    /// (print it: `Rng::new(seed, stream)` replays them).
    pub fn seed_from_time() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low) + 1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An index in `0..len` (`len` > 0).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// One of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }
}

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_and_streams_differ() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(7, 1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::new(7, 1).next_u64(), Rng::new(7, 2).next_u64());
        // Streams are not shifted copies of each other.
        let one: Vec<u64> = {
            let mut rng = Rng::new(1, 1);
            (0..64).map(|_| rng.next_u64()).collect()
        };
        let mut two = Rng::new(1, 2);
        assert!((0..64).all(|_| !one.contains(&two.next_u64())));
        let mut rng = Rng::new(1, 0);
        for _ in 0..1000 {
            assert!((3..=5).contains(&rng.between(3, 5)));
        }
    }
}
