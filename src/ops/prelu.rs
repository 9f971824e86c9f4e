//! PReLU with a learnable slope (`torch.nn.PReLU`): one slope for every element, or one per
//! channel, the channel being dim 1 of a tensor of rank at least 2 (`shaders/prelu.wgsl`). The
//! backward returns the input's gradient and the slope's, the latter reduced over the batch on
//! the device.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::gpu::pipelines::{Kernel, Slot};
use crate::layout;
use crate::ops::activation::check_same;
use crate::ops::convert::half_route;
use crate::ops::sum::sum_groups;
use crate::tensor::{Storage, Tensor, write_host};
use crate::wgsl::Shader;

const OP: &str = "prelu";

/// Invocations per workgroup.
const WG: u32 = 256;

/// The most chunks one channel's slope gradient is split into (so that the partial sums stay
/// small), and the fewest elements worth a chunk.
const MAX_CHUNKS: usize = 256;
const MIN_CHUNK: usize = 4096;
const MAX_CHUNK: usize = 16_384;

/// Mirrors `Params` in `shaders/prelu.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PreluParams {
    len: u32,
    channels: u32,
    inner: u32,
    per_chunk: u32,
    chunks: u32,
}

const FORWARD: Kernel = Kernel {
    module: Shader::Prelu.module(),
    entry: "forward",
    slots: &[Slot::Read(1), Slot::Read(2), Slot::ReadWrite(4)],
};
const BACKWARD_INPUT: Kernel = Kernel {
    module: Shader::Prelu.module(),
    entry: "backward_input",
    slots: &[
        Slot::Read(1),
        Slot::Read(2),
        Slot::Read(3),
        Slot::ReadWrite(4),
    ],
};
const WEIGHT_PARTIALS4: Kernel = Kernel {
    entry: "weight_partials4",
    ..WEIGHT_PARTIALS
};
const FORWARD4: Kernel = Kernel {
    entry: "forward4",
    ..FORWARD
};
const BACKWARD_INPUT4: Kernel = Kernel {
    entry: "backward_input4",
    ..BACKWARD_INPUT
};
const WEIGHT_PARTIALS: Kernel = Kernel {
    module: Shader::Prelu.module(),
    entry: "weight_partials",
    slots: &[Slot::Read(1), Slot::Read(3), Slot::ReadWrite(5)],
};

/// The kernels with their parameter block's size.
#[cfg(test)]
pub(crate) fn launched_kernels() -> Vec<(Kernel, usize)> {
    [
        FORWARD,
        BACKWARD_INPUT,
        FORWARD4,
        BACKWARD_INPUT4,
        WEIGHT_PARTIALS,
        WEIGHT_PARTIALS4,
    ]
    .map(|k| (k, size_of::<PreluParams>()))
    .to_vec()
}

/// How `x`'s elements map to the slopes: (channels, elements per (batch, channel) block).
fn channel_layout(x: &Tensor, weight: &Tensor) -> Result<(usize, usize)> {
    x.expect_f32(OP, "the input")?;
    if !x.context().same(weight.context()) {
        return Err(Error::ContextMismatch { op: OP });
    }
    weight.expect_f32(OP, "the weight")?;
    let shape = x.shape();
    let channels = if shape.len() >= 2 { shape[1] } else { 1 };
    match weight.len() {
        1 => Ok((1, x.len().max(1))),
        n if n == channels && shape.len() >= 2 => Ok((channels, shape[2..].iter().product())),
        _ => Err(Error::ShapeMismatch {
            op: OP,
            what: "weight (one slope, or one per channel: dim 1 of an input of rank ≥ 2)",
            got: weight.shape().to_vec(),
            expected: vec![channels],
        }),
    }
}

impl Tensor {
    /// PReLU: `x > 0 ? x : w_c·x`, with `weight` one slope or one per channel (dim 1).
    pub fn prelu(&self, weight: &Tensor) -> Result<Tensor> {
        let operands = [("the input", self), ("the weight", weight)];
        if let Some(done) = half_route(OP, &operands, |w| Ok([w[0].prelu(&w[1])?])) {
            return done.map(|[y]| y);
        }
        let (channels, inner) = channel_layout(self, weight)?;
        let y = self.uninit_like(OP)?;
        match (self.storage(), y.storage()) {
            (Storage::Host(_), Storage::Host(out)) => {
                let (x, w) = (self.to_vec()?, weight.to_vec()?);
                *write_host(out)? = x
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let slope = f64::from(w[(i / inner) % channels]);
                        if v > 0.0 {
                            v
                        } else {
                            (slope * f64::from(v)) as f32
                        }
                    })
                    .collect();
            }
            _ => {
                let gpu = gpu_of(self)?;
                let p = params(gpu, self, channels, inner)?;
                let views = [
                    self.view(0, self.len(), OP)?,
                    weight.view(0, weight.len(), OP)?,
                    y.view(0, y.len(), OP)?,
                ];
                launch_elementwise(gpu, (&FORWARD, &FORWARD4), &views, p)?;
            }
        }
        Ok(y)
    }

    /// The gradients `(dx, dweight)` of [`Tensor::prelu`] from the upstream `grad` (x's shape):
    /// `dx = x > 0 ? g : w_c·g`, `dweight_c = Σ over channel c of (x > 0 ? 0 : x·g)`.
    pub fn prelu_backward(&self, weight: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
        let operands = [
            ("the input", self),
            ("the weight", weight),
            ("gradient", grad),
        ];
        if let Some(done) = half_route(OP, &operands, |w| {
            let (dx, dw) = w[0].prelu_backward(&w[1], &w[2])?;
            Ok([dx, dw])
        }) {
            return done.map(|[dx, dw]| (dx, dw));
        }
        let (channels, inner) = channel_layout(self, weight)?;
        check_same(OP, "gradient", self, grad)?;
        let dx = self.uninit_like(OP)?;
        match (self.storage(), dx.storage()) {
            (Storage::Host(_), Storage::Host(out)) => {
                let (x, w, g) = (self.to_vec()?, weight.to_vec()?, grad.to_vec()?);
                let mut dw = vec![0.0f64; weight.len()];
                let mut d = Vec::with_capacity(x.len());
                for (i, (&v, &g)) in x.iter().zip(&g).enumerate() {
                    let c = (i / inner) % channels;
                    if v > 0.0 {
                        d.push(g);
                    } else {
                        d.push((f64::from(w[c]) * f64::from(g)) as f32);
                        dw[c] += f64::from(v) * f64::from(g);
                    }
                }
                *write_host(out)? = d;
                let dw: Vec<f32> = dw.iter().map(|&v| v as f32).collect();
                let dweight = Tensor::from_slice(self.context(), &dw, weight.shape())?;
                Ok((dx, dweight))
            }
            _ => {
                let gpu = gpu_of(self)?;
                let p = params(gpu, self, channels, inner)?;
                let x_view = self.view(0, self.len(), OP)?;
                let g_view = grad.view(0, grad.len(), OP)?;
                let views = [
                    x_view,
                    weight.view(0, weight.len(), OP)?,
                    g_view,
                    dx.view(0, dx.len(), OP)?,
                ];
                launch_elementwise(gpu, (&BACKWARD_INPUT, &BACKWARD_INPUT4), &views, p)?;
                let partials_len = channels * p.chunks as usize;
                let partials = gpu.alloc(layout::bytes(partials_len), OP)?;
                let views = [x_view, g_view, partials.view(partials_len)];
                let partials_kernel = if p.inner.is_multiple_of(4) {
                    &WEIGHT_PARTIALS4
                } else {
                    &WEIGHT_PARTIALS
                };
                launch(gpu, partials_kernel, &views, &p, partials_len)?;
                let dw = sum_groups(gpu, &partials, partials_len, p.chunks as usize, OP)?;
                Ok((dx, Tensor::from_device(self.context(), dw, weight.shape())))
            }
        }
    }
}

fn gpu_of(x: &Tensor) -> Result<&Gpu> {
    x.context().gpu().ok_or(Error::Gpu {
        op: OP,
        message: "mixed host and device tensors".into(),
    })
}

/// The launch parameters, after checking that the input fits one binding (it is bound whole).
fn params(gpu: &Gpu, x: &Tensor, channels: usize, inner: usize) -> Result<PreluParams> {
    let bytes = layout::bytes(x.len());
    if bytes > gpu.max_binding {
        return Err(Error::TooLarge {
            op: OP,
            requested: bytes,
            limit: gpu.max_binding,
            unit: crate::Unit::Bytes,
            what: "max_storage_buffer_binding_size (a PReLU input is bound whole)",
        });
    }
    let per_channel = x.len() / channels.max(1);
    // Chunks of at most MAX_CHUNK elements, so that an invocation's loop stays well within
    // llvmpipe's 65,535 iterations.
    let chunks = (per_channel / MIN_CHUNK)
        .clamp(1, MAX_CHUNKS)
        .max(per_channel.div_ceil(MAX_CHUNK));
    Ok(PreluParams {
        len: x.len() as u32,
        channels: channels as u32,
        inner: inner.max(1) as u32,
        // Whole vec4s per chunk (for weight_partials4, where inner is a multiple of 4).
        per_chunk: per_channel.div_ceil(chunks).max(1).next_multiple_of(4) as u32,
        chunks: chunks as u32,
    })
}

/// One launch of an elementwise kernel over `params.len` elements: the vec4 one (`by_vec4`)
/// where no vec4 straddles two channels.
fn launch_elementwise(
    gpu: &Gpu,
    (scalar, by_vec4): (&Kernel, &Kernel),
    views: &[crate::gpu::View<'_>],
    params: PreluParams,
) -> Result<()> {
    if params.channels == 1 || params.inner.is_multiple_of(4) {
        let vec4s = layout::vec4s(params.len as usize);
        let params = PreluParams {
            len: vec4s as u32,
            ..params
        };
        return launch(gpu, by_vec4, views, &params, vec4s);
    }
    launch(gpu, scalar, views, &params, params.len as usize)
}

/// One launch of `kernel` over `width` invocations.
fn launch(
    gpu: &Gpu,
    kernel: &Kernel,
    views: &[crate::gpu::View<'_>],
    params: &PreluParams,
    width: usize,
) -> Result<()> {
    if width == 0 {
        return Ok(());
    }
    let groups = (width as u64).div_ceil(u64::from(WG));
    gpu.launch(
        kernel,
        &[("WG", f64::from(WG))],
        views,
        bytemuck::bytes_of(params),
        groups,
    )
}
