//! The fused linear head for any per-token loss: the statistics of [`Tensor::head_stats`]
//! (`log p_t`, entropy, `lse` under a temperature) of the logits `z = x·Wᵀ + b`, and the
//! gradients dx, dW, db of the caller's loss of them, without ever holding the `[N, K]` logits.
//! As in the fused linear cross-entropy, the rows go in chunks through one scratch buffer:
//! forward, a chunk's logits are formed there (`shaders/matmul.wgsl`) and reduced to their
//! statistics (`shaders/head_stats.wgsl`); backward, they are formed again, turned into
//! `G = ∂L/∂z` in place from the saved statistics and the upstream gradients, and multiplied
//! back into dx (the chunk's rows), dW and db (accumulated in f32 across chunks) before the next
//! chunk reuses the buffer: `dx_rows = G·W`, `dW += Gᵀ·x_rows`, `db += 1ᵀ·G`.

use crate::cpu;
use crate::cpu::{narrow, widen};
use crate::definitions::loss::HeadStats;
use crate::error::{Error, Result};
use crate::layout::{self, DType};
use crate::ops::convert::common_float;
use crate::ops::linear::{
    accumulate_chunk, check_bias, chunk_logits, dims, host_logits, products_device,
};
use crate::ops::placement::{Placement, place};
use crate::tensor::Tensor;

use super::Targets;
use super::head::class_targets;
use super::head_stats::{
    GradKernel, GradViews, HeadStatsOutput, RowStats, StatsKernel, ce, check_saved, host_backward,
    host_labels, upstream_f32,
};
use super::linear_head::{check_chunk_rows, default_chunk_rows, scratch_rows};

const OP: &str = "linear_head";
const OP_BACKWARD: &str = "linear_head_backward";

/// The shared checks of both directions: `(N, H, K, dtype)`.
fn check_layer(
    op: &'static str,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Result<(usize, usize, usize, DType)> {
    let (n, h, k) = dims(op, x, weight)?;
    let mut operands = vec![("the input", x), ("weight", weight)];
    operands.extend(bias.map(|b| ("bias", b)));
    let dtype = common_float(op, &operands)?;
    if k == 0 {
        return Err(Error::invalid_shape(
            op,
            weight.shape(),
            "the statistics need at least one class",
        ));
    }
    if let Some(b) = bias {
        if !b.context().same(x.context()) {
            return Err(Error::ContextMismatch { op });
        }
        if b.shape() != [k] {
            return Err(Error::ShapeMismatch {
                op,
                what: "bias ([K], K the weight's first dim)",
                got: b.shape().to_vec(),
                expected: vec![k],
            });
        }
    }
    Ok((n, h, k, dtype))
}

/// The layer's operands in f32 (copies of half ones: the products accumulate in f32 across
/// chunks and round once), the bias checked against the K classes.
fn f32_layer(
    op: &'static str,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    k: usize,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let x = x.to_dtype(DType::F32)?;
    let b = bias.map(|b| b.to_dtype(DType::F32)).transpose()?;
    check_bias(op, &x, b.as_ref(), k)?;
    Ok((x, weight.to_dtype(DType::F32)?, b))
}

impl Tensor {
    /// The statistics of [`Tensor::head_stats`] (each row's `log p_t`, entropy and `lse` under
    /// `options`' temperature and softcap) of the linear layer's logits `z = x·Wᵀ + b` (this
    /// input `x [.., H]`, `weight [K, H]`, an optional `bias [K]`, as [`Tensor::linear`]),
    /// **without storing the `[N, K]` logits**: the rows go in chunks of at most 32 MiB of
    /// logits ([`crate::LINEAR_CROSS_ENTROPY_CHUNK_BYTES`]), each formed and reduced to its rows'
    /// statistics before the next. Device memory beyond the inputs: one chunk, three floats
    /// and a class index per row. x and the weight are bound whole (each must fit one storage
    /// binding). Half inputs run on f32 copies; the statistics are f32.
    pub fn linear_head(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: Targets<'_>,
        options: &HeadStats,
    ) -> Result<HeadStatsOutput> {
        self.linear_head_chunked(weight, bias, targets, options, default_chunk_rows(weight))
    }

    /// [`Tensor::linear_head`] with `chunk_rows` rows of logits per chunk (a positive multiple
    /// of [`LINEAR_CROSS_ENTROPY_ROW_ALIGN`](crate::LINEAR_CROSS_ENTROPY_ROW_ALIGN)).
    pub fn linear_head_chunked(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: Targets<'_>,
        options: &HeadStats,
        chunk_rows: usize,
    ) -> Result<HeadStatsOutput> {
        check_chunk_rows(OP, chunk_rows)?;
        options.validate(OP)?;
        let (n, _, k, _) = check_layer(OP, self, weight, bias)?;
        let ctx = self.context();
        let checked = class_targets(OP, ctx, targets, (n, k), &ce(options))?;
        let row_shape = &self.shape()[..self.shape().len() - 1];
        let (x, w, b) = f32_layer(OP, self, weight, bias, k)?;
        let (logp, entropy, lse, shift) = if let Placement::Host = place(OP, &[&x, &w])? {
            let h = x.shape().last().copied().unwrap_or(0);
            let (_, _, z) = host_logits(&x, &w, b.as_ref(), (n, h, k))?;
            let labels = host_labels(OP, &checked, options)?;
            let r = cpu::head_stats::head_stats(&z, k, &labels, options);
            let host = |v: &[f64]| Tensor::from_slice(ctx, &narrow(v), row_shape);
            (host(&r.logp)?, host(&r.entropy)?, host(&r.lse)?, None)
        } else {
            let gpu = products_device(ctx, &[&x, &w])?;
            let chunk = scratch_rows(OP, gpu, n, k, chunk_rows)?;
            let h = x.shape().last().copied().unwrap_or(0);
            let scratch = gpu.alloc(layout::bytes(chunk * k), OP)?;
            let mut uploaded = None;
            let index = checked.index.on_device(gpu, &mut uploaded, OP)?;
            let out = RowStats::alloc(gpu, n)?;
            let kernel = StatsKernel::new(gpu, ctx.row_strategy(), options, chunk.min(n), k)?;
            for r0 in (0..n).step_by(chunk) {
                let rows = chunk.min(n - r0);
                let logits = scratch.view(rows * k);
                chunk_logits(
                    ctx,
                    (x.view(r0 * h, rows * h, OP)?, logits),
                    &w,
                    b.as_ref(),
                    (rows, k, h),
                )?;
                kernel.launch(gpu, rows, r0, 0, logits, index, &out)?;
            }
            out.into_tensors(ctx, row_shape)?
        };
        Ok(HeadStatsOutput {
            logp,
            entropy,
            lse,
            classes: k,
            options: *options,
            shift,
        })
    }

    /// The gradients `(dx, dW, db)` of the caller's loss `L` of the statistics `saved` (from
    /// [`Tensor::linear_head`] with this input, weight, bias and targets), given its upstream
    /// gradients `grad_logp` (`a = ∂L/∂log p_t`) and `grad_entropy` (`c = ∂L/∂H`), one per row
    /// each (`None`: zero): with `G = ∂L/∂z` as in [`Tensor::head_stats_backward`],
    /// `dx = G·W`, `dW = Gᵀ·x`, `db = Σ_n G` (db whether or not a bias was given), **without
    /// storing the logits**: each chunk's logits are formed again, turned into G in place and
    /// multiplied back before the next chunk. dW and db accumulate in f32 across chunks, also
    /// for half inputs (rounded once to their type at the end). Statistics of another shape,
    /// upstream gradients of another shape than the rows' or targets out of range are refused
    /// before anything is written.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_head_backward(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: Targets<'_>,
        saved: &HeadStatsOutput,
        grad_logp: Option<&Tensor>,
        grad_entropy: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.linear_head_backward_chunked(
            weight,
            bias,
            targets,
            saved,
            grad_logp,
            grad_entropy,
            default_chunk_rows(weight),
        )
    }

    /// [`Tensor::linear_head_backward`] with `chunk_rows` rows of logits per chunk (a positive
    /// multiple of [`LINEAR_CROSS_ENTROPY_ROW_ALIGN`](crate::LINEAR_CROSS_ENTROPY_ROW_ALIGN)).
    #[allow(clippy::too_many_arguments)]
    pub fn linear_head_backward_chunked(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: Targets<'_>,
        saved: &HeadStatsOutput,
        grad_logp: Option<&Tensor>,
        grad_entropy: Option<&Tensor>,
        chunk_rows: usize,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        check_chunk_rows(OP_BACKWARD, chunk_rows)?;
        let (n, h, k, dtype) = check_layer(OP_BACKWARD, self, weight, bias)?;
        let ctx = self.context();
        let row_shape = &self.shape()[..self.shape().len() - 1];
        let given = [grad_logp, grad_entropy];
        check_saved(OP_BACKWARD, ctx, saved, row_shape, k, given)?;
        let options = &saved.options;
        let checked = class_targets(OP_BACKWARD, ctx, targets, (n, k), &ce(options))?;
        let upstream = upstream_f32(given)?;
        let (x, w, b) = f32_layer(OP_BACKWARD, self, weight, bias, k)?;
        let (dx, dw, db) = if let Placement::Host = place(OP_BACKWARD, &[&x, &w])? {
            let (xs, ws, z) = host_logits(&x, &w, b.as_ref(), (n, h, k))?;
            let labels = host_labels(OP_BACKWARD, &checked, options)?;
            let g = host_backward(&z, k, &labels, options, &upstream)?;
            let (dx, dw, db) = cpu::linear::backward(&xs, &ws, &g, n, h, k);
            let host = |v: &[f64], shape: &[usize]| Tensor::from_slice(ctx, &narrow(v), shape);
            (host(&dx, x.shape())?, host(&dw, &[k, h])?, host(&db, &[k])?)
        } else {
            let gpu = products_device(ctx, &[&x, &w])?;
            let chunk = scratch_rows(OP_BACKWARD, gpu, n, k, chunk_rows)?;
            let scratch = gpu.alloc(layout::bytes(chunk * k), OP_BACKWARD)?;
            let ones = Tensor::from_slice(ctx, &vec![1.0; chunk], &[chunk])?;
            let mut uploaded = None;
            let index = checked.index.on_device(gpu, &mut uploaded, OP_BACKWARD)?;
            let has = [upstream[0].is_some(), upstream[1].is_some()];
            let kernel = GradKernel::new(gpu, options, k, has);
            let dx = Tensor::uninit_as(ctx, x.shape(), DType::F32, OP_BACKWARD)?;
            let dw = Tensor::zeros(ctx, &[k, h])?;
            let db = Tensor::zeros(ctx, &[k])?;
            products_device(ctx, &[&dx, &dw])?;
            for r0 in (0..n).step_by(chunk) {
                let rows = chunk.min(n - r0);
                let logits = scratch.view(rows * k);
                let x_rows = x.view(r0 * h, rows * h, OP_BACKWARD)?;
                chunk_logits(ctx, (x_rows, logits), &w, b.as_ref(), (rows, k, h))?;
                let views = [logits, index.view(n.max(1)), logits];
                let views = GradViews::of(views, saved, &upstream)?;
                kernel.launch(gpu, (rows, r0, 0, 0), views)?;
                // The chunk now holds G, its rows of ∂L/∂z.
                accumulate_chunk(
                    ctx,
                    OP_BACKWARD,
                    (&dx, &dw, &db, &ones),
                    (logits, x_rows, &w),
                    (r0, rows, h, k),
                )?;
            }
            (dx, dw, db)
        };
        Ok((
            dx.to_dtype(dtype)?,
            dw.to_dtype(dtype)?,
            db.to_dtype(dtype)?,
        ))
    }
}

/// What [`Tensor::linear_head_step`] returns: the statistics of every row and the gradients of
/// the caller's loss.
#[derive(Clone, Debug)]
pub struct LinearHeadStep {
    /// The statistics, as [`Tensor::linear_head`] gives them.
    pub stats: HeadStatsOutput,
    /// `∂L/∂x`, the input's shape.
    pub dx: Tensor,
    /// `∂L/∂W`, `[K, H]`.
    pub dw: Tensor,
    /// `∂L/∂b`, `[K]` (whether or not a bias was given).
    pub db: Tensor,
}

impl Tensor {
    /// A training step of the linear head in one pass over the chunks, for a loss whose
    /// upstream gradients of each row depend on that row's statistics alone (a PPO or GRPO
    /// clipped ratio, an entropy bonus, a per-token weight): each chunk's logits are formed
    /// once, reduced to their statistics, which are read back and handed to `upstream` with the
    /// chunk's rows (`upstream(rows, logp, entropy)` returns `(∂L/∂log p_t, ∂L/∂H)` for those
    /// rows, one value each), turned into `G = ∂L/∂z` in place and multiplied back into dx, dW
    /// and db — three products per chunk, as the materialised path's three, where
    /// [`Tensor::linear_head`] then [`Tensor::linear_head_backward`] form the logits twice. One
    /// read-back per chunk (two floats a row) waits for the device. Everything else as those
    /// two: f32 accumulation across chunks, the same options and checks; upstream gradients of
    /// another length than the chunk's rows are [`Error::ShapeMismatch`].
    pub fn linear_head_step<F>(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: Targets<'_>,
        options: &HeadStats,
        upstream: F,
    ) -> Result<LinearHeadStep>
    where
        F: FnMut(std::ops::Range<usize>, &[f32], &[f32]) -> (Vec<f32>, Vec<f32>),
    {
        let chunk = default_chunk_rows(weight);
        self.linear_head_step_chunked(weight, bias, targets, options, upstream, chunk)
    }

    /// [`Tensor::linear_head_step`] with `chunk_rows` rows of logits per chunk (a positive
    /// multiple of [`LINEAR_CROSS_ENTROPY_ROW_ALIGN`](crate::LINEAR_CROSS_ENTROPY_ROW_ALIGN)).
    pub fn linear_head_step_chunked<F>(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: Targets<'_>,
        options: &HeadStats,
        mut upstream: F,
        chunk_rows: usize,
    ) -> Result<LinearHeadStep>
    where
        F: FnMut(std::ops::Range<usize>, &[f32], &[f32]) -> (Vec<f32>, Vec<f32>),
    {
        const OP_STEP: &str = "linear_head_step";
        check_chunk_rows(OP_STEP, chunk_rows)?;
        options.validate(OP_STEP)?;
        let (n, h, k, dtype) = check_layer(OP_STEP, self, weight, bias)?;
        let ctx = self.context();
        let checked = class_targets(OP_STEP, ctx, targets, (n, k), &ce(options))?;
        let row_shape = &self.shape()[..self.shape().len() - 1];
        let (x, w, b) = f32_layer(OP_STEP, self, weight, bias, k)?;
        let mut call = |r0: usize, rows: usize, logp: &[f32], entropy: &[f32]| {
            let (a, c) = upstream(r0..r0 + rows, logp, entropy);
            for (what, v) in [
                ("the step's grad_logp", &a),
                ("the step's grad_entropy", &c),
            ] {
                if v.len() != rows {
                    return Err(Error::ShapeMismatch {
                        op: OP_STEP,
                        what,
                        got: vec![v.len()],
                        expected: vec![rows],
                    });
                }
            }
            Ok((a, c))
        };
        if let Placement::Host = place(OP_STEP, &[&x, &w])? {
            let (xs, ws, z) = host_logits(&x, &w, b.as_ref(), (n, h, k))?;
            let labels = host_labels(OP_STEP, &checked, options)?;
            let r = cpu::head_stats::head_stats(&z, k, &labels, options);
            let (logp, entropy) = (narrow(&r.logp), narrow(&r.entropy));
            let (mut a, mut c) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for r0 in (0..n).step_by(chunk_rows) {
                let end = (r0 + chunk_rows).min(n);
                let (ca, cc) = call(r0, end - r0, &logp[r0..end], &entropy[r0..end])?;
                a.extend(widen(&ca));
                c.extend(widen(&cc));
            }
            let g =
                cpu::head_stats::head_stats_backward(&z, k, &labels, options, Some(&a), Some(&c));
            let (dx, dw, db) = cpu::linear::backward(&xs, &ws, &g, n, h, k);
            let host = |v: &[f64], shape: &[usize]| Tensor::from_slice(ctx, &narrow(v), shape);
            return Ok(LinearHeadStep {
                stats: HeadStatsOutput {
                    logp: host(&r.logp, row_shape)?,
                    entropy: host(&r.entropy, row_shape)?,
                    lse: host(&r.lse, row_shape)?,
                    classes: k,
                    options: *options,
                    shift: None,
                },
                dx: host(&dx, x.shape())?.to_dtype(dtype)?,
                dw: host(&dw, &[k, h])?.to_dtype(dtype)?,
                db: host(&db, &[k])?.to_dtype(dtype)?,
            });
        }
        let gpu = products_device(ctx, &[&x, &w])?;
        let chunk = scratch_rows(OP_STEP, gpu, n, k, chunk_rows)?;
        let scratch = gpu.alloc(layout::bytes(chunk * k), OP_STEP)?;
        let ones = Tensor::from_slice(ctx, &vec![1.0; chunk], &[chunk])?;
        let mut uploaded = None;
        let index = checked.index.on_device(gpu, &mut uploaded, OP_STEP)?;
        let out = RowStats::alloc(gpu, n)?;
        let stats_kernel = StatsKernel::new(gpu, ctx.row_strategy(), options, chunk.min(n), k)?;
        let grad_kernel = GradKernel::new(gpu, options, k, [true, true]);
        let dx = Tensor::uninit_as(ctx, x.shape(), DType::F32, OP_STEP)?;
        let dw = Tensor::zeros(ctx, &[k, h])?;
        let db = Tensor::zeros(ctx, &[k])?;
        products_device(ctx, &[&dx, &dw])?;
        for r0 in (0..n).step_by(chunk) {
            let rows = chunk.min(n - r0);
            let logits = scratch.view(rows * k);
            let x_rows = x.view(r0 * h, rows * h, OP_STEP)?;
            chunk_logits(ctx, (x_rows, logits), &w, b.as_ref(), (rows, k, h))?;
            stats_kernel.launch(gpu, rows, r0, 0, logits, index, &out)?;
            let [logp, entropy] = out.read_rows(gpu, r0, rows)?;
            let (a, c) = call(r0, rows, &logp, &entropy)?;
            let a = gpu.upload_new(bytemuck::cast_slice(&a), OP_STEP)?;
            let c = gpu.upload_new(bytemuck::cast_slice(&c), OP_STEP)?;
            let [entropy, max, log_sum] = out.saved_views();
            let views = GradViews {
                logits,
                index: index.view(n.max(1)),
                grad: logits,
                entropy,
                max,
                log_sum,
                a: Some(a.view(rows)),
                c: Some(c.view(rows)),
            };
            grad_kernel.launch(gpu, (rows, r0, 0, r0), views)?;
            accumulate_chunk(
                ctx,
                OP_STEP,
                (&dx, &dw, &db, &ones),
                (logits, x_rows, &w),
                (r0, rows, h, k),
            )?;
        }
        let (logp, entropy, lse, shift) = out.into_tensors(ctx, row_shape)?;
        Ok(LinearHeadStep {
            stats: HeadStatsOutput {
                logp,
                entropy,
                lse,
                classes: k,
                options: *options,
                shift,
            },
            dx: dx.to_dtype(dtype)?,
            dw: dw.to_dtype(dtype)?,
            db: db.to_dtype(dtype)?,
        })
    }
}
