//! Host-side launches of every op family, and the launch geometry they share.

pub mod activation;
pub mod loss;
pub(crate) mod rows;
pub mod softmax;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::gpu::kernels::{Kernel, Shader, Slot};
use crate::tensor::Tensor;

/// Invocations per workgroup of the elementwise kernels.
pub(crate) const ELEMENTWISE_WG: u32 = 64;

/// Most workgroups an elementwise launch uses; beyond that each invocation loops (grid stride).
const ELEMENTWISE_MAX_GROUPS: u64 = 1024;

/// Elements per elementwise launch: as many as one storage binding holds, keeping every
/// chunk's byte offset a multiple of 256 (the largest offset alignment wgpu allows).
pub(crate) fn elementwise_chunk(gpu: &Gpu) -> usize {
    let binding = gpu
        .limits
        .max_storage_buffer_binding_size
        .min(u64::from(u32::MAX));
    ((binding / 256) * 256 / 4) as usize
}

/// Workgroups for `vec4s` vec4 elements.
pub(crate) fn elementwise_groups(_gpu: &Gpu, vec4s: usize) -> u64 {
    (vec4s as u64)
        .div_ceil(u64::from(ELEMENTWISE_WG))
        .min(ELEMENTWISE_MAX_GROUPS)
}

/// Mirrors the `Params` of `shaders/activation.wgsl` (whose first field `copy.wgsl` shares).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ElementwiseParams {
    len: u32,
    p0: f32,
    p1: f32,
    _pad: u32,
}

const COPY: Kernel = Kernel {
    shader: Shader::Copy,
    entry: "copy",
    slots: &[Slot::Read(1), Slot::ReadWrite(2)],
};

impl Tensor {
    /// Copies `self` into `out` through the plain vec4 copy shader (`dst[i] = src[i]`): the
    /// bandwidth ceiling that benchmarks compare every op with. On the CPU backend, a memcpy.
    pub fn copy_into(&self, out: &Tensor) -> Result<()> {
        activation::check_same("copy", "output", self, out)?;
        if out.aliases(self) {
            return Ok(());
        }
        match (self.storage(), out.storage()) {
            (crate::tensor::Storage::Host(_), crate::tensor::Storage::Host(dst)) => {
                *crate::tensor::write_host(dst)? = self.to_vec()?;
                Ok(())
            }
            _ => launch_elementwise(&COPY, &[], [0.0, 0.0], &[self, out]),
        }
    }
}

/// Launches an elementwise kernel over `tensors` (bound to the kernel's slots in order), in
/// chunks that each fit one storage binding.
pub(crate) fn launch_elementwise(
    kernel: &Kernel,
    constants: &[(&'static str, f64)],
    [p0, p1]: [f32; 2],
    tensors: &[&Tensor],
) -> Result<()> {
    let Some(first) = tensors.first() else {
        return Ok(());
    };
    let gpu = first.context().gpu().ok_or(Error::Gpu {
        op: kernel.entry,
        message: "mixed host and device tensors".into(),
    })?;
    let n = first.len();
    let chunk = elementwise_chunk(gpu);
    let mut constants = constants.to_vec();
    constants.push(("WG", f64::from(ELEMENTWISE_WG)));
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let views = tensors
            .iter()
            .map(|t| t.view(start, len, kernel.entry))
            .collect::<Result<Vec<_>>>()?;
        let vec4s = len.div_ceil(4);
        let params = ElementwiseParams {
            len: vec4s as u32,
            p0,
            p1,
            _pad: 0,
        };
        let groups = elementwise_groups(gpu, vec4s);
        gpu.launch(
            kernel,
            &constants,
            &views,
            bytemuck::bytes_of(&params),
            groups,
        )?;
        start += len;
    }
    Ok(())
}
