// Storage codec for f32 tensors: load4(w) = w and store4(v) = v, four elements one vec4<f32>.
// A family written against a codec (`Stored4`, `load4`, `store4`) reads and writes any float
// storage type with the same code; one codec file is composed into each module (a root's `//! storage` line).

alias Stored4 = vec4<f32>;

fn load4(w: Stored4) -> vec4<f32> {
    return w;
}

fn store4(v: vec4<f32>) -> Stored4 {
    return v;
}
