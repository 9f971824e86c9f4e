// Parameter updates in place, one element per invocation, with the L2 term folded into the
// gradient, g = ∇ + λ·θ (the gradient of (λ/2)‖θ‖² added):
//   sgd   θ ← θ − η·g
//   adam  m ← β₁m + (1 − β₁)g,  v ← β₂v + (1 − β₂)g²,
//         θ ← θ − η·(m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
// (Kingma & Ba; PyTorch's torch.optim.Adam with weight_decay λ). The host passes the bias
// corrections 1 − β₁ᵗ and 1 − β₂ᵗ of step t.
//! import grid

override WG: u32 = 256u;

struct Params {
    len: u32,
    lr: f32,
    weight_decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    // 1 − β₁ᵗ and 1 − β₂ᵗ.
    correction1: f32,
    correction2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> theta: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return invocation_index(wid, nwg, lid);
}

@compute @workgroup_size(WG)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if i >= p.len {
        return;
    }
    let g = grad[i] + p.weight_decay * theta[i];
    theta[i] -= p.lr * g;
}

@compute @workgroup_size(WG)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if i >= p.len {
        return;
    }
    let g = grad[i] + p.weight_decay * theta[i];
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    theta[i] -= p.lr * (mi / p.correction1) / (sqrt(vi / p.correction2) + p.eps);
}
