//! `gpu-activations run OP --input X.npy --output OUT.npy [...]`: one op of the registry on
//! .npy files. The op's entry says which flags it takes; any other is refused before anything
//! is read or computed, and every output is staged, then renamed into place together.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use gpu_activations::npy::{self, file_error};
use gpu_activations::{DType, Reduction, Tensor};

use crate::BackendArg;
use crate::registry::{self, ActivationParams, BoxError, Flag, Run};

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
    /// onnx-thresholded-relu onnx-swish quick-gelu squared-relu), softmax, log-softmax, a gated
    /// activation (glu swiglu geglu geglu-tanh, of X split along its last dim, value first, or
    /// of X and --gate), prelu (with --weight), softmax-dim, log-softmax-dim or softmin (along
    /// --dim), any of those with -backward; cross-entropy, nll-loss, bce-with-logits, or
    /// cross-entropy-dim1 and nll-loss-dim1 (PyTorch's layout, the class at dim 1: targets of
    /// shape [N, d1, …, dk]); linear and linear-backward (with --weight, --bias), and
    /// linear-cross-entropy (the fused head); head-stats and linear-head (per-token
    /// log-probabilities, entropies and log-sum-exps of logits, or of X·Wᵀ + B, under
    /// --temperature) and head-stats-backward (the logits' gradient for --grad-logp and
    /// --grad-entropy). A flag the op does not take is refused.
    op: String,
    /// The input X (float16, float32 or float64, C order). For backward ops, the op's input.
    #[arg(long)]
    pub input: PathBuf,
    /// Storage type of the tensors: f32, f16 or bf16 (inputs rounded to it, ties to even; the
    /// ops compute in f32 and round each result once to it). Default: f16 for a float16
    /// input, f32 otherwise. The outputs are float16 files for f16 and float32 files
    /// otherwise: bfloat16 has no .npy type, so bf16 results are written as float32 holding
    /// bfloat16 values.
    #[arg(long, value_enum)]
    dtype: Option<DTypeArg>,
    /// Where to write the result: f(X), dX, or for losses the gradient with respect to X
    /// (every op but head-stats and linear-head, which write the --*-output files).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The upstream gradient G (the op's output's shape), for the -backward ops.
    #[arg(long)]
    pub grad_output: Option<PathBuf>,
    /// The dim of softmax-dim, log-softmax-dim and softmin (default −1; negative counts from
    /// the end).
    #[arg(long, allow_hyphen_values = true)]
    pub dim: Option<isize>,
    /// prelu's slope (one, or one per channel: dim 1 of X; with --broadcast, any shape that
    /// broadcasts to X); the linear layers' weight W [K, H]; per class (cross-entropy,
    /// nll-loss, length K) or per column (bce-with-logits, length = last dim) loss weights.
    #[arg(long)]
    pub weight: Option<PathBuf>,
    /// prelu: the slope broadcasts to X by numpy's rules (ONNX's PRelu) instead of one per
    /// channel at dim 1 (PyTorch's).
    #[arg(long)]
    pub broadcast: bool,
    /// The linear layers' bias B [K].
    #[arg(long)]
    pub bias: Option<PathBuf>,
    /// Where prelu-backward writes the slope's gradient, and linear-backward and
    /// linear-cross-entropy the weight's.
    #[arg(long)]
    pub weight_grad_output: Option<PathBuf>,
    /// Where linear-backward and linear-cross-entropy write the bias's gradient.
    #[arg(long)]
    pub bias_grad_output: Option<PathBuf>,
    /// A gated op's gates as a tensor of their own (X's shape; X then holds the values alone
    /// instead of both halves).
    #[arg(long)]
    pub gate: Option<PathBuf>,
    /// Where a gated backward with --gate writes the gates' gradient (--output gets the
    /// values').
    #[arg(long)]
    pub gate_grad_output: Option<PathBuf>,
    #[command(flatten)]
    pub params: ActivationParams,
    /// Loss targets: for the cross-entropies one class index per row (integers, or whole
    /// numbers stored as floats), or probabilities of X's shape; for bce-with-logits floats of
    /// X's shape.
    #[arg(long)]
    pub targets: Option<PathBuf>,
    /// How the losses combine (default mean).
    #[arg(long, value_enum)]
    pub reduction: Option<ReductionArg>,
    /// Rows with this class get no loss and no gradient (default −100).
    #[arg(long, allow_hyphen_values = true)]
    pub ignore_index: Option<i64>,
    /// Label smoothing ε in [0, 1] of the cross-entropies (default 0).
    #[arg(long, allow_hyphen_values = true)]
    pub label_smoothing: Option<f32>,
    /// linear-cross-entropy's per-class loss weights (length K; --weight is the layer's).
    #[arg(long)]
    pub class_weight: Option<PathBuf>,
    /// bce-with-logits positive-class weight per column (length = last dim).
    #[arg(long)]
    pub pos_weight: Option<PathBuf>,
    /// The z-loss: s·lse² added to each row's loss (Liger-Kernel's lse_square_scale; class
    /// indices).
    #[arg(long, allow_hyphen_values = true)]
    pub lse_square_scale: Option<f32>,
    /// Softcap c > 0: logits capped to c·tanh(z/c) before the softmax.
    #[arg(long, allow_hyphen_values = true)]
    pub softcap: Option<f32>,
    /// Where the cross-entropy writes each row's log-sum-exp.
    #[arg(long)]
    pub lse_output: Option<PathBuf>,
    /// Where the cross-entropy writes the z-loss alone, reduced as the loss.
    #[arg(long)]
    pub z_loss_output: Option<PathBuf>,
    /// Where to write the loss (shape () for mean and sum).
    #[arg(long)]
    pub loss_output: Option<PathBuf>,
    /// head-stats, head-stats-backward and linear-head: the temperature T > 0 of
    /// p = softmax(z / T) (default 1).
    #[arg(long, allow_hyphen_values = true)]
    pub temperature: Option<f32>,
    /// head-stats-backward: the upstream gradient of each row's log p_t (one per row).
    #[arg(long)]
    pub grad_logp: Option<PathBuf>,
    /// head-stats-backward: the upstream gradient of each row's entropy (one per row).
    #[arg(long)]
    pub grad_entropy: Option<PathBuf>,
    /// head-stats and linear-head: where to write each row's log p_t (float32).
    #[arg(long)]
    pub logp_output: Option<PathBuf>,
    /// head-stats and linear-head: where to write each row's entropy (float32).
    #[arg(long)]
    pub entropy_output: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArg,
}

impl RunArgs {
    /// The file given for `flag`, if it names one.
    pub fn path_of(&self, flag: Flag) -> Option<&Path> {
        let path = match flag {
            Flag::GradOutput => &self.grad_output,
            Flag::Weight => &self.weight,
            Flag::Bias => &self.bias,
            Flag::Gate => &self.gate,
            Flag::Targets => &self.targets,
            Flag::ClassWeight => &self.class_weight,
            Flag::PosWeight => &self.pos_weight,
            Flag::LossOutput => &self.loss_output,
            Flag::WeightGradOutput => &self.weight_grad_output,
            Flag::BiasGradOutput => &self.bias_grad_output,
            Flag::GateGradOutput => &self.gate_grad_output,
            Flag::LseOutput => &self.lse_output,
            Flag::ZLossOutput => &self.z_loss_output,
            Flag::GradLogp => &self.grad_logp,
            Flag::GradEntropy => &self.grad_entropy,
            Flag::LogpOutput => &self.logp_output,
            Flag::EntropyOutput => &self.entropy_output,
            _ => &None,
        };
        path.as_deref()
    }

    /// Every flag given (beyond those every op takes).
    fn given(&self) -> Vec<Flag> {
        let mut given: Vec<Flag> = [
            Flag::GradOutput,
            Flag::Weight,
            Flag::Bias,
            Flag::Gate,
            Flag::Targets,
            Flag::ClassWeight,
            Flag::PosWeight,
            Flag::LossOutput,
            Flag::WeightGradOutput,
            Flag::BiasGradOutput,
            Flag::GateGradOutput,
            Flag::LseOutput,
            Flag::ZLossOutput,
            Flag::GradLogp,
            Flag::GradEntropy,
            Flag::LogpOutput,
            Flag::EntropyOutput,
        ]
        .into_iter()
        .filter(|&f| self.path_of(f).is_some())
        .collect();
        let set = [
            (Flag::Dim, self.dim.is_some()),
            (Flag::Broadcast, self.broadcast),
            (Flag::Reduction, self.reduction.is_some()),
            (Flag::IgnoreIndex, self.ignore_index.is_some()),
            (Flag::LabelSmoothing, self.label_smoothing.is_some()),
            (Flag::LseSquareScale, self.lse_square_scale.is_some()),
            (Flag::Softcap, self.softcap.is_some()),
            (Flag::Temperature, self.temperature.is_some()),
        ];
        given.extend(set.into_iter().filter(|(_, on)| *on).map(|(f, _)| f));
        given.extend(self.params.flags());
        given
    }

    /// Every file the run writes.
    fn outputs(&self) -> Vec<&Path> {
        let optional = [
            Flag::LossOutput,
            Flag::WeightGradOutput,
            Flag::BiasGradOutput,
            Flag::GateGradOutput,
            Flag::LseOutput,
            Flag::ZLossOutput,
            Flag::LogpOutput,
            Flag::EntropyOutput,
        ];
        self.output
            .iter()
            .map(PathBuf::as_path)
            .chain(optional.into_iter().filter_map(|f| self.path_of(f)))
            .collect()
    }
}

pub fn run(args: &RunArgs) -> Result<ExitCode, BoxError> {
    let op = registry::find(&args.op)?;
    registry::refuse_flags(op.as_ref(), &args.given())?;
    op.check_outputs(args.output.is_some(), &args.given())?;
    npy::check_targets(&args.outputs())?;
    let x = npy::read(&args.input)?;
    let dtype = match (args.dtype, x.is_f16()) {
        (Some(d), _) => d.into(),
        (None, true) => DType::F16,
        (None, false) => DType::F32,
    };
    let x = x.into_f32(&args.input)?;
    let ctx = args.backend.context()?;
    let run = Run {
        args,
        x: Tensor::from_slice_as(&ctx, &x.values, &x.shape, dtype)?,
        dtype,
    };
    let produced = op.run(&run)?;
    // Everything is computed: stage every output, then rename them into place.
    let file_type = match dtype {
        DType::F16 => npy::FileType::F16,
        _ => npy::FileType::F32,
    };
    let mut staged = Vec::new();
    for w in &produced.files {
        let path = match w.to {
            None => args.output.as_deref(),
            Some(flag) => args.path_of(flag),
        };
        let Some(path) = path else { continue };
        let file_type = if w.always_f32 {
            npy::FileType::F32
        } else {
            file_type
        };
        staged.push(npy::stage_as(path, &w.values, &w.shape, file_type)?);
    }
    npy::commit_all(staged)?;
    Ok(ExitCode::SUCCESS)
}

/// A message about the input file.
pub fn input_error(run: &Run<'_>, problem: String) -> BoxError {
    file_error(run.input(), problem).into()
}
