//! The one stable hash of memha: a fixed function of its input, never a
//! per-process seeded hasher, so every client (and every version) agrees
//! on rendezvous placement, marker keys and trace hashes.

/// A 64-bit score of `key` on the node whose identity hashes to `node_seed`.
pub(crate) fn score(node_seed: u64, key: &[u8]) -> u64 {
    mix(fnv1a(node_seed, key))
}

/// The stable seed of a node identity (its `host:port`).
pub(crate) fn node_seed(identity: &str) -> u64 {
    mix(fnv1a(0xcbf2_9ce4_8422_2325, identity.as_bytes()))
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
