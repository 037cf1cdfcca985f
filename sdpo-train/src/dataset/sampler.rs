//! Seeded, reproducible prompt batches over infinite epochs.
//!
//! Epoch `e` visits every row once, in the order of a Fisher–Yates shuffle
//! driven by `ChaCha8Rng::seed_from_u64(seed)` on stream `e`. The order is a
//! pure function of `(seed, epoch, dataset length)`, so the whole sampler state
//! is a few integers ([`SamplerState`]) that a checkpoint stores and
//! [`PromptSampler::from_state`] resumes from, batch for batch.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::DatasetError;

/// Where a [`PromptSampler`] stands; serializable for checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerState {
    /// The shuffling seed.
    pub seed: u64,
    /// Prompts per batch.
    pub batch_size: usize,
    /// Number of rows of the dataset the sampler was made for.
    pub dataset_len: usize,
    /// The epoch the next prompt comes from (0-based).
    pub epoch: u64,
    /// Position of the next prompt within that epoch's order.
    pub position: usize,
    /// Number of batches handed out so far (the next batch's `step`).
    pub step: u64,
}

/// One prompt of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPrompt {
    /// Index of the row in the dataset.
    pub row: usize,
    /// The epoch it was drawn in.
    pub epoch: u64,
}

/// One sample slot of a batch expanded to `num_generations` samples per prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleSlot {
    /// The group: the prompt's position in the batch. Unique within the batch
    /// even when a row appears twice (a batch crossing an epoch boundary of a
    /// small dataset).
    pub group: usize,
    /// Index of the row in the dataset.
    pub row: usize,
}

/// A batch of prompts; each becomes one group of samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptBatch {
    /// 0-based count of batches handed out before this one.
    pub step: u64,
    /// The prompts, in batch order; `prompts.len()` is the batch size.
    pub prompts: Vec<BatchPrompt>,
}

impl PromptBatch {
    /// Dataset row indices, in batch order.
    pub fn rows(&self) -> Vec<usize> {
        self.prompts.iter().map(|p| p.row).collect()
    }

    /// The batch expanded to `num_generations` samples per prompt, group-major:
    /// sample `k` belongs to group `k / num_generations`.
    pub fn samples(&self, num_generations: usize) -> Vec<SampleSlot> {
        self.prompts
            .iter()
            .enumerate()
            .flat_map(|(group, p)| {
                std::iter::repeat_n(SampleSlot { group, row: p.row }, num_generations)
            })
            .collect()
    }
}

/// Infinite, reproducible batches of prompt indices.
///
/// Batches always hold `batch_size` prompts: the last batch of an epoch is
/// completed from the next epoch's order. It is also an endless [`Iterator`].
#[derive(Debug, Clone)]
pub struct PromptSampler {
    state: SamplerState,
    order: Vec<usize>,
}

impl PromptSampler {
    /// A sampler at the start of epoch 0.
    ///
    /// # Errors
    /// [`DatasetError::InvalidSampler`] when `dataset_len` or `batch_size` is 0.
    pub fn new(dataset_len: usize, batch_size: usize, seed: u64) -> Result<Self, DatasetError> {
        Self::from_state(SamplerState {
            seed,
            batch_size,
            dataset_len,
            epoch: 0,
            position: 0,
            step: 0,
        })
    }

    /// Resumes from a saved state; the following batches are those the saved
    /// sampler would have produced.
    ///
    /// # Errors
    /// [`DatasetError::InvalidSampler`] when the state is inconsistent (zero
    /// sizes, position past the end of an epoch).
    pub fn from_state(state: SamplerState) -> Result<Self, DatasetError> {
        let invalid = |reason: String| Err(DatasetError::InvalidSampler { reason });
        if state.dataset_len == 0 {
            return invalid("the dataset has no rows".into());
        }
        if state.batch_size == 0 {
            return invalid("batch_size is 0".into());
        }
        if state.position > state.dataset_len {
            return invalid(format!(
                "position {} is past the end of an epoch of {} rows",
                state.position, state.dataset_len
            ));
        }
        Ok(Self {
            order: epoch_order(state.seed, state.epoch, state.dataset_len),
            state,
        })
    }

    /// The state to store in a checkpoint.
    pub fn state(&self) -> SamplerState {
        self.state
    }

    /// The next batch of `batch_size` prompts.
    pub fn next_batch(&mut self) -> PromptBatch {
        let mut prompts = Vec::with_capacity(self.state.batch_size);
        while prompts.len() < self.state.batch_size {
            if self.state.position == self.state.dataset_len {
                self.state.epoch += 1;
                self.state.position = 0;
                self.order = epoch_order(self.state.seed, self.state.epoch, self.state.dataset_len);
            }
            prompts.push(BatchPrompt {
                row: self.order[self.state.position],
                epoch: self.state.epoch,
            });
            self.state.position += 1;
        }
        let step = self.state.step;
        self.state.step += 1;
        PromptBatch { step, prompts }
    }
}

impl Iterator for PromptSampler {
    type Item = PromptBatch;

    fn next(&mut self) -> Option<PromptBatch> {
        Some(self.next_batch())
    }
}

/// The row order of one epoch: a pure function of its arguments.
pub fn epoch_order(seed: u64, epoch: u64, dataset_len: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    let mut order: Vec<usize> = (0..dataset_len).collect();
    order.shuffle(&mut rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_epoch_is_a_permutation_and_epochs_differ() {
        let a = epoch_order(7, 0, 50);
        let b = epoch_order(7, 1, 50);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(a, b);
        assert_ne!(a, epoch_order(8, 0, 50));
        assert_eq!(a, epoch_order(7, 0, 50));
    }

    #[test]
    fn batches_cross_epochs_and_keep_their_size() {
        let mut s = PromptSampler::new(5, 3, 1).unwrap();
        let batches: Vec<PromptBatch> = s.by_ref().take(5).collect();
        assert!(batches.iter().all(|b| b.prompts.len() == 3));
        assert_eq!(
            batches.iter().map(|b| b.step).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        // 15 prompts = 3 whole epochs, each a permutation of the 5 rows.
        let flat: Vec<BatchPrompt> = batches.iter().flat_map(|b| b.prompts.clone()).collect();
        for epoch in 0..3u64 {
            let rows: Vec<usize> = flat
                .iter()
                .filter(|p| p.epoch == epoch)
                .map(|p| p.row)
                .collect();
            assert_eq!(rows, epoch_order(1, epoch, 5));
        }
        assert_eq!(s.state().epoch, 2);
        assert_eq!(s.state().position, 5);
    }

    #[test]
    fn batch_larger_than_dataset_gives_distinct_groups() {
        let mut s = PromptSampler::new(2, 3, 0).unwrap();
        let batch = s.next_batch();
        let slots = batch.samples(2);
        assert_eq!(slots.len(), 6);
        assert_eq!(
            slots.iter().map(|s| s.group).collect::<Vec<_>>(),
            vec![0, 0, 1, 1, 2, 2]
        );
        assert_eq!(slots[0].row, batch.prompts[0].row);
        assert_eq!(slots[5].row, batch.prompts[2].row);
    }

    #[test]
    fn invalid_states_are_errors() {
        assert!(PromptSampler::new(0, 1, 0).is_err());
        assert!(PromptSampler::new(3, 0, 0).is_err());
        let mut state = PromptSampler::new(3, 1, 0).unwrap().state();
        state.position = 4;
        let err = PromptSampler::from_state(state).unwrap_err().to_string();
        assert!(err.contains("position 4"), "{err}");
    }
}
