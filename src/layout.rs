//! How tensors lie in device memory, in one place: the element sizes (of `DType`), the vec4
//! granule every kernel reads and writes, how many elements one storage binding holds, the
//! alignment a binding's start needs, and the 1-D/2-D workgroup grid of a launch.
//!
//! A launch asks for a number of workgroups; [`grid`] lays it out as `x × y` with both within
//! `max_compute_workgroups_per_dimension`, and shaders recover the linear group index as
//! `wid.x + wid.y * nwg.x`, skipping the few indices past the requested count.

pub use crate::dtype::DType;
use crate::error::{Error, Result};

/// Elements of the vec4 granule that kernels load and store.
pub(crate) const VEC4: usize = 4;

/// Bytes of one vec4 of f32.
const VEC4_BYTES: u64 = 16;

/// The largest offset alignment wgpu allows a device to ask for; chunk boundaries that are
/// multiples of it are aligned on every device.
pub(crate) const MAX_OFFSET_ALIGNMENT: u64 = 256;

/// Bytes of `n` f32 elements, exactly.
pub(crate) fn bytes(n: usize) -> u64 {
    n as u64 * DType::F32.size() as u64
}

/// Bytes a tensor of `n` f32 elements occupies on the device: rounded up to whole vec4s, and
/// never zero (a binding may not be empty).
pub(crate) fn storage_bytes(n: usize) -> u64 {
    storage_bytes_of(n, DType::F32)
}

/// Bytes a tensor of `n` elements of `dtype` occupies on the device: rounded up to 16 bytes
/// (whole vec4s of f32, two vec4s of a half type), and never zero.
pub(crate) fn storage_bytes_of(n: usize, dtype: DType) -> u64 {
    (n.max(1) as u64 * dtype.size() as u64).div_ceil(VEC4_BYTES) * VEC4_BYTES
}

/// Elements of `dtype` that `bytes` holds in whole 16-byte granules.
pub(crate) fn elements_of_in(bytes: u64, dtype: DType) -> usize {
    (bytes / VEC4_BYTES) as usize * (VEC4_BYTES as usize / dtype.size())
}

/// f32 elements of `bytes`, rounded down to whole vec4s: what one binding (or buffer) of that
/// size holds for a vec4 kernel.
pub(crate) fn elements_in(bytes: u64) -> usize {
    (bytes / VEC4_BYTES) as usize * VEC4
}

/// Elements whose count keeps a chunk boundary aligned for every float type: a multiple of
/// this many elements is a multiple of [`MAX_OFFSET_ALIGNMENT`] bytes in f32 and in a half type.
pub(crate) const ALIGNED_ELEMENTS: usize = MAX_OFFSET_ALIGNMENT as usize / 2;

/// f32 elements in `bytes` rounded down to a multiple of [`ALIGNED_ELEMENTS`], so that
/// consecutive chunks of that many elements start at aligned offsets in a tensor of any float
/// type.
pub(crate) fn aligned_elements_in(bytes: u64) -> usize {
    let unit = (ALIGNED_ELEMENTS * DType::F32.size()) as u64;
    (bytes / unit * unit) as usize / DType::F32.size()
}

/// The device's storage-binding offset alignment in f32 elements (at least one vec4).
pub(crate) fn offset_alignment_elements(limits: &wgpu::Limits) -> usize {
    u64::from(limits.min_storage_buffer_offset_alignment).max(VEC4_BYTES) as usize
        / DType::F32.size()
}

/// The device's storage-binding offset alignment in elements of float type `dtype` (at least
/// one vec4 of f32: twice as many elements of a half type).
pub(crate) fn offset_alignment_elements_of(limits: &wgpu::Limits, dtype: DType) -> usize {
    offset_alignment_elements(limits) * DType::F32.size() / dtype.size()
}

/// vec4s covering `n` elements.
pub(crate) fn vec4s(n: usize) -> usize {
    n.div_ceil(VEC4)
}

/// A grid of `[x, y]` workgroups covering at least `groups`, each side within `max_dim`.
pub(crate) fn grid(groups: u64, max_dim: u32) -> Result<[u32; 2]> {
    let max = u64::from(max_dim.max(1));
    if groups <= max {
        return Ok([groups as u32, 1]);
    }
    let y = groups.div_ceil(max);
    if y > max {
        return Err(Error::TooLarge {
            op: "dispatch",
            requested: groups,
            limit: max * max,
            unit: crate::Unit::Workgroups,
            what: "workgroups per dispatch",
        });
    }
    let x = groups.div_ceil(y);
    Ok([x as u32, y as u32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_stay_within_the_limit_and_cover_the_request() {
        assert_eq!(grid(1, 65535).ok(), Some([1, 1]));
        assert_eq!(grid(65535, 65535).ok(), Some([65535, 1]));
        let [x, y] = grid(10_000_000, 65535).unwrap_or([0, 0]);
        assert!(x <= 65535 && y <= 65535);
        assert!(u64::from(x) * u64::from(y) >= 10_000_000);
        assert!(u64::from(x) * u64::from(y) < 10_000_000 + u64::from(y));
        assert!(grid(65535 * 65535 + 1, 65535).is_err());
    }

    #[test]
    fn a_grid_too_large_is_counted_in_workgroups() {
        let message = grid(65535 * 65535 + 1, 65535)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            message,
            "dispatch: needs 4294836226 workgroups, but at most 4294836225 workgroups fit \
             (workgroups per dispatch)"
        );
    }

    #[test]
    fn sizes_round_to_whole_vec4s_and_bindings_to_whole_vec4s() {
        assert_eq!(storage_bytes(0), 16);
        assert_eq!(storage_bytes(5), 32);
        assert_eq!(bytes(5), 20);
        assert_eq!(elements_in(134_217_728), 33_554_432);
        assert_eq!(elements_in(100), 24);
        assert_eq!(aligned_elements_in(1000), 128);
        assert_eq!(storage_bytes_of(5, DType::F16), 16);
        assert_eq!(storage_bytes_of(9, DType::BF16), 32);
        assert_eq!(elements_of_in(100, DType::F16), 48);
        assert_eq!(vec4s(9), 3);
    }
}
