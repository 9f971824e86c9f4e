//! `gpu-activations check`: every op, forward and backward, on the chosen adapter against the
//! f64 CPU reference, over random and edge-case inputs at several shapes, with f32 storage and
//! with f16 and bf16 storage (there against the reference computed from the stored inputs,
//! rounded to the storage type: one ulp of it on top of the f32 bound).

use std::process::ExitCode;

use clap::Args;
use gpu_activations::accuracy::{ATOL, RTOL, compare_stored};
use gpu_activations::cpu::gated as gated_ref;
use gpu_activations::cpu::loss::{self as loss_ref, CrossEntropyTargets};
use gpu_activations::cpu::softmax as softmax_ref;
use gpu_activations::{
    Activation, BceOptions, Context, CrossEntropyOptions, DType, Gate, HeadOptions, Reduction,
    Targets, Tensor,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::BackendArg;

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    backend: BackendArg,
}

type BoxError = Box<dyn std::error::Error>;

/// Inputs that stress every op: zeros, tiny, kinks, saturation, huge, non-finite.
const EDGES: &[f32] = &[
    0.0,
    -0.0,
    1e-7,
    -1e-7,
    0.5,
    -0.5,
    3.0,
    -3.0,
    6.0,
    20.0,
    -20.0,
    88.0,
    -88.0,
    89.0,
    -89.0,
    1e4,
    -1e4,
    1e30,
    -1e30,
    3e38,
    -3e38,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
];

struct Row {
    op: String,
    shape: String,
    max_abs: f64,
    max_rel: f64,
    passed: bool,
}

struct Checker {
    rows: Vec<Row>,
    /// The storage type of the tensors under check.
    dtype: DType,
}

impl Checker {
    /// `values` uploaded as the checker's storage type, and the values as stored (what the
    /// reference is computed from).
    fn upload(
        &self,
        ctx: &Context,
        values: &[f32],
        shape: &[usize],
    ) -> Result<(Tensor, Vec<f32>), BoxError> {
        let t = Tensor::from_slice_as(ctx, values, shape, self.dtype)?;
        let stored = values.iter().map(|&v| self.dtype.round(v)).collect();
        Ok((t, stored))
    }

    fn add(
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

fn uniform(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

pub fn run(args: &CheckArgs) -> Result<ExitCode, BoxError> {
    let ctx = args.backend.context()?;
    say!("adapter: {}", ctx.adapter_info());
    say!("bound:   |got - ref| <= {ATOL:e} + {RTOL:e}·|ref| (losses: {RTOL:e}·|ref|)");
    say!("         [float16], [bfloat16]: one ulp of the storage type more, of the reference");
    say!("         rounded to it");
    say!();
    let checker = Checker {
        rows: every_check(&ctx)?,
        dtype: DType::F32,
    };

    say!(
        "{:<52} {:<14} {:>12} {:>12}  result",
        "op",
        "shape",
        "max |err|",
        "max rel err"
    );
    for r in &checker.rows {
        say!(
            "{:<52} {:<14} {:>12.3e} {:>12.3e}  {}",
            r.op,
            r.shape,
            r.max_abs,
            r.max_rel,
            if r.passed { "pass" } else { "FAIL" }
        );
    }
    let failed = checker.rows.iter().filter(|r| !r.passed).count();
    say!();
    say!("{} checks, {failed} failed", checker.rows.len());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every check on every storage type, run on `ctx`.
fn every_check(ctx: &Context) -> Result<Vec<Row>, BoxError> {
    let mut rows = Vec::new();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let mut checker = Checker {
            rows: Vec::new(),
            dtype,
        };
        let mut rng = StdRng::seed_from_u64(2026);
        activations(ctx, &mut checker, &mut rng)?;
        softmax(ctx, &mut checker, &mut rng)?;
        cross_entropy(ctx, &mut checker, &mut rng)?;
        bce(ctx, &mut checker, &mut rng)?;
        family(ctx, &mut checker, &mut rng)?;
        rows.extend(checker.rows);
    }
    Ok(rows)
}

/// Runs every check on `ctx` and returns how many failed (what `shaders --dump` runs to learn
/// which pipelines the crate builds).
pub fn count_failures(ctx: &Context) -> Result<usize, BoxError> {
    Ok(every_check(ctx)?.iter().filter(|r| !r.passed).count())
}

fn activations(ctx: &Context, checker: &mut Checker, rng: &mut StdRng) -> Result<(), BoxError> {
    let random = uniform(rng, 4 * 257, -12.0, 12.0);
    let inputs: [(&[usize], Vec<f32>); 2] = [(&[4, 257], random), (&[EDGES.len()], EDGES.to_vec())];
    for (shape, x) in inputs {
        let (xt, x) = checker.upload(ctx, &x, shape)?;
        let (gt, g) = checker.upload(ctx, &uniform(rng, x.len(), -2.0, 2.0), shape)?;
        for act in Activation::ALL {
            let name = act.name().replace('_', "-");
            let want: Vec<f64> = x.iter().map(|&v| act.reference(f64::from(v))).collect();
            checker.add(
                name.clone(),
                shape,
                &xt.activation(act)?.to_vec()?,
                &want,
                false,
            );
            let want: Vec<f64> = x
                .iter()
                .zip(&g)
                .map(|(&v, &d)| act.reference_backward(f64::from(v), f64::from(d)))
                .collect();
            let got = xt.activation_backward(act, &gt)?.to_vec()?;
            checker.add(format!("{name}-backward"), shape, &got, &want, false);
        }
    }
    Ok(())
}

fn softmax(ctx: &Context, checker: &mut Checker, rng: &mut StdRng) -> Result<(), BoxError> {
    let mut edge = vec![1e4, 0.0, -1e4, 5.0, 3e38, -3e38, 0.0, 1.0];
    edge.extend([f32::NEG_INFINITY; 4]);
    edge.extend([
        1.0,
        f32::NAN,
        2.0,
        3.0,
        f32::NEG_INFINITY,
        0.0,
        f32::NEG_INFINITY,
        1.0,
    ]);
    let cases: Vec<(Vec<usize>, Vec<f32>)> = vec![
        (vec![1, 1], vec![0.3]),
        (vec![7, 33], uniform(rng, 7 * 33, -8.0, 8.0)),
        (vec![64, 1000], uniform(rng, 64_000, -8.0, 8.0)),
        (vec![2, 65537], uniform(rng, 2 * 65537, -8.0, 8.0)),
        (vec![5, 4], edge),
    ];
    for (shape, x) in cases {
        let cols = shape[1];
        let (xt, x) = checker.upload(ctx, &x, &shape)?;
        let (gt, g) = checker.upload(ctx, &uniform(rng, x.len(), -1.0, 1.0), &shape)?;
        for log in [false, true] {
            let name = if log { "log-softmax" } else { "softmax" };
            let yt = if log {
                xt.log_softmax()?
            } else {
                xt.softmax()?
            };
            let y = yt.to_vec()?;
            let want: Vec<f64> = x
                .chunks(cols)
                .flat_map(|r| softmax_ref::forward_row(&widen(r), log))
                .collect();
            checker.add(name, &shape, &y, &want, false);
            let dx = if log {
                yt.log_softmax_backward(&gt)?
            } else {
                yt.softmax_backward(&gt)?
            };
            let want: Vec<f64> = y
                .chunks(cols)
                .zip(g.chunks(cols))
                .flat_map(|(y, g)| softmax_ref::backward_row(&widen(y), &widen(g), log))
                .collect();
            checker.add(
                format!("{name}-backward"),
                &shape,
                &dx.to_vec()?,
                &want,
                false,
            );
        }
    }
    Ok(())
}

fn cross_entropy(ctx: &Context, checker: &mut Checker, rng: &mut StdRng) -> Result<(), BoxError> {
    for (rows, classes) in [(33, 8), (64, 1000), (4, 3)] {
        let mut z = uniform(rng, rows * classes, -6.0, 6.0);
        if classes == 3 {
            z = vec![
                1e4, -1e4, 0.0, -1e4, 1e4, 3.0, 3e4, 3e4, -3e4, 88.0, -88.0, 1.0,
            ];
        }
        let t: Vec<i64> = (0..rows)
            .map(|_| rng.random_range(0..classes as i64))
            .collect();
        let weight: Vec<f32> = (0..classes).map(|c| 0.5 + (c % 5) as f32 * 0.25).collect();
        let shape = [rows, classes];
        let (zt, z) = checker.upload(ctx, &z, &shape)?;
        for (label, o) in [
            ("mean", CrossEntropyOptions::default()),
            (
                "sum+smoothing+weight",
                CrossEntropyOptions {
                    reduction: Reduction::Sum,
                    label_smoothing: 0.1,
                    weight: Some(weight.clone()),
                    ..Default::default()
                },
            ),
            (
                "none+ignore",
                CrossEntropyOptions {
                    reduction: Reduction::None,
                    ignore_index: t[0],
                    ..Default::default()
                },
            ),
        ] {
            let out = zt.cross_entropy(Targets::Indices(&t), &o)?;
            let w = o.weight.as_ref().map(|w| widen(w));
            let want = loss_ref::cross_entropy(
                &widen(&z),
                classes,
                CrossEntropyTargets::Indices(&t),
                w.as_deref(),
                o.reduction,
                o.ignore_index,
                f64::from(o.label_smoothing),
            );
            checker.add(
                format!("cross-entropy {label} loss"),
                &shape,
                &out.loss.to_vec()?,
                &want.loss,
                true,
            );
            checker.add(
                format!("cross-entropy {label} grad"),
                &shape,
                &out.grad.to_vec()?,
                &want.grad,
                false,
            );
        }
        // Probability targets.
        let mut p = uniform(rng, rows * classes, 0.0, 1.0);
        for row in p.chunks_mut(classes) {
            let s: f32 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= s);
        }
        let (pt, p) = checker.upload(ctx, &p, &shape)?;
        let out = zt.cross_entropy(Targets::Probabilities(&pt), &CrossEntropyOptions::default())?;
        let want = loss_ref::cross_entropy(
            &widen(&z),
            classes,
            CrossEntropyTargets::Probabilities(&widen(&p)),
            None,
            Reduction::Mean,
            -100,
            0.0,
        );
        checker.add(
            "cross-entropy probs loss",
            &shape,
            &out.loss.to_vec()?,
            &want.loss,
            true,
        );
        checker.add(
            "cross-entropy probs grad",
            &shape,
            &out.grad.to_vec()?,
            &want.grad,
            false,
        );
    }
    Ok(())
}

fn bce(ctx: &Context, checker: &mut Checker, rng: &mut StdRng) -> Result<(), BoxError> {
    let (rows, cols) = (37, 29);
    let mut z = uniform(rng, rows * cols, -10.0, 10.0);
    z[..4].copy_from_slice(&[1e4, -1e4, 100.0, -100.0]);
    let y = uniform(rng, rows * cols, 0.0, 1.0);
    let w: Vec<f32> = (0..cols).map(|c| 0.5 + (c % 3) as f32 * 0.5).collect();
    let pw: Vec<f32> = (0..cols).map(|c| 1.0 + (c % 4) as f32).collect();
    let shape = [rows, cols];
    let (zt, z) = checker.upload(ctx, &z, &shape)?;
    let (yt, y) = checker.upload(ctx, &y, &shape)?;
    for (label, o) in [
        ("mean", BceOptions::default()),
        (
            "none",
            BceOptions {
                reduction: Reduction::None,
                ..Default::default()
            },
        ),
        (
            "sum+weight+pos_weight",
            BceOptions {
                reduction: Reduction::Sum,
                weight: Some(w.clone()),
                pos_weight: Some(pw.clone()),
            },
        ),
    ] {
        let out = zt.bce_with_logits(&yt, &o)?;
        let wt = o.weight.as_ref().map(|v| widen(v));
        let pwt = o.pos_weight.as_ref().map(|v| widen(v));
        let want = loss_ref::bce_with_logits(
            &widen(&z),
            &widen(&y),
            wt.as_deref(),
            pwt.as_deref(),
            o.reduction,
        );
        checker.add(
            format!("bce-with-logits {label} loss"),
            &shape,
            &out.loss.to_vec()?,
            &want.loss,
            true,
        );
        checker.add(
            format!("bce-with-logits {label} grad"),
            &shape,
            &out.grad.to_vec()?,
            &want.grad,
            false,
        );
    }
    Ok(())
}

/// `[N, C, S]` values with the class dim moved last (`[N·S, C]`), widened: the reference's
/// rows; `back` moves `[N·S, C]` rows to `[N, C, S]` instead.
fn permute_classes(v: &[f64], (n, c, s): (usize, usize, usize), back: bool) -> Vec<f64> {
    let mut out = vec![0.0; v.len()];
    for b in 0..n {
        for k in 0..c {
            for p in 0..s {
                let (dim1, last) = ((b * c + k) * s + p, (b * s + p) * c + k);
                if back {
                    out[dim1] = v[last];
                } else {
                    out[last] = v[dim1];
                }
            }
        }
    }
    out
}

fn class_last(v: &[f32], n: usize, c: usize, s: usize) -> Vec<f64> {
    permute_classes(&widen(v), (n, c, s), false)
}

fn class_back(rows: &[f64], n: usize, c: usize, s: usize) -> Vec<f64> {
    permute_classes(rows, (n, c, s), true)
}

/// The second wave's family: the gated activations, PReLU, softmax along dim 1, and the
/// losses in PyTorch's layout.
fn family(ctx: &Context, checker: &mut Checker, rng: &mut StdRng) -> Result<(), BoxError> {
    let (rows, half) = (37, 40);
    let shape = [rows, 2 * half];
    let (xt, x) = checker.upload(ctx, &uniform(rng, rows * 2 * half, -6.0, 6.0), &shape)?;
    let (gt, g) = checker.upload(ctx, &uniform(rng, rows * half, -1.0, 1.0), &[rows, half])?;
    for gate in Gate::ALL {
        let name = gate.name().replace('_', "-");
        let pairs = || {
            x.chunks(2 * half)
                .flat_map(|r| (0..half).map(move |j| (f64::from(r[j]), f64::from(r[j + half]))))
        };
        let want: Vec<f64> = pairs()
            .map(|(a, b)| gated_ref::forward_pair(gate, a, b))
            .collect();
        checker.add(
            name.clone(),
            &shape,
            &xt.gated(gate)?.to_vec()?,
            &want,
            false,
        );
        let mut want = vec![0.0; x.len()];
        for (i, (a, b)) in pairs().enumerate() {
            let (da, db) = gated_ref::backward_pair(gate, a, b, f64::from(g[i]));
            let (r, j) = (i / half, i % half);
            want[r * 2 * half + j] = da;
            want[r * 2 * half + j + half] = db;
        }
        let got = xt.gated_backward(gate, &gt)?.to_vec()?;
        checker.add(format!("{name}-backward"), &shape, &got, &want, false);
    }

    let (n, c, s) = (4, 21, 48);
    let shape = [n, c, 6, 8];
    let (xt, x) = checker.upload(ctx, &uniform(rng, n * c * s, -8.0, 8.0), &shape)?;
    let slopes: Vec<f32> = (0..c).map(|k| 0.02 * k as f32 - 0.1).collect();
    let (wt, w) = checker.upload(ctx, &slopes, &[c])?;
    let want: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let v = f64::from(v);
            if v > 0.0 {
                v
            } else {
                f64::from(w[(i / s) % c]) * v
            }
        })
        .collect();
    checker.add("prelu", &shape, &xt.prelu(&wt)?.to_vec()?, &want, false);
    prelu_backward(ctx, checker, rng)?;
    let (gt, g) = checker.upload(ctx, &uniform(rng, n * c * s, -1.0, 1.0), &shape)?;
    let g_rows = class_last(&g, n, c, s);
    for (name, log, neg) in [
        ("softmax-dim 1", false, false),
        ("log-softmax-dim 1", true, false),
        ("softmin 1", false, true),
    ] {
        let y = match (log, neg) {
            (true, _) => xt.log_softmax_dim(1)?,
            (_, true) => xt.softmin(1)?,
            _ => xt.softmax_dim(1)?,
        };
        let sign = if neg { -1.0 } else { 1.0 };
        let want: Vec<f64> = class_last(&x, n, c, s)
            .chunks(c)
            .flat_map(|r| {
                let r: Vec<f64> = r.iter().map(|v| sign * v).collect();
                softmax_ref::forward_row(&r, log)
            })
            .collect();
        checker.add(
            name,
            &shape,
            &y.to_vec()?,
            &class_back(&want, n, c, s),
            false,
        );
        // The backward from the saved output, as the reference forms it from its own output.
        let dx = match (log, neg) {
            (true, _) => y.log_softmax_dim_backward(1, &gt)?,
            (_, true) => y.softmin_backward(1, &gt)?,
            _ => y.softmax_dim_backward(1, &gt)?,
        };
        let want_dx: Vec<f64> = class_last(&y.to_vec()?, n, c, s)
            .chunks(c)
            .zip(g_rows.chunks(c))
            .flat_map(|(y, g)| {
                softmax_ref::backward_row(y, g, log)
                    .into_iter()
                    .map(move |d| sign * d)
            })
            .collect();
        checker.add(
            format!("{name} backward"),
            &shape,
            &dx.to_vec()?,
            &class_back(&want_dx, n, c, s),
            false,
        );
    }
    let labels: Vec<i64> = (0..n * s).map(|_| rng.random_range(0..c as i64)).collect();
    let o = CrossEntropyOptions {
        label_smoothing: 0.1,
        ..Default::default()
    };
    let out = xt.cross_entropy_dim1(Targets::Indices(&labels), &o)?;
    let want = loss_ref::cross_entropy(
        &class_last(&x, n, c, s),
        c,
        CrossEntropyTargets::Indices(&labels),
        None,
        Reduction::Mean,
        -100,
        0.1,
    );
    checker.add(
        "cross-entropy-dim1 loss",
        &shape,
        &out.loss.to_vec()?,
        &want.loss,
        true,
    );
    let grad = class_back(&want.grad, n, c, s);
    checker.add(
        "cross-entropy-dim1 grad",
        &shape,
        &out.grad.to_vec()?,
        &grad,
        false,
    );
    let out = xt.nll_loss_dim1(Targets::Indices(&labels), &CrossEntropyOptions::default())?;
    let want = loss_ref::nll_loss(
        &class_last(&x, n, c, s),
        c,
        &labels,
        None,
        Reduction::Mean,
        -100,
    );
    checker.add(
        "nll-loss-dim1 loss",
        &shape,
        &out.loss.to_vec()?,
        &want.loss,
        true,
    );
    let grad = class_back(&want.grad, n, c, s);
    checker.add(
        "nll-loss-dim1 grad",
        &shape,
        &out.grad.to_vec()?,
        &grad,
        false,
    );
    head_and_nll(ctx, checker, rng)
}

/// PReLU's gradients, dx and each slope's (a sum over the batch and the spatial dims, short
/// enough here that its f32 rounding stays within the absolute tolerance).
fn prelu_backward(ctx: &Context, checker: &mut Checker, rng: &mut StdRng) -> Result<(), BoxError> {
    let (n, c, s) = (3, 5, 4);
    let shape = [n, c, s];
    let (xt, x) = checker.upload(ctx, &uniform(rng, n * c * s, -1.0, 1.0), &shape)?;
    let (gt, g) = checker.upload(ctx, &uniform(rng, n * c * s, -1.0, 1.0), &shape)?;
    let slopes: Vec<f32> = (0..c).map(|k| 0.1 * k as f32 - 0.2).collect();
    let (wt, w) = checker.upload(ctx, &slopes, &[c])?;
    let (dx, dw) = xt.prelu_backward(&wt, &gt)?;
    let mut want_dw = vec![0.0; c];
    let want_dx: Vec<f64> = x
        .iter()
        .zip(&g)
        .enumerate()
        .map(|(i, (&v, &g))| {
            let (v, g, k) = (f64::from(v), f64::from(g), (i / s) % c);
            if v > 0.0 {
                g
            } else {
                want_dw[k] += g * v;
                f64::from(w[k]) * g
            }
        })
        .collect();
    checker.add("prelu-backward dx", &shape, &dx.to_vec()?, &want_dx, false);
    checker.add(
        "prelu-backward dslope",
        &[c],
        &dw.to_vec()?,
        &want_dw,
        false,
    );
    Ok(())
}

/// The losses with the class last that came with the family: NLL of log-probabilities, and the
/// head's z-loss and softcap with its per-row log-sum-exp.
fn head_and_nll(ctx: &Context, checker: &mut Checker, rng: &mut StdRng) -> Result<(), BoxError> {
    let (rows, classes) = (64, 300);
    let shape = [rows, classes];
    let (zt, z) = checker.upload(ctx, &uniform(rng, rows * classes, -20.0, 20.0), &shape)?;
    let z64 = widen(&z);
    let labels: Vec<i64> = (0..rows)
        .map(|_| rng.random_range(0..classes as i64))
        .collect();
    let out = zt.nll_loss(Targets::Indices(&labels), &CrossEntropyOptions::default())?;
    let want = loss_ref::nll_loss(&z64, classes, &labels, None, Reduction::Mean, -100);
    checker.add(
        "nll-loss loss",
        &shape,
        &out.loss.to_vec()?,
        &want.loss,
        true,
    );
    checker.add(
        "nll-loss grad",
        &shape,
        &out.grad.to_vec()?,
        &want.grad,
        false,
    );
    let head = HeadOptions {
        lse_square_scale: 1e-3,
        softcap: Some(15.0),
    };
    let o = CrossEntropyOptions::default();
    let out = zt.cross_entropy_head(Targets::Indices(&labels), &o, &head)?;
    let want = loss_ref::cross_entropy_head(
        &z64,
        classes,
        &labels,
        None,
        Reduction::Mean,
        -100,
        0.0,
        1e-3,
        Some(15.0),
    );
    let name = "cross-entropy softcap + z-loss";
    checker.add(
        format!("{name} loss"),
        &shape,
        &out.loss.to_vec()?,
        &want.loss,
        true,
    );
    checker.add(
        format!("{name} z-loss"),
        &shape,
        &out.z_loss.to_vec()?,
        &want.z_loss,
        true,
    );
    checker.add(
        format!("{name} lse"),
        &shape,
        &out.lse.to_vec()?,
        &want.lse,
        true,
    );
    checker.add(
        format!("{name} grad"),
        &shape,
        &out.grad.to_vec()?,
        &want.grad,
        false,
    );
    Ok(())
}
