//! Row-wise softmax and log-softmax on every adapter, with every row kernel forced in turn and
//! both reduction paths (subgroups and workgroup memory), against the f64 reference, PyTorch's
//! answers, the row-sum identity and finite differences.

mod common;

use common::{
    OFFSET_WIDTHS, OFFSETS, assert_all_close, fixtures, label, npy, npy_f32, offset_uniform,
    uniform,
};
use gpu_activations::cpu::softmax as reference;
use gpu_activations::{Context, Error, RowStrategy, Tensor};

fn strategies() -> &'static [Context] {
    common::row_strategy_contexts()
}

fn tag(ctx: &Context) -> String {
    format!("{} {:?}", label(ctx), ctx.row_strategy())
}

/// The f64 reference for every row.
fn expected(x: &[f32], cols: usize, log: bool) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            reference::forward_row(&row, log)
        })
        .collect()
}

fn expected_backward(y: &[f32], g: &[f32], cols: usize, log: bool) -> Vec<f64> {
    y.chunks(cols)
        .zip(g.chunks(cols))
        .flat_map(|(y, g)| {
            let y: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
            let g: Vec<f64> = g.iter().map(|&v| f64::from(v)).collect();
            reference::backward_row(&y, &g, log)
        })
        .collect()
}

/// Checks softmax and log-softmax forward (and the row sums) and both backwards on one shape.
fn check_shape(ctx: &Context, rows: usize, cols: usize, seed: u64, spread: f32) {
    check_offset_shape(ctx, rows, cols, seed, 0.0, spread);
}

/// [`check_shape`] on values within ±`spread` of `offset`, every element of every output held
/// to 1e-6 + 1e-5·|ref| against the f64 reference of the same f32 inputs.
fn check_offset_shape(
    ctx: &Context,
    rows: usize,
    cols: usize,
    seed: u64,
    offset: f32,
    spread: f32,
) {
    let n = rows * cols;
    let x = offset_uniform(seed, n, offset, spread);
    let g = uniform(seed + 1, n, -1.0, 1.0);
    let shape = [rows, cols];
    let case = format!(
        "{} [{rows}, {cols}] offset {offset:e} spread {spread}",
        tag(ctx)
    );
    let xt = Tensor::from_slice(ctx, &x, &shape).unwrap();
    let gt = Tensor::from_slice(ctx, &g, &shape).unwrap();

    let y = xt.softmax().unwrap().to_vec().unwrap();
    assert_all_close(
        &format!("{case} softmax"),
        &y,
        &expected(&x, cols, false),
        &[&x],
        1e-6,
        1e-5,
    );
    for (r, row) in y.chunks(cols).enumerate() {
        let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
        assert!((sum - 1.0).abs() <= 1e-5, "{case}: row {r} sums to {sum}");
    }
    let ly = xt.log_softmax().unwrap().to_vec().unwrap();
    assert_all_close(
        &format!("{case} log_softmax"),
        &ly,
        &expected(&x, cols, true),
        &[&x],
        1e-6,
        1e-5,
    );

    // Backward from the saved outputs (as a framework would save them).
    let yt = Tensor::from_slice(ctx, &y, &shape).unwrap();
    let dx = yt.softmax_backward(&gt).unwrap().to_vec().unwrap();
    let want = expected_backward(&y, &g, cols, false);
    assert_all_close(
        &format!("{case} softmax backward"),
        &dx,
        &want,
        &[&y, &g],
        1e-6,
        1e-5,
    );
    let lyt = Tensor::from_slice(ctx, &ly, &shape).unwrap();
    let ldx = lyt.log_softmax_backward(&gt).unwrap().to_vec().unwrap();
    let want = expected_backward(&ly, &g, cols, true);
    assert_all_close(
        &format!("{case} log_softmax backward"),
        &ldx,
        &want,
        &[&ly, &g],
        1e-6,
        1e-5,
    );
}

const COLS: [usize; 13] = [
    1, 2, 3, 31, 32, 33, 255, 256, 257, 1000, 4096, 65537, 1_048_576,
];
const ROWS: [usize; 3] = [1, 7, 65_536 + 3];

#[test]
fn random_rows_at_every_width_on_the_automatic_kernel() {
    for ctx in common::gpus() {
        for (i, &cols) in COLS.iter().enumerate() {
            for &rows in &ROWS {
                // Bounded so that the suite stays fast; larger products have their own tests.
                if rows * cols <= 20_000_000 {
                    check_shape(ctx, rows, cols, 1000 + i as u64, 10.0);
                }
            }
        }
    }
}

#[test]
fn every_row_kernel_and_reduction_path_agrees_with_the_reference() {
    for ctx in strategies() {
        for (i, &cols) in COLS[..11].iter().enumerate() {
            for rows in [1, 7, 33] {
                check_shape(ctx, rows, cols, 2000 + i as u64, 10.0);
            }
        }
        check_shape(ctx, 3, 65_537, 2100, 10.0);
    }
}

#[test]
fn subgroup_rows_at_every_part_boundary() {
    // A lane of the subgroup-per-row kernel holds up to 32 vec4s in four parts of 8: widths
    // on both sides of each part boundary for 8-lane subgroups (lavapipe), the largest row
    // it takes, and the first one it leaves to another kernel.
    let widths = [
        4, 12, 28, 32, 36, 60, 64, 68, 252, 256, 260, 508, 512, 516, 764, 768, 772, 1020, 1024,
        1028,
    ];
    for ctx in strategies()
        .iter()
        .filter(|c| c.row_strategy() == RowStrategy::Subgroup)
    {
        for (i, &cols) in widths.iter().enumerate() {
            for rows in [1, 9, 65] {
                check_shape(ctx, rows, cols, 2200 + i as u64, 10.0);
            }
        }
    }
}

#[test]
fn rows_with_a_large_common_offset_on_every_row_kernel() {
    // log-softmax is x − M − log S: formed as x − (M + log S), the sum rounds to the ulp of M
    // (1e-3 at M = 1e4) and the answer loses that much. Every kernel, forward and backward,
    // must keep PyTorch's accuracy whatever the rows' common offset.
    let mut contexts = strategies().to_vec();
    contexts.push(Context::cpu());
    for ctx in &contexts {
        // ONNX's conformance row; the exact answer is −3.4401897, −2.4401897, −1.4401897, −0.4401897.
        let x = Tensor::from_slice(ctx, &[10000.0, 10001.0, 10002.0, 10003.0], &[1, 4]).unwrap();
        let want = [-3.440_189_7, -2.440_189_7, -1.440_189_7, -0.440_189_7];
        let got = x.log_softmax().unwrap().to_vec().unwrap();
        assert_all_close(&tag(ctx), &got, &want, &[&[0.0; 4]], 1e-6, 1e-5);
        for (i, &cols) in OFFSET_WIDTHS.iter().enumerate() {
            for (j, offset) in OFFSETS.into_iter().enumerate() {
                for spread in [1.0, 10.0] {
                    let seed = 4000 + 10 * i as u64 + j as u64;
                    check_offset_shape(ctx, 3, cols, seed, offset, spread);
                }
            }
        }
    }
}

#[test]
fn rows_beyond_the_grid_limit_and_beyond_one_binding() {
    for ctx in common::gpus() {
        // 10,000,000 rows: far more than 65,535 workgroups in one dimension.
        check_shape(ctx, 10_000_000, 2, 3000, 5.0);
        // 40,000 × 1,000 floats is 160 MB, beyond a 128 MiB binding: split into row blocks,
        // with a row width that leaves the blocks' starts unaligned.
        check_shape(ctx, 40_000, 1_001, 3001, 5.0);
    }
    for ctx in strategies()
        .iter()
        .filter(|c| c.row_strategy() == RowStrategy::Workgroup)
    {
        check_shape(ctx, 65_536 + 3, 4, 3002, 5.0);
    }
}

#[test]
fn huge_spread_and_extreme_logits() {
    for ctx in strategies() {
        // One logit 1e4 above the others, in rows of several widths.
        for cols in [2, 5, 64, 1000] {
            let mut x = uniform(cols as u64, 3 * cols, -3.0, 3.0);
            x[cols / 2] += 1e4;
            x[cols + cols - 1] = -1e4;
            x[2 * cols] = 3e38;
            let xt = Tensor::from_slice(ctx, &x, &[3, cols]).unwrap();
            let y = xt.softmax().unwrap().to_vec().unwrap();
            assert_all_close(
                &format!("{} spread {cols}", tag(ctx)),
                &y,
                &expected(&x, cols, false),
                &[&x],
                1e-6,
                1e-5,
            );
            let ly = xt.log_softmax().unwrap().to_vec().unwrap();
            let want = expected(&x, cols, true);
            assert_all_close(
                &format!("{} spread {cols} log", tag(ctx)),
                &ly,
                &want,
                &[&x],
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn edge_rows_follow_pytorch() {
    let dir = fixtures().join("softmax");
    let mut contexts = strategies().to_vec();
    contexts.push(Context::cpu());
    for case in ["edge_rows", "random_3x1", "random_5x7", "random_2x3x300"] {
        let d = dir.join(case);
        let (x, shape) = npy_f32(&d.join("x.npy"));
        let (g, _) = npy_f32(&d.join("g.npy"));
        for ctx in &contexts {
            let xt = Tensor::from_slice(ctx, &x, &shape).unwrap();
            let gt = Tensor::from_slice(ctx, &g, &shape).unwrap();
            for (name, log) in [("softmax", false), ("log_softmax", true)] {
                let (want_y, _) = npy(&d.join(format!("{name}.forward.npy")));
                let (want_dx, _) = npy(&d.join(format!("{name}.backward.npy")));
                let yt = if log { xt.log_softmax() } else { xt.softmax() }.unwrap();
                let y = yt.to_vec().unwrap();
                let t = format!("{} PyTorch {case} {name}", tag(ctx));
                assert_all_close(&format!("{t} forward"), &y, &want_y, &[&x], 1e-6, 1e-5);
                let dx = if log {
                    yt.log_softmax_backward(&gt)
                } else {
                    yt.softmax_backward(&gt)
                }
                .unwrap()
                .to_vec()
                .unwrap();
                assert_all_close(
                    &format!("{t} backward"),
                    &dx,
                    &want_dx,
                    &[&x, &g],
                    1e-6,
                    1e-5,
                );
            }
        }
    }
}

#[test]
fn nan_and_infinity_rows_at_every_width() {
    // The fixture's edge rows are 4 wide; repeat the cases at widths that take other paths.
    for ctx in strategies() {
        for cols in [1, 3, 8, 37, 260, 1024, 2048] {
            let mut rows: Vec<Vec<f32>> = Vec::new();
            let base = uniform(cols as u64, cols, -2.0, 2.0);
            let with = |i: usize, v: f32| {
                let mut r = base.clone();
                r[i] = v;
                r
            };
            rows.push(with(cols / 2, f32::NAN));
            rows.push(with(cols - 1, f32::INFINITY));
            rows.push(vec![f32::NEG_INFINITY; cols]);
            rows.push(with(0, f32::NEG_INFINITY));
            rows.push(with(cols - 1, 3e38));
            let x: Vec<f32> = rows.concat();
            let xt = Tensor::from_slice(ctx, &x, &[rows.len(), cols]).unwrap();
            for log in [false, true] {
                let y = if log { xt.log_softmax() } else { xt.softmax() }
                    .unwrap()
                    .to_vec()
                    .unwrap();
                assert_all_close(
                    &format!("{} edges cols={cols} log={log}", tag(ctx)),
                    &y,
                    &expected(&x, cols, log),
                    &[&x],
                    1e-6,
                    1e-5,
                );
            }
        }
    }
}

#[test]
fn single_column_rows_are_one_and_zero() {
    for ctx in strategies() {
        let xt = Tensor::from_slice(ctx, &[-3.0, 0.0, 1e4], &[3, 1]).unwrap();
        assert_eq!(
            xt.softmax().unwrap().to_vec().unwrap(),
            vec![1.0; 3],
            "{}",
            tag(ctx)
        );
        assert_eq!(
            xt.log_softmax().unwrap().to_vec().unwrap(),
            vec![0.0; 3],
            "{}",
            tag(ctx)
        );
    }
}

#[test]
fn backward_matches_finite_differences_of_the_forward() {
    // L(x) = Σ g ⊙ f(x); dL/dx from the GPU backward against central differences in f64.
    let cols = 9;
    let x = uniform(77, 2 * cols, -3.0, 3.0);
    let g = uniform(78, 2 * cols, -1.0, 1.0);
    for ctx in strategies() {
        for log in [false, true] {
            let xt = Tensor::from_slice(ctx, &x, &[2, cols]).unwrap();
            let gt = Tensor::from_slice(ctx, &g, &[2, cols]).unwrap();
            let y = if log { xt.log_softmax() } else { xt.softmax() }.unwrap();
            let dx = if log {
                y.log_softmax_backward(&gt)
            } else {
                y.softmax_backward(&gt)
            }
            .unwrap()
            .to_vec()
            .unwrap();
            let loss = |xs: &[f64]| -> f64 {
                xs.chunks(cols)
                    .flat_map(|r| reference::forward_row(r, log))
                    .zip(&g)
                    .map(|(f, &g)| f * f64::from(g))
                    .sum()
            };
            let h = 1e-6;
            for i in 0..x.len() {
                let mut plus: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
                let mut minus = plus.clone();
                plus[i] += h;
                minus[i] -= h;
                let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
                assert!(
                    (f64::from(dx[i]) - fd).abs() <= 1e-5 + 1e-4 * fd.abs(),
                    "{} log={log} at {i}: backward {} vs finite difference {fd}",
                    tag(ctx),
                    dx[i]
                );
            }
        }
    }
}

#[test]
fn leading_dimensions_flatten_into_rows() {
    let x = uniform(5, 2 * 3 * 5, -2.0, 2.0);
    for ctx in common::all_backends() {
        let y = Tensor::from_slice(&ctx, &x, &[2, 3, 5])
            .unwrap()
            .softmax()
            .unwrap();
        assert_eq!(y.shape(), &[2, 3, 5]);
        assert_all_close(
            &format!("{} rank 3", label(&ctx)),
            &y.to_vec().unwrap(),
            &expected(&x, 5, false),
            &[&x],
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn bad_shapes_are_typed_errors() {
    for ctx in common::all_backends() {
        let x = Tensor::from_slice(&ctx, &[1.0; 6], &[2, 3]).unwrap();
        let g = Tensor::from_slice(&ctx, &[1.0; 6], &[3, 2]).unwrap();
        assert!(matches!(
            x.softmax_backward(&g),
            Err(Error::ShapeMismatch { .. })
        ));
        let out = Tensor::zeros(&ctx, &[6]).unwrap();
        assert!(matches!(
            x.softmax_into(&out),
            Err(Error::ShapeMismatch { .. })
        ));
        let scalar = Tensor::from_slice(&ctx, &[1.0], &[]).unwrap();
        assert!(matches!(scalar.softmax(), Err(Error::InvalidShape { .. })));
        // In place is allowed: the result is the same as out of place.
        let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let want = Tensor::from_slice(&ctx, &data, &[2, 3])
            .unwrap()
            .softmax()
            .unwrap();
        let inplace = Tensor::from_slice(&ctx, &data, &[2, 3]).unwrap();
        inplace.softmax_into(&inplace).unwrap();
        assert_eq!(inplace.to_vec().unwrap(), want.to_vec().unwrap());
    }
}
