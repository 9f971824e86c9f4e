// A row held in registers by one subgroup: lane l holds the row's vec4s j = l + i·S, i = 0, 1, …
// (S the subgroup size), at most PARTS·PART of them, in PARTS arrays of PART so that every
// loop over them has a short trip count fixed at pipeline creation and unrolls (a compiler
// leaves longer loops rolled, and a rolled loop indexes the array dynamically, out of
// registers: lavapipe unrolls 24 iterations of softmax's loop body but not 16 of the
// cross-entropy's). Imported by the `*_subgroup_rows.wgsl` kernels, which declare
// `row_load(i)`, the row's vec4 at index i of its binding, and a `p.rows`.
//! import online_softmax
//! requires subgroups

// vec4s each lane holds (at most PARTS·PART), and rows (subgroups) per workgroup: both fixed at
// pipeline creation.
override LANE_VEC4S: u32 = 8u;
override SUBGROUP_ROWS: u32 = 8u;

const PART: u32 = LANE_PART;
const PARTS: u32 = LANE_PARTS;

alias Part = array<vec4<f32>, PART>;

// Where a lane's share lies: the row's first vec4 `b` in its binding, its `n` vec4s, the lane
// and the subgroup size.
struct LaneSpan {
    b: u32,
    n: u32,
    lane: u32,
    size: u32,
}

// The built-in inputs of every subgroup-per-row entry point.
struct SubgroupIds {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) size: u32,
}

const NO_ROW: u32 = 0xffffffffu;

// The row of this subgroup, or NO_ROW for a subgroup past SUBGROUP_ROWS or past the launch's
// rows. The same for every lane of a subgroup, but a compiler cannot prove it (`subgroup_id`
// is not uniform to its analysis): kernels never branch on it around subgroup operations, they
// run them with an empty span (`lane_span`) and skip the stores.
fn subgroup_row(ids: SubgroupIds) -> u32 {
    let r = (ids.wid.y * ids.nwg.x + ids.wid.x) * SUBGROUP_ROWS + ids.sg;
    return select(r, NO_ROW, (ids.sg >= SUBGROUP_ROWS) | (r >= p.rows));
}

// This lane's span of row r, `cols` floats starting at element `start` (both divisible by 4);
// empty for NO_ROW.
fn lane_span(ids: SubgroupIds, r: u32, start: u32, cols: u32) -> LaneSpan {
    let live = r != NO_ROW;
    return LaneSpan(select(0u, start / 4u, live), select(0u, cols / 4u, live), ids.lane, ids.size);
}

// vec4s in part h of the lane's cache.
fn part_count(h: u32) -> u32 {
    return min(LANE_VEC4S, (h + 1u) * PART) - min(LANE_VEC4S, h * PART);
}

// Index within the row (in vec4s) of slot k of part h of this lane.
fn cached_index(h: u32, k: u32, s: LaneSpan) -> u32 {
    return s.lane + (h * PART + k) * s.size;
}

// Loads part h of this lane's share of the row (−∞ past its end); returns that part's maximum.
fn load_part(c: ptr<function, Part>, h: u32, s: LaneSpan) -> f32 {
    var m = neg_inf();
    for (var k = 0u; k < part_count(h); k++) {
        let j = cached_index(h, k, s);
        (*c)[k] = vec4(neg_inf());
        if j < s.n {
            (*c)[k] = row_load(s.b + j);
        }
        m = max(m, hmax((*c)[k]));
    }
    return m;
}

// Loads this lane's share of the row into its four parts and returns the row's maximum M (over
// the subgroup). The parts are separate variables: naga cannot pass a pointer to a member of a
// struct or array variable to a function when writing SPIR-V. The kernels take the row's NaN
// verdict from Σ (x − M) as they go over the parts again (online_softmax.wgsl, `row_nan`).
fn load_row(c0: ptr<function, Part>, c1: ptr<function, Part>, c2: ptr<function, Part>,
            c3: ptr<function, Part>, s: LaneSpan) -> f32 {
    return subgroupMax(max(max(load_part(c0, 0u, s), load_part(c1, 1u, s)),
                           max(load_part(c2, 2u, s), load_part(c3, 3u, s))));
}
