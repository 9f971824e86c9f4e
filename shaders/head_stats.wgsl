// Per-token statistics of a head's logits for a loss the caller writes on them (PPO, GRPO,
// DPO-style), forward and backward, and the per-row upstream weights of a cross-entropy with
// reduction none. With u = cap(z)/T (cap(z) = c·tanh(z/c) with SOFTCAP, else z) and p = softmax(u):
//   lse = log Σ_j e^{u_j} = M + log S     (M = max u, S = Σ e^{u − M}, Q = Σ e^{u − M}·(u − M))
//   log p_t = (u_t − M) − log S,   H = −Σ p log p = log S − Q/S
// in one pass over the row (the online max carries S and Q: a new max M' scales both by
// e^{M − M'} and adds S·(M − M') to Q), and from the saved M, log S and H, one pass for the
// gradient of L = Σ a·log p_t + Σ c·H (+ Σ s·lse², the z-loss, at T = 1):
//   ∂L/∂z_j = cap'(z_j)·[(a·(δ_jt − p_j) − c·p_j·(log p_j + H))/T + 2s·lse·p_j],
//   cap'(z) = 1 − (cap(z)/c)²,  log p_j = (u_j − M) − log S
// — elementwise once the row's statistics are known. Q is a sum of terms ≤ 0 and log S ≥ 0, so
// H = log S + |Q|/S adds two non-negative terms and keeps its relative accuracy.
// Edge semantics by bits (online_softmax.wgsl): a row whose u holds a NaN or a +∞, or is all −∞,
// gets NaN statistics (lse too) and gradient; a −∞ entry has p = 0 and adds nothing to S, Q or the
// gradient's entropy term (p log p → 0). An ignored row (class IGNORED) gets 0 log-probability,
// 0 entropy and a 0 gradient; its lse is written all the same. Exponentials take finite arguments
// only.
// Row r's logits start at base + r·cols in z (the launch's block of rows); its per-row values are
// at row0 + r in the per-row buffers, which are bound whole.
//! import online_softmax, math, grid

override WG: u32 = 64u;
override SOFTCAP: bool = false;
// Whether the backward has an upstream gradient of log p_t (a) and of the entropy (c).
override HAS_A: bool = false;
override HAS_C: bool = false;
// Whether the backward adds the z-loss's gradient (s > 0).
override Z_LOSS: bool = false;
// With WIDE the per-row pass steps 16 logits per loop iteration, four steps written out:
// llvmpipe ends an invocation after 65,535 loop iterations in all.
override WIDE: bool = false;
// Whether the backward writes the gradient over the logits (binding 1) in place: WebGPU
// forbids binding one buffer range twice where either binding is writable, so an in-place
// launch binds the logits once and a small buffer that is never written for dz.
override IN_PLACE: bool = false;

struct Params {
    // Rows of the launch and classes K.
    rows: u32,
    cols: u32,
    // Where the launch's first row starts in z, and its index in the per-row buffers.
    base: u32,
    row0: u32,
    // T, c of the softcap, and 2s of the z-loss.
    temperature: f32,
    softcap: f32,
    z_scale: f32,
    // The row whose upstream gradients are the first of grad_logp and grad_entropy (row r of
    // the per-row buffers reads them at r − up_row0; 0 where they hold every row).
    up_row0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> z: array<f32>;
@group(0) @binding(2) var<storage, read> class_index: array<u32>;
@group(0) @binding(3) var<storage, read_write> row_logp: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_entropy: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_lse: array<f32>;
@group(0) @binding(6) var<storage, read> grad_logp: array<f32>;
@group(0) @binding(7) var<storage, read> grad_entropy: array<f32>;
@group(0) @binding(8) var<storage, read_write> dz: array<f32>;
// M and log S of each row, what the backward forms log p = (u − M) − log S from (lse = M + log S
// alone would cost the digits of M: at u ≈ 2e4 an ulp of lse is 2e-3).
@group(0) @binding(9) var<storage, read_write> row_max: array<f32>;
@group(0) @binding(10) var<storage, read_write> row_log_sum: array<f32>;

// cap(z) of four logits: the softcap maps ±∞ to ±c and keeps NaN.
fn cap(v: vec4<f32>) -> vec4<f32> {
    if !SOFTCAP {
        return v;
    }
    let c = vec4(p.softcap);
    let capped = select(c * tanh_stable(v / c), select(-c, c, v > vec4(0.0)), is_inf4(v));
    return select(capped, v, is_nan4(v));
}

// cap(z) of logits j … j+3 of the row starting at b; lanes past the row's end are −∞.
fn load_capped(b: u32, j: u32) -> vec4<f32> {
    var v = vec4(0.0);
    var valid = vec4(false);
    for (var k = 0u; k < 4u; k++) {
        if j + k < p.cols {
            v[k] = z[b + j + k];
            valid[k] = true;
        }
    }
    return select(vec4(neg_inf()), cap(v), valid);
}

// ---- the forward's online state ----

// M, S = Σ e^{u − M} and Q = Σ e^{u − M}·(u − M) over the finite u seen, and T = Σ (u − M),
// NaN exactly when the row is (online_softmax.wgsl, `row_nan`).
struct Stats {
    m: f32,
    s: f32,
    q: f32,
    t: vec4<f32>,
}

fn stats_empty() -> Stats {
    return Stats(neg_inf(), 0.0, 0.0, vec4(0.0));
}

// e^d where d is finite, exactly 0 where it is not: d = v − M ≤ 0 is −∞ for a −∞ entry (or a
// masked lane), and also where the difference of two finite values overflows (−3e38 − 3e38),
// whose exponential is 0 all the same.
fn exp_or_zero(d: vec4<f32>) -> vec4<f32> {
    let finite = is_finite4(d);
    return select(vec4(0.0), exp(select(vec4(0.0), d, finite)), finite);
}

// (S·f, (Q + S·(M − M'))·f) with f = e^{M − M'}: the sums re-based on a new max M'. Exactly 0
// where f is (S = 0 before any finite value, or M − M' overflowing), so that neither −∞ − (−∞)
// nor 0·∞ appears.
fn rebase(s: f32, q: f32, m: f32, m_new: f32) -> vec2<f32> {
    let d = m - m_new;
    let f = exp_or_zero(vec4(d)).x;
    let gone = bitcast<u32>(f) == 0u || bitcast<u32>(s) == 0u;
    return select(vec2(s * f, (q + s * d) * f), vec2(0.0), gone);
}

// Adds four values of u; −∞ lanes (and masked lanes, which are −∞) add exactly 0, as do lanes
// whose e^{u − M} is 0.
fn stats_push(st: Stats, v: vec4<f32>) -> Stats {
    let m = max(st.m, hmax(v));
    let old = rebase(st.s, st.q, st.m, m);
    let d = v - m;
    let e = exp_or_zero(d);
    let eq = select(e * d, vec4(0.0), bitcast<vec4<u32>>(e) == vec4(0u));
    return Stats(m, old.x + hsum(e), old.y + hsum(eq), st.t + d);
}

fn stats_merge(a: Stats, b: Stats) -> Stats {
    let m = max(a.m, b.m);
    let x = rebase(a.s, a.q, a.m, m);
    let y = rebase(b.s, b.q, b.m, m);
    return Stats(m, x.x + y.x, x.y + y.y, a.t + b.t);
}

// u of logits j … j+3 of the row starting at b.
fn load_u(b: u32, j: u32) -> vec4<f32> {
    return load_capped(b, j) / p.temperature;
}

// Writes row r's statistics (r counts from the launch's first row).
fn finish_row(r: u32, st: Stats) {
    let row = p.row0 + r;
    let y = class_index[row];
    let nan_row = row_nan(hsum(st.t));
    let s = select(st.s, 1.0, nan_row);
    let log_s = log1p_pos(s - 1.0);
    let lse = st.m + log_s;
    let entropy = log_s - st.q / s;
    var logp = 0.0;
    if y != IGNORED {
        let u_y = load_u(p.base + r * p.cols, y).x;
        logp = select((u_y - st.m) - log_s, neg_inf(), is_neg_inf4(vec4(u_y)).x);
    }
    let nan = nan_f32();
    let ignored = y == IGNORED;
    row_logp[row] = select(select(logp, nan, nan_row), 0.0, ignored);
    row_entropy[row] = select(select(entropy, nan, nan_row), 0.0, ignored);
    row_lse[row] = select(lse, nan, nan_row);
    row_max[row] = select(st.m, nan, nan_row);
    row_log_sum[row] = select(log_s, nan, nan_row);
}

// One invocation per row: the row read once, four (or, WIDE, sixteen) logits per iteration.
@compute @workgroup_size(WG)
fn stats_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let r = invocation_index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let b = p.base + r * p.cols;
    var st = stats_empty();
    let step = select(4u, 16u, WIDE);
    for (var j = 0u; j < p.cols; j += step) {
        st = stats_push(st, load_u(b, j));
        if WIDE {
            st = stats_push(st, load_u(b, j + 4u));
            st = stats_push(st, load_u(b, j + 8u));
            st = stats_push(st, load_u(b, j + 12u));
        }
    }
    finish_row(r, st);
}

// The workgroup's partial states, merged by a log₂(WG)-step tree (WG a power of two); T summed
// over an invocation's four lanes.
var<workgroup> part_m: array<f32, WG>;
var<workgroup> part_s: array<f32, WG>;
var<workgroup> part_q: array<f32, WG>;
var<workgroup> part_t: array<f32, WG>;

fn store_part(i: u32, st: Stats) {
    part_m[i] = st.m;
    part_s[i] = st.s;
    part_q[i] = st.q;
    part_t[i] = hsum(st.t);
}

fn load_part(i: u32) -> Stats {
    return Stats(part_m[i], part_s[i], part_q[i], vec4(part_t[i], 0.0, 0.0, 0.0));
}

// One workgroup per row (long rows where rows are few, or a GPU): invocation i takes logits
// 4i, 4i + 4·WG, …; the partial states merge in workgroup memory.
@compute @workgroup_size(WG)
fn stats_workgroup(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wid, nwg);
    if r >= p.rows {
        return;
    }
    let b = p.base + r * p.cols;
    var st = stats_empty();
    for (var j = 4u * lid; j < p.cols; j += 4u * WG) {
        st = stats_push(st, load_u(b, j));
    }
    store_part(lid, st);
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            store_part(lid, stats_merge(load_part(lid), load_part(lid + stride)));
        }
        workgroupBarrier();
    }
    if lid == 0u {
        finish_row(r, load_part(0u));
    }
}

// ---- the backward: one invocation per four logits of a row ----

@compute @workgroup_size(WG)
fn grad_elements(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = invocation_index(wid, nwg, lid);
    let quads = (p.cols + 3u) / 4u;
    if i >= p.rows * quads {
        return;
    }
    let r = i / quads;
    let j = 4u * (i % quads);
    let row = p.row0 + r;
    let b = p.base + r * p.cols;
    let y = class_index[row];
    let m = row_max[row];
    let log_s = row_log_sum[row];
    let entropy = row_entropy[row];
    var a = 0.0;
    if HAS_A {
        a = grad_logp[row - p.up_row0];
    }
    var c = 0.0;
    if HAS_C {
        c = grad_entropy[row - p.up_row0];
    }
    let capped = load_capped(b, j);
    let u = capped / p.temperature;
    // NaN statistics mark a NaN row; a NaN or +∞ entry (statistics of other logits) too.
    let poison = !is_finite1(m) || !is_finite1(log_s) || !is_finite1(entropy);
    let bad = is_nan4(u) | (bitcast<vec4<u32>>(u) == vec4(POS_INF_BITS)) | vec4(poison);
    let finite = is_finite4(u) & !bad;
    let log_p = select(vec4(0.0), (u - m) - log_s, finite);
    let prob = select(vec4(0.0), exp_or_zero(log_p), finite);
    // p log p → 0 where p is 0 (a −∞ entry, or log p below f32's range).
    let entropy_term = select(prob * (log_p + entropy), vec4(0.0),
                              bitcast<vec4<u32>>(prob) == vec4(0u));
    let cols = vec4(j) + vec4(0u, 1u, 2u, 3u);
    let one_hot = select(vec4(0.0), vec4(1.0), cols == vec4(y));
    var g = (a * (one_hot - prob) - c * entropy_term) / p.temperature;
    if Z_LOSS {
        g += p.z_scale * (m + log_s) * prob;
    }
    if SOFTCAP {
        let t = capped / p.softcap;
        g *= 1.0 - t * t;
    }
    g = select(select(g, vec4(nan_f32()), bad), vec4(0.0), y == IGNORED);
    for (var k = 0u; k < 4u; k++) {
        if j + k < p.cols {
            if IN_PLACE {
                z[b + j + k] = g[k];
            } else {
                dz[b + j + k] = g[k];
            }
        }
    }
}

// Each row of a chunk's cross-entropy gradient (in z) times its upstream weight (grad_logp);
// an ignored row stays exactly 0.
@compute @workgroup_size(WG)
fn scale_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = invocation_index(wid, nwg, lid);
    let quads = (p.cols + 3u) / 4u;
    if i >= p.rows * quads {
        return;
    }
    let r = i / quads;
    let j = 4u * (i % quads);
    let row = p.row0 + r;
    let b = p.base + r * p.cols;
    let w = grad_logp[row];
    let ignored = class_index[row] == IGNORED;
    for (var k = 0u; k < 4u; k++) {
        if j + k < p.cols {
            z[b + j + k] = select(z[b + j + k] * w, 0.0, ignored);
        }
    }
}
