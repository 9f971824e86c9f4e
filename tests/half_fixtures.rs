//! PyTorch's own answers for f16 and bf16 tensors (`tests/fixtures/pytorch/half/`, copied from
//! the shared fixtures): every activation, softmax and log-softmax, the fused cross-entropy and
//! BCE, on every adapter and the CPU backend.
//!
//! Two checks per result. Against the f64 reference computed from the fixture's stored inputs:
//! within one ulp of the storage type plus the f32 bound (the crate's accuracy promise).
//! Against PyTorch's answer: within one ulp too where PyTorch computes in f32 and rounds once;
//! where its half path rounds an intermediate to the storage type first, within the ulps that
//! rounding costs it (measured, and stated per op below). Ours is the more accurate there: it
//! keeps every intermediate in f32, which the reference check holds it to.

mod common;

use gpu_activations::cpu::widen;
use std::path::{Path, PathBuf};

use common::{HALVES, all_backends, assert_stored_close, fixtures, label, npy, npy_f32};
use gpu_activations::accuracy::{ATOL, RTOL, ulp};
use gpu_activations::cpu::loss::{self as reference, CrossEntropyTargets};
use gpu_activations::cpu::{activation as act_ref, softmax as softmax_ref};
use gpu_activations::{
    Activation, BceOptions, Context, CrossEntropyOptions, DType, Reduction, Targets, Tensor,
    class_indices_from_floats,
};

fn dir(dtype: DType) -> PathBuf {
    let name = match dtype {
        DType::F16 => "f16",
        _ => "bf16",
    };
    fixtures().join("half").join(name)
}

/// A fixture array (float16, or float32 holding bf16 values) as a tensor of `dtype`, and its
/// values.
fn load(ctx: &Context, path: &Path, dtype: DType) -> (Tensor, Vec<f32>) {
    let (v, shape) = npy_f32(path);
    assert!(
        v.iter()
            .all(|&x| dtype.round(x).to_bits() == x.to_bits() || x.is_nan()),
        "{}: values are exact in {dtype}",
        path.display()
    );
    (Tensor::from_slice_as(ctx, &v, &shape, dtype).unwrap(), v)
}

fn cases(d: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    all.sort();
    all
}

/// Asserts `got` within `ulps` ulps of `dtype` (plus the f32 bound) of PyTorch's `want`, NaN
/// and ±∞ exactly, except at the indices in `conventions` (PyTorch's half path differs from
/// its own f32 answer there; see the callers).
fn assert_near_pytorch(
    case: &str,
    dtype: DType,
    got: &[f32],
    want: &[f64],
    ulps: f64,
    conventions: &[usize],
) {
    assert_near_pytorch_with(case, dtype, got, want, ulps, conventions, |_| 0.0);
}

/// [`assert_near_pytorch`] with an absolute `slack` per element: what PyTorch's rounding of an
/// intermediate to the storage type may cost it there.
fn assert_near_pytorch_with(
    case: &str,
    dtype: DType,
    got: &[f32],
    want: &[f64],
    ulps: f64,
    conventions: &[usize],
    slack: impl Fn(usize) -> f64,
) {
    assert_eq!(got.len(), want.len(), "{case}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if conventions.contains(&i) {
            continue;
        }
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            f64::from(g) == w
        } else {
            g.is_finite()
                && (f64::from(g) - w).abs()
                    <= ulps * ulp(dtype, w) + slack(i) + ATOL + RTOL * w.abs()
        };
        assert!(
            ok,
            "{case} ({dtype}): element {i}: ours {g:e}, PyTorch's {w:e}, more than {ulps} ulps apart"
        );
    }
}

/// Indices where PyTorch's half answer follows a convention of its own:
/// - hardswish'(−3): 0 in PyTorch's half kernels, g·(−3/3 + ½) in its f32 kernel, which the
///   crate follows for every storage type (the kink's value depends on PyTorch's code path).
/// - bf16 gelu and gelu_tanh at ±∞ or ±1e30: PyTorch's bf16 path computes in f32, where x³ (or
///   x·erf) overflows to NaN; ours keeps the limit (x for gelu, g for the slope), as PyTorch's
///   f32 and f64 answers do.
fn conventions(act: Activation, dtype: DType, xs: &[f32], backward: bool) -> Vec<usize> {
    xs.iter()
        .enumerate()
        .filter(|&(_, &x)| match act {
            Activation::Hardswish => backward && x == -3.0,
            Activation::Gelu | Activation::GeluTanh => dtype == DType::BF16 && x.abs() >= 1e30,
            _ => false,
        })
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn activations_match_pytorchs_half_answers() {
    for dtype in HALVES {
        let d = dir(dtype).join("activations");
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                n.strip_suffix(".forward.npy").map(str::to_owned)
            })
            .collect();
        names.sort();
        assert_eq!(
            names.len(),
            15,
            "{dtype}: every activation fixture is covered"
        );
        for ctx in all_backends() {
            let (x, xs) = load(&ctx, &d.join("x.npy"), dtype);
            let (g, gs) = load(&ctx, &d.join("g.npy"), dtype);
            for name in &names {
                let act: Activation = name.parse().unwrap();
                let case = format!("{} PyTorch {dtype} {name}", label(&ctx));
                let y = x.activation(act).unwrap().to_vec().unwrap();
                let reference: Vec<f64> = xs
                    .iter()
                    .map(|&v| act_ref::forward(act, v.into()))
                    .collect();
                assert_stored_close(&case, dtype, &y, &reference, &[&xs]);
                let (want, _) = npy(&d.join(format!("{name}.forward.npy")));
                let skip = conventions(act, dtype, &xs, false);
                assert_near_pytorch(&case, dtype, &y, &want, 2.0, &skip);

                let case = format!("{case} backward");
                let dx = x.activation_backward(act, &g).unwrap().to_vec().unwrap();
                let reference: Vec<f64> = xs
                    .iter()
                    .zip(&gs)
                    .map(|(&v, &g)| act_ref::backward(act, v.into(), g.into()))
                    .collect();
                assert_stored_close(&case, dtype, &dx, &reference, &[&xs, &gs]);
                let (want, _) = npy(&d.join(format!("{name}.backward.npy")));
                let skip = conventions(act, dtype, &xs, true);
                match act {
                    // PyTorch differentiates sigmoid and tanh at its saved output, rounded to
                    // the storage type: so does ours from that output.
                    Activation::Sigmoid | Activation::Tanh => {
                        let (saved, _) = load(&ctx, &d.join(format!("{name}.forward.npy")), dtype);
                        let from_output = if act == Activation::Sigmoid {
                            saved.sigmoid_backward_from_output(&g)
                        } else {
                            saved.tanh_backward_from_output(&g)
                        };
                        // Its product g·y(1 − y) (or g(1 − y²)) rounds once more: 2 ulps.
                        let got = from_output.unwrap().to_vec().unwrap();
                        assert_near_pytorch(&case, dtype, &got, &want, 2.0, &skip);
                    }
                    // PyTorch's gelu_tanh' loses up to 16 ulps to its half path (measured),
                    // and its f32 terms ½(1 + tanh u) and ½x(1 − tanh² u)u' cancel for x ≪ 0:
                    // an f32 ulp of 1 times the slope's factors, |g|(1 + |x u'|)·2⁻²³.
                    Activation::GeluTanh => {
                        let cancellation = |i: usize| {
                            let x = f64::from(xs[i]);
                            let du = 0.7978845608 * (1.0 + 0.134145 * x * x);
                            f64::from(gs[i]).abs() * (1.0 + (x * du).abs()) * 2f64.powi(-23)
                        };
                        assert_near_pytorch_with(
                            &case,
                            dtype,
                            &dx,
                            &want,
                            16.0,
                            &skip,
                            cancellation,
                        )
                    }
                    _ => assert_near_pytorch(&case, dtype, &dx, &want, 2.0, &skip),
                }
            }
        }
    }
}

#[test]
fn softmax_matches_pytorchs_half_answers() {
    for dtype in HALVES {
        let all = cases(&dir(dtype).join("softmax"));
        assert_eq!(all.len(), 4, "{dtype}: every softmax case is covered");
        for ctx in all_backends() {
            for d in &all {
                let (x, xs) = load(&ctx, &d.join("x.npy"), dtype);
                let (g, gs) = load(&ctx, &d.join("g.npy"), dtype);
                let cols = *x.shape().last().unwrap();
                for (name, log) in [("softmax", false), ("log_softmax", true)] {
                    let case = format!("{} PyTorch {dtype} {} {name}", label(&ctx), d.display());
                    let y = if log { x.log_softmax() } else { x.softmax() }
                        .unwrap()
                        .to_vec()
                        .unwrap();
                    let reference: Vec<f64> = widen(&xs)
                        .chunks(cols)
                        .flat_map(|r| softmax_ref::forward_row(r, log))
                        .collect();
                    assert_stored_close(&case, dtype, &y, &reference, &[&xs]);
                    let (want, _) = npy(&d.join(format!("{name}.forward.npy")));
                    // PyTorch's half log-softmax rounds M + log S, an intermediate of the
                    // logits' magnitude, to the storage type before x − (M + log S): one ulp
                    // of that magnitude on top (0.06 at logits of 11 in bf16).
                    let intermediate = |i: usize| {
                        if log {
                            ulp(dtype, f64::from(xs[i]) - want[i])
                        } else {
                            0.0
                        }
                    };
                    assert_near_pytorch_with(&case, dtype, &y, &want, 1.0, &[], intermediate);

                    // The backward, from PyTorch's own saved output.
                    let (saved, ys) = load(&ctx, &d.join(format!("{name}.forward.npy")), dtype);
                    let dx = if log {
                        saved.log_softmax_backward(&g)
                    } else {
                        saved.softmax_backward(&g)
                    }
                    .unwrap()
                    .to_vec()
                    .unwrap();
                    let reference: Vec<f64> = widen(&ys)
                        .chunks(cols)
                        .zip(widen(&gs).chunks(cols))
                        .flat_map(|(y, g)| softmax_ref::backward_row(y, g, log))
                        .collect();
                    let case = format!("{case} backward");
                    assert_stored_close(&case, dtype, &dx, &reference, &[&ys, &gs]);
                    let (want, _) = npy(&d.join(format!("{name}.backward.npy")));
                    assert_near_pytorch(&case, dtype, &dx, &want, 1.0, &[]);
                }
            }
        }
    }
}

#[test]
fn losses_match_pytorchs_half_answers() {
    for dtype in HALVES {
        let all = cases(&dir(dtype).join("cross_entropy"));
        assert_eq!(all.len(), 3, "{dtype}: every cross-entropy case is covered");
        for ctx in all_backends() {
            for d in &all {
                let opts: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(d.join("options.json")).unwrap())
                        .unwrap();
                let defaults = CrossEntropyOptions::default();
                let options = CrossEntropyOptions {
                    reduction: opts["reduction"]
                        .as_str()
                        .map_or(Reduction::Mean, |r| Reduction::parse(r).unwrap()),
                    ignore_index: opts["ignore_index"]
                        .as_i64()
                        .unwrap_or(defaults.ignore_index),
                    label_smoothing: opts["label_smoothing"].as_f64().unwrap_or(0.0) as f32,
                    weight: None,
                };
                let (z, zs) = load(&ctx, &d.join("logits.npy"), dtype);
                let classes = *z.shape().last().unwrap();
                let (t, _) = npy(&d.join("targets.npy"));
                let labels = class_indices_from_floats(&t).unwrap();
                let r = z
                    .cross_entropy(Targets::Indices(&labels), &options)
                    .unwrap();
                let reference = reference::cross_entropy(
                    &widen(&zs),
                    classes,
                    CrossEntropyTargets::Indices(&labels),
                    &options,
                );
                let case = format!("{} PyTorch {dtype} {}", label(&ctx), d.display());
                let (loss, grad) = (r.loss.to_vec().unwrap(), r.grad.to_vec().unwrap());
                assert_stored_close(&case, dtype, &loss, &reference.loss, &[]);
                assert_stored_close(&case, dtype, &grad, &reference.grad, &[]);
                // PyTorch's half cross-entropy is log-softmax, rounded to the storage type,
                // then the NLL: its gradient e^{round(log p)} − t carries that rounding (up to
                // 243 ulps of a small bf16 gradient with label smoothing, measured).
                let (want, _) = npy(&d.join("loss.npy"));
                assert_near_pytorch(&case, dtype, &loss, &want, 4.0, &[]);
                let (want, _) = npy(&d.join("grad.npy"));
                assert_near_pytorch(&case, dtype, &grad, &want, 256.0, &[]);
            }
            let d = dir(dtype).join("bce_with_logits/mean");
            let (z, zs) = load(&ctx, &d.join("logits.npy"), dtype);
            let (y, ys) = load(&ctx, &d.join("targets.npy"), dtype);
            let r = z.bce_with_logits(&y, &BceOptions::default()).unwrap();
            let reference =
                reference::bce_with_logits(&widen(&zs), &widen(&ys), &BceOptions::default());
            let case = format!("{} PyTorch {dtype} bce", label(&ctx));
            let (loss, grad) = (r.loss.to_vec().unwrap(), r.grad.to_vec().unwrap());
            assert_stored_close(&case, dtype, &loss, &reference.loss, &[]);
            assert_stored_close(&case, dtype, &grad, &reference.grad, &[]);
            // PyTorch's half BCE rounds σ(z) to the storage type before σ(z) − y: a gradient
            // near 0 keeps only that rounding (up to 80 ulps of a bf16 gradient of 1e-6).
            let (want, _) = npy(&d.join("loss.npy"));
            assert_near_pytorch(&case, dtype, &loss, &want, 1.0, &[]);
            let (want, _) = npy(&d.join("grad.npy"));
            assert_near_pytorch(&case, dtype, &grad, &want, 96.0, &[]);
        }
    }
}
