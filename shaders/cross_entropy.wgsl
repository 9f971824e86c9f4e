// Fused softmax cross-entropy, loss and gradient in one kernel, with PyTorch's semantics:
//   log p_j = z_j − M − log S  (M = max z, S = Σ e^{z − M}),  t'_j = (1 − ε)·t_j + ε/K,
//   class index y:  loss = (1 − ε)·(−w_y log p_y) + (ε/K)·Σ_c (−w_c log p_c),
//                   dz_j = scale·[(1 − ε)·w_y·(p_j − [j = y]) + (ε/K)·(W·p_j − w_j)],  W = Σ_c w_c;
//   probabilities t: loss = −Σ_c w_c t'_c log p_c,   dz_j = scale·(p_j·Σ_c w_c t'_c − w_j t'_j).
// Without weights w ≡ 1, so dz = scale·(p − t'). `scale` is 1/Σ w_y (or 1/N) for a mean, else 1.
// A row whose index is IGNORED gets zero loss and zero gradient. A row holding a NaN or a +∞, or
// of all −∞, gets NaN loss and gradient (as PyTorch), decided by bits (online_softmax.wgsl).
//
// Each row is read twice (an online max-and-sum pass, then a pass that writes the gradient and
// accumulates the row's loss) and written once; no softmax is stored. The loss is formed from
// sums of z − M so that a confident row's tiny loss keeps its relative accuracy: log S is taken
// as log1p of the sum of the terms below the maximum. The gradient may be
// written over the logits (z and dz bound to one buffer): every element is read before it is
// overwritten, by the same invocation. Per-row losses go to `row_loss`; the host sums them.
// `*_rows` use one invocation per row, `*_workgroup` one workgroup per row (with
// workgroup_max/workgroup_sum from the reduction file the root imports:
// cross_entropy_shared.wgsl or cross_entropy_subgroup.wgsl).
//! import online_softmax, grid

override WG: u32 = 64u;
override HAS_WEIGHT: bool = false;
// Whether ε > 0. A constant rather than a test of p.eps: a branch on a uniform value is still
// compiled as a masked branch on some adapters (lavapipe runs both sides for every element).
override SMOOTHING: bool = false;
// Whether the gradient overwrites the logits (binding 1) in place. WebGPU forbids binding one
// buffer range to two storage bindings of a dispatch where either is writable, so an in-place
// launch binds the logits once and a small buffer that is never written at binding 3.
override IN_PLACE: bool = false;


struct Params {
    // Rows in this launch.
    rows: u32,
    // Classes K.
    cols: u32,
    // Element offset of row 0 in the logits (and probability targets) binding.
    base: u32,
    // Index of row 0 in the class-index and loss arrays.
    row0: u32,
    // Label smoothing ε.
    eps: f32,
    // Gradient scale.
    scale: f32,
    // Σ_c w_c (K without weights).
    w_all: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> z1: array<f32>;
@group(0) @binding(1) var<storage, read_write> z4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> class_index: array<u32>;
@group(0) @binding(2) var<storage, read> t1: array<f32>;
@group(0) @binding(2) var<storage, read> t4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dz1: array<f32>;
@group(0) @binding(3) var<storage, read_write> dz4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(5) var<storage, read> w1: array<f32>;
@group(0) @binding(5) var<storage, read> w4: array<vec4<f32>>;

// ---- the gradient's stores: into dz, or over the logits (IN_PLACE) ----

fn put_dz1(i: u32, v: f32) {
    if IN_PLACE {
        z1[i] = v;
    } else {
        dz1[i] = v;
    }
}

fn put_dz4(i: u32, v: vec4<f32>) {
    if IN_PLACE {
        z4[i] = v;
    } else {
        dz4[i] = v;
    }
}

// ---- loads: the scalar ones read four at a time, masked at the row's end ----

fn load_z(i: u32, end: u32) -> vec4<f32> {
    var v = vec4(neg_inf());
    for (var k = 0u; k < 4u; k++) {
        if i + k < end {
            v[k] = z1[i + k];
        }
    }
    return v;
}

fn load_t(i: u32, end: u32) -> vec4<f32> {
    var v = vec4(0.0);
    for (var k = 0u; k < 4u; k++) {
        if i + k < end {
            v[k] = t1[i + k];
        }
    }
    return v;
}

fn store_dz(i: u32, end: u32, v: vec4<f32>) {
    for (var k = 0u; k < 4u; k++) {
        if i + k < end {
            put_dz1(i + k, v[k]);
        }
    }
}

// Class weights of classes c (1 without weights; 0 for classes past K).
fn weights(c: vec4<u32>) -> vec4<f32> {
    if !HAS_WEIGHT {
        return vec4(1.0);
    }
    var w = vec4(0.0);
    for (var k = 0u; k < 4u; k++) {
        if c[k] < p.cols {
            w[k] = w1[c[k]];
        }
    }
    return w;
}

fn weights_vec4(c4: u32) -> vec4<f32> {
    if !HAS_WEIGHT {
        return vec4(1.0);
    }
    return w4[c4];
}

fn weight_of(y: u32) -> f32 {
    if !HAS_WEIGHT || y == IGNORED {
        return 1.0;
    }
    return w1[y];
}

// The same from the vec4 view (an entry point may use only one view of a binding).
fn weight_of_vec4(y: u32) -> f32 {
    if !HAS_WEIGHT || y == IGNORED {
        return 1.0;
    }
    return w4[y / 4u][y % 4u];
}

// ---- the per-element terms ----

// What the gradient pass sums over a row, for the loss: the row's log-sum-exp is
// M + log(1 + rest + maxima − 1), which stays accurate when the softmax is nearly one-hot.
struct Sums {
    // Σ e^{z − M} over the elements below the maximum.
    rest: f32,
    // How many elements equal M.
    maxima: f32,
    // z_y − M (class-index targets).
    hit: f32,
    // Σ_c w_c (z_c − M) (class indices), or Σ_c w_c t'_c (z_c − M) (probabilities).
    weighted: f32,
}

fn sums_add(a: Sums, b: Sums) -> Sums {
    return Sums(a.rest + b.rest, a.maxima + b.maxima, a.hit + b.hit, a.weighted + b.weighted);
}

fn sums_empty() -> Sums {
    return Sums(0.0, 0.0, 0.0, 0.0);
}

struct Step {
    dz: vec4<f32>,
    sums: Sums,
}

// Whether d = z − M is ±0, i.e. z is the row's maximum (tested by bits, which no compiler folds).
fn at_row_max(d: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(d) & vec4(0x7fffffffu)) == vec4(0u);
}

// The one-hot term a·[c = y] of the vec4 of classes that holds class y.
fn one_hot_term(y: u32, a: f32) -> vec4<f32> {
    return select(vec4(0.0), vec4(a), vec4(y % 4u) == vec4(0u, 1u, 2u, 3u));
}

// e^{z − M} and the parts of the row sums common to both target kinds.
fn common_sums(d: vec4<f32>, e: vec4<f32>, valid: vec4<bool>) -> Sums {
    let at_max = at_row_max(d) & valid;
    let rest = hsum(select(e, vec4(0.0), at_max | !valid));
    let maxima = hsum(select(vec4(0.0), vec4(1.0), at_max));
    return Sums(rest, maxima, 0.0, 0.0);
}

// The loss sums of class-index target y over four classes c, with d = z − M and e = e^d.
fn index_sums(d: vec4<f32>, e: vec4<f32>, c: vec4<u32>, w: vec4<f32>, y: u32) -> Sums {
    let valid = c < vec4(p.cols);
    var sums = common_sums(d, e, valid);
    sums.hit = hsum(select(vec4(0.0), d, (c == vec4(y)) & valid));
    if SMOOTHING {
        sums.weighted = hsum(select(vec4(0.0), w * d, valid));
    }
    return sums;
}

// The gradient of four classes c with softmax probabilities `prob`, for class-index target y.
fn index_grad(prob: vec4<f32>, c: vec4<u32>, w: vec4<f32>, y: u32, w_y: f32) -> vec4<f32> {
    var dz = (1.0 - p.eps) * w_y * (prob - select(vec4(0.0), vec4(1.0), c == vec4(y)));
    if SMOOTHING {
        dz += p.eps / f32(p.cols) * (p.w_all * prob - w);
    }
    return p.scale * dz;
}

// Class-index target y for four classes c with logits v; (M, 1/S) from the first pass.
fn index_step(v: vec4<f32>, c: vec4<u32>, w: vec4<f32>, y: u32, w_y: f32, k: vec2<f32>) -> Step {
    let d = v - k.x;
    let e = exp(d);
    return Step(index_grad(e * k.y, c, w, y, w_y), index_sums(d, e, c, w, y));
}

fn index_loss(s: Sums, w_y: f32) -> f32 {
    let log_s = log1p_pos(s.rest + (s.maxima - 1.0));
    var loss = (1.0 - p.eps) * w_y * (log_s - s.hit);
    if SMOOTHING {
        loss += p.eps / f32(p.cols) * (p.w_all * log_s - s.weighted);
    }
    return loss;
}

// Probability targets t for four classes; a = Σ_c w_c t'_c of the row.
fn prob_step(v: vec4<f32>, t: vec4<f32>, w: vec4<f32>, valid: vec4<bool>, a: f32, k: vec2<f32>) -> Step {
    let d = v - k.x;
    let e = exp(d);
    let t_s = (1.0 - p.eps) * t + p.eps / f32(p.cols);
    var sums = common_sums(d, e, valid);
    sums.weighted = hsum(select(vec4(0.0), w * t_s * d, valid));
    return Step(p.scale * (e * k.y * a - w * t_s), sums);
}

fn prob_loss(s: Sums, a: f32) -> f32 {
    return a * log1p_pos(s.rest + (s.maxima - 1.0)) - s.weighted;
}

fn smoothed_weight(t: vec4<f32>, w: vec4<f32>, valid: vec4<bool>) -> f32 {
    let t_s = (1.0 - p.eps) * t + p.eps / f32(p.cols);
    return hsum(select(vec4(0.0), w * t_s, valid));
}

// (M, 1/S) of a finished first pass (S is never 0 but for a NaN row, whose 1/S goes unused).
fn max_and_inverse(st: Online) -> vec2<f32> {
    return vec2(st.m, 1.0 / select(st.s, 1.0, online_nan_row(st)));
}

// What a row stores: 0 for an ignored row, NaN for a NaN row, v otherwise.
fn row_dz(dz: vec4<f32>, ignored: bool, nan_row: bool) -> vec4<f32> {
    return select(select(dz, vec4(nan_f32()), nan_row), vec4(0.0), ignored);
}

fn row_value(v: f32, ignored: bool, nan_row: bool) -> f32 {
    return select(select(v, nan_f32(), nan_row), 0.0, ignored);
}

fn classes(first: u32) -> vec4<u32> {
    return vec4(first) + vec4(0u, 1u, 2u, 3u);
}


// ---- class indices, one invocation per row ----

@compute @workgroup_size(WG)
fn index_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let r = invocation_index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let b = p.base + r * p.cols;
    let end = b + p.cols;
    let y = class_index[p.row0 + r];
    var st = online_empty();
    for (var i = b; i < end; i += 4u) {
        st = online_push(st, load_z(i, end));
    }
    let k = max_and_inverse(st);
    let nan_row = online_nan_row(st);
    let w_y = weight_of(y);
    var sums = sums_empty();
    for (var i = b; i < end; i += 4u) {
        let c = classes(i - b);
        let step = index_step(load_z(i, end), c, weights(c), y, w_y, k);
        store_dz(i, end, row_dz(step.dz, y == IGNORED, nan_row));
        sums = sums_add(sums, step.sums);
    }
    row_loss[p.row0 + r] = row_value(index_loss(sums, w_y), y == IGNORED, nan_row);
}

@compute @workgroup_size(WG)
fn index_rows_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let r = invocation_index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let b = (p.base + r * p.cols) / 4u;
    let end = b + p.cols / 4u;
    let y = class_index[p.row0 + r];
    var st = online_empty();
    for (var i = b; i < end; i++) {
        st = online_push(st, z4[i]);
    }
    let k = max_and_inverse(st);
    let w_y = weight_of_vec4(y);
    if y == IGNORED || online_nan_row(st) {
        let fill = row_value(0.0, y == IGNORED, true);
        for (var i = b; i < end; i++) {
            put_dz4(i, vec4(fill));
        }
        row_loss[p.row0 + r] = fill;
        return;
    }
    var sums = sums_empty();
    if SMOOTHING {
        for (var i = b; i < end; i++) {
            let step = index_step(z4[i], classes(4u * (i - b)), weights_vec4(i - b), y, w_y, k);
            put_dz4(i, step.dz);
            sums = sums_add(sums, step.sums);
        }
    } else {
        // index_step with ε = 0, arranged to cost least per element: z_y − M read once (before
        // an in-place gradient overwrites it), the one-hot term only in the vec4 holding y,
        // the rest and maxima summed as vec4s.
        sums.hit = z4[b + y / 4u][y % 4u] - k.x;
        let a = p.scale * w_y;
        let a_inv_s = a * k.y;
        let one_hot = one_hot_term(y, a);
        let i_y = b + y / 4u;
        var rest = vec4(0.0);
        var maxima = vec4(0.0);
        for (var i = b; i < end; i++) {
            let z = z4[i];
            let d = z - k.x;
            let e = exp(d);
            let at_max = at_row_max(d);
            rest += select(e, vec4(0.0), at_max);
            maxima += select(vec4(0.0), vec4(1.0), at_max);
            put_dz4(i, e * a_inv_s - select(vec4(0.0), one_hot, i == i_y));
        }
        sums.rest = hsum(rest);
        sums.maxima = hsum(maxima);
    }
    row_loss[p.row0 + r] = index_loss(sums, w_y);
}

// ---- probabilities, one invocation per row ----

@compute @workgroup_size(WG)
fn prob_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let r = invocation_index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let b = p.base + r * p.cols;
    let end = b + p.cols;
    var st = online_empty();
    var a = 0.0;
    for (var i = b; i < end; i += 4u) {
        let c = classes(i - b);
        st = online_push(st, load_z(i, end));
        a += smoothed_weight(load_t(i, end), weights(c), c < vec4(p.cols));
    }
    let k = max_and_inverse(st);
    let nan_row = online_nan_row(st);
    var sums = sums_empty();
    for (var i = b; i < end; i += 4u) {
        let c = classes(i - b);
        let step = prob_step(load_z(i, end), load_t(i, end), weights(c), c < vec4(p.cols), a, k);
        store_dz(i, end, row_dz(step.dz, false, nan_row));
        sums = sums_add(sums, step.sums);
    }
    row_loss[p.row0 + r] = row_value(prob_loss(sums, a), false, nan_row);
}

@compute @workgroup_size(WG)
fn prob_rows_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let r = invocation_index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let b = (p.base + r * p.cols) / 4u;
    let end = b + p.cols / 4u;
    let all = vec4(true);
    var st = online_empty();
    var a = 0.0;
    for (var i = b; i < end; i++) {
        st = online_push(st, z4[i]);
        a += smoothed_weight(t4[i], weights_vec4(i - b), all);
    }
    let k = max_and_inverse(st);
    let nan_row = online_nan_row(st);
    var sums = sums_empty();
    for (var i = b; i < end; i++) {
        let step = prob_step(z4[i], t4[i], weights_vec4(i - b), all, a, k);
        put_dz4(i, row_dz(step.dz, false, nan_row));
        sums = sums_add(sums, step.sums);
    }
    row_loss[p.row0 + r] = row_value(prob_loss(sums, a), false, nan_row);
}

// ---- one workgroup per row ----

// The row's state from every invocation's: M and the NaN flag in one reduction, then S.
fn workgroup_online(st: Online, lid: u32) -> Online {
    let m = workgroup_max2(vec2(st.m, 0.0), lid).x;
    let st_ = workgroup_sum2(vec2(rescale(st.s, st.m, m), hsum(st.t)), lid);
    return online_marked(m, st_.x, row_nan(st_.y));
}

fn workgroup_sums(s: Sums, lid: u32) -> Sums {
    let a = workgroup_sum2(vec2(s.rest, s.maxima), lid);
    let b = workgroup_sum2(vec2(s.hit, s.weighted), lid);
    return Sums(a.x, a.y, b.x, b.y);
}

@compute @workgroup_size(WG)
fn index_workgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wid, nwg);
    // The same branch for the whole workgroup, so the barriers below stay uniform.
    if r >= p.rows {
        return;
    }
    let b = p.base + r * p.cols;
    let end = b + p.cols;
    let y = class_index[p.row0 + r];
    var st = online_empty();
    for (var i = b + 4u * lid; i < end; i += 4u * WG) {
        st = online_push(st, load_z(i, end));
    }
    let row = workgroup_online(st, lid);
    let k = max_and_inverse(row);
    let nan_row = online_nan_row(row);
    let w_y = weight_of(y);
    var sums = sums_empty();
    for (var i = b + 4u * lid; i < end; i += 4u * WG) {
        let c = classes(i - b);
        let step = index_step(load_z(i, end), c, weights(c), y, w_y, k);
        store_dz(i, end, row_dz(step.dz, y == IGNORED, nan_row));
        sums = sums_add(sums, step.sums);
    }
    sums = workgroup_sums(sums, lid);
    if lid == 0u {
        row_loss[p.row0 + r] = row_value(index_loss(sums, w_y), y == IGNORED, nan_row);
    }
}

@compute @workgroup_size(WG)
fn prob_workgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wid, nwg);
    if r >= p.rows {
        return;
    }
    let b = p.base + r * p.cols;
    let end = b + p.cols;
    var st = online_empty();
    var a = 0.0;
    for (var i = b + 4u * lid; i < end; i += 4u * WG) {
        let c = classes(i - b);
        st = online_push(st, load_z(i, end));
        a += smoothed_weight(load_t(i, end), weights(c), c < vec4(p.cols));
    }
    let row = workgroup_online(st, lid);
    let k = max_and_inverse(row);
    let nan_row = online_nan_row(row);
    a = workgroup_sum2(vec2(a, 0.0), lid).x;
    var sums = sums_empty();
    for (var i = b + 4u * lid; i < end; i += 4u * WG) {
        let c = classes(i - b);
        let step = prob_step(load_z(i, end), load_t(i, end), weights(c), c < vec4(p.cols), a, k);
        store_dz(i, end, row_dz(step.dz, false, nan_row));
        sums = sums_add(sums, step.sums);
    }
    sums = workgroup_sums(sums, lid);
    if lid == 0u {
        row_loss[p.row0 + r] = row_value(prob_loss(sums, a), false, nan_row);
    }
}
