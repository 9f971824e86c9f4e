// Tiled matrix product with the transposes a linear layer needs, f32 accumulation:
//   C[i, j] = Σ_k A'[i, k]·B'[k, j] (+ bias[j] with HAS_BIAS),  C of M × N,
// A' = A stored M × K row-major, or Aᵀ of A stored K × M (TRANS_A); B' = B stored K × N, or Bᵀ
// of B stored N × K (TRANS_B). The linear layer y = x·Wᵀ + b is (x, W, TRANS_B); its gradients
// dx = g·W and dW = gᵀ·x are (g, W) and (g, x, TRANS_A).
// A workgroup of 16 × 16 invocations computes a 64 × 64 block of C, each invocation a 4 × 4
// patch held in registers; the K dim is walked in tiles of 16, each staged in workgroup memory
// (64 × 16 of A', 16 × 64 of B'). Elements past the matrices' edges load as 0, and only those
// inside are written, so any shape works (ragged edges, a dim of 1).

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const THREADS: u32 = 256u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // Blocks of C along N, and in all (the grid may hold a few more workgroups).
    col_blocks: u32,
    blocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> tile_a: array<f32, 1024>; // [BM][BK]
var<workgroup> tile_b: array<f32, 1024>; // [BK][BN]

fn a_at(i: u32, kk: u32) -> f32 {
    if i >= p.m || kk >= p.k {
        return 0.0;
    }
    if TRANS_A {
        return a[kk * p.m + i];
    }
    return a[i * p.k + kk];
}

fn b_at(kk: u32, j: u32) -> f32 {
    if kk >= p.k || j >= p.n {
        return 0.0;
    }
    if TRANS_B {
        return b[j * p.k + kk];
    }
    return b[kk * p.n + j];
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let block = wid.y * nwg.x + wid.x;
    // The same for the whole workgroup, so the barriers below stay uniform.
    if block >= p.blocks {
        return;
    }
    let row0 = (block / p.col_blocks) * BM;
    let col0 = (block % p.col_blocks) * BN;
    let t = lid.y * 16u + lid.x;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var q = 0u; q < 4u; q++) {
            let e = t + q * THREADS;
            tile_a[e] = a_at(row0 + e / BK, k0 + e % BK);
            tile_b[e] = b_at(k0 + e / BN, col0 + e % BN);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let o = kk * BN + lid.x * 4u;
            let bv = vec4(tile_b[o], tile_b[o + 1u], tile_b[o + 2u], tile_b[o + 3u]);
            for (var r = 0u; r < 4u; r++) {
                acc[r] += tile_a[(lid.y * 4u + r) * BK + kk] * bv;
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let i = row0 + lid.y * 4u + r;
        if i >= p.m {
            break;
        }
        for (var q = 0u; q < 4u; q++) {
            let j = col0 + lid.x * 4u + q;
            if j < p.n {
                var v = acc[r][q];
                if HAS_BIAS {
                    v += bias[j];
                }
                c[i * p.n + j] = v;
            }
        }
    }
}

// C = A·Bᵀ + bias with A (M × K) and B (N × K) both row-major along K, K divisible by 4 (the
// linear layer's forward x·Wᵀ): no workgroup memory and no barrier. Each invocation forms a
// 4 × 4 patch of C from dot products of vec4s read straight from memory, four rows of A against
// four rows of B; patches past the edges read clamped rows and write nothing.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;

@compute @workgroup_size(16, 16)
fn matmul_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let tile = (wid.y * nwg.x + wid.x) * THREADS + lid;
    let col_patches = (p.n + 3u) / 4u;
    if tile >= p.blocks {
        return;
    }
    let i0 = (tile / col_patches) * 4u;
    let j0 = (tile % col_patches) * 4u;
    let k4 = p.k / 4u;
    var ra: array<u32, 4>;
    var rb: array<u32, 4>;
    for (var q = 0u; q < 4u; q++) {
        ra[q] = min(i0 + q, p.m - 1u) * k4;
        rb[q] = min(j0 + q, p.n - 1u) * k4;
    }
    var acc: array<vec4<f32>, 4>;
    for (var kk = 0u; kk < k4; kk++) {
        let b0 = b4[rb[0] + kk];
        let b1 = b4[rb[1] + kk];
        let b2 = b4[rb[2] + kk];
        let b3 = b4[rb[3] + kk];
        for (var r = 0u; r < 4u; r++) {
            let av = a4[ra[r] + kk];
            acc[r] += vec4(dot(av, b0), dot(av, b1), dot(av, b2), dot(av, b3));
        }
    }
    for (var r = 0u; r < 4u; r++) {
        let i = i0 + r;
        if i >= p.m {
            break;
        }
        for (var q = 0u; q < 4u; q++) {
            let j = j0 + q;
            if j < p.n {
                var v = acc[r][q];
                if HAS_BIAS {
                    v += bias[j];
                }
                c[i * p.n + j] = v;
            }
        }
    }
}

// The adapter's arithmetic peak, for the benchmark: each invocation runs p.k rounds of eight
// independent vec4 FMAs (64 flops a round) on registers and writes one value so that none is
// optimised away. Flops = invocations · p.k · 64.
@compute @workgroup_size(16, 16)
fn fma_peak(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.y * 16u + lid.x;
    let seed = f32(t) * 1e-3;
    var acc: array<vec4<f32>, 8>;
    for (var q = 0u; q < 8u; q++) {
        acc[q] = vec4(seed + f32(q));
    }
    let m = vec4(0.9999);
    let d = vec4(1e-4);
    for (var i = 0u; i < p.k; i++) {
        acc[0] = fma(acc[0], m, d);
        acc[1] = fma(acc[1], m, d);
        acc[2] = fma(acc[2], m, d);
        acc[3] = fma(acc[3], m, d);
        acc[4] = fma(acc[4], m, d);
        acc[5] = fma(acc[5], m, d);
        acc[6] = fma(acc[6], m, d);
        acc[7] = fma(acc[7], m, d);
    }
    var total = vec4(0.0);
    for (var q = 0u; q < 8u; q++) {
        total += acc[q];
    }
    c[(wid.y * nwg.x + wid.x) * THREADS + t] = dot(total, vec4(1.0));
}
