//! Gated activations (GLU, SwiGLU, GeGLU, GeGLU with tanh-GELU) on every adapter present and the
//! CPU backend: against PyTorch's answers, against the f64 reference at many widths with the
//! value and the gate in one tensor or in two, and bad input.

mod common;

use common::{all_backends, assert_all_close, fixtures, label, npy, npy_f32, uniform};
use gpu_activations::Activation;
use gpu_activations::accuracy::close;
use gpu_activations::cpu::activation::{backward, forward};
use gpu_activations::cpu::gated as reference;
use gpu_activations::{Error, Gate, Tensor};

#[test]
fn gated_activations_match_pytorch_fixtures() {
    let dir = fixtures().join("family/gated");
    let (x, x_shape) = npy_f32(&dir.join("x.npy"));
    let (g, g_shape) = npy_f32(&dir.join("g.npy"));
    assert_eq!(
        (x_shape.as_slice(), g_shape.as_slice()),
        (&[64, 256][..], &[64, 128][..])
    );
    for ctx in all_backends() {
        let xt = Tensor::from_slice(&ctx, &x, &x_shape).unwrap();
        let gt = Tensor::from_slice(&ctx, &g, &g_shape).unwrap();
        for gate in Gate::ALL {
            let (want_y, _) = npy(&dir.join(format!("{gate}.forward.npy")));
            let (want_dx, _) = npy(&dir.join(format!("{gate}.backward.npy")));
            let y = xt.gated(gate).unwrap();
            assert_eq!(y.shape(), &g_shape[..]);
            let tag = format!("{} PyTorch {gate}", label(&ctx));
            assert_all_close(
                &format!("{tag} forward"),
                &y.to_vec().unwrap(),
                &want_y,
                &[],
                1e-6,
                1e-5,
            );
            let dx = xt.gated_backward(gate, &gt).unwrap().to_vec().unwrap();
            assert_all_close(&format!("{tag} backward"), &dx, &want_dx, &[&x], 1e-6, 1e-5);
        }
    }
}

#[test]
fn split_and_pair_layouts_agree_with_the_reference_at_every_width() {
    for ctx in all_backends() {
        for (i, &(rows, half)) in [
            (1, 1),
            (3, 5),
            (7, 128),
            (2, 1001),
            (1000, 3),
            (5, 4),
            (33, 12),
            (3, 260),
        ]
        .iter()
        .enumerate()
        {
            let mut x = uniform(700 + i as u64, rows * 2 * half, -6.0, 6.0);
            // Saturated values and gates too.
            for (k, v) in [30.0, -30.0, 1e4, -1e4].into_iter().enumerate() {
                if let Some(slot) = x.get_mut(3 * k + 1) {
                    *slot = v;
                }
            }
            let g = uniform(800 + i as u64, rows * half, -1.0, 1.0);
            let (a, b): (Vec<f32>, Vec<f32>) = {
                let mut a = Vec::new();
                let mut b = Vec::new();
                for row in x.chunks(2 * half) {
                    a.extend_from_slice(&row[..half]);
                    b.extend_from_slice(&row[half..]);
                }
                (a, b)
            };
            let xt = Tensor::from_slice(&ctx, &x, &[rows, 2 * half]).unwrap();
            let gt = Tensor::from_slice(&ctx, &g, &[rows, half]).unwrap();
            let at = Tensor::from_slice(&ctx, &a, &[rows, half]).unwrap();
            let bt = Tensor::from_slice(&ctx, &b, &[rows, half]).unwrap();
            for gate in Gate::ALL {
                let tag = format!("{} {gate} [{rows}, {}]", label(&ctx), 2 * half);
                let want_y: Vec<f64> = a
                    .iter()
                    .zip(&b)
                    .map(|(&a, &b)| reference::forward_pair(gate, f64::from(a), f64::from(b)))
                    .collect();
                let y = xt.gated(gate).unwrap().to_vec().unwrap();
                assert_all_close(
                    &format!("{tag} forward"),
                    &y,
                    &want_y,
                    &[&a, &b],
                    1e-6,
                    1e-5,
                );
                let y_pair = Tensor::gated_pair(gate, &at, &bt)
                    .unwrap()
                    .to_vec()
                    .unwrap();
                assert_eq!(
                    y_pair, y,
                    "{tag}: the pair layout gives the split layout's answer"
                );

                let grads: Vec<(f64, f64)> = a
                    .iter()
                    .zip(&b)
                    .zip(&g)
                    .map(|((&a, &b), &g)| {
                        reference::backward_pair(gate, f64::from(a), f64::from(b), f64::from(g))
                    })
                    .collect();
                let want_da: Vec<f64> = grads.iter().map(|d| d.0).collect();
                let want_db: Vec<f64> = grads.iter().map(|d| d.1).collect();
                let (da, db) = Tensor::gated_pair_backward(gate, &at, &bt, &gt).unwrap();
                let (da, db) = (da.to_vec().unwrap(), db.to_vec().unwrap());
                assert_all_close(
                    &format!("{tag} ∂value"),
                    &da,
                    &want_da,
                    &[&a, &b, &g],
                    1e-6,
                    1e-5,
                );
                assert_all_close(
                    &format!("{tag} ∂gate"),
                    &db,
                    &want_db,
                    &[&a, &b, &g],
                    1e-6,
                    1e-5,
                );
                let dx = xt.gated_backward(gate, &gt).unwrap().to_vec().unwrap();
                let split: Vec<f32> = da
                    .chunks(half)
                    .zip(db.chunks(half))
                    .flat_map(|(a, b)| a.iter().chain(b).copied().collect::<Vec<_>>())
                    .collect();
                assert_eq!(
                    dx, split,
                    "{tag}: the split gradient holds ∂value then ∂gate per row"
                );
            }
        }
    }
}

/// The special values of the table, as value and as gate.
use gpu_activations::cases::GATED_SPECIAL as SPECIAL;

/// Whether an infinite operand meets a factor of the other that is not 0 but under 1e-30: the
/// f32 intermediates of such a factor (e^−|x|, σ, Φ, φ) are subnormal or 0, so where the f64
/// reference gives ±∞ (or a finite limit) an f32 kernel may give ∞·0 = NaN, WGSL letting an
/// implementation flush subnormals (PyTorch's f32 kernels give NaN at most of these points too:
/// σ(−100) is 1/(1 + e^100) = 0 there). Either is accepted.
fn subnormal_corner(gate: Gate, a: f64, b: f64) -> bool {
    let tiny = |v: f64| v != 0.0 && v.abs() < 1e-30;
    let act = match gate {
        Gate::Glu => Activation::Sigmoid,
        Gate::Swiglu => Activation::Silu,
        Gate::Geglu => Activation::Gelu,
        Gate::GegluTanh => Activation::GeluTanh,
    };
    // (the operand whose factors may underflow, the other one)
    let (x, other) = match gate {
        Gate::Glu => (b, a),
        _ => (a, b),
    };
    other.is_infinite() && (tiny(forward(act, x)) || tiny(backward(act, x, 1.0)))
}

#[test]
fn gated_activations_match_the_reference_on_every_pair_of_special_values() {
    let pairs: Vec<(f32, f32)> = SPECIAL
        .iter()
        .flat_map(|&a| SPECIAL.iter().map(move |&b| (a, b)))
        .collect();
    let n = pairs.len();
    let a: Vec<f32> = pairs.iter().map(|p| p.0).collect();
    let b: Vec<f32> = pairs.iter().map(|p| p.1).collect();
    let g = vec![1.5f32; n];
    // The split layout twice: one pair per row (element-wise walk) and one row whose halves
    // are padded to a multiple of 4 (whole vec4s).
    let per_row: Vec<f32> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    let half4 = n.div_ceil(4) * 4;
    let mut one_row = vec![0.0f32; 2 * half4];
    one_row[..n].copy_from_slice(&a);
    one_row[half4..half4 + n].copy_from_slice(&b);
    let mut g4 = vec![0.0f32; half4];
    g4[..n].copy_from_slice(&g);
    for ctx in all_backends() {
        let at = Tensor::from_slice(&ctx, &a, &[n]).unwrap();
        let bt = Tensor::from_slice(&ctx, &b, &[n]).unwrap();
        let gt = Tensor::from_slice(&ctx, &g, &[n]).unwrap();
        let rows = Tensor::from_slice(&ctx, &per_row, &[n, 2]).unwrap();
        let g_rows = Tensor::from_slice(&ctx, &g, &[n, 1]).unwrap();
        let row = Tensor::from_slice(&ctx, &one_row, &[1, 2 * half4]).unwrap();
        let g_row = Tensor::from_slice(&ctx, &g4, &[1, half4]).unwrap();
        for gate in Gate::ALL {
            let y_pair = Tensor::gated_pair(gate, &at, &bt)
                .unwrap()
                .to_vec()
                .unwrap();
            let (da, db) = Tensor::gated_pair_backward(gate, &at, &bt, &gt).unwrap();
            let (da, db) = (da.to_vec().unwrap(), db.to_vec().unwrap());
            let y_rows = rows.gated(gate).unwrap().to_vec().unwrap();
            let dx_rows = rows
                .gated_backward(gate, &g_rows)
                .unwrap()
                .to_vec()
                .unwrap();
            let y_row = row.gated(gate).unwrap().to_vec().unwrap();
            let dx_row = row.gated_backward(gate, &g_row).unwrap().to_vec().unwrap();
            for (i, &(a, b)) in pairs.iter().enumerate() {
                let (a64, b64) = (f64::from(a), f64::from(b));
                let want_y = reference::forward_pair(gate, a64, b64);
                let (want_da, want_db) = reference::backward_pair(gate, a64, b64, 1.5);
                let corner = subnormal_corner(gate, a64, b64);
                let ok =
                    |got: f32, want: f64| close(got, want, 1e-6, 1e-5) || (corner && got.is_nan());
                let tag = format!("{} {gate}({a:e}, {b:e})", label(&ctx));
                for (layout, y, da_i, db_i) in [
                    ("pair", y_pair[i], da[i], db[i]),
                    ("split rows", y_rows[i], dx_rows[2 * i], dx_rows[2 * i + 1]),
                    ("split vec4", y_row[i], dx_row[i], dx_row[half4 + i]),
                ] {
                    assert!(ok(y, want_y), "{tag} {layout}: y = {y:e}, want {want_y:e}");
                    assert!(
                        ok(da_i, want_da),
                        "{tag} {layout}: ∂value = {da_i:e}, want {want_da:e}"
                    );
                    assert!(
                        ok(db_i, want_db),
                        "{tag} {layout}: ∂gate = {db_i:e}, want {want_db:e}"
                    );
                }
            }
        }
    }
}

#[test]
fn gated_bad_input_is_a_typed_error() {
    for ctx in all_backends() {
        let odd = Tensor::from_slice(&ctx, &[1.0; 6], &[2, 3]).unwrap();
        assert!(matches!(
            odd.gated(Gate::Swiglu),
            Err(Error::InvalidShape { .. })
        ));
        let x = Tensor::from_slice(&ctx, &[1.0; 8], &[2, 4]).unwrap();
        let wrong = Tensor::from_slice(&ctx, &[1.0; 8], &[2, 4]).unwrap();
        assert!(matches!(
            x.gated_backward(Gate::Glu, &wrong),
            Err(Error::ShapeMismatch { .. })
        ));
        let a = Tensor::from_slice(&ctx, &[1.0; 4], &[4]).unwrap();
        let b = Tensor::from_slice(&ctx, &[1.0; 3], &[3]).unwrap();
        assert!(matches!(
            Tensor::gated_pair(Gate::Geglu, &a, &b),
            Err(Error::ShapeMismatch { .. })
        ));
        let scalar = Tensor::from_slice(&ctx, &[1.0], &[]).unwrap();
        assert!(matches!(
            scalar.gated(Gate::Glu),
            Err(Error::InvalidShape { .. })
        ));
    }
    assert_eq!("geglu-tanh".parse::<Gate>().unwrap(), Gate::GegluTanh);
    assert!(matches!(
        "swi-glu".parse::<Gate>(),
        Err(Error::UnknownActivation(_))
    ));
}
