//! The CPU reference: every op in plain Rust with f64 arithmetic inside, written from
//! PyTorch's documented formulas and independent of the shaders. The tests compare the GPU
//! with it, and the CPU backend runs it when no adapter exists.
//!
//! Each function takes and returns f64 so that tests can compare an f32 result with the
//! exact answer for its f32 input; the slice helpers round once to f32 at the end.

pub mod activation;
pub mod gated;
pub mod head_stats;
pub mod linear;
pub mod loss;
pub mod softmax;

/// Each f32 as f64 (exactly).
pub fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Each f64 rounded to the nearest f32.
pub fn narrow(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}
