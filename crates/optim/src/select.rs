//! Choosing the elements to prune in a period: the lowest-scoring ones, globally, under
//! the rule that every group keeps at least D elements and a multiple of D, with the
//! realized count equal to the requested one whenever some choice allows it.
//!
//! A group's pruned count moves in *chunks*: its first chunk is `n mod D` elements when
//! that is not zero (so that the kept count becomes a multiple of D), then D at a time,
//! up to `n - D`. Walking the candidates in score order, a group's next chunk (its
//! lowest not-yet-chosen elements) is taken when its last element is reached, provided
//! the count still to choose stays reachable with the other groups' chunks; otherwise
//! the walk goes on to the next-lowest candidates elsewhere.

/// Where one group stands: its size, the divisor D and how many elements are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupQuota {
    /// Elements of the group.
    pub num_elements: usize,
    /// D: the kept count must be a multiple of D and at least D.
    pub divisible: usize,
    /// Elements chosen so far.
    pub chosen: usize,
    /// The most elements the group may lose under the cap on a group's removed share
    /// (`max_group_sparsity`; `usize::MAX`: no cap).
    pub cap: usize,
}

impl GroupQuota {
    /// A group of `num_elements` with divisor `divisible`, nothing chosen, losing at most
    /// `floor(max_share * num_elements)` elements (`max_share` in (0, 1]).
    pub fn new(num_elements: usize, divisible: usize, max_share: f64) -> GroupQuota {
        let cap = (max_share.clamp(0.0, 1.0) * num_elements as f64).floor() as usize;
        GroupQuota { num_elements, divisible, chosen: 0, cap }
    }

    /// The most elements the group may lose: it keeps at least D (none goes when it has
    /// fewer than D), and loses at most its cap.
    pub fn max_pruned(&self) -> usize {
        self.num_elements.saturating_sub(self.divisible).min(self.cap)
    }

    fn remainder(&self) -> usize {
        self.num_elements % self.divisible
    }

    /// Whether every further chunk is D elements (the kept count is already a multiple of D).
    fn aligned(&self) -> bool {
        self.chosen > 0 || self.remainder() == 0
    }

    /// The size of the next chunk, if the group may lose more.
    pub fn next_chunk(&self) -> Option<usize> {
        let chunk = if self.aligned() { self.divisible } else { self.remainder() };
        (self.chosen + chunk <= self.max_pruned()).then_some(chunk)
    }
}

/// Whether exactly `count` more elements can be chosen from groups in state `groups`.
/// All groups share the same D. Exact: a knapsack over the groups whose first chunk is
/// not D (each brings its remainder and then room for D-chunks), the aligned groups
/// contributing any multiple of D up to their room.
pub fn feasible(groups: &[GroupQuota], count: usize) -> bool {
    let Some(d) = groups.first().map(|g| g.divisible) else {
        return count == 0;
    };
    let mut aligned_room = 0usize;
    let mut unaligned = Vec::new();
    for g in groups {
        // Room for whole D-chunks only (a cap need not leave a multiple of D).
        if g.aligned() {
            aligned_room += g.max_pruned().saturating_sub(g.chosen) / d * d;
        } else if g.remainder() <= g.max_pruned() {
            unaligned.push((g.remainder(), (g.max_pruned() - g.remainder()) / d * d));
        }
    }
    if unaligned.is_empty() {
        return count.is_multiple_of(d) && count <= aligned_room;
    }
    // best[s]: the most D-chunk room reachable when the first chunks taken sum to s.
    let mut best: Vec<Option<usize>> = vec![None; count + 1];
    best[0] = Some(0);
    for &(first, room) in &unaligned {
        for s in (first..=count).rev() {
            if let Some(b) = best[s - first] {
                let candidate = b + room;
                if best[s].is_none_or(|cur| cur < candidate) {
                    best[s] = Some(candidate);
                }
            }
        }
    }
    best.iter().enumerate().any(|(s, b)| b.is_some_and(|room| (count - s).is_multiple_of(d) && count - s <= aligned_room + room))
}

/// The largest count not above `count` that can be chosen exactly.
pub fn largest_feasible(groups: &[GroupQuota], count: usize) -> usize {
    (0..=count).rev().find(|&c| feasible(groups, c)).unwrap_or(0)
}

/// The outcome of one period's choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The chosen elements as (group position, element index).
    pub elements: Vec<(usize, usize)>,
    /// The count asked for.
    pub requested: usize,
}

/// Chooses `requested` more elements (or the largest feasible count below it) among
/// those not yet chosen, lowest `scores` first; `final_remaining` (>= `requested`) is
/// what the schedule still has to choose in all, kept reachable by every chunk taken.
/// Updates `groups` and `chosen`.
pub fn select(
    scores: &[Vec<f64>],
    chosen: &mut [Vec<bool>],
    groups: &mut [GroupQuota],
    requested: usize,
    final_remaining: usize,
) -> Selection {
    let mut remaining = largest_feasible(groups, requested);
    let mut final_remaining = final_remaining.max(remaining);
    let keep_final = feasible(groups, final_remaining);
    let mut order: Vec<(usize, usize)> = Vec::new();
    for (g, s) in scores.iter().enumerate() {
        order.extend((0..s.len()).filter(|&i| !chosen[g][i]).map(|i| (g, i)));
    }
    order.sort_by(|a, b| scores[a.0][a.1].total_cmp(&scores[b.0][b.1]).then(a.cmp(b)));

    let mut elements = Vec::new();
    while remaining > 0 {
        let mut progress = false;
        let mut pending: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
        let mut stopped = vec![false; groups.len()];
        for &(g, i) in &order {
            if chosen[g][i] || stopped[g] {
                continue;
            }
            let Some(chunk) = groups[g].next_chunk() else {
                stopped[g] = true;
                continue;
            };
            pending[g].push(i);
            if pending[g].len() < chunk {
                continue;
            }
            let mut accepted = false;
            if chunk <= remaining {
                groups[g].chosen += chunk;
                accepted = feasible(groups, remaining - chunk) && (!keep_final || feasible(groups, final_remaining - chunk));
                if !accepted {
                    groups[g].chosen -= chunk;
                }
            }
            if accepted {
                for &e in &pending[g] {
                    chosen[g][e] = true;
                    elements.push((g, e));
                }
                pending[g].clear();
                remaining -= chunk;
                final_remaining -= chunk;
                progress = true;
                if remaining == 0 {
                    break;
                }
            } else {
                // This group waits for the next walk; lower candidates elsewhere go first.
                stopped[g] = true;
            }
        }
        if !progress {
            break;
        }
    }
    Selection { elements, requested }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(n: usize, d: usize) -> GroupQuota {
        GroupQuota { num_elements: n, divisible: d, chosen: 0, cap: usize::MAX }
    }

    #[test]
    fn feasibility_is_exact_for_unaligned_groups() {
        // 12 elements, D=4: prunes 0, 4 or 8. 10 elements: 0, 2 or 6.
        let groups = [quota(12, 4), quota(10, 4)];
        let reachable: Vec<usize> = (0..=20).filter(|&c| feasible(&groups, c)).collect();
        // 12 needs 12 from one group or 8+4 / 6+6: none is allowed.
        assert_eq!(reachable, vec![0, 2, 4, 6, 8, 10, 14]);
        assert_eq!(largest_feasible(&groups, 11), 10);
        // Fewer elements than D: nothing can go.
        assert!(!feasible(&[quota(3, 4)], 1));
        // D=1: anything up to n-1 per group.
        assert_eq!((0..10).filter(|&c| feasible(&[quota(4, 1), quota(3, 1)], c)).count(), 6);
    }

    #[test]
    fn takes_next_lowest_elsewhere_when_a_chunk_breaks_the_rule() {
        // Group 0 (10 elements, D=4) has the lowest scores but must lose 2 or 6; group 1
        // (8 elements) loses 4 at a time. Asking for 4: group 0's first chunk (2) would
        // leave 2, which group 1 cannot give, so group 1's four lowest are taken.
        let scores = vec![(0..10).map(|i| i as f64 * 0.01).collect::<Vec<_>>(), (0..8).map(|i| 1.0 + i as f64).collect()];
        let mut chosen = vec![vec![false; 10], vec![false; 8]];
        let mut groups = vec![quota(10, 4), quota(8, 4)];
        let s = select(&scores, &mut chosen, &mut groups, 4, 4);
        let mut got = s.elements.clone();
        got.sort();
        assert_eq!(got, vec![(1, 0), (1, 1), (1, 2), (1, 3)]);
        // Asking for 6: group 0's six lowest.
        let mut chosen = vec![vec![false; 10], vec![false; 8]];
        let mut groups = vec![quota(10, 4), quota(8, 4)];
        let s = select(&scores, &mut chosen, &mut groups, 6, 6);
        assert_eq!(s.elements, (0..6).map(|i| (0, i)).collect::<Vec<_>>());
        assert_eq!(groups[0].chosen, 6);
    }

    #[test]
    fn global_ranking_with_divisor_one() {
        let scores = vec![vec![0.5, 0.1, 0.9], vec![0.2, 0.05, 0.3, 0.7]];
        let mut chosen = vec![vec![false; 3], vec![false; 4]];
        let mut groups = vec![quota(3, 1), quota(4, 1)];
        let s = select(&scores, &mut chosen, &mut groups, 4, 4);
        assert_eq!(s.elements, vec![(1, 1), (0, 1), (1, 0), (1, 2)]);
        // Every group keeps one element: group 1 is now at its limit of 3.
        let s = select(&scores, &mut chosen, &mut groups, 2, 2);
        assert_eq!(s.elements, vec![(0, 0)], "only group 0 has room left: {s:?}");
    }
}
