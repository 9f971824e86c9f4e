//! The library in a browser: every op family on headless Chromium's WebGPU (wgpu's WebGPU
//! backend; Dawn and the Tint compiler over SwiftShader), in f32, f16 and bf16 storage, against
//! the CPU reference computed in the same wasm module; PyTorch's edge cases; errors as
//! `Result`s from the asynchronous calls; typed errors for bad input; kernels within the
//! browser adapter's limits.
//!
//! Run by `scripts/browser-test.sh` (wasm-bindgen-test-runner, chromedriver and Chromium with
//! `--enable-unsafe-webgpu`, from `webdriver.json`). A missing browser or WebGPU adapter fails
//! the run, as a missing adapter fails the native GPU tests under
//! `GPU_ACTIVATIONS_REQUIRE_ADAPTER=1`.
#![cfg(target_arch = "wasm32")]

use gpu_activations::accuracy::{ATOL, RTOL, close_stored};
use gpu_activations::cases::{SOFTMAX_EDGE_ROWS, SPECIAL, activation_variants};
use gpu_activations::{
    Activation, Adam, AdamState, Backend, BceOptions, Context, CrossEntropyOptions, DType, Error,
    Gate, HeadOptions, HeadStats, Reduction, Sgd, Targets, Tensor, wgpu,
};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const STORAGE: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// `n` values uniform in `[lo, hi)`, reproducible from `seed` (a small xorshift: the test
/// needs no crate for it).
fn uniform(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

async fn browser() -> Context {
    let ctx = Context::new_async()
        .await
        .expect("the browser offers a WebGPU adapter (Chromium with --enable-unsafe-webgpu)");
    assert_eq!(ctx.backend(), Backend::WebGpu, "{}", ctx.adapter_info());
    ctx
}

/// The CPU backend every reference tensor of a test lives on (ops take tensors of one context).
fn cpu() -> Context {
    thread_local! {
        static CPU: Context = Context::cpu();
    }
    CPU.with(Context::clone)
}

/// Uploads `values` as `dtype` to the browser's context and to the CPU backend.
fn pair(
    gpu: &Context,
    values: &[f32],
    shape: &[usize],
    dtype: DType,
) -> Result<(Tensor, Tensor), Error> {
    Ok((
        Tensor::from_slice_as(gpu, values, shape, dtype)?,
        Tensor::from_slice_as(&cpu(), values, shape, dtype)?,
    ))
}

/// The browser's answer against the CPU reference's, element by element, NaN and ±∞ exactly.
async fn same(case: &str, gpu: &Tensor, cpu: &Tensor) {
    assert_eq!(gpu.shape(), cpu.shape(), "{case}: shape");
    let got = gpu
        .to_vec_async()
        .await
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let want = cpu.to_vec().unwrap();
    let dtype = gpu.dtype();
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| !close_stored(dtype, got[i], f64::from(want[i]), ATOL, RTOL))
        .collect();
    if let Some(&i) = bad.first() {
        panic!(
            "{case} ({dtype}): {} element(s) out of tolerance; first at {i}: got {:e}, want {:e}",
            bad.len(),
            got[i],
            want[i]
        );
    }
}

#[wasm_bindgen_test]
async fn the_adapter_is_the_browsers_and_kernels_fit_its_limits() {
    let ctx = browser().await;
    let limits = ctx.limits().unwrap();
    // Chromium's software WebGPU: 256 invocations per workgroup (lavapipe has 1,024).
    assert!(limits.max_compute_invocations_per_workgroup >= 256);
    // wgpu's WebGPU backend offers no subgroups today: the workgroup-memory kernels run.
    assert!(!ctx.uses_subgroups());
    let x = Tensor::from_slice(&ctx, &uniform(1, 4 * 5000, -4.0, 4.0), &[4, 5000]).unwrap();
    ctx.synchronize_async().await.unwrap();
    // Every pipeline the ops below build asks for a workgroup the adapter takes.
    x.softmax().unwrap().to_vec_async().await.unwrap();
    for p in ctx.pipelines_built().unwrap() {
        for (name, value) in &p.constants {
            if *name == "WG" {
                assert!(
                    *value <= f64::from(limits.max_compute_invocations_per_workgroup),
                    "{}::{} asks for {value} invocations",
                    p.module,
                    p.entry
                );
            }
        }
    }
}

#[wasm_bindgen_test]
async fn activations_forward_and_backward_in_every_storage_type() {
    let ctx = browser().await;
    let mut x = SPECIAL.to_vec();
    x.extend(uniform(2, 4 * 257 - SPECIAL.len(), -12.0, 12.0));
    let g = uniform(3, x.len(), -2.0, 2.0);
    for dtype in STORAGE {
        let (xg, xc) = pair(&ctx, &x, &[4, 257], dtype).unwrap();
        let (gg, gc) = pair(&ctx, &g, &[4, 257], dtype).unwrap();
        for act in activation_variants() {
            let case = format!("{act:?}");
            same(
                &case,
                &xg.activation(act).unwrap(),
                &xc.activation(act).unwrap(),
            )
            .await;
            same(
                &format!("{case} backward"),
                &xg.activation_backward(act, &gg).unwrap(),
                &xc.activation_backward(act, &gc).unwrap(),
            )
            .await;
        }
    }
}

#[wasm_bindgen_test]
async fn softmax_rows_of_every_kernel_and_along_an_inner_dim() {
    let ctx = browser().await;
    for dtype in STORAGE {
        // Short rows (one invocation per row, held in registers), vec4 rows, one workgroup
        // per row, and segments for few long rows.
        for (rows, cols) in [(9, 3), (6, 8), (5, 64), (4, 1000), (3, 5000), (2, 70_000)] {
            let x = uniform(cols as u64, rows * cols, -8.0, 8.0);
            let g = uniform(5, rows * cols, -1.0, 1.0);
            let (xg, xc) = pair(&ctx, &x, &[rows, cols], dtype).unwrap();
            let (gg, gc) = pair(&ctx, &g, &[rows, cols], dtype).unwrap();
            let case = format!("[{rows}, {cols}]");
            let (yg, yc) = (xg.softmax().unwrap(), xc.softmax().unwrap());
            same(&format!("softmax {case}"), &yg, &yc).await;
            same(
                &format!("softmax backward {case}"),
                &yg.softmax_backward(&gg).unwrap(),
                &yc.softmax_backward(&gc).unwrap(),
            )
            .await;
            let (lg, lc) = (xg.log_softmax().unwrap(), xc.log_softmax().unwrap());
            same(&format!("log_softmax {case}"), &lg, &lc).await;
            same(
                &format!("log_softmax backward {case}"),
                &lg.log_softmax_backward(&gg).unwrap(),
                &lc.log_softmax_backward(&gc).unwrap(),
            )
            .await;
        }
        // Along dim 1 of [3, L, 5]: lines held in registers (L ≤ 32) and longer ones.
        for len in [21, 40] {
            let x = uniform(len as u64, 15 * len, -5.0, 5.0);
            let g = uniform(6, 15 * len, -1.0, 1.0);
            let (xg, xc) = pair(&ctx, &x, &[3, len, 5], dtype).unwrap();
            let (gg, gc) = pair(&ctx, &g, &[3, len, 5], dtype).unwrap();
            same(
                "softmax dim 1",
                &xg.softmax_dim(1).unwrap(),
                &xc.softmax_dim(1).unwrap(),
            )
            .await;
            same(
                "softmin dim 1 backward",
                &xg.softmin(1).unwrap().softmin_backward(1, &gg).unwrap(),
                &xc.softmin(1).unwrap().softmin_backward(1, &gc).unwrap(),
            )
            .await;
        }
    }
}

#[wasm_bindgen_test]
async fn pytorchs_edge_rows_give_pytorchs_answers() {
    let ctx = browser().await;
    let x: Vec<f32> = SOFTMAX_EDGE_ROWS.iter().flatten().copied().collect();
    let rows = SOFTMAX_EDGE_ROWS.len();
    let (xg, xc) = pair(&ctx, &x, &[rows, 4], DType::F32).unwrap();
    same(
        "edge rows softmax",
        &xg.softmax().unwrap(),
        &xc.softmax().unwrap(),
    )
    .await;
    same(
        "edge rows log_softmax",
        &xg.log_softmax().unwrap(),
        &xc.log_softmax().unwrap(),
    )
    .await;
    // The same rows as logits, with a target at a −∞ and an ignored row.
    let labels: Vec<i64> = (0..rows as i64)
        .map(|r| if r == 1 { -100 } else { r % 4 })
        .collect();
    let o = CrossEntropyOptions {
        reduction: Reduction::None,
        ..Default::default()
    };
    let (g, c) = (
        xg.cross_entropy(Targets::Indices(&labels), &o).unwrap(),
        xc.cross_entropy(Targets::Indices(&labels), &o).unwrap(),
    );
    same("edge rows cross-entropy loss", &g.loss, &c.loss).await;
    same("edge rows cross-entropy grad", &g.grad, &c.grad).await;
}

#[wasm_bindgen_test]
async fn losses_with_their_options() {
    let ctx = browser().await;
    for dtype in STORAGE {
        for cols in [7, 64, 1000] {
            let rows = 6;
            let z = uniform(cols as u64, rows * cols, -6.0, 6.0);
            let t = uniform(8, rows * cols, 0.0, 1.0);
            let labels: Vec<i64> = (0..rows as i64).map(|r| (r * 5) % cols as i64).collect();
            let (zg, zc) = pair(&ctx, &z, &[rows, cols], dtype).unwrap();
            let (tg, tc) = pair(&ctx, &t, &[rows, cols], dtype).unwrap();
            let case = format!("K={cols}");
            for o in [
                CrossEntropyOptions::default(),
                CrossEntropyOptions {
                    reduction: Reduction::None,
                    label_smoothing: 0.1,
                    weight: Some(uniform(9, cols, 0.5, 2.0)),
                    ignore_index: 2,
                },
            ] {
                let (g, c) = (
                    zg.cross_entropy(Targets::Indices(&labels), &o).unwrap(),
                    zc.cross_entropy(Targets::Indices(&labels), &o).unwrap(),
                );
                same(&format!("cross-entropy {case} loss"), &g.loss, &c.loss).await;
                same(&format!("cross-entropy {case} grad"), &g.grad, &c.grad).await;
                let (g, c) = (
                    zg.cross_entropy(Targets::Probabilities(&tg), &o).unwrap(),
                    zc.cross_entropy(Targets::Probabilities(&tc), &o).unwrap(),
                );
                same(&format!("soft cross-entropy {case} loss"), &g.loss, &c.loss).await;
                same(&format!("soft cross-entropy {case} grad"), &g.grad, &c.grad).await;
            }
            let head = HeadOptions {
                lse_square_scale: 1e-3,
                softcap: Some(15.0),
            };
            let o = CrossEntropyOptions::default();
            let (g, c) = (
                zg.cross_entropy_head(Targets::Indices(&labels), &o, &head)
                    .unwrap(),
                zc.cross_entropy_head(Targets::Indices(&labels), &o, &head)
                    .unwrap(),
            );
            same(&format!("head {case} loss"), &g.loss, &c.loss).await;
            same(&format!("head {case} z-loss"), &g.z_loss, &c.z_loss).await;
            same(&format!("head {case} grad"), &g.grad, &c.grad).await;
            let (lg, lc) = (zg.log_softmax().unwrap(), zc.log_softmax().unwrap());
            let (g, c) = (
                lg.nll_loss(Targets::Indices(&labels), &o).unwrap(),
                lc.nll_loss(Targets::Indices(&labels), &o).unwrap(),
            );
            same(&format!("nll {case} loss"), &g.loss, &c.loss).await;
            same(&format!("nll {case} grad"), &g.grad, &c.grad).await;
            let b = BceOptions {
                reduction: Reduction::None,
                weight: Some(uniform(10, cols, 0.5, 2.0)),
                pos_weight: Some(uniform(11, cols, 0.5, 3.0)),
            };
            let (g, c) = (
                zg.bce_with_logits(&tg, &b).unwrap(),
                zc.bce_with_logits(&tc, &b).unwrap(),
            );
            same(&format!("bce {case} loss"), &g.loss, &c.loss).await;
            same(&format!("bce {case} grad"), &g.grad, &c.grad).await;
        }
    }
}

#[wasm_bindgen_test]
async fn gated_prelu_and_conversions() {
    let ctx = browser().await;
    for dtype in STORAGE {
        for width in [16, 10] {
            let x = uniform(width as u64, 5 * width, -4.0, 4.0);
            let g = uniform(12, 5 * width / 2, -1.0, 1.0);
            let (xg, xc) = pair(&ctx, &x, &[5, width], dtype).unwrap();
            let (gg, gc) = pair(&ctx, &g, &[5, width / 2], dtype).unwrap();
            for gate in Gate::ALL {
                same(
                    &format!("{gate:?} width {width}"),
                    &xg.gated(gate).unwrap(),
                    &xc.gated(gate).unwrap(),
                )
                .await;
                same(
                    &format!("{gate:?} backward width {width}"),
                    &xg.gated_backward(gate, &gg).unwrap(),
                    &xc.gated_backward(gate, &gc).unwrap(),
                )
                .await;
            }
        }
        for inner in [4, 5] {
            let x = uniform(inner as u64, 18 * inner, -3.0, 3.0);
            let g = uniform(13, 18 * inner, -1.0, 1.0);
            let w = uniform(14, 6, 0.0, 0.5);
            let (xg, xc) = pair(&ctx, &x, &[3, 6, inner], dtype).unwrap();
            let (gg, gc) = pair(&ctx, &g, &[3, 6, inner], dtype).unwrap();
            let (wg, wc) = pair(&ctx, &w, &[6], dtype).unwrap();
            same("prelu", &xg.prelu(&wg).unwrap(), &xc.prelu(&wc).unwrap()).await;
            let (dg, dc) = (
                xg.prelu_backward(&wg, &gg).unwrap(),
                xc.prelu_backward(&wc, &gc).unwrap(),
            );
            same("prelu dx", &dg.0, &dc.0).await;
            same("prelu dw", &dg.1, &dc.1).await;
        }
        if dtype != DType::F32 {
            let x = uniform(15, 1000, -70_000.0, 70_000.0);
            let (xg, xc) = pair(&ctx, &x, &[1000], DType::F32).unwrap();
            same(
                &format!("to {dtype}"),
                &xg.to_dtype(dtype).unwrap(),
                &xc.to_dtype(dtype).unwrap(),
            )
            .await;
        }
    }
}

#[wasm_bindgen_test]
async fn the_linear_layer_the_fused_head_and_the_optimizers() {
    let ctx = browser().await;
    let (n, h, k) = (9, 20, 12);
    let x = uniform(16, n * h, -1.0, 1.0);
    let w = uniform(17, k * h, -1.0, 1.0);
    let b = uniform(18, k, -1.0, 1.0);
    let g = uniform(19, n * k, -1.0, 1.0);
    let (xg, xc) = pair(&ctx, &x, &[n, h], DType::F32).unwrap();
    let (wg, wc) = pair(&ctx, &w, &[k, h], DType::F32).unwrap();
    let (bg, bc) = pair(&ctx, &b, &[k], DType::F32).unwrap();
    let (gg, gc) = pair(&ctx, &g, &[n, k], DType::F32).unwrap();
    same(
        "linear",
        &xg.linear(&wg, Some(&bg)).unwrap(),
        &xc.linear(&wc, Some(&bc)).unwrap(),
    )
    .await;
    let (dg, dc) = (
        xg.linear_backward(&wg, &gg).unwrap(),
        xc.linear_backward(&wc, &gc).unwrap(),
    );
    same("linear dx", &dg.0, &dc.0).await;
    same("linear dw", &dg.1, &dc.1).await;
    same("linear db", &dg.2, &dc.2).await;
    let labels: Vec<i64> = (0..n as i64).map(|i| i % k as i64).collect();
    let o = CrossEntropyOptions::default();
    let head = HeadOptions::default();
    let (lg, lc) = (
        xg.linear_cross_entropy(&wg, Some(&bg), Targets::Indices(&labels), &o, &head)
            .unwrap(),
        xc.linear_cross_entropy(&wc, Some(&bc), Targets::Indices(&labels), &o, &head)
            .unwrap(),
    );
    same("linear cross-entropy loss", &lg.loss, &lc.loss).await;
    same("linear cross-entropy dx", &lg.dx, &lc.dx).await;
    same("linear cross-entropy dw", &lg.dw, &lc.dw).await;

    let p = uniform(20, 64, -1.0, 1.0);
    let d = uniform(21, 64, -1.0, 1.0);
    let (pg, pc) = pair(&ctx, &p, &[64], DType::F32).unwrap();
    let (dg, dc) = pair(&ctx, &d, &[64], DType::F32).unwrap();
    let sgd = Sgd {
        lr: 0.1,
        weight_decay: 0.01,
    };
    sgd.step(&pg, &dg).unwrap();
    sgd.step(&pc, &dc).unwrap();
    let (mut sg, mut sc) = (AdamState::new(&pg).unwrap(), AdamState::new(&pc).unwrap());
    for _ in 0..3 {
        Adam::default().step(&pg, &dg, &mut sg).unwrap();
        Adam::default().step(&pc, &dc, &mut sc).unwrap();
    }
    same("sgd then three adam steps", &pg, &pc).await;
}

#[wasm_bindgen_test]
async fn head_statistics_and_their_gradients_on_logits_and_through_the_linear_layer() {
    let ctx = browser().await;
    let (n, h, k) = (7, 12, 300);
    let z = uniform(30, n * k, -6.0, 6.0);
    let a = uniform(31, n, -1.0, 1.0);
    let c = uniform(32, n, -1.0, 1.0);
    let mut labels: Vec<i64> = (0..n as i64).map(|i| (i * 37) % k as i64).collect();
    labels[3] = -100;
    let (zg, zc) = pair(&ctx, &z, &[n, k], DType::F32).unwrap();
    let (ag, ac) = pair(&ctx, &a, &[n], DType::F32).unwrap();
    let (cg, cc) = pair(&ctx, &c, &[n], DType::F32).unwrap();
    let cases = [
        (
            "T = 0.7",
            HeadStats {
                temperature: 0.7,
                ..HeadStats::default()
            },
        ),
        (
            "softcap 4 and z-loss",
            HeadStats {
                softcap: Some(4.0),
                lse_square_scale: 1e-2,
                ..HeadStats::default()
            },
        ),
    ];
    let t = Targets::Indices(&labels);
    for (case, options) in &cases {
        let sg = zg.head_stats(t, options).unwrap();
        let sc = zc.head_stats(t, options).unwrap();
        same(&format!("head_stats {case}: log p"), &sg.logp, &sc.logp).await;
        same(
            &format!("head_stats {case}: entropy"),
            &sg.entropy,
            &sc.entropy,
        )
        .await;
        same(&format!("head_stats {case}: lse"), &sg.lse, &sc.lse).await;
        same(
            &format!("head_stats backward {case}"),
            &zg.head_stats_backward(t, &sg, Some(&ag), Some(&cg))
                .unwrap(),
            &zc.head_stats_backward(t, &sc, Some(&ac), Some(&cc))
                .unwrap(),
        )
        .await;
    }

    let x = uniform(33, n * h, -1.0, 1.0);
    let w = uniform(34, k * h, -1.0, 1.0);
    let b = uniform(35, k, -1.0, 1.0);
    let (xg, xc) = pair(&ctx, &x, &[n, h], DType::F32).unwrap();
    let (wg, wc) = pair(&ctx, &w, &[k, h], DType::F32).unwrap();
    let (bg, bc) = pair(&ctx, &b, &[k], DType::F32).unwrap();
    let options = &cases[0].1;
    let sg = xg.linear_head(&wg, Some(&bg), t, options).unwrap();
    let sc = xc.linear_head(&wc, Some(&bc), t, options).unwrap();
    same("linear_head: log p", &sg.logp, &sc.logp).await;
    same("linear_head: entropy", &sg.entropy, &sc.entropy).await;
    let dg = xg
        .linear_head_backward(&wg, Some(&bg), t, &sg, Some(&ag), Some(&cg))
        .unwrap();
    let dc = xc
        .linear_head_backward(&wc, Some(&bc), t, &sc, Some(&ac), Some(&cc))
        .unwrap();
    same("linear_head backward dx", &dg.0, &dc.0).await;
    same("linear_head backward dW", &dg.1, &dc.1).await;
    same("linear_head backward db", &dg.2, &dc.2).await;
}

#[wasm_bindgen_test]
async fn bad_input_gets_the_typed_errors_it_gets_natively() {
    let ctx = browser().await;
    let x = Tensor::from_slice(&ctx, &[1.0; 12], &[3, 4]).unwrap();
    let g = Tensor::from_slice(&ctx, &[1.0; 6], &[2, 3]).unwrap();
    assert!(matches!(
        x.softmax_backward(&g),
        Err(Error::ShapeMismatch { .. })
    ));
    match x.cross_entropy(
        Targets::Indices(&[0, 4, 1]),
        &CrossEntropyOptions::default(),
    ) {
        Err(Error::TargetOutOfRange { row: 1, .. }) => {}
        other => panic!("expected TargetOutOfRange, got {other:?}"),
    }
    // A row longer than the adapter's binding limit, refused before anything is allocated.
    let binding = ctx.limits().unwrap().max_storage_buffer_binding_size as usize;
    match Tensor::zeros(&ctx, &[usize::MAX / 2, 4]) {
        Err(Error::TooLarge { .. }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(binding > 0);
    // A parameter out of range.
    assert!(matches!(
        x.activation(Activation::Elu { alpha: f32::NAN }),
        Err(Error::InvalidParameter { .. })
    ));
}

#[wasm_bindgen_test]
async fn a_validation_error_inside_the_crates_work_comes_back_from_the_async_calls() {
    let ctx = browser().await;
    let (device, queue) = ctx.wgpu().unwrap();
    // A buffer of the caller's, viewed as a tensor, destroyed before the crate's work runs:
    // the submission that reads it fails the browser's validation.
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("destroyed before use"),
        size: 256,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&buffer, 0, bytemuck::cast_slice(&[1.0f32; 64]));
    let view = Tensor::from_wgpu_buffer(&ctx, &buffer, 0, &[64]).unwrap();
    let y = view.relu().unwrap();
    buffer.destroy();
    match ctx.synchronize_async().await {
        Err(Error::Gpu { message, .. }) => assert!(!message.is_empty()),
        other => panic!("expected the browser's validation error, got {other:?}"),
    }
    // Reported once: the context goes on working.
    drop(y);
    let z = Tensor::from_slice(&ctx, &[-1.0, 2.0], &[2]).unwrap();
    assert_eq!(
        z.relu().unwrap().to_vec_async().await.unwrap(),
        vec![0.0, 2.0]
    );
    // A blocking read-back cannot wait in a browser: a typed error, not a hang.
    assert!(z.to_vec().is_err());
}
