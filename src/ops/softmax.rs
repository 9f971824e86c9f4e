//! Row-wise softmax and log-softmax along the last dimension, forward and backward.

use crate::cpu;
use crate::error::{Error, Result};
use crate::gpu::pipelines::{Kernel, Slot};
use crate::gpu::{Gpu, View};
use crate::layout;
use crate::ops::activation::check_same_float;
use crate::ops::convert::half_route_into;
use crate::ops::placement::{Placement, place, store};
use crate::ops::rows::{CACHED_ROW_MAX, RowBlock, RowPlan, row_blocks};
use crate::tensor::Tensor;
use crate::wgsl::Shader;

params! {
    /// Mirrors `Params` in `shaders/softmax.wgsl`.
    struct Params {
        rows: u32,
        cols: u32,
        base: u32,
        seg_len: u32,
        segs: u32,
        seg0: u32,
        segs_total: u32,
        part_row: u32,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

/// One row operation: softmax or log-softmax, forward or backward.
#[derive(Clone, Copy)]
struct RowOp {
    log: bool,
    direction: Direction,
}

impl RowOp {
    fn name(self) -> &'static str {
        match (self.log, self.direction) {
            (false, Direction::Forward) => "softmax",
            (true, Direction::Forward) => "log_softmax",
            (false, Direction::Backward) => "softmax backward",
            (true, Direction::Backward) => "log_softmax backward",
        }
    }

    /// The kernel for one stage of a plan (`stage` 0 or, for segments, 1), from the module
    /// with subgroups (softmax_subgroup.wgsl) on a device that has them, for every plan (its
    /// per-row and segment kernels are the same code as without), so that every entry point
    /// of each module is one a plan launches.
    fn kernel(self, plan: RowPlan, vec4: bool, stage: usize, subgroups: bool) -> Kernel {
        use Direction::{Backward, Forward};
        const FWD: &[Slot] = &[Slot::Read(1), Slot::ReadWrite(3)];
        const FWD_PARTIALS: &[Slot] = &[Slot::Read(1), Slot::ReadWrite(4)];
        const FWD_FINISH: &[Slot] = &[Slot::Read(1), Slot::ReadWrite(3), Slot::ReadWrite(4)];
        const BWD: &[Slot] = &[Slot::Read(1), Slot::Read(2), Slot::ReadWrite(3)];
        const BWD_PARTIALS: &[Slot] = &[Slot::Read(1), Slot::Read(2), Slot::ReadWrite(4)];
        const BWD_FINISH: &[Slot] = &[
            Slot::Read(1),
            Slot::Read(2),
            Slot::ReadWrite(3),
            Slot::ReadWrite(4),
        ];
        let (entry, slots) = match (self.direction, plan, stage, vec4) {
            (Forward, RowPlan::PerRowCached, _, _) => ("forward_rows_cached", FWD),
            (Forward, RowPlan::PerRow, _, false) => ("forward_rows", FWD),
            (Forward, RowPlan::PerRow, _, true) => ("forward_rows_vec4", FWD),
            (Forward, RowPlan::Segmented { .. }, 0, false) => ("forward_partials", FWD_PARTIALS),
            (Forward, RowPlan::Segmented { .. }, 0, true) => {
                ("forward_partials_vec4", FWD_PARTIALS)
            }
            (Forward, RowPlan::Segmented { .. }, _, false) => ("forward_finish", FWD_FINISH),
            (Forward, RowPlan::Segmented { .. }, _, true) => ("forward_finish_vec4", FWD_FINISH),
            (Forward, RowPlan::Workgroup { .. }, _, _) => ("forward_workgroup", FWD),
            (Forward, RowPlan::SubgroupRows { .. }, _, _) => ("forward_subgroup_rows", FWD),
            (Backward, RowPlan::SubgroupRows { .. }, _, _) => ("backward_subgroup_rows", BWD),
            (Backward, RowPlan::PerRow | RowPlan::PerRowCached, _, false) => ("backward_rows", BWD),
            (Backward, RowPlan::PerRow | RowPlan::PerRowCached, _, true) => {
                ("backward_rows_vec4", BWD)
            }
            (Backward, RowPlan::Segmented { .. }, 0, false) => ("backward_partials", BWD_PARTIALS),
            (Backward, RowPlan::Segmented { .. }, 0, true) => {
                ("backward_partials_vec4", BWD_PARTIALS)
            }
            (Backward, RowPlan::Segmented { .. }, _, false) => ("backward_finish", BWD_FINISH),
            (Backward, RowPlan::Segmented { .. }, _, true) => ("backward_finish_vec4", BWD_FINISH),
            (Backward, RowPlan::Workgroup { .. }, _, _) => ("backward_workgroup", BWD),
        };
        Kernel {
            module: if subgroups {
                Shader::SoftmaxSubgroup
            } else {
                Shader::Softmax
            }
            .module(),
            entry,
            slots,
        }
    }
}

impl Tensor {
    /// Softmax along the last dimension: `y_i = e^{x_i − M} / Σ_j e^{x_j − M}` with
    /// `M = max_j x_j`. A row with NaN or +∞, or of all −∞, gives NaN (as PyTorch).
    pub fn softmax(&self) -> Result<Tensor> {
        self.row_op_new(RowOp::forward(false), None)
    }

    /// Softmax written into `out` (same shape).
    pub fn softmax_into(&self, out: &Tensor) -> Result<()> {
        row_op(RowOp::forward(false), self, None, out)
    }

    /// Log-softmax along the last dimension: `x_i − M − log Σ_j e^{x_j − M}` (never the log
    /// of the softmax, so it is exact where the softmax underflows).
    pub fn log_softmax(&self) -> Result<Tensor> {
        self.row_op_new(RowOp::forward(true), None)
    }

    /// Log-softmax written into `out` (same shape).
    pub fn log_softmax_into(&self, out: &Tensor) -> Result<()> {
        row_op(RowOp::forward(true), self, None, out)
    }

    /// Softmax's gradient from its saved output `self = y`: `dx = y ⊙ (g − Σ_j g_j y_j)` per
    /// row (the Jacobian `y_i(δ_ij − y_j)` is never formed).
    pub fn softmax_backward(&self, grad: &Tensor) -> Result<Tensor> {
        self.row_op_new(RowOp::backward(false), Some(grad))
    }

    /// Softmax's gradient written into `out`.
    pub fn softmax_backward_into(&self, grad: &Tensor, out: &Tensor) -> Result<()> {
        row_op(RowOp::backward(false), self, Some(grad), out)
    }

    /// Log-softmax's gradient from its saved output `self = y`: `dx = g − e^y · Σ_j g_j`.
    pub fn log_softmax_backward(&self, grad: &Tensor) -> Result<Tensor> {
        self.row_op_new(RowOp::backward(true), Some(grad))
    }

    /// Log-softmax's gradient written into `out`.
    pub fn log_softmax_backward_into(&self, grad: &Tensor, out: &Tensor) -> Result<()> {
        row_op(RowOp::backward(true), self, Some(grad), out)
    }

    fn row_op_new(&self, op: RowOp, grad: Option<&Tensor>) -> Result<Tensor> {
        let out = self.uninit_like(op.name())?;
        row_op(op, self, grad, &out)?;
        Ok(out)
    }
}

impl RowOp {
    fn forward(log: bool) -> RowOp {
        RowOp {
            log,
            direction: Direction::Forward,
        }
    }

    fn backward(log: bool) -> RowOp {
        RowOp {
            log,
            direction: Direction::Backward,
        }
    }
}

/// Every kernel the softmax family may launch, with its parameter block's size.
#[cfg(test)]
pub(crate) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    let mut all = Vec::new();
    for direction in [Direction::Forward, Direction::Backward] {
        for plan in RowPlan::examples() {
            for (log, vec4, subgroups) in crate::ops::loss::flag_triples() {
                if matches!(plan, RowPlan::SubgroupRows { .. }) && !(subgroups && vec4) {
                    continue;
                }
                for stage in [0, 1] {
                    let op = RowOp { log, direction };
                    all.push((op.kernel(plan, vec4, stage, subgroups), Params::LAYOUT));
                }
            }
        }
    }
    all
}

fn row_op(op: RowOp, x: &Tensor, grad: Option<&Tensor>, out: &Tensor) -> Result<()> {
    let name = op.name();
    let mut inputs = vec![("the input", x)];
    inputs.extend(grad.map(|g| ("grad", g)));
    // Half storage runs the vec4 kernels directly (whole vec4s of a row: cols divisible by
    // 4; the workgroup kernels read scalars, f32 only), and the CPU backend on its host
    // values; other shapes go through f32 copies.
    let direct = match (x.context().gpu(), x.rows_cols(name)) {
        _ if !x.dtype().is_half() => true,
        (None, _) => true,
        (Some(_), Ok((rows, cols))) if rows == 0 || cols == 0 => true,
        (Some(gpu), Ok((rows, cols))) => {
            let strategy = x.context().row_strategy();
            let (plan, _) = choose_plan(gpu, op, strategy, x.dtype(), (rows, cols));
            cols.is_multiple_of(4) && !matches!(plan, RowPlan::Workgroup { .. })
        }
        (Some(_), Err(_)) => true,
    };
    if !direct
        && let Some(done) =
            half_route_into(name, &inputs, out, |w, o| row_op(op, &w[0], w.get(1), o))
    {
        return done;
    }
    let (rows, cols) = x.rows_cols(name)?;
    if let Some(g) = grad {
        check_same_float(name, "grad", x, g)?;
    }
    check_same_float(name, "output", x, out)?;
    let inputs_alias_out = out.aliases(x) || grad.is_some_and(|g| out.aliases(g));
    let mut operands = vec![x, out];
    operands.extend(grad);
    match place(name, &operands)? {
        Placement::Host => {
            // Read copies first: the inputs may share storage with the output.
            let xs = x.to_vec()?;
            let values = match (op.direction, grad) {
                (Direction::Forward, _) => cpu::softmax::forward(&xs, cols, op.log),
                (Direction::Backward, Some(g)) => {
                    cpu::softmax::backward(&xs, &g.to_vec()?, cols, op.log)
                }
                (Direction::Backward, None) => return Err(no_gradient(name)),
            };
            store(name, out, values)
        }
        _ if rows == 0 || cols == 0 => Ok(()),
        _ if inputs_alias_out => {
            // The kernels read their inputs after writing other rows; keep them apart.
            let tmp = out.uninit_like(name)?;
            row_op(op, x, grad, &tmp)?;
            tmp.copy_into(out)
        }
        Placement::Device(gpu) => launch_rows(gpu, op, x, grad, out, rows, cols),
    }
}

/// A backward asked for without its upstream gradient (the public ops always pass one).
fn no_gradient(op: &'static str) -> Error {
    Error::Gpu {
        op,
        message: "a backward without its upstream gradient".into(),
    }
}

/// One launch's binding window and parameters.
struct Window {
    bind_start: usize,
    bind_len: usize,
    params: Params,
    /// Invocations (or, for the workgroup kernel, workgroups) the launch needs.
    width: usize,
}

fn launch_rows(
    gpu: &Gpu,
    op: RowOp,
    x: &Tensor,
    grad: Option<&Tensor>,
    out: &Tensor,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let name = op.name();
    let storage = x.dtype();
    let max_elems = layout::elements_in(gpu.max_binding);
    let align = layout::offset_alignment_elements_of(&gpu.limits, storage);
    let (plan, long_rows) = choose_plan(gpu, op, x.context().row_strategy(), storage, (rows, cols));
    plan.check_loop_limit(gpu, cols, op.name())?;
    let (seg_len, segs) = match plan {
        RowPlan::Segmented { seg_len, segs } => (seg_len, segs),
        _ => (cols, 1),
    };
    let part_per_segment = match op.direction {
        Direction::Forward => 2,
        Direction::Backward => 1,
    };
    let vec4 = cols.is_multiple_of(4);
    let mut constants = plan.constants(cols);
    constants.push(("LOG", if op.log { 1.0 } else { 0.0 }));
    let windows: Vec<Window> = if long_rows {
        // Each row must lie within one buffer of every tensor (it may span bindings).
        for r in 0..rows {
            let crossed = [Some(x), Some(out), grad]
                .into_iter()
                .flatten()
                .any(|t| t.part_end(r * cols) < (r + 1) * cols);
            if crossed {
                return Err(Error::TooLarge {
                    op: name,
                    requested: layout::bytes(cols),
                    limit: gpu.max_buffer,
                    unit: crate::Unit::Bytes,
                    what: "max_buffer_size (one row)",
                });
            }
        }
        long_row_windows(rows, cols, seg_len, segs, max_elems, align)
    } else {
        let part = if matches!(plan, RowPlan::Segmented { .. }) {
            part_per_segment * segs
        } else {
            0
        };
        let mut tensors = vec![x, out];
        tensors.extend(grad);
        row_blocks(gpu, name, rows, cols, part, &tensors)?
            .into_iter()
            .map(|b: RowBlock| Window {
                bind_start: b.bind_start,
                bind_len: b.bind_len,
                params: Params {
                    rows: b.rows as u32,
                    cols: cols as u32,
                    base: b.base as u32,
                    seg_len: seg_len as u32,
                    segs: segs as u32,
                    seg0: 0,
                    segs_total: segs as u32,
                    part_row: 0,
                },
                width: match plan {
                    RowPlan::Segmented { .. } => b.rows * segs,
                    _ => b.rows,
                },
            })
            .collect()
    };
    let io = |w: &Window| -> Result<Vec<View<'_>>> {
        let (start, len) = (w.bind_start, w.bind_len);
        let mut views = vec![x.view(start, len, name)?];
        if let Some(g) = grad {
            views.push(g.view(start, len, name)?);
        }
        views.push(out.view(start, len, name)?);
        Ok(views)
    };
    match plan {
        RowPlan::PerRow
        | RowPlan::PerRowCached
        | RowPlan::Workgroup { .. }
        | RowPlan::SubgroupRows { .. } => {
            let k = op.kernel(plan, vec4, 0, gpu.subgroups);
            for w in &windows {
                let views = io(w)?;
                gpu.launch_stored(
                    &k,
                    storage,
                    &constants,
                    &views,
                    bytemuck::bytes_of(&w.params),
                    plan.groups(w.width),
                )?;
            }
        }
        RowPlan::Segmented { .. } => {
            // Stage 1 writes every window's partials; stage 2 combines a row's partials (from
            // all its windows) and finishes each window. Ordered launches on one queue.
            let per_launch = |w: &Window| w.params.rows as usize * w.params.segs_total as usize;
            let part_len = if long_rows {
                rows * segs * part_per_segment
            } else {
                windows.iter().map(per_launch).max().unwrap_or(1) * part_per_segment
            };
            let k1 = op.kernel(plan, vec4, 0, gpu.subgroups);
            let k2 = op.kernel(plan, vec4, 1, gpu.subgroups);
            let stages: [(&Kernel, bool); 2] = [(&k1, false), (&k2, true)];
            let launch_stage = |kernel: &Kernel, w: &Window, part: View<'_>, writes_output| {
                let views = stage_views(io(w)?, part, writes_output);
                let params = bytemuck::bytes_of(&w.params);
                gpu.launch_stored(
                    kernel,
                    storage,
                    &constants,
                    &views,
                    params,
                    plan.groups(w.width),
                )
            };
            if long_rows {
                // One partials buffer for every window of every row, stage by stage.
                let part = gpu.alloc(layout::bytes(part_len), name)?;
                for (kernel, writes_output) in stages {
                    for w in &windows {
                        launch_stage(kernel, w, part.view(part_len), writes_output)?;
                    }
                }
            } else {
                for w in &windows {
                    let part = gpu.alloc(layout::bytes(part_len), name)?;
                    for (kernel, writes_output) in stages {
                        launch_stage(kernel, w, part.view(part_len), writes_output)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The row plan for `rows × cols` elements of `storage` on `gpu`, and whether a row is longer
/// than one binding.
fn choose_plan(
    gpu: &Gpu,
    op: RowOp,
    strategy: crate::RowStrategy,
    storage: layout::DType,
    (rows, cols): (usize, usize),
) -> (RowPlan, bool) {
    let max_elems = layout::elements_in(gpu.max_binding);
    let align = layout::offset_alignment_elements_of(&gpu.limits, storage);
    let long_rows = cols.saturating_add(align) > max_elems;
    let plan = if long_rows {
        // A row longer than one binding: segments, bound a window of them at a time.
        let seg_len = cols
            .div_ceil(LONG_ROW_SEGMENTS)
            .max(MIN_LONG_SEGMENT)
            .div_ceil(64)
            * 64;
        RowPlan::Segmented {
            seg_len,
            segs: cols.div_ceil(seg_len),
        }
    } else if op.direction == Direction::Forward {
        match RowPlan::choose_cached(gpu, strategy, rows, cols, true) {
            // A short forward row fits in registers: read it once.
            RowPlan::PerRow
                if op.direction == Direction::Forward
                    && cols.is_multiple_of(4)
                    && cols <= CACHED_ROW_MAX =>
            {
                RowPlan::PerRowCached
            }
            plan => plan,
        }
    } else {
        RowPlan::choose_cached(gpu, strategy, rows, cols, false)
    };
    (plan, long_rows)
}

/// Segments per long row (so that a CPU-type adapter's lanes all have work) and the shortest
/// segment worth an invocation.
const LONG_ROW_SEGMENTS: usize = 1024;
const MIN_LONG_SEGMENT: usize = 4096;

/// Windows of whole segments of each row, each within one binding.
fn long_row_windows(
    rows: usize,
    cols: usize,
    seg_len: usize,
    segs: usize,
    max_elems: usize,
    align: usize,
) -> Vec<Window> {
    let per_window = ((max_elems - align) / seg_len).max(1);
    let mut windows = Vec::new();
    for r in 0..rows {
        let row0 = r * cols;
        for s0 in (0..segs).step_by(per_window) {
            let s1 = (s0 + per_window).min(segs);
            let start = row0 + s0 * seg_len;
            let end = (row0 + s1 * seg_len).min(row0 + cols);
            let bind_start = start / align * align;
            windows.push(Window {
                bind_start,
                bind_len: end - bind_start,
                params: Params {
                    rows: 1,
                    cols: (end - start) as u32,
                    base: (start - bind_start) as u32,
                    seg_len: seg_len as u32,
                    segs: (s1 - s0) as u32,
                    seg0: s0 as u32,
                    segs_total: segs as u32,
                    part_row: r as u32,
                },
                width: s1 - s0,
            });
        }
    }
    windows
}

/// The views of a segment stage: stage 1 binds the inputs and the partials, stage 2 also the
/// output (which `io` puts last).
fn stage_views<'a>(mut io: Vec<View<'a>>, part: View<'a>, writes_output: bool) -> Vec<View<'a>> {
    if !writes_output {
        io.pop();
    }
    io.push(part);
    io
}
