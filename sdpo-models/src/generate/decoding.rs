//! The state of a batch between decode steps: which rows still generate, their key mask and
//! cache rows, and the two savings of the generation loop — one prefill per distinct prompt
//! ([`prefill`]) and dropping finished rows from the batch ([`Decoding::compact`]).

use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};

use super::batch::PromptRows;
use crate::arch::{positions_from_mask, CausalDecoder, KvCache};

/// Runs the prompts through the model once per distinct prompt, fills `cache` for every row
/// (a row whose prompt an earlier row repeats gets a copy of that row's keys and values) and
/// returns the logits of each row's last position, `[batch, vocab]`.
///
/// # Shapes
/// - `ids`, `mask`: `[batch, width]`, left-padded
pub(crate) fn prefill<B: Backend, M: CausalDecoder<B>>(
    model: &M,
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2, Bool>,
    rows: &PromptRows,
    cache: &mut KvCache<B>,
) -> Tensor<B, 2> {
    let [batch, width] = ids.dims();
    let device = ids.device();
    let distinct: Vec<usize> = (0..batch).filter(|&r| rows.first_alike[r] == r).collect();
    let last = |ids: Tensor<B, 2, Int>, mask: Tensor<B, 2, Bool>, cache: &mut KvCache<B>| {
        let positions = positions_from_mask(mask.clone());
        let hidden = model.decode_hidden(ids, mask, positions, Some(cache));
        let [rows, _, _] = hidden.dims();
        let logits = model.decode_logits(hidden.narrow(1, width - 1, 1));
        let vocab = logits.dims()[2];
        logits.reshape([rows, vocab])
    };
    if distinct.len() == batch {
        return last(ids, mask, cache);
    }
    let index = |rows: &[usize]| {
        let rows: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let len = rows.len();
        Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [len]), &device)
    };
    // The distinct rows' mask from the host copy (Flex 0.21's `select` on a bool tensor
    // returns a tensor its own bool operations then refuse).
    let real: Vec<bool> = distinct
        .iter()
        .flat_map(|&r| rows.real[r].iter().copied())
        .collect();
    let mask =
        Tensor::<B, 2, Bool>::from_data(TensorData::new(real, [distinct.len(), width]), &device);
    let logits = last(ids.select(0, index(&distinct)), mask, cache);
    // Row r takes the prefill of the distinct prompt its first alike row holds.
    let slot: Vec<usize> = rows
        .first_alike
        .iter()
        .map(|first| {
            distinct
                .binary_search(first)
                .expect("a first row is distinct")
        })
        .collect();
    let expand = index(&slot);
    cache.select_rows(expand.clone());
    logits.select(0, expand)
}

/// The rows still generating, in batch order, and which keys each has.
#[derive(Debug)]
pub(crate) struct Decoding {
    /// Original row index of each row of the current batch.
    pub active: Vec<usize>,
    /// Per original row: its real keys so far (the prompt's mask, then one flag per fed
    /// token: `false` for the pad a finished row is fed). Kept on the host, where the
    /// generation loop already is each step.
    keys: Vec<Vec<bool>>,
}

impl Decoding {
    /// Every row active, with the prompts' masks.
    pub fn new(prompt_mask: Vec<Vec<bool>>) -> Self {
        Self {
            active: (0..prompt_mask.len()).collect(),
            keys: prompt_mask,
        }
    }

    /// Records one more fed token for each active row (`live[i]` for the i-th active row).
    pub fn feed(&mut self, live: &[bool]) {
        for (&r, &l) in self.active.iter().zip(live) {
            self.keys[r].push(l);
        }
    }

    /// The active rows' key mask, `[active, keys]`.
    pub fn key_mask<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Bool> {
        let width = self.keys[self.active[0]].len();
        let flat: Vec<bool> = self
            .active
            .iter()
            .flat_map(|&r| self.keys[r].iter().copied())
            .collect();
        Tensor::from_data(TensorData::new(flat, [self.active.len(), width]), device)
    }

    /// Drops finished rows (`stopped[original row]`) from the batch, the cache and the
    /// per-row `extra` tensor once they are at least a quarter of it: the copy of the cache
    /// costs about one step, and each later step then computes only the rows that still
    /// generate. Returns the `extra` tensor's kept rows.
    pub fn compact<B: Backend, const D: usize>(
        &mut self,
        stopped: &[bool],
        cache: &mut KvCache<B>,
        extra: Option<Tensor<B, D>>,
    ) -> Option<Tensor<B, D>> {
        let keep: Vec<usize> = (0..self.active.len())
            .filter(|&i| !stopped[self.active[i]])
            .collect();
        let finished = self.active.len() - keep.len();
        if finished == 0 || keep.is_empty() || 4 * finished < self.active.len() {
            return extra;
        }
        let Some(device) = cache.layer(0).map(|kv| kv.keys.device()) else {
            return extra;
        };
        let rows: Vec<i64> = keep.iter().map(|&i| i as i64).collect();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [keep.len()]), &device);
        cache.select_rows(index.clone());
        self.active = keep.iter().map(|&i| self.active[i]).collect();
        extra.map(|t| t.select(0, index))
    }
}
