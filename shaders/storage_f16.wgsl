// Storage codec for f16 tensors: load4(w) = w's four f16 values widened, store4(v) = v rounded
// to f16; two elements packed in a u32 (element 2k in the low half), four in a vec2<u32>, so
// that every adapter holds them, with or without `shader-f16`.
//   load:  exact, in integer arithmetic (normal, subnormal and special values by their bits).
//   store: x rounded once to the nearest f16, ties to even, in integer arithmetic (WGSL leaves
//          the rounding of an f32 → f16 conversion, and any result beyond f16's range, to the
//          implementation):  |x| ≥ 65520 → ±∞,  NaN → quiet NaN,  |x| < 2⁻¹⁴ → a multiple
//          of 2⁻²⁴ (`round` is ties-to-even, and the scaling by 2²⁴ is exact).

alias Stored4 = vec2<u32>;

fn load4(w: Stored4) -> vec4<f32> {
    let h = vec4(w.x & 0xffffu, w.x >> 16u, w.y & 0xffffu, w.y >> 16u);
    let em = h & vec4(0x7fffu);
    let sign = (h & vec4(0x8000u)) << vec4(16u);
    let normal = bitcast<vec4<f32>>(sign | ((em << vec4(13u)) + vec4(0x38000000u)));
    let subnormal = bitcast<vec4<f32>>(sign | bitcast<vec4<u32>>(vec4<f32>(em) * 5.9604645e-8));
    let special = bitcast<vec4<f32>>(sign | vec4(0x7f800000u) | ((em & vec4(0x3ffu)) << vec4(13u)));
    return select(select(normal, special, em >= vec4(0x7c00u)), subnormal, em < vec4(0x400u));
}

fn store4(v: vec4<f32>) -> Stored4 {
    let h = f16_bits(v);
    return vec2(h.x | (h.y << 16u), h.z | (h.w << 16u));
}

fn f16_bits(v: vec4<f32>) -> vec4<u32> {
    let x = bitcast<vec4<u32>>(v);
    let sign = (x >> vec4(16u)) & vec4(0x8000u);
    let a = x & vec4(0x7fffffffu);
    // Normal f16: rebias the exponent (127 − 15 = 112) and round off 13 mantissa bits to even;
    // a carry out of the mantissa moves into the exponent, as it should.
    let r = a - vec4(0x38000000u);
    let normal = (r + vec4(0x0fffu) + ((r >> vec4(13u)) & vec4(1u))) >> vec4(13u);
    let subnormal = bitcast<vec4<u32>>(bitcast<vec4<f32>>(a) + 0.5) - vec4(0x3f000000u);
    var h = select(subnormal, normal, a >= vec4(0x38800000u));
    h = select(h, vec4(0x7c00u), a >= vec4(0x477ff000u));
    h = select(h, vec4(0x7e00u), a > vec4(0x7f800000u));
    return sign | h;
}
