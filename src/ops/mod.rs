//! Host-side launches of every op family, and the launch geometry they share.

/// A kernel's uniform `Params` block as the host writes it: its size, and its fields' names and
/// WGSL types in order, which the bindings test compares with the shader's `struct Params`.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParamsLayout {
    pub size: usize,
    pub fields: &'static [(&'static str, &'static str)],
}

/// Declares a kernel's `Params` block: the `#[repr(C)]` struct the host fills (`u32`, `i32` or
/// `f32` fields, as WGSL's) and its [`ParamsLayout`] (`NAME::LAYOUT`).
macro_rules! params {
    (
        $(#[doc = $doc:literal])*
        $vis:vis struct $name:ident {
            $($(#[doc = $fdoc:literal])* $field:ident: $ty:ident),* $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[doc = $fdoc])* $field: $ty),*
        }

        #[cfg_attr(not(test), allow(dead_code))]
        impl $name {
            /// The block's size and fields, for the bindings test.
            pub(crate) const LAYOUT: crate::ops::ParamsLayout = crate::ops::ParamsLayout {
                size: size_of::<$name>(),
                fields: &[$((stringify!($field), stringify!($ty))),*],
            };
        }
    };
}

pub mod activation;
#[cfg(test)]
mod bindings;
pub(crate) mod convert;
pub mod gated;
pub mod linear;
pub mod loss;
pub mod optimizer;
pub(crate) mod placement;
pub mod prelu;
pub(crate) mod rows;
pub mod softmax;
pub mod softmax_dim;
pub(crate) mod sum;
pub(crate) mod transpose;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::gpu::pipelines::{Kernel, Slot};
use crate::layout;
use crate::tensor::Tensor;
use crate::wgsl::Shader;
use placement::Placement;

/// Invocations per workgroup of the elementwise kernels.
pub(crate) const ELEMENTWISE_WG: u32 = 256;

/// vec4 elements each invocation walks (with a grid stride). Measured on lavapipe (median of
/// alternating runs against the copy kernel, 16M floats): 256 × 4 moved the most bytes; one
/// vec4 per invocation cost ~25 % in workgroup overhead, 64-wide groups ~40 %.
const ELEMENTWISE_VEC4_PER_INVOCATION: u64 = 4;

/// Elements per elementwise launch: as many as one storage binding holds, keeping every
/// chunk's byte offset a multiple of 256 (the largest offset alignment wgpu allows).
pub(crate) fn elementwise_chunk(gpu: &Gpu) -> usize {
    layout::aligned_elements_in(gpu.max_binding)
}

/// Runs `(start, len)` covering `[0, n)`, each within one binding and within one buffer of
/// every tensor (tensors larger than a buffer are split into several).
pub(crate) fn spans(gpu: &Gpu, tensors: &[&Tensor], n: usize) -> Vec<(usize, usize)> {
    let chunk = elementwise_chunk(gpu).max(64);
    let mut runs = Vec::new();
    let mut start = 0;
    while start < n {
        let end = tensors
            .iter()
            .map(|t| t.part_end(start))
            .fold((start + chunk).min(n), usize::min);
        runs.push((start, end - start));
        start = end;
    }
    runs
}

/// Workgroups of `wg` invocations for `vec4s` vec4 elements.
pub(crate) fn elementwise_groups(vec4s: usize, wg: u32) -> u64 {
    (vec4s as u64).div_ceil(u64::from(wg) * ELEMENTWISE_VEC4_PER_INVOCATION)
}

params! {
    /// Mirrors the `Params` of `shaders/activation.wgsl` (whose first field `copy.wgsl` shares).
    pub(crate) struct ElementwiseParams {
        len: u32,
        p0: f32,
        p1: f32,
        p2: f32,
    }
}

/// Every kernel an op may launch, with the parameter block the host writes for it.
#[cfg(test)]
pub(crate) fn launched_kernels() -> Vec<(Kernel, ParamsLayout)> {
    let mut all = vec![(COPY, ElementwiseParams::LAYOUT)];
    all.extend(activation::launched_kernels());
    all.extend(gated::launched_kernels());
    all.extend(softmax::launched_kernels());
    all.extend(loss::launched_kernels());
    all.extend(prelu::launched_kernels());
    all.extend(softmax_dim::launched_kernels());
    all.push(sum::launched_kernel());
    all.extend(convert::launched_kernels());
    all.push(transpose::launched_kernel());
    all.extend(linear::launched_kernels());
    all.extend(optimizer::launched_kernels());
    all
}

const COPY: Kernel = Kernel {
    module: Shader::Copy.module(),
    entry: "copy",
    slots: &[Slot::Read(1), Slot::ReadWrite(2)],
};

impl Tensor {
    /// Copies `self` into `out` (same shape and float type) through the plain vec4 copy
    /// shader (`dst[i] = src[i]`): the bandwidth ceiling that benchmarks compare every op
    /// with, of f32 or half storage. On the CPU backend, a memcpy.
    pub fn copy_into(&self, out: &Tensor) -> Result<()> {
        let dtype = activation::check_same_float("copy", "output", self, out)?;
        if out.aliases(self) {
            return Ok(());
        }
        match placement::place("copy", &[self, out])? {
            Placement::Host => placement::store("copy", out, self.to_vec()?),
            Placement::Device(_) => {
                launch_elementwise_stored(&COPY, dtype, &[], [0.0; 3], &[self, out])
            }
        }
    }
}

/// Launches an elementwise kernel built for `storage` (see [`Gpu::launch_stored`]) over
/// `tensors` (bound to the kernel's slots in order), in chunks that each fit one storage
/// binding.
pub(crate) fn launch_elementwise_stored(
    kernel: &Kernel,
    storage: layout::DType,
    constants: &[(&'static str, f64)],
    [p0, p1, p2]: [f32; 3],
    tensors: &[&Tensor],
) -> Result<()> {
    let Some(first) = tensors.first() else {
        return Ok(());
    };
    let gpu = placement::device(kernel.entry, first.context())?;
    let wg = ELEMENTWISE_WG.min(gpu.workgroup_cap());
    let mut constants = constants.to_vec();
    constants.push(("WG", f64::from(wg)));
    for (start, len) in spans(gpu, tensors, first.len()) {
        let views = tensors
            .iter()
            .map(|t| t.view(start, len, kernel.entry))
            .collect::<Result<Vec<_>>>()?;
        let vec4s = layout::vec4s(len);
        let params = ElementwiseParams {
            len: vec4s as u32,
            p0,
            p1,
            p2,
        };
        let groups = elementwise_groups(vec4s, wg);
        gpu.launch_stored(
            kernel,
            storage,
            &constants,
            &views,
            bytemuck::bytes_of(&params),
            groups,
        )?;
    }
    Ok(())
}
