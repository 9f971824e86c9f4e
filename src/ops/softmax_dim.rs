//! Softmax, log-softmax and softmin along any dim (PyTorch's `dim`, negative allowed), forward
//! and backward, without a transpose copy (`shaders/softmax_strided.wgsl`): one invocation per
//! line of the dim, reading its elements `S` apart. Along the last dim softmax and log-softmax
//! take the row kernels instead.

use crate::cpu;
use crate::error::{Error, Result};
use crate::gpu::pipelines::{Kernel, Slot};
use crate::ops::activation::check_same;
use crate::ops::convert::half_route;
use crate::ops::placement::{Placement, bound_whole, place, store};
use crate::tensor::Tensor;
use crate::wgsl::Shader;

/// Invocations (lines) per workgroup.
const WG: u32 = 64;

params! {
    /// Mirrors `Params` in `shaders/softmax_strided.wgsl`.
    struct StridedParams {
        lines: u32,
        len: u32,
        stride: u32,
    }
}

const FORWARD: Kernel = Kernel {
    module: Shader::SoftmaxStrided.module(),
    entry: "forward_strided",
    slots: &[Slot::Read(1), Slot::ReadWrite(3)],
};
const BACKWARD: Kernel = Kernel {
    module: Shader::SoftmaxStrided.module(),
    entry: "backward_strided",
    slots: &[Slot::Read(1), Slot::Read(2), Slot::ReadWrite(3)],
};

const FORWARD_CACHED: Kernel = Kernel {
    entry: "forward_strided_cached",
    ..FORWARD
};
const BACKWARD_CACHED: Kernel = Kernel {
    entry: "backward_strided_cached",
    ..BACKWARD
};

/// The longest line the cached kernels hold in registers (`STRIDED_CACHE` in the shader).
use crate::wgsl::STRIDED_CACHED_LEN as CACHED_LEN;

/// The kernels with their parameter block's size.
#[cfg(test)]
pub(crate) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    [FORWARD, BACKWARD, FORWARD_CACHED, BACKWARD_CACHED]
        .map(|k| (k, StridedParams::LAYOUT))
        .to_vec()
}

/// Which member of the family: softmax, log-softmax, or softmin (softmax of −x).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Softmax,
    LogSoftmax,
    Softmin,
}

impl Family {
    fn name(self, backward: bool) -> &'static str {
        match (self, backward) {
            (Family::Softmax, false) => "softmax",
            (Family::LogSoftmax, false) => "log_softmax",
            (Family::Softmin, false) => "softmin",
            (Family::Softmax, true) => "softmax backward",
            (Family::LogSoftmax, true) => "log_softmax backward",
            (Family::Softmin, true) => "softmin backward",
        }
    }
}

/// A dim's lines: (lines = outer·S, L, S).
fn lines_of(op: &'static str, shape: &[usize], dim: isize) -> Result<(usize, usize, usize)> {
    let rank = shape.len() as isize;
    let lowest = -rank.max(1);
    let highest = (rank - 1).max(0);
    if dim < lowest || dim > highest {
        return Err(Error::InvalidParameter {
            op,
            name: "dim",
            value: dim as f64,
            reason: "out of range for the tensor's rank (−rank ≤ dim < rank)",
        });
    }
    if shape.is_empty() {
        return Ok((1, 1, 1));
    }
    let d = if dim < 0 { dim + rank } else { dim } as usize;
    let outer: usize = shape[..d].iter().product();
    let stride: usize = shape[d + 1..].iter().product();
    Ok((outer * stride, shape[d], stride))
}

impl Tensor {
    /// Softmax along `dim` (negative counts from the end): `y = e^{x − M} / Σ e^{x − M}` over
    /// the dim's elements.
    pub fn softmax_dim(&self, dim: isize) -> Result<Tensor> {
        forward(self, dim, Family::Softmax)
    }

    /// Log-softmax along `dim`: `(x − M) − log Σ e^{x − M}`.
    pub fn log_softmax_dim(&self, dim: isize) -> Result<Tensor> {
        forward(self, dim, Family::LogSoftmax)
    }

    /// Softmin along `dim`: the softmax of `−x`.
    pub fn softmin(&self, dim: isize) -> Result<Tensor> {
        forward(self, dim, Family::Softmin)
    }

    /// The gradient of [`Tensor::softmax_dim`] from its saved output `self = y`:
    /// `y ⊙ (g − Σ g·y)` along `dim`.
    pub fn softmax_dim_backward(&self, dim: isize, grad: &Tensor) -> Result<Tensor> {
        backward(self, dim, grad, Family::Softmax)
    }

    /// The gradient of [`Tensor::log_softmax_dim`] from its saved output: `g − e^y·Σ g`.
    pub fn log_softmax_dim_backward(&self, dim: isize, grad: &Tensor) -> Result<Tensor> {
        backward(self, dim, grad, Family::LogSoftmax)
    }

    /// The gradient of [`Tensor::softmin`] from its saved output: `−y ⊙ (g − Σ g·y)`.
    pub fn softmin_backward(&self, dim: isize, grad: &Tensor) -> Result<Tensor> {
        backward(self, dim, grad, Family::Softmin)
    }
}

fn is_last(shape: &[usize], dim: isize) -> bool {
    !shape.is_empty() && (dim == -1 || dim == shape.len() as isize - 1)
}

fn forward(x: &Tensor, dim: isize, family: Family) -> Result<Tensor> {
    let op = family.name(false);
    if let Some(done) = half_route(op, &[("the input", x)], |w| {
        Ok([forward(&w[0], dim, family)?])
    }) {
        return done.map(|[y]| y);
    }
    x.expect_f32(op, "the input")?;
    let (lines, len, stride) = lines_of(op, x.shape(), dim)?;
    match family {
        Family::Softmax if is_last(x.shape(), dim) => return x.softmax(),
        Family::LogSoftmax if is_last(x.shape(), dim) => return x.log_softmax(),
        _ => {}
    }
    let y = x.uninit_like(op)?;
    run(x, None, &y, family, (lines, len, stride))?;
    Ok(y)
}

fn backward(y: &Tensor, dim: isize, grad: &Tensor, family: Family) -> Result<Tensor> {
    let op = family.name(true);
    let operands = [("the output", y), ("grad", grad)];
    if let Some(done) = half_route(op, &operands, |w| {
        Ok([backward(&w[0], dim, &w[1], family)?])
    }) {
        return done.map(|[dx]| dx);
    }
    check_same(op, "grad", y, grad)?;
    let (lines, len, stride) = lines_of(op, y.shape(), dim)?;
    match family {
        Family::Softmax if is_last(y.shape(), dim) => return y.softmax_backward(grad),
        Family::LogSoftmax if is_last(y.shape(), dim) => return y.log_softmax_backward(grad),
        _ => {}
    }
    let dx = y.uninit_like(op)?;
    run(y, Some(grad), &dx, family, (lines, len, stride))?;
    Ok(dx)
}

/// Runs the forward (`grad` absent) or the backward of `family` over the lines into `out`.
fn run(
    x: &Tensor,
    grad: Option<&Tensor>,
    out: &Tensor,
    family: Family,
    (lines, len, stride): (usize, usize, usize),
) -> Result<()> {
    let op = family.name(grad.is_some());
    let log = family == Family::LogSoftmax;
    let neg = family == Family::Softmin;
    let mut operands = vec![x, out];
    operands.extend(grad);
    let gpu = match place(op, &operands)? {
        Placement::Device(gpu) => gpu,
        Placement::Host => return run_on_host(op, (log, neg), x, grad, out, (lines, len, stride)),
    };
    let whole = "max_storage_buffer_binding_size (a tensor is bound whole along a dim other than \
                 the last)";
    bound_whole(gpu, op, whole, &[x])?;
    if lines == 0 || len == 0 {
        return Ok(());
    }
    // Two passes over a line, a vec4 per loop iteration, or four (`WIDE`) where the adapter
    // would end an invocation sooner.
    let wide = !gpu.loops_fit(2 * len.div_ceil(4));
    gpu.check_loop_limit(
        op,
        2 * len.div_ceil(16),
        "loop iterations of one invocation over a line of the dim (the adapter ends an \
         invocation after that many; llvmpipe): a dim of more than about 520,000",
    )?;
    let params = StridedParams {
        lines: lines as u32,
        len: len as u32,
        stride: stride as u32,
    };
    // A line of at most CACHED_LEN elements is held in registers by a kernel built for its
    // length.
    let cached = len <= CACHED_LEN;
    let constants = [
        ("WG", f64::from(WG)),
        ("LOG", if log { 1.0 } else { 0.0 }),
        ("NEG", if neg { 1.0 } else { 0.0 }),
        ("LEN", if cached { len as f64 } else { 1.0 }),
        ("WIDE", if wide { 1.0 } else { 0.0 }),
    ];
    let n = x.len();
    let mut views = vec![x.view(0, n, op)?];
    if let Some(g) = grad {
        views.push(g.view(0, n, op)?);
    }
    views.push(out.view(0, n, op)?);
    let kernel = match (grad.is_some(), cached) {
        (false, false) => &FORWARD,
        (true, false) => &BACKWARD,
        (false, true) => &FORWARD_CACHED,
        (true, true) => &BACKWARD_CACHED,
    };
    let groups = (lines as u64).div_ceil(u64::from(WG));
    gpu.launch(
        kernel,
        &constants,
        &views,
        bytemuck::bytes_of(&params),
        groups,
    )
}

/// [`run`] on the CPU backend, line by line through the f64 reference.
fn run_on_host(
    op: &'static str,
    (log, neg): (bool, bool),
    x: &Tensor,
    grad: Option<&Tensor>,
    out: &Tensor,
    (lines, len, stride): (usize, usize, usize),
) -> Result<()> {
    let xs = x.to_vec()?;
    let gs = grad.map(Tensor::to_vec).transpose()?;
    let mut result = vec![0.0f32; xs.len()];
    for t in 0..lines {
        let start = (t / stride) * len * stride + t % stride;
        let at = |k: usize| start + k * stride;
        let line: Vec<f64> = (0..len).map(|k| f64::from(xs[at(k)])).collect();
        let values = match &gs {
            None => {
                let v: Vec<f64> = line.iter().map(|&v| if neg { -v } else { v }).collect();
                cpu::softmax::forward_row(&v, log)
            }
            Some(g) => {
                let g: Vec<f64> = (0..len).map(|k| f64::from(g[at(k)])).collect();
                let d = cpu::softmax::backward_row(&line, &g, log);
                d.into_iter().map(|v| if neg { -v } else { v }).collect()
            }
        };
        for (k, v) in values.into_iter().enumerate() {
            result[at(k)] = v as f32;
        }
    }
    store(op, out, result)
}
