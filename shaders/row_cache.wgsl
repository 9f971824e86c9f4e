// A row held in registers by one subgroup: lane l holds the row's vec4s l, l + S, l + 2S, …
// (S the subgroup size), at most PARTS·PART of them, in PARTS arrays of PART so that every
// loop over them has a short trip count fixed at pipeline creation and unrolls (a compiler
// leaves longer loops rolled, and a rolled loop indexes the array dynamically, out of
// registers: lavapipe unrolls 24 iterations of softmax's loop body but not 16 of the
// cross-entropy's).
// Appended by the host to the `*_subgroup_rows.wgsl` kernels, which declare LANE_VEC4S (vec4s
// per lane, at most PARTS·PART) and `row_load(i)`, the row's vec4 at index i of its binding.

const PART: u32 = 8u;
const PARTS: u32 = 4u;

alias Part = array<vec4<f32>, PART>;

// vec4s in part h of the lane's cache.
fn part_count(h: u32) -> u32 {
    return min(LANE_VEC4S, (h + 1u) * PART) - min(LANE_VEC4S, h * PART);
}

// Index within the row (in vec4s) of slot k of part h of this lane.
fn cached_index(h: u32, k: u32, lane: u32, size: u32) -> u32 {
    return lane + (h * PART + k) * size;
}

// Loads part h of this lane's share of a row (first vec4 b, n vec4s; −∞ past the end) and
// returns that part's maximum.
fn load_part(c: ptr<function, Part>, h: u32, b: u32, n: u32, lane: u32, size: u32) -> f32 {
    var m = neg_inf();
    for (var k = 0u; k < part_count(h); k++) {
        let j = cached_index(h, k, lane, size);
        (*c)[k] = vec4(neg_inf());
        if j < n {
            (*c)[k] = row_load(b + j);
        }
        m = max(m, hmax((*c)[k]));
    }
    return m;
}
