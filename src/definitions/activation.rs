//! The elementwise activations: [`Activation`] names each function once, with its parameters,
//! their checks and its formula. Where it runs is elsewhere: its f64 twin in
//! [`crate::cpu::activation`], its kernel in `shaders/activation.wgsl`, the launches in `ops`.
//!
//! Derivatives at kinks follow PyTorch: relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = α,
//! relu6'(0) = relu6'(6) = 0, hardsigmoid'(±3) = 0, hardswish'(3) = 1 (PyTorch's vectorised
//! CPU kernel) and −½ at −3 (the zero branch is x < −3). At NaN, relu' passes g, leaky_relu' gives g·slope,
//! relu6' and hardsigmoid' give 0, and every other function gives NaN.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// An elementwise activation with its parameters. Formulas are PyTorch's:
///
/// | name | f(x) | f'(x) |
/// |---|---|---|
/// | sigmoid | 1/(1+e^−x) | σ(1−σ) |
/// | tanh | tanh x | 1 − tanh² x |
/// | relu | max(x, 0) | x > 0 ? 1 : 0 |
/// | leaky_relu(s) | x > 0 ? x : s·x | x > 0 ? 1 : s |
/// | elu(α) | x > 0 ? x : α(e^x − 1) | x > 0 ? 1 : αe^x |
/// | selu | λ·elu(x, α₀), λ ≈ 1.0507, α₀ ≈ 1.6733 | λ·elu'(x, α₀) |
/// | gelu | x·Φ(x) | Φ(x) + x·φ(x) |
/// | gelu_tanh | ½x(1 + tanh(√(2/π)(x + 0.044715x³))) | (its derivative) |
/// | silu | x·σ(x) | σ(x)(1 + x(1 − σ(x))) |
/// | mish | x·tanh(softplus x) | t + x·σ(x)(1 − t²) |
/// | softplus(β, τ) | βx > τ ? x : log(1 + e^{βx})/β | βx > τ ? 1 : σ(βx) |
/// | hardsigmoid | clamp((x+3)/6, 0, 1) | 1/6 on (−3, 3) |
/// | hardswish | x·clamp((x+3)/6, 0, 1) | x < −3 ? 0 : x ≥ 3 ? 1 : x/3 + ½ |
/// | relu6 | clamp(x, 0, 6) | 1 on (0, 6) |
/// | logsigmoid | log σ(x) | σ(−x) |
/// | celu(α) | x > 0 ? x : α(e^{x/α} − 1) | x > 0 ? 1 : e^{x/α} |
/// | hardtanh(a, b) | clamp(x, a, b) | 1 on (a, b) |
/// | softsign | x/(1 + \|x\|) | 1/(1 + \|x\|)² |
/// | tanhshrink | x − tanh x | tanh² x |
/// | threshold(θ, v) | x ≤ θ ? v : x | x ≤ θ ? 0 : 1 |
/// | hardshrink(λ) | \|x\| ≤ λ ? 0 : x | \|x\| ≤ λ ? 0 : 1 |
/// | softshrink(λ) | \|x\| ≤ λ ? 0 : x − λ·sign x | \|x\| ≤ λ ? 0 : 1 |
/// | rrelu_eval(l, u) | leaky_relu(x, (l + u)/2) | (its derivative) |
/// | onnx_hardsigmoid(α, β) | clamp(αx + β, 0, 1) | α on 0 < αx + β < 1 |
/// | onnx_selu(α, γ) | γ·elu(x, α) | γ·elu'(x, α), 0 at x = 0 |
/// | onnx_thresholded_relu(α) | x > α ? x : 0 | x > α ? 1 : 0 |
/// | onnx_swish(α) | x·σ(αx) | σ(αx)(1 + αx(1 − σ(αx))) |
///
/// ONNX's `Celu(α)` is `celu(α)`. At NaN the backward follows PyTorch's answers: hardtanh,
/// hardshrink, softshrink and the ONNX clamps and thresholds give 0, threshold passes g, and
/// onnx_thresholded_relu's forward gives 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// Logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Rectified linear unit.
    Relu,
    /// Leaky ReLU with slope `negative_slope` below 0 (PyTorch's default 0.01).
    LeakyRelu {
        /// Slope for x ≤ 0.
        negative_slope: f32,
    },
    /// Exponential linear unit (PyTorch's default α = 1).
    Elu {
        /// Saturation value for x → −∞ is −α.
        alpha: f32,
    },
    /// Scaled ELU with the self-normalising constants.
    Selu,
    /// Gaussian error linear unit, exact (with erf).
    Gelu,
    /// GELU with the tanh approximation.
    GeluTanh,
    /// Sigmoid-weighted linear unit (swish).
    Silu,
    /// Mish.
    Mish,
    /// Softplus (PyTorch's defaults β = 1, τ = 20; linear where βx > τ).
    Softplus {
        /// Sharpness β.
        beta: f32,
        /// Above βx > threshold the function is the identity.
        threshold: f32,
    },
    /// Piecewise-linear sigmoid.
    Hardsigmoid,
    /// x · hardsigmoid(x).
    Hardswish,
    /// ReLU clipped at 6.
    Relu6,
    /// log σ(x).
    Logsigmoid,
    /// Continuously differentiable ELU (PyTorch's default α = 1; also ONNX's `Celu`).
    Celu {
        /// Saturation value for x → −∞ is −α; non-zero.
        alpha: f32,
    },
    /// x clamped to [min_val, max_val] (PyTorch's defaults −1, 1).
    Hardtanh {
        /// Lower end.
        min_val: f32,
        /// Upper end (at least `min_val`).
        max_val: f32,
    },
    /// x/(1 + |x|).
    Softsign,
    /// x − tanh x.
    Tanhshrink,
    /// `value` where x ≤ threshold, else x. PyTorch has no defaults; `threshold` parses as
    /// θ = 0, value = 0.
    Threshold {
        /// θ.
        threshold: f32,
        /// What replaces x ≤ θ.
        value: f32,
    },
    /// 0 on [−λ, λ], else x (PyTorch's default λ = 0.5).
    Hardshrink {
        /// λ ≥ 0.
        lambd: f32,
    },
    /// 0 on [−λ, λ], else x shrunk towards 0 by λ (PyTorch's default λ = 0.5).
    Softshrink {
        /// λ ≥ 0.
        lambd: f32,
    },
    /// Randomized leaky ReLU in eval mode: the fixed slope (lower + upper)/2 below 0
    /// (PyTorch's defaults 1/8 and 1/3).
    RreluEval {
        /// Lower bound of the training-time slope.
        lower: f32,
        /// Upper bound (at least `lower`).
        upper: f32,
    },
    /// ONNX `HardSigmoid`: clamp(αx + β, 0, 1) (ONNX's defaults α = 0.2, β = 0.5).
    OnnxHardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// ONNX `Selu`: γ·elu(x, α) (ONNX's defaults α ≈ 1.67326, γ ≈ 1.0507).
    OnnxSelu {
        /// ELU's α.
        alpha: f32,
        /// Scale γ.
        gamma: f32,
    },
    /// ONNX `ThresholdedRelu`: x where x > α, else 0 (ONNX's default α = 1).
    OnnxThresholdedRelu {
        /// The threshold.
        alpha: f32,
    },
    /// ONNX `Swish`: x·σ(αx) (α = 1 is silu).
    OnnxSwish {
        /// The gate's slope.
        alpha: f32,
    },
}

impl Activation {
    /// Every activation with PyTorch's default parameters.
    pub const ALL: [Activation; 27] = [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu {
            negative_slope: 0.01,
        },
        Activation::Elu { alpha: 1.0 },
        Activation::Selu,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Silu,
        Activation::Mish,
        Activation::Softplus {
            beta: 1.0,
            threshold: 20.0,
        },
        Activation::Hardsigmoid,
        Activation::Hardswish,
        Activation::Relu6,
        Activation::Logsigmoid,
        Activation::Celu { alpha: 1.0 },
        Activation::Hardtanh {
            min_val: -1.0,
            max_val: 1.0,
        },
        Activation::Softsign,
        Activation::Tanhshrink,
        Activation::Threshold {
            threshold: 0.0,
            value: 0.0,
        },
        Activation::Hardshrink { lambd: 0.5 },
        Activation::Softshrink { lambd: 0.5 },
        Activation::RreluEval {
            lower: 1.0 / 8.0,
            upper: 1.0 / 3.0,
        },
        Activation::OnnxHardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        Activation::OnnxSelu {
            alpha: 1.673_263_2,
            gamma: 1.050_701,
        },
        Activation::OnnxThresholdedRelu { alpha: 1.0 },
        Activation::OnnxSwish { alpha: 1.0 },
    ];

    /// The snake_case name (as in PyTorch and the fixtures): `leaky_relu`, `gelu_tanh`, ….
    pub fn name(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Elu { .. } => "elu",
            Activation::Selu => "selu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_tanh",
            Activation::Silu => "silu",
            Activation::Mish => "mish",
            Activation::Softplus { .. } => "softplus",
            Activation::Hardsigmoid => "hardsigmoid",
            Activation::Hardswish => "hardswish",
            Activation::Relu6 => "relu6",
            Activation::Logsigmoid => "logsigmoid",
            Activation::Celu { .. } => "celu",
            Activation::Hardtanh { .. } => "hardtanh",
            Activation::Softsign => "softsign",
            Activation::Tanhshrink => "tanhshrink",
            Activation::Threshold { .. } => "threshold",
            Activation::Hardshrink { .. } => "hardshrink",
            Activation::Softshrink { .. } => "softshrink",
            Activation::RreluEval { .. } => "rrelu_eval",
            Activation::OnnxHardSigmoid { .. } => "onnx_hardsigmoid",
            Activation::OnnxSelu { .. } => "onnx_selu",
            Activation::OnnxThresholdedRelu { .. } => "onnx_thresholded_relu",
            Activation::OnnxSwish { .. } => "onnx_swish",
        }
    }

    /// Checks the parameters: every one must be finite (threshold's θ and softplus's τ may be
    /// infinite, not NaN), softplus's β and celu's α non-zero, λ non-negative, and each
    /// range's ends in order.
    pub fn validate(self) -> Result<()> {
        let check = |name: &'static str, value: f32, ok: bool, reason: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidParameter {
                    op: self.name(),
                    name,
                    value: crate::Error::f32_param(value),
                    reason,
                })
            }
        };
        let finite = |name: &'static str, value: f32| {
            check(name, value, value.is_finite(), "must be finite")
        };
        match self {
            Activation::LeakyRelu { negative_slope } => check(
                "negative_slope",
                negative_slope,
                negative_slope.is_finite(),
                "must be finite",
            ),
            Activation::Elu { alpha } => check("alpha", alpha, alpha.is_finite(), "must be finite"),
            Activation::Softplus { beta, threshold } => {
                check(
                    "beta",
                    beta,
                    beta.is_finite() && beta != 0.0,
                    "must be finite and non-zero",
                )?;
                check(
                    "threshold",
                    threshold,
                    !threshold.is_nan(),
                    "must not be NaN",
                )
            }
            Activation::Celu { alpha } => check(
                "alpha",
                alpha,
                alpha.is_finite() && alpha != 0.0,
                "must be finite and non-zero",
            ),
            Activation::Hardtanh { min_val, max_val } => {
                finite("min_val", min_val)?;
                finite("max_val", max_val)?;
                check(
                    "max_val",
                    max_val,
                    max_val >= min_val,
                    "must be at least min_val",
                )
            }
            Activation::Threshold { threshold, value } => {
                check(
                    "threshold",
                    threshold,
                    !threshold.is_nan(),
                    "must not be NaN",
                )?;
                check("value", value, !value.is_nan(), "must not be NaN")
            }
            Activation::Hardshrink { lambd } | Activation::Softshrink { lambd } => check(
                "lambd",
                lambd,
                lambd.is_finite() && lambd >= 0.0,
                "must be finite and non-negative",
            ),
            Activation::RreluEval { lower, upper } => {
                finite("lower", lower)?;
                finite("upper", upper)?;
                check("upper", upper, upper >= lower, "must be at least lower")
            }
            Activation::OnnxHardSigmoid { alpha, beta } => {
                finite("alpha", alpha)?;
                finite("beta", beta)
            }
            Activation::OnnxSelu { alpha, gamma } => {
                finite("alpha", alpha)?;
                finite("gamma", gamma)
            }
            Activation::OnnxThresholdedRelu { alpha } => {
                check("alpha", alpha, !alpha.is_nan(), "must not be NaN")
            }
            Activation::OnnxSwish { alpha } => finite("alpha", alpha),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = Error;

    /// Parses a name (`leaky_relu` or `leaky-relu`) into the activation with default parameters.
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().replace('-', "_");
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == wanted)
            .ok_or_else(|| Error::UnknownActivation(s.to_string()))
    }
}
