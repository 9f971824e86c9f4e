// Elementwise activations, forward y = f(x) and backward dx = g ⊙ f'(x), with PyTorch's formulas.
// Tensors are stored through the storage codec (f32, f16 or bf16: storage_*.wgsl); every
// function computes in f32 and its result is rounded once to the storage type.
//
// OP (override) selects the function; codes match `Activation::shader_code`
// (src/ops/activation.rs).
//   0 sigmoid      σ(x) = 1 / (1 + e^−x)                      σ' = σ(1 − σ)
//   1 tanh         tanh x                                      tanh' = 1 − tanh² x
//   2 relu         max(x, 0)                                   relu'(x) = [x > 0]        (0 at 0)
//   3 leaky_relu   x > 0 ? x : s·x          (p0 = s)           x > 0 ? 1 : s             (s at 0)
//   4 elu          x > 0 ? x : α(e^x − 1)   (p0 = α)           x > 0 ? 1 : α e^x         (α at 0)
//   5 selu         λ·elu(x, α₀)                                λ·elu'(x, α₀)
//   6 gelu         x Φ(x), Φ(x) = ½ erfc(−x/√2)                Φ(x) + x φ(x)
//   7 gelu_tanh    ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³) = x σ(2u)
//   8 silu         x σ(x)                                      σ(x)(1 + x(1 − σ(x)))
//   9 mish         x tanh(softplus x)                          t + x σ(x)(1 − t²)
//  10 softplus     βx > τ ? x : log(1 + e^{βx}) / β (p0 = β, p1 = τ, p2 = 1/β)   βx > τ ? 1 : σ(βx)
//  11 hardsigmoid  clamp((x + 3)/6, 0, 1)                      1/6 on (−3, 3), else 0
//  12 hardswish    x·clamp((x + 3)/6, 0, 1)                    x < −3 ? 0 : x ≥ 3 ? 1 : x/3 + ½
//  13 relu6        clamp(x, 0, 6)                              1 on (0, 6), else 0 (0 at both ends)
//  14 logsigmoid   log σ(x) = min(x, 0) − log(1 + e^−|x|)      σ(−x)
//  backward only:
//  15 sigmoid, from the saved output y                         g·y(1 − y)
//  16 tanh, from the saved output y                            g·(1 − y²)
//  the rest of torch.nn's family and ONNX's parameterisations (rrelu in eval mode is code 3):
//  17 celu         x > 0 ? x : α(e^{x/α} − 1) (p0 = α, p1 = 1/α)  x > 0 ? 1 : e^{x/α}
//  18 hardtanh     clamp(x, a, b)           (p0 = a, p1 = b)   1 on (a, b), else 0
//  19 softsign     x/(1 + |x|)                                 1/(1 + |x|)²   (NaN at ±∞)
//  20 tanhshrink   x − tanh x                                  tanh² x
//  21 threshold    x ≤ θ ? v : x            (p0 = θ, p1 = v)   x ≤ θ ? 0 : 1
//  22 hardshrink   |x| ≤ λ ? 0 : x          (p0 = λ)           |x| ≤ λ ? 0 : 1
//  23 softshrink   |x| ≤ λ ? 0 : x − λ·sign x (p0 = λ)         |x| ≤ λ ? 0 : 1
//  24 onnx_hardsigmoid clamp(αx + β, 0, 1)  (p0 = α, p1 = β)   α on 0 < αx + β < 1
//  25 onnx_selu    γ·elu(x, α)              (p0 = α, p1 = γ)   γ·elu'(x, α), 0 at x = 0
//  26 onnx_thresholded_relu x > α ? x : 0   (p0 = α)           x > α ? 1 : 0
//  27 onnx_swish   x σ(αx)                  (p0 = α)           σ(αx)(1 + αx(1 − σ(αx)))
//
// Numerics: every exponential whose result is used takes −|·| or a bounded argument, so nothing
// overflows (WGSL lets a compiler assume it does not); log(1 + e) is a polynomial in e (never
// formed from 1 + e); the saturating branches are selected rather than computed. NaN is
// detected by bits (a compiler may fold `x != x` or a compare into min/max) and routed explicitly:
// NaN in gives NaN out, except where PyTorch's backward defines otherwise (relu, leaky_relu,
// hardsigmoid, relu6: see `backward_checked`); forward formulas that carry NaN by themselves skip
// the test (`nan_by_formula`).
//! import math, grid
//! storage f32, f16, bf16

override OP: u32 = 0u;
override WG: u32 = 256u;

struct Params {
    // Number of vec4 elements in this launch.
    len: u32,
    p0: f32,
    p1: f32,
    // softplus: 1/β (a multiply is cheaper than a divide per element)
    p2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x_in: array<Stored4>;
@group(0) @binding(2) var<storage, read> g_in: array<Stored4>;
@group(0) @binding(3) var<storage, read_write> out: array<Stored4>;

// The op's parameters (p0, p1, p2) as x, y, z, copied once by each entry point before its loop
// (`load_param`): read from the uniform buffer inside the loop, softplus's three cost it 40 %
// more arithmetic on lavapipe. (A copy of the whole block, loop bound included, cost the ops
// without parameters about 10 %.)
var<private> param: vec3<f32>;

fn load_param() {
    param = vec3(p.p0, p.p1, p.p2);
}

const SELU_ALPHA: f32 = 1.6732632423543772;
const SELU_SCALE: f32 = 1.0507009873554805;

// 1 − tanh² v = 4e/(1 + e)² with e = e^−2|v|.
fn tanh_slope(v: V) -> V {
    let e = exp(-2.0 * abs(v));
    let r = 1.0 / (1.0 + e);
    return 4.0 * e * r * r;
}

// log(1 + e^z) = max(z, 0) + log(1 + e^−|z|).
fn softplus_raw(z: V) -> V {
    return select(splat(0.0), z, z > splat(0.0)) + log1p_unit(exp(-abs(z)));
}

fn elu(v: V, alpha: f32) -> V {
    return select(alpha * expm1(v), v, v > splat(0.0));
}

fn elu_slope(v: V, alpha: f32) -> V {
    return select(alpha * exp(v), splat(1.0), v > splat(0.0));
}

// tanh(softplus v) = n/(n + 2) with n = e^v(e^v + 2); 1 above v = 20.
fn tanh_softplus(v: V) -> V {
    let e = exp(min(v, splat(20.0)));
    let n = e * (e + 2.0);
    return select(n / (n + 2.0), splat(1.0), v > splat(20.0));
}

// mish'(v) = tanh(softplus v) + v σ(v)(1 − tanh²(softplus v)) = r(n + 4v·e(1 + e)·r) with
// e = e^v, n = e(e + 2), r = 1/(n + 2) (as 1 − tanh² = 4(n + 1)r², n + 1 = (1 + e)² and
// σ = e/(1 + e)): one exponential and one divide; 1 above v = 20, NaN at ±∞ as in PyTorch.
fn mish_slope(v: V) -> V {
    let e = exp(min(v, splat(20.0)));
    let n = e * (e + 2.0);
    let r = 1.0 / (n + 2.0);
    // v bounded below so that no order of the product overflows (e is 0 below v ≈ −104).
    let vb = max(v, splat(-128.0));
    let d = select(r * (n + 4.0 * vb * e * (1.0 + e) * r), splat(1.0), v > splat(20.0));
    // PyTorch's product form gives ∞·0 = NaN at ±∞.
    return select(d, nan(), is_inf(v));
}

// v − tanh v; below |v| = 0.5 its Taylor series v³(1/3 − 2v²/15 + 17v⁴/315 − …) to v¹⁵
// (relative error under 1e-6 there), since forming v − tanh v near 0 cancels all of v's digits.
fn tanhshrink(v: V) -> V {
    let u = v * v;
    let p = 0.333333343 + u * (-0.13333334 + u * (0.053968254 + u * (-0.021869488
        + u * (0.0088632355 + u * (-0.003592128 + u * 0.0014558344)))));
    return select(v - tanh_stable(v), v * u * p, abs(v) < splat(0.5));
}

// (v + 3)/6 is exactly 0 at −3 and 1 at 3, so clamping it gives PyTorch's branches (NaN is
// routed by the callers).
fn hardsigmoid(v: V) -> V {
    return clamp((v + 3.0) * (1.0 / 6.0), splat(0.0), splat(1.0));
}

fn forward_op(v: V) -> V {
    switch OP {
        case 0u: {
            return sigmoid(v);
        }
        case 1u: {
            return tanh_stable(v);
        }
        case 2u: {
            return select(v, splat(0.0), v <= splat(0.0));
        }
        case 3u: {
            return select(v * param.x, v, v > splat(0.0));
        }
        case 4u: {
            return elu(v, param.x);
        }
        case 5u: {
            return SELU_SCALE * elu(v, SELU_ALPHA);
        }
        case 6u: {
            return v * normal(v).cdf;
        }
        case 7u: {
            return v * sigmoid(2.0 * gelu_tanh_inner(v));
        }
        case 8u: {
            return v * sigmoid(v);
        }
        case 9u: {
            return v * tanh_softplus(v);
        }
        case 10u: {
            let z = param.x * v;
            return select(softplus_raw(z) * param.z, v, z > splat(param.y));
        }
        case 11u: {
            return hardsigmoid(v);
        }
        case 12u: {
            return v * hardsigmoid(v);
        }
        case 13u: {
            return select(select(v, splat(6.0), v >= splat(6.0)), splat(0.0), v <= splat(0.0));
        }
        case 14u: {
            return select(v, splat(0.0), v > splat(0.0)) - log1p_unit(exp(-abs(v)));
        }
        case 17u: {
            return select(param.x * expm1(min(v, splat(0.0)) * param.y), v, v > splat(0.0));
        }
        case 18u: {
            return clamp(v, splat(param.x), splat(param.y));
        }
        case 19u: {
            return select(v / (1.0 + abs(v)), nan(), is_inf(v));
        }
        case 20u: {
            return tanhshrink(v);
        }
        case 21u: {
            return select(v, splat(param.y), v <= splat(param.x));
        }
        case 22u: {
            return select(v, splat(0.0), abs(v) <= splat(param.x));
        }
        case 23u: {
            let shrunk = v - select(splat(-param.x), splat(param.x), v > splat(0.0));
            return select(shrunk, splat(0.0), abs(v) <= splat(param.x));
        }
        case 24u: {
            return clamp(param.x * v + param.y, splat(0.0), splat(1.0));
        }
        case 25u: {
            return param.y * elu(v, param.x);
        }
        case 26u: {
            return select(splat(0.0), v, v > splat(param.x));
        }
        case 27u: {
            return v * sigmoid(param.x * v);
        }
        default: {
            return nan();
        }
    }
}

// g ⊙ f'(v); for codes 15 and 16, v is the saved output y.
fn backward_op(v: V, g: V) -> V {
    switch OP {
        case 0u: {
            return g * logistic(v).slope;
        }
        case 1u: {
            return g * tanh_slope(v);
        }
        case 2u: {
            // PyTorch's threshold_backward: x <= 0 ? 0 : g, so NaN passes g through.
            return select(g, splat(0.0), v <= splat(0.0));
        }
        case 3u: {
            // x > 0 ? g : g·s, so the slope applies at 0 and at NaN.
            return select(g * param.x, g, v > splat(0.0));
        }
        case 4u: {
            return g * elu_slope(v, param.x);
        }
        case 5u: {
            return g * (SELU_SCALE * elu_slope(v, SELU_ALPHA));
        }
        case 6u: {
            let n = normal(v);
            return g * (n.cdf + v * n.pdf);
        }
        case 7u: {
            return g * gelu_tanh_slope(v);
        }
        case 8u: {
            let l = logistic(v);
            return g * (l.value + v * l.slope);
        }
        case 9u: {
            return g * mish_slope(v);
        }
        case 10u: {
            let z = param.x * v;
            return select(g * sigmoid(z), g, z > splat(param.y));
        }
        case 11u: {
            let inside = (v > splat(-3.0)) & (v < splat(3.0));
            return select(splat(0.0), g * (1.0 / 6.0), inside);
        }
        case 12u: {
            // PyTorch's vectorised kernel: g at exactly 3, NaN at NaN.
            let mid = g * (v * (1.0 / 3.0) + 0.5);
            return select(select(mid, g, v >= splat(3.0)), splat(0.0), v < splat(-3.0));
        }
        case 13u: {
            let inside = (v > splat(0.0)) & (v < splat(6.0));
            return select(splat(0.0), g, inside);
        }
        case 14u: {
            return g * sigmoid(-v);
        }
        case 15u: {
            return g * v * (1.0 - v);
        }
        case 16u: {
            return g * (1.0 - v * v);
        }
        case 17u: {
            return select(g * exp(min(v, splat(0.0)) * param.y), g, v > splat(0.0));
        }
        case 18u: {
            return select(splat(0.0), g, (v > splat(param.x)) & (v < splat(param.y)));
        }
        case 19u: {
            let d = 1.0 + abs(v);
            return select(g / (d * d), nan(), is_inf(v));
        }
        case 20u: {
            let t = tanh_stable(v);
            return g * (t * t);
        }
        case 21u: {
            return select(g, splat(0.0), v <= splat(param.x));
        }
        case 22u, 23u: {
            return select(g, splat(0.0), abs(v) <= splat(param.x));
        }
        case 24u: {
            let u = param.x * v + param.y;
            return select(splat(0.0), g * param.x, (u > splat(0.0)) & (u < splat(1.0)));
        }
        case 25u: {
            let d = select(param.x * exp(min(v, splat(0.0))), splat(1.0), v > splat(0.0));
            return select(g * (param.y * d), splat(0.0), v == splat(0.0));
        }
        case 26u: {
            return select(splat(0.0), g, v > splat(param.x));
        }
        case 27u: {
            let l = logistic(param.x * v);
            // Where σ(αv) saturates the second term is exactly 0 (αv may overflow there);
            // at ±∞ PyTorch's product gives ∞·0 = NaN.
            let d = select(l.value + param.x * v * l.slope, l.value, l.slope == splat(0.0));
            return g * select(d, nan(), is_inf(v));
        }
        default: {
            return nan();
        }
    }
}

// Whether f(NaN) is NaN by the formula alone, whatever a compiler makes of a comparison with
// NaN: the v·h(v) forms (gelu, gelu_tanh, silu, mish, hardswish) and leaky_relu, whose select
// chooses between two NaNs.
fn nan_by_formula() -> bool {
    return OP == 3u || OP == 6u || OP == 7u || OP == 8u || OP == 9u || OP == 12u || OP == 27u;
}

// f(v), with NaN in giving NaN out. Comparisons with NaN are not reliable on every backend
// (GLSL compilers fold `select(v, 0, v <= 0)` into `max`), so NaN is routed by its bits where
// the formula alone does not carry it.
fn forward_checked(v: V) -> V {
    if nan_by_formula() {
        return forward_op(v);
    }
    // onnx_thresholded_relu: NaN > α is false, so NaN gives 0 (as PyTorch's where).
    let at_nan = select(v, splat(0.0), OP == 26u);
    return select(forward_op(v), at_nan, is_nan(v));
}

// g·f'(v), with PyTorch's answer at NaN: relu and threshold pass g, leaky_relu (and rrelu)
// gives g·s, hardsigmoid, relu6, hardtanh, the shrinks and the ONNX clamps and thresholds give
// 0, the rest NaN.
fn backward_checked(v: V, g: V) -> V {
    var at_nan = nan();
    switch OP {
        case 2u, 21u: {
            at_nan = g;
        }
        case 3u: {
            at_nan = g * param.x;
        }
        case 11u, 13u, 18u, 22u, 23u, 24u, 25u, 26u: {
            at_nan = splat(0.0);
        }
        default: {}
    }
    return select(backward_op(v, g), at_nan, is_nan(v));
}



@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    load_param();
    for (var i = invocation_index(wid, nwg, lid); i < p.len; i += grid_stride(nwg)) {
        out[i] = store4(forward_checked(load4(x_in[i])));
    }
}

@compute @workgroup_size(WG)
fn forward_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    load_param();
    for (var i = invocation_index(wid, nwg, lid); i < p.len; i += grid_stride(nwg)) {
        out[i] = store4(forward_checked(load4(out[i])));
    }
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    load_param();
    for (var i = invocation_index(wid, nwg, lid); i < p.len; i += grid_stride(nwg)) {
        out[i] = store4(backward_checked(load4(x_in[i]), load4(g_in[i])));
    }
}

// In place over the gradient: out holds g on entry and dx on exit.
@compute @workgroup_size(WG)
fn backward_over_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    load_param();
    for (var i = invocation_index(wid, nwg, lid); i < p.len; i += grid_stride(nwg)) {
        out[i] = store4(backward_checked(load4(x_in[i]), load4(out[i])));
    }
}

// In place over the input: out holds x (or y) on entry and dx on exit.
@compute @workgroup_size(WG)
fn backward_over_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    load_param();
    for (var i = invocation_index(wid, nwg, lid); i < p.len; i += grid_stride(nwg)) {
        out[i] = store4(backward_checked(load4(out[i]), load4(g_in[i])));
    }
}
