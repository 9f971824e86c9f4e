//! PReLU with one slope or one per channel, on every adapter present and the CPU backend:
//! against PyTorch's answers, against an f64 reference on random data of several ranks (the
//! slope's gradient reduced over up to 40,000 elements per channel), NaN, and bad input.

mod common;

use common::{all_backends, assert_all_close, fixtures, label, npy, npy_f32, uniform};
use gpu_activations::{Error, Tensor};

/// y, dx and dweight in f64 for x of `shape` (channel dim 1 when the weight has several).
fn reference(x: &[f32], shape: &[usize], w: &[f32], g: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let inner: usize = if w.len() == 1 {
        x.len()
    } else {
        shape[2..].iter().product()
    };
    let mut dw = vec![0.0; w.len()];
    let (mut y, mut dx) = (Vec::new(), Vec::new());
    for (i, (&v, &g)) in x.iter().zip(g).enumerate() {
        let c = (i / inner.max(1)) % w.len();
        let (v, g, s) = (f64::from(v), f64::from(g), f64::from(w[c]));
        if v > 0.0 {
            y.push(v);
            dx.push(g);
        } else {
            y.push(s * v);
            dx.push(s * g);
            dw[c] += v * g;
        }
    }
    (y, dx, dw)
}

/// Checks y and dx of PReLU on (x, weight, g) against `want_y` and `want_dx`; returns dweight.
fn check_forward_and_dx(
    tag: &str,
    (xt, wt, gt): (&Tensor, &Tensor, &Tensor),
    x: &[f32],
    want_y: &[f64],
    want_dx: &[f64],
) -> Tensor {
    let y = xt.prelu(wt).unwrap().to_vec().unwrap();
    assert_all_close(&format!("{tag} forward"), &y, want_y, &[x], 1e-6, 1e-5);
    let (dx, dw) = xt.prelu_backward(wt, gt).unwrap();
    assert_all_close(
        &format!("{tag} dx"),
        &dx.to_vec().unwrap(),
        want_dx,
        &[x],
        1e-6,
        1e-5,
    );
    dw
}

#[test]
fn prelu_matches_pytorch_fixtures() {
    let dir = fixtures().join("family/prelu");
    let (x, shape) = npy_f32(&dir.join("x.npy"));
    let (g, _) = npy_f32(&dir.join("g.npy"));
    for ctx in all_backends() {
        let xt = Tensor::from_slice(&ctx, &x, &shape).unwrap();
        let gt = Tensor::from_slice(&ctx, &g, &shape).unwrap();
        for case in ["scalar", "per_channel"] {
            let (w, w_shape) = npy_f32(&dir.join(case).join("weight.npy"));
            let wt = Tensor::from_slice(&ctx, &w, &w_shape).unwrap();
            let (want_y, _) = npy(&dir.join(case).join("forward.npy"));
            let (want_dx, _) = npy(&dir.join(case).join("dx.npy"));
            let (want_dw, _) = npy(&dir.join(case).join("dweight.npy"));
            let tag = format!("{} PyTorch prelu {case}", label(&ctx));
            let dw = check_forward_and_dx(&tag, (&xt, &wt, &gt), &x, &want_y, &want_dx);
            assert_eq!(dw.shape(), &w_shape[..]);
            assert_all_close(
                &format!("{tag} dweight"),
                &dw.to_vec().unwrap(),
                &want_dw,
                &[],
                1e-5,
                1e-5,
            );
        }
    }
}

#[test]
fn prelu_matches_the_reference_at_several_ranks_and_channel_counts() {
    // Channel blocks of whole vec4s (the vec4 kernels) or not, and one slope over any length.
    let cases: [(&[usize], usize); 8] = [
        (&[7], 1),
        (&[5, 3], 3),
        (&[5, 3], 1),
        (&[2, 4, 33], 4),
        (&[4, 3, 100, 100], 3),
        (&[1, 1000, 7], 1000),
        (&[3, 5, 8], 5),
        (&[2, 6, 4], 6),
    ];
    for ctx in all_backends() {
        for (i, &(shape, channels)) in cases.iter().enumerate() {
            let n: usize = shape.iter().product();
            let x = uniform(900 + i as u64, n, -3.0, 3.0);
            let g = uniform(950 + i as u64, n, -1.0, 1.0);
            let w = uniform(990 + i as u64, channels, -0.5, 0.5);
            let (want_y, want_dx, want_dw) = reference(&x, shape, &w, &g);
            let xt = Tensor::from_slice(&ctx, &x, shape).unwrap();
            let gt = Tensor::from_slice(&ctx, &g, shape).unwrap();
            let wt = Tensor::from_slice(&ctx, &w, &[channels]).unwrap();
            let tag = format!("{} prelu {shape:?} C={channels}", label(&ctx));
            let dw = check_forward_and_dx(&tag, (&xt, &wt, &gt), &x, &want_y, &want_dx);
            // A sum over up to 40,000 products: f32 accumulation, within 1e-5 of the total
            // magnitude Σ|x·g|.
            let dw = dw.to_vec().unwrap();
            let scale: f64 = x
                .iter()
                .zip(&g)
                .map(|(&a, &b)| f64::from(a * b).abs())
                .sum();
            for (c, (&got, &want)) in dw.iter().zip(&want_dw).enumerate() {
                assert!(
                    (f64::from(got) - want).abs() <= 1e-5 * scale.max(1.0) / channels as f64 + 1e-6,
                    "{tag} dweight[{c}] = {got}, want {want}"
                );
            }
        }
    }
}

#[test]
fn prelu_nan_follows_pytorch_and_bad_input_is_typed() {
    for ctx in all_backends() {
        let x = Tensor::from_slice(&ctx, &[1.0, f32::NAN, -2.0, 0.0], &[1, 1, 4]).unwrap();
        let w = Tensor::from_slice(&ctx, &[0.25], &[1]).unwrap();
        let g = Tensor::from_slice(&ctx, &[1.0; 4], &[1, 1, 4]).unwrap();
        let y = x.prelu(&w).unwrap().to_vec().unwrap();
        assert!(
            y[1].is_nan() && y[0] == 1.0 && y[2] == -0.5 && y[3] == 0.0,
            "{y:?}"
        );
        let (dx, dw) = x.prelu_backward(&w, &g).unwrap();
        // x > 0 is false for NaN and 0: dx = w·g there, and NaN·g makes dw NaN (as PyTorch).
        assert_eq!(
            dx.to_vec().unwrap(),
            [1.0, 0.25, 0.25, 0.25],
            "{}",
            label(&ctx)
        );
        assert!(dw.to_vec().unwrap()[0].is_nan(), "{}", label(&ctx));

        let x = Tensor::from_slice(&ctx, &[1.0; 12], &[2, 3, 2]).unwrap();
        let two = Tensor::from_slice(&ctx, &[0.1, 0.2], &[2]).unwrap();
        assert!(matches!(x.prelu(&two), Err(Error::ShapeMismatch { .. })));
        let flat = Tensor::from_slice(&ctx, &[1.0; 3], &[3]).unwrap();
        let three = Tensor::from_slice(&ctx, &[0.1, 0.2, 0.3], &[3]).unwrap();
        assert!(matches!(
            flat.prelu(&three),
            Err(Error::ShapeMismatch { .. })
        ));
        let g = Tensor::from_slice(&ctx, &[1.0; 6], &[2, 3]).unwrap();
        let w3 = Tensor::from_slice(&ctx, &[0.1, 0.2, 0.3], &[3]).unwrap();
        assert!(matches!(
            x.prelu_backward(&w3, &g),
            Err(Error::ShapeMismatch { .. })
        ));
    }
}

/// y, dx and dweight in f64 for a slope of shape `w_shape` broadcast to `shape` by numpy's
/// rules (right-aligned; each slope dim 1 or X's), dweight reduced over the broadcast dims.
fn broadcast_reference(
    x: &[f32],
    shape: &[usize],
    w: &[f32],
    w_shape: &[usize],
    g: &[f32],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let lead = shape.len() - w_shape.len();
    let mut dw = vec![0.0; w.len()];
    let (mut y, mut dx) = (Vec::new(), Vec::new());
    for (i, (&v, &g)) in x.iter().zip(g).enumerate() {
        // X's coordinates of element i, then the slope's index.
        let mut rest = i;
        let mut coords = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            coords[d] = rest % shape[d];
            rest /= shape[d];
        }
        let c = w_shape.iter().enumerate().fold(0, |acc, (d, &len)| {
            acc * len + if len == 1 { 0 } else { coords[lead + d] }
        });
        let (v, g, s) = (f64::from(v), f64::from(g), f64::from(w[c]));
        if v > 0.0 {
            y.push(v);
            dx.push(g);
        } else {
            y.push(s * v);
            dx.push(s * g);
            dw[c] += v * g;
        }
    }
    (y, dx, dw)
}

/// ONNX's PRelu: the slope broadcasts to X unidirectionally (numpy's rules), and its gradient
/// is reduced over the dims it was broadcast along.
#[test]
fn prelu_broadcast_follows_onnx_and_reduces_the_slope_gradient() {
    let shape = [3, 4, 5];
    let n = 60;
    let slopes: [&[usize]; 8] = [
        &[5],
        &[3, 4, 5],
        &[4, 1],
        &[1, 4, 5],
        &[3, 1, 1],
        &[3, 1, 5],
        &[1],
        &[],
    ];
    let x = uniform(1200, n, -3.0, 3.0);
    let g = uniform(1201, n, -1.0, 1.0);
    for ctx in all_backends() {
        let xt = Tensor::from_slice(&ctx, &x, &shape).unwrap();
        let gt = Tensor::from_slice(&ctx, &g, &shape).unwrap();
        for (i, &w_shape) in slopes.iter().enumerate() {
            let len: usize = w_shape.iter().product();
            let w = uniform(1210 + i as u64, len, -0.5, 0.5);
            let wt = Tensor::from_slice(&ctx, &w, w_shape).unwrap();
            let (want_y, want_dx, want_dw) = broadcast_reference(&x, &shape, &w, w_shape, &g);
            let tag = format!("{} prelu_broadcast slope {w_shape:?}", label(&ctx));
            let y = xt.prelu_broadcast(&wt).unwrap().to_vec().unwrap();
            assert_all_close(&format!("{tag} y"), &y, &want_y, &[&x], 1e-6, 1e-5);
            let (dx, dw) = xt.prelu_broadcast_backward(&wt, &gt).unwrap();
            assert_eq!(dw.shape(), w_shape, "{tag}");
            let (dx, dw) = (dx.to_vec().unwrap(), dw.to_vec().unwrap());
            assert_all_close(&format!("{tag} dx"), &dx, &want_dx, &[&x], 1e-6, 1e-5);
            assert_all_close(&format!("{tag} dw"), &dw, &want_dw, &[], 1e-5, 1e-5);
        }
        // A slope that does not broadcast to X, or has more dims, is a typed error.
        for bad in [&[4][..], &[2, 4, 5], &[1, 3, 4, 5], &[5, 1]] {
            let len: usize = bad.iter().product();
            let wt = Tensor::from_slice(&ctx, &vec![0.1; len], bad).unwrap();
            assert!(
                matches!(xt.prelu_broadcast(&wt), Err(Error::ShapeMismatch { .. })),
                "{bad:?}"
            );
        }
    }
}
