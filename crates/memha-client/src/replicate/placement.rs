//! Where a key lives: rendezvous (highest random weight) hashing, and the
//! placement of a key over the members every decision about it starts from.
//!
//! Every client must pick the same primary for a key from the same node set,
//! so the hash is a fixed function of the node's identity and the key
//! ([`crate::hash`]), never a per-process seeded hasher.

use std::sync::Arc;

use memha_health::NodeState;
use memha_proto::Key;

use super::members::Member;
use crate::hash::score;

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

/// The members ranked for one key: the placement every decision about the
/// key starts from. It borrows the members from a snapshot, so ranking a
/// key touches no reference count.
pub(crate) struct Placement<'a> {
    /// All members in rendezvous order for the key.
    pub(crate) ranked: Vec<&'a Arc<Member>>,
}

impl<'a> Placement<'a> {
    pub(crate) fn of(members: &'a [Arc<Member>], key: &[u8]) -> Placement<'a> {
        Placement {
            ranked: rank(members, |member| member.seed(), key),
        }
    }

    /// The key's primary: the first Up node in rendezvous order.
    pub(crate) fn primary(&self) -> Option<&'a Arc<Member>> {
        self.ranked
            .iter()
            .copied()
            .find(|m| m.state() == NodeState::Up)
    }

    /// Up nodes, in rendezvous order (the primary first).
    pub(crate) fn into_readable(mut self) -> Vec<&'a Arc<Member>> {
        self.ranked.retain(|m| m.state().is_readable());
        self.ranked
    }

    /// Splits the nodes for a write of `key`: the writable ones (Up and
    /// Rejoining) in rendezvous order, and the ones that will miss it.
    /// Down nodes get the key journaled, for their return. Joining nodes
    /// are treated as empty by this client, but another client may already
    /// see one Up and hold copies on it: they miss the write as well.
    pub(crate) fn writable_and_absent(&self, key: &Key) -> WriteTargets<'a> {
        let mut targets = WriteTargets {
            writable: Vec::with_capacity(self.ranked.len()),
            absent: Vec::new(),
        };
        for &member in &self.ranked {
            match member.state() {
                state if state.is_writable() => targets.writable.push(member),
                NodeState::Down => {
                    member.record_missed(key);
                    targets.absent.push(member);
                }
                _ => targets.absent.push(member),
            }
        }
        targets
    }
}

/// Where a write of one key goes, and which nodes miss it from the start.
pub(crate) struct WriteTargets<'a> {
    pub(crate) writable: Vec<&'a Arc<Member>>,
    pub(crate) absent: Vec<&'a Arc<Member>>,
}

impl WriteTargets<'_> {
    /// Whether every node is writable: the steady state.
    pub(crate) fn complete(&self) -> bool {
        self.absent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use crate::hash::node_seed;

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
