//! `gpu-activations check`: every op of the registry, forward and backward, on the chosen
//! adapter against the f64 CPU reference, over random and edge-case inputs at several shapes
//! (the cases each entry declares, the edge values from `gpu_activations::cases`), with f32
//! storage and with f16 and bf16 storage (there against the reference computed from the
//! stored inputs, rounded to the storage type: one ulp of it on top of the f32 bound); then
//! the optimizers' steps.

use std::process::ExitCode;

use clap::Args;
use gpu_activations::accuracy::{ATOL, RTOL, compare_stored};
use gpu_activations::{Adam, AdamState, Context, DType, Sgd, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::BackendArg;
use crate::registry::{self, BoxError, widen};

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    backend: BackendArg,
}

/// One line of the table.
pub struct Row {
    op: String,
    shape: String,
    max_abs: f64,
    max_rel: f64,
    passed: bool,
}

/// The table being filled, the storage type under check and the seeded random source.
pub struct Checker {
    rows: Vec<Row>,
    /// The storage type of the tensors under check.
    pub dtype: DType,
    rng: StdRng,
}

impl Checker {
    fn new(dtype: DType) -> Checker {
        Checker {
            rows: Vec::new(),
            dtype,
            rng: StdRng::seed_from_u64(2026),
        }
    }

    /// `values` uploaded as the checker's storage type, and the values as stored (what the
    /// reference is computed from).
    pub fn upload(
        &self,
        ctx: &Context,
        values: &[f32],
        shape: &[usize],
    ) -> Result<(Tensor, Vec<f32>), BoxError> {
        let t = Tensor::from_slice_as(ctx, values, shape, self.dtype)?;
        let stored = values.iter().map(|&v| self.dtype.round(v)).collect();
        Ok((t, stored))
    }

    /// `n` values uniform in `[lo, hi)`.
    pub fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.rng.random_range(lo..hi)).collect()
    }

    /// A class index in `[0, classes)`.
    pub fn class(&mut self, classes: usize) -> i64 {
        self.rng.random_range(0..classes as i64)
    }

    /// A row of the table: `got` against `want` within the bound (`rtol_only`: the relative
    /// part alone, for losses).
    pub fn add(
        &mut self,
        op: impl Into<String>,
        shape: &[usize],
        got: &[f32],
        want: &[f64],
        rtol_only: bool,
    ) {
        let atol = if rtol_only { 1e-30 } else { ATOL };
        let c = compare_stored(self.dtype, got, want, atol, RTOL);
        let op: String = op.into();
        self.rows.push(Row {
            op: match self.dtype {
                DType::F32 => op,
                half => format!("{op} [{half}]"),
            },
            shape: format!("{shape:?}"),
            max_abs: c.max_abs,
            max_rel: c.max_rel,
            passed: c.passed(),
        });
    }
}

pub fn run(args: &CheckArgs) -> Result<ExitCode, BoxError> {
    let ctx = args.backend.context()?;
    say!("adapter: {}", ctx.adapter_info());
    say!("bound:   |got - ref| <= {ATOL:e} + {RTOL:e}·|ref| (losses: {RTOL:e}·|ref|)");
    say!("         [float16], [bfloat16]: one ulp of the storage type more, of the reference");
    say!("         rounded to it");
    say!();
    let rows = every_check(&ctx)?;
    say!(
        "{:<52} {:<14} {:>12} {:>12}  result",
        "op",
        "shape",
        "max |err|",
        "max rel err"
    );
    for r in &rows {
        say!(
            "{:<52} {:<14} {:>12.3e} {:>12.3e}  {}",
            r.op,
            r.shape,
            r.max_abs,
            r.max_rel,
            if r.passed { "pass" } else { "FAIL" }
        );
    }
    let failed = rows.iter().filter(|r| !r.passed).count();
    say!();
    say!("{} checks, {failed} failed", rows.len());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every op's check on every storage type, then the optimizers', run on `ctx`.
fn every_check(ctx: &Context) -> Result<Vec<Row>, BoxError> {
    let ops = registry::registry();
    let mut rows = Vec::new();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let mut checker = Checker::new(dtype);
        for op in &ops {
            op.check(ctx, &mut checker)?;
        }
        if dtype == DType::F32 {
            optimizers(ctx, &mut checker)?;
        }
        rows.extend(checker.rows);
    }
    Ok(rows)
}

/// Runs every check on `ctx` and returns how many failed (what `shaders --dump` runs to learn
/// which pipelines the crate builds).
pub fn count_failures(ctx: &Context) -> Result<usize, BoxError> {
    Ok(every_check(ctx)?.iter().filter(|r| !r.passed).count())
}

/// Three steps of Adam (with an L2 term) and of SGD on the adapter against the same steps on
/// the CPU backend (the f64 reference, its state kept in f32 as the device's).
fn optimizers(ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
    let n = 1031;
    let theta = checker.uniform(n, -1.0, 1.0);
    let grads: Vec<Vec<f32>> = (0..3).map(|_| checker.uniform(n, -1.0, 1.0)).collect();
    let cpu = Context::cpu();
    let adam = Adam {
        lr: 0.01,
        weight_decay: 1e-3,
        ..Adam::default()
    };
    let sgd = Sgd {
        lr: 0.1,
        weight_decay: 1e-2,
    };
    let steps = |on: &Context, use_adam: bool| -> Result<Vec<f32>, BoxError> {
        let p = Tensor::from_slice(on, &theta, &[n])?;
        let mut state = AdamState::new(&p)?;
        for g in &grads {
            let g = Tensor::from_slice(on, g, &[n])?;
            if use_adam {
                adam.step(&p, &g, &mut state)?;
            } else {
                sgd.step(&p, &g)?;
            }
        }
        Ok(p.to_vec()?)
    };
    for (name, use_adam) in [("adam 3 steps", true), ("sgd 3 steps", false)] {
        let want = widen(&steps(&cpu, use_adam)?);
        let got = steps(ctx, use_adam)?;
        checker.add(name, &[n], &got, &want, false);
    }
    Ok(())
}
