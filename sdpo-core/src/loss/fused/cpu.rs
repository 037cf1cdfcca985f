//! The fused loss over a batch of rows on the CPU: rows in parallel (rayon),
//! read in place from the backend's buffers (any layout whose last dimension
//! is contiguous), results in plain vectors.

use rayon::prelude::*;

use super::row::{self, Kind, RowLoss, Saved, SavedRow, Scratch, STATS};

/// Rows of a `[.., V]` tensor, read in place from the backend's buffer.
#[derive(Debug, Clone)]
pub struct HostRows<'a> {
    rows: Vec<&'a [f32]>,
    len: usize,
}

impl<'a> HostRows<'a> {
    /// The rows of a strided tensor over `data` (shape, strides in elements,
    /// start offset). `None` when the last dimension is not contiguous, a
    /// stride is negative, or the layout reaches outside `data`.
    pub fn strided(
        data: &'a [f32],
        shape: &[usize],
        strides: &[isize],
        start: usize,
    ) -> Option<Self> {
        let (&len, lead) = shape.split_last()?;
        if shape.len() != strides.len() || (len > 1 && strides[shape.len() - 1] != 1) {
            return None;
        }
        let mut offsets = vec![start];
        for (&dim, &stride) in lead.iter().zip(strides) {
            let stride = usize::try_from(stride).ok()?;
            offsets = offsets
                .iter()
                .flat_map(|&o| (0..dim).map(move |i| o + i * stride))
                .collect();
        }
        let rows = offsets
            .into_iter()
            .map(|o| data.get(o..o.checked_add(len)?))
            .collect::<Option<Vec<_>>>()?;
        Some(Self { rows, len })
    }

    /// Rows given as slices of length `len` each.
    pub fn from_rows(rows: Vec<&'a [f32]>, len: usize) -> Option<Self> {
        rows.iter()
            .all(|r| r.len() == len)
            .then_some(Self { rows, len })
    }

    /// Number of rows.
    pub fn count(&self) -> usize {
        self.rows.len()
    }

    /// Row length (`V`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the rows are empty (`V = 0`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        self.rows[i]
    }
}

/// Forward results of a batch, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// `[n]` per-row losses.
    pub loss: Vec<f32>,
    /// `[n]` student log-probabilities of the sampled tokens.
    pub token_log_probs: Vec<f32>,
    /// What the backward reads.
    pub saved: SavedBatch,
}

/// The saved state of a batch: `[n, STATS]`, `[n, slots]`, `[n, slots]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedBatch {
    /// Row scalars.
    pub stats: Vec<f32>,
    /// Coefficients of the selected entries.
    pub coefs: Vec<f32>,
    /// Selected vocabulary indices.
    pub indices: Vec<i64>,
    /// Entries per row in `coefs` and `indices`.
    pub slots: usize,
}

/// The fused forward of every row. `ids` holds one token per row.
pub fn forward(student: &HostRows<'_>, teacher: &HostRows<'_>, ids: &[i64], kind: Kind) -> Forward {
    let n = student.count();
    assert_eq!(teacher.count(), n, "fused loss: teacher rows");
    assert_eq!(ids.len(), n, "fused loss: token ids");
    let slots = kind.slots(student.len());
    let width = slots.max(1);
    let mut loss = vec![0.0; n];
    let mut token_log_probs = vec![0.0; n];
    let mut stats = vec![0.0; n * STATS];
    let mut coefs = vec![0.0; n * width];
    let mut indices = vec![0i64; n * width];
    loss.par_iter_mut()
        .zip(token_log_probs.par_iter_mut())
        .zip(stats.par_chunks_mut(STATS))
        .zip(
            coefs
                .par_chunks_mut(width)
                .zip(indices.par_chunks_mut(width)),
        )
        .enumerate()
        .for_each_init(
            Scratch::default,
            |scratch, (i, (((l, lp), st), (c, ix)))| {
                let RowLoss {
                    loss,
                    token_log_prob,
                } = row::forward(
                    student.row(i),
                    teacher.row(i),
                    ids[i],
                    kind,
                    scratch,
                    Saved {
                        stats: st,
                        coefs: &mut c[..slots],
                        indices: &mut ix[..slots],
                    },
                );
                *l = loss;
                *lp = token_log_prob;
            },
        );
    if slots == 0 {
        coefs.clear();
        indices.clear();
    }
    Forward {
        loss,
        token_log_probs,
        saved: SavedBatch {
            stats,
            coefs,
            indices,
            slots,
        },
    }
}

/// The gradient of `Σ grad_i · loss_i` with respect to the student logits,
/// contiguous `[n, V]`.
pub fn backward(
    student: &HostRows<'_>,
    teacher: &HostRows<'_>,
    ids: &[i64],
    kind: Kind,
    saved: &SavedBatch,
    grad: &[f32],
) -> Vec<f32> {
    let (n, v) = (student.count(), student.len());
    assert_eq!(grad.len(), n, "fused loss: output gradient");
    let mut out = vec![0.0f32; n * v];
    if v == 0 {
        return out;
    }
    let k = saved.slots;
    out.par_chunks_mut(v).enumerate().for_each(|(i, o)| {
        row::backward(
            student.row(i),
            teacher.row(i),
            ids[i],
            kind,
            SavedRow {
                stats: &saved.stats[i * STATS..(i + 1) * STATS],
                coefs: &saved.coefs[i * k..(i + 1) * k],
                indices: &saved.indices[i * k..(i + 1) * k],
            },
            grad[i],
            o,
        );
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_rows_are_found_in_place() {
        // A [2, 3, 4] buffer viewed as its [2, 2, 4] slice of positions 1..3.
        let data: Vec<f32> = (0..24).map(|x| x as f32).collect();
        let rows = HostRows::strided(&data, &[2, 2, 4], &[12, 4, 1], 4).unwrap();
        assert_eq!(rows.count(), 4);
        assert_eq!(rows.row(0), &[4.0, 5.0, 6.0, 7.0]);
        assert_eq!(rows.row(3), &[20.0, 21.0, 22.0, 23.0]);
        assert!(HostRows::strided(&data, &[4, 6], &[1, 4], 0).is_none());
        assert!(HostRows::strided(&data, &[2, 2, 4], &[12, 4, 1], 9).is_none());
    }
}
