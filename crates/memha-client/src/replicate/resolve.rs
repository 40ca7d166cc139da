//! Deciding a read across replicas: which copy wins and how the others are repaired.

use bytes::Bytes;

/// One node's copy of an item, as `mg v f t c` returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Copy {
    pub(crate) value: Bytes,
    pub(crate) flags: u32,
    /// Remaining seconds, -1 for none.
    pub(crate) ttl: i64,
    pub(crate) cas: u64,
    /// The server flagged it stale (`X`: invalidated by `md I`).
    pub(crate) server_stale: bool,
}

/// What one node answered to a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeRead {
    Hit(Copy),
    Miss,
    /// Timed out, refused, or any other error: says nothing about the key.
    Failed,
}

impl AsRef<NodeRead> for NodeRead {
    fn as_ref(&self) -> &NodeRead {
        self
    }
}

/// The repair a node needs after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repair {
    /// It missed: add the winner (mode `ME`), never clobbering a newer write.
    Add,
    /// It held another copy: overwrite it only if it still holds that copy (CAS).
    Overwrite { cas: u64 },
    /// It held a copy known to be stale and no trusted node holds one:
    /// delete it, only if it still holds that copy (CAS).
    Delete { cas: u64 },
}

/// The outcome of a read across nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolution {
    /// The index of the winning read, `None` when no node hit.
    pub(crate) winner: Option<usize>,
    /// Per read index, the repair it needs.
    pub(crate) repairs: Vec<(usize, Repair)>,
    /// Whether hits disagreed, or a copy known to be stale was found.
    pub(crate) diverged: bool,
    /// How many copies lost because they were known to be stale.
    pub(crate) stale_lost: usize,
    /// Repairs withheld beside a tombstone (of a delete that may be on
    /// its way): once it has landed or marked the nodes it missed (a
    /// read's recheck), they converge the nodes to the live copy.
    pub(crate) held_back: Vec<(usize, Repair)>,
}

/// TTLs that differ by more than this are a divergence (a missed `touch`);
/// closer ones are just the clock ticking between two replies.
const TTL_SLACK_SECS: i64 = 2;

/// Whether two copies are the same item (value, flags, TTL within slack).
pub(crate) fn same(a: &Copy, b: &Copy) -> bool {
    a.server_stale == b.server_stale
        && a.value == b.value
        && a.flags == b.flags
        && (a.ttl == b.ttl || (a.ttl >= 0 && b.ttl >= 0 && (a.ttl - b.ttl).abs() <= TTL_SLACK_SECS))
}

/// Whether the answers disagree: hits with different copies, or a hit
/// and a miss. Failures say nothing.
pub(crate) fn disagree<R: AsRef<NodeRead>>(reads: &[R]) -> bool {
    let mut first: Option<&Copy> = None;
    let mut missed = false;
    for read in reads {
        match read.as_ref() {
            NodeRead::Hit(copy) => match first {
                None => first = Some(copy),
                Some(first) if !same(first, copy) => return true,
                Some(_) => {}
            },
            NodeRead::Miss => missed = true,
            NodeRead::Failed => {}
        }
    }
    missed && first.is_some()
}

/// Decides a read. `reads` are in rendezvous order; `primary` is the index
/// of the key's primary among them, if it was asked; `marked(i)` says
/// whether a stale marker names read `i`'s node.
///
/// A copy known to be stale (marked, or flagged stale by the server) never
/// wins and is never a repair source. Among the others, the primary's copy
/// wins; without it, the copy most nodes hold (ties go to the node ranked
/// first). When no trusted node holds a copy, there is no winner and the
/// marked copies are deleted (the read answers a miss, or fails when it
/// saw only marked copies). Nodes that failed are left alone.
///
/// A copy the server flags stale on an unmarked node is a tombstone: a
/// delete reached that node. While one is seen, a delete may be on its way
/// to the other nodes, so nothing is written but the deletion of marked
/// copies: an add onto a node the delete already passed (a tombstone, or a
/// node that lacked the key, where a delete leaves nothing) would bring the
/// key back after the delete. The tombstone expires by itself; a later read
/// repairs what is left to repair.
pub(crate) fn resolve<R: AsRef<NodeRead>>(
    reads: &[R],
    primary: Option<usize>,
    marked: impl Fn(usize) -> bool,
) -> Resolution {
    let trusted_hit = |i: usize| match reads[i].as_ref() {
        NodeRead::Hit(copy) if !copy.server_stale && !marked(i) => Some(copy),
        _ => None,
    };
    let tombstone = (0..reads.len())
        .any(|i| matches!(reads[i].as_ref(), NodeRead::Hit(c) if c.server_stale && !marked(i)));
    let winner = primary.filter(|&p| trusted_hit(p).is_some()).or_else(|| {
        (0..reads.len())
            .filter_map(|i| trusted_hit(i).map(|copy| (i, copy)))
            .max_by_key(|&(i, copy)| {
                let votes = (0..reads.len())
                    .filter(|&j| trusted_hit(j).is_some_and(|c| same(c, copy)))
                    .count();
                (votes, std::cmp::Reverse(i))
            })
            .map(|(i, _)| i)
    });
    let marked_hit = |i: usize| matches!(reads[i].as_ref(), NodeRead::Hit(_)) && marked(i);
    let stale_lost = (0..reads.len()).filter(|&i| marked_hit(i)).count();
    let Some(winner) = winner else {
        // No trusted copy: the key is gone; so must the stale copies be.
        let repairs: Vec<(usize, Repair)> = reads
            .iter()
            .enumerate()
            .filter_map(|(i, read)| match read.as_ref() {
                NodeRead::Hit(copy) if marked(i) => Some((i, Repair::Delete { cas: copy.cas })),
                _ => None,
            })
            .collect();
        return Resolution {
            winner: None,
            diverged: !repairs.is_empty(),
            repairs,
            stale_lost,
            held_back: Vec::new(),
        };
    };
    let best = trusted_hit(winner).expect("the winner is a trusted hit");
    let mut diverged = stale_lost > 0;
    let mut repairs: Vec<(usize, Repair)> = reads
        .iter()
        .enumerate()
        .filter_map(|(i, read)| match read.as_ref() {
            NodeRead::Miss => Some((i, Repair::Add)),
            NodeRead::Hit(copy) if !same(copy, best) => {
                diverged = true;
                Some((i, Repair::Overwrite { cas: copy.cas }))
            }
            _ => None,
        })
        .collect();
    let mut held_back = Vec::new();
    if tombstone {
        // A delete may be on its way: only copies known to be stale are
        // repaired now.
        (repairs, held_back) = repairs.into_iter().partition(|&(i, _)| marked(i));
    }
    Resolution {
        winner: Some(winner),
        repairs,
        diverged,
        stale_lost,
        held_back,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(value: &'static str, cas: u64) -> NodeRead {
        NodeRead::Hit(Copy {
            value: Bytes::from_static(value.as_bytes()),
            flags: 0,
            ttl: 100,
            cas,
            server_stale: false,
        })
    }

    fn unmarked(_: usize) -> bool {
        false
    }

    #[test]
    fn all_agree_nothing_to_repair() {
        let r = resolve(&[hit("a", 1), hit("a", 9)], Some(0), unmarked);
        assert_eq!((r.winner, r.repairs.len(), r.diverged), (Some(0), 0, false));
    }

    #[test]
    fn misses_get_an_add_and_failures_are_left_alone() {
        let r = resolve(
            &[NodeRead::Miss, hit("a", 1), NodeRead::Failed],
            Some(0),
            unmarked,
        );
        assert_eq!(r.winner, Some(1));
        assert_eq!(r.repairs, [(0, Repair::Add)]);
        assert!(!r.diverged);
    }

    #[test]
    fn the_primary_wins_over_a_majority() {
        let r = resolve(
            &[hit("new", 1), hit("old", 2), hit("old", 3)],
            Some(0),
            unmarked,
        );
        assert_eq!(r.winner, Some(0));
        assert_eq!(
            r.repairs,
            [
                (1, Repair::Overwrite { cas: 2 }),
                (2, Repair::Overwrite { cas: 3 })
            ]
        );
        assert!(r.diverged);
    }

    #[test]
    fn without_the_primary_the_majority_wins() {
        let r = resolve(
            &[NodeRead::Failed, hit("x", 1), hit("y", 2), hit("y", 3)],
            Some(0),
            unmarked,
        );
        assert_eq!(r.winner, Some(2));
        assert_eq!(r.repairs, [(1, Repair::Overwrite { cas: 1 })]);
    }

    #[test]
    fn ttl_within_slack_is_the_same_copy_but_a_missed_touch_is_not() {
        let with_ttl = |ttl| {
            NodeRead::Hit(Copy {
                value: Bytes::from_static(b"v"),
                flags: 0,
                ttl,
                cas: 1,
                server_stale: false,
            })
        };
        assert!(!resolve(&[with_ttl(100), with_ttl(99)], Some(0), unmarked).diverged);
        assert!(resolve(&[with_ttl(100), with_ttl(40)], Some(0), unmarked).diverged);
        assert!(resolve(&[with_ttl(-1), with_ttl(100)], Some(0), unmarked).diverged);
    }

    #[test]
    fn beside_a_tombstone_only_marked_copies_are_repaired_the_rest_is_held_back() {
        let tombstone = NodeRead::Hit(Copy {
            server_stale: true,
            ..match hit("old", 4) {
                NodeRead::Hit(copy) => copy,
                _ => unreachable!(),
            }
        });
        let r = resolve(
            &[tombstone, hit("new", 1), NodeRead::Miss, hit("older", 3)],
            Some(1),
            |i| i == 3,
        );
        assert_eq!(r.winner, Some(1));
        assert_eq!(r.repairs, [(3, Repair::Overwrite { cas: 3 })]);
        assert_eq!(
            r.held_back,
            [(0, Repair::Overwrite { cas: 4 }), (2, Repair::Add)]
        );
    }

    #[test]
    fn a_marked_copy_loses_to_the_majority_even_on_the_primary() {
        // The primary missed an overwrite while others stored it.
        let r = resolve(
            &[hit("old", 1), hit("new", 2), hit("new", 3)],
            Some(0),
            |i| i == 0,
        );
        assert_eq!(r.winner, Some(1));
        assert_eq!(r.repairs, [(0, Repair::Overwrite { cas: 1 })]);
        assert_eq!((r.diverged, r.stale_lost), (true, 1));
    }

    #[test]
    fn a_marked_copy_of_a_deleted_key_is_deleted_not_spread() {
        let r = resolve(
            &[hit("old", 4), NodeRead::Miss, NodeRead::Miss],
            Some(0),
            |i| i == 0,
        );
        assert_eq!(r.winner, None);
        assert_eq!(r.repairs, [(0, Repair::Delete { cas: 4 })]);
        assert!(r.diverged);
    }

    #[test]
    fn a_server_stale_copy_is_never_a_source() {
        let NodeRead::Hit(mut copy) = hit("old", 5) else {
            unreachable!()
        };
        copy.server_stale = true;
        let r = resolve(&[NodeRead::Hit(copy), NodeRead::Miss], Some(0), unmarked);
        assert_eq!(r.winner, None);
        assert!(r.repairs.is_empty());
    }

    #[test]
    fn while_a_tombstone_is_seen_nothing_is_copied() {
        let NodeRead::Hit(mut tombstone) = hit("old", 6) else {
            unreachable!()
        };
        tombstone.server_stale = true;
        let reads = [
            NodeRead::Hit(tombstone.clone()),
            hit("old", 7),
            NodeRead::Miss,
        ];
        // A delete on its way (or a late one): answer the live copy, copy it nowhere.
        let r = resolve(&reads, Some(0), unmarked);
        assert_eq!((r.winner, r.repairs.len()), (Some(1), 0));
        // A tombstone on a node that missed a later write is only stale.
        let r = resolve(&reads, Some(1), |i| i == 0);
        assert_eq!(r.winner, Some(1));
        assert_eq!(
            r.repairs,
            [(0, Repair::Overwrite { cas: 6 }), (2, Repair::Add)]
        );
        // Only tombstones and misses: deleted.
        let r = resolve(
            &[NodeRead::Hit(tombstone), NodeRead::Miss],
            Some(0),
            unmarked,
        );
        assert_eq!((r.winner, r.repairs.len()), (None, 0));
    }

    #[test]
    fn disagreement_is_a_hit_and_a_miss_or_two_copies() {
        assert!(!disagree(&[hit("a", 1), hit("a", 2), NodeRead::Failed]));
        assert!(disagree(&[hit("a", 1), NodeRead::Miss]));
        assert!(disagree(&[hit("a", 1), hit("b", 2)]));
        assert!(!disagree(&[NodeRead::Miss, NodeRead::Failed]));
    }

    #[test]
    fn all_missed_is_a_miss() {
        let r = resolve(&[NodeRead::Miss, NodeRead::Failed], Some(0), unmarked);
        assert_eq!(r.winner, None);
        assert!(r.repairs.is_empty());
    }
}
