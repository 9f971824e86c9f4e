//! Fused losses: softmax cross-entropy and sigmoid BCE with logits, each returning the loss and
//! the gradient with respect to the logits from one kernel, with PyTorch's semantics.

use crate::cpu;
use crate::cpu::loss::CrossEntropyTargets;
use crate::definitions::loss::{BceOptions, CrossEntropyOptions, Reduction};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, Shader, Slot};
use crate::gpu::pool::DeviceBuffer;
use crate::gpu::{Gpu, View};
use crate::ops::activation::check_same;
use crate::ops::rows::{RowPlan, row_blocks};
use crate::tensor::{Storage, Tensor, write_host};

/// The targets of a cross-entropy.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// One class index per row.
    Indices(&'a [i64]),
    /// One class index per row, unsigned.
    IndicesU32(&'a [u32]),
    /// Class probabilities, a tensor of the logits' shape.
    Probabilities(&'a Tensor),
}

/// A loss and the gradient of the (summed, for `None`) loss with respect to the logits.
#[derive(Clone, Debug)]
pub struct LossAndGrad {
    /// Shape `[]` for `Mean` and `Sum`; the logits' shape without its last axis (cross-entropy)
    /// or the logits' shape (BCE) for `None`.
    pub loss: Tensor,
    /// Same shape as the logits.
    pub grad: Tensor,
}

/// Class indices as the kernel reads them: u32, with ignored rows marked.
const IGNORED: u32 = u32::MAX;

/// Validated class-index targets.
struct Classes {
    /// Per row: the class, or `IGNORED`.
    index: Vec<u32>,
    /// The mean's denominator: Σ w_y over the rows not ignored.
    weight_sum: f64,
}

impl Tensor {
    /// Softmax cross-entropy of these logits (`[.., K]`, rows along the last axis) with PyTorch's
    /// semantics, returning the loss and `d loss / d logits = scale·(softmax − t')` (weighted and
    /// smoothed as the options say), computed in one fused pass. Class indices are checked on
    /// the host while they are uploaded.
    pub fn cross_entropy(
        &self,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
    ) -> Result<LossAndGrad> {
        let grad = self.uninit_like(OP_CE)?;
        let loss = cross_entropy_into(self, targets, options, &grad)?;
        Ok(LossAndGrad { loss, grad })
    }

    /// As [`Tensor::cross_entropy`], writing the gradient into `grad` (a tensor of the logits'
    /// shape on the same context: a view of a caller's buffer, say, or the logits themselves
    /// for in place). Returns the loss.
    pub fn cross_entropy_into(
        &self,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
        grad: &Tensor,
    ) -> Result<Tensor> {
        cross_entropy_into(self, targets, options, grad)
    }

    /// As [`Tensor::cross_entropy`], but the gradient overwrites the logits, so a large
    /// vocabulary needs no second buffer of the logits' size. Returns the loss.
    pub fn cross_entropy_in_place(
        &self,
        targets: Targets<'_>,
        options: &CrossEntropyOptions,
    ) -> Result<Tensor> {
        cross_entropy_into(self, targets, options, self)
    }

    /// Sigmoid binary cross-entropy with logits (any shape), PyTorch's semantics:
    /// `l = w[(1 − y)z + q·(log(1 + e^{−|z|}) + max(−z, 0))]`, `q = (pos_weight − 1)y + 1`, and
    /// the gradient `w(q·σ(z) − pos_weight·y)` (= `σ(z) − y` unweighted), scaled by the reduction.
    pub fn bce_with_logits(&self, targets: &Tensor, options: &BceOptions) -> Result<LossAndGrad> {
        bce_with_logits(self, targets, options)
    }
}

const OP_CE: &str = "cross_entropy";
const OP_BCE: &str = "bce_with_logits";

/// Turns integer-valued floats into class indices, rejecting NaN, infinities and fractions.
pub fn class_indices_from_floats(values: &[f64]) -> Result<Vec<i64>> {
    values
        .iter()
        .enumerate()
        .map(|(row, &v)| {
            if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
                Ok(v as i64)
            } else {
                Err(Error::TargetNotInteger {
                    op: OP_CE,
                    row,
                    value: v,
                })
            }
        })
        .collect()
}

fn check_weight(
    op: &'static str,
    name: &'static str,
    w: &Option<Vec<f32>>,
    len: usize,
) -> Result<()> {
    match w {
        Some(w) if w.len() != len => Err(Error::ShapeMismatch {
            op,
            what: name,
            got: vec![w.len()],
            expected: vec![len],
        }),
        _ => Ok(()),
    }
}

fn validate_classes(
    targets: &[i64],
    rows: usize,
    classes: usize,
    options: &CrossEntropyOptions,
) -> Result<Classes> {
    if targets.len() != rows {
        return Err(Error::ShapeMismatch {
            op: OP_CE,
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
                op: OP_CE,
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
    Ok(Classes { index, weight_sum })
}

fn cross_entropy_into(
    logits: &Tensor,
    targets: Targets<'_>,
    options: &CrossEntropyOptions,
    grad: &Tensor,
) -> Result<Tensor> {
    let (rows, classes) = logits.rows_cols(OP_CE)?;
    if classes == 0 {
        return Err(Error::invalid_shape(
            OP_CE,
            logits.shape(),
            "cross-entropy needs at least one class",
        ));
    }
    let eps = options.label_smoothing;
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::InvalidParameter {
            op: OP_CE,
            name: "label_smoothing",
            value: f64::from(eps),
            reason: "must lie in [0, 1]",
        });
    }
    check_weight(OP_CE, "weight", &options.weight, classes)?;
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
    };
    let classes_checked = indices
        .map(|t| validate_classes(t, rows, classes, options))
        .transpose()?;
    let denominator = classes_checked
        .as_ref()
        .map_or(rows as f64, |c| c.weight_sum);

    match (logits.storage(), grad.storage()) {
        (Storage::Host(_), Storage::Host(g)) => {
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
            let weight = options.weight.as_ref().map(|w| widen(w));
            let r = cpu::loss::cross_entropy(
                &z,
                classes,
                t,
                weight.as_deref(),
                options.reduction,
                options.ignore_index,
                f64::from(eps),
            );
            *write_host(g)? = narrow(&r.grad);
            Tensor::from_slice(logits.context(), &narrow(&r.loss), &loss_shape)
        }
        _ => {
            let gpu = logits.context().gpu().ok_or_else(|| mixed(OP_CE))?;
            let scale = match options.reduction {
                Reduction::Mean => (1.0 / denominator) as f32,
                _ => 1.0,
            };
            let row_loss = gpu.alloc((rows.max(1) * 4) as u64, OP_CE)?;
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

/// Mirrors `Params` in `shaders/cross_entropy.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CrossEntropyParams {
    rows: u32,
    cols: u32,
    base: u32,
    row0: u32,
    eps: f32,
    scale: f32,
    w_all: f32,
}

impl FusedCrossEntropy<'_> {
    fn launch(&self, rows: usize, classes: usize, row_loss: &DeviceBuffer) -> Result<()> {
        let gpu = self.gpu;
        // Class indices and per-row losses are bound whole: one value per row in one binding.
        let binding = gpu.max_binding;
        if (rows as u64) * 4 > binding {
            return Err(Error::TooLarge {
                op: OP_CE,
                requested: rows as u64 * 4,
                limit: binding,
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
        };
        let vec4 = classes.is_multiple_of(4);
        let entry = match (self.classes.is_some(), plan, vec4) {
            (true, RowPlan::SubgroupRows { .. }, _) => "index_subgroup_rows",
            (true, RowPlan::Workgroup { .. }, _) => "index_workgroup",
            (false, RowPlan::Workgroup { .. }, _) => "prob_workgroup",
            (true, _, false) => "index_rows",
            (true, _, true) => "index_rows_vec4",
            (false, _, false) => "prob_rows",
            (false, _, true) => "prob_rows_vec4",
        };
        let kernel = Kernel {
            shader: if plan.uses_subgroups(gpu) {
                Shader::CrossEntropySubgroup
            } else {
                Shader::CrossEntropy
            },
            entry,
            slots: &[
                Slot::ReadWrite(1),
                Slot::Read(2),
                Slot::ReadWrite(3),
                Slot::ReadWrite(4),
                Slot::Read(5),
            ],
        };
        let has_weight = self.weight.is_some();
        let mut constants = plan.constants(classes);
        constants.push(("HAS_WEIGHT", if has_weight { 1.0 } else { 0.0 }));
        constants.push(("SMOOTHING", if self.eps > 0.0 { 1.0 } else { 0.0 }));
        let w_all = self
            .weight
            .map_or(classes as f64, |w| w.iter().map(|&v| f64::from(v)).sum());
        let weight = gpu.upload_new(bytemuck::cast_slice(self.weight.unwrap_or(&[0.0])), OP_CE)?;
        let index = match self.classes {
            Some(c) => Some(gpu.upload_new(bytemuck::cast_slice(&c.index), OP_CE)?),
            None => None,
        };
        let mut tensors = vec![self.logits, self.grad];
        tensors.extend(self.probabilities);
        for block in row_blocks(gpu, OP_CE, rows, classes, 0, &tensors)? {
            let (start, len) = (block.bind_start, block.bind_len);
            let z = self.logits.view(start, len, OP_CE)?;
            let dz = self.grad.view(start, len, OP_CE)?;
            let targets = match (&index, self.probabilities) {
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
                &constants,
                &views,
                bytemuck::bytes_of(&params),
                groups,
            )?;
        }
        Ok(())
    }
}

/// Mirrors `Params` in `shaders/reduce.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    len: u32,
    group: u32,
    scale: f32,
}

/// Values summed per invocation at each level of the device-side reduction.
const REDUCE_GROUP: usize = 64;

const SUM_GROUPS: Kernel = Kernel {
    shader: Shader::Reduce,
    entry: "sum_groups",
    slots: &[Slot::Read(1), Slot::ReadWrite(2)],
};

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
    let window = ((gpu.max_binding / 4) as usize / 4096 * 4096).max(4096);
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
        let dst = gpu.alloc((outputs * 4) as u64, "loss reduction")?;
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

/// Mirrors `Params` in `shaders/bce_with_logits.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BceParams {
    len: u32,
    n: u32,
    cols: u32,
    col0: u32,
    scale: f32,
    invocations: u32,
}

/// Invocations per workgroup, and vec4s per invocation, of the BCE kernel.
const BCE_WG: u32 = 256;
const BCE_VEC4_PER_INVOCATION: usize = 8;

fn bce_with_logits(z: &Tensor, y: &Tensor, options: &BceOptions) -> Result<LossAndGrad> {
    check_same(OP_BCE, "targets", z, y)?;
    let cols = z.shape().last().copied().unwrap_or(1);
    check_weight(OP_BCE, "weight", &options.weight, cols)?;
    check_weight(OP_BCE, "pos_weight", &options.pos_weight, cols)?;
    let n = z.len();
    let loss_shape: Vec<usize> = match options.reduction {
        Reduction::None => z.shape().to_vec(),
        _ => Vec::new(),
    };
    let ctx = z.context();
    if let (Storage::Host(_), Storage::Host(_)) = (z.storage(), y.storage()) {
        let weight = options.weight.as_ref().map(|w| widen(w));
        let pos_weight = options.pos_weight.as_ref().map(|w| widen(w));
        let r = cpu::loss::bce_with_logits(
            &widen(&z.to_vec()?),
            &widen(&y.to_vec()?),
            weight.as_deref(),
            pos_weight.as_deref(),
            options.reduction,
        );
        return Ok(LossAndGrad {
            loss: Tensor::from_slice(ctx, &narrow(&r.loss), &loss_shape)?,
            grad: Tensor::from_slice(ctx, &narrow(&r.grad), z.shape())?,
        });
    }
    let gpu = ctx.gpu().ok_or_else(|| mixed(OP_BCE))?;
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
        return Ok(LossAndGrad { loss, grad });
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
    let kernel = Kernel {
        shader: Shader::BceWithLogits,
        entry: if per_element { "bce_none" } else { "bce_sum" },
        slots: &[
            Slot::Read(1),
            Slot::Read(2),
            Slot::ReadWrite(3),
            Slot::ReadWrite(4),
            Slot::Read(5),
            Slot::Read(6),
        ],
    };
    // Runs that fit one binding and one buffer of every tensor; each launch's partial sums
    // get their own run of the partials buffer (a multiple of WG values, so offsets stay
    // aligned).
    let mut tensors = vec![z, y, &grad];
    if per_element {
        tensors.push(&loss);
    }
    let spans = super::spans(gpu, &tensors, n);
    // The partial sums share one buffer: beyond its size, invocations take more elements each.
    let groups_cap = (gpu.max_buffer / 4 / u64::from(wg) / spans.len().max(1) as u64).max(1);
    let launches: Vec<(usize, usize, u64)> = spans
        .into_iter()
        .map(|(start, len)| {
            let vec4s = len.div_ceil(4);
            let groups = (vec4s as u64)
                .div_ceil(u64::from(wg) * BCE_VEC4_PER_INVOCATION as u64)
                .clamp(1, groups_cap);
            (start, len, groups)
        })
        .collect();
    let partial_count: u64 = launches.iter().map(|l| l.2 * u64::from(wg)).sum();
    let partials = if per_element {
        None
    } else {
        Some(gpu.alloc(partial_count.max(1) * 4, OP_BCE)?)
    };
    let mut partial_offset = 0u64;
    for (start, len, groups) in launches {
        let params = BceParams {
            len: len.div_ceil(4) as u32,
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
                offset: partial_offset * 4,
                size: count * 4,
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
        gpu.launch(
            &kernel,
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
    Ok(LossAndGrad { loss, grad })
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn narrow(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn mixed(op: &'static str) -> Error {
    Error::Gpu {
        op,
        message: "mixed host and device tensors".into(),
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
