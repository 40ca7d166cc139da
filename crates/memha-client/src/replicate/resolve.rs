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
}

/// The outcome of a read across nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolution {
    /// The index of the winning read, `None` when no node hit.
    pub(crate) winner: Option<usize>,
    /// Per read index, the repair it needs.
    pub(crate) repairs: Vec<(usize, Repair)>,
    /// Whether hits disagreed.
    pub(crate) diverged: bool,
}

/// TTLs that differ by more than this are a divergence (a missed `touch`);
/// closer ones are just the clock ticking between two replies.
const TTL_SLACK_SECS: i64 = 2;

fn same(a: &Copy, b: &Copy) -> bool {
    a.value == b.value
        && a.flags == b.flags
        && (a.ttl == b.ttl || (a.ttl >= 0 && b.ttl >= 0 && (a.ttl - b.ttl).abs() <= TTL_SLACK_SECS))
}

/// Decides a read. `reads` are in rendezvous order; `primary` is the index
/// of the key's primary among them, if it was asked.
///
/// The primary's copy wins; without it, the copy most nodes hold (ties go to
/// the node ranked first). Nodes that failed are left alone.
pub(crate) fn resolve<R: AsRef<NodeRead>>(reads: &[R], primary: Option<usize>) -> Resolution {
    let hit = |i: usize| match reads[i].as_ref() {
        NodeRead::Hit(copy) => Some(copy),
        _ => None,
    };
    let winner = primary.filter(|&p| hit(p).is_some()).or_else(|| {
        (0..reads.len())
            .filter_map(|i| hit(i).map(|copy| (i, copy)))
            .max_by_key(|&(i, copy)| {
                let votes = reads
                    .iter()
                    .filter(|r| matches!(r.as_ref(), NodeRead::Hit(c) if same(c, copy)))
                    .count();
                (votes, std::cmp::Reverse(i))
            })
            .map(|(i, _)| i)
    });
    let Some(winner) = winner else {
        return Resolution {
            winner: None,
            repairs: Vec::new(),
            diverged: false,
        };
    };
    let best = hit(winner).expect("the winner hit");
    let mut diverged = false;
    let repairs = reads
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
    Resolution {
        winner: Some(winner),
        repairs,
        diverged,
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
        })
    }

    #[test]
    fn all_agree_nothing_to_repair() {
        let r = resolve(&[hit("a", 1), hit("a", 9)], Some(0));
        assert_eq!((r.winner, r.repairs.len(), r.diverged), (Some(0), 0, false));
    }

    #[test]
    fn misses_get_an_add_and_failures_are_left_alone() {
        let r = resolve(&[NodeRead::Miss, hit("a", 1), NodeRead::Failed], Some(0));
        assert_eq!(r.winner, Some(1));
        assert_eq!(r.repairs, [(0, Repair::Add)]);
        assert!(!r.diverged);
    }

    #[test]
    fn the_primary_wins_over_a_majority() {
        let r = resolve(&[hit("new", 1), hit("old", 2), hit("old", 3)], Some(0));
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
            })
        };
        assert!(!resolve(&[with_ttl(100), with_ttl(99)], Some(0)).diverged);
        assert!(resolve(&[with_ttl(100), with_ttl(40)], Some(0)).diverged);
        assert!(resolve(&[with_ttl(-1), with_ttl(100)], Some(0)).diverged);
    }

    #[test]
    fn all_missed_is_a_miss() {
        let r = resolve(&[NodeRead::Miss, NodeRead::Failed], Some(0));
        assert_eq!(r.winner, None);
        assert!(r.repairs.is_empty());
    }
}
