//! Launches of the gated activations ([`Gate`], `shaders/gated.wgsl`): one pass for the output
//! and one for both gradients, from one split tensor or from a value and a gate tensor.

use crate::cpu;
use crate::definitions::gated::Gate;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::gpu::pipelines::{Kernel, Slot};
use crate::layout;
use crate::ops::activation::check_same;
use crate::ops::convert::half_route;
use crate::ops::placement::{Placement, bound_whole, place, store};
use crate::tensor::Tensor;
use crate::wgsl::Shader;

const OP: &str = "gated activation";

/// The limit a gated input meets: the kernels bind it whole.
const WHOLE: &str = "max_storage_buffer_binding_size (a gated input is bound whole)";

/// Invocations per workgroup; each takes four outputs at a time.
const WG: u32 = 256;

params! {
    /// Mirrors `Params` in `shaders/gated.wgsl`.
    struct GatedParams {
        len: u32,
        half: u32,
    }
}

const FORWARD_SPLIT: Kernel = Kernel {
    module: Shader::Gated.module(),
    entry: "forward_split",
    slots: &[Slot::Read(1), Slot::ReadWrite(4)],
};
const BACKWARD_SPLIT: Kernel = Kernel {
    module: Shader::Gated.module(),
    entry: "backward_split",
    slots: &[Slot::Read(1), Slot::Read(3), Slot::ReadWrite(4)],
};
const FORWARD_SPLIT4: Kernel = Kernel {
    entry: "forward_split4",
    ..FORWARD_SPLIT
};
const BACKWARD_SPLIT4: Kernel = Kernel {
    entry: "backward_split4",
    ..BACKWARD_SPLIT
};
const FORWARD_PAIR: Kernel = Kernel {
    module: Shader::Gated.module(),
    entry: "forward_pair",
    slots: &[Slot::Read(1), Slot::Read(2), Slot::ReadWrite(4)],
};
const BACKWARD_PAIR: Kernel = Kernel {
    module: Shader::Gated.module(),
    entry: "backward_pair",
    slots: &[
        Slot::Read(1),
        Slot::Read(2),
        Slot::Read(3),
        Slot::ReadWrite(4),
        Slot::ReadWrite(5),
    ],
};

/// The four kernels with their parameter block's size.
#[cfg(test)]
pub(crate) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    [
        FORWARD_SPLIT,
        BACKWARD_SPLIT,
        FORWARD_SPLIT4,
        BACKWARD_SPLIT4,
        FORWARD_PAIR,
        BACKWARD_PAIR,
    ]
    .map(|k| (k, GatedParams::LAYOUT))
    .to_vec()
}

impl Tensor {
    /// `y = f(a)·m(b)` where `a` and `b` are the first and second halves of the last dimension
    /// (PyTorch's `glu(x, dim = −1)` convention: the first half is the value); `y` has the last
    /// dimension halved. An odd last dimension is an [`Error::InvalidShape`].
    pub fn gated(&self, gate: Gate) -> Result<Tensor> {
        if let Some(done) = half_route(OP, &[("the input", self)], |w| Ok([w[0].gated(gate)?])) {
            return done.map(|[y]| y);
        }
        let half = split_half(self)?;
        let mut shape = self.shape().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = half;
        }
        let out = Tensor::uninit(self.context(), &shape, OP)?;
        match place(OP, &[self, &out])? {
            Placement::Host => {
                store(
                    OP,
                    &out,
                    cpu::gated::forward_split(gate, &self.to_vec()?, half),
                )?;
            }
            Placement::Device(gpu) => {
                bound_whole(gpu, OP, WHOLE, &[self])?;
                let views = [self.view(0, self.len(), OP)?, out.view(0, out.len(), OP)?];
                let kernel = split_kernel(half, &FORWARD_SPLIT, &FORWARD_SPLIT4);
                launch(gpu, kernel, gate, &views, out.len(), half)?;
            }
        }
        Ok(out)
    }

    /// The gradient of [`Tensor::gated`] with respect to this (split) input, from the upstream
    /// gradient `grad` (this tensor's shape with the last dimension halved): both halves in one
    /// pass.
    pub fn gated_backward(&self, gate: Gate, grad: &Tensor) -> Result<Tensor> {
        let operands = [("the input", self), ("the gradient", grad)];
        if let Some(done) = half_route(OP, &operands, |w| Ok([w[0].gated_backward(gate, &w[1])?])) {
            return done.map(|[dx]| dx);
        }
        let half = split_half(self)?;
        let mut expected = self.shape().to_vec();
        if let Some(last) = expected.last_mut() {
            *last = half;
        }
        check_context(self, grad)?;
        if grad.shape() != expected {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "gradient (the input's shape with its last dimension halved)",
                got: grad.shape().to_vec(),
                expected,
            });
        }
        let dx = self.uninit_like(OP)?;
        match place(OP, &[self, grad, &dx])? {
            Placement::Host => {
                let values =
                    cpu::gated::backward_split(gate, &self.to_vec()?, &grad.to_vec()?, half);
                store(OP, &dx, values)?;
            }
            Placement::Device(gpu) => {
                bound_whole(gpu, OP, WHOLE, &[self])?;
                let views = [
                    self.view(0, self.len(), OP)?,
                    grad.view(0, grad.len(), OP)?,
                    dx.view(0, dx.len(), OP)?,
                ];
                let kernel = split_kernel(half, &BACKWARD_SPLIT, &BACKWARD_SPLIT4);
                launch(gpu, kernel, gate, &views, grad.len(), half)?;
            }
        }
        Ok(dx)
    }

    /// `y = f(value)·m(gate_input)` from two tensors of one shape.
    pub fn gated_pair(gate: Gate, value: &Tensor, gate_input: &Tensor) -> Result<Tensor> {
        let operands = [("the value", value), ("gate", gate_input)];
        if let Some(done) = half_route(OP, &operands, |w| {
            Ok([Tensor::gated_pair(gate, &w[0], &w[1])?])
        }) {
            return done.map(|[y]| y);
        }
        check_same(OP, "gate", value, gate_input)?;
        let out = value.uninit_like(OP)?;
        match place(OP, &[value, gate_input, &out])? {
            Placement::Host => {
                let (a, b) = (value.to_vec()?, gate_input.to_vec()?);
                let values = a
                    .iter()
                    .zip(&b)
                    .map(|(&a, &b)| {
                        cpu::gated::forward_pair(gate, f64::from(a), f64::from(b)) as f32
                    })
                    .collect();
                store(OP, &out, values)?;
            }
            Placement::Device(gpu) => {
                bound_whole(gpu, OP, WHOLE, &[value])?;
                let n = value.len();
                let views = [
                    value.view(0, n, OP)?,
                    gate_input.view(0, n, OP)?,
                    out.view(0, n, OP)?,
                ];
                launch(gpu, (&FORWARD_PAIR, true), gate, &views, n, n.max(1))?;
            }
        }
        Ok(out)
    }

    /// The gradients `(∂value, ∂gate)` of [`Tensor::gated_pair`] from the upstream `grad` (of
    /// the inputs' shape), in one pass.
    pub fn gated_pair_backward(
        gate: Gate,
        value: &Tensor,
        gate_input: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let operands = [
            ("the value", value),
            ("gate", gate_input),
            ("gradient", grad),
        ];
        if let Some(done) = half_route(OP, &operands, |w| {
            let (da, db) = Tensor::gated_pair_backward(gate, &w[0], &w[1], &w[2])?;
            Ok([da, db])
        }) {
            return done.map(|[da, db]| (da, db));
        }
        check_same(OP, "gate", value, gate_input)?;
        check_same(OP, "gradient", value, grad)?;
        let da = value.uninit_like(OP)?;
        let db = value.uninit_like(OP)?;
        match place(OP, &[value, gate_input, grad, &da, &db])? {
            Placement::Host => {
                let (a, b, g) = (value.to_vec()?, gate_input.to_vec()?, grad.to_vec()?);
                let (da_v, db_v): (Vec<f32>, Vec<f32>) = a
                    .iter()
                    .zip(&b)
                    .zip(&g)
                    .map(|((&a, &b), &g)| {
                        let (da, db) = cpu::gated::backward_pair(
                            gate,
                            f64::from(a),
                            f64::from(b),
                            f64::from(g),
                        );
                        (da as f32, db as f32)
                    })
                    .unzip();
                store(OP, &da, da_v)?;
                store(OP, &db, db_v)?;
            }
            Placement::Device(gpu) => {
                bound_whole(gpu, OP, WHOLE, &[value])?;
                let n = value.len();
                let views = [
                    value.view(0, n, OP)?,
                    gate_input.view(0, n, OP)?,
                    grad.view(0, n, OP)?,
                    da.view(0, n, OP)?,
                    db.view(0, n, OP)?,
                ];
                launch(gpu, (&BACKWARD_PAIR, true), gate, &views, n, n.max(1))?;
            }
        }
        Ok((da, db))
    }
}

/// H, half the last dimension of a split input (which must be even).
fn split_half(x: &Tensor) -> Result<usize> {
    x.expect_f32(OP, "the input")?;
    match x.shape().last() {
        Some(&d) if d.is_multiple_of(2) => Ok(d / 2),
        Some(_) => Err(Error::invalid_shape(
            OP,
            x.shape(),
            "the last dimension must be even: its first half is the value, its second the gate",
        )),
        None => Err(Error::invalid_shape(
            OP,
            x.shape(),
            "a gated activation needs a tensor of rank at least 1",
        )),
    }
}

fn check_context(x: &Tensor, other: &Tensor) -> Result<()> {
    if !x.context().same(other.context()) {
        return Err(Error::ContextMismatch { op: OP });
    }
    other.expect_f32(OP, "the gradient")
}

/// The split-layout kernel for a gated width `half`, and whether it walks vec4s: the vec4 one
/// when rows hold whole vec4s.
fn split_kernel<'k>(half: usize, scalar: &'k Kernel, vec4: &'k Kernel) -> (&'k Kernel, bool) {
    if half.is_multiple_of(4) {
        (vec4, true)
    } else {
        (scalar, false)
    }
}

/// Launches `kernel` over `len` outputs of gated width `half` (a vec4 kernel, `by_vec4`,
/// counts both in vec4s).
fn launch(
    gpu: &Gpu,
    (kernel, by_vec4): (&Kernel, bool),
    gate: Gate,
    views: &[crate::gpu::View<'_>],
    len: usize,
    half: usize,
) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    let params = if by_vec4 {
        GatedParams {
            len: layout::vec4s(len) as u32,
            half: (half / 4).max(1) as u32,
        }
    } else {
        GatedParams {
            len: len as u32,
            half: half as u32,
        }
    };
    let constants = [("GATE", f64::from(gate.code())), ("WG", f64::from(WG))];
    let groups = (layout::vec4s(len) as u64).div_ceil(u64::from(WG));
    gpu.launch(
        kernel,
        &constants,
        views,
        bytemuck::bytes_of(&params),
        groups,
    )
}
