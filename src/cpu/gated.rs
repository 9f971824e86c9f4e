//! The gated activations in f64: `forward(a, b) = f(a)·m(b)` and both gradients.

use crate::cpu::activation::{backward, forward};
use crate::definitions::activation::Activation;
use crate::definitions::gated::Gate;

/// `y = f(a)·m(b)`.
pub fn forward_pair(gate: Gate, a: f64, b: f64) -> f64 {
    match gate {
        Gate::Glu => a * forward(Activation::Sigmoid, b),
        Gate::Swiglu => forward(Activation::Silu, a) * b,
        Gate::Geglu => forward(Activation::Gelu, a) * b,
        Gate::GegluTanh => forward(Activation::GeluTanh, a) * b,
    }
}

/// `(g·∂y/∂a, g·∂y/∂b)`.
pub fn backward_pair(gate: Gate, a: f64, b: f64, g: f64) -> (f64, f64) {
    let value = |act| (backward(act, a, g * b), g * forward(act, a));
    match gate {
        Gate::Glu => (
            g * forward(Activation::Sigmoid, b),
            backward(Activation::Sigmoid, b, g * a),
        ),
        Gate::Swiglu => value(Activation::Silu),
        Gate::Geglu => value(Activation::Gelu),
        Gate::GegluTanh => value(Activation::GeluTanh),
    }
}

/// The forward of rows of `2·half` values split into value and gate, as f32.
pub fn forward_split(gate: Gate, x: &[f32], half: usize) -> Vec<f32> {
    x.chunks(2 * half.max(1))
        .flat_map(|row| {
            let (a, b) = row.split_at(half);
            a.iter()
                .zip(b)
                .map(|(&a, &b)| forward_pair(gate, f64::from(a), f64::from(b)) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The gradient of split rows (the input's layout) from the upstream `g` (rows of `half`).
pub fn backward_split(gate: Gate, x: &[f32], g: &[f32], half: usize) -> Vec<f32> {
    x.chunks(2 * half.max(1))
        .zip(g.chunks(half.max(1)))
        .flat_map(|(row, g)| {
            let (a, b) = row.split_at(half);
            let (da, db): (Vec<f32>, Vec<f32>) = a
                .iter()
                .zip(b)
                .zip(g)
                .map(|((&a, &b), &g)| {
                    let (da, db) = backward_pair(gate, f64::from(a), f64::from(b), f64::from(g));
                    (da as f32, db as f32)
                })
                .unzip();
            da.into_iter().chain(db)
        })
        .collect()
}
