// Softmax, log-softmax and softmin along any dim of a tensor, in place of a transpose copy: the
// dim's L elements of line (o, i) lie at o·L·S + k·S + i (k < L), with S the product of the
// dims after it. One invocation per line, so consecutive invocations read consecutive
// addresses (i) at every k. With v = ±x (NEG: softmin, softmax of −x):
//   forward   y_k = e^{v_k − M} / Σ e^{v − M}, or (v_k − M) − log Σ e^{v − M} (LOG);
//   backward  from the saved output y: dx = s·y ⊙ (g − Σ g·y), or g − e^y·Σ g (LOG), where
//             s = −1 for softmin (d(−x)/dx) and 1 otherwise.
// NaN, +∞ and all-−∞ lines give NaN as in the row kernels (online_softmax.wgsl).
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
    let k2 = vec2(log(st.s), 1.0 / st.s);
    for (var k = 0u; k < p.len; k += step()) {
        normalise4(b, k, st.m, k2);
        if WIDE {
            normalise4(b, k + 4u, st.m, k2);
            normalise4(b, k + 8u, st.m, k2);
            normalise4(b, k + 12u, st.m, k2);
        }
    }
}

// Elements k … k+3 of the line from b normalised with the max m and (log S, 1/S).
fn normalise4(b: u32, k: u32, m: f32, k2: vec2<f32>) {
    let d = load4(b, k, neg_inf(), NEG) - m;
    if LOG {
        store4(b, k, d - k2.x);
    } else {
        store4(b, k, exp(d) * k2.y);
    }
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

// dx of elements k … k+3 of the line from b, with d = Σ g·y (Σ g for LOG).
fn gradient4(b: u32, k: u32, d: f32) {
    let g = load_g4(b, k);
    let s = load4(b, k, 0.0, false);
    var dx = s * (g - d);
    if LOG {
        dx = g - exp(s) * d;
    }
    if NEG {
        dx = -dx;
    }
    store4(b, k, dx);
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
    // e^{v − M}, exactly 0 for −∞ (so that an all −∞ line gives 0/0, NaN, as the row kernels).
    var s = 0.0;
    for (var k = 0u; k < LEN; k++) {
        let e = select(exp(v[k] - m), 0.0, bitcast<u32>(v[k]) == NEG_INF_BITS);
        s += e;
        if !LOG {
            v[k] = e;
        }
    }
    let log_s = log(s);
    let inv_s = 1.0 / s;
    for (var k = 0u; k < LEN; k++) {
        if LOG {
            y[b + k * p.stride] = (v[k] - m) - log_s;
        } else {
            y[b + k * p.stride] = v[k] * inv_s;
        }
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
    for (var k = 0u; k < LEN; k++) {
        var dx = s[k] * (g[k] - d);
        if LOG {
            dx = g[k] - exp(s[k]) * d;
        }
        y[b + k * p.stride] = select(dx, -dx, NEG);
    }
}
