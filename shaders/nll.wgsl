// Negative log-likelihood over rows of C log-probabilities x, as torch.nn.functional.nll_loss:
//   loss_r = −w_y · x_{r,y}            (0 for a row whose class is the ignored marker)
//   ∂ loss / ∂x_{r,c} = −s · w_y · [c = y]
// with s = 1/Σ w_y over the rows not ignored for the mean, and 1 otherwise (the host sets it).
// A row's values lie `stride` apart: 1 for the class along the last dim, S for PyTorch's
// [N, C, S] (row r = n·S + s starts at n·C·S + s). The host zeroes the gradient; one invocation
// per row writes its loss and its one non-zero gradient.
//! import grid

override WG: u32 = 256u;


struct Params {
    rows: u32,
    classes: u32,
    scale: f32,
    stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> class_index: array<u32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;

@compute @workgroup_size(WG)
fn losses(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let first = invocation_index(wid, nwg, lid);
    for (var r = first; r < p.rows; r += grid_stride(nwg)) {
        let y = class_index[r];
        var loss = 0.0;
        if y != IGNORED {
            let at = (r / p.stride) * p.classes * p.stride + r % p.stride + y * p.stride;
            loss = -weight[y] * x[at];
            grad[at] = -p.scale * weight[y];
        }
        row_loss[r] = loss;
    }
}
