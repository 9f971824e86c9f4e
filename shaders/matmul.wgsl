// Matrix products with the transposes a linear layer needs, f32 accumulation:
//   C[i, j] = Σ_k A'[i, k]·B'[k, j] (+ bias[j] with HAS_BIAS) (+ C[i, j] with ACCUMULATE),
// C of M × N; A' = A stored M × K row-major, or Aᵀ of A stored K × M (TRANS_A); B' = B stored
// K × N, or Bᵀ of B stored N × K (TRANS_B). The linear layer y = x·Wᵀ + b is (x, W, TRANS_B);
// its gradients dx = g·W and dW = gᵀ·x are (g, W) and (g, x, TRANS_A).
// Two kernels: `matmul` (tiled, below) and `matmul_patches` (registers only, further down).
// In `matmul` a workgroup of 16 × 16 invocations computes a 64 × 64 block of C, each invocation a 4 × 4
// patch held in registers; the K dim is walked in tiles of 16, each staged in workgroup memory
// (64 × 16 of A', 16 × 64 of B'), every invocation loading one vec4 of each tile along the dim
// its operand is contiguous in (VEC_A, VEC_B) or four elements. Elements past the matrices'
// edges load as 0, and only those inside are written, so any shape works (ragged edges, a dim
// of 1).
//! import grid

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
// Whether A', B' are read as vec4s along the dim each is stored contiguous in (the host sets
// them when that dim is a multiple of 4), and whether matmul_patches' neighbouring
// invocations take neighbouring patches down M rather than across N (see there).
override VEC_A: bool = false;
override VEC_B: bool = false;
override LANES_ALONG_M: bool = false;

const BM: u32 = MATMUL_BLOCK;
const BN: u32 = MATMUL_BLOCK;
const BK: u32 = MATMUL_TILE_K;
const WG: u32 = MATMUL_THREADS;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // Blocks of C along N, and in all (the grid may hold a few more workgroups).
    col_blocks: u32,
    blocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// A and B as vec4s (a tensor's storage holds whole vec4s); single elements are taken out of
// them (a_at4, b_at4).
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> tile_a: array<f32, 1024>; // [BM][BK]
var<workgroup> tile_b: array<f32, 1024>; // [BK][BN]

// Where A'[i, kk] and B'[kk, j] are stored.
fn a_index(i: u32, kk: u32) -> u32 {
    return select(i * p.k + kk, kk * p.m + i, TRANS_A);
}

fn b_index(kk: u32, j: u32) -> u32 {
    return select(kk * p.n + j, j * p.k + kk, TRANS_B);
}


// Invocation t's share of the A' tile (rows row0.., K from k0): elements t·4 … t·4 + 3 of the
// tile, in the order its operand is stored, so that they are one vec4 with VEC_A.
fn stage_tile_a(t: u32, row0: u32, k0: u32) {
    let e = t * 4u;
    if TRANS_A {
        // A stored K × M: four neighbouring rows i at one kk.
        let kk = e / BM;
        let i = e % BM;
        let inside = row0 + i < p.m && k0 + kk < p.k;
        let v = load4_a(inside, a_index(row0 + i, k0 + kk), row0 + i, k0 + kk, true);
        for (var q = 0u; q < 4u; q++) {
            tile_a[(i + q) * BK + kk] = v[q];
        }
    } else {
        // A stored M × K: four neighbouring kk in row i.
        let i = e / BK;
        let kk = e % BK;
        let inside = row0 + i < p.m && k0 + kk < p.k;
        let v = load4_a(inside, a_index(row0 + i, k0 + kk), row0 + i, k0 + kk, false);
        for (var q = 0u; q < 4u; q++) {
            tile_a[i * BK + kk + q] = v[q];
        }
    }
}

// The same for the B' tile (K from k0, columns col0..).
fn stage_tile_b(t: u32, col0: u32, k0: u32) {
    let e = t * 4u;
    if TRANS_B {
        // B stored N × K: four neighbouring kk in column j.
        let j = e / BK;
        let kk = e % BK;
        let inside = k0 + kk < p.k && col0 + j < p.n;
        let v = load4_b(inside, b_index(k0 + kk, col0 + j), k0 + kk, col0 + j, false);
        for (var q = 0u; q < 4u; q++) {
            tile_b[(kk + q) * BN + j] = v[q];
        }
    } else {
        // B stored K × N: four neighbouring columns j at one kk.
        let kk = e / BN;
        let j = e % BN;
        let inside = k0 + kk < p.k && col0 + j < p.n;
        let v = load4_b(inside, b_index(k0 + kk, col0 + j), k0 + kk, col0 + j, true);
        for (var q = 0u; q < 4u; q++) {
            tile_b[kk * BN + j + q] = v[q];
        }
    }
}

// Four elements of A' from stored index `at` on (row i, K index kk): a whole vec4 with VEC_A
// (the first element inside means all four are, that dim being a multiple of 4), else element
// by element, stepping i when `along_i` (A stored transposed), else kk.
fn load4_a(inside: bool, at: u32, i: u32, kk: u32, along_i: bool) -> vec4<f32> {
    if VEC_A {
        return select(vec4(0.0), a4[at / 4u], inside);
    }
    var v = vec4(0.0);
    for (var q = 0u; q < 4u; q++) {
        if along_i {
            v[q] = a_at4(i + q, kk);
        } else {
            v[q] = a_at4(i, kk + q);
        }
    }
    return v;
}

// The same for B' (K index kk, column j), stepping j when `along_j` (B stored K × N).
fn load4_b(inside: bool, at: u32, kk: u32, j: u32, along_j: bool) -> vec4<f32> {
    if VEC_B {
        return select(vec4(0.0), b4[at / 4u], inside);
    }
    var v = vec4(0.0);
    for (var q = 0u; q < 4u; q++) {
        if along_j {
            v[q] = b_at4(kk, j + q);
        } else {
            v[q] = b_at4(kk + q, j);
        }
    }
    return v;
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let block = group_index(wid, nwg);
    // The same for the whole workgroup, so the barriers below stay uniform.
    if block >= p.blocks {
        return;
    }
    let row0 = (block / p.col_blocks) * BM;
    let col0 = (block % p.col_blocks) * BN;
    let t = lid.y * 16u + lid.x;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        stage_tile_a(t, row0, k0);
        stage_tile_b(t, col0, k0);
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
                store(i * p.n + j, acc[r][q], j);
            }
        }
    }
}

// The same product without workgroup memory or barriers, for any transposition: each
// invocation forms a 4 × 4 patch of C in registers, walking K four at a time. The 4 × 4 patches
// of A' and B' are read as four vec4s along whichever dim each operand is contiguous in (VEC_A,
// VEC_B: the host sets them when that dim is a multiple of 4), else element by element (as is
// a last, partial group of K), and multiplied as matrices:
//   acc += B'[k0.., j0..] · A'[i0.., k0..]   (mat4x4 columns: acc[r] = C[i0 + r, j0..j0 + 3]).
// Patches past M or N read clamped rows and write nothing. With ACCUMULATE, C += the product.
// Neighbouring invocations take neighbouring patches across N (each streams its own rows of
// a B stored N × K, all read the same rows of A'), or down M with LANES_ALONG_M (each streams
// its own rows of an A stored M × K): the host picks the operand stored along K to stream.
// A'[i, kk] and B'[kk, j], 0 past the edges.
fn a_at4(i: u32, kk: u32) -> f32 {
    if i >= p.m || kk >= p.k {
        return 0.0;
    }
    let e = a_index(i, kk);
    return a4[e / 4u][e % 4u];
}

fn b_at4(kk: u32, j: u32) -> f32 {
    if kk >= p.k || j >= p.n {
        return 0.0;
    }
    let e = b_index(kk, j);
    return b4[e / 4u][e % 4u];
}

// Column r: A'[i0 + r, k0..k0 + 3], for a whole group of four along K.
fn a_patch(i0: u32, k0: u32) -> mat4x4<f32> {
    if VEC_A {
        if TRANS_A {
            // A is K × M (M a multiple of 4): row k0 + q holds A'[i0..i0 + 3, k0 + q].
            let m4 = p.m / 4u;
            let c = i0 / 4u;
            return transpose(mat4x4(a4[k0 * m4 + c], a4[(k0 + 1u) * m4 + c],
                                    a4[(k0 + 2u) * m4 + c], a4[(k0 + 3u) * m4 + c]));
        }
        // A is M × K (K a multiple of 4).
        let k4 = p.k / 4u;
        let q = k0 / 4u;
        let last = p.m - 1u;
        return mat4x4(a4[min(i0, last) * k4 + q], a4[min(i0 + 1u, last) * k4 + q],
                      a4[min(i0 + 2u, last) * k4 + q], a4[min(i0 + 3u, last) * k4 + q]);
    }
    return a_patch_elements(i0, k0);
}

// a_patch element by element, zero past the edges (K's last, partial group included).
fn a_patch_elements(i0: u32, k0: u32) -> mat4x4<f32> {
    var m: mat4x4<f32>;
    for (var r = 0u; r < 4u; r++) {
        m[r] = vec4(a_at4(i0 + r, k0), a_at4(i0 + r, k0 + 1u), a_at4(i0 + r, k0 + 2u),
                    a_at4(i0 + r, k0 + 3u));
    }
    return m;
}

// Column q: B'[k0 + q, j0..j0 + 3], for a whole group of four along K.
fn b_patch(k0: u32, j0: u32) -> mat4x4<f32> {
    if VEC_B {
        if TRANS_B {
            // B is N × K (K a multiple of 4): row j0 + q holds B'[k0..k0 + 3, j0 + q].
            let k4 = p.k / 4u;
            let q = k0 / 4u;
            let last = p.n - 1u;
            return transpose(mat4x4(b4[min(j0, last) * k4 + q], b4[min(j0 + 1u, last) * k4 + q],
                                    b4[min(j0 + 2u, last) * k4 + q],
                                    b4[min(j0 + 3u, last) * k4 + q]));
        }
        // B is K × N (N a multiple of 4).
        let n4 = p.n / 4u;
        let c = j0 / 4u;
        return mat4x4(b4[k0 * n4 + c], b4[(k0 + 1u) * n4 + c], b4[(k0 + 2u) * n4 + c],
                      b4[(k0 + 3u) * n4 + c]);
    }
    return b_patch_elements(k0, j0);
}

// b_patch element by element, zero past the edges.
fn b_patch_elements(k0: u32, j0: u32) -> mat4x4<f32> {
    var m: mat4x4<f32>;
    for (var q = 0u; q < 4u; q++) {
        m[q] = vec4(b_at4(k0 + q, j0), b_at4(k0 + q, j0 + 1u), b_at4(k0 + q, j0 + 2u),
                    b_at4(k0 + q, j0 + 3u));
    }
    return m;
}

@compute @workgroup_size(16, 16)
fn matmul_patches(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let tile = invocation_index(wid, nwg, lid);
    if tile >= p.blocks {
        return;
    }
    let col_patches = (p.n + 3u) / 4u;
    var i0 = (tile / col_patches) * 4u;
    var j0 = (tile % col_patches) * 4u;
    if LANES_ALONG_M {
        let row_patches = (p.m + 3u) / 4u;
        i0 = (tile % row_patches) * 4u;
        j0 = (tile / row_patches) * 4u;
    }
    var acc: mat4x4<f32>;
    // Whole groups of four along K (VEC_A and VEC_B are constants: no branch in the loop),
    // then the partial group element by element.
    let whole = p.k / 4u * 4u;
    for (var k0 = 0u; k0 < whole; k0 += 4u) {
        acc += b_patch(k0, j0) * a_patch(i0, k0);
    }
    if whole < p.k {
        acc += b_patch_elements(whole, j0) * a_patch_elements(i0, whole);
    }
    for (var r = 0u; r < 4u; r++) {
        let i = i0 + r;
        if i >= p.m {
            break;
        }
        for (var q = 0u; q < 4u; q++) {
            let j = j0 + q;
            if j < p.n {
                store(i * p.n + j, acc[r][q], j);
            }
        }
    }
}

// C[at] = v (+ bias[j]) (+ C[at] with ACCUMULATE).
fn store(at: u32, v: f32, j: u32) {
    var out = v;
    if HAS_BIAS {
        out += bias[j];
    }
    if ACCUMULATE {
        out += c[at];
    }
    c[at] = out;
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
    c[group_index(wid, nwg) * WG + t] = dot(total, vec4(1.0));
}
