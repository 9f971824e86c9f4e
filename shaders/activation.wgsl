// Elementwise activations, forward y = f(x) and backward dx = g ⊙ f'(x), with PyTorch's formulas.
// Tensors are stored through the storage codec (f32, f16 or bf16: storage_*.wgsl); every
// function computes in f32 and its result is rounded once to the storage type.
//
// OP (override) selects the function by its op code; the codes are declared once, in the op
// table of src/definitions/activation.rs, and reach this file as the prelude's OP_NAME constants
// (with p0, p1, p2 packed there too). A test checks that every entry of the table has a case
// here, forward and backward.
//   sigmoid      σ(x) = 1 / (1 + e^−x)                      σ' = σ(1 − σ)
//   tanh         tanh x                                      tanh' = 1 − tanh² x
//   relu         max(x, 0)                                   relu'(x) = [x > 0]        (0 at 0)
//   leaky_relu   x > 0 ? x : s·x          (p0 = s)           x > 0 ? 1 : s             (s at 0)
//                (rrelu_eval too, with s = (lower + upper)/2)
//   elu          x > 0 ? x : α(e^x − 1)   (p0 = α)           x > 0 ? 1 : α e^x         (α at 0)
//   selu         λ·elu(x, α₀)                                λ·elu'(x, α₀)
//   gelu         x Φ(x), Φ(x) = ½ erfc(−x/√2)                Φ(x) + x φ(x)
//   gelu_tanh    ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³) = x σ(2u)
//   silu         x σ(x)                                      σ(x)(1 + x(1 − σ(x)))
//   mish         x tanh(softplus x)                          t + x σ(x)(1 − t²)
//   softplus     βx > τ ? x : log(1 + e^{βx}) / β (p0 = β, p1 = τ, p2 = 1/β)   βx > τ ? 1 : σ(βx)
//   hardsigmoid  clamp((x + 3)/6, 0, 1)                      1/6 on (−3, 3), else 0
//   hardswish    x·clamp((x + 3)/6, 0, 1)                    x < −3 ? 0 : x ≥ 3 ? 1 : x/3 + ½
//   relu6        clamp(x, 0, 6)                              1 on (0, 6), else 0 (0 at both ends)
//   logsigmoid   log σ(x) = min(x, 0) − log(1 + e^−|x|)      σ(−x)
//  backward only:
//   sigmoid_from_output, from the saved output y              g·y(1 − y)
//   tanh_from_output, from the saved output y                 g·(1 − y²)
//  the rest of torch.nn's family and ONNX's parameterisations:
//   celu         x > 0 ? x : α(e^{x/α} − 1) (p0 = α, p1 = 1/α)  x > 0 ? 1 : e^{x/α}
//   hardtanh     clamp(x, a, b)           (p0 = a, p1 = b)   1 on (a, b), else 0 (a, b may be ±∞)
//   softsign     x/(1 + |x|)                                 1/(1 + |x|)²   (NaN at ±∞)
//   tanhshrink   x − tanh x                                  tanh² x
//   threshold    x ≤ θ ? v : x            (p0 = θ, p1 = v)   x ≤ θ ? 0 : 1
//   hardshrink   |x| ≤ λ ? 0 : x          (p0 = λ)           |x| ≤ λ ? 0 : 1
//   softshrink   |x| ≤ λ ? 0 : x − λ·sign x (p0 = λ)         |x| ≤ λ ? 0 : 1
//   onnx_hardsigmoid clamp(αx + β, 0, 1)  (p0 = α, p1 = β)   α on 0 < αx + β < 1
//   onnx_selu    γ·elu(x, α)              (p0 = α, p1 = γ)   γ·elu'(x, α), 0 at x = 0
//   onnx_thresholded_relu x > α ? x : 0   (p0 = α)           x > α ? 1 : 0
//   onnx_swish   x σ(αx)                  (p0 = α)           σ(αx)(1 + αx(1 − σ(αx)))
//                (quick_gelu too, with α = 1.702 as an f32)
//   squared_relu max(x, 0)²                                  2·max(x, 0)
//
// Numerics: every exponential whose result is used takes −|·| or a bounded argument, so nothing
// overflows (WGSL lets a compiler assume it does not); log(1 + e) is a polynomial in e (never
// formed from 1 + e); the saturating branches are selected rather than computed. NaN is
// detected by bits (a compiler may fold `x != x` or a compare into min/max) and routed explicitly:
// NaN in gives NaN out, except where PyTorch defines otherwise; the op table declares each op's
// answer at NaN, which reaches this file as the prelude's NAN_* masks of op codes (see
// `forward_checked` and `backward_checked`); forward formulas that carry NaN by themselves skip
// the test (NAN_BY_FORMULA).
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

// x·σ(αx) (onnx_swish, quick_gelu): σ never overflows, and at −∞ the product is −∞·0 = NaN
// (PyTorch's answer), carried by the formula.
fn swish(v: V, alpha: f32) -> V {
    return v * sigmoid(alpha * v);
}

// g·(σ(αv) + αv·σ'(αv)). Where σ(αv) saturates the second term is exactly 0 (αv may overflow
// there); at ±∞ PyTorch's product gives ∞·0 = NaN.
fn swish_backward(v: V, g: V, alpha: f32) -> V {
    let l = logistic(alpha * v);
    let d = select(l.value + alpha * v * l.slope, l.value, l.slope == splat(0.0));
    return g * select(d, nan(), is_inf(v));
}

// (v + 3)/6 is exactly 0 at −3 and 1 at 3, so clamping it gives PyTorch's branches (NaN is
// routed by the callers).
fn hardsigmoid(v: V) -> V {
    return clamp((v + 3.0) * (1.0 / 6.0), splat(0.0), splat(1.0));
}

fn forward_op(v: V) -> V {
    switch OP {
        case OP_SIGMOID: {
            return sigmoid(v);
        }
        case OP_TANH: {
            return tanh_stable(v);
        }
        case OP_RELU: {
            return select(v, splat(0.0), v <= splat(0.0));
        }
        case OP_LEAKY_RELU, OP_RRELU_EVAL: {
            return select(v * param.x, v, v > splat(0.0));
        }
        case OP_ELU: {
            return elu(v, param.x);
        }
        case OP_SELU: {
            return SELU_SCALE * elu(v, SELU_ALPHA);
        }
        case OP_GELU: {
            return v * normal(v).cdf;
        }
        case OP_GELU_TANH: {
            return v * sigmoid(2.0 * gelu_tanh_inner(v));
        }
        case OP_SILU: {
            return v * sigmoid(v);
        }
        case OP_MISH: {
            return v * tanh_softplus(v);
        }
        case OP_SOFTPLUS: {
            let z = param.x * v;
            return select(softplus_raw(z) * param.z, v, z > splat(param.y));
        }
        case OP_HARDSIGMOID: {
            return hardsigmoid(v);
        }
        case OP_HARDSWISH: {
            return v * hardsigmoid(v);
        }
        case OP_RELU6: {
            return select(select(v, splat(6.0), v >= splat(6.0)), splat(0.0), v <= splat(0.0));
        }
        case OP_LOGSIGMOID: {
            return select(v, splat(0.0), v > splat(0.0)) - log1p_unit(exp(-abs(v)));
        }
        case OP_CELU: {
            return select(param.x * expm1(min(v, splat(0.0)) * param.y), v, v > splat(0.0));
        }
        case OP_HARDTANH: {
            return clamp(v, splat(param.x), splat(param.y));
        }
        case OP_SOFTSIGN: {
            return select(v / (1.0 + abs(v)), nan(), is_inf(v));
        }
        case OP_TANHSHRINK: {
            return tanhshrink(v);
        }
        case OP_THRESHOLD: {
            return select(v, splat(param.y), v <= splat(param.x));
        }
        case OP_HARDSHRINK: {
            return select(v, splat(0.0), abs(v) <= splat(param.x));
        }
        case OP_SOFTSHRINK: {
            let shrunk = v - select(splat(-param.x), splat(param.x), v > splat(0.0));
            return select(shrunk, splat(0.0), abs(v) <= splat(param.x));
        }
        case OP_ONNX_HARDSIGMOID: {
            return clamp(param.x * v + param.y, splat(0.0), splat(1.0));
        }
        case OP_ONNX_SELU: {
            return param.y * elu(v, param.x);
        }
        case OP_ONNX_THRESHOLDED_RELU: {
            return select(splat(0.0), v, v > splat(param.x));
        }
        case OP_ONNX_SWISH, OP_QUICK_GELU: {
            return swish(v, param.x);
        }
        case OP_SQUARED_RELU: {
            let r = select(v, splat(0.0), v <= splat(0.0));
            return r * r;
        }
        default: {
            return nan();
        }
    }
}

// g ⊙ f'(v); for codes 15 and 16, v is the saved output y.
fn backward_op(v: V, g: V) -> V {
    switch OP {
        case OP_SIGMOID: {
            return g * logistic(v).slope;
        }
        case OP_TANH: {
            return g * tanh_slope(v);
        }
        case OP_RELU: {
            // PyTorch's threshold_backward: x <= 0 ? 0 : g, so NaN passes g through.
            return select(g, splat(0.0), v <= splat(0.0));
        }
        case OP_LEAKY_RELU, OP_RRELU_EVAL: {
            // x > 0 ? g : g·s, so the slope applies at 0 and at NaN.
            return select(g * param.x, g, v > splat(0.0));
        }
        case OP_ELU: {
            return g * elu_slope(v, param.x);
        }
        case OP_SELU: {
            return g * (SELU_SCALE * elu_slope(v, SELU_ALPHA));
        }
        case OP_GELU: {
            let n = normal(v);
            return g * (n.cdf + v * n.pdf);
        }
        case OP_GELU_TANH: {
            return g * gelu_tanh_slope(v);
        }
        case OP_SILU: {
            let l = logistic(v);
            return g * (l.value + v * l.slope);
        }
        case OP_MISH: {
            return g * mish_slope(v);
        }
        case OP_SOFTPLUS: {
            let z = param.x * v;
            return select(g * sigmoid(z), g, z > splat(param.y));
        }
        case OP_HARDSIGMOID: {
            let inside = (v > splat(-3.0)) & (v < splat(3.0));
            return select(splat(0.0), g * (1.0 / 6.0), inside);
        }
        case OP_HARDSWISH: {
            // PyTorch's vectorised kernel: g at exactly 3, NaN at NaN.
            let mid = g * (v * (1.0 / 3.0) + 0.5);
            return select(select(mid, g, v >= splat(3.0)), splat(0.0), v < splat(-3.0));
        }
        case OP_RELU6: {
            let inside = (v > splat(0.0)) & (v < splat(6.0));
            return select(splat(0.0), g, inside);
        }
        case OP_LOGSIGMOID: {
            return g * sigmoid(-v);
        }
        case OP_SIGMOID_FROM_OUTPUT: {
            return g * v * (1.0 - v);
        }
        case OP_TANH_FROM_OUTPUT: {
            return g * (1.0 - v * v);
        }
        case OP_CELU: {
            return select(g * exp(min(v, splat(0.0)) * param.y), g, v > splat(0.0));
        }
        case OP_HARDTANH: {
            return select(splat(0.0), g, (v > splat(param.x)) & (v < splat(param.y)));
        }
        case OP_SOFTSIGN: {
            let d = 1.0 + abs(v);
            return select(g / (d * d), nan(), is_inf(v));
        }
        case OP_TANHSHRINK: {
            let t = tanh_stable(v);
            return g * (t * t);
        }
        case OP_THRESHOLD: {
            return select(g, splat(0.0), v <= splat(param.x));
        }
        case OP_HARDSHRINK, OP_SOFTSHRINK: {
            return select(g, splat(0.0), abs(v) <= splat(param.x));
        }
        case OP_ONNX_HARDSIGMOID: {
            let u = param.x * v + param.y;
            return select(splat(0.0), g * param.x, (u > splat(0.0)) & (u < splat(1.0)));
        }
        case OP_ONNX_SELU: {
            let d = select(param.x * exp(min(v, splat(0.0))), splat(1.0), v > splat(0.0));
            return select(g * (param.y * d), splat(0.0), v == splat(0.0));
        }
        case OP_ONNX_THRESHOLDED_RELU: {
            return select(splat(0.0), g, v > splat(param.x));
        }
        case OP_ONNX_SWISH, OP_QUICK_GELU: {
            return swish_backward(v, g, param.x);
        }
        case OP_SQUARED_RELU: {
            // 2·relu(v)·g as t + t with t = v·g: the product is rounded once and doubling it is
            // exact, so it overflows only where the answer does. Written as a sum: Mesa moves a
            // constant factor inwards, and (2v)·g overflows at v > 1.7e38.
            let t = v * g;
            return select(t + t, splat(0.0), v <= splat(0.0));
        }
        default: {
            return nan();
        }
    }
}

// Whether op OP is in `mask`, a set of op codes from the prelude (bit c for op c).
fn op_in(mask: u32) -> bool {
    return ((mask >> OP) & 1u) == 1u;
}

// f(v), with PyTorch's answer at NaN: NaN, or 0 for the ops of NAN_FORWARD_ZERO (x > α ? x : 0
// fails at NaN). Comparisons with NaN are not reliable on every backend (GLSL compilers fold
// `select(v, 0, v <= 0)` into `max`), so NaN is routed by its bits, except for the ops whose
// formula carries it by itself (NAN_BY_FORMULA: the v·h(v) forms, and leaky_relu's select
// between two NaNs).
fn forward_checked(v: V) -> V {
    if op_in(NAN_BY_FORMULA) {
        return forward_op(v);
    }
    let at_nan = select(v, splat(0.0), op_in(NAN_FORWARD_ZERO));
    return select(forward_op(v), at_nan, is_nan(v));
}

// g·f'(v), with PyTorch's answer at NaN: g (NAN_BACKWARD_GRAD: relu, threshold), g·p0
// (NAN_BACKWARD_GRAD_SLOPE: leaky_relu, rrelu), 0 (NAN_BACKWARD_ZERO: the clamps, shrinks and
// thresholds), NaN for the rest.
fn backward_checked(v: V, g: V) -> V {
    var at_nan = nan();
    if op_in(NAN_BACKWARD_GRAD) {
        at_nan = g;
    } else if op_in(NAN_BACKWARD_GRAD_SLOPE) {
        at_nan = g * param.x;
    } else if op_in(NAN_BACKWARD_ZERO) {
        at_nan = splat(0.0);
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
