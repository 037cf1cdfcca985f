//! [`LocalPeer`]: data-parallel ranks as threads of one process, one device each (several
//! GPUs of one machine, or peers sharing one CPU device). Tensors are summed by Burn's local
//! collective (`burn-collective`: device to device where the backend can); scalars, byte
//! gathers and barriers meet in a [`HostGroup`], which also gives every tensor reduce its timeout (the
//! peers meet there first, then reduce).

use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_collective::{
    all_reduce, finish_collective, register, CollectiveConfig, PeerId, ReduceOperation,
};

use super::{Collective, CollectiveError, HostGroup, ReduceOp};

/// One rank of a process's peers, on one device. Create one per thread with
/// [`LocalPeer::join`], every peer with the same [`HostGroup`].
#[derive(Debug)]
pub struct LocalPeer<B: Backend> {
    rank: usize,
    group: Arc<HostGroup>,
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend> LocalPeer<B> {
    /// Registers rank `rank` of `group` on `device` with Burn's local collective; returns when
    /// every peer has registered.
    ///
    /// # Errors
    /// [`CollectiveError::Engine`] when Burn's collective refuses the registration (a rank
    /// registered twice, peers with different settings).
    pub fn join(
        rank: usize,
        group: Arc<HostGroup>,
        device: &B::Device,
    ) -> Result<Self, CollectiveError> {
        let config = CollectiveConfig::default().with_num_devices(group.world_size());
        group.barrier(rank, "registration")?;
        register::<B>(PeerId(rank as u32), device.clone(), config).map_err(|e| {
            CollectiveError::Engine {
                what: "registration".into(),
                message: format!("{e:?}"),
            }
        })?;
        Ok(Self {
            rank,
            group,
            _backend: std::marker::PhantomData,
        })
    }
}

impl<B: Backend> Drop for LocalPeer<B> {
    fn drop(&mut self) {
        // Leaves Burn's collective so the peers can register again later (another run).
        if let Err(e) = finish_collective::<B>(PeerId(self.rank as u32)) {
            tracing::debug!("leaving the local collective: {e:?}");
        }
    }
}

impl<B: Backend> Collective<B> for LocalPeer<B> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.group.world_size()
    }

    fn all_reduce_tensor(
        &self,
        what: &str,
        buffer: Tensor<B, 1>,
    ) -> Result<Tensor<B, 1>, CollectiveError> {
        // The peers meet on the host first (with the timeout) and compare lengths.
        let len = buffer.dims()[0];
        let lens = super::all_gather_scalar::<B>(self, what, len as f64)?;
        if let Some(peer) = lens.iter().position(|&l| l != len as f64) {
            return Err(CollectiveError::LengthMismatch {
                what: what.to_string(),
                rank: self.rank,
                len,
                peer,
                peer_len: lens[peer] as usize,
            });
        }
        let reduced = all_reduce::<B>(
            PeerId(self.rank as u32),
            buffer.into_primitive().tensor(),
            ReduceOperation::Sum,
        )
        .map_err(|e| CollectiveError::Engine {
            what: what.to_string(),
            message: format!("{e:?}"),
        })?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(reduced)))
    }

    fn all_reduce_scalars(
        &self,
        what: &str,
        values: &mut [f64],
        op: ReduceOp,
    ) -> Result<(), CollectiveError> {
        self.group.all_reduce_scalars(self.rank, what, values, op)
    }

    fn all_gather_bytes(&self, what: &str, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        self.group.all_gather_bytes(self.rank, what, bytes)
    }

    fn barrier(&self, what: &str) -> Result<(), CollectiveError> {
        self.group.barrier(self.rank, what)
    }
}
