//! The CPU kernels of [`DecoderBackend`](super::DecoderBackend) on plain `f32` slices: SIMD
//! through pulp's run-time dispatch (AVX-512, AVX2+FMA, SSE, NEON, scalar), rows and tasks
//! through rayon.

pub mod attention;
pub mod elementwise;
pub mod matmul;
pub mod select;
