//! Host-side launches of every op family, and the launch geometry they share.

pub mod activation;
pub mod loss;
pub(crate) mod rows;
pub mod softmax;

use crate::gpu::Gpu;

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
