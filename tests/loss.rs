//! Fused cross-entropy and BCE with logits on every adapter (each row kernel and reduction path
//! for cross-entropy) against PyTorch's answers, the f64 reference and finite differences:
//! loss within 1e-5 relative, gradient within 1e-6 + 1e-5·|ref|.

mod common;

use gpu_activations::cpu::widen;
use std::sync::OnceLock;

use common::{
    OFFSET_WIDTHS, OFFSETS, assert_all_close, fixtures, label, npy, npy_f32, offset_uniform,
    uniform,
};
use gpu_activations::cpu::loss::{self as reference, CrossEntropyTargets, LossReference};
use gpu_activations::{
    BceOptions, Context, ContextOptions, CrossEntropyOptions, DType, Error, LossAndGrad, Reduction,
    RowStrategy, Subgroups, Targets, Tensor, class_indices_from_floats,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Every GPU with its automatic kernel, each GPU with the per-row and the workgroup kernels
/// forced (subgroups on and off where it has them) and one subgroup per row where it has
/// subgroups, and the CPU backend.
fn contexts() -> &'static [Context] {
    static ALL: OnceLock<Vec<Context>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = Vec::new();
        for ctx in common::gpus() {
            all.push(ctx.clone());
            let mut forced = vec![
                (RowStrategy::PerRow, Subgroups::Auto),
                (RowStrategy::Workgroup, Subgroups::Off),
            ];
            if ctx.uses_subgroups() {
                forced.push((RowStrategy::Workgroup, Subgroups::Auto));
                forced.push((RowStrategy::Subgroup, Subgroups::Auto));
            }
            for (row_strategy, subgroups) in forced {
                let options = ContextOptions {
                    subgroups,
                    row_strategy,
                    ..common::same_adapter(ctx)
                };
                all.push(Context::with_options(options).expect("same adapter opens twice"));
            }
        }
        all.push(Context::cpu());
        all
    })
}

fn tag(ctx: &Context) -> String {
    format!("{} {:?}", label(ctx), ctx.row_strategy())
}

fn assert_loss(case: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{case}: loss length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            f64::from(g) == w
        } else {
            (f64::from(g) - w).abs() <= 1e-5 * w.abs().max(1e-6)
        };
        assert!(ok, "{case}: loss[{i}] = {g:e}, want {w:e}");
    }
}

/// Asserts a loss within 1e-5 relative and a gradient within 1e-6 + 1e-5·|ref| of `want`.
fn assert_loss_and_grad(case: &str, out: &LossAndGrad, want: &LossReference, logits: &[f32]) {
    assert_loss(case, &out.loss.to_vec().unwrap(), &want.loss);
    assert_all_close(
        &format!("{case} grad"),
        &out.grad.to_vec().unwrap(),
        &want.grad,
        &[logits],
        1e-6,
        1e-5,
    );
}

/// Asserts that a loss and a gradient equal `want`'s bit for bit.
fn assert_same_result(ctx: &Context, loss: &Tensor, grad: &Tensor, want: &LossAndGrad) {
    assert_eq!(
        loss.to_vec().unwrap(),
        want.loss.to_vec().unwrap(),
        "{} loss",
        tag(ctx)
    );
    assert_eq!(
        grad.to_vec().unwrap(),
        want.grad.to_vec().unwrap(),
        "{} gradient",
        tag(ctx)
    );
}

fn random_classes(seed: u64, rows: usize, classes: usize) -> Vec<i64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..rows)
        .map(|_| rng.random_range(0..classes as i64))
        .collect()
}

/// Runs cross-entropy with class indices on `ctx` and checks loss and gradient against the
/// f64 reference.
fn check_indices(
    ctx: &Context,
    logits: &[f32],
    classes: usize,
    t: &[i64],
    o: &CrossEntropyOptions,
    case: &str,
) {
    let rows = logits.len() / classes;
    let z = Tensor::from_slice(ctx, logits, &[rows, classes]).unwrap();
    let out = z.cross_entropy(Targets::Indices(t), o).unwrap();
    let want =
        reference::cross_entropy(&widen(logits), classes, CrossEntropyTargets::Indices(t), o);
    let case = format!("{} {case}", tag(ctx));
    let expected_shape: &[usize] = if o.reduction == Reduction::None {
        &[rows]
    } else {
        &[]
    };
    assert_eq!(out.loss.shape(), expected_shape, "{case}: loss shape");
    assert_loss_and_grad(&case, &out, &want, logits);
}

/// Runs cross-entropy with probability targets on `ctx` and checks loss and gradient against
/// the f64 reference.
fn check_probabilities(
    ctx: &Context,
    logits: &[f32],
    probs: &[f32],
    classes: usize,
    o: &CrossEntropyOptions,
    case: &str,
) {
    let shape = [logits.len() / classes, classes];
    let z = Tensor::from_slice(ctx, logits, &shape).unwrap();
    let p = Tensor::from_slice(ctx, probs, &shape).unwrap();
    let out = z.cross_entropy(Targets::Probabilities(&p), o).unwrap();
    let want = reference::cross_entropy(
        &widen(logits),
        classes,
        CrossEntropyTargets::Probabilities(&widen(probs)),
        o,
    );
    let case = format!("{} probabilities {case}", tag(ctx));
    assert_loss_and_grad(&case, &out, &want, logits);
}

fn option_sets(classes: usize) -> Vec<(String, CrossEntropyOptions)> {
    let weight: Vec<f32> = (0..classes).map(|c| 0.25 + (c % 7) as f32 * 0.3).collect();
    let mut sets = Vec::new();
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for (ignore, smoothing, weighted) in [
            (false, 0.0, false),
            (true, 0.0, false),
            (false, 0.1, false),
            (false, 0.0, true),
            (true, 0.3, true),
        ] {
            let o = CrossEntropyOptions {
                reduction,
                ignore_index: if ignore { 0 } else { -100 },
                label_smoothing: smoothing,
                weight: weighted.then(|| weight.clone()),
            };
            sets.push((
                format!("{reduction:?} ignore={ignore} eps={smoothing} weight={weighted}"),
                o,
            ));
        }
    }
    sets
}

#[test]
fn cross_entropy_matches_pytorch_fixtures() {
    let dir = fixtures().join("cross_entropy");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 11, "every cross-entropy fixture is covered");
    for ctx in contexts() {
        for d in &cases {
            let name = d.file_name().unwrap().to_string_lossy().into_owned();
            let (logits, shape) = npy_f32(&d.join("logits.npy"));
            let opts: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(d.join("options.json")).unwrap())
                    .unwrap();
            let o = CrossEntropyOptions {
                reduction: Reduction::parse(opts["reduction"].as_str().unwrap()).unwrap(),
                ignore_index: opts["ignore_index"].as_i64().unwrap(),
                label_smoothing: opts["label_smoothing"].as_f64().unwrap() as f32,
                weight: opts["weight"]
                    .as_bool()
                    .unwrap()
                    .then(|| npy_f32(&d.join("weight.npy")).0),
            };
            let z = Tensor::from_slice(ctx, &logits, &shape).unwrap();
            let (t, t_shape) = npy(&d.join("targets.npy"));
            let out = if t_shape == shape {
                let probs: Vec<f32> = t.iter().map(|&v| v as f32).collect();
                let p = Tensor::from_slice(ctx, &probs, &shape).unwrap();
                z.cross_entropy(Targets::Probabilities(&p), &o).unwrap()
            } else {
                let idx = class_indices_from_floats(&t).unwrap();
                z.cross_entropy(Targets::Indices(&idx), &o).unwrap()
            };
            let (want_loss, _) = npy(&d.join("loss.npy"));
            let (want_grad, _) = npy(&d.join("grad.npy"));
            let case = format!("{} PyTorch {name}", tag(ctx));
            assert_loss(&case, &out.loss.to_vec().unwrap(), &want_loss);
            assert_all_close(
                &format!("{case} grad"),
                &out.grad.to_vec().unwrap(),
                &want_grad,
                &[&logits],
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn cross_entropy_options_alone_and_combined() {
    for ctx in contexts() {
        for classes in [1, 2, 3, 8, 37, 260, 1000, 1024] {
            let rows = 33;
            let logits = uniform(classes as u64, rows * classes, -6.0, 6.0);
            let t = random_classes(classes as u64 + 1, rows, classes);
            for (name, o) in option_sets(classes) {
                check_indices(
                    ctx,
                    &logits,
                    classes,
                    &t,
                    &o,
                    &format!("K={classes} {name}"),
                );
            }
        }
    }
}

#[test]
fn cross_entropy_with_probability_targets() {
    for ctx in contexts() {
        for classes in [1, 3, 8, 1001] {
            let rows = 17;
            let logits = uniform(5, rows * classes, -4.0, 4.0);
            // Rows of positive values normalised to 1, one of them not normalised (allowed).
            let mut probs = uniform(6, rows * classes, 0.0, 1.0);
            for row in probs.chunks_mut(classes).skip(1) {
                let s: f32 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= s);
            }
            let weight: Vec<f32> = (0..classes).map(|c| 1.0 + (c % 3) as f32).collect();
            for (reduction, eps, weighted) in [
                (Reduction::Mean, 0.0, false),
                (Reduction::Sum, 0.2, true),
                (Reduction::None, 0.1, false),
                (Reduction::Mean, 0.3, true),
            ] {
                let o = CrossEntropyOptions {
                    reduction,
                    label_smoothing: eps,
                    weight: weighted.then(|| weight.clone()),
                    ..Default::default()
                };
                let case = format!("K={classes} {reduction:?} eps={eps} w={weighted}");
                check_probabilities(ctx, &logits, &probs, classes, &o, &case);
            }
        }
    }
}

#[test]
fn cross_entropy_on_logits_with_a_large_common_offset_on_every_row_kernel() {
    // The loss is log S + M − z_y: formed from M itself it would round to the ulp of M.
    // Widths on both sides of each kernel's range (the cached per-row kernels' 64 floats, the
    // subgroup-per-row kernel's 1,024 on 8-lane subgroups), offsets up to 1e6, small spreads.
    let smoothed = CrossEntropyOptions {
        label_smoothing: 0.1,
        weight: None,
        ..Default::default()
    };
    let per_row = CrossEntropyOptions {
        reduction: Reduction::None,
        ..Default::default()
    };
    for ctx in contexts() {
        for (i, &classes) in OFFSET_WIDTHS.iter().enumerate() {
            let rows = 3;
            let t = random_classes(5000 + i as u64, rows, classes);
            let mut probs = uniform(5100 + i as u64, rows * classes, 0.0, 1.0);
            for row in probs.chunks_mut(classes) {
                let s: f32 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= s);
            }
            for offset in OFFSETS {
                for spread in [1.0, 10.0] {
                    let logits = offset_uniform(5200 + i as u64, rows * classes, offset, spread);
                    let case = format!("K={classes} offset {offset:e} spread {spread}");
                    for (name, o) in [("none", &per_row), ("smoothed", &smoothed)] {
                        check_indices(ctx, &logits, classes, &t, o, &format!("{case} {name}"));
                        check_probabilities(
                            ctx,
                            &logits,
                            &probs,
                            classes,
                            o,
                            &format!("{case} {name}"),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn cross_entropy_at_scale_vocabulary_and_many_rows() {
    let o = CrossEntropyOptions {
        label_smoothing: 0.1,
        ..Default::default()
    };
    for ctx in common::gpus() {
        // A vocabulary: K = 32,000.
        let logits = uniform(40, 24 * 32_000, -10.0, 10.0);
        let t = random_classes(41, 24, 32_000);
        check_indices(ctx, &logits, 32_000, &t, &o, "K=32000");
        // N = 100,000 rows, N = 1, K = 2.
        let logits = uniform(42, 100_000 * 10, -5.0, 5.0);
        let t = random_classes(43, 100_000, 10);
        check_indices(
            ctx,
            &logits,
            10,
            &t,
            &CrossEntropyOptions::default(),
            "N=100000",
        );
        check_indices(ctx, &[0.5, -0.5], 2, &[1], &o, "N=1 K=2");
    }
}

#[test]
fn cross_entropy_extreme_logits_and_ignored_batches() {
    // Three classes, and four (which the vec4 and subgroup-per-row kernels take).
    let three = vec![
        1e4, -1e4, 0.0, -1e4, 1e4, 3.0, 3e4, 3e4, -3e4, 88.0, -88.0, 1.0,
    ];
    let four = vec![
        1e4, -1e4, 0.0, 5.0, -1e4, 1e4, 3.0, 2.0, 3e4, 3e4, -3e4, 0.0, 88.0, -88.0, 1.0, 0.0,
    ];
    for ctx in contexts() {
        for (classes, logits) in [(3, &three), (4, &four)] {
            let t = [1i64, 0, 2, 0];
            for (name, o) in option_sets(classes) {
                check_indices(
                    ctx,
                    logits,
                    classes,
                    &t,
                    &o,
                    &format!("extreme K={classes} {name}"),
                );
            }
            // Every row ignored: the mean is NaN (0/0) as in PyTorch, the gradient zero.
            let z = Tensor::from_slice(ctx, logits, &[4, classes]).unwrap();
            let out = z
                .cross_entropy(
                    Targets::Indices(&[-100; 4]),
                    &CrossEntropyOptions::default(),
                )
                .unwrap();
            assert!(out.loss.to_vec().unwrap()[0].is_nan(), "{}", tag(ctx));
            assert_eq!(
                out.grad.to_vec().unwrap(),
                vec![0.0; 4 * classes],
                "{}",
                tag(ctx)
            );
            let sum = CrossEntropyOptions {
                reduction: Reduction::Sum,
                ..Default::default()
            };
            let out = z
                .cross_entropy(
                    Targets::IndicesU32(&[7, 7, 7, 7]),
                    &CrossEntropyOptions {
                        ignore_index: 7,
                        ..sum
                    },
                )
                .unwrap();
            assert_eq!(out.loss.to_vec().unwrap(), vec![0.0], "{}", tag(ctx));
        }
    }
}

#[test]
fn cross_entropy_in_place_overwrites_the_logits_with_the_gradient() {
    for ctx in contexts() {
        for classes in [5, 64] {
            let logits = uniform(9, 20 * classes, -3.0, 3.0);
            let t = random_classes(10, 20, classes);
            let o = CrossEntropyOptions {
                label_smoothing: 0.05,
                ..Default::default()
            };
            let fresh = Tensor::from_slice(ctx, &logits, &[20, classes]).unwrap();
            let want = fresh.cross_entropy(Targets::Indices(&t), &o).unwrap();
            let z = Tensor::from_slice(ctx, &logits, &[20, classes]).unwrap();
            let loss = z.cross_entropy_in_place(Targets::Indices(&t), &o).unwrap();
            assert_same_result(ctx, &loss, &z, &want);
        }
    }
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let classes = 5;
    let logits = uniform(11, 3 * classes, -2.0, 2.0);
    let t = [4i64, 0, 2];
    let weight = vec![0.5f32, 1.0, 1.5, 2.0, 2.5];
    let o = CrossEntropyOptions {
        label_smoothing: 0.2,
        weight: Some(weight.clone()),
        ..Default::default()
    };
    let loss_of = |z: &[f64]| -> f64 {
        reference::cross_entropy(
            z,
            classes,
            CrossEntropyTargets::Indices(&t),
            &CrossEntropyOptions {
                weight: Some(weight.clone()),
                label_smoothing: 0.2,
                ..Default::default()
            },
        )
        .loss[0]
    };
    for ctx in contexts() {
        let z = Tensor::from_slice(ctx, &logits, &[3, classes]).unwrap();
        let grad = z
            .cross_entropy(Targets::Indices(&t), &o)
            .unwrap()
            .grad
            .to_vec()
            .unwrap();
        for i in 0..logits.len() {
            let (mut plus, mut minus) = (widen(&logits), widen(&logits));
            plus[i] += 1e-6;
            minus[i] -= 1e-6;
            let fd = (loss_of(&plus) - loss_of(&minus)) / 2e-6;
            assert!(
                (f64::from(grad[i]) - fd).abs() <= 1e-5 + 1e-4 * fd.abs(),
                "{} at {i}: {} vs {fd}",
                tag(ctx),
                grad[i]
            );
        }
    }
}

#[test]
fn cross_entropy_bad_input_is_a_typed_error_naming_the_row() {
    for ctx in contexts() {
        let z = Tensor::from_slice(ctx, &[0.0; 12], &[4, 3]).unwrap();
        let o = CrossEntropyOptions::default();
        match z.cross_entropy(Targets::Indices(&[0, 1, 3, -5]), &o) {
            Err(Error::TargetOutOfRange {
                row: 2,
                value: 3,
                classes: 3,
                ..
            }) => {}
            other => panic!(
                "{}: expected TargetOutOfRange at row 2, got {other:?}",
                tag(ctx)
            ),
        }
        assert!(matches!(
            z.cross_entropy(Targets::Indices(&[0, 1]), &o),
            Err(Error::ShapeMismatch { .. })
        ));
        let wrong = Tensor::from_slice(ctx, &[0.0; 8], &[4, 2]).unwrap();
        assert!(matches!(
            z.cross_entropy(Targets::Probabilities(&wrong), &o),
            Err(Error::ShapeMismatch { .. })
        ));
        let bad_weight = CrossEntropyOptions {
            weight: Some(vec![1.0; 4]),
            ..Default::default()
        };
        assert!(matches!(
            z.cross_entropy(Targets::Indices(&[0; 4]), &bad_weight),
            Err(Error::ShapeMismatch { what: "weight", .. })
        ));
        for eps in [-0.1, 1.5, f32::NAN] {
            let o = CrossEntropyOptions {
                label_smoothing: eps,
                ..Default::default()
            };
            assert!(matches!(
                z.cross_entropy(Targets::Indices(&[0; 4]), &o),
                Err(Error::InvalidParameter {
                    name: "label_smoothing",
                    ..
                })
            ));
        }
        let empty_classes = Tensor::from_slice(ctx, &[], &[4, 0]).unwrap();
        assert!(matches!(
            empty_classes.cross_entropy(Targets::Indices(&[0; 4]), &o),
            Err(Error::InvalidShape { .. })
        ));
    }
    match class_indices_from_floats(&[1.0, 2.0, f64::NAN]) {
        Err(Error::TargetNotInteger { row: 2, .. }) => {}
        other => panic!("expected TargetNotInteger at row 2, got {other:?}"),
    }
    assert!(matches!(
        class_indices_from_floats(&[0.5]),
        Err(Error::TargetNotInteger { row: 0, .. })
    ));
}

fn check_bce(
    ctx: &Context,
    z: &[f32],
    y: &[f32],
    shape: &[usize],
    o: &BceOptions,
    case: &str,
) -> LossReference {
    let zt = Tensor::from_slice(ctx, z, shape).unwrap();
    let yt = Tensor::from_slice(ctx, y, shape).unwrap();
    let out = zt.bce_with_logits(&yt, o).unwrap();
    let want = reference::bce_with_logits(&widen(z), &widen(y), o);
    let case = format!("{} {case}", tag(ctx));
    assert_loss(&case, &out.loss.to_vec().unwrap(), &want.loss);
    assert_all_close(
        &format!("{case} grad"),
        &out.grad.to_vec().unwrap(),
        &want.grad,
        &[z, y],
        1e-6,
        1e-5,
    );
    want
}

#[test]
fn bce_matches_pytorch_fixtures() {
    let dir = fixtures().join("bce_with_logits");
    for ctx in contexts() {
        for case in [
            "extreme",
            "mean",
            "none",
            "soft_targets_weight_pos_weight",
            "sum",
        ] {
            let d = dir.join(case);
            let (z, shape) = npy_f32(&d.join("logits.npy"));
            let (y, _) = npy_f32(&d.join("targets.npy"));
            let opts: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(d.join("options.json")).unwrap())
                    .unwrap();
            let o = BceOptions {
                reduction: Reduction::parse(opts["reduction"].as_str().unwrap()).unwrap(),
                weight: opts["weight"]
                    .as_bool()
                    .unwrap()
                    .then(|| npy_f32(&d.join("weight.npy")).0),
                pos_weight: opts["pos_weight"]
                    .as_bool()
                    .unwrap()
                    .then(|| npy_f32(&d.join("pos_weight.npy")).0),
            };
            let zt = Tensor::from_slice(ctx, &z, &shape).unwrap();
            let yt = Tensor::from_slice(ctx, &y, &shape).unwrap();
            let out = zt.bce_with_logits(&yt, &o).unwrap();
            let (want_loss, _) = npy(&d.join("loss.npy"));
            let (want_grad, _) = npy(&d.join("grad.npy"));
            let t = format!("{} PyTorch bce {case}", tag(ctx));
            assert_loss(&t, &out.loss.to_vec().unwrap(), &want_loss);
            assert_all_close(
                &format!("{t} grad"),
                &out.grad.to_vec().unwrap(),
                &want_grad,
                &[&z, &y],
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn bce_on_logits_with_a_large_common_offset() {
    for ctx in contexts() {
        let (rows, cols) = (3, 1025);
        let n = rows * cols;
        let y = uniform(5300, n, 0.0, 1.0);
        let pw: Vec<f32> = (0..cols).map(|c| 1.0 + (c % 3) as f32).collect();
        for offset in [0.0, 1e2, 1e4, 1e6, -1e2, -1e4, -1e6] {
            for spread in [1.0, 10.0] {
                let z = offset_uniform(5301, n, offset, spread);
                for positive in [false, true] {
                    let o = BceOptions {
                        reduction: Reduction::None,
                        weight: None,
                        pos_weight: positive.then(|| pw.clone()),
                    };
                    let case = format!("offset {offset:e} spread {spread} pw={positive}");
                    check_bce(ctx, &z, &y, &[rows, cols], &o, &case);
                }
            }
        }
    }
}

#[test]
fn bce_options_sizes_and_extremes() {
    for ctx in contexts() {
        for &(rows, cols) in &[(1, 1), (3, 5), (7, 33), (257, 129)] {
            let n = rows * cols;
            let z = uniform(n as u64, n, -8.0, 8.0);
            let y = uniform(n as u64 + 1, n, 0.0, 1.0);
            let w: Vec<f32> = (0..cols).map(|c| 0.5 + (c % 4) as f32 * 0.25).collect();
            let pw: Vec<f32> = (0..cols).map(|c| 1.0 + (c % 3) as f32).collect();
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                for (weighted, positive) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let o = BceOptions {
                        reduction,
                        weight: weighted.then(|| w.clone()),
                        pos_weight: positive.then(|| pw.clone()),
                    };
                    check_bce(
                        ctx,
                        &z,
                        &y,
                        &[rows, cols],
                        &o,
                        &format!("[{rows}, {cols}] {reduction:?} w={weighted} pw={positive}"),
                    );
                }
            }
        }
        // Finite and exact at ±1e4, with hard and soft targets.
        let z = [1e4, -1e4, 1e4, -1e4, 0.0, 100.0];
        let y = [0.0, 1.0, 1.0, 0.0, 0.5, 0.25];
        let want = check_bce(
            ctx,
            &z,
            &y,
            &[6],
            &BceOptions {
                reduction: Reduction::None,
                ..Default::default()
            },
            "extremes",
        );
        assert_eq!(want.loss[..4], [1e4, 1e4, 0.0, 0.0]);
    }
    for ctx in common::gpus() {
        let n = 1_000_003;
        let z = uniform(50, n, -20.0, 20.0);
        let y = uniform(51, n, 0.0, 1.0);
        check_bce(
            ctx,
            &z,
            &y,
            &[n],
            &BceOptions::default(),
            "1,000,003 elements",
        );
    }
}

#[test]
fn bce_bad_input_and_empty_batches() {
    for ctx in contexts() {
        let z = Tensor::from_slice(ctx, &[0.0; 6], &[2, 3]).unwrap();
        let y = Tensor::from_slice(ctx, &[0.0; 6], &[3, 2]).unwrap();
        assert!(matches!(
            z.bce_with_logits(&y, &BceOptions::default()),
            Err(Error::ShapeMismatch { .. })
        ));
        let o = BceOptions {
            pos_weight: Some(vec![1.0; 2]),
            ..Default::default()
        };
        assert!(matches!(
            z.bce_with_logits(&z, &o),
            Err(Error::ShapeMismatch {
                what: "pos_weight",
                ..
            })
        ));
        let empty = Tensor::from_slice(ctx, &[], &[0, 3]).unwrap();
        let mean = empty
            .bce_with_logits(&empty, &BceOptions::default())
            .unwrap();
        assert!(
            mean.loss.to_vec().unwrap()[0].is_nan(),
            "{}: mean of nothing",
            tag(ctx)
        );
        let sum = empty
            .bce_with_logits(
                &empty,
                &BceOptions {
                    reduction: Reduction::Sum,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(sum.loss.to_vec().unwrap(), vec![0.0], "{}", tag(ctx));
    }
}

#[test]
fn a_zero_total_weight_mean_is_nan_on_every_backend_as_in_pytorch() {
    // Both rows count (none is ignored) but their classes weigh 0: the mean divides by 0.
    let logits = [1.0, 2.0, 3.0, 0.5, -0.5, 0.0];
    let o = CrossEntropyOptions {
        weight: Some(vec![0.0, 1.0, 0.0]),
        ..Default::default()
    };
    for ctx in contexts() {
        let z = Tensor::from_slice(ctx, &logits, &[2, 3]).unwrap();
        let out = z.cross_entropy(Targets::Indices(&[0, 2]), &o).unwrap();
        assert!(out.loss.to_vec().unwrap()[0].is_nan(), "{}", tag(ctx));
        assert!(
            out.grad.to_vec().unwrap().iter().all(|g| g.is_nan()),
            "{}",
            tag(ctx)
        );
        // An ignored row keeps a zero gradient beside them.
        let out = z.cross_entropy(Targets::Indices(&[0, -100]), &o).unwrap();
        let g = out.grad.to_vec().unwrap();
        assert!(
            g[..3].iter().all(|v| v.is_nan()) && g[3..] == [0.0; 3],
            "{}: {g:?}",
            tag(ctx)
        );
    }
}

#[test]
fn probability_targets_may_share_storage_with_the_logits() {
    let logits = uniform(30, 4 * 6, -2.0, 2.0);
    for ctx in contexts() {
        let z = Tensor::from_slice(ctx, &logits, &[4, 6]).unwrap();
        let copy = Tensor::from_slice(ctx, &logits, &[4, 6]).unwrap();
        let want = z
            .cross_entropy(
                Targets::Probabilities(&copy),
                &CrossEntropyOptions::default(),
            )
            .unwrap();
        let got = z
            .cross_entropy(Targets::Probabilities(&z), &CrossEntropyOptions::default())
            .unwrap();
        assert_same_result(ctx, &got.loss, &got.grad, &want);
        // And in place, where the gradient overwrites the very targets.
        let loss = z
            .cross_entropy_in_place(Targets::Probabilities(&z), &CrossEntropyOptions::default())
            .unwrap();
        assert_same_result(ctx, &loss, &z, &want);
    }
}

#[test]
fn nll_loss_with_the_class_last_matches_the_reference() {
    // Rows of log-probabilities [.., C] (leading dims kept for `none`), weights, an ignored row
    // and a repeated class; every reduction, f32 and half storage.
    let (rows, classes) = (3 * 7, 11);
    let x: Vec<f32> = uniform(90, rows * classes, -9.0, 0.0);
    let mut labels: Vec<i64> = (0..rows as i64).map(|r| (r * 4) % classes as i64).collect();
    labels[6] = 3;
    labels[13] = -100;
    let weight = uniform(91, classes, 0.25, 2.0);
    for ctx in common::all_backends() {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let stored: Vec<f32> = x.iter().map(|&v| dtype.round(v)).collect();
            let xt = Tensor::from_slice_as(&ctx, &stored, &[3, 7, classes], dtype).unwrap();
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                let o = CrossEntropyOptions {
                    reduction,
                    weight: Some(weight.clone()),
                    ..Default::default()
                };
                let out = xt.nll_loss(Targets::Indices(&labels), &o).unwrap();
                let stored64: Vec<f64> = stored.iter().map(|&v| f64::from(v)).collect();
                let want = reference::nll_loss(&stored64, classes, &labels, &o);
                let case = format!("{} {dtype} nll_loss {reduction:?}", label(&ctx));
                let loss_shape: &[usize] = match reduction {
                    Reduction::None => &[3, 7],
                    _ => &[],
                };
                assert_eq!(out.loss.shape(), loss_shape, "{case}");
                common::assert_stored_close(
                    &case,
                    dtype,
                    &out.loss.to_vec().unwrap(),
                    &want.loss,
                    &[],
                );
                // Exactly one non-zero gradient per counted row, at its class.
                let grad = out.grad.to_vec().unwrap();
                common::assert_stored_close(&case, dtype, &grad, &want.grad, &[]);
                let nonzero = grad.iter().filter(|&&g| g != 0.0).count();
                assert_eq!(nonzero, rows - 1, "{case}: one gradient per counted row");
            }
        }
    }
}
