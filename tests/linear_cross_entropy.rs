//! The fused linear cross-entropy on every backend and matrix kernel against the f64
//! reference composed step by step (linear, head cross-entropy, linear backward) and against
//! the materialised path on the same adapter; chunks that split the batch unevenly; the
//! device memory it holds (one chunk, never the logits); half inputs; and bad input.

mod common;

use common::{Batch, all_backends, assert_all_close, batch, gpus, matmul_label, uniform};
use gpu_activations::cpu::widen;
use gpu_activations::cpu::{linear as linear_ref, loss as loss_ref};
use gpu_activations::{CrossEntropyOptions, DType, Error, HeadOptions, Reduction, Targets, Tensor};

/// The option sets under test: the defaults; sum with smoothing and class weights; none with
/// the z-loss and a softcap; mean with all of them.
fn option_sets(k: usize) -> Vec<(CrossEntropyOptions, HeadOptions)> {
    let weight = Some(uniform(77, k, 0.2, 2.0));
    vec![
        (CrossEntropyOptions::default(), HeadOptions::default()),
        (
            CrossEntropyOptions {
                reduction: Reduction::Sum,
                label_smoothing: 0.1,
                weight: weight.clone(),
                ..Default::default()
            },
            HeadOptions::default(),
        ),
        (
            CrossEntropyOptions {
                reduction: Reduction::None,
                ..Default::default()
            },
            HeadOptions {
                lse_square_scale: 1e-3,
                softcap: Some(4.0),
            },
        ),
        (
            CrossEntropyOptions {
                label_smoothing: 0.05,
                weight,
                ..Default::default()
            },
            HeadOptions {
                lse_square_scale: 1e-4,
                softcap: Some(2.5),
            },
        ),
    ]
}

/// The f64 reference: the logits formed whole, the head's loss and gradient, the linear
/// backward of that gradient: `(loss, z_loss, lse, dx, dW, db)`.
fn reference(d: &Batch, options: &CrossEntropyOptions, head: &HeadOptions) -> [Vec<f64>; 6] {
    let (x, w) = (widen(&d.x), widen(&d.w));
    let logits = linear_ref::forward(&x, &w, Some(&widen(&d.b)), d.n, d.h, d.k);
    let r = loss_ref::cross_entropy_head(&logits, d.k, &d.labels, options, head);
    let (dx, dw, db) = linear_ref::backward(&x, &w, &r.grad, d.n, d.h, d.k);
    [r.loss, r.z_loss, r.lse, dx, dw, db]
}

#[test]
fn fused_linear_cross_entropy_matches_the_reference_across_chunks() {
    // (n, h, k, chunk rows): one chunk, three with a partial last one, dims off multiples of 4.
    let cases = [
        (50, 16, 40, 64),
        (150, 12, 33, 64),
        (130, 7, 70, 128),
        (64, 20, 9, 64),
    ];
    for ctx in common::matmul_contexts() {
        for (i, &(n, h, k, chunk)) in cases.iter().enumerate() {
            let d = batch(500 + 10 * i as u64, n, h, k);
            let x = Tensor::from_slice(ctx, &d.x, &[n, h]).unwrap();
            let w = Tensor::from_slice(ctx, &d.w, &[k, h]).unwrap();
            let b = Tensor::from_slice(ctx, &d.b, &[k]).unwrap();
            for (o, (options, head)) in option_sets(k).iter().enumerate() {
                let case = format!(
                    "{} [{n}, {h}]·[{k}, {h}]ᵀ chunk {chunk} options {o}",
                    matmul_label(ctx)
                );
                let got = x
                    .linear_cross_entropy_chunked(
                        &w,
                        Some(&b),
                        Targets::Indices(&d.labels),
                        options,
                        head,
                        chunk,
                    )
                    .unwrap();
                let want = reference(&d, options, head);
                let loss_shape: &[usize] = if options.reduction == Reduction::None {
                    &[n]
                } else {
                    &[]
                };
                assert_eq!(got.loss.shape(), loss_shape, "{case}");
                assert_eq!(
                    (
                        got.lse.shape(),
                        got.dx.shape(),
                        got.dw.shape(),
                        got.db.shape()
                    ),
                    (&[n][..], &[n, h][..], &[k, h][..], &[k][..]),
                    "{case}"
                );
                // f32 sums over K (the loss, dx) and N (dW, db): bounds grow with their length.
                let atol = 2e-6 * (n.max(k) as f64).sqrt();
                for (what, t, want) in [
                    ("loss", &got.loss, &want[0]),
                    ("z_loss", &got.z_loss, &want[1]),
                    ("lse", &got.lse, &want[2]),
                    ("dx", &got.dx, &want[3]),
                    ("dW", &got.dw, &want[4]),
                    ("db", &got.db, &want[5]),
                ] {
                    assert_all_close(
                        &format!("{case} {what}"),
                        &t.to_vec().unwrap(),
                        want,
                        &[],
                        atol,
                        1e-4,
                    );
                }
            }
        }
    }
}

#[test]
fn fused_equals_the_materialised_path_and_takes_device_targets() {
    for ctx in gpus() {
        let (n, h, k) = (200, 32, 96);
        let d = batch(600, n, h, k);
        let x = Tensor::from_slice(ctx, &d.x, &[n, h]).unwrap();
        let w = Tensor::from_slice(ctx, &d.w, &[k, h]).unwrap();
        let (options, head) = option_sets(k).swap_remove(3);
        let fused = x
            .linear_cross_entropy_chunked(
                &w,
                None,
                Targets::Indices(&d.labels),
                &options,
                &head,
                64,
            )
            .unwrap();
        let logits = x.linear(&w, None).unwrap();
        let m = logits
            .cross_entropy_head(Targets::Indices(&d.labels), &options, &head)
            .unwrap();
        let (dx, dw, db) = x.linear_backward(&w, &m.grad).unwrap();
        let case = format!("{} fused vs materialised", common::label(ctx));
        for (what, a, b) in [
            ("loss", &fused.loss, &m.loss),
            ("lse", &fused.lse, &m.lse),
            ("dx", &fused.dx, &dx),
            ("dW", &fused.dw, &dw),
            ("db", &fused.db, &db),
        ] {
            let want = widen(&b.to_vec().unwrap());
            assert_all_close(
                &format!("{case} {what}"),
                &a.to_vec().unwrap(),
                &want,
                &[],
                1e-5,
                1e-4,
            );
        }
        // Labels on the device (i32 in a buffer of the caller's) give the same answer.
        let (device, queue) = ctx.wgpu().unwrap();
        let labels: Vec<i32> = d.labels.iter().map(|&l| l as i32).collect();
        let buffer = device.create_buffer(&gpu_activations::wgpu::BufferDescriptor {
            label: Some("labels"),
            size: (4 * n) as u64,
            usage: gpu_activations::wgpu::BufferUsages::STORAGE
                | gpu_activations::wgpu::BufferUsages::COPY_DST
                | gpu_activations::wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        queue.write_buffer(&buffer, 0, bytemuck::cast_slice(&labels));
        let on_device = Tensor::from_wgpu_buffer_as(ctx, &buffer, 0, &[n], DType::I32).unwrap();
        let from_device = x
            .linear_cross_entropy_chunked(
                &w,
                None,
                Targets::Device(&on_device),
                &options,
                &head,
                64,
            )
            .unwrap();
        assert_eq!(
            from_device.loss.to_vec().unwrap(),
            fused.loss.to_vec().unwrap(),
            "{case}: device labels"
        );
    }
}

#[test]
fn fused_holds_one_chunk_of_logits_where_the_materialised_path_holds_them_all() {
    for ctx in gpus() {
        let (n, h, k) = (1024, 64, 2048);
        let d = batch(700, n, h, k);
        let x = Tensor::from_slice(ctx, &d.x, &[n, h]).unwrap();
        let w = Tensor::from_slice(ctx, &d.w, &[k, h]).unwrap();
        let b = Tensor::from_slice(ctx, &d.b, &[k]).unwrap();
        let (options, head) = (CrossEntropyOptions::default(), HeadOptions::default());
        let peak_of = |run: &dyn Fn() -> Vec<Tensor>| common::peak_beyond_outputs(ctx, run);
        let chunk = 64;
        let fused = peak_of(&|| {
            let r = x
                .linear_cross_entropy_chunked(
                    &w,
                    Some(&b),
                    Targets::Indices(&d.labels),
                    &options,
                    &head,
                    chunk,
                )
                .unwrap();
            vec![r.loss, r.z_loss, r.lse, r.dx, r.dw, r.db]
        });
        let materialised = peak_of(&|| {
            let logits = x.linear(&w, Some(&b)).unwrap();
            let m = logits
                .cross_entropy_head(Targets::Indices(&d.labels), &options, &head)
                .unwrap();
            let (dx, dw, db) = x.linear_backward(&w, &m.grad).unwrap();
            vec![m.loss, dx, dw, db]
        });
        let logits_bytes = (4 * n * k) as u64;
        let chunk_bytes = (4 * chunk * k) as u64;
        let case = common::label(ctx);
        // Beyond its outputs: the chunk, the x rows a register kernel transposes, the per-row
        // buffers and the pool's size classes (up to 1/16 over each).
        assert!(
            fused <= chunk_bytes * 2 + 64 * 1024,
            "{case}: the fused path held {fused} bytes beyond its outputs (a chunk is {chunk_bytes})"
        );
        assert!(
            materialised >= logits_bytes,
            "{case}: the materialised path held {materialised} bytes, less than its logits ({logits_bytes})"
        );
    }
}

#[test]
fn half_inputs_give_half_gradients_from_f32_arithmetic() {
    for ctx in all_backends() {
        let (n, h, k) = (70, 8, 24);
        let d = batch(800, n, h, k);
        for dtype in [DType::F16, DType::BF16] {
            let rounded = d.rounded(dtype);
            let x = Tensor::from_slice_as(&ctx, &rounded.x, &[n, h], dtype).unwrap();
            let w = Tensor::from_slice_as(&ctx, &rounded.w, &[k, h], dtype).unwrap();
            let b = Tensor::from_slice_as(&ctx, &rounded.b, &[k], dtype).unwrap();
            let (options, head) = option_sets(k).swap_remove(0);
            let got = x
                .linear_cross_entropy_chunked(
                    &w,
                    Some(&b),
                    Targets::Indices(&d.labels),
                    &options,
                    &head,
                    64,
                )
                .unwrap();
            assert_eq!((got.dx.dtype(), got.lse.dtype()), (dtype, DType::F32));
            let want = reference(&rounded, &options, &head);
            let case = format!("{} {dtype}", common::label(&ctx));
            common::assert_stored_close(
                &format!("{case} loss"),
                dtype,
                &got.loss.to_vec().unwrap(),
                &want[0],
                &[],
            );
            common::assert_stored_close(
                &format!("{case} dx"),
                dtype,
                &got.dx.to_vec().unwrap(),
                &want[3],
                &[],
            );
            common::assert_stored_close(
                &format!("{case} dW"),
                dtype,
                &got.dw.to_vec().unwrap(),
                &want[4],
                &[],
            );
        }
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    for ctx in all_backends() {
        let x = Tensor::from_slice(&ctx, &[0.5; 12], &[3, 4]).unwrap();
        let w = Tensor::from_slice(&ctx, &[0.1; 20], &[5, 4]).unwrap();
        let labels = [0, 4, 2];
        let o = CrossEntropyOptions::default();
        let head = HeadOptions::default();
        let run = |x: &Tensor,
                   w: &Tensor,
                   b: Option<&Tensor>,
                   t: Targets<'_>,
                   head: &HeadOptions,
                   chunk| {
            x.linear_cross_entropy_chunked(w, b, t, &o, head, chunk)
                .unwrap_err()
        };
        let case = common::label(&ctx);
        let e = run(&x, &w, None, Targets::Indices(&labels), &head, 0);
        assert!(
            matches!(
                e,
                Error::InvalidParameter {
                    name: "chunk_rows",
                    ..
                }
            ),
            "{case}: {e}"
        );
        let e = run(&x, &w, None, Targets::Indices(&labels), &head, 96);
        assert!(
            matches!(
                e,
                Error::InvalidParameter {
                    name: "chunk_rows",
                    ..
                }
            ),
            "{case}: {e}"
        );
        let w3 = Tensor::from_slice(&ctx, &[0.1; 15], &[5, 3]).unwrap();
        let e = run(&x, &w3, None, Targets::Indices(&labels), &head, 64);
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{case}: {e}");
        let b = Tensor::from_slice(&ctx, &[0.0; 4], &[4]).unwrap();
        let e = run(&x, &w, Some(&b), Targets::Indices(&labels), &head, 64);
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{case}: {e}");
        let e = run(&x, &w, None, Targets::Indices(&[0, 5, 1]), &head, 64);
        assert!(
            matches!(
                e,
                Error::TargetOutOfRange {
                    row: 1,
                    value: 5,
                    ..
                }
            ),
            "{case}: {e}"
        );
        let e = run(&x, &w, None, Targets::Indices(&[0, 1]), &head, 64);
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{case}: {e}");
        let p = Tensor::from_slice(&ctx, &[0.2; 15], &[3, 5]).unwrap();
        let e = run(&x, &w, None, Targets::Probabilities(&p), &head, 64);
        assert!(matches!(e, Error::DTypeMismatch { .. }), "{case}: {e}");
        let capped = HeadOptions {
            softcap: Some(0.0),
            ..head
        };
        let e = run(&x, &w, None, Targets::Indices(&labels), &capped, 64);
        assert!(
            matches!(
                e,
                Error::InvalidParameter {
                    name: "softcap",
                    ..
                }
            ),
            "{case}: {e}"
        );
    }
}
