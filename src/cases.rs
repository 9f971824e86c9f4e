//! The edge values and parameter variants every op is checked with, in one place: the tests
//! and `gpu-activations check` both take them from here.

use crate::definitions::activation::Activation;

/// Values that stress the activations: zeros, tiny, kinks, saturation points, huge,
/// non-finite.
pub const SPECIAL: &[f32] = &[
    0.0,
    -0.0,
    1e-7,
    -1e-7,
    1e-30,
    -1e-30,
    0.5,
    -0.5,
    1.0,
    -1.0,
    2.999_999_8,
    3.0,
    -3.0,
    3.000_000_2,
    6.0,
    5.999_999_5,
    6.000_000_5,
    10.0,
    -10.0,
    15.0,
    20.0,
    -20.0,
    20.000_002,
    40.0,
    -40.0,
    87.0,
    88.0,
    -88.0,
    88.7,
    89.0,
    -89.0,
    100.0,
    -100.0,
    1000.0,
    -1000.0,
    1e4,
    -1e4,
    1e20,
    -1e20,
    1e30,
    -1e30,
    3e38,
    -3e38,
    f32::MAX,
    f32::MIN,
    f32::MIN_POSITIVE,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
];

/// The special values of the gated activations, each taken as value and as gate.
pub const GATED_SPECIAL: [f32; 21] = [
    0.0,
    -0.0,
    1e-30,
    -1e-30,
    1.0,
    -1.0,
    5.0,
    -5.0,
    30.0,
    -30.0,
    88.0,
    -88.0,
    100.0,
    -100.0,
    1e4,
    -1e4,
    1e30,
    -1e30,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
];

/// Five rows of four logits for the softmax family: ±1e4 and ±3e38 beside moderate values, a
/// row of −∞, and rows with a NaN and with −∞ among finite values.
pub const SOFTMAX_EDGE_ROWS: [[f32; 4]; 5] = [
    [1e4, 0.0, -1e4, 5.0],
    [3e38, -3e38, 0.0, 1.0],
    [f32::NEG_INFINITY; 4],
    [1.0, f32::NAN, 2.0, 3.0],
    [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 1.0],
];

/// Four rows of three logits for the cross-entropies: a confident right and wrong class at
/// ±1e4, ties at 3e4, and ±88 (where e^z nears f32's range).
pub const CROSS_ENTROPY_EDGE_ROWS: [[f32; 3]; 4] = [
    [1e4, -1e4, 0.0],
    [-1e4, 1e4, 3.0],
    [3e4, 3e4, -3e4],
    [88.0, -88.0, 1.0],
];

/// Every activation with its defaults, and again with other parameters: non-default slopes,
/// one-sided clamps, wide and narrow shrinks.
pub fn activation_variants() -> Vec<Activation> {
    let mut all = Activation::ALL.to_vec();
    all.extend([
        Activation::LeakyRelu {
            negative_slope: 0.2,
        },
        Activation::Elu { alpha: 1.7 },
        Activation::Softplus {
            beta: 2.0,
            threshold: 15.0,
        },
        Activation::Softplus {
            beta: 0.5,
            threshold: 5.0,
        },
        Activation::Celu { alpha: 0.7 },
        Activation::Hardtanh {
            min_val: -2.0,
            max_val: 3.0,
        },
        // One-sided clamps, as F.hardtanh(x, 0, inf) and ONNX's Clip with one bound.
        Activation::Hardtanh {
            min_val: 0.0,
            max_val: f32::INFINITY,
        },
        Activation::Hardtanh {
            min_val: f32::NEG_INFINITY,
            max_val: 1.0,
        },
        Activation::Threshold {
            threshold: 0.5,
            value: -2.0,
        },
        Activation::Hardshrink { lambd: 1.5 },
        Activation::Softshrink { lambd: 1.5 },
        Activation::OnnxSelu {
            alpha: 2.0,
            gamma: 3.0,
        },
        Activation::OnnxThresholdedRelu { alpha: 0.25 },
        Activation::OnnxSwish { alpha: 1.5 },
        Activation::RreluEval {
            lower: 0.05,
            upper: 0.45,
        },
        Activation::OnnxHardSigmoid {
            alpha: 0.3,
            beta: 0.6,
        },
    ]);
    all
}
