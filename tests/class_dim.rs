//! Cross-entropy in PyTorch's layout (class at dim 1: `[N, C, d1, …, dk]`) against PyTorch's
//! own answers (`tests/fixtures/pytorch/family/cross_entropy_nchw/`) and the f64 reference on
//! every backend, in f32 and half storage, with the shape errors a user can make.

mod common;

use std::path::Path;

use common::{all_backends, assert_all_close, fixtures, label, npy, npy_f32, uniform};
use gpu_activations::accuracy::{ATOL, RTOL};
use gpu_activations::cpu::loss::{self as reference, CrossEntropyTargets};
use gpu_activations::{
    CrossEntropyOptions, DType, Error, Reduction, Targets, Tensor, class_indices_from_floats,
};

fn options(d: &Path) -> CrossEntropyOptions {
    let o: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("options.json")).unwrap()).unwrap();
    let defaults = CrossEntropyOptions::default();
    CrossEntropyOptions {
        reduction: o["reduction"]
            .as_str()
            .map_or(Reduction::Mean, |r| Reduction::parse(r).unwrap()),
        ignore_index: o["ignore_index"].as_i64().unwrap_or(defaults.ignore_index),
        label_smoothing: o["label_smoothing"].as_f64().unwrap_or(0.0) as f32,
        weight: d
            .join("weight.npy")
            .exists()
            .then(|| npy_f32(&d.join("weight.npy")).0),
    }
}

#[test]
fn cross_entropy_dim1_matches_pytorch_on_every_backend() {
    let root = fixtures().join("family/cross_entropy_nchw");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 5, "every case is covered");
    for ctx in all_backends() {
        for d in &cases {
            let o = options(d);
            let (z, shape) = npy_f32(&d.join("logits.npy"));
            assert_eq!(shape.len(), 4, "{}: [N, C, H, W]", d.display());
            let zt = Tensor::from_slice(&ctx, &z, &shape).unwrap();
            let (t, t_shape) = npy(&d.join("targets.npy"));
            let out = if t_shape == shape {
                let p: Vec<f32> = t.iter().map(|&v| v as f32).collect();
                let pt = Tensor::from_slice(&ctx, &p, &shape).unwrap();
                zt.cross_entropy_dim1(Targets::Probabilities(&pt), &o)
                    .unwrap()
            } else {
                assert_eq!(t_shape, [&shape[..1], &shape[2..]].concat());
                let idx = class_indices_from_floats(&t).unwrap();
                zt.cross_entropy_dim1(Targets::Indices(&idx), &o).unwrap()
            };
            let case = format!("{} PyTorch {}", label(&ctx), d.display());
            let (want_loss, loss_shape) = npy(&d.join("loss.npy"));
            assert_eq!(out.loss.shape(), loss_shape, "{case}: loss shape");
            assert_all_close(
                &case,
                &out.loss.to_vec().unwrap(),
                &want_loss,
                &[],
                ATOL,
                RTOL,
            );
            let (want_grad, _) = npy(&d.join("grad.npy"));
            assert_eq!(out.grad.shape(), shape, "{case}: grad shape");
            assert_all_close(
                &case,
                &out.grad.to_vec().unwrap(),
                &want_grad,
                &[&z],
                ATOL,
                RTOL,
            );
        }
    }
}

/// `[N, C, S]` logits moved to rows `[N·S, C]` on the host, for the reference.
fn rows_of(z: &[f32], n: usize, c: usize, s: usize) -> Vec<f64> {
    let mut rows = vec![0.0; z.len()];
    for b in 0..n {
        for k in 0..c {
            for p in 0..s {
                rows[(b * s + p) * c + k] = f64::from(z[(b * c + k) * s + p]);
            }
        }
    }
    rows
}

/// `[N·S, C]` rows (the reference's gradient) put back at dim 1: `[N, C, S]`.
fn dim1_of(rows: &[f64], n: usize, c: usize, s: usize) -> Vec<f64> {
    let mut v = vec![0.0; rows.len()];
    for b in 0..n {
        for k in 0..c {
            for p in 0..s {
                v[(b * c + k) * s + p] = rows[(b * s + p) * c + k];
            }
        }
    }
    v
}

#[test]
fn cross_entropy_dim1_matches_the_reference_at_every_rank_and_storage_type() {
    for ctx in all_backends() {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for shape in [
                vec![6, 5],
                vec![3, 7, 11],
                vec![2, 4, 3, 5],
                vec![2, 3, 1, 1],
            ] {
                let (n, c) = (shape[0], shape[1]);
                let s: usize = shape[2..].iter().product();
                let z: Vec<f32> = uniform(40, n * c * s, -6.0, 6.0)
                    .iter()
                    .map(|&v| dtype.round(v))
                    .collect();
                let zt = Tensor::from_slice_as(&ctx, &z, &shape, dtype).unwrap();
                let labels: Vec<i64> = (0..(n * s) as i64).map(|r| (r * 5) % c as i64).collect();
                let o = CrossEntropyOptions {
                    reduction: Reduction::None,
                    label_smoothing: 0.05,
                    weight: Some(uniform(41, c, 0.5, 2.0)),
                    ignore_index: labels[1],
                };
                let out = zt
                    .cross_entropy_dim1(Targets::Indices(&labels), &o)
                    .unwrap();
                let want = reference::cross_entropy(
                    &rows_of(&z, n, c, s),
                    c,
                    CrossEntropyTargets::Indices(&labels),
                    &o,
                );
                let case = format!("{} {dtype} {shape:?}", label(&ctx));
                assert_eq!(
                    out.loss.shape(),
                    [&shape[..1], &shape[2..]].concat(),
                    "{case}"
                );
                assert_eq!(
                    (out.loss.dtype(), out.grad.dtype()),
                    (dtype, dtype),
                    "{case}"
                );
                common::assert_stored_close(
                    &case,
                    dtype,
                    &out.loss.to_vec().unwrap(),
                    &want.loss,
                    &[],
                );
                // The reference's gradient is in rows; put it back at dim 1.
                let grad = dim1_of(&want.grad, n, c, s);
                common::assert_stored_close(&case, dtype, &out.grad.to_vec().unwrap(), &grad, &[]);
            }
        }
    }
}

#[test]
fn nll_loss_dim1_matches_pytorch_and_the_reference() {
    let d = fixtures().join("family/nll_loss_nchw");
    let (x, shape) = npy_f32(&d.join("log_probs.npy"));
    let (t, _) = npy(&d.join("targets.npy"));
    let labels = class_indices_from_floats(&t).unwrap();
    let weight = npy_f32(&d.join("weight.npy")).0;
    let (want_loss, _) = npy(&d.join("loss.npy"));
    let (want_grad, _) = npy(&d.join("grad.npy"));
    for ctx in all_backends() {
        let xt = Tensor::from_slice(&ctx, &x, &shape).unwrap();
        // PyTorch's fixture: the weighted mean, ignore_index −100.
        let o = CrossEntropyOptions {
            weight: Some(weight.clone()),
            ..Default::default()
        };
        let out = xt.nll_loss_dim1(Targets::Indices(&labels), &o).unwrap();
        let case = format!("{} PyTorch nll_loss", label(&ctx));
        assert_all_close(
            &case,
            &out.loss.to_vec().unwrap(),
            &want_loss,
            &[],
            ATOL,
            RTOL,
        );
        assert_all_close(
            &case,
            &out.grad.to_vec().unwrap(),
            &want_grad,
            &[&x],
            ATOL,
            RTOL,
        );

        // Every reduction, ignore_index 2 (where PyTorch's fixture has −100), half storage:
        // against the f64 reference.
        let labels: Vec<i64> = labels
            .iter()
            .map(|&t| if t == -100 { 2 } else { t })
            .collect();
        let (n, c) = (shape[0], shape[1]);
        let s: usize = shape[2..].iter().product();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let stored: Vec<f32> = x.iter().map(|&v| dtype.round(v)).collect();
            let xt = Tensor::from_slice_as(&ctx, &stored, &shape, dtype).unwrap();
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                let o = CrossEntropyOptions {
                    reduction,
                    ignore_index: 2,
                    weight: Some(weight.clone()),
                    ..Default::default()
                };
                let out = xt.nll_loss_dim1(Targets::Indices(&labels), &o).unwrap();
                let want = reference::nll_loss(&rows_of(&stored, n, c, s), c, &labels, &o);
                let case = format!("{} {dtype} nll_loss {reduction:?}", label(&ctx));
                common::assert_stored_close(
                    &case,
                    dtype,
                    &out.loss.to_vec().unwrap(),
                    &want.loss,
                    &[],
                );
                let grad = dim1_of(&want.grad, n, c, s);
                common::assert_stored_close(&case, dtype, &out.grad.to_vec().unwrap(), &grad, &[]);
            }
        }
        // nll_loss has no label smoothing, and takes class indices only.
        let o = CrossEntropyOptions {
            label_smoothing: 0.1,
            ..Default::default()
        };
        let e = xt.nll_loss_dim1(Targets::Indices(&labels), &o).unwrap_err();
        assert!(matches!(e, Error::InvalidParameter { .. }), "{e}");
        let e = xt
            .nll_loss_dim1(Targets::Probabilities(&xt), &CrossEntropyOptions::default())
            .unwrap_err();
        assert!(matches!(e, Error::DTypeMismatch { .. }), "{e}");
    }
}

#[test]
fn class_dim_shape_errors_are_typed() {
    for ctx in all_backends() {
        let z = Tensor::from_slice(&ctx, &[0.0; 24], &[2, 3, 4]).unwrap();
        // Targets of [N, d1] = [2, 4] are 8 indices; 6 do not fit.
        let e = z
            .cross_entropy_dim1(Targets::Indices(&[0; 6]), &CrossEntropyOptions::default())
            .unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
        assert!(e.to_string().contains("[2, 4]"), "{e}");
        let p = Tensor::from_slice(&ctx, &[0.0; 24], &[2, 4, 3]).unwrap();
        let e = z
            .cross_entropy_dim1(Targets::Probabilities(&p), &CrossEntropyOptions::default())
            .unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
        let v = Tensor::from_slice(&ctx, &[0.0; 4], &[4]).unwrap();
        let e = v
            .cross_entropy_dim1(Targets::Indices(&[0]), &CrossEntropyOptions::default())
            .unwrap_err();
        assert!(matches!(e, Error::InvalidShape { .. }), "{e}");
        // A label out of range names its position.
        let e = z
            .cross_entropy_dim1(
                Targets::Indices(&[0, 1, 2, 3, 0, 1, 2, 0]),
                &CrossEntropyOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(e, Error::TargetOutOfRange { row: 3, .. }), "{e}");
    }
}

/// `labels` as i32 in a wgpu buffer of the context's device (`None` on the CPU backend).
fn labels_on_device(ctx: &gpu_activations::Context, labels: &[i64]) -> Option<Tensor> {
    let (device, queue) = ctx.wgpu()?;
    let words: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    let buffer = device.create_buffer(&gpu_activations::wgpu::BufferDescriptor {
        label: Some("labels"),
        size: (4 * words.len()).max(16) as u64,
        usage: gpu_activations::wgpu::BufferUsages::STORAGE
            | gpu_activations::wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&buffer, 0, bytemuck::cast_slice(&words));
    Some(Tensor::from_wgpu_buffer_as(ctx, &buffer, 0, &[labels.len()], DType::I32).unwrap())
}

#[test]
fn dim1_losses_read_the_lines_in_place_with_device_labels_and_pytorchs_edge_cases() {
    for ctx in all_backends() {
        // [N, C, H, W] with C and S = H·W off multiples of 4, and an ignored position.
        let shape = [3, 6, 5, 3];
        let (n, c, s) = (3, 6, 15);
        let z = uniform(42, n * c * s, -8.0, 8.0);
        let zt = Tensor::from_slice(&ctx, &z, &shape).unwrap();
        let mut labels: Vec<i64> = (0..(n * s) as i64)
            .map(|r| (r * 7 + 3) % c as i64)
            .collect();
        labels[17] = -100;
        let o = CrossEntropyOptions {
            weight: Some(uniform(43, c, 0.5, 2.0)),
            ..Default::default()
        };
        let want = reference::cross_entropy(
            &rows_of(&z, n, c, s),
            c,
            CrossEntropyTargets::Indices(&labels),
            &o,
        );
        let mut runs = vec![(
            "host labels",
            zt.cross_entropy_dim1(Targets::Indices(&labels), &o),
        )];
        if let Some(d) = labels_on_device(&ctx, &labels) {
            runs.push((
                "device labels",
                zt.cross_entropy_dim1(Targets::Device(&d), &o),
            ));
        }
        for (how, out) in runs {
            let out = out.unwrap();
            let case = format!("{} {how}", label(&ctx));
            assert_all_close(
                &case,
                &out.loss.to_vec().unwrap(),
                &want.loss,
                &[],
                ATOL,
                RTOL,
            );
            let grad = dim1_of(&want.grad, n, c, s);
            assert_all_close(&case, &out.grad.to_vec().unwrap(), &grad, &[&z], ATOL, RTOL);
            // The ignored position's C gradients, S apart, are exactly zero.
            let g = out.grad.to_vec().unwrap();
            let (b, p) = (17 / s, 17 % s);
            assert!((0..c).all(|k| g[(b * c + k) * s + p] == 0.0), "{case}");
        }

        // Classes that all weigh 0: PyTorch's mean is 0/0, NaN in the loss and in every
        // gradient of a counted position; the ignored position's gradient stays 0.
        let o = CrossEntropyOptions {
            weight: Some(vec![0.0; c]),
            ..Default::default()
        };
        for (name, out) in [
            (
                "cross_entropy",
                zt.cross_entropy_dim1(Targets::Indices(&labels), &o),
            ),
            ("nll_loss", zt.nll_loss_dim1(Targets::Indices(&labels), &o)),
        ] {
            let out = out.unwrap();
            let case = format!("{} {name} zero weights", label(&ctx));
            assert!(out.loss.to_vec().unwrap()[0].is_nan(), "{case}");
            let g = out.grad.to_vec().unwrap();
            for (r, &y) in labels.iter().enumerate() {
                let (b, p) = (r / s, r % s);
                for k in 0..c {
                    let v = g[(b * c + k) * s + p];
                    let nan = match name {
                        "cross_entropy" => y != -100,
                        _ => y != -100 && k as i64 == y,
                    };
                    assert_eq!(v.is_nan(), nan, "{case}: position {r}, class {k}: {v}");
                    if !nan {
                        assert_eq!(v, 0.0, "{case}: position {r}, class {k}");
                    }
                }
            }
        }
    }
}
