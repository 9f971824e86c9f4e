// Gated activations, forward y = f(a)·m(b) and both gradients in one pass, with a the value and
// b the gate (GATE, override, selects the pair by the prelude's GATE_NAME codes, declared with
// `Gate` in src/definitions/gated.rs):
//   glu         a·σ(b)          ∂a = g·σ(b)             ∂b = g·a·σ(b)(1 − σ(b))
//   swiglu      silu(a)·b       ∂a = g·b·silu'(a)       ∂b = g·silu(a)
//   geglu       gelu(a)·b       ∂a = g·b·gelu'(a)       ∂b = g·gelu(a)
//   geglu_tanh  gelu_tanh(a)·b  ∂a = g·b·gelu_tanh'(a)  ∂b = g·gelu_tanh(a)
// with silu' = σ(1 + a(1 − σ)), gelu' = Φ + aφ, gelu_tanh(a) = a·σ(2u), u = √(2/π)(a + 0.044715a³).
//
// Two layouts: `*_split` takes one tensor whose rows of 2H hold the value in their first half
// and the gate in their second (PyTorch's glu(dim = −1)), and writes its gradient into the same
// layout; `*_pair` takes a and b as two tensors of one shape and writes ∂a and ∂b apart.
// Elements are walked four at a time with a grid stride: as whole vec4s in the pair layout and
// in split rows whose H is a multiple of 4 (`*_split4`; a tensor's storage holds whole
// vec4s, so a last partial one reads and writes only padding past the end), else element by
// element, masked at the end.
//! import math, grid

override GATE: u32 = 0u;
override WG: u32 = 256u;

struct Params {
    // Outputs y (rows × H).
    len: u32,
    // H: the gated width (half a split row).
    half: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// The split input, or the values a.
@group(0) @binding(1) var<storage, read> x: array<f32>;
// The gates b (pair layout).
@group(0) @binding(2) var<storage, read> gate: array<f32>;
// The upstream gradient g (backward).
@group(0) @binding(3) var<storage, read> g_in: array<f32>;
// y (forward), the split gradient or ∂a (backward).
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// ∂b (pair backward).
@group(0) @binding(5) var<storage, read_write> out_gate: array<f32>;

// f(a)·m(b) and its two partial derivatives.
struct Gated {
    y: V,
    da: V,
    db: V,
}

fn gated(a: V, b: V) -> Gated {
    switch GATE {
        case GATE_GLU: {
            let l = logistic(b);
            return Gated(a * l.value, l.value, a * l.slope);
        }
        case GATE_SWIGLU: {
            let l = logistic(a);
            let silu = a * l.value;
            return Gated(silu * b, b * (l.value + a * l.slope), silu);
        }
        case GATE_GEGLU: {
            let n = normal(a);
            let gelu = a * n.cdf;
            return Gated(gelu * b, b * (n.cdf + a * n.pdf), gelu);
        }
        case GATE_GEGLU_TANH: {
            let gelu = a * logistic(2.0 * gelu_tanh_inner(a)).value;
            return Gated(gelu * b, b * gelu_tanh_slope(a), gelu);
        }
        default: {
            return Gated(nan(), nan(), nan());
        }
    }
}

// Output j of a split row: its value and gate indices in x.
fn value_index(j: u32) -> u32 {
    let r = j / p.half;
    return j + r * p.half;
}

// Four values (or, with `from_gate`, gates) of split rows, from output j on; 0 past the end.
fn load_split(j: u32, from_gate: bool) -> V {
    var v = vec4(0.0);
    for (var k = 0u; k < 4u; k++) {
        if j + k < p.len {
            v[k] = x[value_index(j + k) + select(0u, p.half, from_gate)];
        }
    }
    return v;
}

fn load_g(j: u32) -> V {
    var v = vec4(0.0);
    for (var k = 0u; k < 4u; k++) {
        if j + k < p.len {
            v[k] = g_in[j + k];
        }
    }
    return v;
}

fn first(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return 4u * (invocation_index(wid, nwg, lid));
}

fn stride(nwg: vec3<u32>) -> u32 {
    return 4u * grid_stride(nwg);
}

@compute @workgroup_size(WG)
fn forward_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    for (var j = first(wid, nwg, lid); j < p.len; j += stride(nwg)) {
        let y = gated(load_split(j, false), load_split(j, true)).y;
        for (var k = 0u; k < 4u; k++) {
            if j + k < p.len {
                out[j + k] = y[k];
            }
        }
    }
}

@compute @workgroup_size(WG)
fn backward_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    for (var j = first(wid, nwg, lid); j < p.len; j += stride(nwg)) {
        let d = gated(load_split(j, false), load_split(j, true));
        let g = load_g(j);
        let da = g * d.da;
        let db = g * d.db;
        for (var k = 0u; k < 4u; k++) {
            if j + k < p.len {
                let i = value_index(j + k);
                out[i] = da[k];
                out[i + p.half] = db[k];
            }
        }
    }
}

// The vec4 entry points (`*_split4`, `*_pair`): x4, gate4, g4, out4 and out_gate4 are the
// bindings above as vec4s;
// p.len counts vec4s of y, and p.half is H/4 in split rows.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gate4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> g4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out_gate4: array<vec4<f32>>;

// The vec4 of values in x4 for vec4 j of y in split rows (its gates are p.half further).
fn value_index4(j: u32) -> u32 {
    return j + (j / p.half) * p.half;
}

fn first4(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return invocation_index(wid, nwg, lid);
}

fn stride4(nwg: vec3<u32>) -> u32 {
    return grid_stride(nwg);
}

@compute @workgroup_size(WG)
fn forward_split4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    for (var j = first4(wid, nwg, lid); j < p.len; j += stride4(nwg)) {
        let i = value_index4(j);
        out4[j] = gated(x4[i], x4[i + p.half]).y;
    }
}

@compute @workgroup_size(WG)
fn backward_split4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    for (var j = first4(wid, nwg, lid); j < p.len; j += stride4(nwg)) {
        let i = value_index4(j);
        let d = gated(x4[i], x4[i + p.half]);
        let g = g4[j];
        out4[i] = g * d.da;
        out4[i + p.half] = g * d.db;
    }
}

@compute @workgroup_size(WG)
fn forward_pair(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    for (var j = first4(wid, nwg, lid); j < p.len; j += stride4(nwg)) {
        out4[j] = gated(x4[j], gate4[j]).y;
    }
}

@compute @workgroup_size(WG)
fn backward_pair(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    for (var j = first4(wid, nwg, lid); j < p.len; j += stride4(nwg)) {
        let d = gated(x4[j], gate4[j]);
        let g = g4[j];
        out4[j] = g * d.da;
        out_gate4[j] = g * d.db;
    }
}
