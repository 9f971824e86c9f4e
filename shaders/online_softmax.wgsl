// Online softmax statistics of a row: after the elements x_j seen so far, m = max_j x_j and
// s = Σ_j e^{x_j − m} over the finite x_j, so a row is normalised after one reading pass.
// Imported by the row-kernel files (softmax, cross-entropy, the head, softmax along a dim).
//
// PyTorch's edge semantics, decided by bit patterns (special.wgsl) so that they hold on every
// implementation, whatever its max, exp and log make of NaN and ∞:
//   a NaN or a +∞ anywhere in the row   → every output of the row is NaN;
//   every element −∞ (s = 0)            → every output is NaN;
//   otherwise −∞ elements give e = 0 (softmax 0, log-softmax −∞) and the rest is finite math.
// The state carries which special values it has seen (`Specials`: the largest |bits| and the
// largest signed bits, so that NaN and +∞ are recognised without a compare per element); its
// exponentials take only finite arguments, and −∞ entries and masked lanes add exactly 0.
//! import special

fn hmax(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// ---- the special values a row holds ----

// The largest bits(x) & 0x7fffffff (above 0x7f800000 only for NaN) and the largest bits(x) as
// a signed integer (0x7f800000 or more only for +∞ and positive NaN), lane by lane.
struct Specials {
    abs_max: vec4<u32>,
    signed_max: vec4<i32>,
}

fn specials_empty() -> Specials {
    return Specials(vec4(0u), bitcast<vec4<i32>>(vec4(0x80000000u)));
}

fn specials_push(sp: Specials, v: vec4<f32>) -> Specials {
    let bits = bitcast<vec4<u32>>(v);
    return Specials(max(sp.abs_max, bits & vec4(ABS_BITS)),
                    max(sp.signed_max, bitcast<vec4<i32>>(bits)));
}

fn specials_merge(a: Specials, b: Specials) -> Specials {
    return Specials(max(a.abs_max, b.abs_max), max(a.signed_max, b.signed_max));
}

// Whether a NaN or a +∞ was seen: PyTorch's NaN row.
fn specials_poison(sp: Specials) -> bool {
    return any(sp.abs_max > vec4(POS_INF_BITS))
        || any(sp.signed_max >= vec4(bitcast<i32>(POS_INF_BITS)));
}

// e^{v − m}, exactly 0 where v is −∞ (and for the masked lanes, which hold −∞).
fn exp_finite(v: vec4<f32>, m: f32) -> vec4<f32> {
    return select(exp(v - m), vec4(0.0), is_neg_inf4(v));
}

// ---- the online max-and-sum state ----

struct Online {
    m: f32,
    s: f32,
    sp: Specials,
}

fn online_empty() -> Online {
    return Online(neg_inf(), 0.0, specials_empty());
}

// s·e^{m − m'}, exactly 0 while s is 0 (so that −∞ − (−∞) never appears).
fn rescale(s: f32, m: f32, m_new: f32) -> f32 {
    return select(s * exp(m - m_new), 0.0, bitcast<u32>(s) == 0u);
}

// Adds four elements; −∞ entries (and masked lanes, which are −∞) add exactly 0. A NaN or +∞
// may leave m and s meaningless: `online_nan_row` says so, and the outputs are NaN.
fn online_push(st: Online, v: vec4<f32>) -> Online {
    let m = max(st.m, hmax(v));
    return Online(m, rescale(st.s, st.m, m) + hsum(exp_finite(v, m)), specials_push(st.sp, v));
}

fn online_merge(a: Online, b: Online) -> Online {
    let m = max(a.m, b.m);
    return Online(m, rescale(a.s, a.m, m) + rescale(b.s, b.m, m), specials_merge(a.sp, b.sp));
}

// Whether the row's outputs are all NaN: it holds a NaN or a +∞, or nothing but −∞ (s = 0).
fn online_nan_row(st: Online) -> bool {
    return specials_poison(st.sp) || bitcast<u32>(st.s) == 0u;
}

// A partial statistic written to memory for another launch (a segment's s, or a backward
// segment's Σ): v, or NaN (by bits) when `poison`; read back by `partial_poison`.
fn mark_partial(v: f32, poison: bool) -> f32 {
    return select(v, nan_f32(), poison);
}

fn partial_poison(v: f32) -> bool {
    return is_nan1(v);
}

// The state of a segment's partial (m, marked s) read back.
fn online_from_partial(m: f32, s: f32) -> Online {
    var sp = specials_empty();
    if partial_poison(s) {
        sp.abs_max = vec4(ABS_BITS);
    }
    return Online(m, select(s, 1.0, partial_poison(s)), sp);
}

// NaN seen among v so far: acc = max(acc, |bits(v)|), and NaN ⇔ some lane of acc > 0x7f800000.
fn nan_acc_push(acc: vec4<u32>, v: vec4<f32>) -> vec4<u32> {
    return max(acc, bitcast<vec4<u32>>(v) & vec4(ABS_BITS));
}

fn nan_acc_any(acc: vec4<u32>) -> bool {
    return any(acc > vec4(POS_INF_BITS));
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
