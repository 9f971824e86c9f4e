//! The geometry every row operation shares: which kernel covers a row (a [`RowPlan`]), and
//! how rows are split into blocks that each fit one storage binding.

use crate::context::RowStrategy;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::layout::{self, VEC4, vec4s};

/// Invocations per workgroup of the per-row and segment kernels.
const ROW_WG: u32 = 64;

/// Invocations a launch should have to keep a CPU-type adapter's threads and SIMD lanes busy.
const CPU_PARALLEL_INVOCATIONS: usize = 1024;

/// Longest row the cached per-row kernel holds (`ROW_CACHE` vec4s in softmax.wgsl).
pub(crate) use crate::wgsl::CACHED_ROW_MAX;

/// The most vec4s a lane of a subgroup-per-row kernel holds (row_cache.wgsl), and a tighter
/// bound on GPUs, where registers are shared by the invocations resident on a core.
const LANE_CACHE: usize = crate::wgsl::LANE_PART * crate::wgsl::LANE_PARTS;
const LANE_CACHE_HARDWARE: usize = 8;

/// Shortest segment worth a separate invocation.
const MIN_SEGMENT: usize = 1024;

/// How a row operation covers its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowPlan {
    /// One invocation per row.
    PerRow,
    /// One invocation per short row, read once into registers (vec4 rows of at most
    /// `CACHED_ROW_MAX` elements; forward only).
    PerRowCached,
    /// One invocation per `seg_len` elements of a row; a second launch combines and finishes.
    Segmented { seg_len: usize, segs: usize },
    /// One workgroup of `wg` invocations per row.
    Workgroup { wg: u32 },
    /// One subgroup per row, each lane holding `lane_vec4s` of the row's vec4s in registers;
    /// `rows_per_wg` rows per workgroup of `wg` invocations (softmax and class-index
    /// cross-entropy, vec4 rows only).
    SubgroupRows {
        lane_vec4s: u32,
        rows_per_wg: u32,
        wg: u32,
    },
}

impl RowPlan {
    /// The plan for `rows × cols` on `gpu`, honouring a forced `strategy` unless its
    /// invocations would loop longer than the adapter allows (see
    /// [`RowPlan::within_loop_limit`]).
    pub fn choose(gpu: &Gpu, strategy: RowStrategy, rows: usize, cols: usize) -> RowPlan {
        match RowPlan::choose_uncapped(gpu, strategy, rows, cols) {
            RowPlan::Workgroup { wg } => RowPlan::Workgroup {
                wg: wg.min(gpu.workgroup_cap()),
            },
            plan => plan,
        }
        .within_loop_limit(gpu, cols)
    }

    /// The loop iterations of the plan's longest invocation over rows of `cols` floats: every
    /// row kernel walks its share of a row twice, a vec4 per iteration (statistics, then the
    /// output), and a segment's finishing invocation also merges the row's partials.
    pub fn loop_iterations(self, cols: usize) -> usize {
        let walk = |len: usize| 2 * vec4s(len);
        match self {
            RowPlan::PerRow | RowPlan::PerRowCached => walk(cols),
            RowPlan::Segmented { seg_len, segs } => walk(seg_len) + segs,
            RowPlan::Workgroup { wg } => walk(cols.div_ceil(wg as usize)),
            RowPlan::SubgroupRows { lane_vec4s, .. } => 2 * lane_vec4s as usize,
        }
    }

    /// This plan, or one workgroup per row where this plan's invocations would loop longer
    /// than the adapter lets them (llvmpipe ends an invocation after 65,535 iterations): a
    /// CPU adapter's one invocation per row covers rows of up to about 131,000 floats.
    pub fn within_loop_limit(self, gpu: &Gpu, cols: usize) -> RowPlan {
        if gpu.loops_fit(self.loop_iterations(cols)) {
            return self;
        }
        RowPlan::Workgroup {
            wg: gpu.workgroup_cap().min(256),
        }
    }

    /// `Err(TooLarge)` where even this plan's invocations loop too long (rows of tens of
    /// millions of floats on llvmpipe).
    pub fn check_loop_limit(self, gpu: &Gpu, cols: usize, op: &'static str) -> Result<()> {
        gpu.check_loop_limit(
            op,
            self.loop_iterations(cols),
            "loop iterations of one invocation over its share of a row (the adapter ends an \
             invocation after that many; llvmpipe)",
        )
    }

    fn choose_uncapped(gpu: &Gpu, strategy: RowStrategy, rows: usize, cols: usize) -> RowPlan {
        match strategy {
            RowStrategy::PerRow => RowPlan::PerRow,
            RowStrategy::Segmented => RowPlan::segmented(cols, vec4s(cols).clamp(1, 8)),
            RowStrategy::Workgroup => RowPlan::Workgroup {
                wg: workgroup_size(cols),
            },
            RowStrategy::Auto | RowStrategy::Subgroup if gpu.hardware => {
                if cols <= 32 {
                    RowPlan::PerRow
                } else if rows < 256 && cols >= 16 * MIN_SEGMENT {
                    RowPlan::segmented(cols, cols / MIN_SEGMENT)
                } else {
                    RowPlan::Workgroup {
                        wg: workgroup_size(cols),
                    }
                }
            }
            RowStrategy::Auto | RowStrategy::Subgroup => {
                // A CPU-type adapter: invocations are SIMD lanes and workgroups are tasks, so
                // barriers are expensive and one invocation per row is best, split into
                // segments only when there are too few rows to occupy every lane.
                let want_segs = CPU_PARALLEL_INVOCATIONS.div_ceil(rows.max(1));
                let max_segs = cols / MIN_SEGMENT;
                if want_segs <= 1 || max_segs <= 1 {
                    RowPlan::PerRow
                } else {
                    RowPlan::segmented(cols, want_segs.min(max_segs))
                }
            }
        }
    }

    /// The plan for an operation that can hold a row in registers (softmax, class-index
    /// cross-entropy): one subgroup per row where the adapter has subgroups and the row fits,
    /// otherwise as [`RowPlan::choose`]. `short_rows_per_invocation`: on a CPU-type adapter,
    /// rows of at most CACHED_ROW_MAX floats are cheaper one per invocation (no cross-lane
    /// reduction) for this operation. Measured on lavapipe at [65536, 64]: forward softmax
    /// 74–76 % of the copy per invocation (its kernel holds the row) against 61–63 % per
    /// subgroup; cross-entropy 44 % against 33 % at 32 classes, equal at 64; the backward
    /// 64–74 % per invocation (which reads y and g twice) against 88–93 % per subgroup.
    pub fn choose_cached(
        gpu: &Gpu,
        strategy: RowStrategy,
        rows: usize,
        cols: usize,
        short_rows_per_invocation: bool,
    ) -> RowPlan {
        let plan = RowPlan::choose(gpu, strategy, rows, cols);
        let short = short_rows_per_invocation && !gpu.hardware && cols <= CACHED_ROW_MAX;
        match (strategy, RowPlan::subgroup_rows(gpu, cols)) {
            (RowStrategy::Subgroup, Some(sub)) => sub,
            (RowStrategy::Auto, Some(sub)) if !short => sub,
            _ => plan,
        }
        .within_loop_limit(gpu, cols)
    }

    /// One subgroup per row, if the adapter has subgroups and a vec4 row fits in the lanes'
    /// registers of the smallest subgroup.
    fn subgroup_rows(gpu: &Gpu, cols: usize) -> Option<RowPlan> {
        let sizes = gpu.subgroup_sizes?;
        if !cols.is_multiple_of(4) || cols == 0 {
            return None;
        }
        let lane_vec4s = vec4s(cols).div_ceil(sizes.min as usize);
        let cap = if gpu.hardware {
            LANE_CACHE_HARDWARE
        } else {
            LANE_CACHE
        };
        let wg = (4 * sizes.max).clamp(ROW_WG, 256).min(gpu.workgroup_cap());
        (lane_vec4s <= cap && wg >= sizes.max).then_some(RowPlan::SubgroupRows {
            lane_vec4s: lane_vec4s as u32,
            rows_per_wg: wg / sizes.max,
            wg,
        })
    }

    /// Invocations per workgroup of the plan's kernels.
    pub fn wg(self) -> u32 {
        match self {
            RowPlan::Workgroup { wg } | RowPlan::SubgroupRows { wg, .. } => wg,
            _ => ROW_WG,
        }
    }

    /// The override constants of the plan's kernels for rows of `cols` floats: `WG`, and the
    /// register-cache sizes of the cached kernels.
    pub fn constants(self, cols: usize) -> Vec<(&'static str, f64)> {
        let mut constants = vec![("WG", f64::from(self.wg()))];
        match self {
            RowPlan::PerRowCached => constants.push(("ROW_VEC4S", vec4s(cols) as f64)),
            RowPlan::SubgroupRows {
                lane_vec4s,
                rows_per_wg,
                ..
            } => {
                constants.push(("LANE_VEC4S", f64::from(lane_vec4s)));
                constants.push(("SUBGROUP_ROWS", f64::from(rows_per_wg)));
            }
            _ => {}
        }
        constants
    }

    /// Workgroups a launch needs for `width` rows (or, for segments, row segments).
    pub fn groups(self, width: usize) -> u64 {
        let width = width as u64;
        match self {
            RowPlan::Workgroup { .. } => width,
            RowPlan::SubgroupRows { rows_per_wg, .. } => width.div_ceil(u64::from(rows_per_wg)),
            _ => width.div_ceil(u64::from(self.wg())),
        }
    }

    /// One plan of each kind (for tests that enumerate kernels).
    #[cfg(test)]
    pub fn examples() -> [RowPlan; 5] {
        [
            RowPlan::PerRow,
            RowPlan::PerRowCached,
            RowPlan::Segmented {
                seg_len: 1024,
                segs: 2,
            },
            RowPlan::Workgroup { wg: 64 },
            RowPlan::SubgroupRows {
                lane_vec4s: 8,
                rows_per_wg: 8,
                wg: 64,
            },
        ]
    }

    /// One workgroup per row, sized for `cols` and capped by the device.
    pub fn workgroup(gpu: &Gpu, cols: usize) -> RowPlan {
        RowPlan::Workgroup {
            wg: workgroup_size(cols).min(gpu.workgroup_cap()),
        }
    }

    /// About `segs` segments per row, each a multiple of 4 elements long.
    fn segmented(cols: usize, segs: usize) -> RowPlan {
        let seg_len = (vec4s(cols.div_ceil(segs.max(1))) * VEC4).max(VEC4);
        RowPlan::Segmented {
            seg_len,
            segs: cols.div_ceil(seg_len).max(1),
        }
    }
}

/// A power of two between 32 and 256, about a quarter of the row (each invocation takes 4).
fn workgroup_size(cols: usize) -> u32 {
    (vec4s(cols).next_power_of_two()).clamp(32, 256) as u32
}

/// A run of whole rows that fits one storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowBlock {
    /// First row of the block.
    pub row0: usize,
    /// Rows in the block.
    pub rows: usize,
    /// Element at which the binding starts (aligned for the device).
    pub bind_start: usize,
    /// Elements bound: from `bind_start` to the end of the block's last row.
    pub bind_len: usize,
    /// Offset of the block's first row within the binding, in elements.
    pub base: usize,
}

/// Splits `rows × cols` into blocks of whole rows, each within one storage binding of `gpu`
/// and within one buffer of each of `tensors`. `per_row_extra` bounds rows further (e.g.
/// per-row scratch that must fit a binding too).
pub(crate) fn row_blocks(
    gpu: &Gpu,
    op: &'static str,
    rows: usize,
    cols: usize,
    per_row_extra: usize,
    tensors: &[&crate::tensor::Tensor],
) -> Result<Vec<RowBlock>> {
    let binding_bytes = gpu.max_binding;
    let max_elems = layout::elements_in(binding_bytes);
    let storage = tensors.first().map_or(layout::DType::F32, |t| t.dtype());
    let align = layout::offset_alignment_elements_of(&gpu.limits, storage);
    if cols + align > max_elems {
        return Err(Error::TooLarge {
            op,
            requested: layout::bytes(cols),
            limit: binding_bytes,
            unit: crate::Unit::Bytes,
            what: "max_storage_buffer_binding_size (one row)",
        });
    }
    let mut blocks = Vec::new();
    let mut row0 = 0;
    while row0 < rows {
        let bind_start = (row0 * cols) / align * align;
        let base = row0 * cols - bind_start;
        let mut n = ((max_elems - base) / cols.max(1)).min(rows - row0);
        if let Some(cap) = max_elems.checked_div(per_row_extra) {
            n = n.min(cap);
        }
        let part_end = tensors
            .iter()
            .map(|t| t.part_end(row0 * cols))
            .min()
            .unwrap_or(usize::MAX);
        n = n.min(part_end.saturating_sub(row0 * cols) / cols.max(1));
        if n == 0 {
            return Err(Error::TooLarge {
                op,
                requested: layout::bytes(cols),
                limit: gpu.max_buffer,
                unit: crate::Unit::Bytes,
                what: "max_buffer_size (a row would cross two buffers of a tensor; tensors \
                       split over buffers keep rows whole for the last dimension they were made with)",
            });
        }
        blocks.push(RowBlock {
            row0,
            rows: n,
            bind_start,
            bind_len: base + n * cols,
            base,
        });
        row0 += n;
    }
    Ok(blocks)
}
