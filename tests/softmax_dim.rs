//! Softmax, log-softmax and softmin along any dim, forward and backward (from the saved
//! output), on every adapter present and the CPU backend: against PyTorch's answers for every
//! dim of a [4, 21, 8, 8] tensor, against the f64 reference at several shapes, and bad dims.

mod common;

use common::{all_backends, assert_all_close, fixtures, label, npy, npy_f32, uniform};
use gpu_activations::cpu::softmax as reference;
use gpu_activations::{Error, Tensor};

#[derive(Clone, Copy, Debug)]
enum Family {
    Softmax,
    LogSoftmax,
    Softmin,
}

const FAMILIES: [(Family, &str); 3] = [
    (Family::Softmax, "softmax"),
    (Family::LogSoftmax, "log_softmax"),
    (Family::Softmin, "softmin"),
];

fn forward(x: &Tensor, family: Family, dim: isize) -> Tensor {
    match family {
        Family::Softmax => x.softmax_dim(dim),
        Family::LogSoftmax => x.log_softmax_dim(dim),
        Family::Softmin => x.softmin(dim),
    }
    .unwrap()
}

fn backward(y: &Tensor, family: Family, dim: isize, g: &Tensor) -> Tensor {
    match family {
        Family::Softmax => y.softmax_dim_backward(dim, g),
        Family::LogSoftmax => y.log_softmax_dim_backward(dim, g),
        Family::Softmin => y.softmin_backward(dim, g),
    }
    .unwrap()
}

/// The f64 reference along `dim` of `shape`: each line gathered, computed, scattered back.
fn expected(x: &[f32], g: Option<&[f32]>, shape: &[usize], dim: usize, family: Family) -> Vec<f64> {
    let outer: usize = shape[..dim].iter().product();
    let len = shape[dim];
    let stride: usize = shape[dim + 1..].iter().product();
    let log = matches!(family, Family::LogSoftmax);
    let sign = if matches!(family, Family::Softmin) {
        -1.0
    } else {
        1.0
    };
    let mut out = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..stride {
            let at = |k: usize| o * len * stride + k * stride + i;
            let line: Vec<f64> = (0..len).map(|k| f64::from(x[at(k)])).collect();
            let values = match g {
                None => {
                    reference::forward_row(&line.iter().map(|v| sign * v).collect::<Vec<_>>(), log)
                }
                Some(g) => {
                    let g: Vec<f64> = (0..len).map(|k| f64::from(g[at(k)])).collect();
                    reference::backward_row(&line, &g, log)
                        .into_iter()
                        .map(|v| sign * v)
                        .collect()
                }
            };
            for (k, v) in values.into_iter().enumerate() {
                out[at(k)] = v;
            }
        }
    }
    out
}

#[test]
fn every_dim_matches_pytorch_fixtures() {
    let dir = fixtures().join("family/softmax_dim");
    let (x, shape) = npy_f32(&dir.join("x.npy"));
    let (g, _) = npy_f32(&dir.join("g.npy"));
    for ctx in all_backends() {
        let xt = Tensor::from_slice(&ctx, &x, &shape).unwrap();
        let gt = Tensor::from_slice(&ctx, &g, &shape).unwrap();
        for (family, name) in FAMILIES {
            for dim in [0isize, 1, 2, -1] {
                let (want_y, _) = npy(&dir.join(format!("{name}.dim{dim}.forward.npy")));
                let (want_dx, _) = npy(&dir.join(format!("{name}.dim{dim}.backward.npy")));
                let tag = format!("{} PyTorch {name} dim {dim}", label(&ctx));
                let y = forward(&xt, family, dim);
                let yv = y.to_vec().unwrap();
                assert_all_close(&format!("{tag} forward"), &yv, &want_y, &[&x], 1e-6, 1e-5);
                let dx = backward(&y, family, dim, &gt).to_vec().unwrap();
                assert_all_close(
                    &format!("{tag} backward"),
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
fn every_dim_matches_the_reference_at_several_shapes() {
    // Lines held in registers (up to 32 elements, the edge included) and read twice (33 on).
    let shapes: [&[usize]; 8] = [
        &[7],
        &[3, 1],
        &[2, 5, 3],
        &[3, 33, 4, 5],
        &[1, 1000, 3],
        &[2, 3, 2, 2, 7],
        &[2, 32, 5],
        &[3, 31, 2],
    ];
    for ctx in all_backends() {
        for (i, &shape) in shapes.iter().enumerate() {
            let n: usize = shape.iter().product();
            // Offsets where the max's subtraction matters: 1e2 and 1e4.
            let offset = if i % 2 == 0 { 100.0 } else { 1e4 };
            let x: Vec<f32> = uniform(1100 + i as u64, n, -8.0, 8.0)
                .into_iter()
                .map(|v| v + offset)
                .collect();
            let g = uniform(1200 + i as u64, n, -1.0, 1.0);
            let xt = Tensor::from_slice(&ctx, &x, shape).unwrap();
            let gt = Tensor::from_slice(&ctx, &g, shape).unwrap();
            for dim in 0..shape.len() {
                for (family, name) in FAMILIES {
                    let tag = format!("{} {name} {shape:?} dim {dim}", label(&ctx));
                    // Positive and negative spellings of the dim agree.
                    let y = forward(&xt, family, dim as isize);
                    let y_neg = forward(&xt, family, dim as isize - shape.len() as isize);
                    let yv = y.to_vec().unwrap();
                    assert_eq!(yv, y_neg.to_vec().unwrap(), "{tag}: negative dim");
                    let want = expected(&x, None, shape, dim, family);
                    assert_all_close(&format!("{tag} forward"), &yv, &want, &[&x], 1e-6, 1e-5);
                    let dx = backward(&y, family, dim as isize, &gt).to_vec().unwrap();
                    let want = expected(&yv, Some(&g), shape, dim, family);
                    assert_all_close(
                        &format!("{tag} backward"),
                        &dx,
                        &want,
                        &[&yv, &g],
                        1e-6,
                        1e-5,
                    );
                }
            }
        }
    }
}

#[test]
fn a_dim_out_of_range_is_a_typed_error() {
    for ctx in all_backends() {
        let x = Tensor::from_slice(&ctx, &[1.0; 6], &[2, 3]).unwrap();
        for dim in [2isize, -3, 100] {
            assert!(
                matches!(
                    x.softmax_dim(dim),
                    Err(Error::InvalidParameter { name: "dim", .. })
                ),
                "{} dim {dim}",
                label(&ctx)
            );
            assert!(matches!(
                x.softmin(dim),
                Err(Error::InvalidParameter { .. })
            ));
        }
        let g = Tensor::from_slice(&ctx, &[1.0; 4], &[4]).unwrap();
        assert!(matches!(
            x.softmin_backward(0, &g),
            Err(Error::ShapeMismatch { .. })
        ));
        // A scalar is a line of one: its softmax is 1.
        let s = Tensor::from_slice(&ctx, &[3.0], &[]).unwrap();
        assert_eq!(s.softmin(0).unwrap().to_vec().unwrap(), [1.0]);
    }
}

#[test]
fn non_finite_lines_along_an_inner_dim_follow_pytorch() {
    // Along dim 1 of [2, 4, 3]: each of the six lines has four elements; line (o, i) holds
    // NaN, +∞, all −∞, some −∞, ±3e38 or ordinary values, as the row tests' edge rows.
    let inf = f32::INFINITY;
    let lines: [[f32; 4]; 6] = [
        [1.0, f32::NAN, 2.0, 3.0],
        [1.0, inf, 2.0, 3.0],
        [-inf, -inf, -inf, -inf],
        [-inf, 1.0, -inf, 2.0],
        [3e38, -3e38, 0.0, 1.0],
        [0.5, -0.5, 1e-30, 2.0],
    ];
    // Strides that are and are not whole vec4s (a kernel may treat the two apart).
    for stride in [3usize, 4] {
        let shape = [2usize, 4, stride];
        let mut x = vec![0.0f32; 8 * stride];
        for (t, line) in lines.iter().enumerate() {
            let (o, i) = (t / stride, t % stride);
            for (k, &v) in line.iter().enumerate() {
                x[o * 4 * stride + k * stride + i] = v;
            }
        }
        for ctx in all_backends() {
            let xt = Tensor::from_slice(&ctx, &x, &shape).unwrap();
            for (family, name) in FAMILIES {
                let want = expected(&x, None, &shape, 1, family);
                let y = forward(&xt, family, 1).to_vec().unwrap();
                let tag = format!("{} {name} non-finite lines, S = {stride}", label(&ctx));
                assert_all_close(&tag, &y, &want, &[&x], 1e-6, 1e-5);
            }
        }
    }
}
