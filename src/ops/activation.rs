//! Elementwise activations: [`Activation`] names each function once (its name, parameters,
//! shader code and CPU twin), and the `Tensor` methods launch it.
//!
//! Derivatives at kinks follow PyTorch: relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = α,
//! relu6'(0) = relu6'(6) = 0, hardsigmoid'(±3) = 0, hardswish'(3) = 1 (PyTorch's vectorised
//! CPU kernel) and −½ at −3 (the zero branch is x < −3). At NaN, relu' passes g, leaky_relu' gives g·slope,
//! relu6' and hardsigmoid' give 0, and every other function gives NaN.

use std::fmt;
use std::str::FromStr;

use crate::cpu;
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, Shader, Slot};
use crate::ops::launch_elementwise;
use crate::tensor::{Storage, Tensor, read_host, write_host};

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

    /// The `OP` override constant that selects this function in `shaders/activation.wgsl`
    /// ([`Shader::Activation`](crate::Shader::Activation)), for driving the kernel directly.
    pub fn shader_code(self) -> u32 {
        match self {
            Activation::Sigmoid => 0,
            Activation::Tanh => 1,
            Activation::Relu => 2,
            Activation::LeakyRelu { .. } => 3,
            Activation::Elu { .. } => 4,
            Activation::Selu => 5,
            Activation::Gelu => 6,
            Activation::GeluTanh => 7,
            Activation::Silu => 8,
            Activation::Mish => 9,
            Activation::Softplus { .. } => 10,
            Activation::Hardsigmoid => 11,
            Activation::Hardswish => 12,
            Activation::Relu6 => 13,
            Activation::Logsigmoid => 14,
        }
    }

    /// The kernel's uniform parameters `p0, p1, p2` for this function (see
    /// [`Activation::shader_code`]).
    pub fn shader_params(self) -> [f32; 3] {
        match self {
            Activation::LeakyRelu { negative_slope } => [negative_slope, 0.0, 0.0],
            Activation::Elu { alpha } => [alpha, 0.0, 0.0],
            Activation::Softplus { beta, threshold } => [beta, threshold, 1.0 / beta],
            _ => [0.0; 3],
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

    /// `f(x)` in f64 (the CPU reference).
    pub fn reference(self, x: f64) -> f64 {
        cpu::activation::forward(self, x)
    }

    /// `g·f'(x)` in f64 (the CPU reference).
    pub fn reference_backward(self, x: f64, g: f64) -> f64 {
        cpu::activation::backward(self, x, g)
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

/// What a backward launch differentiates: an activation at its input, or sigmoid/tanh at
/// their saved output.
#[derive(Clone, Copy, Debug)]
enum Derivative {
    AtInput(Activation),
    SigmoidAtOutput,
    TanhAtOutput,
}

impl Derivative {
    fn name(self) -> &'static str {
        match self {
            Derivative::AtInput(_) => "activation backward",
            Derivative::SigmoidAtOutput => "sigmoid backward from output",
            Derivative::TanhAtOutput => "tanh backward from output",
        }
    }

    fn code(self) -> u32 {
        match self {
            Derivative::AtInput(a) => a.shader_code(),
            Derivative::SigmoidAtOutput => 15,
            Derivative::TanhAtOutput => 16,
        }
    }

    fn params(self) -> [f32; 3] {
        match self {
            Derivative::AtInput(a) => a.shader_params(),
            _ => [0.0; 3],
        }
    }

    fn reference(self, v: f64, g: f64) -> f64 {
        match self {
            Derivative::AtInput(a) => cpu::activation::backward(a, v, g),
            Derivative::SigmoidAtOutput => cpu::activation::sigmoid_backward_from_output(v, g),
            Derivative::TanhAtOutput => cpu::activation::tanh_backward_from_output(v, g),
        }
    }
}

const FORWARD: Kernel = Kernel {
    shader: Shader::Activation,
    entry: "forward",
    slots: &[Slot::Read(1), Slot::ReadWrite(3)],
};
const FORWARD_INPLACE: Kernel = Kernel {
    shader: Shader::Activation,
    entry: "forward_inplace",
    slots: &[Slot::ReadWrite(3)],
};
const BACKWARD: Kernel = Kernel {
    shader: Shader::Activation,
    entry: "backward",
    slots: &[Slot::Read(1), Slot::Read(2), Slot::ReadWrite(3)],
};
const BACKWARD_OVER_GRAD: Kernel = Kernel {
    shader: Shader::Activation,
    entry: "backward_over_grad",
    slots: &[Slot::Read(1), Slot::ReadWrite(3)],
};
const BACKWARD_OVER_INPUT: Kernel = Kernel {
    shader: Shader::Activation,
    entry: "backward_over_input",
    slots: &[Slot::Read(2), Slot::ReadWrite(3)],
};

impl Tensor {
    /// `f(self)` as a new tensor.
    pub fn activation(&self, act: Activation) -> Result<Tensor> {
        let out = self.uninit_like(act.name())?;
        self.activation_into(act, &out)?;
        Ok(out)
    }

    /// `f(self)` written into `out` (same shape; `out` may be `self` for in place).
    pub fn activation_into(&self, act: Activation, out: &Tensor) -> Result<()> {
        act.validate()?;
        check_same(act.name(), "output", self, out)?;
        let code = act.shader_code();
        let params = act.shader_params();
        match (self.storage(), out.storage()) {
            (Storage::Host(x), Storage::Host(y)) => {
                let result = cpu::activation::forward_slice(act, &read_host(x)?);
                *write_host(y)? = result;
                Ok(())
            }
            _ if out.aliases(self) => {
                launch_elementwise(&FORWARD_INPLACE, &[("OP", f64::from(code))], params, &[out])
            }
            _ => launch_elementwise(&FORWARD, &[("OP", f64::from(code))], params, &[self, out]),
        }
    }

    /// `g ⊙ f'(self)`: the gradient with respect to the input `self`, given the upstream `grad`.
    pub fn activation_backward(&self, act: Activation, grad: &Tensor) -> Result<Tensor> {
        let out = self.uninit_like("activation backward")?;
        self.activation_backward_into(act, grad, &out)?;
        Ok(out)
    }

    /// `g ⊙ f'(self)` written into `out`, which may be `self` or `grad` for in place.
    pub fn activation_backward_into(
        &self,
        act: Activation,
        grad: &Tensor,
        out: &Tensor,
    ) -> Result<()> {
        act.validate()?;
        backward_into(Derivative::AtInput(act), self, grad, out)
    }

    /// `g ⊙ y(1 − y)`: sigmoid's gradient from its saved output `self = σ(x)`.
    pub fn sigmoid_backward_from_output(&self, grad: &Tensor) -> Result<Tensor> {
        let out = self.uninit_like("sigmoid backward")?;
        backward_into(Derivative::SigmoidAtOutput, self, grad, &out)?;
        Ok(out)
    }

    /// `g ⊙ (1 − y²)`: tanh's gradient from its saved output `self = tanh x`.
    pub fn tanh_backward_from_output(&self, grad: &Tensor) -> Result<Tensor> {
        let out = self.uninit_like("tanh backward")?;
        backward_into(Derivative::TanhAtOutput, self, grad, &out)?;
        Ok(out)
    }

    /// σ(x) = 1/(1 + e^−x).
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.activation(Activation::Sigmoid)
    }

    /// tanh x.
    pub fn tanh(&self) -> Result<Tensor> {
        self.activation(Activation::Tanh)
    }

    /// max(x, 0).
    pub fn relu(&self) -> Result<Tensor> {
        self.activation(Activation::Relu)
    }

    /// x > 0 ? x : negative_slope·x.
    pub fn leaky_relu(&self, negative_slope: f32) -> Result<Tensor> {
        self.activation(Activation::LeakyRelu { negative_slope })
    }

    /// x > 0 ? x : α(e^x − 1).
    pub fn elu(&self, alpha: f32) -> Result<Tensor> {
        self.activation(Activation::Elu { alpha })
    }

    /// λ·elu(x, α₀) with the self-normalising constants.
    pub fn selu(&self) -> Result<Tensor> {
        self.activation(Activation::Selu)
    }

    /// x·Φ(x), exact.
    pub fn gelu(&self) -> Result<Tensor> {
        self.activation(Activation::Gelu)
    }

    /// ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
    pub fn gelu_tanh(&self) -> Result<Tensor> {
        self.activation(Activation::GeluTanh)
    }

    /// x·σ(x).
    pub fn silu(&self) -> Result<Tensor> {
        self.activation(Activation::Silu)
    }

    /// x·tanh(softplus x).
    pub fn mish(&self) -> Result<Tensor> {
        self.activation(Activation::Mish)
    }

    /// βx > threshold ? x : log(1 + e^{βx})/β.
    pub fn softplus(&self, beta: f32, threshold: f32) -> Result<Tensor> {
        self.activation(Activation::Softplus { beta, threshold })
    }

    /// clamp((x + 3)/6, 0, 1).
    pub fn hardsigmoid(&self) -> Result<Tensor> {
        self.activation(Activation::Hardsigmoid)
    }

    /// x·clamp((x + 3)/6, 0, 1).
    pub fn hardswish(&self) -> Result<Tensor> {
        self.activation(Activation::Hardswish)
    }

    /// clamp(x, 0, 6).
    pub fn relu6(&self) -> Result<Tensor> {
        self.activation(Activation::Relu6)
    }

    /// log σ(x).
    pub fn logsigmoid(&self) -> Result<Tensor> {
        self.activation(Activation::Logsigmoid)
    }
}

fn backward_into(d: Derivative, x: &Tensor, grad: &Tensor, out: &Tensor) -> Result<()> {
    let name = d.name();
    check_same(name, "grad", x, grad)?;
    check_same(name, "output", x, out)?;
    let op = [("OP", f64::from(d.code()))];
    let params = d.params();
    match (x.storage(), grad.storage(), out.storage()) {
        (Storage::Host(xs), Storage::Host(gs), Storage::Host(ys)) => {
            let result: Vec<f32> = {
                let xs = read_host(xs)?;
                let gs = if grad.aliases(x) {
                    None
                } else {
                    Some(read_host(gs)?)
                };
                let gs: &[f32] = gs.as_deref().map_or(&xs, |v| v);
                xs.iter()
                    .zip(gs)
                    .map(|(&v, &g)| d.reference(f64::from(v), f64::from(g)) as f32)
                    .collect()
            };
            *write_host(ys)? = result;
            Ok(())
        }
        _ if out.aliases(grad) && !out.aliases(x) => {
            launch_elementwise(&BACKWARD_OVER_GRAD, &op, params, &[x, out])
        }
        _ if out.aliases(x) && !out.aliases(grad) => {
            launch_elementwise(&BACKWARD_OVER_INPUT, &op, params, &[grad, out])
        }
        _ if out.aliases(x) => {
            // x, g and out are one buffer: compute into a fresh tensor, then copy back.
            let tmp = x.uninit_like(name)?;
            launch_elementwise(&BACKWARD, &op, params, &[x, grad, &tmp])?;
            tmp.copy_into(out)
        }
        _ if x.aliases(grad) => launch_elementwise(&BACKWARD, &op, params, &[x, x, out]),
        _ => launch_elementwise(&BACKWARD, &op, params, &[x, grad, out]),
    }
}

/// Checks that `other` belongs to `x`'s context and has its shape.
pub(crate) fn check_same(
    op: &'static str,
    what: &'static str,
    x: &Tensor,
    other: &Tensor,
) -> Result<()> {
    if !x.context().same(other.context()) {
        return Err(Error::ContextMismatch { op });
    }
    if x.shape() != other.shape() {
        return Err(Error::ShapeMismatch {
            op,
            what,
            got: other.shape().to_vec(),
            expected: x.shape().to_vec(),
        });
    }
    if x.shares_a_buffer_apart(other) {
        return Err(Error::ExternalBuffer {
            op,
            rule: format!(
                "the {what} and the input are different ranges of one buffer, which one launch \
                 cannot bind (wgpu tracks a buffer's usage as a whole): use the same range (in \
                 place) or separate buffers"
            ),
        });
    }
    Ok(())
}
