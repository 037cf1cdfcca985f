//! Times the pieces of the default loss on one shape (a profiling aid, not a
//! benchmark): `cargo bench -p sdpo-core --bench loss_profile -- 8 512 49152`.
use std::time::Instant;

use burn::backend::{Flex, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use sdpo_core::loss::{log_probs::token_log_probs, logsumexp, topk_indices};

fn main() {
    match std::env::var("SDPO_BACKEND").as_deref() {
        Ok("flex") => run::<Flex<f32>>(),
        _ => run::<NdArray<f32>>(),
    }
}

fn run<B: Backend>() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (b, t, v) = (
        args.first().copied().unwrap_or(2),
        args.get(1).copied().unwrap_or(128),
        args.get(2).copied().unwrap_or(49152),
    );
    let dev = Default::default();
    B::seed(&dev, 0);
    let x = Tensor::<B, 3>::random([b, t, v], Distribution::Normal(0.0, 3.0), &dev);
    let time = |name: &str, f: &dyn Fn() -> B::FloatElem| {
        let start = Instant::now();
        let r = f();
        println!(
            "{name:<28} {:>9.1} ms  ({r:?})",
            start.elapsed().as_secs_f64() * 1e3
        );
    };
    time("sum", &|| x.clone().sum().into_scalar());
    time("max_dim", &|| x.clone().max_dim(2).sum().into_scalar());
    time("sub+exp", &|| {
        (x.clone() - 1.0)
            .exp()
            .slice([0..1, 0..1, 0..1])
            .into_scalar()
    });
    time("logsumexp", &|| logsumexp(x.clone()).sum().into_scalar());
    time("topk_indices(100)", &|| {
        topk_indices(x.clone(), 100).float().sum().into_scalar()
    });
    let ids = x.clone().argmax(2).squeeze_dim::<2>(2);
    time("token_log_probs", &|| {
        token_log_probs(x.clone(), ids.clone()).sum().into_scalar()
    });
    let idx = topk_indices(x.clone(), 100);
    time("gather k=100", &|| {
        x.clone().gather(2, idx.clone()).sum().into_scalar()
    });
    let rows = x.clone().reshape([b * t, v]);
    time("reshape chunks max", &|| {
        rows.clone()
            .reshape([b * t, v / 16, 16])
            .max_dim(2)
            .sum()
            .into_scalar()
    });
    let cm = rows
        .clone()
        .reshape([b * t, v / 16, 16])
        .max_dim(2)
        .reshape([b * t, v / 16]);
    time("sort chunk maxima", &|| {
        cm.clone()
            .sort_descending_with_indices(1)
            .1
            .float()
            .sum()
            .into_scalar()
    });
}
