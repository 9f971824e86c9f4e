//! Half storage (f16 and bf16): conversions bit for bit against the `half` crate's
//! round-to-nearest-even, and every op on half tensors against the f64 reference computed from
//! the stored inputs, on every adapter and the CPU backend. PyTorch's own half answers are in
//! `half_fixtures.rs`.

mod common;

use common::{HALVES, SPECIAL, all_backends, assert_stored_close, label, uniform};
use gpu_activations::cpu::loss::{self as reference, CrossEntropyTargets};
use gpu_activations::cpu::widen;
use gpu_activations::cpu::{activation as act_ref, softmax as softmax_ref};
use gpu_activations::{
    Activation, BceOptions, Context, CrossEntropyOptions, DType, Error, Gate, Reduction, Targets,
    Tensor,
};

/// f32 values where rounding to a half type can go wrong: ties at both ends of each range,
/// the largest finite values and the overflow threshold, subnormals, signed zeros,
/// non-finite values, then values spread over every binade f32 has.
fn rounding_cases() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        1.0 + 2f32.powi(-11),       // f16 tie: to 1
        1.0 + 3.0 * 2f32.powi(-11), // f16 tie: up, to even
        1.0 + 2f32.powi(-8),        // bf16 tie: to 1
        1.0 + 3.0 * 2f32.powi(-8),  // bf16 tie: up, to even
        65504.0,
        65519.996,
        65520.0, // f16: the first value that rounds to ∞
        -65520.0,
        7e4,
        1e30,
        -1e30,
        f32::MAX, // bf16: rounds to ∞
        f32::MIN,
        3.3e38,
        2f32.powi(-14),
        2f32.powi(-24),
        2f32.powi(-25),       // f16 tie with 0: to 0
        3.0 * 2f32.powi(-25), // f16 tie: up, to 2^-23
        2f32.powi(-26),
        5.96e-8,
        1e-30,
        f32::MIN_POSITIVE,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    v.extend(SPECIAL);
    // Every binade, with random mantissas and signs.
    let mantissas = uniform(11, 2 * 254 * 8, 0.0, 1.0);
    for (k, m) in mantissas.chunks(2).enumerate() {
        let e = (k / 8) as i32 - 126;
        let sign = if m[1] < 0.5 { -1.0 } else { 1.0 };
        v.push(sign * (1.0 + m[0]) * 2f32.powi(e));
    }
    v
}

fn bits_of(dtype: DType, v: f32) -> u16 {
    match dtype {
        DType::F16 => half::f16::from_f32(v).to_bits(),
        _ => half::bf16::from_f32(v).to_bits(),
    }
}

#[test]
fn narrowing_rounds_to_nearest_even_bit_for_bit() {
    let values = rounding_cases();
    for ctx in all_backends() {
        let x = Tensor::from_slice(&ctx, &values, &[values.len()]).unwrap();
        for dtype in HALVES {
            // On the device, by the kernels' store (to_dtype narrows with the codec).
            let h = x.to_dtype(dtype).unwrap();
            assert_eq!(h.dtype(), dtype);
            let got: Vec<u16> = match dtype {
                DType::F16 => h
                    .to_f16_vec()
                    .unwrap()
                    .iter()
                    .map(|b| b.to_bits())
                    .collect(),
                _ => h
                    .to_bf16_vec()
                    .unwrap()
                    .iter()
                    .map(|b| b.to_bits())
                    .collect(),
            };
            for (i, (&v, &g)) in values.iter().zip(&got).enumerate() {
                let want = bits_of(dtype, v);
                if v.is_nan() {
                    let back = h.to_vec().unwrap()[i];
                    assert!(back.is_nan(), "{} {dtype}: NaN became {back}", label(&ctx));
                } else {
                    assert_eq!(
                        g,
                        want,
                        "{} {dtype}: {v:e} ({:#010x}) rounded to {g:#06x}, want {want:#06x}",
                        label(&ctx),
                        v.to_bits()
                    );
                }
            }
            // Uploading with a storage type rounds the same way.
            let up = Tensor::from_slice_as(&ctx, &values, &[values.len()], dtype).unwrap();
            assert!(
                same_values(&up, &h),
                "{} {dtype}: upload and to_dtype differ",
                label(&ctx)
            );
        }
    }
}

#[test]
fn widening_is_exact_for_every_half_value() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    for ctx in all_backends() {
        for dtype in HALVES {
            let x = match dtype {
                DType::F16 => {
                    let h: Vec<half::f16> = all.iter().map(|&b| half::f16::from_bits(b)).collect();
                    Tensor::from_f16(&ctx, &h, &[h.len()]).unwrap()
                }
                _ => {
                    let h: Vec<half::bf16> =
                        all.iter().map(|&b| half::bf16::from_bits(b)).collect();
                    Tensor::from_bf16(&ctx, &h, &[h.len()]).unwrap()
                }
            };
            // Read back directly, and widened on the device by the codec's load.
            for got in [
                x.to_vec().unwrap(),
                x.to_dtype(DType::F32).unwrap().to_vec().unwrap(),
            ] {
                for (&b, &g) in all.iter().zip(&got) {
                    let want = match dtype {
                        DType::F16 => half::f16::from_bits(b).to_f32(),
                        _ => half::bf16::from_bits(b).to_f32(),
                    };
                    assert!(
                        g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                        "{} {dtype}: {b:#06x} widened to {g:e}, want {want:e}",
                        label(&ctx)
                    );
                }
            }
        }
    }
}

/// Inputs for the elementwise ops: the special values, then a spread, as stored in `dtype`.
fn elementwise_inputs(dtype: DType, seed: u64) -> Vec<f32> {
    let mut v: Vec<f32> = SPECIAL.to_vec();
    v.extend([6e4, -6e4, 7e4, -7e4, 1e-5, -1e-5, 3e-7]);
    v.extend(uniform(seed, 997, -8.0, 8.0));
    v.into_iter().map(|x| dtype.round(x)).collect()
}

#[test]
fn every_activation_on_half_storage_matches_the_rounded_reference() {
    for ctx in all_backends() {
        for dtype in HALVES {
            let xs = elementwise_inputs(dtype, 1);
            let gs: Vec<f32> = uniform(2, xs.len(), -2.0, 2.0)
                .into_iter()
                .map(|g| dtype.round(g))
                .collect();
            let x = Tensor::from_slice_as(&ctx, &xs, &[xs.len()], dtype).unwrap();
            let g = Tensor::from_slice_as(&ctx, &gs, &[gs.len()], dtype).unwrap();
            assert_eq!(x.to_vec().unwrap().len(), xs.len());
            for act in Activation::ALL {
                let case = format!("{} {}", label(&ctx), act.name());
                let y = x.activation(act).unwrap();
                assert_eq!(y.dtype(), dtype, "{case}");
                let want: Vec<f64> = xs
                    .iter()
                    .map(|&v| act_ref::forward(act, v.into()))
                    .collect();
                assert_stored_close(&case, dtype, &y.to_vec().unwrap(), &want, &[&xs]);

                let dx = x.activation_backward(act, &g).unwrap();
                let want: Vec<f64> = xs
                    .iter()
                    .zip(&gs)
                    .map(|(&v, &g)| act_ref::backward(act, v.into(), g.into()))
                    .collect();
                let case = format!("{case} backward");
                assert_stored_close(&case, dtype, &dx.to_vec().unwrap(), &want, &[&xs, &gs]);

                // In place over the input, and over the gradient.
                let x2 = x.to_dtype(DType::F32).unwrap().to_dtype(dtype).unwrap();
                x2.activation_into(act, &x2).unwrap();
                assert!(same_values(&x2, &y), "{case}: in place over the input");
                let g2 = g.to_dtype(DType::F32).unwrap().to_dtype(dtype).unwrap();
                x.activation_backward_into(act, &g2, &g2).unwrap();
                assert!(same_values(&g2, &dx), "{case}: in place over the gradient");
            }
            // From the saved output.
            let y = x.sigmoid().unwrap();
            let ys = y.to_vec().unwrap();
            let want: Vec<f64> = ys
                .iter()
                .zip(&gs)
                .map(|(&y, &g)| act_ref::sigmoid_backward_from_output(y.into(), g.into()))
                .collect();
            let got = y
                .sigmoid_backward_from_output(&g)
                .unwrap()
                .to_vec()
                .unwrap();
            assert_stored_close("sigmoid from output", dtype, &got, &want, &[&ys]);
            let y = x.tanh().unwrap();
            let ys = y.to_vec().unwrap();
            let want: Vec<f64> = ys
                .iter()
                .zip(&gs)
                .map(|(&y, &g)| act_ref::tanh_backward_from_output(y.into(), g.into()))
                .collect();
            let got = y.tanh_backward_from_output(&g).unwrap().to_vec().unwrap();
            assert_stored_close("tanh from output", dtype, &got, &want, &[&ys]);
        }
    }
}

/// Whether two tensors hold the same values bit for bit (any NaN matching any NaN).
fn same_values(a: &Tensor, b: &Tensor) -> bool {
    let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()))
}

/// Asserts the row softmax (or log-softmax) `y` of stored inputs `xs` against the reference,
/// then its backward from `y` with the upstream `g` (stored values `gs`).
fn assert_row_softmax(
    case: &str,
    dtype: DType,
    (y, xs): (&Tensor, &[f32]),
    (g, gs): (&Tensor, &[f32]),
    cols: usize,
    log: bool,
) {
    let want: Vec<f64> = widen(xs)
        .chunks(cols)
        .flat_map(|r| softmax_ref::forward_row(r, log))
        .collect();
    let ys = y.to_vec().unwrap();
    assert_stored_close(case, dtype, &ys, &want, &[xs]);
    let dx = if log {
        y.log_softmax_backward(g)
    } else {
        y.softmax_backward(g)
    }
    .unwrap();
    let want: Vec<f64> = widen(&ys)
        .chunks(cols)
        .zip(widen(gs).chunks(cols))
        .flat_map(|(y, g)| softmax_ref::backward_row(y, g, log))
        .collect();
    let case = format!("{case} backward");
    assert_stored_close(&case, dtype, &dx.to_vec().unwrap(), &want, &[&ys, gs]);
}

fn stored(ctx: &Context, values: &[f32], shape: &[usize], dtype: DType) -> (Tensor, Vec<f32>) {
    let t = Tensor::from_slice_as(ctx, values, shape, dtype).unwrap();
    let v = t.to_vec().unwrap();
    (t, v)
}

#[test]
fn softmax_rows_on_half_storage_match_the_rounded_reference() {
    // Widths on both sides of each row kernel's range, rows with a common offset.
    for ctx in all_backends() {
        for dtype in HALVES {
            for (cols, offset) in [
                (1, 0.0),
                (4, 0.0),
                (63, 0.0),
                (64, 1e2),
                (65, 0.0),
                (1000, 1e3),
                (1025, 0.0),
                (5000, 0.0),
            ] {
                let rows = 3;
                let xs: Vec<f32> = uniform(cols as u64, rows * cols, -6.0, 6.0)
                    .into_iter()
                    .map(|v| v + offset)
                    .collect();
                let (x, xs) = stored(&ctx, &xs, &[rows, cols], dtype);
                let (g, gs) = stored(
                    &ctx,
                    &uniform(7, rows * cols, -1.0, 1.0),
                    &[rows, cols],
                    dtype,
                );
                for log in [false, true] {
                    let case = format!("{} [{rows},{cols}] +{offset} log={log}", label(&ctx));
                    let y = if log { x.log_softmax() } else { x.softmax() }.unwrap();
                    assert_eq!(y.dtype(), dtype);
                    assert_row_softmax(&case, dtype, (&y, &xs), (&g, &gs), cols, log);
                }
            }
            // Along an inner dim: the strided kernel.
            let shape = [2, 5, 3, 4];
            let (x, xs) = stored(&ctx, &uniform(9, 120, -5.0, 5.0), &shape, dtype);
            let y = x.softmax_dim(1).unwrap();
            assert_eq!(y.dtype(), dtype);
            let mut want = vec![0.0; 120];
            for n in 0..2 {
                for s in 0..12 {
                    let line: Vec<f64> =
                        (0..5).map(|c| f64::from(xs[n * 60 + c * 12 + s])).collect();
                    for (c, v) in softmax_ref::forward_row(&line, false)
                        .into_iter()
                        .enumerate()
                    {
                        want[n * 60 + c * 12 + s] = v;
                    }
                }
            }
            assert_stored_close("softmax dim 1", dtype, &y.to_vec().unwrap(), &want, &[&xs]);
        }
    }
}

#[test]
fn softmax_on_half_storage_keeps_its_accuracy_on_every_row_kernel() {
    // Each row kernel forced, at widths on both sides of each kernel's range and with a large
    // common offset: the half kernels read and write the storage type themselves for widths
    // divisible by 4, the others go through f32 copies.
    for ctx in common::row_strategy_contexts() {
        for dtype in HALVES {
            for &cols in &common::OFFSET_WIDTHS {
                for offset in [0.0, 1e2, 1e4] {
                    let rows = 3;
                    let xs = common::offset_uniform(cols as u64, rows * cols, offset, 10.0);
                    let (x, xs) = stored(ctx, &xs, &[rows, cols], dtype);
                    let gs = uniform(8, rows * cols, -1.0, 1.0);
                    let (g, gs) = stored(ctx, &gs, &[rows, cols], dtype);
                    for log in [false, true] {
                        let case = format!(
                            "{} {:?} [{rows},{cols}] +{offset} log={log}",
                            label(ctx),
                            ctx.row_strategy()
                        );
                        let y = if log { x.log_softmax() } else { x.softmax() }.unwrap();
                        assert_row_softmax(&case, dtype, (&y, &xs), (&g, &gs), cols, log);
                    }
                }
            }
        }
    }
}

#[test]
fn gated_and_prelu_on_half_storage_match_the_rounded_reference() {
    for ctx in all_backends() {
        for dtype in HALVES {
            let (x, xs) = stored(&ctx, &uniform(3, 8 * 32, -5.0, 5.0), &[8, 32], dtype);
            let (g, gs) = stored(&ctx, &uniform(4, 8 * 16, -1.0, 1.0), &[8, 16], dtype);
            for gate in [Gate::Glu, Gate::Swiglu, Gate::Geglu, Gate::GegluTanh] {
                let case = format!("{} {gate:?}", label(&ctx));
                let y = x.gated(gate).unwrap();
                assert_eq!(y.dtype(), dtype);
                let want: Vec<f64> = xs
                    .chunks(32)
                    .flat_map(|r| (0..16).map(move |j| (r[j], r[j + 16])))
                    .map(|(a, b)| {
                        gpu_activations::cpu::gated::forward_pair(gate, a.into(), b.into())
                    })
                    .collect();
                assert_stored_close(&case, dtype, &y.to_vec().unwrap(), &want, &[]);
                let dx = x.gated_backward(gate, &g).unwrap();
                let mut want = vec![0.0; 8 * 32];
                for r in 0..8 {
                    for j in 0..16 {
                        let (a, b) = (xs[r * 32 + j], xs[r * 32 + j + 16]);
                        let (da, db) = gpu_activations::cpu::gated::backward_pair(
                            gate,
                            a.into(),
                            b.into(),
                            gs[r * 16 + j].into(),
                        );
                        want[r * 32 + j] = da;
                        want[r * 32 + j + 16] = db;
                    }
                }
                assert_stored_close(
                    &format!("{case} backward"),
                    dtype,
                    &dx.to_vec().unwrap(),
                    &want,
                    &[],
                );
            }
            let (x, xs) = stored(&ctx, &uniform(5, 4 * 3 * 5, -3.0, 3.0), &[4, 3, 5], dtype);
            let (w, ws) = stored(&ctx, &[0.25, -0.5, 0.1], &[3], dtype);
            let y = x.prelu(&w).unwrap();
            assert_eq!(y.dtype(), dtype);
            let want: Vec<f64> = xs
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    if v > 0.0 {
                        v.into()
                    } else {
                        f64::from(ws[(i / 5) % 3]) * f64::from(v)
                    }
                })
                .collect();
            assert_stored_close("prelu", dtype, &y.to_vec().unwrap(), &want, &[&xs]);
        }
    }
}

#[test]
fn losses_on_half_logits_match_the_rounded_reference() {
    let (rows, classes) = (16, 37);
    for ctx in all_backends() {
        for dtype in HALVES {
            let (z, zs) = stored(
                &ctx,
                &uniform(21, rows * classes, -8.0, 8.0),
                &[rows, classes],
                dtype,
            );
            let labels: Vec<i64> = (0..rows as i64).map(|r| (r * 7) % classes as i64).collect();
            let weight: Vec<f32> = uniform(22, classes, 0.5, 2.0);
            for (reduction, smoothing) in [
                (Reduction::Mean, 0.0),
                (Reduction::None, 0.0),
                (Reduction::Sum, 0.1),
            ] {
                let options = CrossEntropyOptions {
                    reduction,
                    label_smoothing: smoothing,
                    weight: Some(weight.clone()),
                    ..Default::default()
                };
                let r = z
                    .cross_entropy(Targets::Indices(&labels), &options)
                    .unwrap();
                assert_eq!((r.loss.dtype(), r.grad.dtype()), (dtype, dtype));
                let want = reference::cross_entropy(
                    &widen(&zs),
                    classes,
                    CrossEntropyTargets::Indices(&labels),
                    &CrossEntropyOptions {
                        weight: Some(weight.clone()),
                        reduction,
                        label_smoothing: smoothing,
                        ..Default::default()
                    },
                );
                let case = format!("{} CE {reduction:?}", label(&ctx));
                assert_stored_close(&case, dtype, &r.loss.to_vec().unwrap(), &want.loss, &[]);
                assert_stored_close(&case, dtype, &r.grad.to_vec().unwrap(), &want.grad, &[]);
            }
            // BCE with half logits and f32 targets, then half targets.
            let ys = uniform(23, rows * classes, 0.0, 1.0);
            // Every reduction, and weights and positive weights per column.
            let weight = uniform(24, classes, 0.5, 2.0);
            let pos_weight = uniform(25, classes, 0.5, 3.0);
            for targets_dtype in [DType::F32, dtype] {
                let (y, ys) = stored(&ctx, &ys, &[rows, classes], targets_dtype);
                for (reduction, weighted) in [
                    (Reduction::Mean, false),
                    (Reduction::None, true),
                    (Reduction::Sum, true),
                ] {
                    let options = BceOptions {
                        reduction,
                        weight: weighted.then(|| weight.clone()),
                        pos_weight: weighted.then(|| pos_weight.clone()),
                    };
                    let r = z.bce_with_logits(&y, &options).unwrap();
                    assert_eq!((r.loss.dtype(), r.grad.dtype()), (dtype, dtype));
                    let want = reference::bce_with_logits(&widen(&zs), &widen(&ys), &options);
                    let case = format!("{} BCE {reduction:?} targets {targets_dtype}", label(&ctx));
                    assert_stored_close(&case, dtype, &r.loss.to_vec().unwrap(), &want.loss, &[]);
                    assert_stored_close(&case, dtype, &r.grad.to_vec().unwrap(), &want.grad, &[]);
                }
            }
        }
    }
}

#[test]
fn mixed_storage_types_where_an_op_takes_one_are_typed_errors() {
    for ctx in all_backends() {
        let x = Tensor::from_slice_as(&ctx, &[1.0; 8], &[8], DType::F16).unwrap();
        let g32 = Tensor::from_slice(&ctx, &[1.0; 8], &[8]).unwrap();
        let gbf = Tensor::from_slice_as(&ctx, &[1.0; 8], &[8], DType::BF16).unwrap();
        for g in [&g32, &gbf] {
            let e = x.activation_backward(Activation::Gelu, g).unwrap_err();
            assert!(matches!(e, Error::DTypeMismatch { .. }), "{e}");
            let e = x
                .reshape(&[2, 4])
                .unwrap()
                .softmax_backward(&g.reshape(&[2, 4]).unwrap())
                .unwrap_err();
            assert!(matches!(e, Error::DTypeMismatch { .. }), "{e}");
        }
        let out32 = Tensor::from_slice(&ctx, &[0.0; 8], &[8]).unwrap();
        let e = x.activation_into(Activation::Relu, &out32).unwrap_err();
        assert!(matches!(e, Error::DTypeMismatch { .. }), "{e}");
        // Probability targets of another type than the logits.
        let z = x.reshape(&[2, 4]).unwrap();
        let e = z
            .cross_entropy(
                Targets::Probabilities(&g32.reshape(&[2, 4]).unwrap()),
                &CrossEntropyOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(e, Error::DTypeMismatch { .. }), "{e}");
        // Integer storage for a float op, and a half upload of the wrong length.
        let e = Tensor::from_slice_as(&ctx, &[1.0; 8], &[8], DType::I32).unwrap_err();
        assert!(matches!(e, Error::DTypeMismatch { .. }), "{e}");
        let e = Tensor::from_f16(&ctx, &[half::f16::ONE; 7], &[2, 4]).unwrap_err();
        assert!(matches!(e, Error::LengthMismatch { .. }), "{e}");
    }
}

#[test]
fn half_views_of_a_callers_buffer_hold_whole_vec4s() {
    for ctx in common::gpus() {
        let (device, _) = ctx.wgpu().unwrap();
        let buffer = device.create_buffer(&gpu_activations::wgpu::BufferDescriptor {
            label: None,
            size: 64,
            usage: gpu_activations::wgpu::BufferUsages::STORAGE
                | gpu_activations::wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let e = Tensor::from_wgpu_buffer_as(ctx, &buffer, 0, &[6], DType::F16).unwrap_err();
        assert!(matches!(e, Error::ExternalBuffer { .. }), "{e}");
        let t = Tensor::from_wgpu_buffer_as(ctx, &buffer, 0, &[8], DType::BF16).unwrap();
        assert_eq!(t.dtype(), DType::BF16);
    }
}
