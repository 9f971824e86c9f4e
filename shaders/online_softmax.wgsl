// Online softmax statistics of a row: after the elements x_j seen so far, m = max_j x_j and
// s = Σ_j e^{x_j − m} over the finite x_j, so a row is normalised after one reading pass.
// Imported by the row-kernel files (softmax, cross-entropy, the head, softmax along a dim).
//
// PyTorch's edge semantics, decided by bit patterns (special.wgsl) so that they hold on every
// implementation, whatever its max, exp and log make of NaN:
//   a NaN or a +∞ anywhere in the row   → every output of the row is NaN;
//   every element −∞ (its max is −∞)    → every output is NaN;
//   otherwise −∞ elements give e = 0 (softmax 0, log-softmax −∞) and the rest is finite math.
// The state carries the largest |bits| it has seen, which only a NaN puts above the bits of
// ∞ (one integer max per element; a +∞ shows in the row's max), and −∞ entries and masked
// lanes add exactly 0. Backward sums carry a NaN of their terms by arithmetic, and their bits
// are tested.
//! import special

fn hmax(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// ---- the NaNs a row holds ----

// The largest |bits(x)| seen, lane by lane: above 0x7f800000 only if some x was NaN. (A +∞
// shows in the row's max, which every implementation takes right without a NaN; a NaN does
// not: SwiftShader's max drops it, and its exp(NaN) is +∞.)
fn nans_push(acc: vec4<u32>, v: vec4<f32>) -> vec4<u32> {
    return max(acc, bitcast<vec4<u32>>(v) & vec4(ABS_BITS));
}

fn nans_any(acc: vec4<u32>) -> bool {
    return any(acc > vec4(POS_INF_BITS));
}

// e^{v − m}, exactly 0 where v is −∞ (and for the masked lanes, which hold −∞).
fn exp_finite(v: vec4<f32>, m: f32) -> vec4<f32> {
    return select(exp(v - m), vec4(0.0), is_neg_inf4(v));
}

// ---- the online max-and-sum state ----

struct Online {
    m: f32,
    s: f32,
    nans: vec4<u32>,
}

fn online_empty() -> Online {
    return Online(neg_inf(), 0.0, vec4(0u));
}

// s·e^{m − m'}, exactly 0 while s is 0 (so that −∞ − (−∞) never appears).
fn rescale(s: f32, m: f32, m_new: f32) -> f32 {
    return select(s * exp(m - m_new), 0.0, bitcast<u32>(s) == 0u);
}

// Adds four elements; −∞ entries (and masked lanes, which are −∞) add exactly 0. A NaN or +∞
// may leave m and s meaningless: `online_nan_row` says so, and the outputs are NaN.
fn online_push(st: Online, v: vec4<f32>) -> Online {
    let m = max(st.m, hmax(v));
    return Online(m, rescale(st.s, st.m, m) + hsum(exp_finite(v, m)), nans_push(st.nans, v));
}

fn online_merge(a: Online, b: Online) -> Online {
    let m = max(a.m, b.m);
    return Online(m, rescale(a.s, a.m, m) + rescale(b.s, b.m, m), max(a.nans, b.nans));
}

// Whether the elements seen hold a NaN or a +∞ (by the bits of the NaN record and of m).
fn online_poison(st: Online) -> bool {
    return nans_any(st.nans) || bitcast<u32>(st.m) == POS_INF_BITS;
}

// Whether the row's outputs are all NaN: it holds a NaN or a +∞, or nothing but −∞ (then its
// max is −∞).
fn row_nan(poison: bool, m: f32) -> bool {
    return poison || bitcast<u32>(m) == POS_INF_BITS || bitcast<u32>(m) == NEG_INF_BITS;
}

fn online_nan_row(st: Online) -> bool {
    return row_nan(online_poison(st), st.m);
}

// A state whose poison was decided elsewhere (a reduction, a partial read back).
fn online_marked(m: f32, s: f32, poison: bool) -> Online {
    return Online(m, s, select(vec4(0u), vec4(ABS_BITS), poison));
}

// A segment's partial s written to memory for another launch: s, or NaN (by bits) when the
// segment holds a NaN or +∞; read back by `online_from_partial`.
fn mark_partial(s: f32, poison: bool) -> f32 {
    return select(s, nan_f32(), poison);
}

// The state of a segment's partial (m, marked s) read back.
fn online_from_partial(m: f32, s: f32) -> Online {
    let poison = is_nan1(s);
    return online_marked(m, select(s, 1.0, poison), poison);
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
