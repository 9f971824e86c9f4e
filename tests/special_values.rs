//! Every loss family's PyTorch edge cases on every adapter and every row kernel, against the
//! f64 reference with NaN and ±∞ positions compared exactly: rows holding NaN, +∞, −∞ at the
//! target and elsewhere, all −∞, ±3e38, beside plain rows, at widths that take each kernel
//! (one invocation per row, vec4 rows, one workgroup per row, one subgroup per row, rows held
//! in registers). WGSL lets an implementation assume finite math, and they differ: SwiftShader's
//! `max` drops NaN and its `exp(NaN)` is +∞, lavapipe folds `x·0` to 0 for NaN; the kernels
//! decide these cases by bit patterns, and this is the test that holds them to it.

mod common;

use common::{all_backends, assert_all_close, label, row_strategy_contexts, uniform};
use gpu_activations::cpu::loss::{self as reference, CrossEntropyTargets};
use gpu_activations::cpu::softmax as softmax_ref;
use gpu_activations::cpu::widen;
use gpu_activations::{BceOptions, CrossEntropyOptions, LossAndGrad, Reduction, Targets, Tensor};

const ATOL: f64 = 1e-6;
const RTOL: f64 = 1e-5;

/// Rows of `cols` logits: one plain row, then the edge rows, with the class index each row's
/// target should be (some at a −∞, one ignored).
fn edge_rows(cols: usize) -> (Vec<f32>, Vec<i64>) {
    let base = uniform(cols as u64 + 7, cols, -3.0, 3.0);
    let with = |cells: &[(usize, f32)]| {
        let mut r = base.clone();
        for &(i, v) in cells {
            r[i % cols] = v;
        }
        r
    };
    let rows = [
        (base.clone(), 0),
        (with(&[(cols / 2, f32::NAN)]), 1),
        (with(&[(cols - 1, f32::INFINITY)]), 0),
        (with(&[(2, f32::NEG_INFINITY)]), 0),
        (with(&[(1, f32::NEG_INFINITY)]), 1 % cols as i64),
        (vec![f32::NEG_INFINITY; cols], 0),
        (with(&[(0, 3e38), (cols - 1, -3e38)]), (cols - 1) as i64),
        (
            with(&[(0, f32::NEG_INFINITY), (cols - 1, f32::INFINITY)]),
            0,
        ),
        (with(&[(cols / 3, f32::NAN)]), -100),
        (with(&[(cols / 2, 1e4), (0, -1e4)]), (cols / 2) as i64),
    ];
    let labels = rows.iter().map(|(_, y)| *y).collect();
    (rows.into_iter().flat_map(|(r, _)| r).collect(), labels)
}

/// A loss and its gradient against the reference's, NaN and ±∞ exactly.
fn assert_loss(case: &str, got: &LossAndGrad, want: &reference::LossReference, inputs: &[f32]) {
    let loss = got.loss.to_vec().unwrap();
    assert_all_close(&format!("{case} loss"), &loss, &want.loss, &[], ATOL, RTOL);
    let grad = got.grad.to_vec().unwrap();
    assert_all_close(
        &format!("{case} grad"),
        &grad,
        &want.grad,
        &[inputs],
        ATOL,
        RTOL,
    );
}

/// Widths that take the per-row scalar and vec4 kernels, the rows held in registers, the
/// subgroup-per-row kernels and one workgroup per row.
const WIDTHS: [usize; 6] = [3, 8, 37, 64, 260, 2048];

#[test]
fn cross_entropy_with_class_indices_on_edge_rows() {
    for ctx in row_strategy_contexts() {
        for cols in WIDTHS {
            let (z, labels) = edge_rows(cols);
            let rows = labels.len();
            let zt = Tensor::from_slice(ctx, &z, &[rows, cols]).unwrap();
            let cases = [
                (Reduction::None, 0.0),
                (Reduction::None, 0.1),
                (Reduction::Mean, 0.0),
            ];
            for (reduction, smoothing) in cases {
                let o = CrossEntropyOptions {
                    reduction,
                    label_smoothing: smoothing,
                    ..Default::default()
                };
                let got = zt.cross_entropy(Targets::Indices(&labels), &o).unwrap();
                let want = reference::cross_entropy(
                    &widen(&z),
                    cols,
                    CrossEntropyTargets::Indices(&labels),
                    &CrossEntropyOptions {
                        reduction,
                        label_smoothing: smoothing,
                        ..Default::default()
                    },
                );
                let case = format!(
                    "{} {:?} K={cols} ε={smoothing}",
                    label(ctx),
                    ctx.row_strategy()
                );
                assert_loss(&case, &got, &want, &z);
            }
        }
    }
}

#[test]
fn cross_entropy_with_probabilities_on_edge_rows() {
    for ctx in row_strategy_contexts() {
        for cols in WIDTHS {
            let (z, labels) = edge_rows(cols);
            let rows = labels.len();
            // Soft targets with no zero entry (a zero times a −∞ log-probability is NaN, as in
            // PyTorch, and is tested by the reference all the same).
            let t: Vec<f32> = uniform(cols as u64, rows * cols, 0.1, 1.0);
            let zt = Tensor::from_slice(ctx, &z, &[rows, cols]).unwrap();
            let tt = Tensor::from_slice(ctx, &t, &[rows, cols]).unwrap();
            let o = CrossEntropyOptions {
                reduction: Reduction::None,
                ..Default::default()
            };
            let got = zt.cross_entropy(Targets::Probabilities(&tt), &o).unwrap();
            let want = reference::cross_entropy(
                &widen(&z),
                cols,
                CrossEntropyTargets::Probabilities(&widen(&t)),
                &CrossEntropyOptions {
                    reduction: Reduction::None,
                    ..Default::default()
                },
            );
            let case = format!("{} {:?} K={cols}", label(ctx), ctx.row_strategy());
            assert_loss(&case, &got, &want, &z);
        }
    }
}

#[test]
fn softmax_backward_with_nan_in_the_gradient_or_the_output() {
    for ctx in row_strategy_contexts() {
        for cols in WIDTHS {
            let (x, _) = edge_rows(cols);
            let rows = x.len() / cols;
            let mut g = uniform(3, x.len(), -1.0, 1.0);
            // A NaN gradient in the plain row, an infinite one in the −∞ row.
            g[cols / 2] = f32::NAN;
            g[3 * cols + 1] = f32::INFINITY;
            let xt = Tensor::from_slice(ctx, &x, &[rows, cols]).unwrap();
            let gt = Tensor::from_slice(ctx, &g, &[rows, cols]).unwrap();
            for log in [false, true] {
                let y = if log { xt.log_softmax() } else { xt.softmax() }.unwrap();
                let y_host = y.to_vec().unwrap();
                let got = if log {
                    y.log_softmax_backward(&gt)
                } else {
                    y.softmax_backward(&gt)
                }
                .unwrap()
                .to_vec()
                .unwrap();
                let want: Vec<f64> = y_host
                    .chunks(cols)
                    .zip(g.chunks(cols))
                    .flat_map(|(y, g)| softmax_ref::backward_row(&widen(y), &widen(g), log))
                    .collect();
                let case = format!(
                    "{} {:?} K={cols} log={log} backward",
                    label(ctx),
                    ctx.row_strategy()
                );
                assert_all_close(&case, &got, &want, &[&y_host, &g], ATOL, RTOL);
            }
        }
    }
}

#[test]
fn nll_loss_on_log_probabilities_with_nan_and_infinities() {
    for ctx in all_backends() {
        let cols = 6;
        let (x, labels) = edge_rows(cols);
        let rows = labels.len();
        let xt = Tensor::from_slice(&ctx, &x, &[rows, cols]).unwrap();
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            let o = CrossEntropyOptions {
                reduction,
                ..Default::default()
            };
            let got = xt.nll_loss(Targets::Indices(&labels), &o).unwrap();
            let want = reference::nll_loss(
                &widen(&x),
                cols,
                &labels,
                &CrossEntropyOptions {
                    reduction,
                    ..Default::default()
                },
            );
            let case = format!("{} nll {reduction:?}", label(&ctx));
            let loss = got.loss.to_vec().unwrap();
            assert_all_close(&format!("{case} loss"), &loss, &want.loss, &[], ATOL, RTOL);
            let grad = got.grad.to_vec().unwrap();
            assert_all_close(
                &format!("{case} grad"),
                &grad,
                &want.grad,
                &[&x],
                ATOL,
                RTOL,
            );
        }
    }
}

#[test]
fn bce_with_logits_on_every_pair_of_special_values() {
    let specials = [
        0.0,
        -0.0,
        1e-7,
        0.5,
        -3.0,
        20.0,
        -20.0,
        89.0,
        -89.0,
        1e30,
        -1e30,
        3e38,
        -3e38,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    let targets = [0.0, 0.25, 1.0, f32::NAN];
    let (mut z, mut y) = (Vec::new(), Vec::new());
    for &a in &specials {
        for &t in &targets {
            z.push(a);
            y.push(t);
        }
    }
    let n = z.len();
    for ctx in all_backends() {
        let zt = Tensor::from_slice(&ctx, &z, &[n / 4, 4]).unwrap();
        let yt = Tensor::from_slice(&ctx, &y, &[n / 4, 4]).unwrap();
        for pos_weight in [None, Some(vec![1.0, 2.0, 0.5, 3.0])] {
            let o = BceOptions {
                reduction: Reduction::None,
                pos_weight: pos_weight.clone(),
                ..Default::default()
            };
            let got = zt.bce_with_logits(&yt, &o).unwrap();
            let want = reference::bce_with_logits(&widen(&z), &widen(&y), &o);
            let case = format!("{} bce pos_weight {pos_weight:?}", label(&ctx));
            let loss = got.loss.to_vec().unwrap();
            assert_all_close(
                &format!("{case} loss"),
                &loss,
                &want.loss,
                &[&z, &y],
                ATOL,
                RTOL,
            );
            let grad = got.grad.to_vec().unwrap();
            assert_all_close(
                &format!("{case} grad"),
                &grad,
                &want.grad,
                &[&z, &y],
                ATOL,
                RTOL,
            );
        }
    }
}
