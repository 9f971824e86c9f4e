// Online softmax statistics of a row: after the elements x_j seen so far, m = max_j x_j and
// s = Σ_j e^{x_j − m} over the finite x_j, so a row is normalised after one reading pass.
// Imported by the row-kernel files (softmax, cross-entropy, the head, softmax along a dim).
//
// PyTorch's edge semantics, decided by bit patterns (special.wgsl) so that they hold on every
// implementation, whatever its max, exp and log make of NaN:
//   a NaN or a +∞ anywhere in the row   → every output of the row is NaN;
//   every element −∞                    → every output is NaN;
//   otherwise −∞ elements give e = 0 (softmax 0, log-softmax −∞) and the rest is finite math.
// The state carries Σ (x − m), which IEEE arithmetic makes NaN in exactly those rows (see
// `Online`), and its bits are tested; −∞ entries and masked lanes add exactly 0 to s. Backward
// sums carry a NaN of their terms the same way, and their bits are tested.
//! import special

fn hmax(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// ---- the online max-and-sum state ----

// m, s, and t = Σ (x_j − m_j) over the elements seen, m_j the running max when x_j was seen.
// Every term is ≤ 0, −∞ for a −∞ next to a finite max; a NaN x gives a NaN term, a +∞ one
// +∞ − +∞ (the max is +∞), and a row of nothing but −∞ gives −∞ − (−∞): IEEE subtraction and
// addition carry those NaNs into t, and t's bits tell (`online_nan_row`). One add per element,
// no compare: what max and exp make of NaN (SwiftShader's max drops it, its exp(NaN) is +∞)
// never decides anything.
struct Online {
    m: f32,
    s: f32,
    t: vec4<f32>,
}

fn online_empty() -> Online {
    return Online(neg_inf(), 0.0, vec4(0.0));
}

// s·e^{m − m'}, exactly 0 while s is 0 (so that −∞ − (−∞) never appears).
fn rescale(s: f32, m: f32, m_new: f32) -> f32 {
    return select(s * exp(m - m_new), 0.0, bitcast<u32>(s) == 0u);
}

// Adds four elements; −∞ entries (and masked lanes, which are −∞) add exactly 0 to s.
fn online_push(st: Online, v: vec4<f32>) -> Online {
    let m = max(st.m, hmax(v));
    let d = v - m;
    let e = select(exp(d), vec4(0.0), is_neg_inf4(v));
    return Online(m, rescale(st.s, st.m, m) + hsum(e), st.t + d);
}

fn online_merge(a: Online, b: Online) -> Online {
    let m = max(a.m, b.m);
    return Online(m, rescale(a.s, a.m, m) + rescale(b.s, b.m, m), a.t + b.t);
}

// Whether a row whose Σ (x − m) is `t` has all its outputs NaN: it holds a NaN or a +∞, or
// nothing but −∞ (by t's bits).
fn row_nan(t: f32) -> bool {
    return is_nan1(t);
}

fn online_nan_row(st: Online) -> bool {
    return row_nan(hsum(st.t));
}

// A state whose NaN verdict was reached elsewhere (a reduction, a partial read back).
fn online_marked(m: f32, s: f32, nan_row: bool) -> Online {
    return Online(m, s, vec4(select(0.0, nan_f32(), nan_row)));
}

// A segment's partial s written to memory for another launch: s, or NaN (by bits) when the
// segment's elements make the row NaN; read back by `online_from_partial`.
fn mark_partial(s: f32, nan_row: bool) -> f32 {
    return select(s, nan_f32(), nan_row);
}

// The state of a segment's partial (m, marked s) read back.
fn online_from_partial(m: f32, s: f32) -> Online {
    let nan_row = is_nan1(s);
    return online_marked(m, select(s, 1.0, nan_row), nan_row);
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
