//! The batched transpose of the last two dims (`shaders/transpose.wgsl`): how PyTorch's
//! class-at-dim-1 layout `[N, C, d1, …, dk]` reaches the row kernels (`[N, S, C]`, S = d1·…·dk)
//! and how their results go back.

use crate::error::Result;
use crate::gpu::pipelines::{Kernel, Slot};
use crate::gpu::{Gpu, View};
use crate::layout::DType;
use crate::ops::placement::{Placement, bound_whole, place, store};
use crate::tensor::Tensor;
use crate::wgsl::Shader;

const OP: &str = "transpose";

/// Invocations per workgroup.
const WG: u32 = 256;

params! {
    /// Mirrors `Params` in `shaders/transpose.wgsl`.
    struct TransposeParams {
        batch: u32,
        rows: u32,
        cols: u32,
    }
}

const TRANSPOSE: Kernel = Kernel {
    module: Shader::Transpose.module(),
    entry: "transpose",
    slots: &[Slot::Read(1), Slot::ReadWrite(2)],
};

/// The kernel with its parameter block's size.
#[cfg(test)]
pub(crate) fn launched_kernel() -> (Kernel, crate::ops::ParamsLayout) {
    (TRANSPOSE, TransposeParams::LAYOUT)
}

/// `x` (f32, read as `[batch, rows, cols]`) with its last two dims swapped: a new f32 tensor
/// of shape `[batch, cols, rows]`. The tensor is bound whole, so it must fit one binding.
pub(crate) fn transpose_last_two(
    x: &Tensor,
    batch: usize,
    rows: usize,
    cols: usize,
) -> Result<Tensor> {
    x.expect_f32(OP, "the input")?;
    let out = Tensor::uninit_as(x.context(), &[batch, cols, rows], DType::F32, OP)?;
    match place(OP, &[x, &out])? {
        Placement::Host => {
            let src = x.to_vec()?;
            let mut moved = vec![0.0f32; src.len()];
            for b in 0..batch {
                let plane = b * rows * cols;
                for r in 0..rows {
                    for c in 0..cols {
                        moved[plane + c * rows + r] = src[plane + r * cols + c];
                    }
                }
            }
            store(OP, &out, moved)?;
        }
        Placement::Device(gpu) => {
            let n = x.len();
            let whole = "max_storage_buffer_binding_size (a tensor in the class-at-dim-1 layout \
                         is moved whole)";
            bound_whole(gpu, OP, whole, &[x])?;
            transpose_view(
                gpu,
                x.view(0, n, OP)?,
                out.view(0, n, OP)?,
                (batch, rows, cols),
            )?;
        }
    }
    Ok(out)
}

/// Writes `src` (f32, read as `[batch, rows, cols]`) into `dst` with its last two dims
/// swapped.
pub(crate) fn transpose_view(
    gpu: &Gpu,
    src: View<'_>,
    dst: View<'_>,
    (batch, rows, cols): (usize, usize, usize),
) -> Result<()> {
    let params = TransposeParams {
        batch: batch as u32,
        rows: rows as u32,
        cols: cols as u32,
    };
    let wg = WG.min(gpu.workgroup_cap());
    let n = batch * rows * cols;
    let groups = (n as u64).div_ceil(u64::from(wg) * 4).max(1);
    gpu.launch(
        &TRANSPOSE,
        &[("WG", f64::from(wg))],
        &[src, dst],
        bytemuck::bytes_of(&params),
        groups,
    )
}
