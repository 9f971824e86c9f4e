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
/// | relu | max(x, 0) | [x > 0] |
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
}

impl Activation {
    /// Every activation with PyTorch's default parameters.
    pub const ALL: [Activation; 15] = [
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
        }
    }

    /// Checks the parameters: every one must be finite, and softplus's β non-zero.
    pub fn validate(self) -> Result<()> {
        let check = |name: &'static str, value: f32, ok: bool, reason: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidParameter {
                    op: self.name(),
                    name,
                    value: f64::from(value),
                    reason,
                })
            }
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
