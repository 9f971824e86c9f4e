// Storage codec for bfloat16 tensors (WGSL has no bf16 type): bf16(x) = the upper 16 bits of x,
// two elements packed in a u32 (element 2k in the low half), four in a vec2<u32>.
//   load:  the bits shifted into the upper half of an f32, exact.
//   store: x rounded once to the nearest bf16, ties to even: add 0x7fff plus the lowest kept
//          bit and drop 16 bits (an overflow carries into ±∞); NaN stays a quiet NaN.

alias Stored4 = vec2<u32>;

fn load4(w: Stored4) -> vec4<f32> {
    let lo = vec2(w.x << 16u, w.y << 16u);
    let hi = vec2(w.x & 0xffff0000u, w.y & 0xffff0000u);
    return bitcast<vec4<f32>>(vec4(lo.x, hi.x, lo.y, hi.y));
}

fn store4(v: vec4<f32>) -> Stored4 {
    let h = bf16_bits(v);
    return vec2(h.x | (h.y << 16u), h.z | (h.w << 16u));
}

fn bf16_bits(v: vec4<f32>) -> vec4<u32> {
    let x = bitcast<vec4<u32>>(v);
    let rounded = (x + vec4(0x7fffu) + ((x >> vec4(16u)) & vec4(1u))) >> vec4(16u);
    let quiet_nan = (x >> vec4(16u)) | vec4(0x40u);
    return select(rounded, quiet_nan, (x & vec4(0x7fffffffu)) > vec4(0x7f800000u));
}
