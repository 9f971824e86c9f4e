//! `gpu-activations run OP --input X.npy --output OUT.npy [...]`: one op on .npy files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use gpu_activations::{
    BceOptions, CrossEntropyOptions, DType, Error, HeadOptions, Reduction, Targets, Tensor,
    class_indices_from_floats,
};

use crate::BackendArg;
use crate::op::{ActivationParams, CliOp, DimFamily};
use gpu_activations::npy::{self, Values, file_error};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReductionArg {
    Mean,
    Sum,
    None,
}

impl From<ReductionArg> for Reduction {
    fn from(r: ReductionArg) -> Reduction {
        match r {
            ReductionArg::Mean => Reduction::Mean,
            ReductionArg::Sum => Reduction::Sum,
            ReductionArg::None => Reduction::None,
        }
    }
}

/// Storage type of the tensors of a run.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DTypeArg {
    F32,
    F16,
    Bf16,
}

impl From<DTypeArg> for DType {
    fn from(d: DTypeArg) -> DType {
        match d {
            DTypeArg::F32 => DType::F32,
            DTypeArg::F16 => DType::F16,
            DTypeArg::Bf16 => DType::BF16,
        }
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// The op: an activation (sigmoid tanh relu leaky-relu elu selu gelu gelu-tanh silu mish
    /// softplus hardsigmoid hardswish relu6 logsigmoid celu hardtanh softsign tanhshrink
    /// threshold hardshrink softshrink rrelu-eval onnx-hardsigmoid onnx-selu
    /// onnx-thresholded-relu onnx-swish), softmax, log-softmax, a gated activation (glu swiglu
    /// geglu geglu-tanh, of X split along its last dim, value first, or of X and --gate),
    /// prelu (with --weight), softmax-dim, log-softmax-dim or softmin (along --dim), any of
    /// those with -backward;
    /// cross-entropy, nll-loss, bce-with-logits, or cross-entropy-dim1 and nll-loss-dim1
    /// (PyTorch's layout, the class at dim 1: targets of shape [N, d1, …, dk]).
    op: String,
    /// The input X (float16, float32 or float64, C order). For backward ops, the op's input.
    #[arg(long)]
    input: PathBuf,
    /// Storage type of the tensors: f32, f16 or bf16 (inputs rounded to it, ties to even; the
    /// ops compute in f32 and round each result once to it). Default: f16 for a float16
    /// input, f32 otherwise. The outputs are float16 files for f16 and float32 files
    /// otherwise: bfloat16 has no .npy type, so bf16 results are written as float32 holding
    /// bfloat16 values.
    #[arg(long, value_enum)]
    dtype: Option<DTypeArg>,
    /// Where to write the result: f(X), dX, or for losses the gradient with respect to X.
    #[arg(long)]
    output: PathBuf,
    /// The upstream gradient G (X's shape; a gated op's output shape), for the -backward ops.
    #[arg(long)]
    grad_output: Option<PathBuf>,
    /// The dim of softmax-dim, log-softmax-dim and softmin (negative counts from the end).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    dim: isize,
    /// Where prelu-backward writes the slope's gradient (the weight's shape).
    #[arg(long)]
    weight_grad_output: Option<PathBuf>,
    /// A gated op's gates as a tensor of their own (X's shape; X then holds the values alone
    /// instead of both halves).
    #[arg(long)]
    gate: Option<PathBuf>,
    /// Where a gated backward with --gate writes the gates' gradient (--output gets the
    /// values').
    #[arg(long)]
    gate_grad_output: Option<PathBuf>,
    #[command(flatten)]
    params: ActivationParams,
    /// Loss targets: for cross-entropy one integer class index per row, or probabilities of
    /// X's shape; for bce-with-logits floats of X's shape.
    #[arg(long)]
    targets: Option<PathBuf>,
    /// How the losses combine.
    #[arg(long, value_enum, default_value = "mean")]
    reduction: ReductionArg,
    /// cross-entropy rows with this class get no loss and no gradient.
    #[arg(long, default_value_t = -100, allow_hyphen_values = true)]
    ignore_index: i64,
    /// cross-entropy label smoothing ε in [0, 1].
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    label_smoothing: f32,
    /// cross-entropy z-loss: s·lse² added to each row's loss (Liger-Kernel's
    /// lse_square_scale; class-index targets).
    #[arg(long, allow_hyphen_values = true)]
    lse_square_scale: Option<f32>,
    /// cross-entropy softcap c > 0: logits capped to c·tanh(z/c) before the softmax.
    #[arg(long, allow_hyphen_values = true)]
    softcap: Option<f32>,
    /// Where cross-entropy writes each row's log-sum-exp (with --lse-square-scale or
    /// --softcap, or alone).
    #[arg(long)]
    lse_output: Option<PathBuf>,
    /// Where cross-entropy writes the z-loss alone, reduced as the loss.
    #[arg(long)]
    z_loss_output: Option<PathBuf>,
    /// Weights: per class (cross-entropy, nll-loss, length K) or per column (bce,
    /// length = last dim); prelu's slope (one, or one per channel: dim 1 of X).
    #[arg(long)]
    weight: Option<PathBuf>,
    /// bce-with-logits positive-class weight per column (length = last dim).
    #[arg(long)]
    pos_weight: Option<PathBuf>,
    /// Where to write the loss (shape () for mean and sum).
    #[arg(long)]
    loss_output: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArg,
}

impl RunArgs {
    /// Every file the run writes.
    fn outputs(&self) -> Vec<&Path> {
        let optional = [
            &self.loss_output,
            &self.weight_grad_output,
            &self.gate_grad_output,
            &self.lse_output,
            &self.z_loss_output,
        ];
        std::iter::once(self.output.as_path())
            .chain(optional.into_iter().flatten().map(PathBuf::as_path))
            .collect()
    }

    /// Whether any of Liger-Kernel's head options is given (the cross-entropy then runs as
    /// `Tensor::cross_entropy_head`).
    fn head_wanted(&self) -> bool {
        self.lse_square_scale.is_some()
            || self.softcap.is_some()
            || self.lse_output.is_some()
            || self.z_loss_output.is_some()
    }
}

type BoxError = Box<dyn std::error::Error>;

/// What a run produces: the main output and, for losses, the loss (for prelu-backward, the
/// slope's gradient; for a gated backward with --gate, the gates'), and for the head's
/// cross-entropy the lse and the z-loss.
struct Produced {
    output: (Vec<f32>, Vec<usize>),
    loss: Option<(Vec<f32>, Vec<usize>)>,
    head: Option<[(Vec<f32>, Vec<usize>); 2]>,
}

pub fn run(args: &RunArgs) -> Result<ExitCode, BoxError> {
    let op = CliOp::parse(&args.op, args.params)?;
    if args.loss_output.is_some() && !op.is_loss() {
        return Err(format!("--loss-output applies to the losses, not {op}").into());
    }
    if args.head_wanted() && op != CliOp::CrossEntropy {
        return Err(format!(
            "--lse-square-scale, --softcap, --lse-output and --z-loss-output apply to \
             cross-entropy, not {op}"
        )
        .into());
    }
    if args.weight_grad_output.is_some() && op != (CliOp::Prelu { backward: true }) {
        return Err(format!("--weight-grad-output applies to prelu-backward, not {op}").into());
    }
    let gated = matches!(op, CliOp::Gated { .. });
    if args.gate.is_some() && !gated {
        return Err(format!("--gate applies to the gated ops, not {op}").into());
    }
    let pair_backward = args.gate.is_some() && matches!(op, CliOp::Gated { backward: true, .. });
    if pair_backward && args.gate_grad_output.is_none() {
        return Err(format!(
            "{op} with --gate writes two gradients: give --gate-grad-output for the gates'"
        )
        .into());
    }
    if args.gate_grad_output.is_some() && !pair_backward {
        return Err(format!(
            "--gate-grad-output applies to a gated backward with --gate, not {op}"
        )
        .into());
    }
    npy::check_targets(&args.outputs())?;
    let x = npy::read(&args.input)?;
    let dtype = match (args.dtype, x.is_f16()) {
        (Some(d), _) => d.into(),
        (None, true) => DType::F16,
        (None, false) => DType::F32,
    };
    let x = x.into_f32(&args.input)?;
    if op.is_row_op() && x.shape.is_empty() {
        return Err(file_error(
            &args.input,
            format!("{op} needs an array of rank at least 1, found a scalar"),
        )
        .into());
    }
    let grad_shape = match op {
        CliOp::Gated { .. } if args.gate.is_none() => gated_shape(&args.input, &x.shape)?,
        _ => x.shape.clone(),
    };
    let gates = args
        .gate
        .as_deref()
        .map(|path| read_like(path, &x.shape, "the input's"))
        .transpose()?;
    let grad = match (op.needs_grad(), &args.grad_output) {
        (true, Some(path)) => Some(read_like(path, &grad_shape, "the output's")?),
        (true, None) => return Err(format!("{op} needs --grad-output G.npy").into()),
        (false, _) => None,
    };
    let ctx = args.backend.context()?;
    let xt = Tensor::from_slice_as(&ctx, &x.values, &x.shape, dtype)?;
    let produced = match op {
        CliOp::Forward(a) => single(xt.activation(a)?)?,
        CliOp::Backward(a) => {
            let g = device(&ctx, grad, dtype)?;
            single(xt.activation_backward(a, &g)?)?
        }
        CliOp::Softmax { log } => single(if log {
            xt.log_softmax()?
        } else {
            xt.softmax()?
        })?,
        CliOp::SoftmaxBackward { log } => {
            let g = device(&ctx, grad, dtype)?;
            let dx = if log {
                xt.log_softmax()?.log_softmax_backward(&g)?
            } else {
                xt.softmax()?.softmax_backward(&g)?
            };
            single(dx)?
        }
        CliOp::CrossEntropy => cross_entropy(args, &xt, &x.shape, false)?,
        CliOp::BceWithLogits => bce(args, &xt, &x.shape)?,
        CliOp::CrossEntropyDim1 => cross_entropy(args, &xt, &x.shape, true)?,
        CliOp::NllLoss => nll_loss(args, &xt, &x.shape, false)?,
        CliOp::NllLossDim1 => nll_loss(args, &xt, &x.shape, true)?,
        CliOp::Gated { gate, backward } => {
            let g = backward.then(|| device(&ctx, grad, dtype)).transpose()?;
            match (gates, g) {
                (None, None) => single(xt.gated(gate)?)?,
                (None, Some(g)) => single(xt.gated_backward(gate, &g)?)?,
                (Some(b), g) => {
                    let bt = Tensor::from_slice_as(&ctx, &b.values, &b.shape, dtype)?;
                    match g {
                        None => single(Tensor::gated_pair(gate, &xt, &bt)?)?,
                        Some(g) => {
                            let (da, db) = Tensor::gated_pair_backward(gate, &xt, &bt, &g)?;
                            let mut out = single(da)?;
                            out.loss = Some((db.to_vec()?, db.shape().to_vec()));
                            out
                        }
                    }
                }
            }
        }
        CliOp::Prelu { backward } => prelu(args, &xt, grad, backward)?,
        CliOp::SoftmaxDim { family, backward } => {
            let forward = |x: &Tensor| match family {
                DimFamily::Softmax => x.softmax_dim(args.dim),
                DimFamily::LogSoftmax => x.log_softmax_dim(args.dim),
                DimFamily::Softmin => x.softmin(args.dim),
            };
            let y = forward(&xt)?;
            if backward {
                let g = device(&ctx, grad, dtype)?;
                single(match family {
                    DimFamily::Softmax => y.softmax_dim_backward(args.dim, &g)?,
                    DimFamily::LogSoftmax => y.log_softmax_dim_backward(args.dim, &g)?,
                    DimFamily::Softmin => y.softmin_backward(args.dim, &g)?,
                })?
            } else {
                single(y)?
            }
        }
    };
    // Everything is computed: stage every output, then rename them into place.
    let file_type = match dtype {
        DType::F16 => npy::FileType::F16,
        _ => npy::FileType::F32,
    };
    let (values, shape) = &produced.output;
    let mut staged = vec![npy::stage_as(&args.output, values, shape, file_type)?];
    let second = args
        .loss_output
        .as_ref()
        .or(args.weight_grad_output.as_ref())
        .or(args.gate_grad_output.as_ref());
    if let (Some(path), Some((values, shape))) = (second, &produced.loss) {
        staged.push(npy::stage_as(path, values, shape, file_type)?);
    }
    if let Some([lse, z_loss]) = &produced.head {
        if let Some(path) = &args.lse_output {
            staged.push(npy::stage_as(path, &lse.0, &lse.1, npy::FileType::F32)?);
        }
        if let Some(path) = &args.z_loss_output {
            staged.push(npy::stage_as(path, &z_loss.0, &z_loss.1, file_type)?);
        }
    }
    npy::commit_all(staged)?;
    Ok(ExitCode::SUCCESS)
}

fn single(t: Tensor) -> Result<Produced, BoxError> {
    Ok(Produced {
        output: (t.to_vec()?, t.shape().to_vec()),
        loss: None,
        head: None,
    })
}

fn device(
    ctx: &gpu_activations::Context,
    a: Option<npy::Array<f32>>,
    dtype: DType,
) -> Result<Tensor, BoxError> {
    let a = a.ok_or("missing --grad-output")?;
    Ok(Tensor::from_slice_as(ctx, &a.values, &a.shape, dtype)?)
}

/// Reads a float array that must have `shape` (`whose`: "the input's", "the output's").
fn read_like(path: &Path, shape: &[usize], whose: &str) -> Result<npy::Array<f32>, BoxError> {
    let a = npy::read_f32(path)?;
    if a.shape != shape {
        return Err(file_error(
            path,
            format!("shape {:?} does not match {whose} {shape:?}", a.shape),
        )
        .into());
    }
    Ok(a)
}

/// Reads a 1-D float table of `len` values (weights).
fn read_table(
    path: &Option<PathBuf>,
    len: usize,
    what: &str,
) -> Result<Option<Vec<f32>>, BoxError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let a = npy::read_f32(path)?;
    if a.values.len() != len || a.shape.len() > 1 {
        return Err(file_error(
            path,
            format!(
                "{what} must be 1-D with {len} values, found shape {:?}",
                a.shape
            ),
        )
        .into());
    }
    Ok(Some(a.values))
}

/// X's shape with its last dim halved: a gated op's output and upstream gradient.
fn gated_shape(input: &Path, shape: &[usize]) -> Result<Vec<usize>, BoxError> {
    match shape.split_last() {
        Some((&last, lead)) if last % 2 == 0 => Ok([lead, &[last / 2]].concat()),
        _ => Err(file_error(
            input,
            format!(
                "a gated op needs an even last dim (value and gate halves), found shape {shape:?}"
            ),
        )
        .into()),
    }
}

/// How a loss's input lays out its rows: `rows` rows of `classes`, one class index per row in
/// a targets array of shape `targets` (`[N, d1, …, dk]` with the class at dim 1; the input's
/// shape without its last dim, or a flat `[rows]`, with the class last).
struct LossLayout {
    rows: usize,
    classes: usize,
    targets: Vec<usize>,
    dim1: bool,
}

impl LossLayout {
    fn of(xt: &Tensor, dim1: bool) -> Result<LossLayout, BoxError> {
        let shape = xt.shape();
        if !dim1 {
            let (rows, classes) = xt.rows_cols("cross_entropy")?;
            let targets = shape[..shape.len().saturating_sub(1)].to_vec();
            return Ok(LossLayout {
                rows,
                classes,
                targets,
                dim1,
            });
        }
        match shape {
            [n, c, spatial @ ..] => Ok(LossLayout {
                rows: xt.len() / (*c).max(1),
                classes: *c,
                targets: [&[*n][..], spatial].concat(),
                dim1,
            }),
            _ => Err(format!(
                "the class-at-dim-1 layout needs an input of rank at least 2, found shape {shape:?}"
            )
            .into()),
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

fn nll_loss(
    args: &RunArgs,
    xt: &Tensor,
    shape: &[usize],
    dim1: bool,
) -> Result<Produced, BoxError> {
    let targets_path = args
        .targets
        .as_ref()
        .ok_or("nll-loss needs --targets T.npy")?;
    let layout = LossLayout::of(xt, dim1)?;
    let classes = layout.classes;
    let options = CrossEntropyOptions {
        reduction: args.reduction.into(),
        ignore_index: args.ignore_index,
        label_smoothing: args.label_smoothing,
        weight: read_table(&args.weight, classes, "--weight (one per class)")?,
    };
    let indices = match npy::read(targets_path)? {
        Values::Int(t) if layout.one_per_row(&t.shape) => t.values,
        // Whole numbers stored as floats, as the cross-entropy takes them.
        floats if layout.one_per_row(floats.shape()) => {
            let values: Vec<f64> = match floats {
                Values::F64(a) => a.values,
                other => other
                    .into_f32(targets_path)?
                    .values
                    .into_iter()
                    .map(f64::from)
                    .collect(),
            };
            class_indices_from_floats(&values)
                .map_err(|e| file_error(targets_path, e.to_string()))?
        }
        other => {
            return Err(file_error(
                targets_path,
                format!(
                    "shape {:?} is not one class index per row of the input {shape:?} ({})",
                    other.shape(),
                    layout.expected()
                ),
            )
            .into());
        }
    };
    let targets = Targets::Indices(&indices);
    let out = if dim1 {
        xt.nll_loss_dim1(targets, &options)
    } else {
        xt.nll_loss(targets, &options)
    };
    let out = out.map_err(|e| -> BoxError {
        match e {
            Error::TargetOutOfRange { .. } => file_error(targets_path, e.to_string()).into(),
            other => other.into(),
        }
    })?;
    Ok(Produced {
        output: (out.grad.to_vec()?, shape.to_vec()),
        loss: Some((out.loss.to_vec()?, out.loss.shape().to_vec())),
        head: None,
    })
}

fn prelu(
    args: &RunArgs,
    xt: &Tensor,
    grad: Option<npy::Array<f32>>,
    backward: bool,
) -> Result<Produced, BoxError> {
    let path = args
        .weight
        .as_ref()
        .ok_or("prelu needs --weight W.npy (its slopes)")?;
    let w = npy::read_f32(path)?;
    if w.shape.len() > 1 {
        return Err(file_error(
            path,
            format!("the slopes must be 1-D, found shape {:?}", w.shape),
        )
        .into());
    }
    // A 0-d slope stays 0-d, so that its gradient is written with the slope's own shape.
    let wt = Tensor::from_slice_as(xt.context(), &w.values, &w.shape, xt.dtype())?;
    if !backward {
        return single(xt.prelu(&wt)?);
    }
    let g = device(xt.context(), grad, xt.dtype())?;
    let (dx, dw) = xt.prelu_backward(&wt, &g)?;
    if args.weight_grad_output.is_none() {
        return Err(
            "prelu-backward needs --weight-grad-output DW.npy (the slopes' gradient)".into(),
        );
    }
    Ok(Produced {
        output: (dx.to_vec()?, dx.shape().to_vec()),
        loss: Some((dw.to_vec()?, dw.shape().to_vec())),
        head: None,
    })
}

fn cross_entropy(
    args: &RunArgs,
    xt: &Tensor,
    shape: &[usize],
    dim1: bool,
) -> Result<Produced, BoxError> {
    let targets_path = args
        .targets
        .as_ref()
        .ok_or("cross-entropy needs --targets T.npy")?;
    let layout = LossLayout::of(xt, dim1)?;
    let (rows, classes) = (layout.rows, layout.classes);
    let options = CrossEntropyOptions {
        reduction: args.reduction.into(),
        ignore_index: args.ignore_index,
        label_smoothing: args.label_smoothing,
        weight: read_table(
            &args.weight,
            classes,
            "--weight (cross-entropy: one per class)",
        )?,
    };
    let on_targets = |e: Error| -> BoxError {
        match e {
            Error::TargetOutOfRange { .. } | Error::TargetNotInteger { .. } => {
                file_error(targets_path, e.to_string()).into()
            }
            other => other.into(),
        }
    };
    let targets = npy::read(targets_path)?;
    let one_per_row = layout.one_per_row(targets.shape());
    if args.head_wanted() {
        let indices = match targets {
            Values::Int(t) if one_per_row => t.values,
            other => {
                return Err(file_error(
                    targets_path,
                    format!(
                        "shape {:?}: the head options take one integer class index per row \
                         ({rows} rows)",
                        other.shape()
                    ),
                )
                .into());
            }
        };
        let head = HeadOptions {
            lse_square_scale: args.lse_square_scale.unwrap_or(0.0),
            softcap: args.softcap,
        };
        let out = xt
            .cross_entropy_head(Targets::Indices(&indices), &options, &head)
            .map_err(on_targets)?;
        return Ok(Produced {
            output: (out.grad.to_vec()?, shape.to_vec()),
            loss: Some((out.loss.to_vec()?, out.loss.shape().to_vec())),
            head: Some([
                (out.lse.to_vec()?, out.lse.shape().to_vec()),
                (out.z_loss.to_vec()?, out.z_loss.shape().to_vec()),
            ]),
        });
    }
    let loss = |t: Targets<'_>| {
        if dim1 {
            xt.cross_entropy_dim1(t, &options)
        } else {
            xt.cross_entropy(t, &options)
        }
    };
    let out = match targets {
        Values::Int(t) if one_per_row => loss(Targets::Indices(&t.values)),
        Values::Int(t) => {
            return Err(file_error(targets_path, format!("shape {:?} does not give one class index per row ({})", t.shape, layout.expected())).into());
        }
        floats if floats.shape() == shape => {
            let probs = floats.into_f32(targets_path)?;
            let p = Tensor::from_slice_as(xt.context(), &probs.values, shape, xt.dtype())?;
            loss(Targets::Probabilities(&p))
        }
        floats if one_per_row => {
            let values: Vec<f64> = match floats {
                Values::F64(a) => a.values,
                other => other.into_f32(targets_path)?.values.into_iter().map(f64::from).collect(),
            };
            let idx = class_indices_from_floats(&values).map_err(on_targets)?;
            loss(Targets::Indices(&idx))
        }
        floats => {
            return Err(file_error(targets_path, format!("shape {:?} is neither one class index per row ({}) nor probabilities of the input's shape {shape:?}", floats.shape(), layout.expected())).into());
        }
    }
    .map_err(on_targets)?;
    Ok(Produced {
        output: (out.grad.to_vec()?, shape.to_vec()),
        loss: Some((out.loss.to_vec()?, out.loss.shape().to_vec())),
        head: None,
    })
}

fn bce(args: &RunArgs, xt: &Tensor, shape: &[usize]) -> Result<Produced, BoxError> {
    let targets_path = args
        .targets
        .as_ref()
        .ok_or("bce-with-logits needs --targets T.npy")?;
    let t = read_like(targets_path, shape, "the input's")?;
    let cols = shape.last().copied().unwrap_or(1);
    let options = BceOptions {
        reduction: args.reduction.into(),
        weight: read_table(&args.weight, cols, "--weight (bce: one per column)")?,
        pos_weight: read_table(&args.pos_weight, cols, "--pos-weight (one per column)")?,
    };
    let tt = Tensor::from_slice_as(xt.context(), &t.values, shape, xt.dtype())?;
    let out = xt.bce_with_logits(&tt, &options)?;
    Ok(Produced {
        output: (out.grad.to_vec()?, shape.to_vec()),
        loss: Some((out.loss.to_vec()?, out.loss.shape().to_vec())),
        head: None,
    })
}
