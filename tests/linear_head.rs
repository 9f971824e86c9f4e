//! The fused linear head for any per-token loss (`linear_head` and its backward) on every
//! backend and matrix kernel against the f64 reference composed step by step (linear, head
//! statistics, their backward, linear backward) and against the materialised path on the same
//! adapter; chunks that split the batch unevenly; the device memory it holds (one chunk, never
//! the logits); half inputs with f32 accumulation across chunks; bad input. And the fused
//! linear cross-entropy with `reduction = None` and per-row upstream weights.

mod common;

use common::{
    Batch, all_backends, assert_all_close, assert_stored_close, batch, gpus, matmul_label, uniform,
};
use gpu_activations::cpu::widen;
use gpu_activations::cpu::{head_stats as stats_ref, linear as linear_ref, loss as loss_ref};
use gpu_activations::{
    Context, CrossEntropyOptions, DType, Error, HeadOptions, HeadStats, HeadStatsOutput, Reduction,
    Targets, Tensor,
};

fn option_sets() -> Vec<HeadStats> {
    vec![
        HeadStats::default(),
        HeadStats {
            temperature: 0.6,
            softcap: Some(4.0),
            ..Default::default()
        },
        HeadStats {
            lse_square_scale: 1e-3,
            ..Default::default()
        },
    ]
}

/// The f64 reference: the logits formed whole, their statistics, the gradient of
/// `Σ a·log p_t + Σ c·H` and the linear backward of it: `(logp, entropy, lse, dx, dW, db)`.
fn reference(d: &Batch, options: &HeadStats) -> [Vec<f64>; 6] {
    let (x, w) = (widen(&d.x), widen(&d.w));
    let z = linear_ref::forward(&x, &w, Some(&widen(&d.b)), d.n, d.h, d.k);
    let s = stats_ref::head_stats(&z, d.k, &d.labels, options);
    let g = stats_ref::head_stats_backward(
        &z,
        d.k,
        &d.labels,
        options,
        Some(&widen(&d.a)),
        Some(&widen(&d.c)),
    );
    let (dx, dw, db) = linear_ref::backward(&x, &w, &g, d.n, d.h, d.k);
    [s.logp, s.entropy, s.lse, dx, dw, db]
}

struct Uploaded {
    x: Tensor,
    w: Tensor,
    b: Tensor,
    a: Tensor,
    c: Tensor,
}

fn upload(ctx: &Context, d: &Batch, dtype: DType) -> Uploaded {
    Uploaded {
        x: Tensor::from_slice_as(ctx, &d.x, &[d.n, d.h], dtype).unwrap(),
        w: Tensor::from_slice_as(ctx, &d.w, &[d.k, d.h], dtype).unwrap(),
        b: Tensor::from_slice_as(ctx, &d.b, &[d.k], dtype).unwrap(),
        a: Tensor::from_slice(ctx, &d.a, &[d.n]).unwrap(),
        c: Tensor::from_slice(ctx, &d.c, &[d.n]).unwrap(),
    }
}

/// The fused forward, then its backward with the batch's upstream gradients, in chunks.
fn fused_step(
    t: &Uploaded,
    targets: Targets<'_>,
    options: &HeadStats,
    chunk: usize,
) -> (HeadStatsOutput, (Tensor, Tensor, Tensor)) {
    let s =
        t.x.linear_head_chunked(&t.w, Some(&t.b), targets, options, chunk)
            .unwrap();
    let grads = t
        .x
        .linear_head_backward_chunked(&t.w, Some(&t.b), targets, &s, Some(&t.a), Some(&t.c), chunk)
        .unwrap();
    (s, grads)
}
#[test]
fn fused_linear_head_matches_the_reference_across_chunks() {
    // (n, h, k, chunk rows): one chunk, three with a partial last one, dims off multiples of 4.
    let cases = [
        (50, 16, 40, 64),
        (150, 12, 33, 64),
        (130, 7, 70, 128),
        (64, 20, 9, 64),
    ];
    for ctx in common::matmul_contexts() {
        for (i, &(n, h, k, chunk)) in cases.iter().enumerate() {
            let d = batch(900 + 10 * i as u64, n, h, k);
            let t = upload(ctx, &d, DType::F32);
            for (o, options) in option_sets().iter().enumerate() {
                let case = format!(
                    "{} [{n}, {h}]·[{k}, {h}]ᵀ chunk {chunk} options {o}",
                    matmul_label(ctx)
                );
                let targets = Targets::Indices(&d.labels);
                let stats =
                    t.x.linear_head_chunked(&t.w, Some(&t.b), targets, options, chunk)
                        .unwrap();
                let (dx, dw, db) =
                    t.x.linear_head_backward_chunked(
                        &t.w,
                        Some(&t.b),
                        targets,
                        &stats,
                        Some(&t.a),
                        Some(&t.c),
                        chunk,
                    )
                    .unwrap();
                let want = reference(&d, options);
                assert_eq!(
                    (stats.logp.shape(), dx.shape(), dw.shape(), db.shape()),
                    (&[n][..], &[n, h][..], &[k, h][..], &[k][..]),
                    "{case}"
                );
                // f32 sums over K (the statistics, dx) and N (dW, db): bounds grow with length.
                let atol = 2e-6 * (n.max(k) as f64).sqrt();
                for (what, got, want) in [
                    ("logp", &stats.logp, &want[0]),
                    ("entropy", &stats.entropy, &want[1]),
                    ("lse", &stats.lse, &want[2]),
                    ("dx", &dx, &want[3]),
                    ("dW", &dw, &want[4]),
                    ("db", &db, &want[5]),
                ] {
                    let got = got.to_vec().unwrap();
                    assert_all_close(&format!("{case} {what}"), &got, want, &[], atol, 1e-4);
                }
            }
        }
    }
}

#[test]
fn fused_equals_the_materialised_path_and_takes_device_targets() {
    for ctx in gpus() {
        let (n, h, k) = (200, 32, 96);
        let d = batch(1000, n, h, k);
        let t = upload(ctx, &d, DType::F32);
        let options = option_sets().swap_remove(1);
        let targets = Targets::Indices(&d.labels);
        let (fused, (dx, dw, db)) = fused_step(&t, targets, &options, 64);
        let logits = t.x.linear(&t.w, Some(&t.b)).unwrap();
        let m = logits.head_stats(targets, &options).unwrap();
        let g = logits
            .head_stats_backward(targets, &m, Some(&t.a), Some(&t.c))
            .unwrap();
        let (mdx, mdw, mdb) = t.x.linear_backward(&t.w, &g).unwrap();
        let case = format!("{} fused vs materialised", common::label(ctx));
        for (what, a, b) in [
            ("logp", &fused.logp, &m.logp),
            ("entropy", &fused.entropy, &m.entropy),
            ("lse", &fused.lse, &m.lse),
            ("dx", &dx, &mdx),
            ("dW", &dw, &mdw),
            ("db", &db, &mdb),
        ] {
            let want = widen(&b.to_vec().unwrap());
            let got = a.to_vec().unwrap();
            assert_all_close(&format!("{case} {what}"), &got, &want, &[], 1e-5, 1e-4);
        }
        // Labels on the device (i32 in a buffer of the caller's) give the same statistics.
        let (device, queue) = ctx.wgpu().unwrap();
        let labels: Vec<i32> = d.labels.iter().map(|&l| l as i32).collect();
        let buffer = device.create_buffer(&gpu_activations::wgpu::BufferDescriptor {
            label: Some("labels"),
            size: (4 * n) as u64,
            usage: gpu_activations::wgpu::BufferUsages::STORAGE
                | gpu_activations::wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        queue.write_buffer(&buffer, 0, bytemuck::cast_slice(&labels));
        let on_device = Tensor::from_wgpu_buffer_as(ctx, &buffer, 0, &[n], DType::I32).unwrap();
        let from_device =
            t.x.linear_head_chunked(&t.w, Some(&t.b), Targets::Device(&on_device), &options, 64)
                .unwrap();
        assert_eq!(
            from_device.logp.to_vec().unwrap(),
            fused.logp.to_vec().unwrap(),
            "{case}: device labels"
        );
    }
}

#[test]
fn fused_holds_one_chunk_of_logits_where_the_materialised_path_holds_them_all() {
    for ctx in gpus() {
        let (n, h, k) = (1024, 64, 2048);
        let d = batch(1100, n, h, k);
        let t = upload(ctx, &d, DType::F32);
        let options = HeadStats::default();
        let targets = Targets::Indices(&d.labels);
        let peak_of = |run: &dyn Fn() -> Vec<Tensor>| common::peak_beyond_outputs(ctx, run);
        let chunk = 64;
        let fused = peak_of(&|| {
            let (s, (dx, dw, db)) = fused_step(&t, targets, &options, chunk);
            vec![s.logp, s.entropy, s.lse, dx, dw, db]
        });
        let materialised = peak_of(&|| {
            let logits = t.x.linear(&t.w, Some(&t.b)).unwrap();
            let m = logits.head_stats(targets, &options).unwrap();
            let g = logits
                .head_stats_backward(targets, &m, Some(&t.a), Some(&t.c))
                .unwrap();
            let (dx, dw, db) = t.x.linear_backward(&t.w, &g).unwrap();
            vec![m.logp, dx, dw, db]
        });
        let logits_bytes = (4 * n * k) as u64;
        let chunk_bytes = (4 * chunk * k) as u64;
        let case = common::label(ctx);
        // Beyond its outputs: the chunk, the x rows a register kernel transposes, the per-row
        // buffers and the pool's size classes (up to 1/16 over each).
        assert!(
            fused <= chunk_bytes * 2 + 96 * 1024,
            "{case}: the fused path held {fused} bytes beyond its outputs (a chunk is {chunk_bytes})"
        );
        assert!(
            materialised >= logits_bytes,
            "{case}: the materialised path held {materialised} bytes, less than its logits ({logits_bytes})"
        );
    }
}

#[test]
fn half_inputs_accumulate_in_f32_across_chunks() {
    // Nine chunks of 64 rows: dW and db summed over 576 rows, rounded once to the half type.
    for ctx in all_backends() {
        let (n, h, k) = (576, 8, 24);
        let d = batch(1200, n, h, k);
        for dtype in [DType::F16, DType::BF16] {
            let rounded = d.rounded(dtype);
            let t = upload(&ctx, &rounded, dtype);
            let options = option_sets().swap_remove(1);
            let targets = Targets::Indices(&d.labels);
            let (s, (dx, dw, db)) = fused_step(&t, targets, &options, 64);
            assert_eq!(
                (s.logp.dtype(), dx.dtype(), dw.dtype(), db.dtype()),
                (DType::F32, dtype, dtype, dtype)
            );
            let want = reference(&rounded, &options);
            let case = format!("{} {dtype}", common::label(&ctx));
            assert_all_close(
                &format!("{case} logp"),
                &s.logp.to_vec().unwrap(),
                &want[0],
                &[],
                1e-5,
                1e-4,
            );
            for (what, got, want) in [
                ("dx", &dx, &want[3]),
                ("dW", &dw, &want[4]),
                ("db", &db, &want[5]),
            ] {
                assert_stored_close(
                    &format!("{case} {what}"),
                    dtype,
                    &got.to_vec().unwrap(),
                    want,
                    &[],
                );
            }
        }
    }
}

#[test]
fn linear_head_bad_input_is_a_typed_error() {
    for ctx in all_backends() {
        let x = Tensor::from_slice(&ctx, &[0.5; 12], &[3, 4]).unwrap();
        let w = Tensor::from_slice(&ctx, &uniform(5, 20, -1.0, 1.0), &[5, 4]).unwrap();
        let labels = [0i64, 4, 2];
        let options = HeadStats::default();
        let case = common::label(&ctx);
        let saved = x
            .linear_head(&w, None, Targets::Indices(&labels), &options)
            .unwrap();
        let cold = HeadStats {
            temperature: 0.0,
            ..options
        };
        let e = x
            .linear_head(&w, None, Targets::Indices(&labels), &cold)
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidParameter {
                    name: "temperature",
                    ..
                }
            ),
            "{case}: {e}"
        );
        let e = x
            .linear_head_chunked(&w, None, Targets::Indices(&labels), &options, 96)
            .unwrap_err();
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
        let e = x
            .linear_head(&w3, None, Targets::Indices(&labels), &options)
            .unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{case}: {e}");
        let b4 = Tensor::from_slice(&ctx, &[0.0; 4], &[4]).unwrap();
        let e = x
            .linear_head(&w, Some(&b4), Targets::Indices(&labels), &options)
            .unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{case}: {e}");
        let e = x
            .linear_head(&w, None, Targets::Indices(&[0, 5, 1]), &options)
            .unwrap_err();
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
        // The backward: statistics of another call's shape, upstream gradients of the wrong one.
        let a4 = Tensor::from_slice(&ctx, &[1.0; 4], &[4]).unwrap();
        let e = x
            .linear_head_backward(&w, None, Targets::Indices(&labels), &saved, Some(&a4), None)
            .unwrap_err();
        assert!(
            matches!(e, Error::ShapeMismatch { what, .. } if what.starts_with("grad_logp")),
            "{case}: {e}"
        );
        let w6 = Tensor::from_slice(&ctx, &uniform(6, 24, -1.0, 1.0), &[6, 4]).unwrap();
        let e = x
            .linear_head_backward(&w6, None, Targets::Indices(&labels), &saved, None, None)
            .unwrap_err();
        assert!(
            matches!(e, Error::ShapeMismatch { what, .. } if what.starts_with("saved")),
            "{case}: {e}"
        );
        let x4 = Tensor::from_slice(&ctx, &[0.5; 16], &[4, 4]).unwrap();
        let e = x4
            .linear_head_backward(
                &w,
                None,
                Targets::Indices(&[0, 1, 2, 3]),
                &saved,
                None,
                None,
            )
            .unwrap_err();
        assert!(
            matches!(e, Error::ShapeMismatch { what, .. } if what.starts_with("saved")),
            "{case}: {e}"
        );
        let e = x
            .linear_head_backward(&w, None, Targets::Indices(&[0, 1, 7]), &saved, None, None)
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::TargetOutOfRange {
                    row: 2,
                    value: 7,
                    ..
                }
            ),
            "{case}: {e}"
        );
    }
}

/// The fused linear cross-entropy's per-row losses and the gradient of `Σ w_r·loss_r`.
#[test]
fn linear_cross_entropy_with_per_row_upstream_weights() {
    for ctx in common::matmul_contexts() {
        let (n, h, k) = (150, 12, 33);
        let d = batch(1300, n, h, k);
        let t = upload(ctx, &d, DType::F32);
        let weights = uniform(1301, n, -2.0, 2.0);
        let wt = Tensor::from_slice(ctx, &weights, &[n]).unwrap();
        let options = CrossEntropyOptions {
            reduction: Reduction::None,
            label_smoothing: 0.1,
            weight: Some(uniform(1302, k, 0.5, 1.5)),
            ..Default::default()
        };
        let head = HeadOptions {
            lse_square_scale: 1e-3,
            softcap: Some(5.0),
        };
        let got =
            t.x.linear_cross_entropy_weighted_chunked(
                &t.w,
                Some(&t.b),
                Targets::Indices(&d.labels),
                &options,
                &head,
                &wt,
                64,
            )
            .unwrap();
        let (x, w) = (widen(&d.x), widen(&d.w));
        let z = linear_ref::forward(&x, &w, Some(&widen(&d.b)), n, h, k);
        let r = loss_ref::cross_entropy_head(
            &z,
            k,
            &d.labels,
            &CrossEntropyOptions {
                weight: options.weight.clone(),
                reduction: Reduction::None,
                label_smoothing: 0.1,
                ..Default::default()
            },
            &HeadOptions {
                lse_square_scale: 1e-3,
                softcap: Some(5.0),
            },
        );
        let mut g = r.grad.clone();
        for (row, chunk) in g.chunks_mut(k).enumerate() {
            chunk.iter_mut().for_each(|v| *v *= f64::from(weights[row]));
        }
        let (dx, dw, db) = linear_ref::backward(&x, &w, &g, n, h, k);
        let case = matmul_label(ctx);
        let atol = 2e-6 * (n.max(k) as f64).sqrt();
        for (what, got, want) in [
            ("loss", &got.loss, &r.loss),
            ("dx", &got.dx, &dx),
            ("dW", &got.dw, &dw),
            ("db", &got.db, &db),
        ] {
            let got = got.to_vec().unwrap();
            assert_all_close(&format!("{case} {what}"), &got, want, &[], atol, 1e-4);
        }
        // Weights of ones give the unweighted gradient exactly as linear_cross_entropy does.
        let ones = Tensor::from_slice(ctx, &vec![1.0; n], &[n]).unwrap();
        let plain =
            t.x.linear_cross_entropy(
                &t.w,
                Some(&t.b),
                Targets::Indices(&d.labels),
                &options,
                &head,
            )
            .unwrap();
        let weighted =
            t.x.linear_cross_entropy_weighted(
                &t.w,
                Some(&t.b),
                Targets::Indices(&d.labels),
                &options,
                &head,
                &ones,
            )
            .unwrap();
        assert_eq!(
            plain.dw.to_vec().unwrap(),
            weighted.dw.to_vec().unwrap(),
            "{case}"
        );
        // Bad input: a reduced loss with per-row weights, weights of the wrong shape.
        let mean = CrossEntropyOptions {
            reduction: Reduction::Mean,
            ..Default::default()
        };
        let e =
            t.x.linear_cross_entropy_weighted(
                &t.w,
                None,
                Targets::Indices(&d.labels),
                &mean,
                &head,
                &wt,
            )
            .unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedCombination { .. }),
            "{case}: {e}"
        );
        let short = Tensor::from_slice(ctx, &vec![1.0; n - 1], &[n - 1]).unwrap();
        let e =
            t.x.linear_cross_entropy_weighted(
                &t.w,
                None,
                Targets::Indices(&d.labels),
                &options,
                &head,
                &short,
            )
            .unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{case}: {e}");
    }
}

/// The one-pass step: the caller's upstream gradients formed per chunk from that chunk's
/// statistics give what the forward and the backward give with the same upstream gradients.
#[test]
fn the_one_pass_step_equals_forward_then_backward() {
    for ctx in common::matmul_contexts() {
        let (n, h, k) = (150, 12, 33);
        let d = batch(1400, n, h, k);
        let t = upload(ctx, &d, DType::F32);
        let options = option_sets().swap_remove(1);
        let targets = Targets::Indices(&d.labels);
        // A PPO-like per-row rule: a = −A·e^{log p − old}, c = −β.
        let old: Vec<f32> = d.a.iter().map(|v| v.abs().ln() - 3.0).collect();
        let advantage = d.c.clone();
        let rule = |rows: std::ops::Range<usize>, logp: &[f32]| -> (Vec<f32>, Vec<f32>) {
            let a = rows
                .clone()
                .zip(logp)
                .map(|(i, &lp)| -advantage[i] * (lp - old[i]).exp() / n as f32)
                .collect();
            (a, vec![-0.01 / n as f32; rows.len()])
        };
        let mut seen = Vec::new();
        let step =
            t.x.linear_head_step_chunked(
                &t.w,
                Some(&t.b),
                targets,
                &options,
                |rows, logp, entropy| {
                    assert_eq!((logp.len(), entropy.len()), (rows.len(), rows.len()));
                    seen.push(rows.clone());
                    rule(rows, logp)
                },
                64,
            )
            .unwrap();
        let case = matmul_label(ctx);
        assert_eq!(
            seen,
            [0..64, 64..128, 128..150],
            "{case}: the chunks in order"
        );
        let stats =
            t.x.linear_head_chunked(&t.w, Some(&t.b), targets, &options, 64)
                .unwrap();
        let logp = stats.logp.to_vec().unwrap();
        assert_eq!(step.stats.logp.to_vec().unwrap(), logp, "{case}: logp");
        let (a, c) = rule(0..n, &logp);
        let (at, ct) = (
            Tensor::from_slice(ctx, &a, &[n]).unwrap(),
            Tensor::from_slice(ctx, &c, &[n]).unwrap(),
        );
        let (dx, dw, db) =
            t.x.linear_head_backward_chunked(
                &t.w,
                Some(&t.b),
                targets,
                &stats,
                Some(&at),
                Some(&ct),
                64,
            )
            .unwrap();
        for (what, got, want) in [
            ("dx", &step.dx, &dx),
            ("dW", &step.dw, &dw),
            ("db", &step.db, &db),
        ] {
            let want = widen(&want.to_vec().unwrap());
            let got = got.to_vec().unwrap();
            assert_all_close(&format!("{case} {what}"), &got, &want, &[], 1e-6, 1e-5);
        }
        // Upstream gradients of another length than the chunk's rows.
        let e =
            t.x.linear_head_step(&t.w, None, targets, &options, |rows, _, _| {
                (vec![0.0; rows.len() + 1], vec![0.0; rows.len()])
            })
            .unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{case}: {e}");
    }
}
