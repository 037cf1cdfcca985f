//! The CPU kernels of [`DecoderBackend`](super::DecoderBackend) on plain `f32` slices: SIMD
//! through pulp's run-time dispatch (AVX-512, AVX2+FMA, SSE, NEON, scalar), rows and tasks
//! through rayon.

pub mod attention;
pub mod elementwise;
pub mod matmul;
pub mod select;

/// A prefetch hint into the first-level cache (`_MM_HINT_T0`).
pub(crate) const NEAR: i32 = 3;
/// A prefetch hint into the second-level cache (`_MM_HINT_T1`).
pub(crate) const L2: i32 = 2;

/// Asks the CPU to bring the cache lines of `bytes` bytes from `start` into the cache `HINT`
/// names ([`NEAR`], [`L2`]). A hint only: it reads nothing, never faults (so `start` may
/// point anywhere, built with `wrapping_add`), and does nothing off x86-64.
#[inline(always)]
pub(crate) fn prefetch_lines<const HINT: i32>(start: *const f32, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let start = start as *const i8;
        let mut byte = 0;
        while byte < bytes {
            // SAFETY: a prefetch is a hint that neither reads nor faults, at any address.
            unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(start.wrapping_add(byte)) };
            byte += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, bytes);
}
