// Row-wise softmax y_i = e^{x_i − M} / S and log-softmax y_i = x_i − M − log S, where
// M = max_j x_j and S = Σ_j e^{x_j − M}; backward dx = y ⊙ (g − Σ_j g_j y_j) for softmax and
// dx = g − e^y · Σ_j g_j for log-softmax (from the saved output y).
//
// A row is `cols` consecutive floats starting at element `base + r·cols` of the bound arrays.
// Three ways to cover a row, chosen by the host per shape and adapter:
//   *_rows       one invocation per row: an online max-and-sum pass, then a normalising pass;
//   *_partials + *_finish (segments): one invocation per (row, segment); the first launch
//                writes each segment's partial (max, sum) or Σ, the second combines the row's
//                partials and normalises its segment (for few, long rows);
//   *_workgroup  one workgroup per row, reducing through `workgroup_max2`/`workgroup_sum2`,
//                which come from row_reduce_shared.wgsl or row_reduce_subgroup.wgsl (the root,
//                softmax_shared.wgsl or softmax_subgroup.wgsl, imports one of them).
// The `_vec4` variants need cols and base divisible by 4; the others read scalars four at a time.
// The `_vec4` variants read and write through the storage codec (f32, f16 or bf16 storage:
// storage_*.wgsl, one composed into the module), computing in f32; the scalar ones are f32 only.
//
// Edge semantics (as PyTorch), decided by bits on every implementation: NaN anywhere in a row,
// a +∞, or a row of all −∞ gives a NaN row; −∞ entries of an otherwise finite row give 0 (−∞
// for log-softmax). Backward: a NaN in g (or, for softmax, in y) makes the row's dx NaN; for
// log-softmax a NaN y gives NaN and a −∞ y gives e^y = 0 at its own element. The online state
// and its guards are in online_softmax.wgsl.
//! import online_softmax, grid

override WG: u32 = 64u;
override LOG: bool = false;
// vec4s per row for `forward_rows_cached` (cols / 4, at most ROW_CACHE).
override ROW_VEC4S: u32 = 16u;

struct Params {
    // Rows in this launch.
    rows: u32,
    // Elements per row.
    cols: u32,
    // Element offset of row 0 in the bound arrays.
    base: u32,
    // Elements per segment (segment kernels; a multiple of 4).
    seg_len: u32,
    // Segments per row in this launch (segment kernels).
    segs: u32,
    // Where this launch's partials sit among a row's: a row longer than one binding is
    // covered by several launches, each binding a window of whole segments. Partial j of
    // row r is part[(part_row + r)·segs_total + seg0 + j]; one launch per row has seg0 = 0,
    // part_row = 0 and segs_total = segs.
    seg0: u32,
    segs_total: u32,
    part_row: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x1: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<Stored4>;
@group(0) @binding(2) var<storage, read> g1: array<f32>;
@group(0) @binding(2) var<storage, read> g4: array<Stored4>;
@group(0) @binding(3) var<storage, read_write> y1: array<f32>;
@group(0) @binding(3) var<storage, read_write> y4: array<Stored4>;
// Per-segment partials: (max, sum) pairs forward, Σ backward.
@group(0) @binding(4) var<storage, read_write> part: array<f32>;

// What normalises a row: M, and 1/S for softmax or log S for log-softmax, and whether the
// row's outputs are all NaN.
struct Norm {
    m: f32,
    k: f32,
    nan_row: bool,
}

fn finish(st: Online) -> Norm {
    let nan_row = online_nan_row(st);
    // S is at least 1 for a row that is not NaN; the NaN row's S is never used.
    let s = select(st.s, 1.0, nan_row);
    if LOG {
        return Norm(st.m, log(s), nan_row);
    }
    return Norm(st.m, 1.0 / s, nan_row);
}

fn normalise(v: vec4<f32>, n: Norm) -> vec4<f32> {
    var y: vec4<f32>;
    if LOG {
        y = select((v - n.m) - n.k, vec4(neg_inf()), is_neg_inf4(v));
    } else {
        y = exp(v - n.m) * n.k;
    }
    return select(y, vec4(nan_f32()), n.nan_row);
}

// ---- backward pieces ----

// The per-element term of the row sum: g·y for softmax, g for log-softmax.
fn dot_term(y: vec4<f32>, g: vec4<f32>) -> f32 {
    if LOG {
        return hsum(g);
    }
    return hsum(g * y);
}

// dx from y, g and the row sum d; all NaN when `nan_row` (the sum is NaN: a NaN among its
// terms, which the arithmetic carries into it).
fn grad(y: vec4<f32>, g: vec4<f32>, d: f32, nan_row: bool) -> vec4<f32> {
    var dx: vec4<f32>;
    if LOG {
        // e^y taken only of finite y: 0 for −∞ (NaN is routed below), by bits.
        let finite = is_finite4(y);
        let e = select(vec4(0.0), exp(select(vec4(0.0), y, finite)), finite);
        dx = select(g - e * d, vec4(nan_f32()), is_nan4(y));
    } else {
        dx = y * (g - d);
    }
    return select(dx, vec4(nan_f32()), nan_row);
}

// ---- scalar loads four at a time, masked at the row's end ----

// x1[i..i+4], with `fill` in the lanes at or past `end`.
fn load_x_or(i: u32, end: u32, fill: f32) -> vec4<f32> {
    var v = vec4(fill);
    for (var k = 0u; k < 4u; k++) {
        if i + k < end {
            v[k] = x1[i + k];
        }
    }
    return v;
}

// Forward input: masked lanes are −∞, which the online state ignores.
fn load_x(i: u32, end: u32) -> vec4<f32> {
    return load_x_or(i, end, neg_inf());
}

fn load_g(i: u32, end: u32) -> vec4<f32> {
    var v = vec4(0.0);
    for (var k = 0u; k < 4u; k++) {
        if i + k < end {
            v[k] = g1[i + k];
        }
    }
    return v;
}

// In backward kernels x1 holds the saved output y; masked lanes read as 0.
fn load_y(i: u32, end: u32) -> vec4<f32> {
    return load_x_or(i, end, 0.0);
}

fn store(i: u32, end: u32, v: vec4<f32>) {
    for (var k = 0u; k < 4u; k++) {
        if i + k < end {
            y1[i + k] = v[k];
        }
    }
}

// ---- indexing ----

fn row_start(r: u32) -> u32 {
    return p.base + r * p.cols;
}

// ---- forward: one invocation per row ----

@compute @workgroup_size(WG)
fn forward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let r = invocation_index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let b = row_start(r);
    let end = b + p.cols;
    var st = online_empty();
    for (var i = b; i < end; i += 4u) {
        st = online_push(st, load_x(i, end));
    }
    let n = finish(st);
    for (var i = b; i < end; i += 4u) {
        store(i, end, normalise(load_x(i, end), n));
    }
}

@compute @workgroup_size(WG)
fn forward_rows_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let r = invocation_index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let b = row_start(r) / 4u;
    let end = b + p.cols / 4u;
    var st = online_empty();
    for (var i = b; i < end; i++) {
        st = online_push(st, load4(x4[i]));
    }
    let n = finish(st);
    for (var i = b; i < end; i++) {
        y4[i] = store4(normalise(load4(x4[i]), n));
    }
}

// One invocation per short row (cols ≤ 4·ROW_CACHE, a multiple of 4), the row read from device
// memory once into a private array with a trip count fixed at pipeline creation (so the
// compiler can keep it in registers): max, then e = e^{x − M} and S, then the output.
@compute @workgroup_size(WG)
fn forward_rows_cached(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let r = invocation_index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let b = row_start(r) / 4u;
    var row: array<vec4<f32>, ROW_CACHE>;
    var m = neg_inf();
    for (var j = 0u; j < ROW_VEC4S; j++) {
        row[j] = load4(x4[b + j]);
        m = max(m, hmax(row[j]));
    }
    // Keeps x − M (exact for the row's values near M) for log-softmax, e for softmax: the
    // output is then (x − M) − log S, never x − (M + log S), whose sum would round to the
    // ulp of M (1e-3 at M = 1e4).
    var s = 0.0;
    var t = vec4(0.0);
    for (var j = 0u; j < ROW_VEC4S; j++) {
        let d = row[j] - m;
        let e = exp(d);
        s += hsum(e);
        t += d;
        if LOG {
            row[j] = select(d, vec4(neg_inf()), is_neg_inf4(row[j]));
        } else {
            row[j] = e;
        }
    }
    let n = finish(Online(m, s, t));
    let nan = vec4(nan_f32());
    for (var j = 0u; j < ROW_VEC4S; j++) {
        if LOG {
            y4[b + j] = store4(select(row[j] - n.k, nan, n.nan_row));
        } else {
            y4[b + j] = store4(select(row[j] * n.k, nan, n.nan_row));
        }
    }
}

// ---- forward: segments ----

// (row, segment) of this invocation, and the segment's [start, end) in elements.
fn segment(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> vec4<u32> {
    let t = invocation_index(wid, nwg, lid);
    let r = t / p.segs;
    let s = t % p.segs;
    let b = row_start(r) + s * p.seg_len;
    let end = min(b + p.seg_len, row_start(r) + p.cols);
    return vec4(r, s, b, end);
}

// Index of this launch's partial `s` of row `r`.
fn part_index(r: u32, s: u32) -> u32 {
    return (p.part_row + r) * p.segs_total + p.seg0 + s;
}

// Every partial of row `r`, in all windows.
fn row_online(r: u32) -> Online {
    var st = online_empty();
    let first = (p.part_row + r) * p.segs_total;
    for (var s = 0u; s < p.segs_total; s++) {
        let i = 2u * (first + s);
        st = online_merge(st, online_from_partial(part[i], part[i + 1u]));
    }
    return st;
}

fn write_partial(seg: vec4<u32>, st: Online) {
    let o = 2u * part_index(seg.x, seg.y);
    part[o] = st.m;
    part[o + 1u] = mark_partial(st.s, online_nan_row(st));
}

@compute @workgroup_size(WG)
fn forward_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let seg = segment(wid, nwg, lid);
    if seg.x >= p.rows {
        return;
    }
    var st = online_empty();
    for (var i = seg.z; i < seg.w; i += 4u) {
        st = online_push(st, load_x(i, seg.w));
    }
    write_partial(seg, st);
}

@compute @workgroup_size(WG)
fn forward_partials_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let seg = segment(wid, nwg, lid);
    if seg.x >= p.rows {
        return;
    }
    var st = online_empty();
    for (var i = seg.z / 4u; i < seg.w / 4u; i++) {
        st = online_push(st, load4(x4[i]));
    }
    write_partial(seg, st);
}

@compute @workgroup_size(WG)
fn forward_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let seg = segment(wid, nwg, lid);
    if seg.x >= p.rows {
        return;
    }
    let n = finish(row_online(seg.x));
    for (var i = seg.z; i < seg.w; i += 4u) {
        store(i, seg.w, normalise(load_x(i, seg.w), n));
    }
}

@compute @workgroup_size(WG)
fn forward_finish_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let seg = segment(wid, nwg, lid);
    if seg.x >= p.rows {
        return;
    }
    let n = finish(row_online(seg.x));
    for (var i = seg.z / 4u; i < seg.w / 4u; i++) {
        y4[i] = store4(normalise(load4(x4[i]), n));
    }
}

// ---- forward: one workgroup per row ----

// The row's state from every invocation's: M and the NaN flag in one reduction, then S.
fn workgroup_online(st: Online, lid: u32) -> Online {
    let m = workgroup_max2(vec2(st.m, 0.0), lid).x;
    let st_ = workgroup_sum2(vec2(rescale(st.s, st.m, m), hsum(st.t)), lid);
    return online_marked(m, st_.x, row_nan(st_.y));
}

@compute @workgroup_size(WG)
fn forward_workgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wid, nwg);
    // Every invocation of a workgroup takes the same branch, so barriers stay uniform.
    if r >= p.rows {
        return;
    }
    let b = row_start(r);
    let end = b + p.cols;
    var st = online_empty();
    for (var i = b + 4u * lid; i < end; i += 4u * WG) {
        st = online_push(st, load_x(i, end));
    }
    let n = finish(workgroup_online(st, lid));
    for (var i = b + 4u * lid; i < end; i += 4u * WG) {
        store(i, end, normalise(load_x(i, end), n));
    }
}

// ---- backward: one invocation per row ----

@compute @workgroup_size(WG)
fn backward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let r = invocation_index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let b = row_start(r);
    let end = b + p.cols;
    var d = 0.0;
    for (var i = b; i < end; i += 4u) {
        d += dot_term(load_y(i, end), load_g(i, end));
    }
    let nan_row = is_nan1(d);
    for (var i = b; i < end; i += 4u) {
        store(i, end, grad(load_y(i, end), load_g(i, end), d, nan_row));
    }
}

@compute @workgroup_size(WG)
fn backward_rows_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let r = invocation_index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let b = row_start(r) / 4u;
    let end = b + p.cols / 4u;
    var d = 0.0;
    for (var i = b; i < end; i++) {
        d += dot_term(load4(x4[i]), load4(g4[i]));
    }
    let nan_row = is_nan1(d);
    for (var i = b; i < end; i++) {
        y4[i] = store4(grad(load4(x4[i]), load4(g4[i]), d, nan_row));
    }
}

// ---- backward: segments ----

// The row sum over every partial.
fn row_dot(r: u32) -> f32 {
    var d = 0.0;
    let first = (p.part_row + r) * p.segs_total;
    for (var s = 0u; s < p.segs_total; s++) {
        d += part[first + s];
    }
    return d;
}

@compute @workgroup_size(WG)
fn backward_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let seg = segment(wid, nwg, lid);
    if seg.x >= p.rows {
        return;
    }
    var d = 0.0;
    for (var i = seg.z; i < seg.w; i += 4u) {
        d += dot_term(load_y(i, seg.w), load_g(i, seg.w));
    }
    part[part_index(seg.x, seg.y)] = d;
}

@compute @workgroup_size(WG)
fn backward_partials_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let seg = segment(wid, nwg, lid);
    if seg.x >= p.rows {
        return;
    }
    var d = 0.0;
    for (var i = seg.z / 4u; i < seg.w / 4u; i++) {
        d += dot_term(load4(x4[i]), load4(g4[i]));
    }
    part[part_index(seg.x, seg.y)] = d;
}

@compute @workgroup_size(WG)
fn backward_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let seg = segment(wid, nwg, lid);
    if seg.x >= p.rows {
        return;
    }
    let d = row_dot(seg.x);
    for (var i = seg.z; i < seg.w; i += 4u) {
        store(i, seg.w, grad(load_y(i, seg.w), load_g(i, seg.w), d, is_nan1(d)));
    }
}

@compute @workgroup_size(WG)
fn backward_finish_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let seg = segment(wid, nwg, lid);
    if seg.x >= p.rows {
        return;
    }
    let d = row_dot(seg.x);
    for (var i = seg.z / 4u; i < seg.w / 4u; i++) {
        y4[i] = store4(grad(load4(x4[i]), load4(g4[i]), d, is_nan1(d)));
    }
}

// ---- backward: one workgroup per row ----

@compute @workgroup_size(WG)
fn backward_workgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wid, nwg);
    if r >= p.rows {
        return;
    }
    let b = row_start(r);
    let end = b + p.cols;
    var d = 0.0;
    for (var i = b + 4u * lid; i < end; i += 4u * WG) {
        d += dot_term(load_y(i, end), load_g(i, end));
    }
    d = workgroup_sum2(vec2(d, 0.0), lid).x;
    for (var i = b + 4u * lid; i < end; i += 4u * WG) {
        store(i, end, grad(load_y(i, end), load_g(i, end), d, is_nan1(d)));
    }
}
