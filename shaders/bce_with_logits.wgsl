// Fused sigmoid binary cross-entropy with logits, loss and gradient in one pass (PyTorch's
// binary_cross_entropy_with_logits):
//   l = w·[(1 − y)·z + q·(log(1 + e^{−|z|}) + max(−z, 0))],   q = (π − 1)·y + 1,
//     evaluated as w·[(z ≥ 0 ? (1 − y)·z : −π·y·z) + q·log(1 + e^{−|z|})], the same value
//     without the cancellation of z against max(−z, 0) (two non-negative terms for y in [0, 1]),
//   dz = scale·w·(q·σ(z) − π·y)                             (= scale·w·(σ(z) − y) when π = 1),
// where w is the weight and π the positive-class weight of the element's column (both 1 when
// absent) and `scale` is 1/numel for a mean, else 1. Finite and exact at z = ±1e4: nothing
// overflows (e^{−|z|} ≤ 1). PyTorch's answers at the edges, by bits: a NaN logit or target
// gives NaN loss and gradient, and z = −∞ gives a NaN loss (its (1 − y)·z + max(−z, 0) is
// −∞ + ∞) beside the gradient −w·π·y.
//
// Elements are walked as vec4s with a grid stride; the padding lanes of the last vec4 are
// masked out of the loss. `bce_none` writes each element's loss; `bce_sum` writes the sum of
// each invocation's losses, which the host reduces with reduce.wgsl.
//! import math, grid
//! storage f32, f16, bf16

override WG: u32 = 256u;
override HAS_WEIGHT: bool = false;
override HAS_POS_WEIGHT: bool = false;

struct Params {
    // vec4 elements in this launch.
    len: u32,
    // Elements in this launch (the last vec4 may be partial).
    n: u32,
    // Length of a row (the weights' period).
    cols: u32,
    // Column of the first element of this launch.
    col0: u32,
    // Gradient scale.
    scale: f32,
    // Invocations that take part (the grid may hold a few more, which return at once): the
    // grid stride, and the number of partial sums written.
    invocations: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Logits, targets and the gradient through the storage codec (f32, f16 or bf16, composed by
// the host: storage_*.wgsl); the losses and their partial sums are f32.
@group(0) @binding(1) var<storage, read> z_in: array<Stored4>;
@group(0) @binding(2) var<storage, read> y_in: array<Stored4>;
@group(0) @binding(3) var<storage, read_write> dz_out: array<Stored4>;
// Per-element losses (bce_none) or one partial sum per invocation (bce_sum).
@group(0) @binding(4) var<storage, read_write> loss4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<storage, read> pos_weight: array<f32>;

fn per_column(table_is_weight: bool, i: u32) -> vec4<f32> {
    var v = vec4(1.0);
    for (var k = 0u; k < 4u; k++) {
        let c = (p.col0 + 4u * i + k) % p.cols;
        if table_is_weight {
            v[k] = weight[c];
        } else {
            v[k] = pos_weight[c];
        }
    }
    return v;
}

// Writes dz for vec4 i and returns its losses, 0 in the padding lanes past n.
fn bce_element(i: u32) -> vec4<f32> {
    let z = load4(z_in[i]);
    let y = load4(y_in[i]);
    var w = vec4(1.0);
    if HAS_WEIGHT {
        w = per_column(true, i);
    }
    var pw = vec4(1.0);
    if HAS_POS_WEIGHT {
        pw = per_column(false, i);
    }
    let q = (pw - 1.0) * y + 1.0;
    // One exponential serves both σ(z) and log(1 + e^{−|z|}).
    let e = exp(-abs(z));
    let r = 1.0 / (1.0 + e);
    let sigma = select(e * r, r, z >= vec4(0.0));
    let nan_in = is_nan4(z) | is_nan4(y);
    let nan = vec4(nan_f32());
    dz_out[i] = store4(select(p.scale * w * (q * sigma - pw * y), nan, nan_in));
    let linear = select(-pw * y * z, (1.0 - y) * z, z >= vec4(0.0));
    let loss = select(w * (linear + q * log1p_unit(e)), nan, nan_in | is_neg_inf4(z));
    let valid = vec4(4u * i) + vec4(0u, 1u, 2u, 3u) < vec4(p.n);
    return select(vec4(0.0), loss, valid);
}


// Reduction "none": every element's loss.
@compute @workgroup_size(WG)
fn bce_none(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    for (var i = invocation_index(wid, nwg, lid); i < p.len; i += p.invocations) {
        loss4[i] = bce_element(i);
    }
}

// Reductions "sum" and "mean": one partial sum per invocation.
@compute @workgroup_size(WG)
fn bce_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let first = invocation_index(wid, nwg, lid);
    if first >= p.invocations {
        return;
    }
    var partial = 0.0;
    for (var i = first; i < p.len; i += p.invocations) {
        let l = bce_element(i);
        partial += (l.x + l.y) + (l.z + l.w);
    }
    partials[first] = partial;
}
