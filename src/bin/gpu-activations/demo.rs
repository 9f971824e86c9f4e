//! `gpu-activations demo`: the README's main job on a built-in batch: activations, softmax and
//! the fused cross-entropy on the GPU, timed and compared with the CPU reference.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use gpu_activations::accuracy::compare;
use gpu_activations::cpu::loss::{self as loss_ref, CrossEntropyTargets};
use gpu_activations::cpu::softmax as softmax_ref;
use gpu_activations::{Activation, CrossEntropyOptions, Reduction, Targets, Tensor};

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

type BoxError = Box<dyn std::error::Error>;

/// One line of the report.
struct Line {
    op: String,
    ms: f64,
    max_abs: f64,
    passed: bool,
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

pub fn run(args: &DemoArgs) -> Result<ExitCode, BoxError> {
    let (rows, cols) = (args.rows.max(1), args.cols.max(1));
    let n = rows * cols;
    let ctx = args.backend.context()?;
    say!("adapter: {}", ctx.adapter_info());
    say!("why:     {}", ctx.selection_reason());
    say!("batch:   {rows} x {cols} logits with one class label per row");
    // A deterministic batch: pre-activations spread over [-8, 8], an upstream gradient, labels.
    let x: Vec<f32> = (0..n)
        .map(|i| ((i.wrapping_mul(7919) % 10007) as f32 / 10007.0 - 0.5) * 16.0)
        .collect();
    let g: Vec<f32> = (0..n)
        .map(|i| ((i.wrapping_mul(104_729) % 7919) as f32 / 7919.0 - 0.5) * 2.0)
        .collect();
    let labels: Vec<i64> = (0..rows).map(|r| (r * 31 % cols) as i64).collect();

    let t0 = Instant::now();
    let xt = Tensor::from_slice(&ctx, &x, &[rows, cols])?;
    let gt = Tensor::from_slice(&ctx, &g, &[rows, cols])?;
    ctx.synchronize()?;
    let upload_ms = t0.elapsed().as_secs_f64() * 1e3;

    let mut lines = Vec::new();
    // Each op runs once untimed first, so that pipeline compilation is not counted.
    let time =
        |f: &dyn Fn() -> gpu_activations::Result<Tensor>| -> Result<(Tensor, f64), BoxError> {
            f()?;
            ctx.synchronize()?;
            let t = Instant::now();
            let out = f()?;
            ctx.synchronize()?;
            Ok((out, t.elapsed().as_secs_f64() * 1e3))
        };
    let mut record = |op: String, ms: f64, got: &[f32], want: &[f64]| {
        let c = compare(
            got,
            want,
            gpu_activations::accuracy::ATOL,
            gpu_activations::accuracy::RTOL,
        );
        lines.push(Line {
            op,
            ms,
            max_abs: c.max_abs,
            passed: c.passed(),
        });
    };

    for act in [
        Activation::Relu,
        Activation::Gelu,
        Activation::Silu,
        Activation::Tanh,
        Activation::Sigmoid,
    ] {
        let (y, ms) = time(&|| xt.activation(act))?;
        let want: Vec<f64> = x.iter().map(|&v| act.reference(f64::from(v))).collect();
        record(act.name().into(), ms, &y.to_vec()?, &want);
        let (dx, ms) = time(&|| xt.activation_backward(act, &gt))?;
        let want: Vec<f64> = x
            .iter()
            .zip(&g)
            .map(|(&v, &d)| act.reference_backward(f64::from(v), f64::from(d)))
            .collect();
        record(format!("{} backward", act.name()), ms, &dx.to_vec()?, &want);
    }
    let (y, ms) = time(&|| xt.softmax())?;
    let want: Vec<f64> = x
        .chunks(cols)
        .flat_map(|r| softmax_ref::forward_row(&widen(r), false))
        .collect();
    record("softmax".into(), ms, &y.to_vec()?, &want);

    let fused = || xt.cross_entropy(Targets::Indices(&labels), &CrossEntropyOptions::default());
    fused()?;
    ctx.synchronize()?;
    let t = Instant::now();
    let out = fused()?;
    ctx.synchronize()?;
    let ce_ms = t.elapsed().as_secs_f64() * 1e3;
    let want = loss_ref::cross_entropy(
        &widen(&x),
        cols,
        CrossEntropyTargets::Indices(&labels),
        None,
        Reduction::Mean,
        -100,
        0.0,
    );
    let loss = out.loss.to_vec()?;
    record(
        "cross-entropy grad (fused)".into(),
        ce_ms,
        &out.grad.to_vec()?,
        &want.grad,
    );
    let loss_err = (f64::from(loss[0]) - want.loss[0]).abs();

    say!();
    say!(
        "{:<28} {:>10} {:>14}  within 1e-6 + 1e-5·|ref|",
        "op",
        "time (ms)",
        "max |err|"
    );
    for l in &lines {
        say!(
            "{:<28} {:>10.2} {:>14.2e}  {}",
            l.op,
            l.ms,
            l.max_abs,
            if l.passed { "yes" } else { "NO" }
        );
    }
    say!();
    say!(
        "cross-entropy loss (mean): {:.7} (CPU reference {:.7}, |err| {loss_err:.1e})",
        loss[0],
        want.loss[0]
    );
    say!("upload of 2 x {n} floats: {upload_ms:.2} ms (times exclude one warm-up run per op)");
    let worst = lines.iter().map(|l| l.max_abs).fold(loss_err, f64::max);
    say!("largest error against the CPU reference: {worst:.2e}");
    let ok = lines.iter().all(|l| l.passed) && loss_err <= 1e-5 * want.loss[0].abs();
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
