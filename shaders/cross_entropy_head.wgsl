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
// loss keeps its relative accuracy. The host appends online_softmax.wgsl and math.wgsl.

override WG: u32 = 64u;
override HAS_WEIGHT: bool = false;
override SMOOTHING: bool = false;
override SOFTCAP: bool = false;
override STRIDED: bool = false;
// K when a row's K ≤ 4·CACHE logits are held in registers (0: read twice): the loops' trip
// count becomes a constant, so they unroll and index the cache with constants.
override LEN: u32 = 0u;
const CACHE: u32 = 8u;

const IGNORED: u32 = 0xffffffffu;

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
        v = p.softcap * tanh_stable(v / p.softcap);
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

@compute @workgroup_size(WG)
fn head_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let r = (wid.y * nwg.x + wid.x) * WG + lid;
    if r >= p.rows {
        return;
    }
    let b = row_start(r);
    let y = class_index[r];
    var st = online_empty();
    var cache: array<vec4<f32>, CACHE>;
    for (var j = 0u; j < cols(); j += 4u) {
        let v = load_capped(b, j);
        if LEN > 0u {
            cache[j / 4u] = v;
        }
        st = online_push(st, v);
    }
    let m = st.m;
    let inv_s = 1.0 / st.s;
    // lse from the first pass, for the z-loss's gradient; the loss uses the sums below.
    let lse_first = m + log(st.s);
    let w_y = weight_of(y);
    let k = f32(p.cols);
    let ignored = y == IGNORED;
    var rest = 0.0;
    var maxima = 0.0;
    var hit = 0.0;
    var weighted = 0.0;
    for (var j = 0u; j < cols(); j += 4u) {
        var v: vec4<f32>;
        if LEN > 0u {
            v = cache[j / 4u];
        } else {
            v = load_capped(b, j);
        }
        let c = vec4(j) + vec4(0u, 1u, 2u, 3u);
        let valid = c < vec4(cols());
        let w = weights(c);
        let d = v - m;
        let e = exp(d);
        let prob = e * inv_s;
        let at_max = (bitcast<vec4<u32>>(d) & vec4(0x7fffffffu)) == vec4(0u);
        rest += hsum(select(e, vec4(0.0), at_max | !valid));
        maxima += hsum(select(vec4(0.0), vec4(1.0), at_max & valid));
        hit += hsum(select(vec4(0.0), d, c == vec4(y) & valid));
        var g = (1.0 - p.eps) * w_y * (prob - select(vec4(0.0), vec4(1.0), c == vec4(y)));
        if SMOOTHING {
            weighted += hsum(select(vec4(0.0), w * d, valid));
            g += p.eps / k * (p.w_all * prob - w);
        }
        g = p.scale * (g + 2.0 * p.lse_square_scale * lse_first * prob);
        if SOFTCAP {
            let t = v / p.softcap;
            g *= 1.0 - t * t;
        }
        g = select(g, vec4(0.0), ignored);
        for (var q = 0u; q < 4u; q++) {
            if j + q < cols() {
                dz[at(b, j + q)] = g[q];
            }
        }
    }
    let log_s = log1p_pos(rest + (maxima - 1.0));
    let lse = m + log_s;
    var loss = (1.0 - p.eps) * w_y * (log_s - hit);
    if SMOOTHING {
        loss += p.eps / k * (p.w_all * log_s - weighted);
    }
    let z_loss = p.lse_square_scale * lse * lse;
    row_loss[r] = select(loss + z_loss, 0.0, ignored);
    row_z_loss[r] = select(z_loss, 0.0, ignored);
    row_lse[r] = lse;
}
