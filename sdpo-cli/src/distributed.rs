//! [`World`]: the data-parallel ranks `sdpo train` runs as. Started by `mpirun -np N sdpo
//! train …` (a binary built with the `mpi` feature), each process is one rank: rank 0 settles
//! the plan (config, run folder, checkpoint to resume) and shares it; every rank builds the same
//! job and trains its share of each batch; rank 0 alone writes the run folder. Without a
//! launcher, one rank. See docs/distributed.md.

use std::sync::Arc;

use burn::tensor::backend::Backend;
use serde::de::DeserializeOwned;
use serde::Serialize;

use sdpo_train::collective::{launcher_world_size, Collective, SingleProcess};
use sdpo_train::{SdpoTrainer, TrainBackend};

use crate::error::{report, CliError};

/// This process's place among the ranks of a run.
#[derive(Clone, Default)]
pub struct World {
    #[cfg(feature = "mpi")]
    mpi: Option<Arc<sdpo_train::collective::mpi::MpiCollective>>,
    /// The NCCL communicator of a CUDA run, made on first use.
    #[cfg(feature = "nccl")]
    nccl: Arc<std::sync::OnceLock<Arc<sdpo_train::collective::nccl::NcclCollective>>>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "World(rank {} of {})", self.rank(), self.size())
    }
}

impl World {
    /// One rank, or this process's rank of the MPI job that started it.
    ///
    /// # Errors
    /// [`CliError::Argument`] when an MPI launcher started several ranks but this binary has
    /// no MPI support, or MPI cannot start.
    pub fn from_environment() -> Result<Self, CliError> {
        let Some(size) = launcher_world_size().filter(|&n| n > 1) else {
            return Ok(Self::default());
        };
        #[cfg(feature = "mpi")]
        {
            let _ = size;
            // The timeout is the config's, set once it is read (`set_timeout`).
            let mpi = sdpo_train::collective::mpi::MpiCollective::init(
                std::time::Duration::from_secs(600),
            )
            .map_err(|e| CliError::Argument {
                arg: "mpirun".into(),
                reason: e.to_string(),
            })?;
            Ok(Self {
                mpi: Some(Arc::new(mpi)),
                #[cfg(feature = "nccl")]
                nccl: Default::default(),
            })
        }
        #[cfg(not(feature = "mpi"))]
        Err(CliError::Argument {
            arg: "mpirun".into(),
            reason: format!(
                "started as one of {size} MPI ranks, but this sdpo was built without MPI: rebuild with `cargo build --release -p sdpo-cli --features mpi` (needs Open MPI: apt-get install openmpi-bin libopenmpi-dev libclang-dev)"
            ),
        })
    }

    /// This rank (0 is the lead: it writes the run folder).
    pub fn rank(&self) -> usize {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            return mpi.rank();
        }
        0
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            return mpi.world_size();
        }
        1
    }

    /// Whether this is rank 0.
    pub fn is_lead(&self) -> bool {
        self.rank() == 0
    }

    /// How long collective operations wait for the other ranks.
    pub fn set_timeout(&self, seconds: f64) {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            mpi.set_timeout(std::time::Duration::from_secs_f64(seconds));
        }
        #[cfg(not(feature = "mpi"))]
        let _ = seconds;
    }

    /// The collective of this world, for backend `B`.
    fn collective<B: Backend>(&self) -> Arc<dyn Collective<B>> {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            return mpi.clone();
        }
        Arc::new(SingleProcess)
    }

    /// Makes `trainer` (on `backend`) this process's rank (nothing to do for one rank). With
    /// the `nccl` feature a CUDA run sums its gradients with NCCL on the GPUs.
    ///
    /// # Errors
    /// [`CliError::Train`] when the batch does not split over the ranks, or NCCL cannot start.
    pub fn attach<B: TrainBackend>(
        &self,
        trainer: &mut SdpoTrainer<B>,
        backend: crate::backend::BackendKind,
    ) -> Result<(), CliError> {
        if self.size() == 1 {
            return Ok(());
        }
        #[cfg(feature = "nccl")]
        if let (Some(mpi), crate::backend::BackendKind::Cuda) = (&self.mpi, backend) {
            use sdpo_train::collective::nccl::NcclCollective;
            let nccl = match self.nccl.get() {
                Some(n) => n.clone(),
                None => {
                    let n = Arc::new(
                        NcclCollective::init(mpi.clone(), 0)
                            .map_err(sdpo_train::TrainError::from)?,
                    );
                    self.nccl.get_or_init(|| n).clone()
                }
            };
            trainer.set_collective(Arc::new(nccl))?;
            return Ok(());
        }
        let _ = backend;
        trainer.set_collective(self.collective::<B::InnerBackend>())?;
        Ok(())
    }

    /// Rank 0's `value` on every rank (`value` is only read on rank 0).
    ///
    /// # Errors
    /// [`CliError::Argument`] when the collective fails or the value does not round-trip.
    pub fn share<T: Serialize + DeserializeOwned>(
        &self,
        what: &str,
        value: Option<&T>,
    ) -> Result<T, CliError> {
        let fail = |reason: String| CliError::Argument {
            arg: what.to_string(),
            reason,
        };
        let bytes = match value {
            Some(v) => serde_json::to_vec(v).map_err(|e| fail(e.to_string()))?,
            None => Vec::new(),
        };
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            let all = mpi
                .gather_bytes(what, &bytes)
                .map_err(|e| fail(e.to_string()))?;
            let lead = all.into_iter().next().unwrap_or_default();
            return serde_json::from_slice(&lead).map_err(|e| fail(e.to_string()));
        }
        serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))
    }

    /// Prints `error` (naming this rank) and ends every rank of the job: the others may be
    /// waiting in an operation this rank will never join.
    pub fn fail(&self, error: &CliError) -> ! {
        eprintln!("rank {} of {}: {}", self.rank(), self.size(), report(error));
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            mpi.abort(error.exit_code())
        }
        std::process::exit(error.exit_code())
    }
}
