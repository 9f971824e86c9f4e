//! Rows, lines and inner dims long enough that one invocation would loop more than 65,535
//! times: llvmpipe (lavapipe on Vulkan, and on GL) stops every shader invocation after that
//! many loop iterations in all, silently. Each op must still give the reference's answer
//! there (by a kernel that splits the work), or a typed error naming the limit where no kernel
//! can, and never a truncated result.

mod common;

use common::{all_backends, assert_all_close, label, uniform};
use gpu_activations::cpu::loss::{self as loss_ref, CrossEntropyTargets};
use gpu_activations::cpu::widen;
use gpu_activations::cpu::{linear as linear_ref, softmax as softmax_ref};
use gpu_activations::{
    Context, CrossEntropyOptions, Error, HeadOptions, MatmulKernel, Targets, Tensor,
};

/// Every GPU with each row strategy forced, and the CPU backend.
fn row_contexts() -> Vec<Context> {
    let mut all = common::row_strategy_contexts().to_vec();
    all.push(Context::cpu());
    all
}

/// Whether `result` is the typed error a limited adapter gives for work no kernel can split,
/// on a context that has the limit: counted in loop iterations, the message saying so.
fn is_limit_error<T>(ctx: &Context, result: &gpu_activations::Result<T>) -> bool {
    let Err(e @ Error::TooLarge { what, .. }) = result else {
        return false;
    };
    let message = e.to_string();
    let counted_in_iterations = message.contains(" loop iterations, but")
        && !message.contains("bytes")
        && message.contains(&format!("at most {}", ctx.loop_limit().unwrap_or(0) - 256));
    ctx.loop_limit().is_some() && what.contains("loop") && counted_in_iterations
}

#[test]
fn long_rows_softmax_forward_and_backward_match_the_reference() {
    for cols in [140_000, 300_000] {
        let rows = 2;
        let x = uniform(1, rows * cols, -4.0, 4.0);
        let g = uniform(2, rows * cols, -1.0, 1.0);
        for ctx in row_contexts() {
            let xt = Tensor::from_slice(&ctx, &x, &[rows, cols]).unwrap();
            let gt = Tensor::from_slice(&ctx, &g, &[rows, cols]).unwrap();
            for log in [false, true] {
                let case = format!(
                    "{} {:?} [{rows}, {cols}] log={log}",
                    label(&ctx),
                    ctx.row_strategy()
                );
                let y = if log { xt.log_softmax() } else { xt.softmax() }.unwrap();
                let y_host = y.to_vec().unwrap();
                let want: Vec<f64> = x
                    .chunks(cols)
                    .flat_map(|r| softmax_ref::forward_row(&widen(r), log))
                    .collect();
                assert_all_close(&case, &y_host, &want, &[], 1e-6, 1e-5);
                let dx = if log {
                    y.log_softmax_backward(&gt)
                } else {
                    y.softmax_backward(&gt)
                }
                .unwrap();
                let want: Vec<f64> = y_host
                    .chunks(cols)
                    .zip(g.chunks(cols))
                    .flat_map(|(y, g)| softmax_ref::backward_row(&widen(y), &widen(g), log))
                    .collect();
                assert_all_close(
                    &format!("{case} backward"),
                    &dx.to_vec().unwrap(),
                    &want,
                    &[],
                    1e-6,
                    1e-5,
                );
            }
        }
    }
}

#[test]
fn large_vocabulary_cross_entropy_matches_the_reference() {
    // About Qwen's and Gemma's vocabularies, off multiples of 16 (the wide steps' last one is
    // partly past the row).
    for classes in [151_939, 256_001] {
        let rows = 3;
        let z = uniform(3, rows * classes, -6.0, 6.0);
        let labels: Vec<i64> = vec![classes as i64 - 1, 0, 12_345];
        let o = CrossEntropyOptions {
            label_smoothing: 0.1,
            ..Default::default()
        };
        let want = loss_ref::cross_entropy(
            &widen(&z),
            classes,
            CrossEntropyTargets::Indices(&labels),
            &CrossEntropyOptions {
                label_smoothing: 0.1,
                ..Default::default()
            },
        );
        for ctx in row_contexts() {
            let case = format!("{} {:?} K={classes}", label(&ctx), ctx.row_strategy());
            let zt = Tensor::from_slice(&ctx, &z, &[rows, classes]).unwrap();
            let out = zt.cross_entropy(Targets::Indices(&labels), &o).unwrap();
            assert_all_close(
                &case,
                &out.loss.to_vec().unwrap(),
                &want.loss,
                &[],
                1e-6,
                1e-5,
            );
            assert_all_close(
                &format!("{case} grad"),
                &out.grad.to_vec().unwrap(),
                &want.grad,
                &[],
                1e-6,
                1e-5,
            );
        }
        // The head with a softcap and the z-loss, one invocation per row.
        let head = HeadOptions {
            lse_square_scale: 1e-4,
            softcap: Some(30.0),
        };
        let want = loss_ref::cross_entropy_head(
            &widen(&z),
            classes,
            &labels,
            &CrossEntropyOptions::default(),
            &HeadOptions {
                lse_square_scale: 1e-4,
                softcap: Some(30.0),
            },
        );
        for ctx in all_backends() {
            let case = format!("{} head K={classes}", label(&ctx));
            let zt = Tensor::from_slice(&ctx, &z, &[rows, classes]).unwrap();
            let out = zt.cross_entropy_head(
                Targets::Indices(&labels),
                &CrossEntropyOptions::default(),
                &head,
            );
            if is_limit_error(&ctx, &out) {
                continue;
            }
            let out = out.unwrap();
            assert_all_close(
                &case,
                &out.loss.to_vec().unwrap(),
                &want.loss,
                &[],
                1e-6,
                1e-5,
            );
            assert_all_close(
                &format!("{case} lse"),
                &out.lse.to_vec().unwrap(),
                &want.lse,
                &[],
                1e-6,
                1e-5,
            );
            assert_all_close(
                &format!("{case} grad"),
                &out.grad.to_vec().unwrap(),
                &want.grad,
                &[],
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn long_lines_along_an_inner_dim_match_the_reference() {
    // [1, L, 2] along dim 1: lines of L elements two apart.
    let (len, s) = (200_003, 2);
    let x = uniform(4, len * s, -4.0, 4.0);
    let g = uniform(5, len * s, -1.0, 1.0);
    let line =
        |v: &[f32], p: usize| -> Vec<f64> { (0..len).map(|k| f64::from(v[k * s + p])).collect() };
    let labels: Vec<i64> = vec![len as i64 - 1, 7];
    for ctx in all_backends() {
        let xt = Tensor::from_slice(&ctx, &x, &[1, len, s]).unwrap();
        let gt = Tensor::from_slice(&ctx, &g, &[1, len, s]).unwrap();
        let y = xt.softmax_dim(1).unwrap();
        let y_host = y.to_vec().unwrap();
        let dx = y.softmax_dim_backward(1, &gt).unwrap().to_vec().unwrap();
        let (mut want_y, mut want_dx) = (vec![0.0; len * s], vec![0.0; len * s]);
        for p in 0..s {
            let fy = softmax_ref::forward_row(&line(&x, p), false);
            let fdx = softmax_ref::backward_row(&line(&y_host, p), &line(&g, p), false);
            for k in 0..len {
                want_y[k * s + p] = fy[k];
                want_dx[k * s + p] = fdx[k];
            }
        }
        let case = format!("{} softmax_dim(1) of [1, {len}, {s}]", label(&ctx));
        assert_all_close(&case, &y_host, &want_y, &[], 1e-6, 1e-5);
        assert_all_close(&format!("{case} backward"), &dx, &want_dx, &[], 1e-6, 1e-5);

        let out = xt
            .cross_entropy_dim1(Targets::Indices(&labels), &CrossEntropyOptions::default())
            .unwrap();
        let rows: Vec<f64> = (0..s).flat_map(|p| line(&x, p)).collect();
        let want = loss_ref::cross_entropy(
            &rows,
            len,
            CrossEntropyTargets::Indices(&labels),
            &CrossEntropyOptions::default(),
        );
        let case = format!("{} cross_entropy_dim1 of [1, {len}, {s}]", label(&ctx));
        assert_all_close(
            &case,
            &out.loss.to_vec().unwrap(),
            &want.loss,
            &[],
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn a_long_inner_dim_of_the_linear_layer_matches_the_reference() {
    // 250,000 fits the register kernel's invocations on llvmpipe (a group of four per loop
    // iteration), not the tiled kernel's; 300,000 fits neither there.
    for h in [250_000, 300_000] {
        let (n, k) = (2, 3);
        let x = uniform(6, n * h, -1.0, 1.0);
        let w = uniform(7, k * h, -1.0, 1.0);
        let want = linear_ref::forward(&widen(&x), &widen(&w), None, n, h, k);
        for ctx in common::matmul_contexts() {
            let xt = Tensor::from_slice(ctx, &x, &[n, h]).unwrap();
            let wt = Tensor::from_slice(ctx, &w, &[k, h]).unwrap();
            let y = xt.linear(&wt, None);
            let case = format!("{} linear inner dim {h}", common::matmul_label(ctx));
            let registers = ctx.matmul_kernel() == MatmulKernel::Registers;
            if is_limit_error(ctx, &y) {
                assert!(!(registers && h == 250_000), "{case}: refused");
                continue;
            }
            // A sum of up to 300,000 products in f32.
            assert_all_close(&case, &y.unwrap().to_vec().unwrap(), &want, &[], 2e-3, 1e-4);
        }
    }
}

#[test]
fn work_no_kernel_splits_enough_is_a_typed_error_where_the_adapter_limits_loops() {
    // A head row and a line of 600,000 (two passes of 16 per iteration: 75,000 iterations).
    let n = 600_000;
    let z = uniform(8, n, -1.0, 1.0);
    for ctx in all_backends() {
        let head = Tensor::from_slice(&ctx, &z, &[1, n])
            .unwrap()
            .cross_entropy_head(
                Targets::Indices(&[3]),
                &CrossEntropyOptions::default(),
                &HeadOptions::default(),
            );
        let line = Tensor::from_slice(&ctx, &z, &[1, n, 1])
            .unwrap()
            .softmax_dim(1);
        let case = label(&ctx);
        if ctx.loop_limit().is_some() {
            assert!(
                is_limit_error(&ctx, &head),
                "{case}: head of {n} classes: {head:?}"
            );
            assert!(is_limit_error(&ctx, &line), "{case}: line of {n}: {line:?}");
        } else {
            assert!(head.is_ok() && line.is_ok(), "{case}");
        }
    }
}
