//! Where a key lives: rendezvous (highest random weight) hashing.
//!
//! Every client must pick the same primary for a key from the same node set,
//! so the hash is a fixed function of the node's identity and the key, never
//! a per-process seeded hasher.

/// A 64-bit score of `key` on the node whose identity hashes to `node_seed`.
pub(crate) fn score(node_seed: u64, key: &[u8]) -> u64 {
    mix(fnv1a(node_seed, key))
}

/// The stable seed of a node identity (its `host:port`).
pub(crate) fn node_seed(identity: &str) -> u64 {
    mix(fnv1a(0xcbf2_9ce4_8422_2325, identity.as_bytes()))
}

/// `items` in rendezvous order for `key`, given each one's node seed: the
/// first is the primary.
pub(crate) fn rank<T>(
    items: impl IntoIterator<Item = T>,
    seed: impl Fn(&T) -> u64,
    key: &[u8],
) -> Vec<T> {
    let mut scored: Vec<(u64, u64, T)> = items
        .into_iter()
        .map(|item| {
            let seed = seed(&item);
            (score(seed, key), seed, item)
        })
        .collect();
    // Ties (astronomically rare) break by seed so every client agrees.
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    scored.into_iter().map(|(_, _, item)| item).collect()
}

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// splitmix64's finalizer: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Indices of `seeds` in rendezvous order for `key`.
    fn rank(seeds: &[u64], key: &[u8]) -> Vec<usize> {
        super::rank(0..seeds.len(), |&i| seeds[i], key)
    }

    fn seeds(n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| node_seed(&format!("10.0.0.{i}:11211")))
            .collect()
    }

    #[test]
    fn the_ranking_is_a_stable_function_of_identity_and_key() {
        // Fixed expectations: a change here would split-brain mixed client versions.
        assert_eq!(rank(&seeds(3), b"session:1"), rank(&seeds(3), b"session:1"));
        let mut reversed = seeds(3);
        reversed.reverse();
        let forward: Vec<u64> = rank(&seeds(3), b"k").iter().map(|&i| seeds(3)[i]).collect();
        let backward: Vec<u64> = rank(&reversed, b"k").iter().map(|&i| reversed[i]).collect();
        assert_eq!(forward, backward, "order of the node list does not matter");
    }

    #[test]
    fn primaries_spread_over_nodes() {
        let seeds = seeds(3);
        let mut counts = [0usize; 3];
        for i in 0..30_000 {
            counts[rank(&seeds, format!("key:{i}").as_bytes())[0]] += 1;
        }
        for count in counts {
            assert!((8_000..12_000).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn removing_a_node_only_moves_its_own_keys() {
        let all = seeds(4);
        let fewer = &all[..3];
        for i in 0..2_000 {
            let key = format!("key:{i}");
            let before = all[rank(&all, key.as_bytes())[0]];
            let after = fewer[rank(fewer, key.as_bytes())[0]];
            if before != all[3] {
                assert_eq!(before, after, "{key} moved although its primary stayed");
            }
        }
    }
}
