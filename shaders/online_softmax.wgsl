// Online softmax statistics of a row: after the elements x_j seen so far, m = max_j x_j and
// s = Σ_j e^{x_j − m}, so a row is normalised after one reading pass. Imported by
// the row-kernel files (softmax, cross-entropy).
//
// The state starts at (m, s) = (−∞, 0) and guards its two exponentials so that idle lanes and
// −∞ entries add exactly 0 and never form −∞ − (−∞); NaN is carried by s, so a max that drops
// NaN cannot lose it. A row of all −∞ ends with (−∞, 0) and normalises to NaN; a +∞ makes s NaN.
//! import special

fn hmax(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// ---- the online max-and-sum state ----

struct Online {
    m: f32,
    s: f32,
}

fn online_empty() -> Online {
    return Online(neg_inf(), 0.0);
}

// s·e^{m − m'}, exactly 0 while s is 0 (so that −∞ − (−∞) never appears); NaN stays NaN.
fn rescale(s: f32, m: f32, m_new: f32) -> f32 {
    return select(s * exp(m - m_new), 0.0, bitcast<u32>(s) == 0u);
}

// Adds four elements; −∞ entries (and masked lanes, which are −∞) add exactly 0.
fn online_push(st: Online, v: vec4<f32>) -> Online {
    let m = max(st.m, hmax(v));
    let e = select(exp(v - m), vec4(0.0), bitcast<vec4<u32>>(v) == vec4(NEG_INF_BITS));
    return Online(m, rescale(st.s, st.m, m) + hsum(e));
}

fn online_merge(a: Online, b: Online) -> Online {
    let m = max(a.m, b.m);
    return Online(m, rescale(a.s, a.m, m) + rescale(b.s, b.m, m));
}

// log(1 + x) for x ≥ 0, accurate to a few ulp even where 1 + x would round away x's low bits
// (2·atanh(x/(2 + x)) by its odd series for x ≤ 1; log(1 + x) ≥ log 2 is exact enough above).
fn log1p_pos(x: f32) -> f32 {
    let u = x / (2.0 + x);
    let u2 = u * u;
    let series = 1.0 + u2 * (1.0 / 3.0 + u2 * (1.0 / 5.0 + u2 * (1.0 / 7.0 + u2 * (1.0 / 9.0
        + u2 * (1.0 / 11.0 + u2 * (1.0 / 13.0 + u2 * (1.0 / 15.0)))))));
    return select(log(1.0 + x), 2.0 * u * series, x <= 1.0);
}
