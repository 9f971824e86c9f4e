//! `gpu-activations demo`: the README's main job on a built-in batch: the registry's demo ops
//! (activations forward and backward, softmax and the fused cross-entropy) on the GPU, timed
//! and compared with the CPU reference.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use clap::builder::RangedU64ValueParser;
use gpu_activations::DType;
use gpu_activations::accuracy::{ATOL, RTOL, compare};

use crate::BackendArg;
use crate::registry::{self, BoxError};
use crate::sizes;

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    backend: BackendArg,
    /// Rows of the batch (at least 1).
    #[arg(long, default_value_t = 4096, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    rows: usize,
    /// Columns (classes) of the batch (at least 1).
    #[arg(long, default_value_t = 1000, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    cols: usize,
}

/// One line of the report.
struct Line {
    op: String,
    ms: f64,
    max_abs: f64,
    passed: bool,
}

pub fn run(args: &DemoArgs) -> Result<ExitCode, BoxError> {
    let (rows, cols) = (args.rows, args.cols);
    let n = sizes::elements("--rows × --cols", &[rows, cols])
        .map_err(|e| format!("--rows {rows} --cols {cols}: {e}"))?;
    let ctx = args.backend.context()?;
    // x, the gradient and the output of each op on the device; x, the gradient and the
    // reference on the host.
    sizes::check_fits(&ctx, "--rows × --cols", n, DType::F32, 4, 3)
        .map_err(|e| format!("--rows {rows} --cols {cols}: {e}"))?;
    say!("adapter: {}", ctx.adapter_info());
    say!("why:     {}", ctx.selection_reason());
    say!("batch:   {rows} x {cols} logits with one class label per row");
    let shape = [rows, cols];

    let mut lines = Vec::new();
    for op in registry::registry().into_iter().filter(|op| op.in_demo()) {
        let Some(case) = op.case(&ctx, &shape, DType::F32)? else {
            continue;
        };
        // Each op runs once untimed first, so that pipeline compilation is not counted.
        case.record()?;
        ctx.synchronize()?;
        let t = Instant::now();
        case.record()?;
        ctx.synchronize()?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        for c in case.compare()? {
            let r = compare(&c.got, &c.want, ATOL, RTOL);
            lines.push(Line {
                op: format!("{} {}", op.name(), c.what).trim().to_string(),
                ms,
                max_abs: r.max_abs,
                passed: r.passed(),
            });
        }
    }

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
    say!("times exclude one warm-up run per op");
    let worst = lines.iter().map(|l| l.max_abs).fold(0.0, f64::max);
    say!("largest error against the CPU reference: {worst:.2e}");
    Ok(if lines.iter().all(|l| l.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
