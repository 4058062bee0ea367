//! Label sets of Algorithm 1 (lines 7-17) for a matrix of verifier probabilities: per row, the
//! labels with probability > tau; none -> the top-1 label; more than k -> the k most probable
//! (ties: the lower index, as k rounds of "first maximum"). Comparisons are in f32, as the
//! release's torch code and numpy (NEP 50: a Python float meets a float32 array as float32).

#[allow(clippy::too_many_arguments)]
/// Fills `sets` (rows x width, 0/1) and `neutral` (rows, 0/1). `probs` must hold no NaN (the
/// caller checks; NaN ordering is numpy's business).
pub fn label_sets(
    probs: &[f32],
    width: usize,
    tau: f32,
    k: usize,
    neutral_idx: Option<usize>,
    release_rule: bool,
    sets: &mut [u8],
    neutral: &mut [u8],
) {
    let mut top: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (r, (row, set)) in probs
        .chunks_exact(width)
        .zip(sets.chunks_exact_mut(width))
        .enumerate()
    {
        let mut count = 0;
        for (s, &p) in set.iter_mut().zip(row) {
            let above = p > tau;
            *s = above as u8;
            count += above as usize;
        }
        let keep = if count == 0 { 1 } else { k };
        if (count == 0 || count > k) && keep <= 2 {
            // The common case (top-1 or top-2), in registers: strict `>` keeps the first of
            // equal values, so ties go to the lower index as in the general loop below.
            let (mut v1, mut i1) = (row[0], 0);
            let (mut v2, mut i2) = (f32::NEG_INFINITY, usize::MAX);
            for (j, &p) in row.iter().enumerate().skip(1) {
                if p > v1 {
                    (v2, i2) = (v1, i1);
                    (v1, i1) = (p, j);
                } else if p > v2 {
                    (v2, i2) = (p, j);
                }
            }
            if keep == 1 || i2 != usize::MAX {
                set.fill(0);
                set[i1] = 1;
                if keep == 2 {
                    set[i2] = 1;
                }
                neutral[r] = match neutral_idx {
                    None => 0,
                    Some(n) => (set[n] == 1 && (!release_rule || keep == 1)) as u8,
                };
                continue;
            }
        }
        if count == 0 || count > k {
            // The `keep` most probable, one pass: `top` stays sorted by value, descending, and
            // a later equal value never displaces an earlier one (ties: the lower index).
            top.clear();
            for (j, &p) in row.iter().enumerate() {
                if top.len() == keep && p <= top[keep - 1].0 {
                    continue;
                }
                let at = top.iter().position(|&(v, _)| p > v).unwrap_or(top.len());
                top.insert(at, (p, j));
                top.truncate(keep);
            }
            set.fill(0);
            for &(_, j) in &top {
                set[j] = 1;
            }
            count = keep;
        }
        neutral[r] = match neutral_idx {
            None => 0,
            Some(n) => (set[n] == 1 && (!release_rule || count == 1)) as u8,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_takes_the_lower_index_on_ties() {
        let probs = [
            0.5, 0.9, 0.9, 0.9, 0.05, 0.01, 0.02, 0.03, 0.3, 0.2, 0.1, 0.1,
        ];
        let (mut sets, mut neutral) = ([0u8; 12], [0u8; 3]);
        label_sets(&probs, 4, 0.1, 2, Some(0), true, &mut sets, &mut neutral);
        // 0.1 is not above 0.1 (in f32): the last row keeps two labels.
        assert_eq!(sets, [0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0]);
        assert_eq!(neutral, [0, 1, 0]);
        label_sets(&probs, 4, 0.1, 2, Some(0), false, &mut sets, &mut neutral);
        assert_eq!(neutral, [0, 1, 1]);
    }
}
