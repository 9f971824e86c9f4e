// Negative log-likelihood over rows of C log-probabilities x (the class along the last dim;
// `ops/loss/class_dim.rs` moves PyTorch's dim-1 layout there), as torch.nn.functional.nll_loss:
//   loss_r = −w_y · x_{r,y}            (0 for a row whose class is the ignored marker)
//   ∂ loss / ∂x_{r,c} = −s · w_y · [c = y]
// with s = 1/Σ w_y over the rows not ignored for the mean, and 1 otherwise (the host sets it).

override WG: u32 = 256u;

// The class index of an ignored row.
const IGNORED: u32 = 0xffffffffu;

struct Params {
    rows: u32,
    classes: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> class_index: array<u32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;

fn first(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// One invocation per row: its loss.
@compute @workgroup_size(WG)
fn losses(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    for (var r = first(wid, nwg, lid); r < p.rows; r += nwg.x * nwg.y * WG) {
        let y = class_index[r];
        var loss = 0.0;
        if y != IGNORED {
            loss = -weight[y] * x[r * p.classes + y];
        }
        row_loss[r] = loss;
    }
}

// One invocation per element: the gradient, zero but at each row's class.
@compute @workgroup_size(WG)
fn gradient(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let total = p.rows * p.classes;
    for (var i = first(wid, nwg, lid); i < total; i += nwg.x * nwg.y * WG) {
        let r = i / p.classes;
        let y = class_index[r];
        var g = 0.0;
        if y != IGNORED && i - r * p.classes == y {
            g = -p.scale * weight[y];
        }
        grad[i] = g;
    }
}
