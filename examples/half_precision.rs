//! Half precision: the same activation layer and loss head on f16 and bf16 storage. Each op
//! loads f32, computes in f32 and rounds its result once to the storage type, as PyTorch does
//! for half tensors; the example compares every result with the f64 reference computed from
//! the stored inputs, in ulps of the storage type.
//!
//! Run with `cargo run --release --example half_precision` (set `GPU_ACTIVATIONS_BACKEND` to
//! choose the adapter).

use gpu_activations::accuracy::ulp;
use gpu_activations::cpu::loss::{self as reference, CrossEntropyTargets};
use gpu_activations::{Activation, Context, CrossEntropyOptions, DType, Targets, Tensor};

/// The largest distance of `got` from `want` rounded to `dtype`, in ulps of `dtype`.
fn ulps(dtype: DType, got: &[f32], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .filter(|(g, w)| g.is_finite() && w.is_finite())
        .map(|(&g, &w)| {
            let w = f64::from(dtype.round(w as f32));
            (f64::from(g) - w).abs() / ulp(dtype, w)
        })
        .fold(0.0, f64::max)
}

fn main() -> gpu_activations::Result<()> {
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.adapter_info());
    let (rows, classes) = (512, 1000);
    let z: Vec<f32> = (0..rows * classes)
        .map(|i| ((i * 7919 % 10007) as f32 / 10007.0 - 0.5) * 12.0)
        .collect();
    let labels: Vec<i64> = (0..rows as i64).map(|r| r * 37 % classes as i64).collect();

    for dtype in [DType::F16, DType::BF16] {
        // Upload rounds to the storage type (ties to even); the reference starts from the
        // values as stored.
        let zt = Tensor::from_slice_as(&ctx, &z, &[rows, classes], dtype)?;
        let stored = zt.to_vec()?;
        let wide: Vec<f64> = stored.iter().map(|&v| f64::from(v)).collect();

        let y = zt.activation(Activation::Gelu)?;
        let want: Vec<f64> = wide
            .iter()
            .map(|&v| Activation::Gelu.reference(v))
            .collect();
        let gelu_ulps = ulps(dtype, &y.to_vec()?, &want);

        let out = zt.cross_entropy(Targets::Indices(&labels), &CrossEntropyOptions::default())?;
        let want = reference::cross_entropy(
            &wide,
            classes,
            CrossEntropyTargets::Indices(&labels),
            &CrossEntropyOptions::default(),
        );
        let grad_ulps = ulps(dtype, &out.grad.to_vec()?, &want.grad);
        println!(
            "{dtype}: gelu {} → {}, worst {gelu_ulps:.2} ulp; cross-entropy loss {} \
             (reference {:.6}), gradient worst {grad_ulps:.2} ulp",
            zt.dtype(),
            y.dtype(),
            out.loss.to_vec()?[0],
            want.loss[0],
        );
    }
    Ok(())
}
