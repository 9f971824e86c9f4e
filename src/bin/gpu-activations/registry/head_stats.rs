//! Per-token statistics of a head for a loss the caller writes: `head-stats` (logits X and
//! `--targets` → `--logp-output`, `--entropy-output`, `--lse-output`, under `--temperature`,
//! `--softcap`), `head-stats-backward` (the logits' gradient for `--grad-logp` and
//! `--grad-entropy`, the statistics formed first, to `--output`) and `linear-head` (the
//! statistics of X·Wᵀ + B, `--weight`, `--bias`, without the logits; timed by `bench` against
//! the materialised path in time and peak device memory).

use std::path::Path;

use gpu_activations::cpu::{head_stats as stats_ref, linear as linear_ref};
use gpu_activations::npy::file_error;
use gpu_activations::{Context, DType, Error, HeadStats, HeadStatsOutput, Targets, Tensor};

use super::loss::{ClassTargets, LossLayout, read_targets};
use super::{
    BoxError, Case, Family, Flag, Need, Op, Produced, Run, Written, bench_g, bench_x, elements,
    read_like, rows_cols, widen,
};
use crate::bench_linear::LayerBench;
use crate::check::Checker;
use crate::run::input_error;

/// Which op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Forward,
    Backward,
    Linear,
}

pub struct HeadStatsOp {
    kind: Kind,
}

/// head-stats, head-stats-backward and linear-head.
pub fn entries() -> Vec<Box<dyn Op>> {
    [Kind::Forward, Kind::Backward, Kind::Linear]
        .map(|kind| Box::new(HeadStatsOp { kind }) as Box<dyn Op>)
        .into()
}

/// The statistics' output flags.
const STATS_OUTPUTS: [Flag; 3] = [Flag::LogpOutput, Flag::EntropyOutput, Flag::LseOutput];

/// The options given (PyTorch's defaults for the rest).
fn options(run: &Run<'_>) -> HeadStats {
    let a = run.args;
    HeadStats {
        temperature: a.temperature.unwrap_or(1.0),
        ignore_index: a.ignore_index.unwrap_or(-100),
        softcap: a.softcap,
        lse_square_scale: a.lse_square_scale.unwrap_or(0.0),
    }
}

/// The class indices of `--targets`, one per row of `rows` rows of `classes` (the input's
/// shape without its last dim, or flat).
fn class_indices<'a>(
    op: &str,
    run: &'a Run<'_>,
    rows: usize,
    classes: usize,
) -> Result<(Vec<i64>, &'a Path), BoxError> {
    let path = run.path(Flag::Targets)?;
    let shape = run.shape();
    let layout = LossLayout {
        rows,
        classes,
        targets: shape[..shape.len() - 1].to_vec(),
        dim1: false,
    };
    match read_targets(op, path, &layout, shape, false)? {
        ClassTargets::Indices(t) => Ok((t, path)),
        ClassTargets::Probabilities(_) => {
            Err(file_error(path, format!("{op} takes class indices")).into())
        }
    }
}

/// A bad target is the targets file's problem.
fn on_targets(path: &Path) -> impl Fn(Error) -> BoxError + '_ {
    move |e| match e {
        Error::TargetOutOfRange { .. } => file_error(path, e.to_string()).into(),
        other => other.into(),
    }
}

/// The statistics written to their flags (float32 files, whatever the storage type).
fn written(out: &HeadStatsOutput) -> Result<Produced, BoxError> {
    let mut produced = Produced::default();
    for (flag, t) in [
        (Flag::LogpOutput, &out.logp),
        (Flag::EntropyOutput, &out.entropy),
        (Flag::LseOutput, &out.lse),
    ] {
        produced.files.push(Written {
            to: Some(flag),
            values: t.to_vec()?,
            shape: t.shape().to_vec(),
            always_f32: true,
        });
    }
    Ok(produced)
}

impl Op for HeadStatsOp {
    fn name(&self) -> String {
        match self.kind {
            Kind::Forward => "head-stats",
            Kind::Backward => "head-stats-backward",
            Kind::Linear => "linear-head",
        }
        .into()
    }

    fn family(&self) -> Family {
        match self.kind {
            Kind::Linear => Family::Layers,
            _ => Family::Losses,
        }
    }

    fn flags(&self) -> Vec<(Flag, Need)> {
        use Need::{Optional, Required};
        let mut flags = vec![
            (Flag::Targets, Required),
            (Flag::Temperature, Optional),
            (Flag::IgnoreIndex, Optional),
            (Flag::Softcap, Optional),
        ];
        match self.kind {
            Kind::Forward => flags.extend(STATS_OUTPUTS.map(|f| (f, Optional))),
            Kind::Backward => flags.extend([
                (Flag::GradLogp, Optional),
                (Flag::GradEntropy, Optional),
                (Flag::LseSquareScale, Optional),
            ]),
            Kind::Linear => {
                flags.extend([(Flag::Weight, Required), (Flag::Bias, Optional)]);
                flags.extend(STATS_OUTPUTS.map(|f| (f, Optional)));
            }
        }
        flags
    }

    fn check_outputs(&self, output: bool, given: &[Flag]) -> Result<(), String> {
        let name = self.name();
        match self.kind {
            Kind::Backward if !output => Err(format!("{name} needs --output")),
            Kind::Backward => Ok(()),
            _ if output => Err(format!(
                "--output does not apply to {name} (it writes --logp-output, --entropy-output \
                 and --lse-output)"
            )),
            _ if !given.iter().any(|f| STATS_OUTPUTS.contains(f)) => Err(format!(
                "{name} needs at least one of --logp-output, --entropy-output, --lse-output"
            )),
            _ => Ok(()),
        }
    }

    fn run(&self, run: &Run<'_>) -> Result<Produced, BoxError> {
        let name = self.name();
        if run.shape().is_empty() {
            return Err(input_error(
                run,
                format!("{name} needs an input of rank at least 1, found a scalar"),
            ));
        }
        let options = options(run);
        let x = &run.x;
        match self.kind {
            Kind::Forward => {
                let (rows, classes) = rows_cols(run.shape());
                let (labels, path) = class_indices(&name, run, rows, classes)?;
                let out = x
                    .head_stats(Targets::Indices(&labels), &options)
                    .map_err(on_targets(path))?;
                written(&out)
            }
            Kind::Backward => {
                let (rows, classes) = rows_cols(run.shape());
                let (labels, path) = class_indices(&name, run, rows, classes)?;
                let row_shape = &run.shape()[..run.shape().len() - 1];
                let upstream = |flag: Flag| -> Result<Option<Tensor>, BoxError> {
                    match run.args.path_of(flag) {
                        Some(p) => {
                            let a = read_like(p, row_shape, "the rows'")?;
                            Ok(Some(Tensor::from_slice(run.ctx(), &a.values, &a.shape)?))
                        }
                        None => Ok(None),
                    }
                };
                let (a, c) = (upstream(Flag::GradLogp)?, upstream(Flag::GradEntropy)?);
                let targets = Targets::Indices(&labels);
                let saved = x.head_stats(targets, &options).map_err(on_targets(path))?;
                let g = x.head_stats_backward(targets, &saved, a.as_ref(), c.as_ref())?;
                Produced::single(&g)
            }
            Kind::Linear => {
                let w = run.upload(&gpu_activations::npy::read_f32(run.path(Flag::Weight)?)?)?;
                let bias = match run.args.bias.as_deref() {
                    Some(p) => Some(run.upload(&gpu_activations::npy::read_f32(p)?)?),
                    None => None,
                };
                let h = run.shape().last().copied().unwrap_or(1);
                let rows = elements(run.shape()) / h.max(1);
                let classes = w.shape().first().copied().unwrap_or(0);
                let (labels, path) = class_indices(&name, run, rows, classes.max(1))?;
                let out = x
                    .linear_head(&w, bias.as_ref(), Targets::Indices(&labels), &options)
                    .map_err(on_targets(path))?;
                written(&out)
            }
        }
    }

    fn bench_shapes(&self) -> Vec<Vec<usize>> {
        match self.kind {
            Kind::Linear => vec![vec![8192, 1024, 32000]],
            _ => vec![vec![4096, 1000], vec![512, 32000]],
        }
    }

    fn case(
        &self,
        ctx: &Context,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Option<Box<dyn Case>>, BoxError> {
        if self.kind == Kind::Linear {
            return Ok(None);
        }
        let n = elements(shape);
        let (rows, classes) = rows_cols(shape);
        let x = Tensor::from_slice_as(ctx, &bench_x(n), shape, dtype)?;
        let labels: Vec<i64> = (0..rows)
            .map(|r| (r * 7919 % classes.max(1)) as i64)
            .collect();
        let row_shape = &shape[..shape.len().saturating_sub(1)];
        let options = HeadStats::default();
        let saved = x.head_stats(Targets::Indices(&labels), &options)?;
        let g = bench_g(rows);
        Ok(Some(Box::new(StatsCase {
            backward: self.kind == Kind::Backward,
            a: Tensor::from_slice(ctx, &g, row_shape)?,
            c: Tensor::from_slice(ctx, &g, row_shape)?,
            x,
            labels,
            saved,
            options,
        })))
    }

    fn layer(&self) -> Option<LayerBench> {
        (self.kind == Kind::Linear).then_some(LayerBench::LinearHead)
    }

    /// Rows that take each kernel (37 rows of 37 classes, one invocation per row; 3 rows of
    /// 5,000, a workgroup per row on a CPU adapter) with the temperature, the softcap and the
    /// z-loss, against the f64 reference; the linear head, forward and backward, with a bias
    /// and an ignored row.
    fn check(&self, ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
        let variants = [
            (
                "T=0.7",
                HeadStats {
                    temperature: 0.7,
                    ..Default::default()
                },
            ),
            (
                "softcap+z-loss",
                HeadStats {
                    softcap: Some(6.0),
                    lse_square_scale: 1e-3,
                    ..Default::default()
                },
            ),
        ];
        if self.kind == Kind::Linear {
            return check_linear(ctx, checker, &variants[0].1);
        }
        for (rows, classes) in [(37, 37), (3, 5000)] {
            let shape = [rows, classes];
            let z = checker.uniform(rows * classes, -8.0, 8.0);
            let (zt, z) = checker.upload(ctx, &z, &shape)?;
            let mut labels: Vec<i64> = (0..rows).map(|_| checker.class(classes)).collect();
            labels[1] = -100;
            let a = checker.uniform(rows, -1.0, 1.0);
            let c = checker.uniform(rows, -1.0, 1.0);
            let (at, ct) = (
                Tensor::from_slice(ctx, &a, &[rows])?,
                Tensor::from_slice(ctx, &c, &[rows])?,
            );
            for (label, options) in &variants {
                let targets = Targets::Indices(&labels);
                let out = zt.head_stats(targets, options)?;
                let z64 = widen(&z);
                let name = self.name();
                if self.kind == Kind::Forward {
                    let want = stats_ref::head_stats(&z64, classes, &labels, options);
                    for (what, got, want) in [
                        ("logp", &out.logp, &want.logp),
                        ("entropy", &out.entropy, &want.entropy),
                        ("lse", &out.lse, &want.lse),
                    ] {
                        let got = got.to_vec()?;
                        checker.add(format!("{name} {label} {what}"), &shape, &got, want, false);
                    }
                } else {
                    let g = zt.head_stats_backward(targets, &out, Some(&at), Some(&ct))?;
                    let want = stats_ref::head_stats_backward(
                        &z64,
                        classes,
                        &labels,
                        options,
                        Some(&widen(&a)),
                        Some(&widen(&c)),
                    );
                    let g = g.to_vec()?;
                    checker.add(format!("{name} {label}"), &shape, &g, &want, false);
                    // One upstream gradient alone.
                    let g = zt.head_stats_backward(targets, &out, None, Some(&ct))?;
                    let want = stats_ref::head_stats_backward(
                        &z64,
                        classes,
                        &labels,
                        options,
                        None,
                        Some(&widen(&c)),
                    );
                    let g = g.to_vec()?;
                    checker.add(
                        format!("{name} {label} entropy only"),
                        &shape,
                        &g,
                        &want,
                        false,
                    );
                }
            }
        }
        Ok(())
    }
}

/// `[37, 29] × [23, 29]ᵀ` with a bias: the statistics and the gradients against the reference.
fn check_linear(ctx: &Context, checker: &mut Checker, options: &HeadStats) -> Result<(), BoxError> {
    let (n, h, k) = (37, 29, 23);
    let x = checker.uniform(n * h, -1.0, 1.0);
    let w = checker.uniform(k * h, -1.0, 1.0);
    let b = checker.uniform(k, -0.5, 0.5);
    let (xt, x) = checker.upload(ctx, &x, &[n, h])?;
    let (wt, w) = checker.upload(ctx, &w, &[k, h])?;
    let (bt, b) = checker.upload(ctx, &b, &[k])?;
    let mut labels: Vec<i64> = (0..n).map(|_| checker.class(k)).collect();
    labels[3] = -100;
    let a = checker.uniform(n, -1.0, 1.0);
    let c = checker.uniform(n, -1.0, 1.0);
    let (at, ct) = (
        Tensor::from_slice(ctx, &a, &[n])?,
        Tensor::from_slice(ctx, &c, &[n])?,
    );
    let targets = Targets::Indices(&labels);
    let out = xt.linear_head(&wt, Some(&bt), targets, options)?;
    let (dx, dw, db) =
        xt.linear_head_backward(&wt, Some(&bt), targets, &out, Some(&at), Some(&ct))?;
    let (x64, w64) = (widen(&x), widen(&w));
    let z = linear_ref::forward(&x64, &w64, Some(&widen(&b)), n, h, k);
    let want = stats_ref::head_stats(&z, k, &labels, options);
    let g =
        stats_ref::head_stats_backward(&z, k, &labels, options, Some(&widen(&a)), Some(&widen(&c)));
    let (wdx, wdw, wdb) = linear_ref::backward(&x64, &w64, &g, n, h, k);
    let rows = [
        ("logp", out.logp, want.logp, vec![n]),
        ("entropy", out.entropy, want.entropy, vec![n]),
        ("lse", out.lse, want.lse, vec![n]),
        ("dx", dx, wdx, vec![n, h]),
        ("dw", dw, wdw, vec![k, h]),
        ("db", db, wdb, vec![k]),
    ];
    for (what, got, want, shape) in rows {
        checker.add(
            format!("linear-head {what}"),
            &shape,
            &got.to_vec()?,
            &want,
            false,
        );
    }
    Ok(())
}

/// A benchmark case: the statistics of resident logits, or their gradient from saved ones.
struct StatsCase {
    backward: bool,
    x: Tensor,
    labels: Vec<i64>,
    saved: HeadStatsOutput,
    options: HeadStats,
    a: Tensor,
    c: Tensor,
}

impl Case for StatsCase {
    fn input(&self) -> &Tensor {
        &self.x
    }

    fn record(&self) -> Result<(), BoxError> {
        let targets = Targets::Indices(&self.labels);
        if self.backward {
            let g =
                self.x
                    .head_stats_backward(targets, &self.saved, Some(&self.a), Some(&self.c))?;
            drop(g);
        } else {
            drop(self.x.head_stats(targets, &self.options)?);
        }
        Ok(())
    }

    /// Forward: the logits read once, a class index (8 bytes) per row, three statistics
    /// written per row (and the backward's two). Backward: the logits read and the gradient
    /// written, per row the index, two upstream gradients and three saved statistics.
    fn bytes(&self) -> f64 {
        let size = self.x.dtype().size();
        let (n, rows) = (self.x.len(), self.labels.len());
        if self.backward {
            (2 * size * n + (8 + 5 * 4) * rows) as f64
        } else {
            (size * n + (8 + 5 * 4) * rows) as f64
        }
    }
}
