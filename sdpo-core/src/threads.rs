//! The CPU kernels' thread pool.
//!
//! The fused CPU kernels (the losses here, the decoder's in `sdpo-models`) and Burn's CPU
//! backends split their work with rayon. A parallel operation called from a thread outside
//! rayon's pool hands the whole operation to a pool thread and sleeps until it returns: two
//! thread wake-ups per operation, which a decode step of a small model pays some three
//! hundred times. [`adopt_calling_thread`] makes the calling thread (a program's main
//! thread) one of the pool's workers instead, so its operations run where they are called
//! and only their split-off halves go to the other workers.

/// Makes the calling thread worker 0 of rayon's global pool, which gets
/// `RAYON_NUM_THREADS` threads (default: one per core) counting this one. Call it once,
/// first thing in `main`, before anything uses rayon; the `sdpo` command line does.
///
/// Measured on the development machine (2 cores, Flex, SmolLM2-135M, greedy, 32 new
/// tokens; `scripts/bench_generation.sh`, same run): batch 16 221 → 244 tokens/s, batch 1
/// 32 → 36.
///
/// With `RAYON_NUM_THREADS=1` the pool is the calling thread alone: parallel iterators,
/// `join` and `scope` run on it as before, but a job given to `rayon::spawn` runs only while
/// that thread waits inside rayon, so code that spawns a job and then blocks on it outside
/// rayon would wait forever. Nothing in sdpo-rs, Burn's CPU backends or `gemm` spawns (the
/// data-parallel tests run their ranks with one thread each).
///
/// # Errors
/// When rayon's global pool already exists (something used rayon before this call); the
/// pool then stays as it is, which is correct, only slower.
pub fn adopt_calling_thread() -> Result<(), rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
}
