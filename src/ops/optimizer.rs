//! Parameter updates on the device (`shaders/optimizer.wgsl`): SGD and Adam, each with an L2
//! term `λ·θ` added to the gradient, updating the parameter (and Adam's moments) in place.

use crate::error::{Error, Result};
use crate::gpu::pipelines::{Kernel, Slot};
use crate::ops::placement::{Placement, bound_whole, device, place, store};
use crate::tensor::Tensor;
use crate::wgsl::Shader;

const OP: &str = "optimizer step";

/// Invocations per workgroup.
const WG: u32 = 256;

params! {
    /// Mirrors `Params` in `shaders/optimizer.wgsl`.
    struct OptimizerParams {
        len: u32,
        lr: f32,
        weight_decay: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        correction1: f32,
        correction2: f32,
    }
}

const SGD: Kernel = Kernel {
    module: Shader::Optimizer.module(),
    entry: "sgd",
    slots: &[Slot::ReadWrite(1), Slot::Read(2)],
};
const ADAM: Kernel = Kernel {
    module: Shader::Optimizer.module(),
    entry: "adam",
    slots: &[
        Slot::ReadWrite(1),
        Slot::Read(2),
        Slot::ReadWrite(3),
        Slot::ReadWrite(4),
    ],
};

/// The kernels with their parameter block's size.
#[cfg(test)]
pub(crate) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    [SGD, ADAM].map(|k| (k, OptimizerParams::LAYOUT)).to_vec()
}

/// Adam (`torch.optim.Adam`): `m ← β₁m + (1 − β₁)g`, `v ← β₂v + (1 − β₂)g²`,
/// `θ ← θ − η·m̂/(√v̂ + ε)` with the bias-corrected `m̂`, `v̂`, and `g = ∇ + λ·θ`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// η.
    pub lr: f32,
    /// β₁.
    pub beta1: f32,
    /// β₂.
    pub beta2: f32,
    /// ε.
    pub eps: f32,
    /// λ of the L2 term.
    pub weight_decay: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// The moments Adam keeps for one parameter, zero at the start.
#[derive(Clone, Debug)]
pub struct AdamState {
    m: Tensor,
    v: Tensor,
    step: u32,
}

impl AdamState {
    /// Zero moments for `param`.
    pub fn new(param: &Tensor) -> Result<AdamState> {
        let zeros = || Tensor::zeros(param.context(), param.shape());
        Ok(AdamState {
            m: zeros()?,
            v: zeros()?,
            step: 0,
        })
    }
}

impl Adam {
    /// One step of `param` (updated in place) with its gradient `grad`.
    pub fn step(&self, param: &Tensor, grad: &Tensor, state: &mut AdamState) -> Result<()> {
        self.validate()?;
        check(param, grad)?;
        state.step += 1;
        let t = state.step as i32;
        let params = OptimizerParams {
            len: param.len() as u32,
            lr: self.lr,
            weight_decay: self.weight_decay,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            correction1: 1.0 - self.beta1.powi(t),
            correction2: 1.0 - self.beta2.powi(t),
        };
        if let Placement::Host = place(OP, &[param, grad, &state.m, &state.v])? {
            let g = grad.to_vec()?;
            let (mut theta, mut m, mut v) = (param.to_vec()?, state.m.to_vec()?, state.v.to_vec()?);
            for i in 0..theta.len() {
                let gi = f64::from(g[i]) + f64::from(self.weight_decay) * f64::from(theta[i]);
                let mi = f64::from(self.beta1) * f64::from(m[i]) + f64::from(1.0 - self.beta1) * gi;
                let vi =
                    f64::from(self.beta2) * f64::from(v[i]) + f64::from(1.0 - self.beta2) * gi * gi;
                m[i] = mi as f32;
                v[i] = vi as f32;
                let update = f64::from(self.lr) * (mi / f64::from(params.correction1))
                    / ((vi / f64::from(params.correction2)).sqrt() + f64::from(self.eps));
                theta[i] = (f64::from(theta[i]) - update) as f32;
            }
            store(OP, &state.m, m)?;
            store(OP, &state.v, v)?;
            return store(OP, param, theta);
        }
        launch(&ADAM, &params, &[param, grad, &state.m, &state.v])
    }

    fn validate(&self) -> Result<()> {
        let checks = [
            (
                "lr",
                self.lr,
                self.lr.is_finite() && self.lr >= 0.0,
                AT_LEAST_0,
            ),
            (
                "beta1",
                self.beta1,
                (0.0..1.0).contains(&self.beta1),
                IN_0_1,
            ),
            (
                "beta2",
                self.beta2,
                (0.0..1.0).contains(&self.beta2),
                IN_0_1,
            ),
            (
                "eps",
                self.eps,
                self.eps.is_finite() && self.eps >= 0.0,
                AT_LEAST_0,
            ),
            (
                "weight_decay",
                self.weight_decay,
                self.weight_decay.is_finite() && self.weight_decay >= 0.0,
                AT_LEAST_0,
            ),
        ];
        invalid(&checks)
    }
}

/// Plain gradient descent: `θ ← θ − η·(∇ + λ·θ)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// η.
    pub lr: f32,
    /// λ of the L2 term.
    pub weight_decay: f32,
}

impl Sgd {
    /// One step of `param` (updated in place) with its gradient `grad`.
    pub fn step(&self, param: &Tensor, grad: &Tensor) -> Result<()> {
        invalid(&[
            (
                "lr",
                self.lr,
                self.lr.is_finite() && self.lr >= 0.0,
                AT_LEAST_0,
            ),
            (
                "weight_decay",
                self.weight_decay,
                self.weight_decay.is_finite() && self.weight_decay >= 0.0,
                AT_LEAST_0,
            ),
        ])?;
        check(param, grad)?;
        if let Placement::Host = place(OP, &[param, grad])? {
            let (mut theta, g) = (param.to_vec()?, grad.to_vec()?);
            for (t, &gi) in theta.iter_mut().zip(&g) {
                let step = f64::from(self.lr)
                    * (f64::from(gi) + f64::from(self.weight_decay) * f64::from(*t));
                *t = (f64::from(*t) - step) as f32;
            }
            return store(OP, param, theta);
        }
        let params = OptimizerParams {
            len: param.len() as u32,
            lr: self.lr,
            weight_decay: self.weight_decay,
            beta1: 0.0,
            beta2: 0.0,
            eps: 0.0,
            correction1: 1.0,
            correction2: 1.0,
        };
        launch(&SGD, &params, &[param, grad])
    }
}

/// The rule of a rate, an ε or a weight decay.
const AT_LEAST_0: &str = "must be finite and at least 0";
/// The rule of Adam's betas.
const IN_0_1: &str = "must lie in [0, 1)";

/// The first parameter that fails its check (name, value, passed, rule), as
/// `Error::InvalidParameter` with that parameter's own rule.
fn invalid(checks: &[(&'static str, f32, bool, &'static str)]) -> Result<()> {
    match checks.iter().find(|(_, _, ok, _)| !ok) {
        Some(&(name, value, _, reason)) => Err(Error::InvalidParameter {
            op: OP,
            name,
            value: crate::Error::f32_param(value),
            reason,
        }),
        None => Ok(()),
    }
}

fn check(param: &Tensor, grad: &Tensor) -> Result<()> {
    crate::ops::activation::check_same(OP, "gradient", param, grad)
}

fn launch(kernel: &Kernel, params: &OptimizerParams, tensors: &[&Tensor]) -> Result<()> {
    let gpu = device(OP, tensors[0].context())?;
    let n = tensors[0].len();
    let whole = "max_storage_buffer_binding_size (a parameter is bound whole)";
    bound_whole(gpu, OP, whole, &tensors[..1])?;
    let views = tensors
        .iter()
        .map(|t| t.view(0, n, OP))
        .collect::<Result<Vec<_>>>()?;
    gpu.launch(
        kernel,
        &[("WG", f64::from(WG))],
        &views,
        bytemuck::bytes_of(params),
        (n as u64).div_ceil(u64::from(WG)).max(1),
    )
}
