//! Helpers shared by the suite: golden safetensors files, host copies, the lock that keeps
//! Burn's per-device random generator to one test at a time. Fixture model paths come from
//! `lora_fixtures::fixture` (shared with sdpo-models' tests).

use std::path::{Path, PathBuf};

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

/// A tensor's values on the host as f32 (from any float dtype).
pub fn host_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// A tensor's values on the host as f64 (from any float dtype).
pub fn host_f64<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

/// An int tensor's values on the host as i64 (from any int dtype).
pub fn host_i64<B: Backend, const D: usize>(t: Tensor<B, D, Int>) -> Vec<i64> {
    t.into_data().iter::<i64>().collect()
}

/// Burn's random generator is one per device and process: tests running in parallel would
/// draw from it in an interleaved order, so every test that seeds it holds this lock.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Path of a file under `tests/golden/`.
pub fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join(name)
}

/// A loaded safetensors file.
pub struct Golden {
    bytes: Vec<u8>,
}

impl Golden {
    /// Reads `tests/golden/<name>`.
    pub fn open(name: &str) -> Self {
        let path = golden_path(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self { bytes }
    }

    fn view(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("valid safetensors")
    }

    /// Whether a tensor exists.
    pub fn has(&self, name: &str) -> bool {
        self.view().tensor(name).is_ok()
    }

    /// A tensor's shape and values as f64 (from f32 or f64 storage).
    pub fn f64(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        let st = self.view();
        let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let vals = match t.dtype() {
            Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
                .collect(),
            Dtype::F64 => t
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            other => panic!("{name}: unexpected dtype {other:?}"),
        };
        (t.shape().to_vec(), vals)
    }

    /// A float tensor on `B` (f32 values).
    pub fn float<B: Backend, const D: usize>(
        &self,
        name: &str,
        dev: &burn::tensor::Device<B>,
    ) -> Tensor<B, D> {
        let (shape, vals) = self.f64(name);
        let vals: Vec<f32> = vals.into_iter().map(|v| v as f32).collect();
        Tensor::from_data(TensorData::new(vals, shape), dev)
    }

    /// An int tensor on `B` (i64 storage).
    pub fn int<B: Backend, const D: usize>(
        &self,
        name: &str,
        dev: &burn::tensor::Device<B>,
    ) -> Tensor<B, D, Int> {
        let st = self.view();
        let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.dtype(), Dtype::I64, "{name}");
        let vals: Vec<i64> = t
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        Tensor::from_data(TensorData::new(vals, t.shape().to_vec()), dev)
    }
}

/// Largest `|a − b|` and the largest `|b|`.
/// `log_softmax(row)` in f64.
pub fn log_softmax(row: &[f64]) -> Vec<f64> {
    let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
    row.iter().map(|v| v - lse).collect()
}

pub fn max_abs_diff(a: &[f64], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
    (diff, scale)
}

/// Asserts that `T` runs the fused loss kernels (`sdpo_core::loss::fused`): every backend of
/// the suite has them (CPU kernels on NdArray and Flex, CubeCL kernels on Wgpu and Cuda).
pub fn assert_fused_kernels<T: crate::Target>() {
    let dev = Default::default();
    assert!(
        sdpo::core::loss::fused::fused_available::<burn::backend::Autodiff<T>>(&dev),
        "{}: the backend has fused loss kernels",
        T::NAME
    );
}
