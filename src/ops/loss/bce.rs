//! The fused sigmoid BCE-with-logits launch (`shaders/bce_with_logits.wgsl`): the loss and
//! the gradient of every element in one pass, the losses summed per invocation and then on the
//! device.

use crate::cpu;
use crate::cpu::{narrow, widen};
use crate::definitions::loss::{BceOptions, Reduction};
use crate::error::Result;
use crate::gpu::View;
use crate::gpu::pipelines::{Kernel, Slot};
use crate::layout;
use crate::layout::DType;
use crate::ops::activation::check_same_float;
use crate::ops::placement::{Placement, place};
use crate::tensor::Tensor;
use crate::wgsl::Shader;

use super::{LossAndGrad, OP_BCE, check_weight};
use crate::ops::sum::sum_to_scalar;

params! {
    /// Mirrors `Params` in `shaders/bce_with_logits.wgsl`.
    struct BceParams {
        len: u32,
        n: u32,
        cols: u32,
        col0: u32,
        scale: f32,
        invocations: u32,
    }
}

/// Invocations per workgroup, and vec4s per invocation, of the BCE kernel.
const BCE_WG: u32 = 256;
const BCE_VEC4_PER_INVOCATION: usize = 8;

/// The BCE kernel writing per-element losses (`per_element`) or per-invocation sums.
fn kernel(per_element: bool) -> Kernel {
    Kernel {
        module: Shader::BceWithLogits.module(),
        entry: if per_element { "bce_none" } else { "bce_sum" },
        slots: &[
            Slot::Read(1),
            Slot::Read(2),
            Slot::ReadWrite(3),
            Slot::ReadWrite(4),
            Slot::Read(5),
            Slot::Read(6),
        ],
    }
}

/// Both BCE kernels with their parameter block's size.
#[cfg(test)]
pub(super) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    [true, false]
        .map(|per_element| (kernel(per_element), BceParams::LAYOUT))
        .to_vec()
}

pub(super) fn bce_with_logits(z: &Tensor, y: &Tensor, options: &BceOptions) -> Result<LossAndGrad> {
    // Half logits and targets of the same type run the kernel on their storage; half logits
    // with f32 targets (and the CPU backend) go through f32 copies. Either way the loss
    // accumulates in f32 and the loss and gradient are rounded once to the logits' type.
    let native_half = z.dtype().is_half() && y.dtype() == z.dtype() && z.context().gpu().is_some();
    if !native_half && (z.dtype().is_half() || y.dtype().is_half()) {
        z.expect_float(OP_BCE, "the logits")?;
        y.expect_float(OP_BCE, "targets")?;
        let wide = bce_with_logits(&z.to_dtype(DType::F32)?, &y.to_dtype(DType::F32)?, options)?;
        return Ok(LossAndGrad {
            loss: wide.loss.to_dtype(z.dtype())?,
            grad: wide.grad.to_dtype(z.dtype())?,
        });
    }
    let storage = check_same_float(OP_BCE, "targets", z, y)?;
    let cols = z.shape().last().copied().unwrap_or(1);
    check_weight(OP_BCE, "weight", &options.weight, cols)?;
    check_weight(OP_BCE, "pos_weight", &options.pos_weight, cols)?;
    let n = z.len();
    let loss_shape: Vec<usize> = match options.reduction {
        Reduction::None => z.shape().to_vec(),
        _ => Vec::new(),
    };
    let ctx = z.context();
    let gpu = match place(OP_BCE, &[z, y])? {
        Placement::Device(gpu) => gpu,
        Placement::Host => return host_bce(z, y, options, &loss_shape),
    };
    let grad = z.uninit_like(OP_BCE)?;
    let scale = match options.reduction {
        Reduction::Mean => (1.0 / n as f64) as f32,
        _ => 1.0,
    };
    if n == 0 {
        // PyTorch: an empty batch has loss 0 (sum), NaN (mean) or an empty loss (none).
        let loss = match options.reduction {
            Reduction::None => Tensor::from_slice(ctx, &[], &loss_shape)?,
            Reduction::Sum => Tensor::from_slice(ctx, &[0.0], &[])?,
            Reduction::Mean => Tensor::from_slice(ctx, &[f32::NAN], &[])?,
        };
        return Ok(LossAndGrad {
            loss: loss.to_dtype(storage)?,
            grad,
        });
    }
    let per_element = options.reduction == Reduction::None;
    let loss_elems = if per_element { n } else { 0 };
    let loss = Tensor::uninit(ctx, &[loss_elems], OP_BCE)?;
    let table = |t: &Option<Vec<f32>>| {
        let values: &[f32] = t.as_deref().unwrap_or(&[1.0]);
        gpu.upload_new(bytemuck::cast_slice(values), OP_BCE)
            .map(|b| (b, values.len()))
    };
    let (weight, weight_len) = table(&options.weight)?;
    let (pos_weight, pos_weight_len) = table(&options.pos_weight)?;
    let wg = BCE_WG.min(gpu.workgroup_cap());
    let constants = [
        ("WG", f64::from(wg)),
        (
            "HAS_WEIGHT",
            if options.weight.is_some() { 1.0 } else { 0.0 },
        ),
        (
            "HAS_POS_WEIGHT",
            if options.pos_weight.is_some() {
                1.0
            } else {
                0.0
            },
        ),
    ];
    let kernel = kernel(per_element);
    // Runs that fit one binding and one buffer of every tensor; each launch's partial sums
    // get their own run of the partials buffer (a multiple of WG values, so offsets stay
    // aligned).
    let mut tensors = vec![z, y, &grad];
    if per_element {
        tensors.push(&loss);
    }
    let spans = crate::ops::spans(gpu, &tensors, n);
    // The partial sums share one buffer: beyond its size, invocations take more elements each.
    let groups_cap =
        (layout::elements_in(gpu.max_buffer) as u64 / u64::from(wg) / spans.len().max(1) as u64)
            .max(1);
    let launches: Vec<(usize, usize, u64)> = spans
        .into_iter()
        .map(|(start, len)| {
            let groups = (layout::vec4s(len) as u64)
                .div_ceil(u64::from(wg) * BCE_VEC4_PER_INVOCATION as u64)
                .clamp(1, groups_cap);
            (start, len, groups)
        })
        .collect();
    let partial_count: u64 = launches.iter().map(|l| l.2 * u64::from(wg)).sum();
    let partials = if per_element {
        None
    } else {
        Some(gpu.alloc(layout::bytes(partial_count.max(1) as usize), OP_BCE)?)
    };
    let mut partial_offset = 0u64;
    for (start, len, groups) in launches {
        let params = BceParams {
            len: layout::vec4s(len) as u32,
            n: len as u32,
            cols: cols as u32,
            col0: (start % cols.max(1)) as u32,
            scale,
            invocations: (groups * u64::from(wg)) as u32,
        };
        let count = groups * u64::from(wg);
        let losses = match &partials {
            Some(p) => View {
                buffer: p.raw(),
                offset: layout::bytes(partial_offset as usize),
                size: layout::bytes(count as usize),
            },
            None => loss.view(start, len, OP_BCE)?,
        };
        partial_offset += count;
        let views = [
            z.view(start, len, OP_BCE)?,
            y.view(start, len, OP_BCE)?,
            grad.view(start, len, OP_BCE)?,
            losses,
            weight.view(weight_len),
            pos_weight.view(pos_weight_len),
        ];
        gpu.launch_stored(
            &kernel,
            storage,
            &constants,
            &views,
            bytemuck::bytes_of(&params),
            groups,
        )?;
    }
    let loss = match partials {
        Some(p) => sum_to_scalar(gpu, ctx, &p, partial_count as usize, scale)?,
        None => loss.reshape(&loss_shape)?,
    };
    Ok(LossAndGrad {
        loss: loss.to_dtype(storage)?,
        grad,
    })
}

/// [`bce_with_logits`] on the CPU backend, through the f64 reference.
fn host_bce(
    z: &Tensor,
    y: &Tensor,
    options: &BceOptions,
    loss_shape: &[usize],
) -> Result<LossAndGrad> {
    let ctx = z.context();
    let r = cpu::loss::bce_with_logits(&widen(&z.to_vec()?), &widen(&y.to_vec()?), options);
    Ok(LossAndGrad {
        loss: Tensor::from_slice(ctx, &narrow(&r.loss), loss_shape)?,
        grad: Tensor::from_slice(ctx, &narrow(&r.grad), z.shape())?,
    })
}
