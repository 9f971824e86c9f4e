//! The linear layer on every backend against the f64 reference: ragged shapes on both sides of
//! the 64 × 64 × 16 tiles, a dim of 1, batched leading dims, no bias, half storage; the
//! backward's three gradients; and the shapes that don't chain.

mod common;

use common::{all_backends, assert_all_close, uniform};
use gpu_activations::cpu::linear as reference;
use gpu_activations::cpu::widen;
use gpu_activations::{DType, Error, Tensor};

/// `(N, H, K)`: inside one tile, on the tile edges, past them, and dims of 1; every dim a
/// multiple of 4 or not (each operand of the register kernel read as vec4s or element by
/// element, and a last partial group of the inner dim after vec4 groups).
const SHAPES: [(usize, usize, usize); 12] = [
    (1, 1, 1),
    (3, 5, 7),
    (64, 16, 64),
    (65, 17, 63),
    (130, 33, 70),
    (17, 1, 9),
    (5, 300, 1),
    (1, 129, 200),
    (8, 12, 20),
    (36, 4, 6),
    (6, 7, 8),
    (10, 20, 13),
];

#[test]
fn linear_and_its_backward_match_the_reference_on_every_shape() {
    for ctx in common::matmul_contexts() {
        for (i, &(n, h, k)) in SHAPES.iter().enumerate() {
            let seed = 90 + 10 * i as u64;
            let x = uniform(seed, n * h, -2.0, 2.0);
            let w = uniform(seed + 1, k * h, -1.0, 1.0);
            let b = uniform(seed + 2, k, -1.0, 1.0);
            let g = uniform(seed + 3, n * k, -1.0, 1.0);
            let xt = Tensor::from_slice(ctx, &x, &[n, h]).unwrap();
            let wt = Tensor::from_slice(ctx, &w, &[k, h]).unwrap();
            let bt = Tensor::from_slice(ctx, &b, &[k]).unwrap();
            let gt = Tensor::from_slice(ctx, &g, &[n, k]).unwrap();
            let case = format!("{} [{n}, {h}] × [{k}, {h}]", common::matmul_label(ctx));
            // f32 accumulation over H terms: the bound grows with the sum's length.
            let atol = 1e-6 * (h.max(n) as f64).sqrt().max(1.0) * 4.0;
            let y = xt.linear(&wt, Some(&bt)).unwrap();
            assert_eq!(y.shape(), [n, k], "{case}");
            let want = reference::forward(&widen(&x), &widen(&w), Some(&widen(&b)), n, h, k);
            assert_all_close(&case, &y.to_vec().unwrap(), &want, &[], atol, 1e-5);
            let y = xt.linear(&wt, None).unwrap();
            let want = reference::forward(&widen(&x), &widen(&w), None, n, h, k);
            assert_all_close(
                &format!("{case} no bias"),
                &y.to_vec().unwrap(),
                &want,
                &[],
                atol,
                1e-5,
            );

            let (dx, dw, db) = xt.linear_backward(&wt, &gt).unwrap();
            assert_eq!(
                (dx.shape(), dw.shape(), db.shape()),
                (&[n, h][..], &[k, h][..], &[k][..])
            );
            let (wx, ww, wb) = reference::backward(&widen(&x), &widen(&w), &widen(&g), n, h, k);
            assert_all_close(
                &format!("{case} dx"),
                &dx.to_vec().unwrap(),
                &wx,
                &[],
                atol,
                1e-5,
            );
            assert_all_close(
                &format!("{case} dW"),
                &dw.to_vec().unwrap(),
                &ww,
                &[],
                atol,
                1e-5,
            );
            assert_all_close(
                &format!("{case} db"),
                &db.to_vec().unwrap(),
                &wb,
                &[],
                atol,
                1e-5,
            );
            // The parameters' gradients alone are the same.
            let (dw2, db2) = xt.linear_param_backward(&wt, &gt).unwrap();
            let (dw2, db2) = (dw2.to_vec().unwrap(), db2.to_vec().unwrap());
            assert_all_close(&format!("{case} dW alone"), &dw2, &ww, &[], atol, 1e-5);
            assert_all_close(&format!("{case} db alone"), &db2, &wb, &[], atol, 1e-5);
        }
    }
}

#[test]
fn leading_dims_are_rows_and_half_storage_rounds_once() {
    for ctx in common::matmul_contexts() {
        let (h, k) = (24, 10);
        let x = uniform(120, 2 * 3 * h, -2.0, 2.0);
        let w = uniform(121, k * h, -1.0, 1.0);
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let xs: Vec<f32> = x.iter().map(|&v| dtype.round(v)).collect();
            let ws: Vec<f32> = w.iter().map(|&v| dtype.round(v)).collect();
            let xt = Tensor::from_slice_as(ctx, &xs, &[2, 3, h], dtype).unwrap();
            let wt = Tensor::from_slice_as(ctx, &ws, &[k, h], dtype).unwrap();
            let y = xt.linear(&wt, None).unwrap();
            assert_eq!((y.shape(), y.dtype()), (&[2, 3, k][..], dtype));
            let want = reference::forward(&widen(&xs), &widen(&ws), None, 6, h, k);
            let case = format!("{} {dtype} [2, 3, {h}]", common::matmul_label(ctx));
            common::assert_stored_close(&case, dtype, &y.to_vec().unwrap(), &want, &[]);
        }
    }
}

#[test]
fn shapes_that_do_not_chain_are_typed_errors() {
    for ctx in all_backends() {
        let x = Tensor::from_slice(&ctx, &[0.0; 12], &[3, 4]).unwrap();
        let w = Tensor::from_slice(&ctx, &[0.0; 10], &[2, 5]).unwrap();
        let e = x.linear(&w, None).unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
        let w = Tensor::from_slice(&ctx, &[0.0; 8], &[2, 4]).unwrap();
        let b = Tensor::from_slice(&ctx, &[0.0; 3], &[3]).unwrap();
        let e = x.linear(&w, Some(&b)).unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
        let g = Tensor::from_slice(&ctx, &[0.0; 9], &[3, 3]).unwrap();
        let e = x.linear_backward(&w, &g).unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
        let w3 = Tensor::from_slice(&ctx, &[0.0; 8], &[2, 2, 2]).unwrap();
        let e = x.linear(&w3, None).unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    }
}
