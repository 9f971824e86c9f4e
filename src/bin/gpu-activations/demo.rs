//! `gpu-activations demo`: the README's main job on a built-in batch.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use gpu_activations::{Activation, Tensor};

use crate::BackendArg;

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    backend: BackendArg,
    /// Rows of the batch.
    #[arg(long, default_value_t = 4096)]
    rows: usize,
    /// Columns (classes) of the batch.
    #[arg(long, default_value_t = 1000)]
    cols: usize,
}

/// The largest |got − want| over a result and its f64 reference.
fn max_abs_error(got: &[f32], want: impl Fn(usize) -> f64) -> f64 {
    got.iter()
        .enumerate()
        .map(|(i, &v)| (f64::from(v) - want(i)).abs())
        .fold(0.0, f64::max)
}

pub fn run(args: &DemoArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let ctx = args.backend.context()?;
    println!("adapter: {}", ctx.adapter_info());
    println!("why:     {}", ctx.selection_reason());
    let (rows, cols) = (args.rows, args.cols);
    let n = rows * cols;
    // A deterministic batch of pre-activations spread over [-8, 8] and an upstream gradient.
    let x: Vec<f32> = (0..n)
        .map(|i| ((i.wrapping_mul(7919) % 10007) as f32 / 10007.0 - 0.5) * 16.0)
        .collect();
    let g: Vec<f32> = (0..n)
        .map(|i| ((i.wrapping_mul(104729) % 7919) as f32 / 7919.0 - 0.5) * 2.0)
        .collect();

    let t0 = Instant::now();
    let xt = Tensor::from_slice(&ctx, &x, &[rows, cols])?;
    let gt = Tensor::from_slice(&ctx, &g, &[rows, cols])?;
    ctx.synchronize()?;
    let upload = t0.elapsed();

    println!();
    println!(
        "{:<12} {:>10} {:>12} {:>14} {:>14}",
        "op", "shape", "time (ms)", "fwd max|err|", "bwd max|err|"
    );
    let mut worst: f64 = 0.0;
    for act in Activation::ALL {
        let t = Instant::now();
        let y = xt.activation(act)?;
        let dx = xt.activation_backward(act, &gt)?;
        ctx.synchronize()?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let (y, dx) = (y.to_vec()?, dx.to_vec()?);
        let fwd = max_abs_error(&y, |i| act.reference(f64::from(x[i])));
        let bwd = max_abs_error(&dx, |i| {
            act.reference_backward(f64::from(x[i]), f64::from(g[i]))
        });
        worst = worst.max(fwd).max(bwd);
        println!(
            "{:<12} {:>10} {:>12.2} {:>14.2e} {:>14.2e}",
            act.name(),
            format!("{rows}x{cols}"),
            ms,
            fwd,
            bwd
        );
    }
    println!();
    println!(
        "upload of 2 x {n} floats: {:.2} ms",
        upload.as_secs_f64() * 1e3
    );
    println!("largest error against the CPU reference: {worst:.2e}");
    Ok(ExitCode::SUCCESS)
}
