//! Sums on the device (`shaders/reduce.wgsl`): `scale · Σ` of a buffer of losses to a scalar
//! tensor, level by level in windows of one binding, and one level of grouped sums.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::gpu::pipelines::{Kernel, Slot};
use crate::gpu::pool::DeviceBuffer;
use crate::layout;
use crate::ops::placement::fits_binding;
use crate::tensor::Tensor;
use crate::wgsl::Shader;

params! {
    /// Mirrors `Params` in `shaders/reduce.wgsl`.
    struct ReduceParams {
        len: u32,
        group: u32,
        scale: f32,
    }
}

/// Values summed per invocation at each level of the device-side reduction.
const REDUCE_GROUP: usize = 64;

const SUM_GROUPS: Kernel = Kernel {
    module: Shader::Reduce.module(),
    entry: "sum_groups",
    slots: &[Slot::Read(1), Slot::ReadWrite(2)],
};

/// The reduction's kernel with its parameter block's size.
#[cfg(test)]
pub(crate) fn launched_kernel() -> (Kernel, crate::ops::ParamsLayout) {
    (SUM_GROUPS, ReduceParams::LAYOUT)
}

/// `Σ` of each run of `group` consecutive values among the first `len` of `src` (the last run
/// may be short): one level, `len / group` outputs (rounded up).
pub(crate) fn sum_groups(
    gpu: &Gpu,
    src: &DeviceBuffer,
    len: usize,
    group: usize,
    op: &'static str,
) -> Result<DeviceBuffer> {
    let outputs = len.div_ceil(group.max(1));
    fits_binding(
        gpu,
        op,
        "max_storage_buffer_binding_size (grouped sums)",
        layout::bytes(len),
    )?;
    let dst = gpu.alloc(layout::bytes(outputs), op)?;
    let params = ReduceParams {
        len: len as u32,
        group: group as u32,
        scale: 1.0,
    };
    let views = [src.view(len), dst.view(outputs)];
    let groups = (outputs as u64).div_ceil(64);
    gpu.launch(
        &SUM_GROUPS,
        &[("WG", 64.0)],
        &views,
        bytemuck::bytes_of(&params),
        groups,
    )?;
    Ok(dst)
}

/// `scale · Σ` of the first `len` values of `src`, as a scalar tensor, summed on the device
/// level by level (a tree of short sums).
pub(crate) fn sum_to_scalar(
    gpu: &Gpu,
    ctx: &crate::Context,
    src: &DeviceBuffer,
    len: usize,
    scale: f32,
) -> Result<Tensor> {
    if len == 0 {
        // PyTorch: the sum of nothing is 0 and the mean of nothing is NaN (0 · 1/0).
        let value = if scale.is_finite() { 0.0 } else { f32::NAN };
        return Tensor::from_slice(ctx, &[value], &[]);
    }
    // Inputs longer than one binding are summed in windows: a multiple of 4096 values, so
    // that both the window and its outputs start 256-byte aligned.
    let window = (layout::elements_in(gpu.max_binding) / 4096 * 4096).max(4096);
    sum_in_windows(gpu, ctx, src, len, scale, window)
}

fn sum_in_windows(
    gpu: &Gpu,
    ctx: &crate::Context,
    src: &DeviceBuffer,
    len: usize,
    scale: f32,
    window: usize,
) -> Result<Tensor> {
    let mut level: Option<DeviceBuffer> = None;
    let mut len = len;
    loop {
        let outputs = len.div_ceil(REDUCE_GROUP);
        let dst = gpu.alloc(layout::bytes(outputs), "loss reduction")?;
        let input = level.as_ref().unwrap_or(src);
        for start in (0..len).step_by(window) {
            let part = window.min(len - start);
            let part_outputs = part.div_ceil(REDUCE_GROUP);
            let params = ReduceParams {
                len: part as u32,
                group: REDUCE_GROUP as u32,
                scale: if outputs == 1 { scale } else { 1.0 },
            };
            let views = [
                input.view_at(start, part),
                dst.view_at(start / REDUCE_GROUP, part_outputs),
            ];
            gpu.launch(
                &SUM_GROUPS,
                &[("WG", 64.0)],
                &views,
                bytemuck::bytes_of(&params),
                (part_outputs as u64).div_ceil(64),
            )?;
        }
        if outputs == 1 {
            return Ok(Tensor::from_device(ctx, dst, &[]));
        }
        level = Some(dst);
        len = outputs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The windowed device sum against the host's, with windows far shorter than the input
    /// (on real adapters only inputs beyond one binding, ~1e9 BCE elements, take this path).
    #[test]
    fn sums_longer_than_a_window_add_up() {
        let Ok(ctx) = crate::Context::with_options(crate::ContextOptions {
            allow_cpu_fallback: false,
            ..Default::default()
        }) else {
            assert!(
                std::env::var("GPU_ACTIVATIONS_REQUIRE_ADAPTER").map_or(true, |v| v != "1"),
                "no GPU adapter and GPU_ACTIVATIONS_REQUIRE_ADAPTER=1"
            );
            return;
        };
        let Some(gpu) = ctx.gpu() else { return };
        let values: Vec<f32> = (0..100_003).map(|i| (i % 97) as f32 * 0.25).collect();
        let src = gpu
            .upload_new(bytemuck::cast_slice(&values), "test")
            .unwrap_or_else(|e| panic!("{e}"));
        let total = sum_in_windows(gpu, &ctx, &src, values.len(), 0.5, 4096)
            .and_then(|t| t.to_vec())
            .unwrap_or_else(|e| panic!("{e}"));
        let want: f64 = values.iter().map(|&v| f64::from(v)).sum::<f64>() * 0.5;
        assert!(
            (f64::from(total[0]) - want).abs() <= 1e-6 * want,
            "{} vs {want}",
            total[0]
        );
    }
}
