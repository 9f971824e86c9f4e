//! Every backward on the device against central finite differences of the f64 reference's
//! forward: each activation (with non-default parameters too), the gated activations (both
//! gradients), PReLU (input and slope), softmax along an inner dim, and the dim-1 losses. Points
//! within a step of a kink (where the one-sided differences disagree) are skipped: there the
//! derivative is a convention, which the special-value tests and PyTorch's fixtures hold.

mod common;

use common::{all_backends, label, uniform};
use gpu_activations::cpu::activation as act_ref;
use gpu_activations::cpu::gated as gated_ref;
use gpu_activations::cpu::loss as loss_ref;
use gpu_activations::cpu::softmax as softmax_ref;
use gpu_activations::{Activation, CrossEntropyOptions, Gate, HeadOptions, Targets, Tensor};

const STEP: f64 = 1e-4;

/// The derivative of `f` at `x` by central differences, or `None` near a kink.
fn slope(f: impl Fn(f64) -> f64, x: f64) -> Option<f64> {
    let (left, mid, right) = (f(x - STEP), f(x), f(x + STEP));
    let (l, r) = ((mid - left) / STEP, (right - mid) / STEP);
    ((l - r).abs() <= 1e-3 * (1.0 + l.abs().max(r.abs()))).then_some((right - left) / (2.0 * STEP))
}

/// Asserts `got` (the device's gradient) against the finite-difference `want`, where known.
fn assert_slopes(case: &str, got: &[f32], want: &[Option<f64>]) {
    assert_eq!(got.len(), want.len(), "{case}");
    let mut checked = 0;
    for (i, (&g, w)) in got.iter().zip(want).enumerate() {
        if let Some(w) = w {
            let bound = 2e-5 + 2e-4 * w.abs();
            assert!(
                (f64::from(g) - w).abs() <= bound,
                "{case}: element {i}: device {g:e}, finite differences {w:e}"
            );
            checked += 1;
        }
    }
    assert!(
        checked * 10 >= got.len() * 8,
        "{case}: only {checked} of {} away from kinks",
        got.len()
    );
}

fn activations() -> Vec<Activation> {
    let mut all = Activation::ALL.to_vec();
    all.extend([
        Activation::Celu { alpha: 0.7 },
        Activation::Hardtanh {
            min_val: -2.0,
            max_val: 0.5,
        },
        Activation::Threshold {
            threshold: 0.3,
            value: -1.0,
        },
        Activation::Hardshrink { lambd: 1.2 },
        Activation::Softshrink { lambd: 0.25 },
        Activation::RreluEval {
            lower: 0.1,
            upper: 0.3,
        },
        Activation::OnnxHardSigmoid {
            alpha: 0.3,
            beta: 0.4,
        },
        Activation::OnnxSelu {
            alpha: 1.5,
            gamma: 1.1,
        },
        Activation::OnnxThresholdedRelu { alpha: 0.8 },
        Activation::OnnxSwish { alpha: 1.7 },
        Activation::Softplus {
            beta: 2.0,
            threshold: 10.0,
        },
        Activation::Elu { alpha: 0.5 },
        Activation::LeakyRelu {
            negative_slope: 0.2,
        },
    ]);
    all
}

#[test]
fn every_activations_backward_matches_finite_differences() {
    let x = uniform(50, 2000, -5.0, 5.0);
    let g = vec![1.0f32; x.len()];
    for ctx in all_backends() {
        let xt = Tensor::from_slice(&ctx, &x, &[x.len()]).unwrap();
        let gt = Tensor::from_slice(&ctx, &g, &[g.len()]).unwrap();
        for act in activations() {
            let got = xt.activation_backward(act, &gt).unwrap().to_vec().unwrap();
            let want: Vec<Option<f64>> = x
                .iter()
                .map(|&v| slope(|t| act_ref::forward(act, t), v.into()))
                .collect();
            assert_slopes(&format!("{} {act:?}", label(&ctx)), &got, &want);
        }
    }
}

#[test]
fn gated_and_prelu_backwards_match_finite_differences() {
    let (rows, half) = (16, 24);
    let x = uniform(51, rows * 2 * half, -4.0, 4.0);
    for ctx in all_backends() {
        let xt = Tensor::from_slice(&ctx, &x, &[rows, 2 * half]).unwrap();
        let ones = Tensor::from_slice(&ctx, &vec![1.0; rows * half], &[rows, half]).unwrap();
        for gate in [Gate::Glu, Gate::Swiglu, Gate::Geglu, Gate::GegluTanh] {
            let got = xt.gated_backward(gate, &ones).unwrap().to_vec().unwrap();
            let mut want = vec![None; x.len()];
            for r in 0..rows {
                for j in 0..half {
                    let (ia, ib) = (r * 2 * half + j, r * 2 * half + j + half);
                    let (a, b) = (f64::from(x[ia]), f64::from(x[ib]));
                    want[ia] = slope(|t| gated_ref::forward_pair(gate, t, b), a);
                    want[ib] = slope(|t| gated_ref::forward_pair(gate, a, t), b);
                }
            }
            assert_slopes(&format!("{} {gate:?}", label(&ctx)), &got, &want);
        }
        // PReLU [4, 3, 5] with one slope per channel: dx, and dweight as the slope of Σ y.
        let x = uniform(52, 60, -3.0, 3.0);
        let w = [0.25f32, -0.1, 0.6];
        let xt = Tensor::from_slice(&ctx, &x, &[4, 3, 5]).unwrap();
        let wt = Tensor::from_slice(&ctx, &w, &[3]).unwrap();
        let ones = Tensor::from_slice(&ctx, &[1.0; 60], &[4, 3, 5]).unwrap();
        let (dx, dw) = xt.prelu_backward(&wt, &ones).unwrap();
        let prelu = |v: f64, s: f64| if v > 0.0 { v } else { s * v };
        let want: Vec<Option<f64>> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| slope(|t| prelu(t, w[(i / 5) % 3].into()), v.into()))
            .collect();
        assert_slopes(
            &format!("{} prelu dx", label(&ctx)),
            &dx.to_vec().unwrap(),
            &want,
        );
        let want: Vec<Option<f64>> = (0..3)
            .map(|c| {
                let total = |s: f64| -> f64 {
                    x.iter()
                        .enumerate()
                        .filter(|(i, _)| (i / 5) % 3 == c)
                        .map(|(_, &v)| prelu(v.into(), s))
                        .sum()
                };
                slope(total, w[c].into())
            })
            .collect();
        // Three slopes: all must be checked (Σ y is linear in each slope).
        assert!(want.iter().all(Option::is_some));
        assert_slopes(
            &format!("{} prelu dweight", label(&ctx)),
            &dw.to_vec().unwrap(),
            &want,
        );
    }
}

#[test]
fn softmax_dim_and_dim1_losses_match_finite_differences() {
    // softmax along dim 1 of [2, 5, 6], contracted with g: the gradient of Σ g·softmax(x).
    let (n, c, s) = (2, 5, 6);
    let x = uniform(53, n * c * s, -3.0, 3.0);
    let g = uniform(54, n * c * s, -1.0, 1.0);
    // softmin is the softmax of −x (`neg`).
    let contracted = |xs: &[f64], log: bool, neg: bool| -> f64 {
        let sign = if neg { -1.0 } else { 1.0 };
        let mut total = 0.0;
        for b in 0..n {
            for p in 0..s {
                let line: Vec<f64> = (0..c).map(|k| sign * xs[(b * c + k) * s + p]).collect();
                for (k, y) in softmax_ref::forward_row(&line, log).into_iter().enumerate() {
                    total += f64::from(g[(b * c + k) * s + p]) * y;
                }
            }
        }
        total
    };
    let nudged = |i: usize, t: f64| -> Vec<f64> {
        let mut v: Vec<f64> = x.iter().map(|&a| f64::from(a)).collect();
        v[i] = t;
        v
    };
    for ctx in all_backends() {
        let xt = Tensor::from_slice(&ctx, &x, &[n, c, s]).unwrap();
        let gt = Tensor::from_slice(&ctx, &g, &[n, c, s]).unwrap();
        for (log, neg) in [(false, false), (true, false), (false, true)] {
            // Each backward from its own saved output.
            let dx = match (log, neg) {
                (true, _) => xt
                    .log_softmax_dim(1)
                    .unwrap()
                    .log_softmax_dim_backward(1, &gt),
                (_, true) => xt.softmin(1).unwrap().softmin_backward(1, &gt),
                _ => xt.softmax_dim(1).unwrap().softmax_dim_backward(1, &gt),
            }
            .unwrap();
            let want: Vec<Option<f64>> = (0..x.len())
                .map(|i| slope(|t| contracted(&nudged(i, t), log, neg), x[i].into()))
                .collect();
            let case = format!("{} softmax_dim(1) log={log} softmin={neg}", label(&ctx));
            assert_slopes(&case, &dx.to_vec().unwrap(), &want);
        }
        // The dim-1 cross-entropy's gradient is the slope of its (mean) loss.
        let labels: Vec<i64> = (0..(n * s) as i64).map(|r| r % c as i64).collect();
        let o = CrossEntropyOptions {
            label_smoothing: 0.1,
            ..Default::default()
        };
        let out = xt
            .cross_entropy_dim1(Targets::Indices(&labels), &o)
            .unwrap();
        let loss = |xs: &[f64]| -> f64 {
            let mut rows = vec![0.0; xs.len()];
            for b in 0..n {
                for k in 0..c {
                    for p in 0..s {
                        rows[(b * s + p) * c + k] = xs[(b * c + k) * s + p];
                    }
                }
            }
            loss_ref::cross_entropy(
                &rows,
                c,
                loss_ref::CrossEntropyTargets::Indices(&labels),
                &CrossEntropyOptions {
                    label_smoothing: 0.1,
                    ..Default::default()
                },
            )
            .loss[0]
        };
        let want: Vec<Option<f64>> = (0..x.len())
            .map(|i| slope(|t| loss(&nudged(i, t)), x[i].into()))
            .collect();
        assert_slopes(
            &format!("{} cross_entropy_dim1", label(&ctx)),
            &out.grad.to_vec().unwrap(),
            &want,
        );

        // The head with z-loss and softcap: its gradient is the slope of its mean loss.
        let (rows, classes) = (6, 9);
        let z: Vec<f32> = uniform(55, rows * classes, -20.0, 20.0);
        let labels: Vec<i64> = (0..rows as i64).map(|r| (r * 4) % classes as i64).collect();
        let head = HeadOptions {
            lse_square_scale: 1e-2,
            softcap: Some(8.0),
        };
        let o = CrossEntropyOptions {
            label_smoothing: 0.1,
            ..Default::default()
        };
        let zt = Tensor::from_slice(&ctx, &z, &[rows, classes]).unwrap();
        let out = zt
            .cross_entropy_head(Targets::Indices(&labels), &o, &head)
            .unwrap();
        let loss = |zs: &[f64]| {
            loss_ref::cross_entropy_head(
                zs,
                classes,
                &labels,
                &CrossEntropyOptions {
                    label_smoothing: 0.1,
                    ..Default::default()
                },
                &HeadOptions {
                    lse_square_scale: 1e-2,
                    softcap: Some(8.0),
                },
            )
            .loss[0]
        };
        let want: Vec<Option<f64>> = (0..z.len())
            .map(|i| {
                let at = |t: f64| {
                    let mut v: Vec<f64> = z.iter().map(|&a| f64::from(a)).collect();
                    v[i] = t;
                    loss(&v)
                };
                slope(at, z[i].into())
            })
            .collect();
        assert_slopes(
            &format!("{} cross_entropy_head", label(&ctx)),
            &out.grad.to_vec().unwrap(),
            &want,
        );
    }
}
