// Softmax, log-softmax and softmin along any dim of a tensor, in place of a transpose copy: the
// dim's L elements of line (o, i) lie at o·L·S + k·S + i (k < L), with S the product of the
// dims after it. One invocation per line, so consecutive invocations read consecutive
// addresses (i) at every k. With v = ±x (NEG: softmin, softmax of −x):
//   forward   y_k = e^{v_k − M} / Σ e^{v − M}, or (v_k − M) − log Σ e^{v − M} (LOG);
//   backward  from the saved output y: dx = s·y ⊙ (g − Σ g·y), or g − e^y·Σ g (LOG), where
//             s = −1 for softmin (d(−x)/dx) and 1 otherwise.
// NaN, +∞ and all-−∞ lines (of v) give NaN as in the row kernels (online_softmax.wgsl), by
// bits; backward, a NaN in g (or in y, for softmax) makes the line's sum and so its dx NaN.
//! import online_softmax, grid

override WG: u32 = 64u;
override LOG: bool = false;
override NEG: bool = false;

// With WIDE a loop iteration of the online kernels covers 16 elements, as four steps written
// out, instead of 4: llvmpipe ends an invocation after 65,535 loop iterations in all, which
// this puts beyond lines of 500,000 elements (the host sets it only for lines that need it
// there, and refuses longer ones).
override WIDE: bool = false;

fn step() -> u32 {
    return select(4u, 16u, WIDE);
}

struct Params {
    // Lines: (product of the dims before dim) · S.
    lines: u32,
    // L, the dim's length.
    len: u32,
    // S, the distance between consecutive elements of a line.
    stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn line_start(t: u32) -> u32 {
    let o = t / p.stride;
    return o * p.len * p.stride + t % p.stride;
}

// Elements k … k+3 of the line starting at b, negated if `negate`; `fill` past the end.
fn load4(b: u32, k: u32, fill: f32, negate: bool) -> vec4<f32> {
    var v = vec4(fill);
    for (var j = 0u; j < 4u; j++) {
        if k + j < p.len {
            v[j] = x[b + (k + j) * p.stride];
            if negate {
                v[j] = -v[j];
            }
        }
    }
    return v;
}

fn load_g4(b: u32, k: u32) -> vec4<f32> {
    var v = vec4(0.0);
    for (var j = 0u; j < 4u; j++) {
        if k + j < p.len {
            v[j] = g_in[b + (k + j) * p.stride];
        }
    }
    return v;
}

fn store4(b: u32, k: u32, v: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if k + j < p.len {
            y[b + (k + j) * p.stride] = v[j];
        }
    }
}


@compute @workgroup_size(WG)
fn forward_strided(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let t = invocation_index(wid, nwg, lid);
    if t >= p.lines {
        return;
    }
    let b = line_start(t);
    var st = online_empty();
    for (var k = 0u; k < p.len; k += step()) {
        st = online_push(st, load4(b, k, neg_inf(), NEG));
        if WIDE {
            st = online_push(st, load4(b, k + 4u, neg_inf(), NEG));
            st = online_push(st, load4(b, k + 8u, neg_inf(), NEG));
            st = online_push(st, load4(b, k + 12u, neg_inf(), NEG));
        }
    }
    let n = line_norm(st.m, st.s, online_nan_row(st));
    for (var k = 0u; k < p.len; k += step()) {
        normalise4(b, k, n);
        if WIDE {
            normalise4(b, k + 4u, n);
            normalise4(b, k + 8u, n);
            normalise4(b, k + 12u, n);
        }
    }
}

// What normalises a line: M, log S for log-softmax or 1/S otherwise, and whether the line's
// outputs are all NaN.
struct LineNorm {
    m: f32,
    k: f32,
    nan_row: bool,
}

fn line_norm(m: f32, s: f32, nan_row: bool) -> LineNorm {
    let s1 = select(s, 1.0, nan_row);
    return LineNorm(m, select(1.0 / s1, log(s1), LOG), nan_row);
}

// y of v: e^{v − M}/S or (v − M) − log S, 0 or −∞ for v = −∞, NaN for a NaN line.
fn normalised(v: vec4<f32>, n: LineNorm) -> vec4<f32> {
    var y: vec4<f32>;
    if LOG {
        y = select((v - n.m) - n.k, vec4(neg_inf()), is_neg_inf4(v));
    } else {
        y = exp(v - n.m) * n.k;
    }
    return select(y, vec4(nan_f32()), n.nan_row);
}

// Elements k … k+3 of the line from b normalised.
fn normalise4(b: u32, k: u32, n: LineNorm) {
    store4(b, k, normalised(load4(b, k, neg_inf(), NEG), n));
}

// In the backward, x holds the saved output y.
@compute @workgroup_size(WG)
fn backward_strided(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let t = invocation_index(wid, nwg, lid);
    if t >= p.lines {
        return;
    }
    let b = line_start(t);
    var d = 0.0;
    for (var k = 0u; k < p.len; k += step()) {
        d += dot_term4(b, k);
        if WIDE {
            d += dot_term4(b, k + 4u) + dot_term4(b, k + 8u) + dot_term4(b, k + 12u);
        }
    }
    for (var k = 0u; k < p.len; k += step()) {
        gradient4(b, k, d);
        if WIDE {
            gradient4(b, k + 4u, d);
            gradient4(b, k + 8u, d);
            gradient4(b, k + 12u, d);
        }
    }
}

// Σ g·y over elements k … k+3 of the line from b (Σ g for LOG).
fn dot_term4(b: u32, k: u32) -> f32 {
    let g = load_g4(b, k);
    if LOG {
        return hsum(g);
    }
    return hsum(g * load4(b, k, 0.0, false));
}

// dx from y, g and the line's sum d; −dx for softmin; NaN where the sum is NaN (a NaN among
// its terms, which the arithmetic carries).
fn line_grad(y: vec4<f32>, g: vec4<f32>, d: f32) -> vec4<f32> {
    var dx = y * (g - d);
    if LOG {
        // e^y of finite y only: 0 for −∞ (NaN is routed below), by bits.
        let finite = is_finite4(y);
        let e = select(vec4(0.0), exp(select(vec4(0.0), y, finite)), finite);
        dx = select(g - e * d, vec4(nan_f32()), is_nan4(y));
    }
    if NEG {
        dx = -dx;
    }
    return select(dx, vec4(nan_f32()), is_nan1(d));
}

// dx of elements k … k+3 of the line from b.
fn gradient4(b: u32, k: u32, d: f32) {
    store4(b, k, line_grad(load4(b, k, 0.0, false), load_g4(b, k), d));
}

// The same for short lines (L = LEN ≤ CACHE, a pipeline constant), each line held in
// registers: the loops have a constant trip count, so the driver unrolls them and indexes the
// arrays with constants. The forward reads each element once and takes one exponential per
// element (max, then e^{v − M} kept and summed, then scaled), where the online form above reads
// twice and takes two; the backward reads y and g once.
override LEN: u32 = 1u;
const CACHE: u32 = STRIDED_CACHE;

@compute @workgroup_size(WG)
fn forward_strided_cached(@builtin(workgroup_id) wid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let t = invocation_index(wid, nwg, lid);
    if t >= p.lines {
        return;
    }
    let b = line_start(t);
    var v: array<f32, CACHE>;
    var m = neg_inf();
    for (var k = 0u; k < LEN; k++) {
        v[k] = select(x[b + k * p.stride], -x[b + k * p.stride], NEG);
        m = max(m, v[k]);
    }
    // e^{v − M}, 0 for −∞; Σ (v − M) the line's NaN verdict (online_softmax.wgsl, `row_nan`).
    var s = 0.0;
    var dsum = 0.0;
    for (var k = 0u; k < LEN; k++) {
        let e = exp(v[k] - m);
        s += e;
        dsum += v[k] - m;
        if !LOG {
            v[k] = e;
        }
    }
    let n = line_norm(m, s, row_nan(dsum));
    for (var k = 0u; k < LEN; k++) {
        var out: f32;
        if LOG {
            out = select((v[k] - m) - n.k, neg_inf(), bitcast<u32>(v[k]) == NEG_INF_BITS);
        } else {
            out = v[k] * n.k;
        }
        y[b + k * p.stride] = select(out, nan_f32(), n.nan_row);
    }
}

@compute @workgroup_size(WG)
fn backward_strided_cached(@builtin(workgroup_id) wid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let t = invocation_index(wid, nwg, lid);
    if t >= p.lines {
        return;
    }
    let b = line_start(t);
    var s: array<f32, CACHE>;
    var g: array<f32, CACHE>;
    var d = 0.0;
    for (var k = 0u; k < LEN; k++) {
        s[k] = x[b + k * p.stride];
        g[k] = g_in[b + k * p.stride];
        d += select(g[k] * s[k], g[k], LOG);
    }
    let nan_line = is_nan1(d);
    for (var k = 0u; k < LEN; k++) {
        var dx = s[k] * (g[k] - d);
        if LOG {
            // e^y of finite y only (line_grad's rule, one element at a time).
            let finite = is_finite1(s[k]);
            let e = select(0.0, exp(select(0.0, s[k], finite)), finite);
            dx = select(g[k] - e * d, nan_f32(), is_nan1(s[k]));
        }
        if NEG {
            dx = -dx;
        }
        y[b + k * p.stride] = select(dx, nan_f32(), nan_line);
    }
}
