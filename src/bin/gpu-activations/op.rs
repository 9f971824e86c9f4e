//! The ops the command knows, by their command-line names.

use std::fmt;

use gpu_activations::Activation;

/// One op of the command line: `gelu`, `gelu-backward`, `softmax`, `cross-entropy`, ….
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CliOp {
    Forward(Activation),
    Backward(Activation),
    Softmax { log: bool },
    SoftmaxBackward { log: bool },
    CrossEntropy,
    BceWithLogits,
}

/// The activation parameters given on the command line.
#[derive(Clone, Copy, Debug)]
pub struct ActivationParams {
    pub negative_slope: f32,
    pub alpha: f32,
    pub beta: f32,
    pub threshold: f32,
}

impl Default for ActivationParams {
    fn default() -> Self {
        ActivationParams {
            negative_slope: 0.01,
            alpha: 1.0,
            beta: 1.0,
            threshold: 20.0,
        }
    }
}

impl ActivationParams {
    fn apply(self, a: Activation) -> Activation {
        match a {
            Activation::LeakyRelu { .. } => Activation::LeakyRelu {
                negative_slope: self.negative_slope,
            },
            Activation::Elu { .. } => Activation::Elu { alpha: self.alpha },
            Activation::Softplus { .. } => Activation::Softplus {
                beta: self.beta,
                threshold: self.threshold,
            },
            other => other,
        }
    }
}

/// The command-line name of an activation: its snake_case name with hyphens.
fn cli_name(a: Activation) -> String {
    a.name().replace('_', "-")
}

impl CliOp {
    /// Every op, forward and backward, with these parameters.
    pub fn all(params: ActivationParams) -> Vec<CliOp> {
        let mut ops = Vec::new();
        for a in Activation::ALL {
            ops.push(CliOp::Forward(params.apply(a)));
            ops.push(CliOp::Backward(params.apply(a)));
        }
        ops.extend([
            CliOp::Softmax { log: false },
            CliOp::SoftmaxBackward { log: false },
            CliOp::Softmax { log: true },
            CliOp::SoftmaxBackward { log: true },
            CliOp::CrossEntropy,
            CliOp::BceWithLogits,
        ]);
        ops
    }

    /// Every valid name, for messages.
    pub fn names() -> Vec<String> {
        CliOp::all(ActivationParams::default())
            .into_iter()
            .map(|o| o.to_string())
            .collect()
    }

    /// Parses a command-line name.
    pub fn parse(name: &str, params: ActivationParams) -> Result<CliOp, String> {
        CliOp::all(params)
            .into_iter()
            .find(|o| o.to_string() == name.trim())
            .ok_or_else(|| {
                format!(
                    "unknown op {name:?}; expected one of: {}",
                    CliOp::names().join(" ")
                )
            })
    }

    /// Whether the op works along rows (the last axis).
    pub fn is_row_op(self) -> bool {
        matches!(
            self,
            CliOp::Softmax { .. } | CliOp::SoftmaxBackward { .. } | CliOp::CrossEntropy
        )
    }

    /// Whether the op takes `--grad-output`.
    pub fn needs_grad(self) -> bool {
        matches!(self, CliOp::Backward(_) | CliOp::SoftmaxBackward { .. })
    }

    /// Whether the op is a loss (takes `--targets`, may write `--loss-output`).
    pub fn is_loss(self) -> bool {
        matches!(self, CliOp::CrossEntropy | CliOp::BceWithLogits)
    }
}

impl fmt::Display for CliOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliOp::Forward(a) => write!(f, "{}", cli_name(*a)),
            CliOp::Backward(a) => write!(f, "{}-backward", cli_name(*a)),
            CliOp::Softmax { log: false } => f.write_str("softmax"),
            CliOp::Softmax { log: true } => f.write_str("log-softmax"),
            CliOp::SoftmaxBackward { log: false } => f.write_str("softmax-backward"),
            CliOp::SoftmaxBackward { log: true } => f.write_str("log-softmax-backward"),
            CliOp::CrossEntropy => f.write_str("cross-entropy"),
            CliOp::BceWithLogits => f.write_str("bce-with-logits"),
        }
    }
}
