//! Offload an activation layer: upload a batch of pre-activations once, apply several
//! activations and their backward passes on the GPU, read everything back once, and compare
//! with the CPU reference.
//!
//! Run with `cargo run --release --example offload` (set `GPU_ACTIVATIONS_BACKEND` to choose).

use std::time::Instant;

use gpu_activations::{Activation, Context, Tensor};

fn main() -> gpu_activations::Result<()> {
    let ctx = Context::new()?;
    println!(
        "adapter: {} ({})",
        ctx.adapter_info(),
        ctx.selection_reason()
    );

    // A batch of 256 × 4096 pre-activations and an upstream gradient, made deterministically.
    let (rows, cols) = (256, 4096);
    let n = rows * cols;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 % 10007) as f32 / 10007.0 - 0.5) * 16.0)
        .collect();
    let g: Vec<f32> = (0..n)
        .map(|i| ((i * 104729 % 7919) as f32 / 7919.0 - 0.5) * 2.0)
        .collect();

    let start = Instant::now();
    let xt = Tensor::from_slice(&ctx, &x, &[rows, cols])?;
    let gt = Tensor::from_slice(&ctx, &g, &[rows, cols])?;
    let acts = [
        Activation::Gelu,
        Activation::Silu,
        Activation::Tanh,
        Activation::Softplus {
            beta: 1.0,
            threshold: 20.0,
        },
    ];
    // Every op below is recorded and submitted without waiting.
    let results: Vec<(Activation, Tensor, Tensor)> = acts
        .iter()
        .map(|&a| Ok((a, xt.activation(a)?, xt.activation_backward(a, &gt)?)))
        .collect::<gpu_activations::Result<_>>()?;
    // Reading back is the only wait.
    let host: Vec<(Activation, Vec<f32>, Vec<f32>)> = results
        .iter()
        .map(|(a, y, dx)| Ok((*a, y.to_vec()?, dx.to_vec()?)))
        .collect::<gpu_activations::Result<_>>()?;
    let elapsed = start.elapsed();

    for (act, y, dx) in &host {
        let max_err = |got: &[f32], want: &dyn Fn(usize) -> f64| {
            got.iter()
                .enumerate()
                .map(|(i, &v)| (f64::from(v) - want(i)).abs())
                .fold(0.0, f64::max)
        };
        let fwd = max_err(y, &|i| act.reference(f64::from(x[i])));
        let bwd = max_err(dx, &|i| {
            act.reference_backward(f64::from(x[i]), f64::from(g[i]))
        });
        println!(
            "{:<10} forward max |err| {fwd:.2e}   backward max |err| {bwd:.2e}",
            act.name()
        );
    }
    println!(
        "{} activations forward + backward on {n} elements: {:.1} ms including upload and read-back",
        acts.len(),
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}
