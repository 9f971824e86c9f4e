// Shared elementwise helpers, appended by the host to the elementwise kernel files:
// σ(v) = 1/(1 + e^−v) evaluated without overflow, log(1 + e) for 0 ≤ e ≤ 1 to a few ulp, and
// NaN tests by bits.

alias V = vec4<f32>;

fn splat(v: f32) -> V {
    return V(v);
}

fn is_nan(v: V) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4(0x7fffffffu)) > vec4(0x7f800000u);
}

fn is_inf(v: V) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4(0x7fffffffu)) == vec4(0x7f800000u);
}

fn nan() -> V {
    return bitcast<V>(vec4(0x7fc00000u));
}

// σ(v) from e = e^−|v|: 1/(1 + e) for v ≥ 0, e/(1 + e) otherwise.
fn sigmoid(v: V) -> V {
    let e = exp(-abs(v));
    let r = 1.0 / (1.0 + e);
    return select(e * r, r, v >= splat(0.0));
}

// log(1 + e) for 0 ≤ e ≤ 1 to a few ulp, relative: 2·atanh(u) with u = e/(2 + e) ≤ 1/3, by its
// odd series 2u(1 + u²/3 + u⁴/5 + … + u¹⁴/15) (the first omitted term is below 2e-9). Forming
// 1 + e first would lose e's low bits; this never does.
fn log1p_unit(e: V) -> V {
    let u = e / (2.0 + e);
    let u2 = u * u;
    let series = 1.0 + u2 * (1.0 / 3.0 + u2 * (1.0 / 5.0 + u2 * (1.0 / 7.0 + u2 * (1.0 / 9.0
        + u2 * (1.0 / 11.0 + u2 * (1.0 / 13.0 + u2 * (1.0 / 15.0)))))));
    return 2.0 * u * series;
}
