//! [`NcclCollective`]: MPI ranks whose gradient buffers are summed on the GPUs by NCCL (feature
//! `nccl`; Burn's CUDA backend, with or without fusion). Everything else — the arrival check
//! with its timeout before every operation, scalars, gathers, barriers — is [`MpiCollective`]'s;
//! a buffer that is not a CUDA tensor goes through MPI on the host too.
//!
//! The buffer's device memory is summed in place: the CubeCL stream is drained, NCCL runs on a
//! stream of its own, which is synchronized before the tensor is used again. Rank 0's NCCL id
//! reaches the other ranks through MPI.
//!
//! **Compile-checked only**: no machine with several GPUs has run it (docs/distributed.md).

use std::any::Any;
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend};
use burn_ir::{BackendIr, CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};
use cubecl::cuda::CudaRuntime;
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{result, sys};

use super::mpi::MpiCollective;
use super::{Collective, CollectiveError, ReduceOp};

/// Burn's CUDA backend without fusion.
type CudaCube = CubeBackend<CudaRuntime, f32, i32, u8>;
/// Burn's CUDA backend with fusion (`burn::backend::Cuda` with the `fusion` feature).
type CudaFused = Fusion<CudaCube>;

/// An NCCL communicator and the stream its operations run on.
struct Comm {
    comm: sys::ncclComm_t,
    stream: Arc<CudaStream>,
}

impl Drop for Comm {
    fn drop(&mut self) {
        // SAFETY: the communicator was initialized and is destroyed once.
        let _ = unsafe { result::comm_destroy(self.comm) };
    }
}

/// This process's rank of an MPI job, with an NCCL communicator over the job's GPUs.
pub struct NcclCollective {
    mpi: Arc<MpiCollective>,
    comm: Mutex<Comm>,
}

// SAFETY: the communicator is only used under the mutex, one operation at a time.
unsafe impl Send for NcclCollective {}
// SAFETY: as above.
unsafe impl Sync for NcclCollective {}

impl std::fmt::Debug for NcclCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclCollective")
            .field("mpi", &self.mpi)
            .finish()
    }
}

/// An NCCL or CUDA failure as a collective error.
fn engine(what: &str, e: impl std::fmt::Debug) -> CollectiveError {
    CollectiveError::Engine {
        what: what.to_string(),
        message: format!("{e:?}"),
    }
}

impl NcclCollective {
    /// Joins every rank of `mpi`'s job in one NCCL communicator on CUDA device `ordinal`
    /// (each rank its own GPU: give each process one with `CUDA_VISIBLE_DEVICES`).
    ///
    /// # Errors
    /// [`CollectiveError`] when MPI fails to share the id or CUDA/NCCL cannot start.
    pub fn init(mpi: Arc<MpiCollective>, ordinal: usize) -> Result<Self, CollectiveError> {
        let what = "NCCL initialization";
        let mine = match mpi.rank() {
            0 => {
                let id = result::get_uniqueid().map_err(|e| engine(what, e))?;
                id.internal.iter().map(|&c| c as u8).collect()
            }
            _ => Vec::new(),
        };
        let shared = mpi.gather_bytes(what, &mine)?.swap_remove(0);
        let mut id = sys::ncclUniqueId { internal: [0; 128] };
        if shared.len() != id.internal.len() {
            return Err(engine(
                what,
                format!("rank 0 sent an id of {} bytes", shared.len()),
            ));
        }
        for (slot, &b) in id.internal.iter_mut().zip(&shared) {
            *slot = b as std::ffi::c_char;
        }
        let context = CudaContext::new(ordinal).map_err(|e| engine(what, e))?;
        let stream = context.new_stream().map_err(|e| engine(what, e))?;
        let mut comm = MaybeUninit::uninit();
        // SAFETY: `comm` is written by NCCL before it is read; rank and size are MPI's.
        let comm = unsafe {
            result::comm_init_rank(
                comm.as_mut_ptr(),
                mpi.world_size() as i32,
                id,
                mpi.rank() as i32,
            )
            .map_err(|e| engine(what, e))?;
            comm.assume_init()
        };
        Ok(Self {
            mpi,
            comm: Mutex::new(Comm { comm, stream }),
        })
    }

    /// Sums a contiguous CUDA tensor in place over the ranks.
    fn sum_in_place(
        &self,
        what: &str,
        tensor: &CubeTensor<CudaRuntime>,
    ) -> Result<(), CollectiveError> {
        let datatype = match tensor.dtype {
            DType::F32 => sys::ncclDataType_t::ncclFloat32,
            DType::F16 => sys::ncclDataType_t::ncclFloat16,
            DType::BF16 => sys::ncclDataType_t::ncclBfloat16,
            other => return Err(engine(what, format!("no NCCL sum for {other:?}"))),
        };
        let count = tensor.meta.shape().num_elements();
        cubecl::future::block_on(tensor.client.sync()).map_err(|e| engine(what, e))?;
        let resource = tensor
            .client
            .get_resource(tensor.handle.clone())
            .map_err(|e| engine(what, e))?;
        let ptr = resource.resource().ptr;
        let comm = self.comm.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: `ptr` is the tensor's device memory (count elements of `datatype`), alive
        // while `resource` is; the CubeCL stream is drained and NCCL's is synchronized below.
        unsafe {
            result::all_reduce(
                ptr as *const std::ffi::c_void,
                ptr as *mut std::ffi::c_void,
                count,
                datatype,
                sys::ncclRedOp_t::ncclSum,
                comm.comm,
                comm.stream.cu_stream() as sys::cudaStream_t,
            )
            .map_err(|e| engine(what, e))?;
        }
        comm.stream.synchronize().map_err(|e| engine(what, e))
    }

    /// The sum over ranks of a buffer of Burn's CUDA backend.
    fn reduce_cube(
        &self,
        what: &str,
        buffer: Tensor<CudaCube, 1>,
    ) -> Result<Tensor<CudaCube, 1>, CollectiveError> {
        let tensor = burn_cubecl::kernel::into_contiguous(buffer.into_primitive().tensor());
        self.sum_in_place(what, &tensor)?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(tensor)))
    }

    /// The sum over ranks of a buffer of Burn's fused CUDA backend: queued on the fusion stream
    /// as a custom operation over the inner tensor.
    fn reduce_fused(
        self: &Arc<Self>,
        what: &str,
        buffer: Tensor<CudaFused, 1>,
    ) -> Tensor<CudaFused, 1> {
        let input = buffer.into_primitive().tensor();
        let client = input.client.clone();
        let streams = OperationStreams::with_inputs([&input]);
        let output = TensorIr::uninit(
            client.create_empty_handle(),
            input.shape.clone(),
            input.dtype,
        );
        let desc = CustomOpIr::new("sdpo_nccl_all_reduce", &[input.into_ir()], &[output]);
        let op = SumOp {
            desc: desc.clone(),
            nccl: self.clone(),
            what: what.to_string(),
        };
        let [out] = client
            .register(streams, OperationIr::Custom(desc), op)
            .outputs();
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
}

/// The queued NCCL sum of one buffer (fused backend).
struct SumOp {
    desc: CustomOpIr,
    nccl: Arc<NcclCollective>,
    what: String,
}

impl std::fmt::Debug for SumOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SumOp").field("what", &self.what).finish()
    }
}

impl Operation<<CudaCube as FusionBackend>::FusionRuntime> for SumOp {
    fn execute(&self, handles: &mut HandleContainer<<CudaCube as BackendIr>::Handle>) {
        let ([input], [output]) = self.desc.as_fixed();
        let tensor =
            burn_cubecl::kernel::into_contiguous(handles.get_float_tensor::<CudaCube>(input));
        // A fused operation cannot return an error: a failed NCCL sum (after the arrival check
        // succeeded on every rank) ends the process with the reason.
        if let Err(e) = self.nccl.sum_in_place(&self.what, &tensor) {
            panic!("NCCL all-reduce failed: {e}");
        }
        handles.register_float_tensor::<CudaCube>(&output.id, tensor);
    }
}

/// Tensors of Burn's CUDA backend (fused or not) are summed by NCCL; any other backend's go
/// through MPI on the host.
impl<B: Backend> Collective<B> for Arc<NcclCollective> {
    fn rank(&self) -> usize {
        self.mpi.rank()
    }

    fn world_size(&self) -> usize {
        self.mpi.world_size()
    }

    fn all_reduce_tensor(
        &self,
        what: &str,
        buffer: Tensor<B, 1>,
    ) -> Result<Tensor<B, 1>, CollectiveError> {
        // The arrival check (with its timeout) first, as for every MPI operation.
        Collective::<B>::barrier(self.mpi.as_ref(), what)?;
        let boxed: Box<dyn Any> = Box::new(buffer);
        let out: Box<dyn Any> = match boxed.downcast::<Tensor<CudaFused, 1>>() {
            Ok(t) => Box::new(self.reduce_fused(what, *t)),
            Err(boxed) => match boxed.downcast::<Tensor<CudaCube, 1>>() {
                Ok(t) => Box::new(self.reduce_cube(what, *t)?),
                Err(boxed) => {
                    let t = boxed
                        .downcast::<Tensor<B, 1>>()
                        .expect("the buffer's own type");
                    return Collective::<B>::all_reduce_tensor(self.mpi.as_ref(), what, *t);
                }
            },
        };
        Ok(*out
            .downcast::<Tensor<B, 1>>()
            .expect("B is the CUDA backend the buffer matched"))
    }

    fn all_reduce_scalars(
        &self,
        what: &str,
        values: &mut [f64],
        op: ReduceOp,
    ) -> Result<(), CollectiveError> {
        Collective::<B>::all_reduce_scalars(self.mpi.as_ref(), what, values, op)
    }

    fn all_gather_bytes(&self, what: &str, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        self.mpi.gather_bytes(what, bytes)
    }

    fn barrier(&self, what: &str) -> Result<(), CollectiveError> {
        Collective::<B>::barrier(self.mpi.as_ref(), what)
    }
}
