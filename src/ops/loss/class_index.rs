//! Class indices that live on the device (`Targets::Device`): converted to the u32 indices the
//! cross-entropy kernels read and checked against `[0, K)` and the ignore index on the device
//! (`shaders/class_index.wgsl`), with the mean's denominator Σ w_y summed there too. One small
//! read-back per call brings the verdict (and the denominator) to the host.

use super::OP_CE;
use crate::definitions::loss::{CrossEntropyOptions, Reduction};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::gpu::pipelines::{Kernel, Slot};
use crate::gpu::pool::DeviceBuffer;
use crate::layout::{self, DType};
use crate::ops::placement::fits_binding;
use crate::ops::sum::sum_to_scalar;
use crate::tensor::Tensor;
use crate::wgsl::Shader;

params! {
    /// Mirrors `Params` in `shaders/class_index.wgsl`.
    struct ClassIndexParams {
        rows: u32,
        classes: u32,
        ignore_lo: u32,
        ignore_hi: u32,
    }
}

/// Invocations per workgroup of the conversion.
const WG: u32 = 256;

/// `status[0]` while no label is out of range.
const NONE: u32 = u32::MAX;

const CONVERT: Kernel = Kernel {
    module: Shader::ClassIndex.module(),
    entry: "convert",
    slots: &[
        Slot::Read(1),
        Slot::ReadWrite(2),
        Slot::ReadWrite(3),
        Slot::ReadWrite(4),
        Slot::Read(5),
    ],
};

const OFFENDER: Kernel = Kernel {
    module: Shader::ClassIndex.module(),
    entry: "offender",
    slots: &[Slot::Read(1), Slot::ReadWrite(4)],
};

/// Both kernels with their parameter block's size.
#[cfg(test)]
pub(super) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    [CONVERT, OFFENDER]
        .map(|k| (k, ClassIndexParams::LAYOUT))
        .to_vec()
}

/// The checked indices of device targets.
pub(super) struct DeviceClasses {
    /// Per row: the class, or the ignored marker.
    pub index: DeviceBuffer,
    /// Σ w_y over the rows not ignored (computed only for a mean, else 0).
    pub weight_sum: f64,
}

/// Checks `labels` (one integer per row of `rows`) against `classes` and the options on the
/// device, and returns the converted indices.
pub(super) fn device_classes(
    gpu: &Gpu,
    labels: &Tensor,
    rows: usize,
    classes: usize,
    options: &CrossEntropyOptions,
) -> Result<DeviceClasses> {
    let (width, signed) = match labels.dtype() {
        DType::U32 => (1, false),
        DType::I32 => (1, true),
        DType::I64 => (2, true),
        other => {
            return Err(Error::DTypeMismatch {
                op: OP_CE,
                what: "device class-index targets",
                got: other,
                expected: "u32, i32 or i64 class indices",
            });
        }
    };
    if labels.len() != rows {
        return Err(Error::ShapeMismatch {
            op: OP_CE,
            what: "device class-index targets",
            got: labels.shape().to_vec(),
            expected: vec![rows],
        });
    }
    fits_binding(
        gpu,
        OP_CE,
        "max_storage_buffer_binding_size (one label per row); split the batch",
        (rows * labels.dtype().size()) as u64,
    )?;
    let index = gpu.alloc(layout::bytes(rows), OP_CE)?;
    let row_weight = gpu.alloc(layout::bytes(rows), OP_CE)?;
    let status = gpu.upload_new(bytemuck::cast_slice(&[NONE, 0, 0, 0]), OP_CE)?;
    let table = options.weight.as_deref().unwrap_or(&[0.0]);
    let weight = gpu.upload_new(bytemuck::cast_slice(table), OP_CE)?;
    let ignore = options.ignore_index as u64;
    let params = ClassIndexParams {
        rows: rows as u32,
        classes: classes as u32,
        ignore_lo: ignore as u32,
        ignore_hi: (ignore >> 32) as u32,
    };
    let constants = [
        ("WG", f64::from(WG)),
        ("WIDTH", f64::from(width)),
        ("SIGNED", if signed { 1.0 } else { 0.0 }),
        (
            "HAS_WEIGHT",
            if options.weight.is_some() { 1.0 } else { 0.0 },
        ),
    ];
    let views = [
        labels.view(0, rows, OP_CE)?,
        index.view(rows),
        row_weight.view(rows),
        status.view(4),
        weight.view(table.len()),
    ];
    let groups = (rows as u64).div_ceil(u64::from(WG));
    gpu.launch(
        &CONVERT,
        &constants,
        &views,
        bytemuck::bytes_of(&params),
        groups,
    )?;
    let views = [labels.view(0, rows, OP_CE)?, status.view(4)];
    gpu.launch(
        &OFFENDER,
        &constants,
        &views,
        bytemuck::bytes_of(&params),
        1,
    )?;

    let weight_sum = if options.reduction == Reduction::Mean {
        let sum = sum_to_scalar(gpu, labels.context(), &row_weight, rows, 1.0)?;
        f64::from(sum.to_vec()?[0])
    } else {
        0.0
    };
    let mut verdict = [0u32; 4];
    gpu.read_into(status.raw(), 0, bytemuck::cast_slice_mut(&mut verdict))?;
    if verdict[0] != NONE {
        let value = match labels.dtype() {
            DType::U32 => i64::from(verdict[1]),
            DType::I32 => i64::from(verdict[1] as i32),
            _ => ((u64::from(verdict[2]) << 32) | u64::from(verdict[1])) as i64,
        };
        return Err(Error::TargetOutOfRange {
            op: OP_CE,
            row: verdict[0] as usize,
            value,
            classes,
            ignore_index: options.ignore_index,
        });
    }
    Ok(DeviceClasses { index, weight_sum })
}
