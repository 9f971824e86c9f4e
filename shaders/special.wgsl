// Special values by bit pattern: x is NaN ⇔ (bits(x) & 0x7fffffff) > 0x7f800000, ±∞ ⇔ it equals
// 0x7f800000, finite ⇔ it is less. WGSL lets a compiler assume floats are finite at run time
// (so `x != x`, a compare with NaN or a NaN through max/min may fold either way) and makes NaN
// or ±∞ from a constant expression a shader-creation error; integer tests and values built at
// run time from a bit pattern (a private variable, never a constant) mean the same on every
// implementation.

const NAN_BITS: u32 = 0x7fc00000u;
const POS_INF_BITS: u32 = 0x7f800000u;
const NEG_INF_BITS: u32 = 0xff800000u;
const ABS_BITS: u32 = 0x7fffffffu;

// Read at run time, so that no compiler sees a NaN or ∞ in a constant expression.
var<private> special_bits: vec3<u32> = vec3(NAN_BITS, POS_INF_BITS, NEG_INF_BITS);

fn nan_f32() -> f32 {
    return bitcast<f32>(special_bits.x);
}

fn pos_inf() -> f32 {
    return bitcast<f32>(special_bits.y);
}

fn neg_inf() -> f32 {
    return bitcast<f32>(special_bits.z);
}

fn is_nan4(v: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4(ABS_BITS)) > vec4(POS_INF_BITS);
}

fn is_inf4(v: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4(ABS_BITS)) == vec4(POS_INF_BITS);
}

fn is_finite4(v: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4(ABS_BITS)) < vec4(POS_INF_BITS);
}

fn is_neg_inf4(v: vec4<f32>) -> vec4<bool> {
    return bitcast<vec4<u32>>(v) == vec4(NEG_INF_BITS);
}

fn is_nan1(v: f32) -> bool {
    return (bitcast<u32>(v) & ABS_BITS) > POS_INF_BITS;
}

fn is_finite1(v: f32) -> bool {
    return (bitcast<u32>(v) & ABS_BITS) < POS_INF_BITS;
}
