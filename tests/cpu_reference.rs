//! The CPU reference by itself: against PyTorch's answers, against closed forms, and its
//! backward against central finite differences of its forward. Needs no GPU.

mod common;

use approx::assert_relative_eq;
use common::{fixture_activation, fixtures, npy};
use gpu_activations::Activation;
use gpu_activations::cpu::activation::{backward, forward};

/// The parameters are f32, so 0.01 is 0.00999999977…: agreement to 1e-7 relative is exact
/// for every purpose of an f32 result.
#[test]
fn reference_activations_match_pytorch_in_f64() {
    // The first wave's fixtures with PyTorch's defaults, then the second wave's with theirs.
    let first = fixtures().join("activations");
    // The second wave's parameters (0.2, 1.5, …) are f32 too, and some meet x in a sum
    // (onnx_hardsigmoid's αx + β): their rounding may move the answer by 1e-7·|x|.
    let mut cases: Vec<(std::path::PathBuf, String, Activation, f64)> = Activation::ALL[..15]
        .iter()
        .map(|&act| (first.clone(), format!("{}.default", act.name()), act, 0.0))
        .collect();
    let family = fixtures().join("family/activations");
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(family.join("params.json")).unwrap())
            .unwrap();
    for (case, p) in params.as_object().unwrap() {
        let act = fixture_activation(case.split('.').next().unwrap(), p);
        cases.push((family.clone(), case.clone(), act, 1e-7));
    }
    for (dir, case, act, per_x) in cases {
        let (x, _) = npy(&dir.join("x.npy"));
        let (g, _) = npy(&dir.join("g.npy"));
        let (want_y, _) = npy(&dir.join(format!("{case}.forward.npy")));
        let (want_dx, _) = npy(&dir.join(format!("{case}.backward.npy")));
        for i in 0..x.len() {
            let y = forward(act, x[i]);
            let dx = backward(act, x[i], g[i]);
            for (what, got, want) in [("forward", y, want_y[i]), ("backward", dx, want_dx[i])] {
                let ok = if want.is_nan() {
                    got.is_nan()
                } else if want.is_infinite() {
                    got == want
                } else {
                    (got - want).abs() <= 1e-12 + 1e-7 * want.abs() + per_x * x[i].abs().min(100.0)
                };
                assert!(
                    ok,
                    "{case} {what} at x = {}: got {got:e}, PyTorch {want:e}",
                    x[i]
                );
            }
        }
    }
}

#[test]
fn reference_activations_match_closed_forms() {
    // Values worked out by hand.
    let e = std::f64::consts::E;
    assert_eq!(forward(Activation::Sigmoid, 0.0), 0.5);
    assert_relative_eq!(
        forward(Activation::Sigmoid, 1.0),
        e / (1.0 + e),
        max_relative = 1e-15
    );
    assert_relative_eq!(
        forward(Activation::Tanh, 0.5),
        (e - 1.0) / (e + 1.0),
        max_relative = 1e-15
    );
    assert_relative_eq!(
        forward(Activation::Silu, 2.0),
        2.0 / (1.0 + (-2.0f64).exp()),
        max_relative = 1e-15
    );
    assert_relative_eq!(
        forward(Activation::Mish, 1.0),
        (1.0 + e).ln().tanh(),
        max_relative = 1e-15
    );
    assert_eq!(forward(Activation::Relu, -2.0), 0.0);
    assert_eq!(forward(Activation::Relu6, 7.0), 6.0);
    assert_eq!(forward(Activation::Hardsigmoid, 0.0), 0.5);
    assert_eq!(forward(Activation::Hardswish, 3.0), 3.0);
    assert!((forward(Activation::Gelu, 1.0) - 0.841_344_746_068_542_9).abs() < 1e-15); // Φ(1)
    assert!(
        (forward(
            Activation::Softplus {
                beta: 1.0,
                threshold: 20.0
            },
            0.0
        ) - 2f64.ln())
        .abs()
            < 1e-15
    );
    assert!((forward(Activation::Logsigmoid, 0.0) + 2f64.ln()).abs() < 1e-15);
    assert!((forward(Activation::Elu { alpha: 2.0 }, -1.0) - 2.0 * (1.0 / e - 1.0)).abs() < 1e-15);
    // Kink conventions.
    assert_eq!(backward(Activation::Relu, 0.0, 1.0), 0.0);
    assert_eq!(
        backward(
            Activation::LeakyRelu {
                negative_slope: 0.25
            },
            0.0,
            1.0
        ),
        0.25
    );
    assert_eq!(backward(Activation::Elu { alpha: 1.5 }, 0.0, 1.0), 1.5); // parameters are f32: exact binary fractions here
    assert_eq!(backward(Activation::Relu6, 0.0, 1.0), 0.0);
    assert_eq!(backward(Activation::Relu6, 6.0, 1.0), 0.0);
    assert_eq!(backward(Activation::Hardswish, 3.0, 1.0), 1.0);
    assert_eq!(backward(Activation::Hardswish, -3.0, 1.0), -0.5); // x < -3 is the zero branch
    assert_eq!(backward(Activation::Hardsigmoid, 3.0, 1.0), 0.0);
}

#[test]
fn reference_backward_matches_finite_differences() {
    let variants = [
        Activation::LeakyRelu {
            negative_slope: 0.3,
        },
        Activation::Elu { alpha: 0.7 },
        Activation::Softplus {
            beta: 2.0,
            threshold: 5.0,
        },
    ];
    let h = 1e-6;
    for act in Activation::ALL.into_iter().chain(variants) {
        for i in 0..400 {
            let x = -9.975 + 0.05 * f64::from(i); // never exactly on a kink
            let fd = (forward(act, x + h) - forward(act, x - h)) / (2.0 * h);
            let an = backward(act, x, 1.0);
            assert!(
                (fd - an).abs() <= 1e-6 + 1e-6 * an.abs(),
                "{act:?} at {x}: analytic {an}, finite difference {fd}"
            );
        }
    }
}
