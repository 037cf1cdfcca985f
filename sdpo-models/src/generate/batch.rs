//! Padding helpers and the host-side checks of a prompt batch.

use burn::tensor::{backend::Backend, Bool, Device, Int, Tensor, TensorData};

use super::GenerationError;

/// Left-pads host prompts into a batch.
///
/// # Shapes
/// - returns ids `[batch, max_len]` (`pad_id` in the padding) and mask `[batch, max_len]`
///   (`true` on real tokens), `max_len` the longest prompt
pub fn left_pad<B: Backend>(
    prompts: &[Vec<u32>],
    pad_id: u32,
    device: &Device<B>,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(prompts.len() * width);
    let mut mask = Vec::with_capacity(prompts.len() * width);
    for prompt in prompts {
        let pad = width - prompt.len();
        ids.extend(std::iter::repeat_n(i64::from(pad_id), pad));
        ids.extend(prompt.iter().map(|&t| i64::from(t)));
        mask.extend(std::iter::repeat_n(false, pad));
        mask.extend(std::iter::repeat_n(true, prompt.len()));
    }
    let shape = [prompts.len(), width];
    (
        Tensor::from_data(TensorData::new(ids, shape), device),
        Tensor::from_data(TensorData::new(mask, shape), device),
    )
}

/// What the host learns from one read of a prompt batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PromptRows {
    /// Each row's prompt length (its number of real tokens).
    pub lengths: Vec<usize>,
    /// For each row, the first row holding the same prompt (same ids and mask): itself
    /// unless an earlier row repeats it, as the samples of a group do.
    pub first_alike: Vec<usize>,
    /// Each row's mask, `true` on real tokens.
    pub real: Vec<Vec<bool>>,
}

/// Reads a prompt batch to the host once and checks it.
///
/// # Errors
/// [`GenerationError`] when the batch is empty, ids and mask differ in shape, a row is empty,
/// a row has a real token after padding (not left-padded), an id (padding included) is
/// outside the vocabulary, or a prompt leaves no position for a new token.
pub(crate) fn prompt_rows<B: Backend>(
    ids: &Tensor<B, 2, Int>,
    mask: &Tensor<B, 2, Bool>,
    vocab_size: usize,
    max_positions: usize,
) -> Result<PromptRows, GenerationError> {
    let [batch, width] = ids.dims();
    if mask.dims() != [batch, width] {
        return Err(GenerationError::ShapeMismatch {
            ids: [batch, width],
            mask: mask.dims(),
        });
    }
    if batch == 0 {
        return Err(GenerationError::EmptyBatch);
    }
    let host_ids: Vec<i64> = ids.to_data().iter::<i64>().collect();
    let host_mask: Vec<i64> = mask.clone().int().into_data().iter::<i64>().collect();
    let mut lengths = Vec::with_capacity(batch);
    for row in 0..batch {
        let cells = row * width..(row + 1) * width;
        let real = &host_mask[cells.clone()];
        let len = real.iter().filter(|&&m| m != 0).count();
        if len == 0 {
            return Err(GenerationError::EmptyPrompt { row });
        }
        if let Some(position) = (width - len..width).find(|&p| real[p] == 0) {
            return Err(GenerationError::NotLeftPadded { row, position });
        }
        // Padding ids are embedded too (then masked), so they must be in range as well.
        for (position, &id) in host_ids[cells].iter().enumerate() {
            if id < 0 || id as u64 >= vocab_size as u64 {
                return Err(GenerationError::TokenOutOfVocab {
                    row,
                    position,
                    id,
                    vocab_size,
                });
            }
        }
        if len >= max_positions {
            return Err(GenerationError::PromptTooLong {
                row,
                len,
                max_positions,
            });
        }
        lengths.push(len);
    }
    let row = |r: usize| {
        (
            &host_ids[r * width..(r + 1) * width],
            &host_mask[r * width..(r + 1) * width],
        )
    };
    let mut firsts: std::collections::HashMap<_, usize> = std::collections::HashMap::new();
    let first_alike = (0..batch)
        .map(|r| *firsts.entry(row(r)).or_insert(r))
        .collect();
    let real = (0..batch)
        .map(|r| row(r).1.iter().map(|&m| m != 0).collect())
        .collect();
    Ok(PromptRows {
        lengths,
        first_alike,
        real,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    fn ids_and_mask(
        ids: Tensor<B, 2, Int>,
        mask: Tensor<B, 2, Bool>,
    ) -> (Vec<i64>, Vec<bool>, [usize; 2]) {
        let dims = ids.dims();
        (
            ids.into_data().iter::<i64>().collect(),
            mask.into_data().iter::<bool>().collect(),
            dims,
        )
    }

    #[test]
    fn repeated_prompts_point_at_their_first_row() {
        let device = Default::default();
        let (ids, mask) = left_pad::<B>(&[vec![5, 6], vec![7], vec![5, 6], vec![0, 7]], 0, &device);
        let rows = prompt_rows(&ids, &mask, 10, 10).unwrap();
        // Row 3 has row 1's ids ([0, 7] with pad 0) but not its mask.
        assert_eq!(rows.first_alike, vec![0, 1, 0, 3]);
    }

    #[test]
    fn left_pad_puts_padding_first() {
        let (ids, mask) = left_pad::<B>(&[vec![5, 6, 7], vec![9]], 0, &Default::default());
        let (ids, mask, dims) = ids_and_mask(ids, mask);
        assert_eq!(dims, [2, 3]);
        assert_eq!(ids, vec![5, 6, 7, 0, 0, 9]);
        assert_eq!(mask, vec![true, true, true, false, false, true]);
    }

    #[test]
    fn left_pad_of_nothing_is_an_empty_batch() {
        let device = Default::default();
        let (ids, mask) = left_pad::<B>(&[], 0, &device);
        assert_eq!(ids.dims(), [0, 0]);
        assert!(matches!(
            prompt_rows(&ids, &mask, 10, 10),
            Err(GenerationError::EmptyBatch)
        ));
    }

    #[test]
    fn prompt_checks_name_row_and_position() {
        let device = Default::default();
        let check = |prompts: &[Vec<u32>]| {
            let (ids, mask) = left_pad::<B>(prompts, 1, &device);
            prompt_rows(&ids, &mask, 10, 6).map(|rows| rows.lengths)
        };
        assert_eq!(check(&[vec![2, 3], vec![4]]).unwrap(), vec![2, 1]);
        assert!(matches!(
            check(&[vec![2], vec![]]),
            Err(GenerationError::EmptyPrompt { row: 1 })
        ));
        assert!(matches!(
            check(&[vec![2, 3], vec![4, 10]]),
            Err(GenerationError::TokenOutOfVocab {
                row: 1,
                position: 1,
                id: 10,
                vocab_size: 10
            })
        ));
        assert!(matches!(
            check(&[vec![2; 6]]),
            Err(GenerationError::PromptTooLong {
                row: 0,
                len: 6,
                max_positions: 6
            })
        ));
        let right_padded = Tensor::<B, 2, Bool>::from_data([[true, false]], &device);
        let ids = Tensor::<B, 2, Int>::from_data([[2, 3]], &device);
        assert!(matches!(
            prompt_rows(&ids, &right_padded, 10, 6),
            Err(GenerationError::NotLeftPadded {
                row: 0,
                position: 1
            })
        ));
        let short_mask = Tensor::<B, 2, Bool>::from_data([[true]], &device);
        assert!(matches!(
            prompt_rows(&ids, &short_mask, 10, 6),
            Err(GenerationError::ShapeMismatch { .. })
        ));
    }
}
