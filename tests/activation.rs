//! Elementwise activations on every adapter present (and the CPU backend) against the f64
//! reference and PyTorch's answers: |got − want| ≤ 1e-6 + 1e-5·|want| for every element.

mod common;

use common::{
    SPECIAL, assert_all_close, fixture_activation, fixtures, label, npy, npy_f32, uniform,
};
use gpu_activations::{Activation, Context, Error, Tensor};

const ATOL: f64 = 1e-6;
const RTOL: f64 = 1e-5;

/// The activations with non-default parameters too.
fn every_variant() -> Vec<Activation> {
    gpu_activations::cases::activation_variants()
}

/// Runs forward and backward of `act` on `ctx` and checks both against the f64 reference.
fn check_against_reference(ctx: &Context, act: Activation, x: &[f32], g: &[f32], case: &str) {
    check_within(ctx, act, x, g, case, ATOL, RTOL);
}

/// The same within `atol + rtol·|want|`.
fn check_within(
    ctx: &Context,
    act: Activation,
    x: &[f32],
    g: &[f32],
    case: &str,
    atol: f64,
    rtol: f64,
) {
    let shape = [x.len()];
    let xt = Tensor::from_slice(ctx, x, &shape).unwrap();
    let gt = Tensor::from_slice(ctx, g, &shape).unwrap();
    let y = xt.activation(act).unwrap();
    let dx = xt.activation_backward(act, &gt).unwrap();
    let want_y: Vec<f64> = x.iter().map(|&v| act.reference(f64::from(v))).collect();
    let want_dx: Vec<f64> = x
        .iter()
        .zip(g)
        .map(|(&v, &d)| act.reference_backward(f64::from(v), f64::from(d)))
        .collect();
    let tag = format!("{} {act:?} {case}", label(ctx));
    assert_all_close(
        &format!("{tag} forward"),
        &y.to_vec().unwrap(),
        &want_y,
        &[x],
        atol,
        rtol,
    );
    assert_all_close(
        &format!("{tag} backward"),
        &dx.to_vec().unwrap(),
        &want_dx,
        &[x, g],
        atol,
        rtol,
    );
}

#[test]
fn special_values_match_the_reference_on_every_backend() {
    // Every special value against several upstream gradients, including 0 and -1.
    let grads = [1.0f32, -1.0, 0.0, 0.37, -2.5];
    let x: Vec<f32> = grads.iter().flat_map(|_| SPECIAL.iter().copied()).collect();
    let g: Vec<f32> = grads
        .iter()
        .flat_map(|&d| std::iter::repeat_n(d, SPECIAL.len()))
        .collect();
    for ctx in common::all_backends() {
        for act in every_variant() {
            check_against_reference(&ctx, act, &x, &g, "special values");
        }
    }
}

#[test]
fn random_data_at_every_size_matches_the_reference() {
    // Sizes around the vec4 and workgroup boundaries, and two large ones.
    for (i, &n) in [1usize, 3, 4, 5, 255, 256, 257, 1_000_003]
        .iter()
        .enumerate()
    {
        let x = uniform(100 + i as u64, n, -12.0, 12.0);
        let g = uniform(200 + i as u64, n, -3.0, 3.0);
        for ctx in common::gpus() {
            for act in every_variant() {
                check_against_reference(ctx, act, &x, &g, &format!("n={n}"));
            }
        }
    }
}

#[test]
fn ten_million_elements_match_the_reference() {
    let n = 10_000_000;
    let x = uniform(7, n, -30.0, 30.0);
    let g = uniform(8, n, -2.0, 2.0);
    for ctx in common::gpus() {
        for act in Activation::ALL {
            check_against_reference(ctx, act, &x, &g, "n=10,000,000");
        }
    }
}

/// Inputs near 0 keep their relative accuracy, as in PyTorch: formed directly, 1 − e^−2|x| and
/// e^x − 1 round tanh(1e-8) and elu(−1e-8) to 0.
#[test]
fn tiny_inputs_keep_their_relative_accuracy() {
    let magnitudes: Vec<f32> = (0..=56)
        .map(|k| 10f32.powf(-30.0 + 0.5 * k as f32))
        .collect();
    let x: Vec<f32> = magnitudes.iter().flat_map(|&m| [m, -m]).collect();
    let g = vec![1.0; x.len()];
    for ctx in common::all_backends() {
        for act in every_variant() {
            check_within(&ctx, act, &x, &g, "tiny inputs", 0.0, RTOL);
        }
    }
}

/// Every case of the fixture directory `dir` (`params.json` names them), forward and backward,
/// on every backend.
fn check_fixture_cases(dir: &std::path::Path, count: usize) {
    let (x, _) = npy_f32(&dir.join("x.npy"));
    let (g, _) = npy_f32(&dir.join("g.npy"));
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("params.json")).unwrap()).unwrap();
    let cases = params.as_object().unwrap();
    assert_eq!(cases.len(), count, "every fixture case is covered");
    for ctx in common::all_backends() {
        let xt = Tensor::from_slice(&ctx, &x, &[x.len()]).unwrap();
        let gt = Tensor::from_slice(&ctx, &g, &[g.len()]).unwrap();
        for (case, p) in cases {
            let act = fixture_activation(case.split('.').next().unwrap(), p);
            let (want_y, _) = npy(&dir.join(format!("{case}.forward.npy")));
            let (want_dx, _) = npy(&dir.join(format!("{case}.backward.npy")));
            let y = xt.activation(act).unwrap().to_vec().unwrap();
            let dx = xt.activation_backward(act, &gt).unwrap().to_vec().unwrap();
            let tag = format!("{} PyTorch {case}", label(&ctx));
            assert_all_close(&format!("{tag} forward"), &y, &want_y, &[&x], ATOL, RTOL);
            assert_all_close(
                &format!("{tag} backward"),
                &dx,
                &want_dx,
                &[&x, &g],
                ATOL,
                RTOL,
            );
        }
    }
}

#[test]
fn pytorch_fixtures_match_on_every_backend() {
    check_fixture_cases(&fixtures().join("activations"), 18);
}

#[test]
fn the_second_waves_activations_match_pytorch_fixtures_on_every_backend() {
    check_fixture_cases(&fixtures().join("family/activations"), 16);
}

#[test]
fn extremes_saturate_exactly_and_nan_propagates() {
    let x = [1000.0f32, -1000.0, 1e30, -1e30, f32::NAN];
    for ctx in common::all_backends() {
        let t = Tensor::from_slice(&ctx, &x, &[5]).unwrap();
        let tag = label(&ctx);
        let sig = t.sigmoid().unwrap().to_vec().unwrap();
        assert_eq!(&sig[..2], &[1.0, 0.0], "{tag} sigmoid(±1000)");
        let th = t.tanh().unwrap().to_vec().unwrap();
        assert_eq!(&th[..4], &[1.0, -1.0, 1.0, -1.0], "{tag} tanh saturates");
        let sp = t.softplus(1.0, 20.0).unwrap().to_vec().unwrap();
        assert_eq!(sp[0], 1000.0, "{tag} softplus(1000)");
        assert_eq!(sp[1], 0.0, "{tag} softplus(-1000)");
        for (act, name) in [(Activation::Silu, "silu"), (Activation::Gelu, "gelu")] {
            let y = t.activation(act).unwrap().to_vec().unwrap();
            assert_eq!(y[2], 1e30, "{tag} {name}(1e30)");
            assert_eq!(y[3], 0.0, "{tag} {name}(-1e30)");
        }
        for act in Activation::ALL {
            let y = t.activation(act).unwrap().to_vec().unwrap();
            // ONNX's ThresholdedRelu is x > α ? x : 0, and NaN > α is false (as in PyTorch).
            let at_nan_is_zero = matches!(act, Activation::OnnxThresholdedRelu { .. });
            if at_nan_is_zero {
                assert_eq!(y[4], 0.0, "{tag} {act}(NaN)");
            } else {
                assert!(y[4].is_nan(), "{tag} {act}(NaN) = {} should be NaN", y[4]);
            }
            assert!(
                y[..4].iter().all(|v| !v.is_nan()),
                "{tag} {act} gave NaN on a finite input: {y:?}"
            );
        }
    }
}

#[test]
fn backward_from_saved_output_matches_backward_from_input() {
    let x = uniform(11, 1001, -8.0, 8.0);
    let g = uniform(12, 1001, -2.0, 2.0);
    for ctx in common::all_backends() {
        let xt = Tensor::from_slice(&ctx, &x, &[7, 143]).unwrap();
        let gt = Tensor::from_slice(&ctx, &g, &[7, 143]).unwrap();
        for (act, from_output) in [
            (
                Activation::Sigmoid,
                Tensor::sigmoid_backward_from_output as fn(&Tensor, &Tensor) -> _,
            ),
            (Activation::Tanh, Tensor::tanh_backward_from_output),
        ] {
            let y = xt.activation(act).unwrap();
            let dx = from_output(&y, &gt).unwrap().to_vec().unwrap();
            let want: Vec<f64> = x
                .iter()
                .zip(&g)
                .map(|(&v, &d)| act.reference_backward(f64::from(v), f64::from(d)))
                .collect();
            // The saved output carries one f32 rounding, hence a slightly looser bound.
            assert_all_close(
                &format!("{} {act} from output", label(&ctx)),
                &dx,
                &want,
                &[&x, &g],
                2e-6,
                RTOL,
            );
        }
    }
}

#[test]
fn in_place_variants_match_out_of_place() {
    let x = uniform(21, 517, -6.0, 6.0);
    let g = uniform(22, 517, -2.0, 2.0);
    for ctx in common::all_backends() {
        // Ops with parameters too: each entry point loads them itself.
        for act in [
            Activation::Gelu,
            Activation::Relu,
            Activation::Mish,
            Activation::LeakyRelu {
                negative_slope: 0.2,
            },
            Activation::Softplus {
                beta: 2.0,
                threshold: 5.0,
            },
        ] {
            let xt = Tensor::from_slice(&ctx, &x, &[517]).unwrap();
            let gt = Tensor::from_slice(&ctx, &g, &[517]).unwrap();
            let want_y = xt.activation(act).unwrap().to_vec().unwrap();
            let want_dx = xt.activation_backward(act, &gt).unwrap().to_vec().unwrap();

            let inplace = Tensor::from_slice(&ctx, &x, &[517]).unwrap();
            inplace.activation_into(act, &inplace).unwrap();
            assert_eq!(
                inplace.to_vec().unwrap(),
                want_y,
                "{} {act} forward in place",
                label(&ctx)
            );

            let over_grad = Tensor::from_slice(&ctx, &g, &[517]).unwrap();
            xt.activation_backward_into(act, &over_grad, &over_grad)
                .unwrap();
            assert_eq!(
                over_grad.to_vec().unwrap(),
                want_dx,
                "{} {act} over grad",
                label(&ctx)
            );

            let over_input = Tensor::from_slice(&ctx, &x, &[517]).unwrap();
            over_input
                .activation_backward_into(act, &gt, &over_input)
                .unwrap();
            assert_eq!(
                over_input.to_vec().unwrap(),
                want_dx,
                "{} {act} over input",
                label(&ctx)
            );
        }
    }
}

#[test]
fn a_chain_of_ops_is_recorded_without_waiting_and_reads_back_right() {
    // relu(tanh(sigmoid(x))) applied 50 times: only the final read-back waits.
    let x = uniform(31, 4099, -4.0, 4.0);
    let mut want: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    for _ in 0..50 {
        for act in [Activation::Sigmoid, Activation::Tanh, Activation::Relu] {
            want = want
                .iter()
                .map(|&v| act.reference(f64::from(v as f32)) as f32 as f64)
                .collect();
        }
    }
    for ctx in common::all_backends() {
        let mut t = Tensor::from_slice(&ctx, &x, &[4099]).unwrap();
        for _ in 0..50 {
            t = t.sigmoid().unwrap().tanh().unwrap().relu().unwrap();
        }
        assert_all_close(
            &format!("{} chain", label(&ctx)),
            &t.to_vec().unwrap(),
            &want,
            &[&x],
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn bad_input_gives_typed_errors() {
    for ctx in common::all_backends() {
        let x = Tensor::from_slice(&ctx, &[1.0; 6], &[2, 3]).unwrap();
        let g = Tensor::from_slice(&ctx, &[1.0; 6], &[3, 2]).unwrap();
        assert!(matches!(
            x.activation_backward(Activation::Relu, &g),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            Tensor::from_slice(&ctx, &[1.0; 5], &[2, 3]),
            Err(Error::LengthMismatch {
                len: 5,
                expected: 6,
                ..
            })
        ));
        assert!(matches!(
            Tensor::from_slice(&ctx, &[], &[usize::MAX, 2]),
            Err(Error::TooLarge {
                unit: gpu_activations::Unit::Elements,
                ..
            })
        ));
        // Parameters are printed as given, not as the f64 nearest their f32.
        let message = x
            .activation(Activation::Softshrink { lambd: -0.1 })
            .unwrap_err()
            .to_string();
        assert!(message.contains("= -0.1 is invalid"), "{message}");
        let message = x
            .cross_entropy(
                gpu_activations::Targets::Indices(&[0, 1]),
                &gpu_activations::CrossEntropyOptions {
                    label_smoothing: 1.1,
                    ..Default::default()
                },
            )
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("label_smoothing = 1.1 is invalid"),
            "{message}"
        );
        assert!(matches!(
            x.leaky_relu(f32::NAN),
            Err(Error::InvalidParameter {
                name: "negative_slope",
                ..
            })
        ));
        assert!(matches!(
            x.softplus(0.0, 20.0),
            Err(Error::InvalidParameter { name: "beta", .. })
        ));
        // Every parameter the family takes, NaN or out of its range: a typed error naming it,
        // forward and backward alike, before anything runs.
        let nan = f32::NAN;
        for (act, name) in [
            (Activation::Celu { alpha: nan }, "alpha"),
            (Activation::Celu { alpha: 0.0 }, "alpha"),
            (
                Activation::Hardtanh {
                    min_val: nan,
                    max_val: 1.0,
                },
                "min_val",
            ),
            (
                Activation::Hardtanh {
                    min_val: -1.0,
                    max_val: nan,
                },
                "max_val",
            ),
            (
                Activation::Hardtanh {
                    min_val: 1.0,
                    max_val: -1.0,
                },
                "max_val",
            ),
            (
                Activation::Threshold {
                    threshold: nan,
                    value: 0.0,
                },
                "threshold",
            ),
            (
                Activation::Threshold {
                    threshold: 0.0,
                    value: nan,
                },
                "value",
            ),
            (Activation::Hardshrink { lambd: nan }, "lambd"),
            (Activation::Softshrink { lambd: nan }, "lambd"),
            (Activation::Softshrink { lambd: -0.5 }, "lambd"),
            (
                Activation::RreluEval {
                    lower: nan,
                    upper: 0.3,
                },
                "lower",
            ),
            (
                Activation::RreluEval {
                    lower: 0.3,
                    upper: 0.1,
                },
                "upper",
            ),
            (
                Activation::OnnxHardSigmoid {
                    alpha: nan,
                    beta: 0.5,
                },
                "alpha",
            ),
            (
                Activation::OnnxHardSigmoid {
                    alpha: 0.2,
                    beta: nan,
                },
                "beta",
            ),
            (
                Activation::OnnxSelu {
                    alpha: 1.0,
                    gamma: nan,
                },
                "gamma",
            ),
            (Activation::OnnxThresholdedRelu { alpha: nan }, "alpha"),
            (Activation::OnnxSwish { alpha: nan }, "alpha"),
            (
                Activation::Softplus {
                    beta: 1.0,
                    threshold: nan,
                },
                "threshold",
            ),
        ] {
            let g = Tensor::from_slice(&ctx, &[1.0; 6], &[2, 3]).unwrap();
            for result in [x.activation(act), x.activation_backward(act, &g)] {
                match result {
                    Err(Error::InvalidParameter { name: got, .. }) => {
                        assert_eq!(got, name, "{act:?}")
                    }
                    other => panic!("{act:?}: expected InvalidParameter {name}, got {other:?}"),
                }
            }
        }
        let other = Tensor::from_slice(&Context::cpu(), &[1.0; 6], &[2, 3]).unwrap();
        assert!(matches!(
            x.activation_backward(Activation::Relu, &other),
            Err(Error::ContextMismatch { .. })
        ));
        // An empty tensor is PyTorch's empty answer, not an error.
        let empty = Tensor::from_slice(&ctx, &[], &[0, 4]).unwrap();
        assert_eq!(empty.gelu().unwrap().to_vec().unwrap(), Vec::<f32>::new());
    }
}

/// The third wave's activations, each one entry of the op table: QuickGELU and squared ReLU
/// against PyTorch, special values (±1e20, ±1e30, ±∞, NaN) included, on every backend.
#[test]
fn quick_gelu_and_squared_relu_match_pytorch_fixtures_on_every_backend() {
    let dir = fixtures().join("wave3/activations");
    let (x, _) = npy_f32(&dir.join("x.npy"));
    let (g, _) = npy_f32(&dir.join("g.npy"));
    for ctx in common::all_backends() {
        let xt = Tensor::from_slice(&ctx, &x, &[x.len()]).unwrap();
        let gt = Tensor::from_slice(&ctx, &g, &[g.len()]).unwrap();
        for name in ["quick_gelu", "squared_relu"] {
            let act: Activation = name.parse().unwrap();
            let (want_y, _) = npy(&dir.join(format!("{name}.forward.npy")));
            let (want_dx, _) = npy(&dir.join(format!("{name}.backward.npy")));
            let y = xt.activation(act).unwrap().to_vec().unwrap();
            let dx = xt.activation_backward(act, &gt).unwrap().to_vec().unwrap();
            let tag = format!("{} PyTorch {name}", label(&ctx));
            assert_all_close(&format!("{tag} forward"), &y, &want_y, &[&x], ATOL, RTOL);
            let tag = format!("{tag} backward");
            assert_all_close(&tag, &dx, &want_dx, &[&x, &g], ATOL, RTOL);
            // The f64 reference agrees with PyTorch too, NaN and ±∞ in the same places.
            let reference: Vec<f32> = x
                .iter()
                .map(|&v| act.reference(f64::from(v)) as f32)
                .collect();
            assert_all_close(
                &format!("{name} reference"),
                &reference,
                &want_y,
                &[&x],
                ATOL,
                RTOL,
            );
        }
    }
}
