//! The command line's ops, one registry: each entry knows its name, the flags `run` takes for
//! it, how to run it on files, its benchmark shapes and what one benchmark launch moves, its
//! family (for the charts) and its check cases. `run`, `bench`, `check`, `plot`, `figures` and
//! `demo` iterate over [`registry`] instead of matching on the op; a flag an op does not take is
//! refused from its entry ([`refuse_flags`]).
//!
//! The entries live by family: [`activation`] (every elementwise activation of the library's
//! op table, forward and backward), [`softmax`] (along the last dim and along any dim),
//! [`loss`] (the cross-entropies, NLL and BCE), [`gated`], [`prelu`] and [`linear`] (the layer
//! and the fused linear cross-entropy).

pub mod activation;
pub mod gated;
pub mod head_stats;
pub mod linear;
pub mod loss;
pub mod prelu;
pub mod softmax;

use std::fmt;
use std::path::Path;

use gpu_activations::npy::{self, file_error};
use gpu_activations::{Activation, Context, DType, Tensor};

use crate::bench_linear::LayerBench;
use crate::check::Checker;
use crate::run::RunArgs;

pub type BoxError = Box<dyn std::error::Error>;

/// A flag of `run` that some ops take (beyond `--input`, `--output`, `--dtype` and the
/// backend's, which every op takes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    GradOutput,
    Dim,
    Weight,
    Bias,
    Broadcast,
    Gate,
    Targets,
    Reduction,
    IgnoreIndex,
    LabelSmoothing,
    ClassWeight,
    PosWeight,
    LseSquareScale,
    Softcap,
    LossOutput,
    WeightGradOutput,
    BiasGradOutput,
    GateGradOutput,
    LseOutput,
    ZLossOutput,
    Temperature,
    GradLogp,
    GradEntropy,
    LogpOutput,
    EntropyOutput,
    /// An activation's parameter, by its name in the op table (`negative_slope`).
    Param(&'static str),
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Flag::GradOutput => "grad-output",
            Flag::Dim => "dim",
            Flag::Weight => "weight",
            Flag::Bias => "bias",
            Flag::Broadcast => "broadcast",
            Flag::Gate => "gate",
            Flag::Targets => "targets",
            Flag::Reduction => "reduction",
            Flag::IgnoreIndex => "ignore-index",
            Flag::LabelSmoothing => "label-smoothing",
            Flag::ClassWeight => "class-weight",
            Flag::PosWeight => "pos-weight",
            Flag::LseSquareScale => "lse-square-scale",
            Flag::Softcap => "softcap",
            Flag::LossOutput => "loss-output",
            Flag::WeightGradOutput => "weight-grad-output",
            Flag::BiasGradOutput => "bias-grad-output",
            Flag::GateGradOutput => "gate-grad-output",
            Flag::LseOutput => "lse-output",
            Flag::ZLossOutput => "z-loss-output",
            Flag::Temperature => "temperature",
            Flag::GradLogp => "grad-logp",
            Flag::GradEntropy => "grad-entropy",
            Flag::LogpOutput => "logp-output",
            Flag::EntropyOutput => "entropy-output",
            Flag::Param(p) => return write!(f, "--{}", p.replace('_', "-")),
        };
        write!(f, "--{name}")
    }
}

/// Whether an op must be given a flag or may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Required,
    Optional,
}

/// An op family of the benchmark chart, in the order the chart shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Copy,
    Activations,
    GatedAndPrelu,
    Softmax,
    Losses,
    Layers,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Copy,
        Family::Activations,
        Family::GatedAndPrelu,
        Family::Softmax,
        Family::Losses,
        Family::Layers,
    ];
}

/// One op of the command line.
pub trait Op {
    /// Its command-line name: `gelu`, `gelu-backward`, `cross-entropy`, ….
    fn name(&self) -> String;

    /// Its family, for the benchmark chart.
    fn family(&self) -> Family;

    /// The flags `run` takes for it, each required or optional.
    fn flags(&self) -> Vec<(Flag, Need)>;

    /// Runs it on the files of a `run`.
    fn run(&self, run: &Run<'_>) -> Result<Produced, BoxError>;

    /// The shapes `bench` times it at when `--shape` gives none.
    fn bench_shapes(&self) -> Vec<Vec<usize>>;

    /// A benchmark case of `shape` in `dtype` on `ctx`: synthetic data resident on the device,
    /// ready to launch the op again and again. `None` for the layers, timed apart
    /// ([`Op::layer`]).
    fn case(
        &self,
        ctx: &Context,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Option<Box<dyn Case>>, BoxError>;

    /// Adds its rows to `check`'s table: its results on `ctx` against the f64 reference.
    fn check(&self, ctx: &Context, checker: &mut Checker) -> Result<(), BoxError>;

    /// The elementwise activation it applies forward, for `plot`.
    fn activation(&self) -> Option<Activation> {
        None
    }

    /// Whether `demo` runs it.
    fn in_demo(&self) -> bool {
        false
    }

    /// The layer benchmark that times it (the linear layers, against the FMA peak).
    fn layer(&self) -> Option<LayerBench> {
        None
    }

    /// Checks, before anything is read, the output files a run names: `output` whether
    /// `--output` was given, `given` the other flags. Most ops write `--output` and need it.
    fn check_outputs(&self, output: bool, given: &[Flag]) -> Result<(), String> {
        let _ = given;
        if output {
            Ok(())
        } else {
            Err(format!("{} needs --output", self.name()))
        }
    }
}

/// A benchmark case: an op on resident data.
pub trait Case {
    /// The op's input x, which the copy kernel it is timed against reads too.
    fn input(&self) -> &Tensor;
    /// Records one launch of the op.
    fn record(&self) -> Result<(), BoxError>;
    /// The bytes the op must move at least: each input read once, each output written once.
    fn bytes(&self) -> f64;
    /// The op's outputs against the f64 reference on this case's data, as (what, got, want)
    /// (for `demo`; empty where no comparison is written).
    fn compare(&self) -> Result<Vec<Compared>, BoxError> {
        Ok(Vec::new())
    }
}

/// One output of a case against its reference.
pub struct Compared {
    pub what: String,
    pub got: Vec<f32>,
    pub want: Vec<f64>,
}

/// Every op of the command line, in the order `check`, `bench` and the help list them.
pub fn registry() -> Vec<Box<dyn Op>> {
    let mut all: Vec<Box<dyn Op>> = Vec::new();
    all.extend(activation::entries());
    all.extend(softmax::last_dim_entries());
    all.extend(loss::last_dim_entries());
    all.extend(gated::entries());
    all.extend(prelu::entries());
    all.extend(softmax::dim_entries());
    all.extend(loss::dim1_entries());
    all.extend(linear::entries());
    all.extend(head_stats::entries());
    all
}

/// Every op's name, for messages.
pub fn names() -> Vec<String> {
    registry().iter().map(|o| o.name()).collect()
}

/// The op named `name`.
pub fn find(name: &str) -> Result<Box<dyn Op>, String> {
    registry()
        .into_iter()
        .find(|o| o.name() == name.trim())
        .ok_or_else(|| {
            format!(
                "unknown op {name:?}; expected one of: {}",
                names().join(" ")
            )
        })
}

/// Refuses a flag `op` does not take and asks for one it needs: one rule for every flag.
pub fn refuse_flags(op: &dyn Op, given: &[Flag]) -> Result<(), String> {
    let takes = op.flags();
    let listed = || {
        let names: Vec<String> = takes.iter().map(|(f, _)| f.to_string()).collect();
        if names.is_empty() {
            "none beyond --input and --output".to_string()
        } else {
            names.join(", ")
        }
    };
    if let Some(flag) = given.iter().find(|f| !takes.iter().any(|(t, _)| t == *f)) {
        // A sibling that takes it (softmax-dim for softmax's --dim).
        let sibling = registry()
            .into_iter()
            .filter(|o| o.name() != op.name() && o.name().starts_with(&op.name()))
            .find(|o| o.flags().iter().any(|(f, _)| f == flag))
            .map(|o| format!("; {} takes it", o.name()))
            .unwrap_or_default();
        return Err(format!(
            "{flag} does not apply to {} (it takes {}){sibling}",
            op.name(),
            listed()
        ));
    }
    if let Some((flag, _)) = takes
        .iter()
        .find(|(f, need)| *need == Need::Required && !given.contains(f))
    {
        return Err(format!("{} needs {flag}", op.name()));
    }
    Ok(())
}

/// The flags every activation parameter of the op table makes: each name once, with the
/// activations that take it and their defaults, for the help text.
pub fn parameter_flags() -> Vec<(&'static str, String)> {
    let mut flags: Vec<(&'static str, Vec<String>)> = Vec::new();
    for a in Activation::ALL {
        for (name, default) in a.parameters() {
            let what = format!("{} ({default})", a.name().replace('_', "-"));
            match flags.iter_mut().find(|(n, _)| *n == name) {
                Some((_, list)) => list.push(what),
                None => flags.push((name, vec![what])),
            }
        }
    }
    flags
        .into_iter()
        .map(|(name, list)| (name, format!("{name} of {}", list.join(", "))))
        .collect()
}

/// The activation parameters given on the command line, by name (each a flag of its own,
/// generated from the op table: `--negative-slope`, `--alpha`, …).
#[derive(Clone, Debug, Default)]
pub struct ActivationParams {
    pub given: Vec<(&'static str, f32)>,
}

impl ActivationParams {
    /// The flags given.
    pub fn flags(&self) -> Vec<Flag> {
        self.given.iter().map(|(n, _)| Flag::Param(n)).collect()
    }

    /// `a` with every given parameter it takes set; the rest keep their defaults.
    pub fn apply(&self, a: Activation) -> Activation {
        let takes: Vec<&str> = a.parameters().iter().map(|(n, _)| *n).collect();
        self.given
            .iter()
            .filter(|(n, _)| takes.contains(n))
            .fold(a, |a, &(n, v)| a.with_parameter(n, v).unwrap_or(a))
    }
}

impl clap::FromArgMatches for ActivationParams {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut params = ActivationParams::default();
        params.update_from_arg_matches(matches)?;
        Ok(params)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        for (name, _) in parameter_flags() {
            if let Some(&v) = matches.get_one::<f32>(name) {
                self.given.retain(|(n, _)| *n != name);
                self.given.push((name, v));
            }
        }
        Ok(())
    }
}

impl clap::Args for ActivationParams {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        parameter_flags()
            .into_iter()
            .fold(cmd, |cmd, (name, help)| {
                cmd.arg(
                    clap::Arg::new(name)
                        // clap keeps a flag's name for the process's life.
                        .long(&*Box::leak(name.replace('_', "-").into_boxed_str()))
                        .value_name("VALUE")
                        .value_parser(clap::value_parser!(f32))
                        .allow_hyphen_values(true)
                        .help(help),
                )
            })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// What a run produces: the arrays it writes, each to `--output` or another output flag.
#[derive(Default)]
pub struct Produced {
    pub files: Vec<Written>,
}

/// One array a run writes.
pub struct Written {
    /// The output flag it goes to (`None`: `--output`); not written where that optional flag
    /// is not given.
    pub to: Option<Flag>,
    pub values: Vec<f32>,
    pub shape: Vec<usize>,
    /// Written as float32 whatever the run's storage type (the lse).
    pub always_f32: bool,
}

impl Produced {
    /// One tensor to `--output`.
    pub fn single(t: &Tensor) -> Result<Produced, BoxError> {
        Produced::default().with(None, t)
    }

    /// This and `t` written to the output flag `to`.
    pub fn with(mut self, to: Option<Flag>, t: &Tensor) -> Result<Produced, BoxError> {
        self.files.push(Written {
            to,
            values: t.to_vec()?,
            shape: t.shape().to_vec(),
            always_f32: false,
        });
        Ok(self)
    }
}

/// A run in progress: its arguments, the input on the device and the storage type.
pub struct Run<'a> {
    pub args: &'a RunArgs,
    /// X, uploaded as `dtype`.
    pub x: Tensor,
    pub dtype: DType,
}

impl Run<'_> {
    pub fn ctx(&self) -> &Context {
        self.x.context()
    }

    pub fn shape(&self) -> &[usize] {
        self.x.shape()
    }

    /// The input file.
    pub fn input(&self) -> &Path {
        &self.args.input
    }

    /// `--grad-output`, which must have `shape` ("the output's" shape).
    pub fn grad(&self, shape: &[usize]) -> Result<Tensor, BoxError> {
        let path = self
            .args
            .grad_output
            .as_deref()
            .ok_or("missing --grad-output")?;
        self.upload(&read_like(path, shape, "the output's")?)
    }

    /// An array uploaded as the run's storage type.
    pub fn upload(&self, a: &npy::Array<f32>) -> Result<Tensor, BoxError> {
        Ok(Tensor::from_slice_as(
            self.ctx(),
            &a.values,
            &a.shape,
            self.dtype,
        )?)
    }

    /// A file of `flag` that an op requires (its entry says so; refused otherwise first).
    pub fn path(&self, flag: Flag) -> Result<&Path, BoxError> {
        self.args
            .path_of(flag)
            .ok_or_else(|| format!("missing {flag}").into())
    }
}

/// Reads a float array that must have `shape` (`whose`: "the input's", "the output's").
pub fn read_like(path: &Path, shape: &[usize], whose: &str) -> Result<npy::Array<f32>, BoxError> {
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

/// Reads a 1-D float table of `len` values (weights), if `path` is given.
pub fn read_table(
    path: Option<&Path>,
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

/// Synthetic benchmark and demo data of `n` elements: x spread over [−8, 8) and an upstream
/// gradient over [−1, 1), deterministic.
pub fn bench_x(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i.wrapping_mul(2_654_435_761) % 1_000_003) as f32 / 1_000_003.0 - 0.5) * 16.0)
        .collect()
}

/// See [`bench_x`].
pub fn bench_g(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i.wrapping_mul(40_503) % 65_537) as f32 / 65_537.0 - 0.5) * 2.0)
        .collect()
}

pub use gpu_activations::cpu::widen;

/// The number of elements of `shape`.
pub fn elements(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// `(rows, cols)` of a shape whose last dim is the row.
pub fn rows_cols(shape: &[usize]) -> (usize, usize) {
    let cols = shape.last().copied().unwrap_or(1).max(1);
    (elements(shape) / cols, cols)
}
