//! Per-token statistics of a head's logits for a loss the caller writes (PPO, GRPO, DPO-style):
//! each row's log-probability of its target, entropy and log-sum-exp under a temperature, and
//! the gradient of any loss of them (`shaders/head_stats.wgsl`), one pass over the logits each
//! way. The fused linear head (`linear_head_stats.rs`) runs the same kernels on its chunks.

use crate::context::RowStrategy;
use crate::cpu;
use crate::cpu::{narrow, widen};
use crate::definitions::loss::{CrossEntropyOptions, HeadStats};
use crate::error::{Error, Result};
use crate::gpu::pipelines::{Kernel, Slot};
use crate::gpu::pool::DeviceBuffer;
use crate::gpu::{Gpu, View};
use crate::layout::{self, DType, vec4s};
use crate::ops::placement::{Placement, fits_binding, mixed, place, store};
use crate::ops::rows::{RowPlan, row_blocks};
use crate::tensor::Tensor;
use crate::wgsl::Shader;

use super::Targets;
use super::cross_entropy::{ClassIndex, Classes};
use super::head::class_targets;

const OP: &str = "head_stats";
const OP_BACKWARD: &str = "head_stats_backward";

/// Invocations per workgroup of the per-row and elementwise kernels.
const WG: u32 = 64;

params! {
    /// Mirrors `Params` in `shaders/head_stats.wgsl`.
    struct StatsParams {
        rows: u32,
        cols: u32,
        base: u32,
        row0: u32,
        temperature: f32,
        softcap: f32,
        z_scale: f32,
        up_row0: u32,
    }
}

const STATS_SLOTS: &[Slot] = &[
    Slot::ReadWrite(1),
    Slot::Read(2),
    Slot::ReadWrite(3),
    Slot::ReadWrite(4),
    Slot::ReadWrite(5),
    Slot::ReadWrite(9),
    Slot::ReadWrite(10),
];

const STATS_ROWS: Kernel = Kernel {
    module: Shader::HeadStats.module(),
    entry: "stats_rows",
    slots: STATS_SLOTS,
};

const STATS_WORKGROUP: Kernel = Kernel {
    entry: "stats_workgroup",
    ..STATS_ROWS
};

const GRAD_ELEMENTS: Kernel = Kernel {
    module: Shader::HeadStats.module(),
    entry: "grad_elements",
    slots: &[
        Slot::ReadWrite(1),
        Slot::Read(2),
        Slot::ReadWrite(4),
        Slot::Read(6),
        Slot::Read(7),
        Slot::ReadWrite(8),
        Slot::ReadWrite(9),
        Slot::ReadWrite(10),
    ],
};

const SCALE_ROWS: Kernel = Kernel {
    module: Shader::HeadStats.module(),
    entry: "scale_rows",
    slots: &[Slot::ReadWrite(1), Slot::Read(2), Slot::Read(6)],
};

/// The kernels with their parameter block's size.
#[cfg(test)]
pub(super) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    [STATS_ROWS, STATS_WORKGROUP, GRAD_ELEMENTS, SCALE_ROWS]
        .map(|k| (k, StatsParams::LAYOUT))
        .to_vec()
}

/// Each row's statistics from [`Tensor::head_stats`] or [`Tensor::linear_head`], with what the
/// backward needs to check that it is handed the statistics of its own logits.
#[derive(Clone, Debug)]
pub struct HeadStatsOutput {
    /// `log p_t`, the log-probability of each row's target under `softmax(cap(z)/T)` (0 on
    /// ignored rows); f32, the logits' shape without the last axis.
    pub logp: Tensor,
    /// The entropy `H = −Σ p log p` of each row's distribution (0 on ignored rows); f32.
    pub entropy: Tensor,
    /// `lse = log Σ e^{cap(z)/T}` of each row (every row); f32.
    pub lse: Tensor,
    /// K, the classes of the logits they were computed from.
    pub classes: usize,
    /// The options they were computed with (the backward uses the same).
    pub options: HeadStats,
    /// On the device, each row's max M of u and log S (`lse = M + log S`), from which the
    /// backward forms `log p = (u − M) − log S` without the rounding of `lse`; the CPU backend
    /// recomputes its statistics in f64 instead.
    pub(crate) shift: Option<RowShift>,
}

/// Each row's `M` and `log S` (f32, `[rows]`).
#[derive(Clone, Debug)]
pub(crate) struct RowShift {
    pub max: Tensor,
    pub log_sum: Tensor,
}

impl Tensor {
    /// Per-token statistics of these logits (`[.., K]`, the class along the last dim) for a
    /// loss the caller writes on them: with `u = cap(z)/T` and `p = softmax(u)`, each row's
    /// target log-probability `log p_t = u_t − lse`, entropy `H = −Σ_j p_j log p_j` and
    /// `lse = log Σ_j e^{u_j}`, in one pass over the logits (an online max carrying
    /// `Σ e^{u−M}` and `Σ e^{u−M}(u − M)`). `targets` are class indices (on the host or the
    /// device); a row whose target is `options.ignore_index` gets 0 log-probability and
    /// entropy. A row holding a NaN or +∞ (after the cap and the temperature), or all −∞, gets
    /// NaN statistics; a −∞ logit of another row has probability 0 and adds nothing to the
    /// entropy. The statistics are f32 whatever the logits' type (they feed the caller's loss,
    /// where a ratio `e^{log p − log p_old}` would amplify a half type's rounding). Rows are
    /// taken in blocks of whole rows that fit one storage binding.
    pub fn head_stats(&self, targets: Targets<'_>, options: &HeadStats) -> Result<HeadStatsOutput> {
        self.expect_float(OP, "the logits")?;
        options.validate(OP)?;
        let (rows, classes) = row_dims(OP, self)?;
        let checked = class_targets(OP, self.context(), targets, (rows, classes), &ce(options))?;
        let row_shape = &self.shape()[..self.shape().len() - 1];
        let ctx = self.context();
        let z = self.to_dtype(DType::F32)?;
        let (logp, entropy, lse, shift) = match place(OP, &[&z])? {
            Placement::Host => {
                let labels = host_labels(OP, &checked, options)?;
                let r =
                    cpu::head_stats::head_stats(&widen(&z.to_vec()?), classes, &labels, options);
                let host = |v: &[f64]| Tensor::from_slice(ctx, &narrow(v), row_shape);
                (host(&r.logp)?, host(&r.entropy)?, host(&r.lse)?, None)
            }
            Placement::Device(gpu) => {
                let blocks = row_blocks(gpu, OP, rows, classes, 0, &[&z])?;
                let mut uploaded = None;
                let index = checked.index.on_device(gpu, &mut uploaded, OP)?;
                let out = RowStats::alloc(gpu, rows)?;
                let block_rows = blocks.first().map_or(0, |b| b.rows);
                let kernel =
                    StatsKernel::new(gpu, ctx.row_strategy(), options, block_rows, classes)?;
                for block in blocks {
                    let logits = z.view(block.bind_start, block.bind_len, OP)?;
                    kernel.launch(gpu, block.rows, block.row0, block.base, logits, index, &out)?;
                }
                out.into_tensors(ctx, row_shape)?
            }
        };
        Ok(HeadStatsOutput {
            logp,
            entropy,
            lse,
            classes,
            options: *options,
            shift,
        })
    }

    /// The gradient with respect to these logits of the caller's loss `L` of the statistics
    /// `saved` (from [`Tensor::head_stats`] on these logits and targets), given its upstream
    /// gradients `grad_logp` (`a = ∂L/∂log p_t`) and `grad_entropy` (`c = ∂L/∂H`), one value
    /// per row each (`None`: zero):
    /// `∂L/∂z = cap'(z)·[(a·(onehot − p) − c·p ⊙ (log p + H))/T + 2s·lse·p]`, the last term the
    /// z-loss's where `saved.options.lse_square_scale` is `s > 0`. One pass over the logits
    /// (p from the saved `lse`); ignored rows get 0, a NaN row NaN. Returned in the logits'
    /// type (computed in f32). Statistics of another shape (rows or classes), upstream
    /// gradients of another shape than the rows', or targets out of range are refused before
    /// anything is written.
    pub fn head_stats_backward(
        &self,
        targets: Targets<'_>,
        saved: &HeadStatsOutput,
        grad_logp: Option<&Tensor>,
        grad_entropy: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.expect_float(OP_BACKWARD, "the logits")?;
        let (rows, classes) = row_dims(OP_BACKWARD, self)?;
        let row_shape = &self.shape()[..self.shape().len() - 1];
        let given = [grad_logp, grad_entropy];
        check_saved(
            OP_BACKWARD,
            self.context(),
            saved,
            row_shape,
            classes,
            given,
        )?;
        let options = &saved.options;
        let checked = class_targets(
            OP_BACKWARD,
            self.context(),
            targets,
            (rows, classes),
            &ce(options),
        )?;
        let upstream = upstream_f32(given)?;
        let ctx = self.context();
        let dtype = self.dtype();
        let z = self.to_dtype(DType::F32)?;
        let grad = Tensor::uninit_as(ctx, self.shape(), DType::F32, OP_BACKWARD)?;
        match place(OP_BACKWARD, &[&z, &grad])? {
            Placement::Host => {
                let labels = host_labels(OP_BACKWARD, &checked, options)?;
                let g = host_backward(&widen(&z.to_vec()?), classes, &labels, options, &upstream)?;
                store(OP_BACKWARD, &grad, narrow(&g))?;
            }
            Placement::Device(gpu) => {
                let blocks = row_blocks(gpu, OP_BACKWARD, rows, classes, 0, &[&z, &grad])?;
                let mut uploaded = None;
                let index = checked.index.on_device(gpu, &mut uploaded, OP_BACKWARD)?;
                let has = [upstream[0].is_some(), upstream[1].is_some()];
                let kernel = GradKernel::new(gpu, options, classes, has);
                for block in blocks {
                    let (start, len) = (block.bind_start, block.bind_len);
                    let views = [
                        z.view(start, len, OP_BACKWARD)?,
                        index.view(rows.max(1)),
                        grad.view(start, len, OP_BACKWARD)?,
                    ];
                    let at = (block.rows, block.row0, block.base, 0);
                    kernel.launch(gpu, at, GradViews::of(views, saved, &upstream)?)?;
                }
            }
        }
        grad.to_dtype(dtype)
    }
}

/// `(rows, classes)` of logits, at least one class.
pub(super) fn row_dims(op: &'static str, logits: &Tensor) -> Result<(usize, usize)> {
    let (rows, classes) = logits.rows_cols(op)?;
    if classes == 0 {
        return Err(Error::invalid_shape(
            op,
            logits.shape(),
            "the statistics need at least one class",
        ));
    }
    Ok((rows, classes))
}

/// The cross-entropy options whose class-index checks the statistics share.
pub(super) fn ce(options: &HeadStats) -> CrossEntropyOptions {
    CrossEntropyOptions {
        ignore_index: options.ignore_index,
        ..Default::default()
    }
}

/// The checked class indices as the reference takes them (the ignore index back in place).
pub(super) fn host_labels(
    op: &'static str,
    checked: &Classes,
    options: &HeadStats,
) -> Result<Vec<i64>> {
    let ClassIndex::Host(index) = &checked.index else {
        return Err(mixed(op));
    };
    Ok(index
        .iter()
        .map(|&i| {
            if i == super::cross_entropy::IGNORED {
                options.ignore_index
            } else {
                i64::from(i)
            }
        })
        .collect())
}

/// The upstream gradients as f32 tensors of the rows' shape.
pub(super) type Upstream = [Option<Tensor>; 2];

/// Checks the saved statistics and the upstream gradients against logits of `row_shape` rows
/// of `classes`.
pub(super) fn check_saved(
    op: &'static str,
    ctx: &crate::Context,
    saved: &HeadStatsOutput,
    row_shape: &[usize],
    classes: usize,
    upstream: [Option<&Tensor>; 2],
) -> Result<()> {
    saved.options.validate(op)?;
    for (what, t) in [
        ("saved statistics (logp)", &saved.logp),
        ("saved statistics (entropy)", &saved.entropy),
        ("saved statistics (lse)", &saved.lse),
    ] {
        if !t.context().same(ctx) {
            return Err(Error::ContextMismatch { op });
        }
        if t.shape() != row_shape {
            return Err(Error::ShapeMismatch {
                op,
                what,
                got: t.shape().to_vec(),
                expected: row_shape.to_vec(),
            });
        }
        t.expect_f32(op, what)?;
    }
    if let Some(shift) = &saved.shift {
        let rows: usize = row_shape.iter().product();
        for t in [&shift.max, &shift.log_sum] {
            if !t.context().same(ctx) {
                return Err(Error::ContextMismatch { op });
            }
            if t.len() != rows {
                return Err(Error::ShapeMismatch {
                    op,
                    what: "saved statistics (of another call)",
                    got: t.shape().to_vec(),
                    expected: vec![rows],
                });
            }
        }
    } else if ctx.gpu().is_some() {
        return Err(Error::ContextMismatch { op });
    }
    if saved.classes != classes {
        return Err(Error::ShapeMismatch {
            op,
            what: "saved statistics (computed from logits of another class count)",
            got: vec![saved.classes],
            expected: vec![classes],
        });
    }
    let names = ["grad_logp (one per row)", "grad_entropy (one per row)"];
    for (what, t) in names.iter().zip(upstream) {
        if let Some(t) = t {
            if !t.context().same(ctx) {
                return Err(Error::ContextMismatch { op });
            }
            t.expect_float(op, what)?;
            if t.shape() != row_shape {
                return Err(Error::ShapeMismatch {
                    op,
                    what,
                    got: t.shape().to_vec(),
                    expected: row_shape.to_vec(),
                });
            }
        }
    }
    Ok(())
}

/// The upstream gradients (checked) as f32.
pub(super) fn upstream_f32([a, c]: [Option<&Tensor>; 2]) -> Result<Upstream> {
    Ok([
        a.map(|t| t.to_dtype(DType::F32)).transpose()?,
        c.map(|t| t.to_dtype(DType::F32)).transpose()?,
    ])
}

/// The backward on the host (the CPU backend): the f64 reference, which forms the statistics
/// again in f64 (the saved ones were checked to be of these logits' shape).
pub(super) fn host_backward(
    logits: &[f64],
    classes: usize,
    labels: &[i64],
    options: &HeadStats,
    upstream: &Upstream,
) -> Result<Vec<f64>> {
    let read = |t: &Option<Tensor>| -> Result<Option<Vec<f64>>> {
        t.as_ref().map(|t| Ok(widen(&t.to_vec()?))).transpose()
    };
    let (a, c) = (read(&upstream[0])?, read(&upstream[1])?);
    Ok(cpu::head_stats::head_stats_backward(
        logits,
        classes,
        labels,
        options,
        a.as_deref(),
        c.as_deref(),
    ))
}

/// The per-row outputs of the statistics kernel.
pub(super) struct RowStats {
    logp: DeviceBuffer,
    entropy: DeviceBuffer,
    lse: DeviceBuffer,
    max: DeviceBuffer,
    log_sum: DeviceBuffer,
    rows: usize,
}

impl RowStats {
    pub fn alloc(gpu: &Gpu, rows: usize) -> Result<RowStats> {
        let bytes = layout::bytes(rows.max(1));
        fits_binding(
            gpu,
            OP,
            "max_storage_buffer_binding_size (the per-row statistics are bound whole)",
            bytes,
        )?;
        Ok(RowStats {
            logp: gpu.alloc(bytes, OP)?,
            entropy: gpu.alloc(bytes, OP)?,
            lse: gpu.alloc(bytes, OP)?,
            max: gpu.alloc(bytes, OP)?,
            log_sum: gpu.alloc(bytes, OP)?,
            rows,
        })
    }

    /// The logp and entropy of rows `row0 … row0 + rows`, read back (waits for the device).
    pub fn read_rows(&self, gpu: &Gpu, row0: usize, rows: usize) -> Result<[Vec<f32>; 2]> {
        let mut out = [vec![0.0f32; rows], vec![0.0f32; rows]];
        for (buffer, dst) in [&self.logp, &self.entropy].into_iter().zip(out.iter_mut()) {
            gpu.read_into(
                buffer.raw(),
                layout::bytes(row0),
                bytemuck::cast_slice_mut(dst),
            )?;
        }
        Ok(out)
    }

    /// The views the gradient kernel reads: `[entropy, max, log_sum]` of every row.
    pub fn saved_views(&self) -> [View<'_>; 3] {
        let n = self.rows.max(1);
        [self.entropy.view(n), self.max.view(n), self.log_sum.view(n)]
    }

    /// `(logp, entropy, lse, shift)` as tensors of `row_shape` (the shift flat).
    pub fn into_tensors(
        self,
        ctx: &crate::Context,
        row_shape: &[usize],
    ) -> Result<(Tensor, Tensor, Tensor, Option<RowShift>)> {
        let flat = [self.rows];
        let t = |b| Tensor::from_device(ctx, b, &flat).reshape(row_shape);
        let shift = RowShift {
            max: Tensor::from_device(ctx, self.max, &flat),
            log_sum: Tensor::from_device(ctx, self.log_sum, &flat),
        };
        Ok((t(self.logp)?, t(self.entropy)?, t(self.lse)?, Some(shift)))
    }
}

/// Which statistics kernel covers the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatsPlan {
    /// One invocation per row, 4 (or, `wide`, 16) logits per loop iteration.
    PerRow { wide: bool },
    /// One workgroup of `wg` invocations per row.
    Workgroup { wg: u32 },
}

/// The statistics kernel set up for one call's options and row length.
pub(super) struct StatsKernel {
    plan: StatsPlan,
    params: StatsParams,
    softcap: bool,
}

impl StatsKernel {
    /// The kernel for rows of `classes` logits, about `rows` per launch. A forced
    /// `RowStrategy::PerRow` takes one invocation per row, any other forced strategy one
    /// workgroup per row; `Auto` takes a workgroup per row on GPU hardware for rows over 64
    /// logits, and on a CPU-type adapter only for a few long rows (an invocation per row
    /// keeps its lanes busy without barriers once there are 64 rows).
    pub fn new(
        gpu: &Gpu,
        strategy: RowStrategy,
        options: &HeadStats,
        rows: usize,
        classes: usize,
    ) -> Result<StatsKernel> {
        let per_row = match strategy {
            RowStrategy::PerRow => true,
            RowStrategy::Auto if gpu.hardware => classes <= 64,
            RowStrategy::Auto => rows >= 64 || classes <= 1024,
            _ => false,
        };
        let workgroup = || match RowPlan::workgroup(gpu, classes) {
            RowPlan::Workgroup { wg } => StatsPlan::Workgroup { wg },
            _ => StatsPlan::Workgroup {
                wg: WG.min(gpu.workgroup_cap()),
            },
        };
        let plan = if !per_row {
            workgroup()
        } else if gpu.loops_fit(vec4s(classes)) {
            StatsPlan::PerRow { wide: false }
        } else if gpu.loops_fit(classes.div_ceil(16)) {
            StatsPlan::PerRow { wide: true }
        } else {
            workgroup()
        };
        if let StatsPlan::Workgroup { wg } = plan {
            gpu.check_loop_limit(
                OP,
                vec4s(classes).div_ceil(wg as usize),
                "loop iterations of one invocation over its share of a row (the adapter ends \
                 an invocation after that many; llvmpipe)",
            )?;
        }
        Ok(StatsKernel {
            plan,
            params: StatsParams {
                rows: 0,
                cols: classes as u32,
                base: 0,
                row0: 0,
                temperature: options.temperature,
                softcap: options.softcap.unwrap_or(1.0),
                z_scale: 0.0,
                up_row0: 0,
            },
            softcap: options.softcap.is_some(),
        })
    }

    /// Runs over `rows` rows whose logits start at element `base` of `logits`, writing the
    /// statistics of rows `row0 …` of `out` (`index` the class indices of every row).
    #[allow(clippy::too_many_arguments)]
    pub fn launch(
        &self,
        gpu: &Gpu,
        rows: usize,
        row0: usize,
        base: usize,
        logits: View<'_>,
        index: &DeviceBuffer,
        out: &RowStats,
    ) -> Result<()> {
        let params = StatsParams {
            rows: rows as u32,
            base: base as u32,
            row0: row0 as u32,
            ..self.params
        };
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        let (kernel, wg, wide, groups) = match self.plan {
            StatsPlan::PerRow { wide } => (
                &STATS_ROWS,
                WG.min(gpu.workgroup_cap()),
                wide,
                (rows as u64).div_ceil(u64::from(WG.min(gpu.workgroup_cap()))),
            ),
            StatsPlan::Workgroup { wg } => (&STATS_WORKGROUP, wg, false, rows as u64),
        };
        let n = out.rows.max(1);
        gpu.launch(
            kernel,
            &[
                ("WG", f64::from(wg)),
                ("SOFTCAP", flag(self.softcap)),
                ("WIDE", flag(wide)),
            ],
            &[
                logits,
                index.view(n),
                out.logp.view(n),
                out.entropy.view(n),
                out.lse.view(n),
                out.max.view(n),
                out.log_sum.view(n),
            ],
            bytemuck::bytes_of(&params),
            groups,
        )
    }
}

/// The gradient kernel set up for one call's options and upstream gradients.
pub(super) struct GradKernel {
    params: StatsParams,
    constants: [(&'static str, f64); 5],
}

impl GradKernel {
    /// `has`: whether the upstream gradients of log p_t and of the entropy are given.
    pub fn new(gpu: &Gpu, options: &HeadStats, classes: usize, has: [bool; 2]) -> GradKernel {
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        GradKernel {
            params: StatsParams {
                rows: 0,
                cols: classes as u32,
                base: 0,
                row0: 0,
                temperature: options.temperature,
                softcap: options.softcap.unwrap_or(1.0),
                z_scale: 2.0 * options.lse_square_scale,
                up_row0: 0,
            },
            constants: [
                ("WG", f64::from(WG.min(gpu.workgroup_cap()))),
                ("SOFTCAP", flag(options.softcap.is_some())),
                ("HAS_A", flag(has[0])),
                ("HAS_C", flag(has[1])),
                ("Z_LOSS", flag(options.lse_square_scale > 0.0)),
            ],
        }
    }

    /// Writes the gradient of `rows` rows from row `row0` of the per-row buffers, whose logits
    /// start at element `base` of `logits` (the gradient may be the logits); the upstream
    /// gradients of row `row0 + r` are at `row0 + r − up_row0` of theirs.
    pub fn launch(
        &self,
        gpu: &Gpu,
        (rows, row0, base, up_row0): (usize, usize, usize, usize),
        v: GradViews<'_>,
    ) -> Result<()> {
        let params = StatsParams {
            rows: rows as u32,
            base: base as u32,
            row0: row0 as u32,
            up_row0: up_row0 as u32,
            ..self.params
        };
        let quads = (rows * self.params.cols.div_ceil(4) as usize) as u64;
        // In place (the gradient over the logits): the logits bound once (View::overlaps).
        let in_place = v.logits.overlaps(&v.grad);
        let spare = match in_place {
            true => Some(gpu.alloc(16, "head_stats_backward")?),
            false => None,
        };
        let mut constants = self.constants.to_vec();
        constants.push(("IN_PLACE", if in_place { 1.0 } else { 0.0 }));
        // A missing upstream gradient is never read: the class indices stand in (read-only).
        gpu.launch(
            &GRAD_ELEMENTS,
            &constants,
            &[
                v.logits,
                v.index,
                v.entropy,
                v.a.unwrap_or(v.index),
                v.c.unwrap_or(v.index),
                match &spare {
                    Some(spare) => spare.view(4),
                    None => v.grad,
                },
                v.max,
                v.log_sum,
            ],
            bytemuck::bytes_of(&params),
            quads.div_ceil(self.constants[0].1 as u64),
        )
    }
}

/// What the gradient kernel binds.
pub(super) struct GradViews<'a> {
    pub logits: View<'a>,
    pub index: View<'a>,
    pub grad: View<'a>,
    pub entropy: View<'a>,
    pub max: View<'a>,
    pub log_sum: View<'a>,
    pub a: Option<View<'a>>,
    pub c: Option<View<'a>>,
}

impl<'a> GradViews<'a> {
    /// The views of `saved` statistics and `upstream` gradients (every row bound), with the
    /// `[logits, class index, gradient]` views.
    pub fn of(
        [logits, index, grad]: [View<'a>; 3],
        saved: &'a HeadStatsOutput,
        upstream: &'a Upstream,
    ) -> Result<GradViews<'a>> {
        let n = saved.lse.len().max(1);
        let shift = saved.shift.as_ref().ok_or_else(|| mixed(OP_BACKWARD))?;
        let up = |t: &'a Option<Tensor>| t.as_ref().map(|t| t.view(0, n, OP_BACKWARD)).transpose();
        Ok(GradViews {
            logits,
            index,
            grad,
            entropy: saved.entropy.view(0, n, OP_BACKWARD)?,
            max: shift.max.view(0, n, OP_BACKWARD)?,
            log_sum: shift.log_sum.view(0, n, OP_BACKWARD)?,
            a: up(&upstream[0])?,
            c: up(&upstream[1])?,
        })
    }
}

/// Multiplies rows `row0 …` of a chunk's gradient (`rows × cols` from the chunk's start) by
/// their upstream weights, zeroing the ignored rows (the gradient of `Σ w_r·loss_r`).
pub(super) fn scale_rows(
    gpu: &Gpu,
    (rows, row0, cols): (usize, usize, usize),
    [grad, index, weights]: [View<'_>; 3],
) -> Result<()> {
    let params = StatsParams {
        rows: rows as u32,
        cols: cols as u32,
        base: 0,
        row0: row0 as u32,
        temperature: 1.0,
        softcap: 1.0,
        z_scale: 0.0,
        up_row0: 0,
    };
    let wg = WG.min(gpu.workgroup_cap());
    gpu.launch(
        &SCALE_ROWS,
        &[("WG", f64::from(wg))],
        &[grad, index, weights],
        bytemuck::bytes_of(&params),
        ((rows * cols.div_ceil(4)) as u64).div_ceil(u64::from(wg)),
    )
}
