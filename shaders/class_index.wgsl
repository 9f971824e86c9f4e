// Class-index targets as the caller stores them on the device (u32, i32 or i64 words) turned
// into the u32 indices the cross-entropy kernels read, with PyTorch's rule checked on the device:
//   y = ignore_index          → IGNORED (zero loss and gradient, left out of the mean);
//   0 ≤ y < K                 → y, and w_y (1 without class weights) into `row_weight`;
//   anything else             → IGNORED as well, so that no kernel indexes out of range, and the
//                               row is recorded: status[0] = the least such row (atomicMin), which
//                               the host reports as Error::TargetOutOfRange before any result of
//                               the launch is read.
// A label is compared as a 64-bit integer (lo, hi) words: i32 labels are sign-extended, u32 ones
// zero-extended, i64 ones read as two words (little-endian).
//! import grid

override WG: u32 = 256u;
// Words per label: 1 (u32, i32) or 2 (i64).
override WIDTH: u32 = 1u;
// Whether one-word labels are signed (i32) rather than unsigned (u32).
override SIGNED: bool = true;
override HAS_WEIGHT: bool = false;


struct Params {
    // Labels in this launch.
    rows: u32,
    // Classes K.
    classes: u32,
    // ignore_index as two's-complement words.
    ignore_lo: u32,
    ignore_hi: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> class_index: array<u32>;
@group(0) @binding(3) var<storage, read_write> row_weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;

@compute @workgroup_size(WG)
fn convert(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let r = invocation_index(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let lo = labels[r * WIDTH];
    var hi = 0u;
    if WIDTH == 2u {
        hi = labels[r * 2u + 1u];
    } else if SIGNED && (lo & 0x80000000u) != 0u {
        hi = 0xffffffffu;
    }
    if lo == p.ignore_lo && hi == p.ignore_hi {
        class_index[r] = IGNORED;
        row_weight[r] = 0.0;
        return;
    }
    if hi == 0u && lo < p.classes {
        class_index[r] = lo;
        var w = 1.0;
        if HAS_WEIGHT {
            w = weight[lo];
        }
        row_weight[r] = w;
        return;
    }
    class_index[r] = IGNORED;
    row_weight[r] = 0.0;
    atomicMin(&status[0], r);
}

// Copies the label of the least offending row (status[0]) into status[1] (its low word) and
// status[2] (its high word, for i64), so that the error names the value without a read of the
// caller's buffer.
@compute @workgroup_size(1)
fn offender() {
    let r = atomicLoad(&status[0]);
    if r >= p.rows {
        return; // IGNORED: no label is out of range
    }
    atomicStore(&status[1], labels[r * WIDTH]);
    if WIDTH == 2u {
        atomicStore(&status[2], labels[r * 2u + 1u]);
    }
}
