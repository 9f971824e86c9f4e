// Shared elementwise helpers of the elementwise kernel files:
// σ(v) = 1/(1 + e^−v) evaluated without overflow (and σ' with it), log(1 + e) for 0 ≤ e ≤ 1 to
// 2 ulp, e^v − 1 to 4 ulp, tanh through it, the normal CDF and density (for gelu), and NaN
// tests by bits (special.wgsl).
//! import special

alias V = vec4<f32>;

fn splat(v: f32) -> V {
    return V(v);
}

fn is_nan(v: V) -> vec4<bool> {
    return is_nan4(v);
}

fn is_inf(v: V) -> vec4<bool> {
    return is_inf4(v);
}

fn nan() -> V {
    return V(nan_f32());
}

// σ(v) from e = e^−|v|: 1/(1 + e) for v ≥ 0, e/(1 + e) otherwise.
fn sigmoid(v: V) -> V {
    let e = exp(-abs(v));
    let r = 1.0 / (1.0 + e);
    return select(e * r, r, v >= splat(0.0));
}

// log(1 + e) for 0 ≤ e ≤ 1 to 2 ulp, relative: e·P(e) with P a degree-9 polynomial fitted to
// log(1 + e)/e on [0, 1] for the least relative error (4.7e-9 before rounding; at most 1.8 ulp
// evaluated in f32 in this order, measured at 4,400 points against 40-digit references).
// Forming 1 + e first would lose e's low bits; this never does, and needs no divide.
fn log1p_unit(e: V) -> V {
    // Estrin's scheme: a short dependency chain instead of nine multiply-adds in a row.
    let e2 = e * e;
    let e4 = e2 * e2;
    let a0 = -0.499999017 + 0.333299607 * e;
    let a1 = -0.249541119 + 0.196758404 * e;
    let a2 = -0.153053343 + 0.106032558 * e;
    let a3 = -0.056955941 + 0.0198497139 * e;
    let p = (a0 + a1 * e2) + (a2 + a3 * e2) * e4 - 0.00324366987 * (e4 * e4);
    return e * (1.0 + e * p);
}

// e^v − 1 to 4 ulp, relative, also where it is tiny: below |v| = 0.35 a polynomial (Taylor to
// v⁸, whose remainder is under 1e-9 relative there), above it e^v − 1, which then cancels
// less than a factor of 3.4. Forming e^v − 1 near 0 would lose every digit: e^(1e-8) is 1 in f32.
fn expm1(v: V) -> V {
    let v2 = v * v;
    let v4 = v2 * v2;
    let p = (0.5 + 0.166666672 * v) + (0.0416666679 + 0.00833333377 * v) * v2
        + (0.00138888892 + 0.000198412701 * v) * v4;
    return select(exp(v) - 1.0, v + v2 * p, abs(v) < splat(0.35));
}

// tanh v = sign(v)·(−m)/(2 + m) with m = e^−2|v| − 1 (`expm1`, so that a small v keeps its
// digits: 1 − e^−2|v| is off by up to an ulp of 1, which is all of tanh v below |v| ≈ 1e-8).
fn tanh_stable(v: V) -> V {
    let m = expm1(-2.0 * abs(v));
    let t = -m / (2.0 + m);
    return select(t, -t, v < splat(0.0));
}

const FRAC_1_SQRT_2: f32 = 0.7071067811865476;
const FRAC_1_SQRT_2PI: f32 = 0.3989422804014327;
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_TANH_K: f32 = 0.044715;

// σ(v) and σ'(v) = σ(1 − σ) from one exponential e = e^−|v| and r = 1/(1 + e): σ is r for
// v ≥ 0 and e·r below (as `sigmoid`), σ' = e·r², exact in both tails.
struct Logistic {
    value: V,
    slope: V,
}

fn logistic(v: V) -> Logistic {
    let e = exp(-abs(v));
    let r = 1.0 / (1.0 + e);
    let er = e * r;
    return Logistic(select(er, r, v >= splat(0.0)), er * r);
}

// erfc(z)·e^(z²)/t for z ≥ 0 as a polynomial in t = 1/(1 + z/2) ∈ (0, 1], fitted to 40-digit
// values for the least relative error (1.1e-8, 4e-8 with its coefficients rounded to f32;
// erfc from it is within 7e-7 for z ≤ 3.8, where gelu is above 1e-6, and 4e-6 beyond),
// evaluated by Estrin's scheme.
fn erfcx_over_t(t: V) -> V {
    let t2 = t * t;
    let t4 = t2 * t2;
    let q0 = (0.282094806 + 0.282093853 * t) + (0.246880546 + 0.17537719 * t) * t2;
    let q1 = (0.0929984674 + -0.0572249517 * t) + (0.127072677 + -0.446953863 * t) * t2;
    let q2 = (0.48615858 + -0.230847925 * t) + 0.0423505977 * t2;
    return (q0 + q1 * t4) + q2 * (t4 * t4);
}

// Φ(v), the standard normal CDF, accurate in both tails, and φ(v), the density, sharing the
// one exponential e^(−v²/2): Φ(−|v|) = ½ erfc(z) = ½·t·erfcx_over_t(t)·e^(−z²), z = |v|/√2.
struct Normal {
    cdf: V,
    pdf: V,
}

fn normal(v: V) -> Normal {
    let z = abs(v) * FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let gauss = exp(-z * z);
    let half_c = 0.5 * t * erfcx_over_t(t) * gauss;
    return Normal(select(1.0 - half_c, half_c, v < splat(0.0)), FRAC_1_SQRT_2PI * gauss);
}

fn gelu_tanh_inner(v: V) -> V {
    return SQRT_2_OVER_PI * (v + GELU_TANH_K * v * v * v);
}

// gelu_tanh'(v) = σ(2u) + 2v·σ'(2u)·u', u' = √(2/π)(1 + 3·0.044715v²); exactly σ(2u) where
// σ(2u) saturates (v·u' may overflow there), and NaN at ±∞ as PyTorch's ∞·0.
fn gelu_tanh_slope(v: V) -> V {
    let l = logistic(2.0 * gelu_tanh_inner(v));
    let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_K * v * v);
    let d = select(l.value + 2.0 * v * l.slope * du, l.value, l.slope == splat(0.0));
    return select(d, nan(), is_inf(v));
}
