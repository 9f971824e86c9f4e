//! PReLU with a learnable slope (`shaders/prelu.wgsl`), by PyTorch's rule (`torch.nn.PReLU`:
//! one slope for every element, or one per channel, the channel being dim 1 of a tensor of rank
//! at least 2) or by ONNX's (`PRelu`: a slope that broadcasts to the input unidirectionally, by
//! numpy's rules). The backward returns the input's gradient and the slope's, the latter
//! reduced over the dims the slope was broadcast along, on the device.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::gpu::pipelines::{Kernel, Slot};
use crate::layout;
use crate::ops::activation::check_same;
use crate::ops::convert::half_route;
use crate::ops::placement::{Placement, bound_whole, place, store};
use crate::ops::sum::sum_groups;
use crate::tensor::Tensor;
use crate::wgsl::Shader;

const OP: &str = "prelu";

/// Invocations per workgroup.
const WG: u32 = 256;

/// The most chunks one channel's slope gradient is split into (so that the partial sums stay
/// small), and the fewest elements worth a chunk.
const MAX_CHUNKS: usize = 256;
const MIN_CHUNK: usize = 4096;
const MAX_CHUNK: usize = 16_384;

params! {
    /// Mirrors `Params` in `shaders/prelu.wgsl`.
    struct PreluParams {
        len: u32,
        channels: u32,
        inner: u32,
        per_chunk: u32,
        chunks: u32,
    }
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
pub(crate) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    [
        FORWARD,
        BACKWARD_INPUT,
        FORWARD4,
        BACKWARD_INPUT4,
        WEIGHT_PARTIALS,
        WEIGHT_PARTIALS4,
    ]
    .map(|k| (k, PreluParams::LAYOUT))
    .to_vec()
}

/// The rule that maps the input's elements to the slopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// PyTorch's: one slope, or one per channel at dim 1.
    Channel,
    /// ONNX's: the slope broadcast to the input by numpy's rules.
    Broadcast,
}

/// How the input's elements map to the slopes: element i takes slope `(i / inner) % channels`
/// of the slope as laid out for the kernel. A broadcast slope whose own dims (those it does
/// not broadcast along) are not contiguous in the input, as `[3, 1, 5]` against `[3, 4, 5]`,
/// is laid out by `expand`: the slope repeated over the block of the input's dims from its
/// first own dim to its last, whose gradient is then summed back to the slope's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Layout {
    channels: usize,
    inner: usize,
    expand: Option<Expansion>,
}

/// The block of the input's dims a slope is repeated over (their lengths), and for each the
/// slope's stride along it (0 where the slope broadcasts).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expansion {
    dims: Vec<usize>,
    strides: Vec<usize>,
}

impl Expansion {
    /// For each element of the block, in order, the slope's index it takes.
    fn indices(&self) -> Vec<usize> {
        let len: usize = self.dims.iter().product();
        (0..len)
            .map(|j| {
                let mut rest = j;
                let mut at = 0;
                for (&dim, &stride) in self.dims.iter().zip(&self.strides).rev() {
                    at += (rest % dim) * stride;
                    rest /= dim;
                }
                at
            })
            .collect()
    }
}

const CHANNEL_RULE: &str = "weight (one slope, or one per channel: dim 1 of an input of rank ≥ 2)";
const BROADCAST_RULE: &str = "weight (a slope that broadcasts to the input: each of its dims, \
    aligned from the last, 1 or the input's)";

/// How `x`'s elements map to `weight`'s slopes under `rule`.
fn channel_layout(x: &Tensor, weight: &Tensor, rule: Rule) -> Result<Layout> {
    x.expect_f32(OP, "the input")?;
    if !x.context().same(weight.context()) {
        return Err(Error::ContextMismatch { op: OP });
    }
    weight.expect_f32(OP, "the weight")?;
    let shape = x.shape();
    let plain = |channels: usize, inner: usize| Layout {
        channels,
        inner,
        expand: None,
    };
    if rule == Rule::Channel {
        let channels = if shape.len() >= 2 { shape[1] } else { 1 };
        return match weight.len() {
            1 => Ok(plain(1, x.len().max(1))),
            n if n == channels && shape.len() >= 2 => {
                Ok(plain(channels, shape[2..].iter().product()))
            }
            _ => Err(Error::ShapeMismatch {
                op: OP,
                what: CHANNEL_RULE,
                got: weight.shape().to_vec(),
                expected: vec![channels],
            }),
        };
    }
    let w_shape = weight.shape();
    let mismatch = || Error::ShapeMismatch {
        op: OP,
        what: BROADCAST_RULE,
        got: w_shape.to_vec(),
        expected: shape.to_vec(),
    };
    if w_shape.len() > shape.len() {
        return Err(mismatch());
    }
    let lead = shape.len() - w_shape.len();
    // The slope's own dims: those it has at the input's length (and the input's dims of 1,
    // which go either way).
    let mut own = vec![false; shape.len()];
    for (d, &len) in w_shape.iter().enumerate() {
        let x_len = shape[lead + d];
        if len != 1 && len != x_len {
            return Err(mismatch());
        }
        own[lead + d] = len == x_len && x_len != 1;
    }
    let (Some(first), Some(last)) = (own.iter().position(|&o| o), own.iter().rposition(|&o| o))
    else {
        return Ok(plain(1, x.len().max(1)));
    };
    let block = &shape[first..=last];
    let channels: usize = block.iter().product();
    let inner: usize = shape[last + 1..].iter().product();
    let contiguous = (first..=last).all(|d| own[d] || shape[d] == 1);
    if contiguous {
        return Ok(plain(channels, inner));
    }
    // The slope's strides along the block's dims (its own layout, 0 where it broadcasts).
    let mut strides = vec![0; block.len()];
    let mut stride = 1;
    for d in (0..w_shape.len()).rev() {
        let at = lead + d;
        if (first..=last).contains(&at) && own[at] {
            strides[at - first] = stride;
        }
        stride *= w_shape[d];
    }
    Ok(Layout {
        channels,
        inner,
        expand: Some(Expansion {
            dims: block.to_vec(),
            strides,
        }),
    })
}

/// The slope laid out for the kernel: `weight` itself, or repeated over the block of an
/// expansion (read back to the host: one wait).
fn laid_out(weight: &Tensor, layout: &Layout) -> Result<Tensor> {
    match &layout.expand {
        None => Ok(weight.clone()),
        Some(e) => {
            let w = weight.to_vec()?;
            let expanded: Vec<f32> = e.indices().into_iter().map(|i| w[i]).collect();
            Tensor::from_slice(weight.context(), &expanded, &[expanded.len()])
        }
    }
}

/// The slope's gradient in the slope's shape from the gradient of its laid-out form.
fn gathered(dw: Tensor, weight: &Tensor, layout: &Layout) -> Result<Tensor> {
    match &layout.expand {
        None => Ok(dw),
        Some(e) => {
            let partial = dw.to_vec()?;
            let mut sums = vec![0.0f64; weight.len()];
            for (j, i) in e.indices().into_iter().enumerate() {
                sums[i] += f64::from(partial[j]);
            }
            let sums: Vec<f32> = sums.iter().map(|&v| v as f32).collect();
            Tensor::from_slice(weight.context(), &sums, weight.shape())
        }
    }
}

impl Tensor {
    /// PReLU: `x > 0 ? x : w_c·x`, with `weight` one slope or one per channel (dim 1), as
    /// `torch.nn.PReLU`.
    pub fn prelu(&self, weight: &Tensor) -> Result<Tensor> {
        prelu_forward(self, weight, Rule::Channel)
    }

    /// The gradients `(dx, dweight)` of [`Tensor::prelu`] from the upstream `grad` (x's shape):
    /// `dx = x > 0 ? g : w_c·g`, `dweight_c = Σ over channel c of (x > 0 ? 0 : x·g)`.
    pub fn prelu_backward(&self, weight: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
        prelu_backward(self, weight, grad, Rule::Channel)
    }

    /// PReLU with ONNX's rule (`PRelu`): `x > 0 ? x : s·x` with `slope` broadcast to x
    /// unidirectionally by numpy's rules: its dims, aligned from the last, each 1 or x's (x
    /// `[3, 4, 5]` takes a slope of shape `[5]`, `[4, 1]`, `[3, 4, 5]`, `[1]`, …). A slope that
    /// does not broadcast to x is [`Error::ShapeMismatch`]. A slope whose own dims are not
    /// adjacent in x (`[3, 1, 5]` against `[3, 4, 5]`) is repeated over the dims between them
    /// on the host first (one wait for a device slope).
    pub fn prelu_broadcast(&self, slope: &Tensor) -> Result<Tensor> {
        prelu_forward(self, slope, Rule::Broadcast)
    }

    /// The gradients `(dx, dslope)` of [`Tensor::prelu_broadcast`] from the upstream `grad`
    /// (x's shape): `dx = x > 0 ? g : s·g`, and `dslope` (the slope's shape) the sum of
    /// `x > 0 ? 0 : x·g` over the dims the slope was broadcast along.
    pub fn prelu_broadcast_backward(
        &self,
        slope: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        prelu_backward(self, slope, grad, Rule::Broadcast)
    }
}

fn prelu_forward(x: &Tensor, weight: &Tensor, rule: Rule) -> Result<Tensor> {
    let operands = [("the input", x), ("the weight", weight)];
    if let Some(done) = half_route(OP, &operands, |w| Ok([prelu_forward(&w[0], &w[1], rule)?])) {
        return done.map(|[y]| y);
    }
    let layout = channel_layout(x, weight, rule)?;
    let (channels, inner) = (layout.channels, layout.inner);
    let weight = &laid_out(weight, &layout)?;
    let y = x.uninit_like(OP)?;
    match place(OP, &[x, weight, &y])? {
        Placement::Host => {
            let (xs, w) = (x.to_vec()?, weight.to_vec()?);
            let values = xs
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
            store(OP, &y, values)?;
        }
        Placement::Device(gpu) => {
            let p = params(gpu, x, channels, inner)?;
            let views = [
                x.view(0, x.len(), OP)?,
                weight.view(0, weight.len(), OP)?,
                y.view(0, y.len(), OP)?,
            ];
            launch_elementwise(gpu, (&FORWARD, &FORWARD4), &views, p)?;
        }
    }
    Ok(y)
}

fn prelu_backward(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    rule: Rule,
) -> Result<(Tensor, Tensor)> {
    let operands = [("the input", x), ("the weight", weight), ("gradient", grad)];
    if let Some(done) = half_route(OP, &operands, |w| {
        let (dx, dw) = prelu_backward(&w[0], &w[1], &w[2], rule)?;
        Ok([dx, dw])
    }) {
        return done.map(|[dx, dw]| (dx, dw));
    }
    let layout = channel_layout(x, weight, rule)?;
    let (channels, inner) = (layout.channels, layout.inner);
    check_same(OP, "gradient", x, grad)?;
    let slopes = laid_out(weight, &layout)?;
    // The laid-out slope's shape: the weight's own unless it was expanded.
    let slopes_shape = match &layout.expand {
        None => weight.shape().to_vec(),
        Some(_) => vec![slopes.len()],
    };
    let dx = x.uninit_like(OP)?;
    let dw = match place(OP, &[x, &slopes, grad, &dx])? {
        Placement::Host => {
            let (xs, w, g) = (x.to_vec()?, slopes.to_vec()?, grad.to_vec()?);
            let mut dw = vec![0.0f64; slopes.len()];
            let mut d = Vec::with_capacity(xs.len());
            for (i, (&v, &g)) in xs.iter().zip(&g).enumerate() {
                let c = (i / inner) % channels;
                if v > 0.0 {
                    d.push(g);
                } else {
                    d.push((f64::from(w[c]) * f64::from(g)) as f32);
                    dw[c] += f64::from(v) * f64::from(g);
                }
            }
            store(OP, &dx, d)?;
            let dw: Vec<f32> = dw.iter().map(|&v| v as f32).collect();
            Tensor::from_slice(x.context(), &dw, &slopes_shape)?
        }
        Placement::Device(gpu) => {
            let p = params(gpu, x, channels, inner)?;
            let x_view = x.view(0, x.len(), OP)?;
            let g_view = grad.view(0, grad.len(), OP)?;
            let views = [
                x_view,
                slopes.view(0, slopes.len(), OP)?,
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
            Tensor::from_device(x.context(), dw, &slopes_shape)
        }
    };
    Ok((dx, gathered(dw, weight, &layout)?))
}

/// The launch parameters, after checking that the input fits one binding (it is bound whole).
fn params(gpu: &Gpu, x: &Tensor, channels: usize, inner: usize) -> Result<PreluParams> {
    let whole = "max_storage_buffer_binding_size (a PReLU input is bound whole)";
    bound_whole(gpu, OP, whole, &[x])?;
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
