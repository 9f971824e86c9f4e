//! `gpu-activations run OP --input X.npy --output OUT.npy [...]`: one op on .npy files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use gpu_activations::{
    BceOptions, CrossEntropyOptions, DType, Error, Reduction, Targets, Tensor,
    class_indices_from_floats,
};

use crate::BackendArg;
use crate::op::{ActivationParams, CliOp};
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
    /// softplus hardsigmoid hardswish relu6 logsigmoid), softmax, log-softmax, any of those
    /// with -backward, cross-entropy or bce-with-logits.
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
    /// The upstream gradient G (X's shape), for the -backward ops.
    #[arg(long)]
    grad_output: Option<PathBuf>,
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
    /// Weights: per class (cross-entropy, length K) or per column (bce, length = last dim).
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

type BoxError = Box<dyn std::error::Error>;

/// What a run produces: the main output and, for losses, the loss.
struct Produced {
    output: (Vec<f32>, Vec<usize>),
    loss: Option<(Vec<f32>, Vec<usize>)>,
}

pub fn run(args: &RunArgs) -> Result<ExitCode, BoxError> {
    let op = CliOp::parse(&args.op, args.params)?;
    if args.loss_output.is_some() && !op.is_loss() {
        return Err(format!(
            "--loss-output applies to cross-entropy and bce-with-logits, not {op}"
        )
        .into());
    }
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
    let grad = match (op.needs_grad(), &args.grad_output) {
        (true, Some(path)) => Some(read_like(path, &x.shape)?),
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
        CliOp::CrossEntropy => cross_entropy(args, &xt, &x.shape)?,
        CliOp::BceWithLogits => bce(args, &xt, &x.shape)?,
    };
    // Everything is computed: stage every output, then rename them into place.
    let file_type = match dtype {
        DType::F16 => npy::FileType::F16,
        _ => npy::FileType::F32,
    };
    let (values, shape) = &produced.output;
    let mut staged = vec![npy::stage_as(&args.output, values, shape, file_type)?];
    if let (Some(path), Some((loss, shape))) = (&args.loss_output, &produced.loss) {
        staged.push(npy::stage_as(path, loss, shape, file_type)?);
    }
    for s in staged {
        s.commit()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn single(t: Tensor) -> Result<Produced, BoxError> {
    Ok(Produced {
        output: (t.to_vec()?, t.shape().to_vec()),
        loss: None,
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

/// Reads a float array that must have `shape`.
fn read_like(path: &Path, shape: &[usize]) -> Result<npy::Array<f32>, BoxError> {
    let a = npy::read_f32(path)?;
    if a.shape != shape {
        return Err(file_error(
            path,
            format!("shape {:?} does not match the input's {shape:?}", a.shape),
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

fn cross_entropy(args: &RunArgs, xt: &Tensor, shape: &[usize]) -> Result<Produced, BoxError> {
    let targets_path = args
        .targets
        .as_ref()
        .ok_or("cross-entropy needs --targets T.npy")?;
    let (rows, classes) = xt.rows_cols("cross_entropy")?;
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
    let one_per_row =
        targets.shape().iter().product::<usize>() == rows && targets.shape().len() <= 1;
    let out = match targets {
        Values::Int(t) if one_per_row => xt.cross_entropy(Targets::Indices(&t.values), &options),
        Values::Int(t) => {
            return Err(file_error(targets_path, format!("shape {:?} does not give one class index per row ({rows} rows)", t.shape)).into());
        }
        floats if floats.shape() == shape => {
            let probs = floats.into_f32(targets_path)?;
            let p = Tensor::from_slice_as(xt.context(), &probs.values, shape, xt.dtype())?;
            xt.cross_entropy(Targets::Probabilities(&p), &options)
        }
        floats if one_per_row => {
            let values: Vec<f64> = match floats {
                Values::F64(a) => a.values,
                other => other.into_f32(targets_path)?.values.into_iter().map(f64::from).collect(),
            };
            let idx = class_indices_from_floats(&values).map_err(on_targets)?;
            xt.cross_entropy(Targets::Indices(&idx), &options)
        }
        floats => {
            return Err(file_error(targets_path, format!("shape {:?} is neither {rows} class indices nor probabilities of the input's shape {shape:?}", floats.shape())).into());
        }
    }
    .map_err(on_targets)?;
    Ok(Produced {
        output: (out.grad.to_vec()?, shape.to_vec()),
        loss: Some((out.loss.to_vec()?, out.loss.shape().to_vec())),
    })
}

fn bce(args: &RunArgs, xt: &Tensor, shape: &[usize]) -> Result<Produced, BoxError> {
    let targets_path = args
        .targets
        .as_ref()
        .ok_or("bce-with-logits needs --targets T.npy")?;
    let t = read_like(targets_path, shape)?;
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
    })
}
