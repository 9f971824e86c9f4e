//! The losses: the cross-entropy (with the LLM head's options), NLL and BCE with logits with
//! the class along the last dim, and the cross-entropy and NLL in PyTorch's layout (the class
//! at dim 1). Each writes the gradient with respect to its input to `--output` and the loss to
//! `--loss-output`.

use std::path::Path;

use gpu_activations::cases::CROSS_ENTROPY_EDGE_ROWS;
use gpu_activations::cpu::loss::{self as loss_ref, CrossEntropyTargets};
use gpu_activations::npy::{self, Values, file_error};
use gpu_activations::{
    BceOptions, Context, CrossEntropyOptions, DType, Error, HeadOptions, LossAndGrad, Reduction,
    Targets, Tensor, class_indices_from_floats,
};

use super::softmax::permute_classes;
use super::{
    BoxError, Case, Compared, Family, Flag, Need, Op, Produced, Run, Written, bench_g, bench_x,
    elements, read_like, read_table, rows_cols, widen,
};
use crate::check::Checker;
use crate::run::input_error;

/// Which loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    CrossEntropy,
    Nll,
    Bce,
}

/// A loss with the class along the last dim, or at dim 1 (`dim1`).
#[derive(Clone, Copy)]
pub struct LossOp {
    loss: Loss,
    dim1: bool,
}

/// cross-entropy, bce-with-logits and nll-loss, the class along the last dim.
pub fn last_dim_entries() -> Vec<Box<dyn Op>> {
    [Loss::CrossEntropy, Loss::Bce, Loss::Nll]
        .map(|loss| Box::new(LossOp { loss, dim1: false }) as Box<dyn Op>)
        .into()
}

/// cross-entropy-dim1 and nll-loss-dim1 (and, first, nll-loss's place in the old order).
pub fn dim1_entries() -> Vec<Box<dyn Op>> {
    [Loss::CrossEntropy, Loss::Nll]
        .map(|loss| Box::new(LossOp { loss, dim1: true }) as Box<dyn Op>)
        .into()
}

/// The default `ignore_index` (PyTorch's).
const IGNORE_INDEX: i64 = -100;

impl Op for LossOp {
    fn name(&self) -> String {
        let base = match self.loss {
            Loss::CrossEntropy => "cross-entropy",
            Loss::Nll => "nll-loss",
            Loss::Bce => "bce-with-logits",
        };
        let suffix = if self.dim1 { "-dim1" } else { "" };
        format!("{base}{suffix}")
    }

    fn family(&self) -> Family {
        Family::Losses
    }

    fn flags(&self) -> Vec<(Flag, Need)> {
        use Need::{Optional, Required};
        let mut flags = vec![
            (Flag::Targets, Required),
            (Flag::Reduction, Optional),
            (Flag::Weight, Optional),
            (Flag::LossOutput, Optional),
        ];
        match self.loss {
            Loss::Bce => flags.push((Flag::PosWeight, Optional)),
            Loss::Nll => flags.push((Flag::IgnoreIndex, Optional)),
            Loss::CrossEntropy => {
                flags.extend([
                    (Flag::IgnoreIndex, Optional),
                    (Flag::LabelSmoothing, Optional),
                ]);
                if !self.dim1 {
                    flags.extend(
                        [
                            Flag::LseSquareScale,
                            Flag::Softcap,
                            Flag::LseOutput,
                            Flag::ZLossOutput,
                        ]
                        .map(|f| (f, Optional)),
                    );
                }
            }
        }
        flags
    }

    fn run(&self, run: &Run<'_>) -> Result<Produced, BoxError> {
        let out = match self.loss {
            Loss::Bce => return bce(run),
            _ => class_loss(self, run)?,
        };
        Ok(out)
    }

    fn bench_shapes(&self) -> Vec<Vec<usize>> {
        match (self.loss, self.dim1) {
            (_, true) => vec![vec![32, 21, 128, 128]],
            (Loss::Bce, _) => vec![vec![16_777_216]],
            _ => vec![vec![4096, 1000], vec![512, 32000]],
        }
    }

    fn case(
        &self,
        ctx: &Context,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Option<Box<dyn Case>>, BoxError> {
        let n = elements(shape);
        let (x, g) = (bench_x(n), bench_g(n));
        // BCE's targets are probabilities.
        let t: Vec<f32> = match self.loss {
            Loss::Bce => g.iter().map(|v| v.abs()).collect(),
            _ => Vec::new(),
        };
        // One class index per row, or per [N, d1, …, dk] position in PyTorch's layout.
        let (positions, classes) = match shape {
            [_, c, ..] if self.dim1 => (n / (*c).max(1), *c),
            _ => rows_cols(shape),
        };
        Ok(Some(Box::new(LossCase {
            op: *self,
            xt: Tensor::from_slice_as(ctx, &x, shape, dtype)?,
            tt: if t.is_empty() {
                None
            } else {
                Some(Tensor::from_slice_as(ctx, &t, shape, dtype)?)
            },
            labels: (0..positions)
                .map(|r| (r * 7919 % classes.max(1)) as i64)
                .collect(),
            x,
        })))
    }

    fn check(&self, ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
        match (self.loss, self.dim1) {
            (Loss::CrossEntropy, false) => {
                check_cross_entropy(ctx, checker)?;
                check_head(ctx, checker)
            }
            (Loss::Nll, false) => check_nll(ctx, checker),
            (Loss::Bce, _) => check_bce(ctx, checker),
            (loss, true) => check_dim1(loss, ctx, checker),
        }
    }

    fn in_demo(&self) -> bool {
        self.loss == Loss::CrossEntropy && !self.dim1
    }
}

/// How a loss's input lays out its rows: `rows` rows of `classes`, one class index per row in
/// a targets array of shape `targets` (`[N, d1, …, dk]` with the class at dim 1; the input's
/// shape without its last dim, or a flat `[rows]`, with the class last).
pub struct LossLayout {
    pub rows: usize,
    pub classes: usize,
    pub targets: Vec<usize>,
    pub dim1: bool,
}

impl LossLayout {
    fn of(op: &LossOp, run: &Run<'_>) -> Result<LossLayout, BoxError> {
        let shape = run.shape();
        if !op.dim1 {
            let (rows, classes) = match shape {
                [] => {
                    return Err(input_error(
                        run,
                        format!(
                            "{} needs an array of rank at least 1, found a scalar",
                            op.name()
                        ),
                    ));
                }
                _ => rows_cols(shape),
            };
            return Ok(LossLayout {
                rows,
                classes,
                targets: shape[..shape.len() - 1].to_vec(),
                dim1: false,
            });
        }
        match shape {
            [n, c, spatial @ ..] => Ok(LossLayout {
                rows: elements(shape) / (*c).max(1),
                classes: *c,
                targets: [&[*n][..], spatial].concat(),
                dim1: true,
            }),
            _ => Err(input_error(
                run,
                format!(
                    "{} (the class at dim 1) needs an input of rank at least 2, found shape \
                     {shape:?}",
                    op.name()
                ),
            )),
        }
    }

    /// Whether a targets array of `shape` holds one class index per row.
    fn one_per_row(&self, shape: &[usize]) -> bool {
        shape == self.targets || (!self.dim1 && shape == [self.rows])
    }

    /// What the targets must be, for messages.
    fn expected(&self) -> String {
        if self.dim1 || self.targets == [self.rows] {
            format!("shape {:?}", self.targets)
        } else {
            format!("shape {:?} or [{}]", self.targets, self.rows)
        }
    }
}

/// What a targets file holds.
pub enum ClassTargets {
    Indices(Vec<i64>),
    Probabilities(npy::Array<f32>),
}

/// The targets of a class loss: integers, or whole numbers stored as floats, one per row; or
/// (where `probabilities`) floats of the input's shape.
pub fn read_targets(
    op: &str,
    path: &Path,
    layout: &LossLayout,
    shape: &[usize],
    probabilities: bool,
) -> Result<ClassTargets, BoxError> {
    let values = npy::read(path)?;
    let one_per_row = layout.one_per_row(values.shape());
    match values {
        Values::Int(t) if one_per_row => Ok(ClassTargets::Indices(t.values)),
        floats if probabilities && floats.shape() == shape => {
            Ok(ClassTargets::Probabilities(floats.into_f32(path)?))
        }
        Values::Int(_) => Err(file_error(
            path,
            format!(
                "shape {:?} does not give one class index per row of the input {shape:?} ({})",
                values.shape(),
                layout.expected()
            ),
        )
        .into()),
        floats if one_per_row => {
            let values: Vec<f64> = match floats {
                Values::F64(a) => a.values,
                other => other
                    .into_f32(path)?
                    .values
                    .into_iter()
                    .map(f64::from)
                    .collect(),
            };
            // Named after this op (the library's check is the cross-entropy's).
            class_indices_from_floats(&values)
                .map(ClassTargets::Indices)
                .map_err(|e| match e {
                    Error::TargetNotInteger { row, value, .. } => file_error(
                        path,
                        format!("{op}: target at row {row} is {value}, not an integer class index"),
                    )
                    .into(),
                    other => other.into(),
                })
        }
        floats => {
            let either = if probabilities {
                format!(" nor probabilities of the input's shape {shape:?}")
            } else {
                String::new()
            };
            Err(file_error(
                path,
                format!(
                    "shape {:?} is not one class index per row of the input {shape:?} ({}){either}",
                    floats.shape(),
                    layout.expected()
                ),
            )
            .into())
        }
    }
}

/// The cross-entropy options given (PyTorch's defaults for the rest), with the per-class
/// weights of `weight` (length `classes`).
pub fn class_options(
    run: &Run<'_>,
    weight: Option<&Path>,
    classes: usize,
) -> Result<CrossEntropyOptions, BoxError> {
    let args = run.args;
    Ok(CrossEntropyOptions {
        reduction: args.reduction.map_or(Reduction::Mean, Into::into),
        ignore_index: args.ignore_index.unwrap_or(IGNORE_INDEX),
        label_smoothing: args.label_smoothing.unwrap_or(0.0),
        weight: read_table(weight, classes, "the class weights (one per class)")?,
    })
}

/// The head's options given: the z-loss and the softcap.
pub fn head_options(run: &Run<'_>) -> HeadOptions {
    HeadOptions {
        lse_square_scale: run.args.lse_square_scale.unwrap_or(0.0),
        softcap: run.args.softcap,
    }
}

/// Whether any of the head's options or outputs is given (the cross-entropy then runs as
/// `Tensor::cross_entropy_head`).
fn head_wanted(run: &Run<'_>) -> bool {
    let a = run.args;
    a.lse_square_scale.is_some()
        || a.softcap.is_some()
        || a.lse_output.is_some()
        || a.z_loss_output.is_some()
}

/// The loss, then the gradient: what every loss writes.
fn loss_and_grad(out: &LossAndGrad) -> Result<Produced, BoxError> {
    Produced::single(&out.grad)?.with(Some(Flag::LossOutput), &out.loss)
}

fn class_loss(op: &LossOp, run: &Run<'_>) -> Result<Produced, BoxError> {
    let path = run.path(Flag::Targets)?;
    let layout = LossLayout::of(op, run)?;
    let options = class_options(run, run.args.weight.as_deref(), layout.classes)?;
    let shape = run.shape();
    let x = &run.x;
    let on_targets = |e: Error| -> BoxError {
        match e {
            Error::TargetOutOfRange { .. } | Error::TargetNotInteger { .. } => {
                file_error(path, e.to_string()).into()
            }
            other => other.into(),
        }
    };
    let probabilities = op.loss == Loss::CrossEntropy && !head_wanted(run);
    let targets = read_targets(&op.name(), path, &layout, shape, probabilities)?;
    if op.loss == Loss::CrossEntropy && head_wanted(run) {
        let ClassTargets::Indices(indices) = targets else {
            return Err(file_error(path, "the head options take class indices").into());
        };
        let out = x
            .cross_entropy_head(Targets::Indices(&indices), &options, &head_options(run))
            .map_err(on_targets)?;
        let mut produced = Produced::single(&out.grad)?
            .with(Some(Flag::LossOutput), &out.loss)?
            .with(Some(Flag::ZLossOutput), &out.z_loss)?;
        produced.files.push(Written {
            to: Some(Flag::LseOutput),
            values: out.lse.to_vec()?,
            shape: out.lse.shape().to_vec(),
            always_f32: true,
        });
        return Ok(produced);
    }
    let probs;
    let targets = match &targets {
        ClassTargets::Indices(i) => Targets::Indices(i),
        ClassTargets::Probabilities(p) => {
            probs = run.upload(p)?;
            Targets::Probabilities(&probs)
        }
    };
    let out = match (op.loss, op.dim1) {
        (Loss::CrossEntropy, false) => x.cross_entropy(targets, &options),
        (Loss::CrossEntropy, true) => x.cross_entropy_dim1(targets, &options),
        (_, false) => x.nll_loss(targets, &options),
        (_, true) => x.nll_loss_dim1(targets, &options),
    }
    .map_err(on_targets)?;
    loss_and_grad(&out)
}

fn bce(run: &Run<'_>) -> Result<Produced, BoxError> {
    let path = run.path(Flag::Targets)?;
    let shape = run.shape();
    let t = read_like(path, shape, "the input's")?;
    let cols = shape.last().copied().unwrap_or(1);
    let options = BceOptions {
        reduction: run.args.reduction.map_or(Reduction::Mean, Into::into),
        weight: read_table(
            run.args.weight.as_deref(),
            cols,
            "--weight (bce: one per column)",
        )?,
        pos_weight: read_table(
            run.args.pos_weight.as_deref(),
            cols,
            "--pos-weight (one per column)",
        )?,
    };
    let out = run.x.bce_with_logits(&run.upload(&t)?, &options)?;
    loss_and_grad(&out)
}

fn check_cross_entropy(ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
    let edge: Vec<f32> = CROSS_ENTROPY_EDGE_ROWS.iter().flatten().copied().collect();
    for (rows, classes) in [(33, 8), (64, 1000), (CROSS_ENTROPY_EDGE_ROWS.len(), 3)] {
        let z = if classes == 3 {
            edge.clone()
        } else {
            checker.uniform(rows * classes, -6.0, 6.0)
        };
        let t: Vec<i64> = (0..rows).map(|_| checker.class(classes)).collect();
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
            let want =
                loss_ref::cross_entropy(&widen(&z), classes, CrossEntropyTargets::Indices(&t), &o);
            add_loss(
                checker,
                &format!("cross-entropy {label}"),
                &shape,
                &out,
                &want,
            )?;
        }
        // Probability targets.
        let mut p = checker.uniform(rows * classes, 0.0, 1.0);
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
            &CrossEntropyOptions::default(),
        );
        add_loss(checker, "cross-entropy probs", &shape, &out, &want)?;
    }
    Ok(())
}

/// A loss's two rows: the loss (relative bound alone) and the gradient.
fn add_loss(
    checker: &mut Checker,
    name: &str,
    shape: &[usize],
    out: &LossAndGrad,
    want: &loss_ref::LossReference,
) -> Result<(), BoxError> {
    checker.add(
        format!("{name} loss"),
        shape,
        &out.loss.to_vec()?,
        &want.loss,
        true,
    );
    checker.add(
        format!("{name} grad"),
        shape,
        &out.grad.to_vec()?,
        &want.grad,
        false,
    );
    Ok(())
}

fn check_bce(ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
    let (rows, cols) = (37, 29);
    let mut z = checker.uniform(rows * cols, -10.0, 10.0);
    z[..4].copy_from_slice(&[1e4, -1e4, 100.0, -100.0]);
    let y = checker.uniform(rows * cols, 0.0, 1.0);
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
        let want = loss_ref::bce_with_logits(&widen(&z), &widen(&y), &o);
        add_loss(
            checker,
            &format!("bce-with-logits {label}"),
            &shape,
            &out,
            &want,
        )?;
    }
    Ok(())
}

/// NLL of log-probabilities with the class last.
fn check_nll(ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
    let (rows, classes) = (64, 300);
    let shape = [rows, classes];
    let z = checker.uniform(rows * classes, -20.0, 20.0);
    let (zt, z) = checker.upload(ctx, &z, &shape)?;
    let labels: Vec<i64> = (0..rows).map(|_| checker.class(classes)).collect();
    let out = zt.nll_loss(Targets::Indices(&labels), &CrossEntropyOptions::default())?;
    let want = loss_ref::nll_loss(
        &widen(&z),
        classes,
        &labels,
        &CrossEntropyOptions::default(),
    );
    add_loss(checker, "nll-loss", &shape, &out, &want)
}

/// The head's z-loss and softcap with its per-row log-sum-exp.
fn check_head(ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
    let (rows, classes) = (64, 300);
    let shape = [rows, classes];
    let z = checker.uniform(rows * classes, -20.0, 20.0);
    let (zt, z) = checker.upload(ctx, &z, &shape)?;
    let labels: Vec<i64> = (0..rows).map(|_| checker.class(classes)).collect();
    let head = HeadOptions {
        lse_square_scale: 1e-3,
        softcap: Some(15.0),
    };
    let o = CrossEntropyOptions::default();
    let out = zt.cross_entropy_head(Targets::Indices(&labels), &o, &head)?;
    let want = loss_ref::cross_entropy_head(
        &widen(&z),
        classes,
        &labels,
        &CrossEntropyOptions::default(),
        &HeadOptions {
            lse_square_scale: 1e-3,
            softcap: Some(15.0),
        },
    );
    let name = "cross-entropy softcap + z-loss";
    let rows_of = [
        ("loss", out.loss.to_vec()?, &want.loss, true),
        ("z-loss", out.z_loss.to_vec()?, &want.z_loss, true),
        ("lse", out.lse.to_vec()?, &want.lse, true),
        ("grad", out.grad.to_vec()?, &want.grad, false),
    ];
    for (what, got, want, rtol_only) in rows_of {
        checker.add(format!("{name} {what}"), &shape, &got, want, rtol_only);
    }
    Ok(())
}

/// The cross-entropy (with label smoothing) and NLL in PyTorch's layout: `[4, 21, 6, 8]`.
fn check_dim1(loss: Loss, ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
    let (n, c, s) = (4, 21, 48);
    let shape = [n, c, 6, 8];
    let x = checker.uniform(n * c * s, -8.0, 8.0);
    let (xt, x) = checker.upload(ctx, &x, &shape)?;
    let rows = permute_classes(&widen(&x), (n, c, s), false);
    let labels: Vec<i64> = (0..n * s).map(|_| checker.class(c)).collect();
    let (name, out, want) = if loss == Loss::CrossEntropy {
        let o = CrossEntropyOptions {
            label_smoothing: 0.1,
            ..Default::default()
        };
        let out = xt.cross_entropy_dim1(Targets::Indices(&labels), &o)?;
        let want = loss_ref::cross_entropy(
            &rows,
            c,
            CrossEntropyTargets::Indices(&labels),
            &CrossEntropyOptions {
                label_smoothing: 0.1,
                ..Default::default()
            },
        );
        ("cross-entropy-dim1", out, want)
    } else {
        let out = xt.nll_loss_dim1(Targets::Indices(&labels), &CrossEntropyOptions::default())?;
        let want = loss_ref::nll_loss(&rows, c, &labels, &CrossEntropyOptions::default());
        ("nll-loss-dim1", out, want)
    };
    let want = loss_ref::LossReference {
        grad: permute_classes(&want.grad, (n, c, s), true),
        ..want
    };
    add_loss(checker, name, &shape, &out, &want)
}

struct LossCase {
    op: LossOp,
    x: Vec<f32>,
    xt: Tensor,
    /// BCE's targets.
    tt: Option<Tensor>,
    /// The class indices.
    labels: Vec<i64>,
}

impl LossCase {
    fn launch(&self) -> Result<LossAndGrad, BoxError> {
        let options = CrossEntropyOptions::default();
        let t = Targets::Indices(&self.labels);
        let x = &self.xt;
        Ok(match (self.op.loss, self.op.dim1) {
            (Loss::Bce, _) => {
                let tt = self.tt.as_ref().ok_or("no targets")?;
                x.bce_with_logits(tt, &BceOptions::default())?
            }
            (Loss::CrossEntropy, false) => x.cross_entropy(t, &options)?,
            (Loss::CrossEntropy, true) => x.cross_entropy_dim1(t, &options)?,
            (Loss::Nll, false) => x.nll_loss(t, &options)?,
            (Loss::Nll, true) => x.nll_loss_dim1(t, &options)?,
        })
    }
}

impl Case for LossCase {
    fn input(&self) -> &Tensor {
        &self.xt
    }

    fn record(&self) -> Result<(), BoxError> {
        drop(self.launch()?);
        Ok(())
    }

    fn bytes(&self) -> f64 {
        let size = self.xt.dtype().size();
        let n = self.xt.len();
        match self.op.loss {
            Loss::Bce => (3 * size * n) as f64,
            // The logits read, the gradient written, a class index (8 bytes) per row.
            Loss::CrossEntropy => (2 * size * n + 8 * self.labels.len()) as f64,
            // The gradient written whole (its zeros too); of the input only each position's
            // target log-probability is read, with the target.
            Loss::Nll => (size * n + (8 + size) * self.labels.len()) as f64,
        }
    }

    fn compare(&self) -> Result<Vec<Compared>, BoxError> {
        if self.op.loss != Loss::CrossEntropy || self.op.dim1 {
            return Ok(Vec::new());
        }
        let out = self.launch()?;
        let (_, cols) = rows_cols(self.xt.shape());
        let want = loss_ref::cross_entropy(
            &widen(&self.x),
            cols,
            CrossEntropyTargets::Indices(&self.labels),
            &CrossEntropyOptions::default(),
        );
        Ok(vec![
            Compared {
                what: "grad".into(),
                got: out.grad.to_vec()?,
                want: want.grad,
            },
            Compared {
                what: "loss".into(),
                got: out.loss.to_vec()?,
                want: want.loss,
            },
        ])
    }
}
