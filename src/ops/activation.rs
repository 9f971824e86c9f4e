//! Launches of the elementwise activations ([`Activation`], defined in
//! [`crate::definitions::activation`]): the kernel's selector and parameters for each, and the
//! `Tensor` methods.

use crate::cpu;
use crate::definitions::activation::{Activation, SIGMOID_FROM_OUTPUT, TANH_FROM_OUTPUT};
use crate::error::{Error, Result};
use crate::gpu::pipelines::{Kernel, Slot};
use crate::layout::DType;
use crate::ops::launch_elementwise_stored;
use crate::ops::placement::{Placement, place, store};
use crate::tensor::Tensor;
use crate::wgsl::Shader;

impl Activation {
    /// The `OP` override constant that selects this function in `shaders/activation.wgsl`.
    /// Not part of the API: the benchmarks (`benches/`) launch the module on raw wgpu with it.
    #[doc(hidden)]
    pub fn shader_code(self) -> u32 {
        self.code()
    }

    /// The kernel's uniform parameters `p0, p1, p2` for this function. Not part of the API:
    /// for the benchmarks, as [`Activation::shader_code`].
    #[doc(hidden)]
    pub fn shader_params(self) -> [f32; 3] {
        self.packed()
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
            Derivative::SigmoidAtOutput => SIGMOID_FROM_OUTPUT,
            Derivative::TanhAtOutput => TANH_FROM_OUTPUT,
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
    module: Shader::Activation.module(),
    entry: "forward",
    slots: &[Slot::Read(1), Slot::ReadWrite(3)],
};
const FORWARD_INPLACE: Kernel = Kernel {
    module: Shader::Activation.module(),
    entry: "forward_inplace",
    slots: &[Slot::ReadWrite(3)],
};
const BACKWARD: Kernel = Kernel {
    module: Shader::Activation.module(),
    entry: "backward",
    slots: &[Slot::Read(1), Slot::Read(2), Slot::ReadWrite(3)],
};
const BACKWARD_OVER_GRAD: Kernel = Kernel {
    module: Shader::Activation.module(),
    entry: "backward_over_grad",
    slots: &[Slot::Read(1), Slot::ReadWrite(3)],
};
const BACKWARD_OVER_INPUT: Kernel = Kernel {
    module: Shader::Activation.module(),
    entry: "backward_over_input",
    slots: &[Slot::Read(2), Slot::ReadWrite(3)],
};

/// Every kernel of the activations, with its parameter block's size.
#[cfg(test)]
pub(crate) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    let size = crate::ops::ElementwiseParams::LAYOUT;
    [
        FORWARD,
        FORWARD_INPLACE,
        BACKWARD,
        BACKWARD_OVER_GRAD,
        BACKWARD_OVER_INPUT,
    ]
    .map(|k| (k, size))
    .to_vec()
}

impl Tensor {
    /// `f(self)` as a new tensor.
    pub fn activation(&self, act: Activation) -> Result<Tensor> {
        let out = self.uninit_like(act.name())?;
        self.activation_into(act, &out)?;
        Ok(out)
    }

    /// `f(self)` written into `out` (same shape and float type; `out` may be `self` for in
    /// place). Half tensors compute in f32 and round the result once to their type.
    pub fn activation_into(&self, act: Activation, out: &Tensor) -> Result<()> {
        act.validate()?;
        let dtype = check_same_float(act.name(), "output", self, out)?;
        let op = [("OP", f64::from(act.shader_code()))];
        let params = act.shader_params();
        match place(act.name(), &[self, out])? {
            Placement::Host => {
                let values = cpu::activation::forward_slice(act, &self.to_vec()?);
                store(act.name(), out, values)
            }
            Placement::Device(_) if out.aliases(self) => {
                launch_elementwise_stored(&FORWARD_INPLACE, dtype, &op, params, &[out])
            }
            Placement::Device(_) => {
                launch_elementwise_stored(&FORWARD, dtype, &op, params, &[self, out])
            }
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
    let dtype = check_same_float(name, "grad", x, grad)?;
    check_same_float(name, "output", x, out)?;
    let op = [("OP", f64::from(d.code()))];
    let params = d.params();
    let launch = |kernel, tensors: &[&Tensor]| {
        launch_elementwise_stored(kernel, dtype, &op, params, tensors)
    };
    let on = place(name, &[x, grad, out])?;
    match on {
        Placement::Host => {
            let (xs, gs) = (x.to_vec()?, grad.to_vec()?);
            let values = xs
                .iter()
                .zip(&gs)
                .map(|(&v, &g)| d.reference(f64::from(v), f64::from(g)) as f32)
                .collect();
            store(name, out, values)
        }
        _ if out.aliases(grad) && !out.aliases(x) => launch(&BACKWARD_OVER_GRAD, &[x, out]),
        _ if out.aliases(x) && !out.aliases(grad) => launch(&BACKWARD_OVER_INPUT, &[grad, out]),
        _ if out.aliases(x) => {
            // x, g and out are one buffer: compute into a fresh tensor, then copy back.
            let tmp = x.uninit_like(name)?;
            launch(&BACKWARD, &[x, grad, &tmp])?;
            tmp.copy_into(out)
        }
        _ if x.aliases(grad) => launch(&BACKWARD, &[x, x, out]),
        _ => launch(&BACKWARD, &[x, grad, out]),
    }
}

/// Checks that f32 `other` belongs to f32 `x`'s context and has its shape (the check of an op
/// that runs on f32 storage only).
pub(crate) fn check_same(
    op: &'static str,
    what: &'static str,
    x: &Tensor,
    other: &Tensor,
) -> Result<()> {
    x.expect_f32(op, "the input")?;
    check_same_float(op, what, x, other).map(|_| ())
}

/// Checks that `other` belongs to `x`'s context, has its shape and its float type, and
/// returns that type.
pub(crate) fn check_same_float(
    op: &'static str,
    what: &'static str,
    x: &Tensor,
    other: &Tensor,
) -> Result<DType> {
    if !x.context().same(other.context()) {
        return Err(Error::ContextMismatch { op });
    }
    let dtype = crate::ops::convert::common_float(op, &[("the input", x), (what, other)])?;
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
    Ok(dtype)
}
