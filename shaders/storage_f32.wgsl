// Storage codec for f32 tensors: four elements are one vec4<f32>, loaded and stored as they are.
// A family written against a codec (`Stored4`, `load4`, `store4`) reads and writes any float
// storage type with the same code; the host appends one codec file to the module.

alias Stored4 = vec4<f32>;

fn load4(w: Stored4) -> vec4<f32> {
    return w;
}

fn store4(v: vec4<f32>) -> Stored4 {
    return v;
}
