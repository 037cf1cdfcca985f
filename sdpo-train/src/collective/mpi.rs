//! [`MpiCollective`]: data-parallel ranks as MPI processes (`mpirun -np N sdpo train …`), on
//! one machine or several, through Open MPI and the `mpi` crate. Tensors travel through host
//! buffers (`f32`), scalars in `f64`.
//!
//! MPI collectives cannot time out, so every operation starts with an arrival check: each
//! rank sends every other rank a small token (the operation's sequence number and name) and
//! polls for theirs until `timeout` (the token also carries the buffer's length, checked
//! against the peers'). A rank that never sends (dead or hung) is named in
//! [`CollectiveError::Timeout`]; ranks that send different tokens have run different
//! operations ([`CollectiveError::OutOfStep`]). Only then does the blocking MPI operation run.
//! After a failure, MPI cannot be shut down cleanly (the operation with the missing rank
//! stays pending): end the job with [`MpiCollective::abort`], which Open MPI turns into the
//! end of every rank.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::request::Request;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

use super::{Collective, CollectiveError, ReduceOp};

/// The tag of arrival tokens.
const ARRIVAL_TAG: i32 = 0x5d90;

/// Environment variables MPI launchers set in the processes they start (Open MPI's
/// `mpirun`, PMI-based launchers such as MPICH's Hydra and Slurm's `srun`).
const LAUNCHER_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"];

struct Inner {
    /// Dropping it shuts MPI down (`MPI_Finalize`); `None` after a failure (see `Drop`).
    universe: Option<Universe>,
    world: SimpleCommunicator,
    /// Operations started so far.
    seq: u64,
}

/// This process's rank in the MPI job. Operations are serialized by a lock (MPI is initialized
/// with `MPI_THREAD_SERIALIZED`).
pub struct MpiCollective {
    inner: Mutex<Inner>,
    rank: usize,
    world_size: usize,
    timeout: Duration,
}

// SAFETY: MPI is initialized with `Threading::Serialized` (any thread may call it, one at a
// time) and every call goes through the mutex.
unsafe impl Send for MpiCollective {}
// SAFETY: as above.
unsafe impl Sync for MpiCollective {}

impl std::fmt::Debug for MpiCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiCollective")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl MpiCollective {
    /// Whether an MPI launcher started this process (then [`Self::init`] joins its job).
    pub fn launched() -> bool {
        LAUNCHER_VARS.iter().any(|v| std::env::var_os(v).is_some())
    }

    /// Initializes MPI and joins the job's world; each operation waits at most `timeout` for
    /// the other ranks.
    ///
    /// # Errors
    /// [`CollectiveError::Engine`] when MPI is already initialized or cannot give the threading
    /// level needed.
    pub fn init(timeout: Duration) -> Result<Self, CollectiveError> {
        let engine = |message: String| CollectiveError::Engine {
            what: "initialization".into(),
            message,
        };
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| engine("MPI was already initialized in this process".into()))?;
        if threading < Threading::Serialized {
            return Err(engine(format!(
                "the MPI library gives thread level {threading:?}; serialized calls from any thread are needed"
            )));
        }
        let world = universe.world();
        let (rank, world_size) = (world.rank() as usize, world.size() as usize);
        Ok(Self {
            inner: Mutex::new(Inner {
                universe: Some(universe),
                world,
                seq: 0,
            }),
            rank,
            world_size,
            timeout,
        })
    }

    /// Ends every rank of the job (`MPI_Abort`) with exit code `code`: the way out after an
    /// error, when other ranks may be waiting in an operation this rank will never join.
    pub fn abort(&self, code: i32) -> ! {
        let inner = self.lock();
        inner.world.abort(code)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Exchanges arrival tokens with every other rank (see the module docs).
    fn arrive(&self, inner: &mut Inner, what: &str, len: usize) -> Result<(), CollectiveError> {
        let seq = inner.seq;
        inner.seq += 1;
        let peers: Vec<usize> = (0..self.world_size).filter(|&r| r != self.rank).collect();
        if peers.is_empty() {
            return Ok(());
        }
        let token = [seq, name_code(what), len as u64];
        let send = Box::new(token);
        let mut recv = vec![[0u64; 3]; peers.len()].into_boxed_slice();
        let deadline = Instant::now() + self.timeout;
        let world = &inner.world;
        let missing: Vec<usize> = mpi::request::scope(|scope| {
            let mut sends: Vec<Option<Request<'_, [u64], _>>> = peers
                .iter()
                .map(|&p| {
                    let process = world.process_at_rank(p as i32);
                    Some(process.immediate_send_with_tag(scope, &send[..], ARRIVAL_TAG))
                })
                .collect();
            let mut recvs: Vec<Option<Request<'_, [u64], _>>> = peers
                .iter()
                .zip(recv.iter_mut())
                .map(|(&p, buf)| {
                    let process = world.process_at_rank(p as i32);
                    Some(process.immediate_receive_into_with_tag(scope, &mut buf[..], ARRIVAL_TAG))
                })
                .collect();
            loop {
                let pending = poll(&mut sends) + poll(&mut recvs);
                if pending == 0 {
                    return Vec::new();
                }
                if Instant::now() >= deadline {
                    let missing = peers
                        .iter()
                        .zip(&recvs)
                        .filter(|(_, r)| r.is_some())
                        .map(|(&p, _)| p)
                        .collect();
                    for request in sends.into_iter().chain(recvs).flatten() {
                        // SAFETY: the request stays pending; its buffers are leaked below so
                        // they outlive it.
                        let _ = unsafe { request.into_raw() };
                    }
                    return missing;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        if !missing.is_empty() {
            std::mem::forget(send);
            std::mem::forget(recv);
            // Finalizing with a pending request could hang: leave MPI up (see `Drop`).
            std::mem::forget(inner.universe.take());
            return Err(CollectiveError::Timeout {
                rank: self.rank,
                missing,
                what: what.to_string(),
                seconds: self.timeout.as_secs_f64(),
            });
        }
        for (&peer, got) in peers.iter().zip(recv.iter()) {
            if got[..2] == token[..2] && got[2] != token[2] {
                return Err(CollectiveError::LengthMismatch {
                    what: what.to_string(),
                    rank: self.rank,
                    len,
                    peer,
                    peer_len: got[2] as usize,
                });
            }
            if *got != token {
                return Err(CollectiveError::OutOfStep {
                    rank: self.rank,
                    what: what.to_string(),
                    seq,
                    peer,
                    peer_what: match got[1] == token[1] {
                        true => what.to_string(),
                        false => "another operation".to_string(),
                    },
                    peer_seq: got[0],
                });
            }
        }
        Ok(())
    }
}

/// Tests every pending request, dropping completed ones; returns how many are left.
fn poll<'a, S: mpi::request::Scope<'a>>(requests: &mut [Option<Request<'a, [u64], S>>]) -> usize {
    let mut pending = 0;
    for slot in requests.iter_mut() {
        if let Some(request) = slot.take() {
            if let Err(request) = request.test() {
                *slot = Some(request);
                pending += 1;
            }
        }
    }
    pending
}

/// A stable code for an operation's name (FNV-1a), carried by arrival tokens.
fn name_code(what: &str) -> u64 {
    what.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl<B: Backend> Collective<B> for MpiCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce_tensor(
        &self,
        what: &str,
        buffer: Tensor<B, 1>,
    ) -> Result<Tensor<B, 1>, CollectiveError> {
        let device = buffer.device();
        let send: Vec<f32> = buffer
            .into_data()
            .convert::<f32>()
            .into_vec()
            .map_err(|e| CollectiveError::Engine {
                what: what.to_string(),
                message: format!("reading the buffer: {e:?}"),
            })?;
        let mut inner = self.lock();
        self.arrive(&mut inner, what, send.len())?;
        let mut recv = vec![0f32; send.len()];
        inner
            .world
            .all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum());
        let len = recv.len();
        Ok(Tensor::from_data(TensorData::new(recv, [len]), &device))
    }

    fn all_reduce_scalars(
        &self,
        what: &str,
        values: &mut [f64],
        op: ReduceOp,
    ) -> Result<(), CollectiveError> {
        let mut inner = self.lock();
        self.arrive(&mut inner, what, values.len())?;
        let send = values.to_vec();
        let op = match op {
            ReduceOp::Sum => SystemOperation::sum(),
            ReduceOp::Max => SystemOperation::max(),
        };
        inner.world.all_reduce_into(&send[..], values, op);
        Ok(())
    }

    fn all_gather_bytes(&self, what: &str, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        let mut inner = self.lock();
        self.arrive(&mut inner, what, 0)?;
        let mut lens = vec![0u64; self.world_size];
        inner
            .world
            .all_gather_into(&(bytes.len() as u64), &mut lens[..]);
        let counts: Vec<i32> = lens.iter().map(|&l| l as i32).collect();
        let displs: Vec<i32> = counts
            .iter()
            .scan(0, |at, &c| {
                let d = *at;
                *at += c;
                Some(d)
            })
            .collect();
        let mut all = vec![0u8; lens.iter().sum::<u64>() as usize];
        let mut partition = PartitionMut::new(&mut all[..], counts, &displs[..]);
        inner.world.all_gather_varcount_into(bytes, &mut partition);
        let mut at = 0;
        Ok(lens
            .iter()
            .map(|&l| {
                let part = all[at..at + l as usize].to_vec();
                at += l as usize;
                part
            })
            .collect())
    }

    fn barrier(&self, what: &str) -> Result<(), CollectiveError> {
        // Every rank has heard from every other: that is a barrier.
        self.arrive(&mut self.lock(), what, 0)
    }
}
