//! Per-token statistics of a head's logits (`log p_t`, entropy, `lse` under a temperature) and
//! the gradient of a loss of them: the f64 reference against PyTorch's answers
//! (`tests/fixtures/pytorch/wave3/head_stats/`, autograd through `log_softmax(z/T)`) and against
//! central finite differences; every backend, row kernel and storage type against PyTorch and
//! the reference; edge rows by bits; bad input as typed errors with nothing allocated.

mod common;

use common::{
    all_backends, assert_all_close, assert_stored_close, fixtures, label, npy, npy_f32,
    row_strategy_contexts, uniform,
};
use gpu_activations::accuracy::{ATOL, RTOL};
use gpu_activations::cpu::head_stats as reference;
use gpu_activations::cpu::widen;
use gpu_activations::{Context, DType, Error, HeadStats, Targets, Tensor};

/// The upstream gradients of a case: of log p_t, of the entropy.
type Upstream<'a> = (Option<&'a [f32]>, Option<&'a [f32]>);

/// One PyTorch case: logits, labels, options and the answers.
struct Fixture {
    name: String,
    z: Vec<f32>,
    shape: Vec<usize>,
    labels: Vec<i64>,
    options: HeadStats,
    a: Vec<f32>,
    c: Vec<f32>,
    logp: Vec<f64>,
    entropy: Vec<f64>,
    lse: Vec<f64>,
    grad: Vec<f64>,
}

fn fixture_cases() -> Vec<Fixture> {
    let root = fixtures().join("wave3/head_stats");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 3, "every case is covered");
    dirs.iter()
        .map(|d| {
            let o: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(d.join("options.json")).unwrap())
                    .unwrap();
            let (z, shape) = npy_f32(&d.join("logits.npy"));
            Fixture {
                name: d.file_name().unwrap().to_string_lossy().into_owned(),
                z,
                shape,
                labels: npy(&d.join("targets.npy"))
                    .0
                    .iter()
                    .map(|&v| v as i64)
                    .collect(),
                options: HeadStats {
                    temperature: o["temperature"].as_f64().unwrap() as f32,
                    ignore_index: o["ignore_index"].as_i64().unwrap(),
                    ..Default::default()
                },
                a: npy_f32(&d.join("grad_logp.npy")).0,
                c: npy_f32(&d.join("grad_entropy.npy")).0,
                logp: npy(&d.join("logp.npy")).0,
                entropy: npy(&d.join("entropy.npy")).0,
                lse: npy(&d.join("lse.npy")).0,
                grad: npy(&d.join("grad_logits.npy")).0,
            }
        })
        .collect()
}

/// The reference's statistics and gradient of `z` (rows of `k`) with upstream `a` and `c`.
fn reference_of(
    z: &[f64],
    k: usize,
    labels: &[i64],
    options: &HeadStats,
    a: Option<&[f32]>,
    c: Option<&[f32]>,
) -> (reference::HeadStatsReference, Vec<f64>) {
    let stats = reference::head_stats(z, k, labels, options);
    let (a, c) = (a.map(widen), c.map(widen));
    let grad = reference::head_stats_backward(z, k, labels, options, a.as_deref(), c.as_deref());
    (stats, grad)
}

#[test]
fn the_reference_matches_pytorch() {
    for f in fixture_cases() {
        let k = f.shape[1];
        let (stats, grad) = reference_of(
            &widen(&f.z),
            k,
            &f.labels,
            &f.options,
            Some(&f.a),
            Some(&f.c),
        );
        for (what, got, want) in [
            ("logp", &stats.logp, &f.logp),
            ("entropy", &stats.entropy, &f.entropy),
            ("lse", &stats.lse, &f.lse),
            ("grad", &grad, &f.grad),
        ] {
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-12 + 1e-9 * w.abs(),
                    "{} {what}[{i}]: reference {g:e}, PyTorch {w:e}",
                    f.name
                );
            }
        }
    }
}

/// The loss whose gradient the backward gives: `Σ a·log p_t + Σ c·H + Σ s·lse²` over the rows
/// not ignored.
fn loss(z: &[f64], k: usize, labels: &[i64], options: &HeadStats, a: &[f64], c: &[f64]) -> f64 {
    let r = reference::head_stats(z, k, labels, options);
    let s = f64::from(options.lse_square_scale);
    (0..labels.len())
        .filter(|&i| labels[i] != options.ignore_index)
        .map(|i| a[i] * r.logp[i] + c[i] * r.entropy[i] + s * r.lse[i] * r.lse[i])
        .sum()
}

fn option_sets() -> Vec<HeadStats> {
    vec![
        HeadStats::default(),
        HeadStats {
            temperature: 0.7,
            softcap: Some(5.0),
            ..Default::default()
        },
        HeadStats {
            lse_square_scale: 1e-2,
            softcap: Some(3.0),
            ignore_index: 7,
            ..Default::default()
        },
        HeadStats {
            temperature: 2.5,
            ..Default::default()
        },
    ]
}

#[test]
fn the_reference_gradient_matches_finite_differences() {
    let (rows, k) = (5, 9);
    let z = widen(&uniform(31, rows * k, -4.0, 4.0));
    let a = widen(&uniform(32, rows, -1.0, 1.0));
    let c = widen(&uniform(33, rows, -1.0, 1.0));
    for options in option_sets() {
        let labels = vec![3, options.ignore_index, 0, 8, 6];
        let grad = reference::head_stats_backward(&z, k, &labels, &options, Some(&a), Some(&c));
        let h = 1e-6;
        for i in 0..z.len() {
            let mut plus = z.clone();
            plus[i] += h;
            let mut minus = z.clone();
            minus[i] -= h;
            let fd = (loss(&plus, k, &labels, &options, &a, &c)
                - loss(&minus, k, &labels, &options, &a, &c))
                / (2.0 * h);
            assert!(
                (grad[i] - fd).abs() <= 1e-7 + 1e-6 * fd.abs(),
                "{options:?} element {i}: reference {:e}, finite differences {fd:e}",
                grad[i]
            );
        }
    }
}

/// Runs the op on `ctx` in `dtype` and compares with `want` (stats and gradient): the
/// statistics (f32 whatever the storage) within the f32 bound, the gradient within one ulp of
/// the storage type more.
#[allow(clippy::too_many_arguments)]
fn check_on(
    ctx: &Context,
    case: &str,
    dtype: DType,
    z: &[f32],
    shape: &[usize],
    labels: &[i64],
    options: &HeadStats,
    upstream: Upstream<'_>,
    want: &(reference::HeadStatsReference, Vec<f64>),
) {
    let rows = labels.len();
    let zt = Tensor::from_slice_as(ctx, z, shape, dtype).unwrap();
    let out = zt.head_stats(Targets::Indices(labels), options).unwrap();
    let row_shape = &shape[..shape.len() - 1];
    for (what, got, want) in [
        ("logp", &out.logp, &want.0.logp),
        ("entropy", &out.entropy, &want.0.entropy),
        ("lse", &out.lse, &want.0.lse),
    ] {
        assert_eq!(
            (got.shape(), got.dtype()),
            (row_shape, DType::F32),
            "{case} {what}"
        );
        let got = got.to_vec().unwrap();
        assert_all_close(&format!("{case} {what}"), &got, want, &[], ATOL, RTOL);
    }
    let up = |v: Option<&[f32]>| v.map(|v| Tensor::from_slice(ctx, v, &[rows]).unwrap());
    let (a, c) = (up(upstream.0), up(upstream.1));
    let grad = zt
        .head_stats_backward(Targets::Indices(labels), &out, a.as_ref(), c.as_ref())
        .unwrap();
    assert_eq!((grad.shape(), grad.dtype()), (shape, dtype), "{case} grad");
    assert_stored_close(
        &format!("{case} grad"),
        dtype,
        &grad.to_vec().unwrap(),
        &want.1,
        &[],
    );
}

#[test]
fn head_stats_match_pytorch_on_every_backend() {
    for f in fixture_cases() {
        for ctx in all_backends() {
            let case = format!("{} PyTorch {}", label(&ctx), f.name);
            let want = (
                reference::HeadStatsReference {
                    logp: f.logp.clone(),
                    entropy: f.entropy.clone(),
                    lse: f.lse.clone(),
                },
                f.grad.clone(),
            );
            let upstream = (Some(&f.a[..]), Some(&f.c[..]));
            check_on(
                &ctx,
                &case,
                DType::F32,
                &f.z,
                &f.shape,
                &f.labels,
                &f.options,
                upstream,
                &want,
            );
        }
    }
}

#[test]
fn head_stats_match_the_reference_on_every_row_kernel_and_storage_type() {
    // Rows shorter than a vec4, not a multiple of 4, of one vec4, and long ones (the automatic
    // choice takes a workgroup per row for the few long rows on a CPU adapter).
    for (rows, k) in [
        (6, 1),
        (9, 3),
        (5, 4),
        (13, 37),
        (4, 65),
        (70, 130),
        (3, 5000),
    ] {
        let z = uniform(40 + k as u64, rows * k, -6.0, 6.0);
        let labels: Vec<i64> = (0..rows)
            .map(|r| {
                if r == 1 {
                    -100
                } else {
                    ((r * 5 + 2) % k) as i64
                }
            })
            .collect();
        let a = uniform(41, rows, -1.0, 1.0);
        let c = uniform(42, rows, -1.0, 1.0);
        for (o, options) in option_sets().into_iter().enumerate() {
            // Row 1 is ignored, whatever the ignore index.
            let mut labels = labels.clone();
            labels[1] = options.ignore_index;
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                let stored: Vec<f32> = z.iter().map(|&v| dtype.round(v)).collect();
                let upstream: [Upstream<'_>; 3] =
                    [(Some(&a), Some(&c)), (Some(&a), None), (None, Some(&c))];
                let pick = upstream[(o + k) % 3];
                let want = reference_of(&widen(&stored), k, &labels, &options, pick.0, pick.1);
                let mut contexts: Vec<Context> = row_strategy_contexts().to_vec();
                contexts.push(Context::cpu());
                for ctx in &contexts {
                    let case = format!(
                        "{} {:?} [{rows}, {k}] {dtype} options {o}",
                        label(ctx),
                        ctx.row_strategy()
                    );
                    check_on(
                        ctx,
                        &case,
                        dtype,
                        &stored,
                        &[rows, k],
                        &labels,
                        &options,
                        pick,
                        &want,
                    );
                }
            }
        }
    }
}

#[test]
fn edge_rows_are_nan_or_exact_by_bits() {
    // Rows holding a NaN, a +∞, all −∞, −∞ at the target and elsewhere, ±1e38 (finite, whose
    // differences overflow once divided by T = 0.5), a common offset of 1e4, an ignored row holding a NaN, and a plain
    // row; rows of 6 (one invocation per row) and 300 logits; with the temperature and softcap.
    for k in [6, 300] {
        let rows = 9;
        let mut z = uniform(50, rows * k, -3.0, 3.0);
        let at = |r: usize, j: usize| r * k + j;
        z[at(0, 2)] = f32::NAN;
        z[at(1, 4)] = f32::INFINITY;
        z[at(2, 0)..at(3, 0)].fill(f32::NEG_INFINITY);
        z[at(3, 1)] = f32::NEG_INFINITY;
        z[at(3, 5)] = f32::NEG_INFINITY;
        z[at(4, 0)] = 1e38;
        z[at(4, 1)] = -1e38;
        for v in &mut z[at(5, 0)..at(6, 0)] {
            *v += 1e4;
        }
        z[at(6, 3)] = f32::NAN;
        let labels: Vec<i64> = vec![1, 0, 2, 1, 1, 3, -100, 5, 0];
        let a = uniform(51, rows, -1.0, 1.0);
        let c = uniform(52, rows, -1.0, 1.0);
        for options in [
            HeadStats::default(),
            HeadStats {
                temperature: 0.5,
                ..Default::default()
            },
            HeadStats {
                softcap: Some(2.0),
                temperature: 1.5,
                ..Default::default()
            },
        ] {
            let want = reference_of(&widen(&z), k, &labels, &options, Some(&a), Some(&c));
            // The reference's own edge answers, spelled out.
            // (The softcap maps ±∞ to ±c: there the +∞ and all −∞ rows are finite.)
            assert!(want.0.lse[0].is_nan() && want.0.logp[0].is_nan());
            assert!(want.0.lse[6].is_nan() && want.0.logp[6] == 0.0 && want.1[at(6, 0)] == 0.0);
            if options.softcap.is_none() {
                assert!(want.0.logp[1].is_nan() && want.0.entropy[2].is_nan());
                assert_eq!(want.0.logp[3], f64::NEG_INFINITY);
                assert!(want.0.entropy[3].is_finite() && want.1[at(3, 5)].is_finite());
            }
            for ctx in row_strategy_contexts()
                .iter()
                .cloned()
                .chain([Context::cpu()])
            {
                let case = format!("{} {:?} K={k} {options:?}", label(&ctx), ctx.row_strategy());
                check_on(
                    &ctx,
                    &case,
                    DType::F32,
                    &z,
                    &[rows, k],
                    &labels,
                    &options,
                    (Some(&a), Some(&c)),
                    &want,
                );
            }
        }
    }
}

#[test]
fn a_logit_beyond_f32_once_divided_by_the_temperature_makes_its_row_nan() {
    // u = z/T is formed in f32, as PyTorch's `z / T` is: 3e38/0.5 is +∞, so the row is NaN (as
    // PyTorch's f32 log_softmax gives), and −3e38/0.5 is −∞, an entry of probability 0.
    let z = [3e38, 0.0, 1.0, -3e38, 0.0, 1.0];
    let options = HeadStats {
        temperature: 0.5,
        ..Default::default()
    };
    for ctx in all_backends() {
        let zt = Tensor::from_slice(&ctx, &z, &[2, 3]).unwrap();
        let out = zt
            .head_stats(Targets::Indices(&[1, 3 - 3]), &options)
            .unwrap();
        let case = label(&ctx);
        let (logp, lse) = (out.logp.to_vec().unwrap(), out.lse.to_vec().unwrap());
        assert!(
            logp[0].is_nan() && lse[0].is_nan(),
            "{case}: {logp:?} {lse:?}"
        );
        assert_eq!(logp[1], f32::NEG_INFINITY, "{case}");
        let g = zt
            .head_stats_backward(Targets::Indices(&[1, 0]), &out, None, None)
            .unwrap();
        let g = g.to_vec().unwrap();
        assert!(g[..3].iter().all(|v| v.is_nan()), "{case}: {g:?}");
    }
}

#[test]
fn leading_dims_are_rows_and_device_labels_match_host_labels() {
    for ctx in common::gpus() {
        let (b, t, k) = (2, 3, 11);
        let z = uniform(60, b * t * k, -2.0, 2.0);
        let labels: Vec<i64> = vec![0, 10, -100, 4, 5, 6];
        let zt = Tensor::from_slice(ctx, &z, &[b, t, k]).unwrap();
        let options = HeadStats::default();
        let host = zt.head_stats(Targets::Indices(&labels), &options).unwrap();
        assert_eq!(host.logp.shape(), [b, t]);
        let words: Vec<i32> = labels.iter().map(|&v| v as i32).collect();
        let lt = Tensor::from_slice_as(
            ctx,
            &words.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            &[6],
            DType::F32,
        )
        .unwrap();
        drop(lt);
        let (device, queue) = ctx.wgpu().unwrap();
        let buffer = device.create_buffer(&gpu_activations::wgpu::BufferDescriptor {
            label: Some("labels"),
            size: 32,
            usage: gpu_activations::wgpu::BufferUsages::STORAGE
                | gpu_activations::wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        queue.write_buffer(&buffer, 0, bytemuck::cast_slice(&words));
        let on_device = Tensor::from_wgpu_buffer_as(ctx, &buffer, 0, &[6], DType::I32).unwrap();
        let dev = zt
            .head_stats(Targets::Device(&on_device), &options)
            .unwrap();
        for (h, d) in [
            (&host.logp, &dev.logp),
            (&host.entropy, &dev.entropy),
            (&host.lse, &dev.lse),
        ] {
            assert_eq!(h.to_vec().unwrap(), d.to_vec().unwrap(), "{}", label(ctx));
        }
    }
}

/// Asserts that `f` fails with an error `matches` accepts and allocates nothing on the device.
fn refused(
    ctx: &Context,
    case: &str,
    f: impl FnOnce() -> Result<Tensor, Error>,
    ok: fn(&Error) -> bool,
) {
    ctx.synchronize().unwrap();
    let before = ctx.device_bytes().0;
    ctx.reset_peak_device_bytes();
    let e = f().map(|_| ()).unwrap_err();
    assert!(ok(&e), "{} {case}: {e}", label(ctx));
    let (now, peak) = ctx.device_bytes();
    assert_eq!(
        (now, peak),
        (before, before),
        "{} {case}: allocated",
        label(ctx)
    );
}

#[test]
fn bad_input_is_a_typed_error_and_writes_nothing() {
    for ctx in all_backends() {
        let z = Tensor::from_slice(&ctx, &uniform(70, 12, -1.0, 1.0), &[3, 4]).unwrap();
        let labels = [0i64, 3, -100];
        let saved = z
            .head_stats(Targets::Indices(&labels), &HeadStats::default())
            .unwrap();
        let a = Tensor::from_slice(&ctx, &[0.5; 3], &[3]).unwrap();
        ctx.synchronize().unwrap();
        for t in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let options = HeadStats {
                temperature: t,
                ..Default::default()
            };
            refused(
                &ctx,
                &format!("T = {t}"),
                || {
                    z.head_stats(Targets::Indices(&labels), &options)
                        .map(|o| o.lse)
                },
                |e| {
                    matches!(
                        e,
                        Error::InvalidParameter {
                            name: "temperature",
                            ..
                        }
                    )
                },
            );
        }
        let softcap = HeadStats {
            softcap: Some(-1.0),
            ..Default::default()
        };
        refused(
            &ctx,
            "softcap",
            || {
                z.head_stats(Targets::Indices(&labels), &softcap)
                    .map(|o| o.lse)
            },
            |e| {
                matches!(
                    e,
                    Error::InvalidParameter {
                        name: "softcap",
                        ..
                    }
                )
            },
        );
        let z_loss_hot = HeadStats {
            lse_square_scale: 1e-3,
            temperature: 0.8,
            ..Default::default()
        };
        refused(
            &ctx,
            "z-loss at T ≠ 1",
            || {
                z.head_stats(Targets::Indices(&labels), &z_loss_hot)
                    .map(|o| o.lse)
            },
            |e| matches!(e, Error::UnsupportedCombination { .. }),
        );
        refused(
            &ctx,
            "target out of range",
            || {
                z.head_stats(Targets::Indices(&[0, 4, 1]), &HeadStats::default())
                    .map(|o| o.lse)
            },
            |e| {
                matches!(
                    e,
                    Error::TargetOutOfRange {
                        row: 1,
                        value: 4,
                        ..
                    }
                )
            },
        );
        refused(
            &ctx,
            "targets of another length",
            || {
                z.head_stats(Targets::Indices(&[0, 1]), &HeadStats::default())
                    .map(|o| o.lse)
            },
            |e| matches!(e, Error::ShapeMismatch { .. }),
        );
        refused(
            &ctx,
            "probability targets",
            || {
                z.head_stats(Targets::Probabilities(&z), &HeadStats::default())
                    .map(|o| o.lse)
            },
            |e| matches!(e, Error::DTypeMismatch { .. }),
        );
        // The backward: upstream gradients of the wrong shape, statistics of another call.
        let a4 = Tensor::from_slice(&ctx, &[0.5; 4], &[4]).unwrap();
        let a31 = Tensor::from_slice(&ctx, &[0.5; 3], &[3, 1]).unwrap();
        for (what, bad) in [("grad_logp [4]", &a4), ("grad_logp [3, 1]", &a31)] {
            refused(
                &ctx,
                what,
                || z.head_stats_backward(Targets::Indices(&labels), &saved, Some(bad), None),
                |e| matches!(e, Error::ShapeMismatch { what, .. } if what.starts_with("grad_logp")),
            );
            refused(
                &ctx,
                what,
                || z.head_stats_backward(Targets::Indices(&labels), &saved, None, Some(bad)),
                |e| matches!(e, Error::ShapeMismatch { what, .. } if what.starts_with("grad_entropy")),
            );
        }
        let wider = Tensor::from_slice(&ctx, &uniform(71, 15, -1.0, 1.0), &[3, 5]).unwrap();
        refused(
            &ctx,
            "statistics of logits with other classes",
            || wider.head_stats_backward(Targets::Indices(&labels), &saved, Some(&a), None),
            |e| matches!(e, Error::ShapeMismatch { what, .. } if what.starts_with("saved")),
        );
        let taller = Tensor::from_slice(&ctx, &uniform(72, 16, -1.0, 1.0), &[4, 4]).unwrap();
        refused(
            &ctx,
            "statistics of other rows",
            || taller.head_stats_backward(Targets::Indices(&[0, 1, 2, 3]), &saved, None, None),
            |e| matches!(e, Error::ShapeMismatch { what, .. } if what.starts_with("saved")),
        );
        let mut doctored = saved.clone();
        doctored.options.temperature = -2.0;
        refused(
            &ctx,
            "statistics carrying a bad temperature",
            || z.head_stats_backward(Targets::Indices(&labels), &doctored, Some(&a), None),
            |e| {
                matches!(
                    e,
                    Error::InvalidParameter {
                        name: "temperature",
                        ..
                    }
                )
            },
        );
        refused(
            &ctx,
            "backward target out of range",
            || z.head_stats_backward(Targets::Indices(&[0, 9, 1]), &saved, Some(&a), None),
            |e| {
                matches!(
                    e,
                    Error::TargetOutOfRange {
                        row: 1,
                        value: 9,
                        ..
                    }
                )
            },
        );
        let scalar = Tensor::from_slice(&ctx, &[1.0], &[]).unwrap();
        refused(
            &ctx,
            "a scalar",
            || {
                scalar
                    .head_stats(Targets::Indices(&[]), &HeadStats::default())
                    .map(|o| o.lse)
            },
            |e| matches!(e, Error::InvalidShape { .. }),
        );
    }
}

#[test]
fn rows_beyond_one_binding_go_in_blocks_at_any_offset() {
    // Bindings capped at 64 KiB: 300 rows of 301 logits (361 KB) go in blocks whose first row
    // starts inside an aligned binding (301 is odd, so every block's base is off the alignment).
    let (rows, k) = (300, 301);
    let z = uniform(90, rows * k, -5.0, 5.0);
    let labels: Vec<i64> = (0..rows).map(|r| ((r * 11) % k) as i64).collect();
    let a = uniform(91, rows, -1.0, 1.0);
    let c = uniform(92, rows, -1.0, 1.0);
    let options = HeadStats {
        temperature: 1.3,
        ..Default::default()
    };
    let want = reference_of(&widen(&z), k, &labels, &options, Some(&a), Some(&c));
    for ctx in common::gpus() {
        for row_strategy in [
            gpu_activations::RowStrategy::PerRow,
            gpu_activations::RowStrategy::Workgroup,
        ] {
            let capped = Context::with_options(gpu_activations::ContextOptions {
                max_binding_bytes: Some(64 << 10),
                row_strategy,
                ..common::same_adapter(ctx)
            })
            .unwrap();
            let case = format!("{} {row_strategy:?} bindings of 64 KiB", label(ctx));
            check_on(
                &capped,
                &case,
                DType::F32,
                &z,
                &[rows, k],
                &labels,
                &options,
                (Some(&a), Some(&c)),
                &want,
            );
        }
    }
}

#[test]
fn rows_past_llvmpipes_loop_limit_are_whole() {
    // 300,001 logits a row: one invocation per row steps 16 logits per iteration (WIDE) to stay
    // under llvmpipe's 65,535 iterations; a workgroup per row takes a share of the row each.
    let (rows, k) = (2, 300_001);
    let mut z = uniform(95, rows * k, -3.0, 3.0);
    z[k - 1] = 9.0; // the last logit of the first row dominates: a truncated row would miss it
    let labels = vec![(k - 1) as i64, 17];
    let a = uniform(96, rows, -1.0, 1.0);
    let options = HeadStats::default();
    let want = reference_of(&widen(&z), k, &labels, &options, Some(&a), None);
    for ctx in row_strategy_contexts() {
        if !matches!(
            ctx.row_strategy(),
            gpu_activations::RowStrategy::PerRow | gpu_activations::RowStrategy::Auto
        ) {
            continue;
        }
        let case = format!("{} {:?} K={k}", label(ctx), ctx.row_strategy());
        check_on(
            ctx,
            &case,
            DType::F32,
            &z,
            &[rows, k],
            &labels,
            &options,
            (Some(&a), None),
            &want,
        );
    }
}
