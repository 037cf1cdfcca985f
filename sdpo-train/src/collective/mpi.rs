//! [`MpiCollective`]: data-parallel ranks as MPI processes (`mpirun -np N sdpo train …`), on
//! one machine or several, through Open MPI and the `mpi` crate. Tensors travel through host
//! buffers (`f32`), scalars in `f64`.
//!
//! MPI collectives cannot time out, so every operation is non-blocking and polled against the
//! timeout, and starts with an arrival check: each rank sends every other rank a small token
//! (the operation's sequence number, name and length) and polls for theirs. A rank that never
//! sends (dead or hung) is named in [`CollectiveError::Timeout`]; ranks that send different
//! tokens ran different operations ([`CollectiveError::OutOfStep`], or
//! [`CollectiveError::LengthMismatch`]). When a rank stops in the middle of an operation, the
//! others' polls time out and a second round of tokens names the ranks that no longer answer
//! (so a failure is reported within one to two timeouts). After a failure MPI cannot be shut
//! down cleanly (the stalled operation stays pending): end the job with
//! [`MpiCollective::abort`], which Open MPI turns into the end of every rank.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::request::Request;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

use super::{Collective, CollectiveError, ReduceOp};

/// The tag of arrival tokens.
const ARRIVAL_TAG: i32 = 0x5d90;
/// The tag of the tokens that find the ranks still answering after an operation stalled.
const PROBE_TAG: i32 = 0x5d91;

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
    /// The timeout in milliseconds.
    timeout_ms: AtomicU64,
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
            .field("timeout", &self.timeout())
            .finish()
    }
}

impl MpiCollective {
    /// Whether an MPI launcher started this process (then [`Self::init`] joins its job).
    pub fn launched() -> bool {
        super::launcher_world_size().is_some()
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
            timeout_ms: AtomicU64::new(timeout.as_millis() as u64),
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Every rank's `bytes`, in rank order ([`Collective::all_gather_bytes`], usable without a
    /// backend type).
    ///
    /// # Errors
    /// As [`Collective::all_gather_bytes`].
    pub fn gather_bytes(&self, what: &str, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        let mut lens = self.reduce_lengths(what, bytes.len())?;
        let mut inner = self.lock();
        let deadline = Instant::now() + self.timeout();
        let counts: Vec<i32> = lens.iter().map(|&l| l as i32).collect();
        let displs: Vec<i32> = counts
            .iter()
            .scan(0, |at, &c| {
                let d = *at;
                *at += c;
                Some(d)
            })
            .collect();
        let send = bytes.to_vec();
        let mut all = vec![0u8; lens.iter().sum::<u64>() as usize];
        let mut partition = PartitionMut::new(&mut all[..], counts, &displs[..]);
        let done = mpi::request::scope(|scope| {
            let request =
                inner
                    .world
                    .immediate_all_gather_varcount_into(scope, &send[..], &mut partition);
            complete(request, deadline)
        });
        if !done {
            std::mem::forget(partition);
            std::mem::forget(send);
            std::mem::forget(all);
            std::mem::forget(displs);
            return Err(self.stalled(&mut inner, what));
        }
        let mut at = 0;
        Ok(lens
            .drain(..)
            .map(|l| {
                let part = all[at..at + l as usize].to_vec();
                at += l as usize;
                part
            })
            .collect())
    }

    /// Every rank's `len` (the first half of a gather), within the timeout.
    fn reduce_lengths(&self, what: &str, len: usize) -> Result<Vec<u64>, CollectiveError> {
        let mut slots = vec![0u64; self.world_size];
        slots[self.rank] = len as u64;
        self.reduce(what, slots, SystemOperation::sum())
    }

    /// How long an operation waits for the other ranks.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// Sets how long an operation waits for the other ranks (every rank should use the same).
    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
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

    /// Exchanges arrival tokens with every other rank (see the module docs) and checks that
    /// they ran the same operation with as many values.
    fn arrive(&self, inner: &mut Inner, what: &str, len: usize) -> Result<(), CollectiveError> {
        let seq = inner.seq;
        inner.seq += 1;
        let token = [seq, name_code(what), len as u64];
        let peers = match self.exchange(inner, ARRIVAL_TAG, token) {
            Ok(peers) => peers,
            Err(missing) => {
                return Err(self.give_up(
                    inner,
                    CollectiveError::Timeout {
                        rank: self.rank,
                        missing,
                        what: what.to_string(),
                        seconds: self.timeout().as_secs_f64(),
                    },
                ))
            }
        };
        for (peer, got) in peers {
            if got[..2] == token[..2] && got[2] != token[2] {
                return Err(CollectiveError::LengthMismatch {
                    what: what.to_string(),
                    rank: self.rank,
                    len,
                    peer,
                    peer_len: got[2] as usize,
                });
            }
            if got != token {
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

    /// Sends `token` to every other rank and receives theirs (tag `tag`) within the timeout:
    /// `(peer, its token)` for each, or the peers that did not send.
    fn exchange(
        &self,
        inner: &Inner,
        tag: i32,
        token: [u64; 3],
    ) -> Result<Vec<(usize, [u64; 3])>, Vec<usize>> {
        let peers: Vec<usize> = (0..self.world_size).filter(|&r| r != self.rank).collect();
        let send = Box::new(token);
        let mut recv = vec![[0u64; 3]; peers.len()].into_boxed_slice();
        let deadline = Instant::now() + self.timeout();
        let world = &inner.world;
        let missing: Vec<usize> = mpi::request::scope(|scope| {
            let mut sends: Vec<Option<Request<'_, [u64], _>>> = peers
                .iter()
                .map(|&p| {
                    let process = world.process_at_rank(p as i32);
                    Some(process.immediate_send_with_tag(scope, &send[..], tag))
                })
                .collect();
            let mut recvs: Vec<Option<Request<'_, [u64], _>>> = peers
                .iter()
                .zip(recv.iter_mut())
                .map(|(&p, buf)| {
                    let process = world.process_at_rank(p as i32);
                    Some(process.immediate_receive_into_with_tag(scope, &mut buf[..], tag))
                })
                .collect();
            let mut polls = 0u32;
            loop {
                if poll(&mut sends) + poll(&mut recvs) == 0 {
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
                        leak(request);
                    }
                    return missing;
                }
                pause(&mut polls);
            }
        });
        if !missing.is_empty() {
            // The pending requests still own these buffers.
            std::mem::forget(send);
            std::mem::forget(recv);
            return Err(missing);
        }
        Ok(peers.into_iter().zip(recv.iter().copied()).collect())
    }

    /// The error after an operation that did not complete: which ranks still answer a probe
    /// (the others are named), with MPI left up (see `Drop`).
    fn stalled(&self, inner: &mut Inner, what: &str) -> CollectiveError {
        let seconds = self.timeout().as_secs_f64();
        let error = match self.exchange(inner, PROBE_TAG, [u64::MAX, name_code(what), 0]) {
            Err(missing) => CollectiveError::Timeout {
                rank: self.rank,
                missing,
                what: what.to_string(),
                seconds,
            },
            Ok(_) => CollectiveError::Engine {
                what: what.to_string(),
                message: format!(
                    "did not complete within {seconds} s although every rank answers (raise `distributed.timeout_secs` for larger buffers or slower links)"
                ),
            },
        };
        self.give_up(inner, error)
    }

    /// Marks MPI unusable after a failed operation: finalizing with a pending request could
    /// hang, so it is never finalized (end the job with [`Self::abort`]).
    fn give_up(&self, inner: &mut Inner, error: CollectiveError) -> CollectiveError {
        std::mem::forget(inner.universe.take());
        error
    }

    /// An element-wise all-reduce of `send` over the ranks, within the timeout.
    fn reduce<T: Equivalence + Copy + Default>(
        &self,
        what: &str,
        send: Vec<T>,
        op: SystemOperation,
    ) -> Result<Vec<T>, CollectiveError> {
        let mut inner = self.lock();
        self.arrive(&mut inner, what, send.len())?;
        let deadline = Instant::now() + self.timeout();
        let mut recv = vec![T::default(); send.len()];
        let done = mpi::request::scope(|scope| {
            complete(
                inner
                    .world
                    .immediate_all_reduce_into(scope, &send[..], &mut recv[..], op),
                deadline,
            )
        });
        if !done {
            std::mem::forget(send);
            std::mem::forget(recv);
            return Err(self.stalled(&mut inner, what));
        }
        Ok(recv)
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

/// Polls `request` until it completes (`true`) or `deadline` passes (`false`: the request is
/// left pending in MPI; the caller must leak its buffers).
fn complete<'a, D: ?Sized, S: mpi::request::Scope<'a>>(
    mut request: Request<'a, D, S>,
    deadline: Instant,
) -> bool {
    let mut polls = 0u32;
    loop {
        match request.test() {
            Ok(_) => return true,
            Err(pending) => request = pending,
        }
        if Instant::now() >= deadline {
            leak(request);
            return false;
        }
        pause(&mut polls);
    }
}

/// Unregisters a pending request from its scope without completing it.
fn leak<'a, D: ?Sized, S: mpi::request::Scope<'a>>(request: Request<'a, D, S>) {
    // SAFETY: the request stays pending in MPI; its caller leaks the buffers it uses, so they
    // outlive it, and MPI is never finalized after this (`give_up`).
    let _ = unsafe { request.into_raw() };
}

/// Between polls: yield the core for the first thousand, then sleep 50 µs (MPI progresses
/// an operation inside the polls, so they must stay frequent).
fn pause(polls: &mut u32) {
    *polls += 1;
    match *polls < 1000 {
        true => std::thread::yield_now(),
        false => std::thread::sleep(Duration::from_micros(50)),
    }
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
        let recv = self.reduce(what, send, SystemOperation::sum())?;
        let len = recv.len();
        Ok(Tensor::from_data(TensorData::new(recv, [len]), &device))
    }

    fn all_reduce_scalars(
        &self,
        what: &str,
        values: &mut [f64],
        op: ReduceOp,
    ) -> Result<(), CollectiveError> {
        let op = match op {
            ReduceOp::Sum => SystemOperation::sum(),
            ReduceOp::Max => SystemOperation::max(),
        };
        let reduced = self.reduce(what, values.to_vec(), op)?;
        values.copy_from_slice(&reduced);
        Ok(())
    }

    fn all_gather_bytes(&self, what: &str, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        self.gather_bytes(what, bytes)
    }

    fn barrier(&self, what: &str) -> Result<(), CollectiveError> {
        // Every rank has heard from every other: that is a barrier.
        self.arrive(&mut self.lock(), what, 0)
    }
}
