//! The ops the command knows, by their command-line names.

use std::fmt;

use gpu_activations::{Activation, Gate};

/// One op of the command line: `gelu`, `gelu-backward`, `softmax`, `cross-entropy`, ….
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CliOp {
    Forward(Activation),
    Backward(Activation),
    Softmax {
        log: bool,
    },
    SoftmaxBackward {
        log: bool,
    },
    CrossEntropy,
    BceWithLogits,
    /// A gated activation of X split along its last dim (value first), or its gradient.
    Gated {
        gate: Gate,
        backward: bool,
    },
    /// PReLU with `--weight`, or its gradients (dX to `--output`, dW to `--weight-grad-output`).
    Prelu {
        backward: bool,
    },
    /// Softmax, log-softmax or softmin along `--dim`, or its gradient.
    SoftmaxDim {
        family: DimFamily,
        backward: bool,
    },
    /// Cross-entropy in PyTorch's layout (the class at dim 1).
    CrossEntropyDim1,
    /// NLL loss of log-probabilities, the class along the last dim.
    NllLoss,
    /// NLL loss of log-probabilities in PyTorch's layout (the class at dim 1).
    NllLossDim1,
}

/// The softmax family along any dim.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DimFamily {
    Softmax,
    LogSoftmax,
    Softmin,
}

/// The activation parameters given on the command line; each applies to the ops that have
/// it, and an op keeps its own default for any not given.
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct ActivationParams {
    /// leaky-relu's slope below zero (0.01).
    #[arg(long, allow_hyphen_values = true)]
    pub negative_slope: Option<f32>,
    /// α of elu (1), celu (1), onnx-hardsigmoid (0.2), onnx-selu (1.67326),
    /// onnx-thresholded-relu (1) and onnx-swish (1).
    #[arg(long, allow_hyphen_values = true)]
    pub alpha: Option<f32>,
    /// softplus's β (1) and onnx-hardsigmoid's β (0.5).
    #[arg(long, allow_hyphen_values = true)]
    pub beta: Option<f32>,
    /// softplus's threshold (20: linear where βx > threshold) and threshold's θ (0).
    #[arg(long, allow_hyphen_values = true)]
    pub threshold: Option<f32>,
    /// threshold's replacement value (0).
    #[arg(long, allow_hyphen_values = true)]
    pub value: Option<f32>,
    /// hardtanh's lower end (−1).
    #[arg(long, allow_hyphen_values = true)]
    pub min_val: Option<f32>,
    /// hardtanh's upper end (1).
    #[arg(long, allow_hyphen_values = true)]
    pub max_val: Option<f32>,
    /// hardshrink's and softshrink's λ (0.5).
    #[arg(long, allow_hyphen_values = true)]
    pub lambd: Option<f32>,
    /// rrelu-eval's lower slope bound (1/8).
    #[arg(long, allow_hyphen_values = true)]
    pub lower: Option<f32>,
    /// rrelu-eval's upper slope bound (1/3).
    #[arg(long, allow_hyphen_values = true)]
    pub upper: Option<f32>,
    /// onnx-selu's γ (1.0507).
    #[arg(long, allow_hyphen_values = true)]
    pub gamma: Option<f32>,
}

impl ActivationParams {
    fn apply(self, a: Activation) -> Activation {
        let or = |given: Option<f32>, default: f32| given.unwrap_or(default);
        match a {
            Activation::LeakyRelu { negative_slope } => Activation::LeakyRelu {
                negative_slope: or(self.negative_slope, negative_slope),
            },
            Activation::Elu { alpha } => Activation::Elu {
                alpha: or(self.alpha, alpha),
            },
            Activation::Softplus { beta, threshold } => Activation::Softplus {
                beta: or(self.beta, beta),
                threshold: or(self.threshold, threshold),
            },
            Activation::Celu { alpha } => Activation::Celu {
                alpha: or(self.alpha, alpha),
            },
            Activation::Hardtanh { min_val, max_val } => Activation::Hardtanh {
                min_val: or(self.min_val, min_val),
                max_val: or(self.max_val, max_val),
            },
            Activation::Threshold { threshold, value } => Activation::Threshold {
                threshold: or(self.threshold, threshold),
                value: or(self.value, value),
            },
            Activation::Hardshrink { lambd } => Activation::Hardshrink {
                lambd: or(self.lambd, lambd),
            },
            Activation::Softshrink { lambd } => Activation::Softshrink {
                lambd: or(self.lambd, lambd),
            },
            Activation::RreluEval { lower, upper } => Activation::RreluEval {
                lower: or(self.lower, lower),
                upper: or(self.upper, upper),
            },
            Activation::OnnxHardSigmoid { alpha, beta } => Activation::OnnxHardSigmoid {
                alpha: or(self.alpha, alpha),
                beta: or(self.beta, beta),
            },
            Activation::OnnxSelu { alpha, gamma } => Activation::OnnxSelu {
                alpha: or(self.alpha, alpha),
                gamma: or(self.gamma, gamma),
            },
            Activation::OnnxThresholdedRelu { alpha } => Activation::OnnxThresholdedRelu {
                alpha: or(self.alpha, alpha),
            },
            Activation::OnnxSwish { alpha } => Activation::OnnxSwish {
                alpha: or(self.alpha, alpha),
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
        for backward in [false, true] {
            ops.extend(Gate::ALL.map(|gate| CliOp::Gated { gate, backward }));
            ops.push(CliOp::Prelu { backward });
            for family in [
                DimFamily::Softmax,
                DimFamily::LogSoftmax,
                DimFamily::Softmin,
            ] {
                ops.push(CliOp::SoftmaxDim { family, backward });
            }
        }
        ops.extend([CliOp::NllLoss, CliOp::CrossEntropyDim1, CliOp::NllLossDim1]);
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
            CliOp::Softmax { .. }
                | CliOp::SoftmaxBackward { .. }
                | CliOp::CrossEntropy
                | CliOp::NllLoss
        )
    }

    /// Whether the op takes `--grad-output`.
    pub fn needs_grad(self) -> bool {
        matches!(
            self,
            CliOp::Backward(_)
                | CliOp::SoftmaxBackward { .. }
                | CliOp::Gated { backward: true, .. }
                | CliOp::Prelu { backward: true }
                | CliOp::SoftmaxDim { backward: true, .. }
        )
    }

    /// Whether the op is a loss (takes `--targets`, may write `--loss-output`).
    pub fn is_loss(self) -> bool {
        matches!(
            self,
            CliOp::CrossEntropy
                | CliOp::BceWithLogits
                | CliOp::NllLoss
                | CliOp::CrossEntropyDim1
                | CliOp::NllLossDim1
        )
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
            CliOp::Gated { gate, backward } => {
                write!(f, "{}{}", gate.name().replace('_', "-"), suffix(*backward))
            }
            CliOp::Prelu { backward } => write!(f, "prelu{}", suffix(*backward)),
            CliOp::SoftmaxDim { family, backward } => {
                let name = match family {
                    DimFamily::Softmax => "softmax-dim",
                    DimFamily::LogSoftmax => "log-softmax-dim",
                    DimFamily::Softmin => "softmin",
                };
                write!(f, "{name}{}", suffix(*backward))
            }
            CliOp::CrossEntropyDim1 => f.write_str("cross-entropy-dim1"),
            CliOp::NllLoss => f.write_str("nll-loss"),
            CliOp::NllLossDim1 => f.write_str("nll-loss-dim1"),
        }
    }
}

fn suffix(backward: bool) -> &'static str {
    if backward { "-backward" } else { "" }
}
