//! The fused softmax cross-entropy launch (`shaders/cross_entropy.wgsl`): class indices
//! checked and converted on the host, one kernel for the loss and the gradient, the row losses
//! reduced on the device.

use crate::cpu;
use crate::cpu::loss::CrossEntropyTargets;
use crate::cpu::{narrow, widen};
use crate::definitions::loss::{CrossEntropyOptions, Reduction};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::gpu::pipelines::{Kernel, Slot};
use crate::gpu::pool::DeviceBuffer;
use crate::layout;
use crate::layout::DType;
use crate::ops::activation::check_same;
use crate::ops::convert::common_float;
use crate::ops::placement::{Placement, device, mixed, place, store};
use crate::ops::rows::{RowPlan, row_blocks};
use crate::tensor::Tensor;
use crate::wgsl::Shader;

use super::class_index::device_classes;
use super::{OP_CE, Targets, check_weight};
use crate::ops::sum::sum_to_scalar;

/// The class index of an ignored row, as every loss kernel reads it.
pub(super) use crate::wgsl::IGNORED;

/// Validated class-index targets.
pub(super) struct Classes {
    /// Per row: the class, or `IGNORED`.
    pub index: ClassIndex,
    /// The mean's denominator: Σ w_y over the rows not ignored.
    pub weight_sum: f64,
}

/// Where the checked indices are: still on the host (uploaded at launch), or already on the
/// device (converted there from the caller's labels).
pub(super) enum ClassIndex {
    Host(Vec<u32>),
    Device(DeviceBuffer),
}

impl ClassIndex {
    /// The indices on the device: the device's own, or the host's uploaded into `uploaded`.
    pub fn on_device<'a>(
        &'a self,
        gpu: &Gpu,
        uploaded: &'a mut Option<DeviceBuffer>,
        op: &'static str,
    ) -> Result<&'a DeviceBuffer> {
        match self {
            ClassIndex::Device(device) => Ok(device),
            ClassIndex::Host(host) => {
                Ok(uploaded.insert(gpu.upload_new(bytemuck::cast_slice(host), op)?))
            }
        }
    }
}

/// `(rows, classes)` of cross-entropy logits, once the options are checked against them: at
/// least one class, `label_smoothing` in `[0, 1]`, one weight per class.
pub(super) fn check_options(
    op: &'static str,
    logits: &Tensor,
    options: &CrossEntropyOptions,
) -> Result<(usize, usize)> {
    let (rows, classes) = logits.rows_cols(op)?;
    check_class_options(op, logits.shape(), classes, options)?;
    Ok((rows, classes))
}

/// The options checked against `classes` (the last dim of `shape`): at least one class,
/// `label_smoothing` in `[0, 1]`, one weight per class.
pub(super) fn check_class_options(
    op: &'static str,
    shape: &[usize],
    classes: usize,
    options: &CrossEntropyOptions,
) -> Result<()> {
    if classes == 0 {
        return Err(Error::invalid_shape(
            op,
            shape,
            "cross-entropy needs at least one class",
        ));
    }
    let eps = options.label_smoothing;
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::InvalidParameter {
            op,
            name: "label_smoothing",
            value: crate::Error::f32_param(eps),
            reason: "must lie in [0, 1]",
        });
    }
    check_weight(op, "weight", &options.weight, classes)
}

pub(super) fn validate_classes(
    op: &'static str,
    targets: &[i64],
    rows: usize,
    classes: usize,
    options: &CrossEntropyOptions,
) -> Result<Classes> {
    if targets.len() != rows {
        return Err(Error::ShapeMismatch {
            op,
            what: "class-index targets",
            got: vec![targets.len()],
            expected: vec![rows],
        });
    }
    let mut index = Vec::with_capacity(rows);
    let mut weight_sum = 0.0;
    for (row, &t) in targets.iter().enumerate() {
        if t == options.ignore_index {
            index.push(IGNORED);
            continue;
        }
        if t < 0 || t as u64 >= classes as u64 {
            return Err(Error::TargetOutOfRange {
                op,
                row,
                value: t,
                classes,
                ignore_index: options.ignore_index,
            });
        }
        index.push(t as u32);
        weight_sum += options
            .weight
            .as_ref()
            .map_or(1.0, |w| f64::from(w[t as usize]));
    }
    Ok(Classes {
        index: ClassIndex::Host(index),
        weight_sum,
    })
}

pub(super) fn cross_entropy_into(
    logits: &Tensor,
    targets: Targets<'_>,
    options: &CrossEntropyOptions,
    grad: &Tensor,
) -> Result<Tensor> {
    if let Some(done) = through_f32(logits, targets, options, grad) {
        return done;
    }
    let (rows, classes) = check_options(OP_CE, logits, options)?;
    let eps = options.label_smoothing;
    check_same(OP_CE, "gradient", logits, grad)?;
    let loss_shape: Vec<usize> = match options.reduction {
        Reduction::None => logits.shape()[..logits.shape().len() - 1].to_vec(),
        _ => Vec::new(),
    };
    // Validate (and convert) the targets before any work starts.
    let widened;
    let indices: Option<&[i64]> = match targets {
        Targets::Indices(t) => Some(t),
        Targets::IndicesU32(t) => {
            widened = t.iter().map(|&v| i64::from(v)).collect::<Vec<_>>();
            Some(&widened)
        }
        Targets::Probabilities(t) => {
            check_same(OP_CE, "probability targets", logits, t)?;
            None
        }
        Targets::Device(t) => {
            if !t.context().same(logits.context()) {
                return Err(Error::ContextMismatch { op: OP_CE });
            }
            None
        }
    };
    let classes_checked = match (indices, targets) {
        (Some(t), _) => Some(validate_classes(OP_CE, t, rows, classes, options)?),
        (None, Targets::Device(t)) => {
            let gpu = device(OP_CE, logits.context())?;
            let checked = device_classes(gpu, t, rows, classes, options)?;
            Some(Classes {
                index: ClassIndex::Device(checked.index),
                weight_sum: checked.weight_sum,
            })
        }
        _ => None,
    };
    let denominator = classes_checked
        .as_ref()
        .map_or(rows as f64, |c| c.weight_sum);

    match place(OP_CE, &[logits, grad])? {
        Placement::Host => {
            let z: Vec<f64> = widen(&logits.to_vec()?);
            let probs;
            let t = match (indices, targets) {
                (Some(i), _) => CrossEntropyTargets::Indices(i),
                (None, Targets::Probabilities(p)) => {
                    probs = widen(&p.to_vec()?);
                    CrossEntropyTargets::Probabilities(&probs)
                }
                _ => return Err(mixed(OP_CE)),
            };
            let r = cpu::loss::cross_entropy(&z, classes, t, options);
            store(OP_CE, grad, narrow(&r.grad))?;
            Tensor::from_slice(logits.context(), &narrow(&r.loss), &loss_shape)
        }
        Placement::Device(gpu) => {
            let scale = match options.reduction {
                Reduction::Mean => (1.0 / denominator) as f32,
                _ => 1.0,
            };
            let row_loss = gpu.alloc(layout::bytes(rows.max(1)), OP_CE)?;
            // Targets sharing storage with the logits or the gradient (bound read-write) are
            // copied first: one buffer may not be bound both ways in a launch.
            let probabilities = match targets {
                Targets::Probabilities(p) if p.aliases(logits) || p.aliases(grad) => {
                    let copy = p.uninit_like(OP_CE)?;
                    p.copy_into(&copy)?;
                    Some(copy)
                }
                Targets::Probabilities(p) => Some(p.clone()),
                _ => None,
            };
            let fused = FusedCrossEntropy {
                gpu,
                logits,
                grad,
                classes: classes_checked.as_ref(),
                probabilities: probabilities.as_ref(),
                weight: options.weight.as_deref(),
                eps,
                scale,
            };
            fused.launch(rows, classes, &row_loss)?;
            let ctx = logits.context();
            match options.reduction {
                Reduction::None => Ok(Tensor::from_device(ctx, row_loss, &loss_shape)),
                Reduction::Sum => sum_to_scalar(gpu, ctx, &row_loss, rows, 1.0),
                Reduction::Mean => sum_to_scalar(gpu, ctx, &row_loss, rows, scale),
            }
        }
    }
}

/// The kernel for class-index (`indices`) or probability targets under `plan`, from the module
/// with the subgroup reduction file appended if `subgroups`.
fn kernel(indices: bool, plan: RowPlan, vec4: bool, subgroups: bool) -> Kernel {
    let entry = match (indices, plan, vec4) {
        (true, RowPlan::SubgroupRows { .. }, _) => "index_subgroup_rows",
        (true, RowPlan::Workgroup { .. }, _) => "index_workgroup",
        (false, RowPlan::Workgroup { .. }, _) => "prob_workgroup",
        (true, _, false) => "index_rows",
        (true, _, true) => "index_rows_vec4",
        (false, _, false) => "prob_rows",
        (false, _, true) => "prob_rows_vec4",
    };
    Kernel {
        module: if subgroups {
            Shader::CrossEntropySubgroup
        } else {
            Shader::CrossEntropy
        }
        .module(),
        entry,
        slots: &[
            Slot::ReadWrite(1),
            Slot::Read(2),
            Slot::ReadWrite(3),
            Slot::ReadWrite(4),
            Slot::Read(5),
        ],
    }
}

/// Half logits (with half probability targets and gradient): the loss and gradient computed
/// on f32 copies, accumulated in f32, then rounded once to the logits' type (the loss too, as
/// PyTorch returns it). `None` when every operand is f32. Class weights are f32 options.
fn through_f32(
    logits: &Tensor,
    targets: Targets<'_>,
    options: &CrossEntropyOptions,
    grad: &Tensor,
) -> Option<Result<Tensor>> {
    let mut operands = vec![("the logits", logits), ("gradient", grad)];
    if let Targets::Probabilities(t) = targets {
        operands.push(("probability targets", t));
    }
    if !operands.iter().any(|(_, t)| t.dtype().is_half()) {
        return None;
    }
    Some((|| {
        let dtype = common_float(OP_CE, &operands)?;
        let wide_targets;
        let targets = match targets {
            Targets::Probabilities(t) => {
                wide_targets = t.to_dtype(DType::F32)?;
                Targets::Probabilities(&wide_targets)
            }
            other => other,
        };
        let wide_grad = Tensor::uninit_as(grad.context(), grad.shape(), DType::F32, OP_CE)?;
        let loss = cross_entropy_into(&logits.to_dtype(DType::F32)?, targets, options, &wide_grad)?;
        wide_grad.convert_into(grad)?;
        loss.to_dtype(dtype)
    })())
}

/// Every kernel the cross-entropy may launch, with its parameter block's size.
#[cfg(test)]
pub(super) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    let mut all = Vec::new();
    for plan in crate::ops::rows::RowPlan::examples() {
        for (indices, vec4, subgroups) in flag_triples() {
            if matches!(plan, RowPlan::SubgroupRows { .. }) && !(subgroups && vec4) {
                continue;
            }
            all.push((
                kernel(indices, plan, vec4, subgroups),
                CrossEntropyParams::LAYOUT,
            ));
        }
    }
    all
}

/// Every combination of three flags.
#[cfg(test)]
pub(crate) fn flag_triples() -> impl Iterator<Item = (bool, bool, bool)> {
    (0..8).map(|i| (i & 1 != 0, i & 2 != 0, i & 4 != 0))
}

/// One fused cross-entropy launch's inputs.
struct FusedCrossEntropy<'a> {
    gpu: &'a Gpu,
    logits: &'a Tensor,
    grad: &'a Tensor,
    classes: Option<&'a Classes>,
    probabilities: Option<&'a Tensor>,
    weight: Option<&'a [f32]>,
    eps: f32,
    scale: f32,
}

params! {
    /// Mirrors `Params` in `shaders/cross_entropy.wgsl`.
    struct CrossEntropyParams {
        rows: u32,
        cols: u32,
        base: u32,
        row0: u32,
        eps: f32,
        scale: f32,
        w_all: f32,
    }
}

impl FusedCrossEntropy<'_> {
    fn launch(&self, rows: usize, classes: usize, row_loss: &DeviceBuffer) -> Result<()> {
        let gpu = self.gpu;
        // Class indices and per-row losses are bound whole: one value per row in one binding.
        let binding = gpu.max_binding;
        if layout::bytes(rows) > binding {
            return Err(Error::TooLarge {
                op: OP_CE,
                requested: layout::bytes(rows),
                limit: binding,
                unit: crate::Unit::Bytes,
                what: "max_storage_buffer_binding_size (one class index and one loss per row); split the batch",
            });
        }
        let strategy = self.logits.context().row_strategy();
        let choice = if self.classes.is_some() {
            RowPlan::choose_cached(gpu, strategy, rows, classes, true)
        } else {
            RowPlan::choose(gpu, strategy, rows, classes)
        };
        let plan = match choice {
            // Cross-entropy has no segment kernel (its rows are vocabulary-sized at most): few
            // long rows take a workgroup each on a GPU, an invocation each on a CPU adapter.
            RowPlan::Segmented { .. } if gpu.hardware => RowPlan::workgroup(gpu, classes),
            RowPlan::Segmented { .. } => RowPlan::PerRow,
            plan => plan,
        }
        .within_loop_limit(gpu, classes);
        plan.check_loop_limit(gpu, classes, OP_CE)?;
        let vec4 = classes.is_multiple_of(layout::VEC4);
        let kernel = kernel(self.classes.is_some(), plan, vec4, gpu.subgroups);
        let has_weight = self.weight.is_some();
        let mut constants = plan.constants(classes);
        constants.push(("HAS_WEIGHT", if has_weight { 1.0 } else { 0.0 }));
        constants.push(("SMOOTHING", if self.eps > 0.0 { 1.0 } else { 0.0 }));
        let w_all = self
            .weight
            .map_or(classes as f64, |w| w.iter().map(|&v| f64::from(v)).sum());
        let weight = gpu.upload_new(bytemuck::cast_slice(self.weight.unwrap_or(&[0.0])), OP_CE)?;
        let mut uploaded = None;
        let index = match self.classes {
            Some(c) => Some(c.index.on_device(gpu, &mut uploaded, OP_CE)?),
            None => None,
        };
        let mut tensors = vec![self.logits, self.grad];
        tensors.extend(self.probabilities);
        // In place (the gradient over the logits): the logits bound once (View::overlaps).
        let spare = match self.grad.aliases(self.logits) {
            true => Some(gpu.alloc(16, OP_CE)?),
            false => None,
        };
        let mut in_place_constants = constants.clone();
        in_place_constants.push(("IN_PLACE", 1.0));
        for block in row_blocks(gpu, OP_CE, rows, classes, 0, &tensors)? {
            let (start, len) = (block.bind_start, block.bind_len);
            let z = self.logits.view(start, len, OP_CE)?;
            let mut dz = self.grad.view(start, len, OP_CE)?;
            let in_place = z.overlaps(&dz);
            if in_place {
                dz = spare.as_ref().ok_or_else(|| mixed(OP_CE))?.view(4);
            }
            let targets = match (index, self.probabilities) {
                (Some(i), _) => i.view(rows),
                (None, Some(p)) => p.view(start, len, OP_CE)?,
                (None, None) => return Err(mixed(OP_CE)),
            };
            let params = CrossEntropyParams {
                rows: block.rows as u32,
                cols: classes as u32,
                base: block.base as u32,
                row0: block.row0 as u32,
                eps: self.eps,
                scale: self.scale,
                w_all: w_all as f32,
            };
            let views = [
                z,
                targets,
                dz,
                row_loss.view(rows),
                weight.view(self.weight.map_or(1, <[f32]>::len)),
            ];
            let groups = plan.groups(block.rows);
            gpu.launch(
                &kernel,
                if in_place {
                    &in_place_constants
                } else {
                    &constants
                },
                &views,
                bytemuck::bytes_of(&params),
                groups,
            )?;
        }
        Ok(())
    }
}
