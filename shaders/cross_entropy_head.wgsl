// Softmax cross-entropy of an LLM head with Liger-Kernel's options, for class-index targets,
// loss and gradient in one fused kernel (one invocation per row, the row read twice):
//   softcap c:  z' = c·tanh(z/c)  (z' = z without it),   ∂z'/∂z = 1 − (z'/c)²
//   lse = M + log S of z' (M = max z', S = Σ e^{z' − M}),  p_j = e^{z'_j − lse}
//   loss_r   = (1 − ε)·w_y·(lse − z'_y) + (ε/K)·Σ_c w_c·(lse − z'_c) + s·lse²
//   z_loss_r = s·lse²                                            (s = lse_square_scale)
//   dz_j = scale·[(1 − ε)·w_y·(p_j − [j = y]) + (ε/K)·(W·p_j − w_j) + 2s·lse·p_j]·∂z'/∂z_j
// with W = Σ_c w_c and scale = 1/Σ w_y (over the rows not ignored) for a mean, else 1. A row
// whose index is IGNORED gets zero loss, z-loss and gradient; its lse is written all the same.
// Row r's K logits are contiguous (an LLM head's [.., K]), or with STRIDED the line of PyTorch's
// class-at-dim-1 layout [N, K, S]: logit c of row r = n·S + s at n·K·S + c·S + s, the gradient
// written in the same layout.
// The loss is formed from sums of z' − M (as in cross_entropy.wgsl), so a confident row's tiny
// loss keeps its relative accuracy. Edge semantics by bits (online_softmax.wgsl): a row whose
// z' holds a NaN or a +∞, or is all −∞, gets NaN loss, z-loss, lse and gradient (the softcap
// maps ±∞ to ±c, and keeps NaN).
//! import online_softmax, math, grid

override WG: u32 = 64u;
override HAS_WEIGHT: bool = false;
override SMOOTHING: bool = false;
override SOFTCAP: bool = false;
override STRIDED: bool = false;
// Whether the gradient overwrites the logits (binding 1) in place: WebGPU forbids binding one
// buffer range twice where either binding is writable, so an in-place launch binds the
// logits once and a small buffer that is never written at binding 3.
override IN_PLACE: bool = false;
// K when a row's K ≤ 4·CACHE logits are held in registers (0: read twice): the loops' trip
// count becomes a constant, so they unroll and index the cache with constants.
override LEN: u32 = 0u;
const CACHE: u32 = HEAD_CACHE;
// With WIDE each pass steps 16 logits per loop iteration, four steps written out, instead of
// 4: llvmpipe ends an invocation after 65,535 loop iterations in all, which this puts beyond
// rows of 500,000 logits (the host sets it only for rows that need it there).
override WIDE: bool = false;

fn step() -> u32 {
    return select(4u, 16u, WIDE);
}


struct Params {
    rows: u32,
    // Classes K.
    cols: u32,
    // Label smoothing ε.
    eps: f32,
    // Gradient scale.
    scale: f32,
    // Σ_c w_c (K without weights).
    w_all: f32,
    // s of the z-loss.
    lse_square_scale: f32,
    // c of the softcap.
    softcap: f32,
    // S, the distance between a row's consecutive logits when STRIDED.
    stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> z: array<f32>;
@group(0) @binding(2) var<storage, read> class_index: array<u32>;
@group(0) @binding(3) var<storage, read_write> dz: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<storage, read_write> row_z_loss: array<f32>;
@group(0) @binding(7) var<storage, read_write> row_lse: array<f32>;

// The row length the loops run to: LEN, a pipeline constant, when the row is cached.
fn cols() -> u32 {
    if LEN > 0u {
        return LEN;
    }
    return p.cols;
}

// Where row r's first logit lies.
fn row_start(r: u32) -> u32 {
    if STRIDED {
        return (r / p.stride) * p.cols * p.stride + r % p.stride;
    }
    return r * p.cols;
}

// Where logit c of the row starting at b lies.
fn at(b: u32, c: u32) -> u32 {
    if STRIDED {
        return b + c * p.stride;
    }
    return b + c;
}

// Capped logits j … j+3 of the row starting at b; lanes past its end are −∞ (the online state
// and the sums skip them).
fn load_capped(b: u32, j: u32) -> vec4<f32> {
    var v = vec4(0.0);
    var valid = vec4(false);
    for (var k = 0u; k < 4u; k++) {
        if j + k < cols() {
            v[k] = z[at(b, j + k)];
            valid[k] = true;
        }
    }
    if SOFTCAP {
        let c = vec4(p.softcap);
        let capped = select(c * tanh_stable(v / c), select(-c, c, v > vec4(0.0)), is_inf4(v));
        v = select(capped, v, is_nan4(v));
    }
    return select(vec4(neg_inf()), v, valid);
}

fn weights(c: vec4<u32>) -> vec4<f32> {
    if !HAS_WEIGHT {
        return vec4(1.0);
    }
    var w = vec4(0.0);
    for (var k = 0u; k < 4u; k++) {
        if c[k] < p.cols {
            w[k] = weight[c[k]];
        }
    }
    return w;
}

fn weight_of(y: u32) -> f32 {
    if !HAS_WEIGHT || y == IGNORED {
        return 1.0;
    }
    return weight[y];
}

// A row's facts the second pass needs.
struct Row {
    // Where its first logit lies, and its class (IGNORED for an ignored row).
    b: u32,
    y: u32,
    // Its max, 1/Σ e^{z' − M}, and lse from the first pass (for the z-loss's gradient).
    m: f32,
    inv_s: f32,
    lse_first: f32,
    w_y: f32,
    // Whether its outputs are NaN (a NaN or +∞ in z', or all −∞).
    nan_row: bool,
}

// The second pass's sums: Σ e^{z' − M} without the maxima, how many maxima, z'_y − M, and
// Σ_c w_c·(z'_c − M) for the smoothing.
struct Sums {
    rest: f32,
    maxima: f32,
    hit: f32,
    weighted: f32,
}

// The first pass over logits j … j+3: pushed into the online state, and kept in `cache` when
// the row is held in registers.
fn first_step(st: Online, b: u32, j: u32, cache: ptr<function, array<vec4<f32>, CACHE>>)
    -> Online {
    let v = load_capped(b, j);
    if LEN > 0u {
        (*cache)[j / 4u] = v;
    }
    return online_push(st, v);
}

// The second pass over logits j … j+3: the gradient written, the loss's sums taken.
fn second_step(sums: Sums, row: Row, j: u32, cache: ptr<function, array<vec4<f32>, CACHE>>)
    -> Sums {
    var v: vec4<f32>;
    if LEN > 0u {
        v = (*cache)[j / 4u];
    } else {
        v = load_capped(row.b, j);
    }
    let c = vec4(j) + vec4(0u, 1u, 2u, 3u);
    let valid = c < vec4(cols());
    let w = weights(c);
    let d = v - row.m;
    let e = exp(d);
    let prob = e * row.inv_s;
    let at_max = (bitcast<vec4<u32>>(d) & vec4(0x7fffffffu)) == vec4(0u);
    var out = sums;
    out.rest += hsum(select(e, vec4(0.0), at_max | !valid));
    out.maxima += hsum(select(vec4(0.0), vec4(1.0), at_max & valid));
    out.hit += hsum(select(vec4(0.0), d, (c == vec4(row.y)) & valid));
    let one_hot = select(vec4(0.0), vec4(1.0), c == vec4(row.y));
    var g = (1.0 - p.eps) * row.w_y * (prob - one_hot);
    if SMOOTHING {
        out.weighted += hsum(select(vec4(0.0), w * d, valid));
        g += p.eps / f32(p.cols) * (p.w_all * prob - w);
    }
    g = p.scale * (g + 2.0 * p.lse_square_scale * row.lse_first * prob);
    if SOFTCAP {
        let t = v / p.softcap;
        g *= 1.0 - t * t;
    }
    g = select(select(g, vec4(nan_f32()), row.nan_row), vec4(0.0), row.y == IGNORED);
    for (var q = 0u; q < 4u; q++) {
        if j + q < cols() {
            if IN_PLACE {
                z[at(row.b, j + q)] = g[q];
            } else {
                dz[at(row.b, j + q)] = g[q];
            }
        }
    }
    return out;
}

@compute @workgroup_size(WG)
fn head_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let r = invocation_index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let b = row_start(r);
    let y = class_index[r];
    var st = online_empty();
    var cache: array<vec4<f32>, CACHE>;
    for (var j = 0u; j < cols(); j += step()) {
        st = first_step(st, b, j, &cache);
        if WIDE {
            st = first_step(st, b, j + 4u, &cache);
            st = first_step(st, b, j + 8u, &cache);
            st = first_step(st, b, j + 12u, &cache);
        }
    }
    let nan_row = online_nan_row(st);
    let s = select(st.s, 1.0, nan_row);
    let row = Row(b, y, st.m, 1.0 / s, st.m + log(s), weight_of(y), nan_row);
    var sums = Sums(0.0, 0.0, 0.0, 0.0);
    for (var j = 0u; j < cols(); j += step()) {
        sums = second_step(sums, row, j, &cache);
        if WIDE {
            sums = second_step(sums, row, j + 4u, &cache);
            sums = second_step(sums, row, j + 8u, &cache);
            sums = second_step(sums, row, j + 12u, &cache);
        }
    }
    let m = st.m;
    let log_s = log1p_pos(sums.rest + (sums.maxima - 1.0));
    let lse = m + log_s;
    let ignored = y == IGNORED;
    var loss = (1.0 - p.eps) * row.w_y * (log_s - sums.hit);
    if SMOOTHING {
        loss += p.eps / f32(p.cols) * (p.w_all * log_s - sums.weighted);
    }
    let z_loss = p.lse_square_scale * lse * lse;
    let nan = nan_f32();
    row_loss[r] = select(select(loss + z_loss, nan, nan_row), 0.0, ignored);
    row_z_loss[r] = select(select(z_loss, nan, nan_row), 0.0, ignored);
    row_lse[r] = select(lse, nan, nan_row);
}
