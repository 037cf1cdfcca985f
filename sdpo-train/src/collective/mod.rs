//! [`Collective`]: what data-parallel training needs from the processes and devices it runs
//! on — a gradient all-reduce over one fused device buffer, a scalar all-reduce, an
//! all-gather of bytes (a broadcast from rank 0 is its first part, [`broadcast_bytes`]) and a
//! barrier — behind one small trait, so a later engine changes one
//! implementation and not the trainer.
//!
//! | implementation | ranks are | engine |
//! |---|---|---|
//! | [`SingleProcess`] | one | none (every operation is the identity) |
//! | [`local::LocalPeer`] (feature `local-collective`) | threads of one process, one device each | Burn's local collective (`burn-collective`) for tensors, a host rendezvous for scalars |
//! | [`mpi::MpiCollective`] (feature `mpi`) | processes, on one machine or several | MPI (Open MPI through the `mpi` crate), host buffers |
//! | `nccl::NcclCollective` (feature `nccl`) | processes, one GPU each | NCCL on the device for CUDA tensors, MPI for the rest (compile-checked only) |
//!
//! Every operation names what it reduces (`what`, e.g. `gradients`), and every rank must call
//! the same operations in the same order. An operation waits at most the collective's timeout
//! for the other ranks and then fails with [`CollectiveError::Timeout`] naming the ranks that
//! did not arrive.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

pub mod gradients;
mod host;
#[cfg(feature = "local-collective")]
pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;

pub use host::HostGroup;

/// How values of the ranks combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// The sum over ranks.
    Sum,
    /// The largest value.
    Max,
}

impl ReduceOp {
    /// `a` combined with `b`.
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            Self::Sum => a + b,
            Self::Max => a.max(b),
        }
    }
}

/// Why a collective operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CollectiveError {
    /// Some ranks did not join an operation in time (dead, hung, or far slower).
    #[error("rank {rank}: rank(s) {missing:?} did not join `{what}` within {seconds} s (they died, hang, or are that much slower; raise `distributed.timeout_secs` if a step legitimately takes longer)")]
    Timeout {
        /// The rank reporting.
        rank: usize,
        /// The ranks that did not arrive.
        missing: Vec<usize>,
        /// The operation.
        what: String,
        /// The timeout.
        seconds: f64,
    },
    /// Ranks called different operations (a bug: every rank must run the same sequence).
    #[error("rank {rank} called `{what}` (operation {seq}) while rank {peer} called `{peer_what}` (operation {peer_seq})")]
    OutOfStep {
        /// The rank reporting.
        rank: usize,
        /// Its operation.
        what: String,
        /// Its operation count.
        seq: u64,
        /// The rank that disagrees.
        peer: usize,
        /// That rank's operation.
        peer_what: String,
        /// That rank's operation count.
        peer_seq: u64,
    },
    /// The ranks' parameters differ (found by the periodic checksum).
    #[error("parameters of rank(s) {ranks:?} differ from rank 0's after step {step} (checksums {checksums:?}); data-parallel ranks must stay identical")]
    Drift {
        /// The step checked.
        step: usize,
        /// Ranks whose checksum differs from rank 0's.
        ranks: Vec<usize>,
        /// Every rank's checksum.
        checksums: Vec<f64>,
    },
    /// The buffers of the ranks differ in length.
    #[error("`{what}`: rank {rank} has {len} values, rank {peer} has {peer_len}")]
    LengthMismatch {
        /// The operation.
        what: String,
        /// The rank reporting.
        rank: usize,
        /// Its length.
        len: usize,
        /// A rank with another length.
        peer: usize,
        /// That rank's length.
        peer_len: usize,
    },
    /// The engine itself failed.
    #[error("`{what}`: {message}")]
    Engine {
        /// The operation.
        what: String,
        /// The engine's message.
        message: String,
    },
}

/// The collective operations of data-parallel training, for one rank. All ranks call the same
/// operations in the same order.
pub trait Collective<B: Backend>: Send + Sync {
    /// This rank, `0..world_size()`.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn world_size(&self) -> usize;

    /// The element-wise sum of every rank's `buffer` (same length on every rank), on this
    /// rank's device.
    ///
    /// # Errors
    /// [`CollectiveError`] naming `what`.
    fn all_reduce_tensor(
        &self,
        what: &str,
        buffer: Tensor<B, 1>,
    ) -> Result<Tensor<B, 1>, CollectiveError>;

    /// Replaces `values` by their element-wise combination over ranks (exact in `f64`).
    ///
    /// # Errors
    /// [`CollectiveError`] naming `what`.
    fn all_reduce_scalars(
        &self,
        what: &str,
        values: &mut [f64],
        op: ReduceOp,
    ) -> Result<(), CollectiveError>;

    /// Every rank's `bytes`, in rank order (lengths may differ).
    ///
    /// # Errors
    /// [`CollectiveError`] naming `what`.
    fn all_gather_bytes(&self, what: &str, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError>;

    /// Returns once every rank has called it.
    ///
    /// # Errors
    /// [`CollectiveError`] naming `what`.
    fn barrier(&self, what: &str) -> Result<(), CollectiveError>;
}

/// One process, one device: every operation is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl<B: Backend> Collective<B> for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn all_reduce_tensor(
        &self,
        _: &str,
        buffer: Tensor<B, 1>,
    ) -> Result<Tensor<B, 1>, CollectiveError> {
        Ok(buffer)
    }

    fn all_reduce_scalars(
        &self,
        _: &str,
        _: &mut [f64],
        _: ReduceOp,
    ) -> Result<(), CollectiveError> {
        Ok(())
    }

    fn all_gather_bytes(&self, _: &str, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        Ok(vec![bytes.to_vec()])
    }

    fn barrier(&self, _: &str) -> Result<(), CollectiveError> {
        Ok(())
    }
}

/// The number of ranks an MPI launcher started this process among, read from the variables
/// launchers set (`OMPI_COMM_WORLD_SIZE`: Open MPI's `mpirun`; `PMI_SIZE`: MPICH's Hydra,
/// Slurm's `srun --mpi=pmi2`); `None` when no launcher started it.
pub fn launcher_world_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// Every rank's value of `value` (rank `r`'s at index `r`), through a sum of one-hot vectors.
///
/// # Errors
/// As [`Collective::all_reduce_scalars`].
pub fn all_gather_scalar<B: Backend>(
    collective: &dyn Collective<B>,
    what: &str,
    value: f64,
) -> Result<Vec<f64>, CollectiveError> {
    let mut slots = vec![0.0; collective.world_size()];
    slots[collective.rank()] = value;
    collective.all_reduce_scalars(what, &mut slots, ReduceOp::Sum)?;
    Ok(slots)
}

/// Rank 0's `bytes` on every rank.
///
/// # Errors
/// As [`Collective::all_gather_bytes`].
pub fn broadcast_bytes<B: Backend>(
    collective: &dyn Collective<B>,
    what: &str,
    bytes: &[u8],
) -> Result<Vec<u8>, CollectiveError> {
    let mine = match collective.rank() {
        0 => bytes,
        _ => &[],
    };
    Ok(collective
        .all_gather_bytes(what, mine)?
        .into_iter()
        .next()
        .unwrap_or_default())
}
