//! Scale and reliability: tensors and rows beyond one storage binding, requests beyond the
//! device, many threads on one context, long loops with a bounded pool, tensors dropped while
//! queued, a lost device, GPU errors, read-back timeouts, and the 300,000,000-element run
//! (ignored; see the README).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{assert_all_close, label, report, uniform};
use gpu_activations::cpu::softmax as softmax_ref;
use gpu_activations::{
    Activation, BceOptions, Context, ContextOptions, CrossEntropyOptions, Error, Targets, Tensor,
};

/// Elements in one storage binding of `ctx` (the split point of every op).
/// The largest binding the beyond-one-binding tests cross: lavapipe's and llvmpipe's 128 MiB.
const TEST_BINDING_BYTES: u64 = 128 << 20;

/// Every GPU adapter with its storage bindings capped at `TEST_BINDING_BYTES` (SwiftShader's
/// are 1 GiB, and so are its buffers: a tensor longer than one binding would be one longer
/// than one buffer there), and the elements one binding holds.
fn binding_capped() -> Vec<(Context, usize)> {
    common::gpus()
        .iter()
        .map(|c| {
            let cap = TEST_BINDING_BYTES.min(
                c.limits()
                    .map_or(TEST_BINDING_BYTES, |l| l.max_storage_buffer_binding_size),
            );
            let ctx = Context::with_options(ContextOptions {
                max_binding_bytes: Some(cap),
                ..common::same_adapter(c)
            })
            .unwrap();
            (ctx, (cap / 4) as usize)
        })
        .collect()
}

/// Resident set size of this process in bytes (Linux), or 0 where unknown.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Peak resident set size (VmHWM) in bytes, or 0 where unknown.
fn peak_resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024)
}

fn softmax_expected(x: &[f32], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|r| {
            softmax_ref::forward_row(&r.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), false)
        })
        .collect()
}

#[test]
fn elementwise_ops_beyond_one_binding() {
    for (ctx, binding) in &binding_capped() {
        let n = *binding + *binding / 4 + 3;
        let x = uniform(1, n, -8.0, 8.0);
        let g = uniform(2, n, -1.0, 1.0);
        let xt = Tensor::from_slice(ctx, &x, &[n]).unwrap();
        let gt = Tensor::from_slice(ctx, &g, &[n]).unwrap();
        for act in [Activation::Relu, Activation::Gelu] {
            let y = xt.activation(act).unwrap().to_vec().unwrap();
            let want: Vec<f64> = x.iter().map(|&v| act.reference(f64::from(v))).collect();
            assert_all_close(
                &format!("{} {act} n={n}", label(ctx)),
                &y,
                &want,
                &[&x],
                1e-6,
                1e-5,
            );
        }
        let dx = xt
            .activation_backward(Activation::Silu, &gt)
            .unwrap()
            .to_vec()
            .unwrap();
        let want: Vec<f64> = x
            .iter()
            .zip(&g)
            .map(|(&v, &d)| Activation::Silu.reference_backward(f64::from(v), f64::from(d)))
            .collect();
        assert_all_close(
            &format!("{} silu backward n={n}", label(ctx)),
            &dx,
            &want,
            &[&x, &g],
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn a_softmax_row_longer_than_one_binding() {
    for (ctx, binding) in &binding_capped() {
        let b = *binding;
        // Two unaligned rows just over a binding (the scalar path), and one vec4 row.
        for (rows, cols) in [(2, b + 1), (1, b + b / 8 + 4)] {
            let x = uniform(cols as u64, rows * cols, -20.0, 20.0);
            let g = uniform(7, rows * cols, -1.0, 1.0);
            let xt = Tensor::from_slice(ctx, &x, &[rows, cols]).unwrap();
            let y = xt.softmax().unwrap();
            let yv = y.to_vec().unwrap();
            let case = format!("{} [{rows}, {cols}]", label(ctx));
            assert_all_close(
                &format!("{case} softmax"),
                &yv,
                &softmax_expected(&x, cols),
                &[&x],
                1e-6,
                1e-5,
            );
            for row in yv.chunks(cols) {
                let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
                assert!((sum - 1.0).abs() < 1e-5, "{case}: row sums to {sum}");
            }
            let gt = Tensor::from_slice(ctx, &g, &[rows, cols]).unwrap();
            let dx = y.softmax_backward(&gt).unwrap().to_vec().unwrap();
            let want: Vec<f64> = yv
                .chunks(cols)
                .zip(g.chunks(cols))
                .flat_map(|(y, g)| {
                    let y: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
                    let g: Vec<f64> = g.iter().map(|&v| f64::from(v)).collect();
                    softmax_ref::backward_row(&y, &g, false)
                })
                .collect();
            assert_all_close(
                &format!("{case} softmax backward"),
                &dx,
                &want,
                &[&yv, &g],
                1e-6,
                1e-5,
            );
            let ly = xt.log_softmax().unwrap().to_vec().unwrap();
            let want: Vec<f64> = x
                .chunks(cols)
                .flat_map(|r| {
                    softmax_ref::forward_row(
                        &r.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
                        true,
                    )
                })
                .collect();
            assert_all_close(
                &format!("{case} log_softmax"),
                &ly,
                &want,
                &[&x],
                1e-5,
                1e-5,
            );
        }
    }
}

#[test]
fn losses_beyond_one_binding() {
    for (ctx, binding) in &binding_capped() {
        let (rows, cols) = (*binding / 1000 + 77, 1000);
        let z = uniform(3, rows * cols, -5.0, 5.0);
        let t: Vec<i64> = (0..rows as i64).map(|r| r * 13 % cols as i64).collect();
        let zt = Tensor::from_slice(ctx, &z, &[rows, cols]).unwrap();
        let o = CrossEntropyOptions {
            label_smoothing: 0.1,
            ..Default::default()
        };
        let out = zt.cross_entropy(Targets::Indices(&t), &o).unwrap();
        let z64: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
        let want = gpu_activations::cpu::loss::cross_entropy(
            &z64,
            cols,
            gpu_activations::cpu::loss::CrossEntropyTargets::Indices(&t),
            &CrossEntropyOptions {
                reduction: o.reduction,
                label_smoothing: 0.1,
                ..Default::default()
            },
        );
        let loss = out.loss.to_vec().unwrap()[0];
        assert!(
            (f64::from(loss) - want.loss[0]).abs() <= 1e-5 * want.loss[0],
            "{}: {loss} vs {}",
            label(ctx),
            want.loss[0]
        );
        assert_all_close(
            &format!("{} ce grad [{rows}, {cols}]", label(ctx)),
            &out.grad.to_vec().unwrap(),
            &want.grad,
            &[&z],
            1e-6,
            1e-5,
        );
        let y: Vec<f32> = uniform(4, rows * cols, 0.0, 1.0);
        let yt = Tensor::from_slice(ctx, &y, &[rows * cols]).unwrap();
        let zf = zt.reshape(&[rows * cols]).unwrap();
        let bce = zf.bce_with_logits(&yt, &BceOptions::default()).unwrap();
        let y64: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
        let want = gpu_activations::cpu::loss::bce_with_logits(
            &z64,
            &y64,
            &BceOptions {
                reduction: gpu_activations::Reduction::Mean,
                ..Default::default()
            },
        );
        let loss = bce.loss.to_vec().unwrap()[0];
        assert!(
            (f64::from(loss) - want.loss[0]).abs() <= 1e-5 * want.loss[0],
            "{}: bce {loss} vs {}",
            label(ctx),
            want.loss[0]
        );
    }
}

#[test]
fn requests_beyond_the_device_fail_before_any_work() {
    for ctx in common::gpus() {
        // 4 TiB: more than this machine (or any adapter here) can hold, though it would be
        // split over buffers of `max_buffer_size`.
        let n = 1usize << 40;
        match Tensor::zeros(ctx, &[n]) {
            Err(Error::TooLarge {
                requested,
                limit,
                what,
                ..
            }) => {
                assert!(
                    requested > limit,
                    "{}: {requested} vs {limit} ({what})",
                    label(ctx)
                );
            }
            Err(Error::OutOfMemory { bytes, .. }) => assert!(bytes > 0),
            other => panic!(
                "{}: expected TooLarge or OutOfMemory, got {other:?}",
                label(ctx)
            ),
        }
        // The context is unharmed.
        let x = Tensor::from_slice(ctx, &[1.0, -1.0], &[2]).unwrap();
        assert_eq!(x.relu().unwrap().to_vec().unwrap(), vec![1.0, 0.0]);
    }
    // On the CPU backend the host's memory is the limit: still a typed error, not an abort.
    match Tensor::zeros(&Context::cpu(), &[usize::MAX / 8]) {
        Err(Error::TooLarge { .. }) => {}
        other => panic!("cpu: expected TooLarge, got {other:?}"),
    }
}

/// Whether `r` is `Error::TooLarge` with a request beyond its limit; panics naming `case`
/// otherwise.
fn assert_too_large<T: std::fmt::Debug>(case: &str, r: gpu_activations::Result<T>) {
    match r {
        Err(Error::TooLarge {
            requested, limit, ..
        }) if requested > limit => {}
        other => panic!("{case}: expected TooLarge, got {other:?}"),
    }
}

#[test]
fn shapes_beyond_any_memory_are_too_large_before_any_allocation_on_every_backend() {
    let shapes: [&[usize]; 5] = [
        &[usize::MAX, 2],
        &[1 << 40, 1024],
        &[100_000_000_000, 100_000_000_000],
        // No elements, but a sub-shape (every dim but the first) whose count overflows.
        &[0, usize::MAX, 2],
        &[1 << 62],
    ];
    for ctx in common::all_backends() {
        let small = Tensor::from_slice(&ctx, &[1.0, -2.0, 3.0, -4.0], &[4]).unwrap();
        for shape in shapes {
            let case = format!("{} {shape:?}", label(&ctx));
            assert_too_large(&format!("{case} zeros"), Tensor::zeros(&ctx, shape));
            assert_too_large(
                &format!("{case} zeros f16"),
                Tensor::zeros_as(&ctx, shape, gpu_activations::DType::F16),
            );
            assert_too_large(
                &format!("{case} from_slice"),
                Tensor::from_slice(&ctx, &[1.0; 4], shape),
            );
            assert_too_large(&format!("{case} reshape"), small.reshape(shape));
        }
        // An op's output larger than anything: x [2^20, 4] · W [2^20, 4]ᵀ is 2^40 floats.
        let x = Tensor::zeros(&ctx, &[1 << 20, 4]).unwrap();
        assert_too_large(
            &format!("{} linear output of 2^40 elements", label(&ctx)),
            x.linear(&x, None),
        );
        // The context is unharmed.
        assert_eq!(
            small.relu().unwrap().to_vec().unwrap(),
            [1.0, 0.0, 3.0, 0.0]
        );
    }
}

/// A deterministic mix of ops on one tensor, returning every result read back.
fn mixed_ops(ctx: &Context, seed: u64, steps: usize) -> Vec<Vec<f32>> {
    let (rows, cols) = (8, 33);
    let x = uniform(seed, rows * cols, -4.0, 4.0);
    let g = uniform(seed + 1, rows * cols, -1.0, 1.0);
    let targets: Vec<i64> = (0..rows as i64)
        .map(|r| (r + seed as i64) % cols as i64)
        .collect();
    let xt = Tensor::from_slice(ctx, &x, &[rows, cols]).unwrap();
    let gt = Tensor::from_slice(ctx, &g, &[rows, cols]).unwrap();
    let mut t = xt.clone();
    let mut out = Vec::new();
    for i in 0..steps {
        let act = Activation::ALL[(i + seed as usize) % Activation::ALL.len()];
        t = match i % 5 {
            0 => t.activation(act).unwrap(),
            1 => t.activation_backward(act, &gt).unwrap(),
            2 => t.softmax().unwrap(),
            3 => t.log_softmax().unwrap().softmax_backward(&gt).unwrap(),
            _ => {
                t.cross_entropy(Targets::Indices(&targets), &CrossEntropyOptions::default())
                    .unwrap()
                    .grad
            }
        };
        // Keep values in range so that the chain stays meaningful.
        t = t.tanh().unwrap();
        if i % 100 == 99 {
            out.push(t.to_vec().unwrap());
        }
    }
    out.push(t.to_vec().unwrap());
    out
}

#[test]
fn contexts_and_tensors_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Context>();
    assert_send_sync::<Tensor>();
}

#[test]
fn eight_threads_on_one_context_get_exactly_the_single_thread_results() {
    for ctx in common::gpus() {
        let expected: Vec<Vec<Vec<f32>>> = (0..8).map(|s| mixed_ops(ctx, s, 1000)).collect();
        let ctx = Arc::new(ctx.clone());
        let handles: Vec<_> = (0..8u64)
            .map(|s| {
                let ctx = Arc::clone(&ctx);
                std::thread::spawn(move || mixed_ops(&ctx, s, 1000))
            })
            .collect();
        for (s, h) in handles.into_iter().enumerate() {
            let got = h.join().expect("a worker thread panicked");
            assert_eq!(got.len(), expected[s].len());
            for (a, b) in got.iter().zip(&expected[s]) {
                let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same,
                    "{} thread {s}: results differ from a single thread's",
                    label(&ctx)
                );
            }
        }
    }
}

/// Ops per step of the memory test, and steps: the first step is the warm-up (pipelines,
/// pool, the driver's caches), growth is measured over the other four.
const MEMORY_STEP_OPS: usize = 100_000;
const MEMORY_STEPS: usize = 5;

/// Runs `MEMORY_STEPS` × 100,000 ops on every GPU and prints a `RESIDENT name pool rss…` line
/// with the resident bytes after each step. Resident memory is process-wide, so the parent
/// test below runs this in a child process of its own, away from the other tests' large
/// tensors.
#[test]
#[ignore = "the child of a_loop_of_ops_holds_memory_flat_after_warm_up"]
fn memory_child() {
    for ctx in common::gpus() {
        let x = Tensor::from_slice(ctx, &uniform(9, 4096, -3.0, 3.0), &[64, 64]).unwrap();
        let mut t = x.clone();
        let mut resident = Vec::new();
        for step in 0..MEMORY_STEPS {
            for i in 0..MEMORY_STEP_OPS {
                t = match (step * MEMORY_STEP_OPS + i) % 3 {
                    0 => t.tanh().unwrap(),
                    1 => t.softmax().unwrap(),
                    _ => t.gelu().unwrap(),
                };
            }
            assert!(t.to_vec().unwrap().iter().all(|v| v.is_finite()));
            resident.push(resident_bytes().to_string());
        }
        println!(
            "RESIDENT {} {} {}",
            label(ctx),
            ctx.pooled_bytes(),
            resident.join(" ")
        );
    }
}

#[test]
fn a_loop_of_ops_holds_memory_flat_after_warm_up() {
    common::gpus();
    // Debug builds of wgpu turn on the Vulkan validation layer where it is installed; it keeps
    // a record of every command buffer and grows by about 9 MiB per 100,000 ops on lavapipe
    // (the crate and the driver stay flat): the child runs without it, as release builds do.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "memory_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WGPU_VALIDATION", "0")
        .output()
        .expect("the test binary runs itself");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The harness may print "test memory_child ... " on the same line as the first record.
    let records: Vec<&str> = text
        .split("RESIDENT ")
        .skip(1)
        .map(|r| r.lines().next().unwrap_or(""))
        .collect();
    assert_eq!(
        records.len(),
        common::gpus().len(),
        "one record per adapter: {text}"
    );
    for record in records {
        let f: Vec<&str> = record.split_whitespace().collect();
        let name = f[0];
        let pool = f[1].parse::<u64>().unwrap();
        let resident: Vec<u64> = f[2..].iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(resident.len(), MEMORY_STEPS, "{record}");
        let mib = |b: u64| format!("{:.1}", b as f64 / 1048576.0);
        report(&format!(
            "[reliability] {name}: resident MiB after each 100,000 ops: {}; pool {} MiB idle",
            resident
                .iter()
                .map(|&b| mib(b))
                .collect::<Vec<_>>()
                .join(", "),
            mib(pool)
        ));
        // After the warm-up step, 400,000 more ops may not add 8 MiB (20 bytes an op): a
        // leak of anything per op or per batch shows, a busy machine's noise does not.
        let (warm, last) = (resident[0], resident[MEMORY_STEPS - 1]);
        assert!(
            last < warm + (8 << 20),
            "{name}: resident memory grew from {warm} to {last} bytes after the warm-up"
        );
    }
}

#[test]
fn dropping_tensors_while_their_work_is_queued_is_safe() {
    for ctx in common::gpus() {
        let data = uniform(10, 10_000, -5.0, 5.0);
        let want: Vec<f64> = data
            .iter()
            .map(|&v| {
                Activation::Sigmoid
                    .reference(f64::from(Activation::Gelu.reference(f64::from(v)) as f32))
            })
            .collect();
        let mut results = Vec::new();
        for _ in 0..50 {
            let x = Tensor::from_slice(ctx, &data, &[10_000]).unwrap();
            let y = x.gelu().unwrap();
            drop(x); // the input is gone while gelu is still only recorded
            let z = y.sigmoid().unwrap();
            drop(y);
            // New uploads reuse the pooled buffers of the dropped tensors.
            let _noise = Tensor::from_slice(ctx, &vec![123.0; 10_000], &[10_000]).unwrap();
            results.push(z);
        }
        for z in results {
            assert_all_close(
                &format!("{} dropped inputs", label(ctx)),
                &z.to_vec().unwrap(),
                &want,
                &[&data],
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn staged_uploads_reuse_their_buffers_and_survive_a_trim() {
    // Uploads of 1 MiB and more go through two staging buffers the context keeps: five
    // different 3 MiB tensors uploaded back to back, with work queued between them, reuse each
    // buffer while the copy out of it may still be in flight.
    for ctx in common::gpus() {
        let n = 3 << 18;
        let inputs: Vec<Vec<f32>> = (0..5).map(|k| uniform(40 + k, n, -4.0, 4.0)).collect();
        let mut outputs = Vec::new();
        for x in &inputs {
            let t = Tensor::from_slice(ctx, x, &[n]).unwrap();
            outputs.push(t.tanh().unwrap());
        }
        for (x, y) in inputs.iter().zip(&outputs) {
            let want: Vec<f64> = x
                .iter()
                .map(|&v| Activation::Tanh.reference(f64::from(v)))
                .collect();
            let case = format!("{} staged upload", label(ctx));
            assert_all_close(&case, &y.to_vec().unwrap(), &want, &[x], 1e-6, 1e-5);
        }
        drop(outputs);
        assert!(ctx.pooled_bytes() > 0, "{}: nothing pooled", label(ctx));
        ctx.trim_pool();
        assert_eq!(ctx.pooled_bytes(), 0, "{}: trim left bytes", label(ctx));
        let again = Tensor::from_slice(ctx, &inputs[0], &[n]).unwrap();
        assert_eq!(
            again.to_vec().unwrap(),
            inputs[0],
            "{}: upload after trim",
            label(ctx)
        );
    }
}

#[test]
fn a_lost_device_is_a_typed_error_and_a_new_context_works() {
    for backend in common::gpus().iter().map(Context::backend) {
        let options = ContextOptions {
            backend: Some(backend),
            allow_cpu_fallback: false,
            ..Default::default()
        };
        let ctx = Context::with_options(options.clone()).unwrap();
        let x = Tensor::from_slice(&ctx, &[1.0, 2.0], &[2]).unwrap();
        ctx.destroy_device().unwrap();
        // The callback may arrive on the next poll; every path must answer with an error.
        let result = x.relu().and_then(|y| y.to_vec());
        match result {
            Err(Error::DeviceLost(_)) => {}
            other => panic!("{backend}: expected DeviceLost, got {other:?}"),
        }
        assert!(matches!(
            Tensor::from_slice(&ctx, &[1.0], &[1]),
            Err(Error::DeviceLost(_))
        ));
        let fresh = Context::with_options(options).unwrap();
        let y = Tensor::from_slice(&fresh, &[-1.0, 2.0], &[2])
            .unwrap()
            .relu()
            .unwrap();
        assert_eq!(
            y.to_vec().unwrap(),
            vec![0.0, 2.0],
            "{backend}: a new context works"
        );
    }
}

#[test]
fn gpu_validation_errors_become_typed_errors() {
    for backend in common::gpus().iter().map(Context::backend) {
        let options = ContextOptions {
            backend: Some(backend),
            allow_cpu_fallback: false,
            ..Default::default()
        };
        let ctx = Context::with_options(options).unwrap();
        let (device, _) = ctx.wgpu().unwrap();
        // Misuse of the shared device outside any error scope: MAP_READ with STORAGE is invalid.
        let _bad = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("invalid on purpose"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let x = Tensor::from_slice(&ctx, &[1.0], &[1]);
        match x.and_then(|x| x.relu()) {
            Err(Error::Gpu { message, .. }) => assert!(!message.is_empty()),
            other => panic!("{backend}: expected a GPU error, got {other:?}"),
        }
        // Reported once; the context goes on working.
        let y = Tensor::from_slice(&ctx, &[-1.0], &[1])
            .unwrap()
            .relu()
            .unwrap();
        assert_eq!(y.to_vec().unwrap(), vec![0.0]);
    }
}

#[test]
fn read_back_waits_are_bounded() {
    for backend in common::gpus().iter().map(Context::backend) {
        let options = ContextOptions {
            backend: Some(backend),
            allow_cpu_fallback: false,
            readback_timeout: Duration::from_nanos(1),
            ..Default::default()
        };
        let ctx = Context::with_options(options).unwrap();
        let n = 1 << 22;
        let x = Tensor::from_slice(&ctx, &uniform(11, n, -3.0, 3.0), &[n]).unwrap();
        let mut y = x.clone();
        for _ in 0..40 {
            y = y.gelu().unwrap();
        }
        let started = std::time::Instant::now();
        match y.to_vec() {
            Err(Error::Timeout { .. }) => {}
            // Some backends finish a poll before checking the clock; then the data is right.
            Ok(v) => assert_eq!(v.len(), n),
            Err(other) => panic!("{backend}: expected Timeout, got {other}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{backend}: the wait was not bounded"
        );
    }
}

/// The 300,000,000-element run (1.2 GB per tensor). Ignored by default; run it with
/// `cargo test --release --test reliability -- --ignored --nocapture`.
#[test]
#[ignore = "needs ~12 GB of memory and minutes; run explicitly (see the README)"]
fn three_hundred_million_elements() {
    let n = 300_000_000;
    for ctx in common::gpus() {
        let started = std::time::Instant::now();
        let x = uniform(12, n, -10.0, 10.0);
        let xt = Tensor::from_slice(ctx, &x, &[n]).unwrap();
        let mut out = vec![0.0f32; n];
        // Elementwise forward and backward.
        xt.sigmoid().unwrap().read_into(&mut out).unwrap();
        let want: Vec<f64> = x
            .iter()
            .map(|&v| Activation::Sigmoid.reference(f64::from(v)))
            .collect();
        assert_all_close("300M sigmoid", &out, &want, &[&x], 1e-6, 1e-5);
        drop(want);
        xt.activation_backward(Activation::Gelu, &xt)
            .unwrap()
            .read_into(&mut out)
            .unwrap();
        let want: Vec<f64> = x
            .iter()
            .map(|&v| Activation::Gelu.reference_backward(f64::from(v), f64::from(v)))
            .collect();
        assert_all_close("300M gelu backward", &out, &want, &[&x], 1e-6, 1e-5);
        drop(want);
        // Softmax over many rows, and over one row of 300M elements (a multi-pass reduction).
        for cols in [1000, n] {
            let rows = n / cols;
            xt.reshape(&[rows, cols])
                .unwrap()
                .softmax()
                .unwrap()
                .read_into(&mut out)
                .unwrap();
            let want = softmax_expected(&x, cols);
            assert_all_close(
                &format!("300M softmax [{rows}, {cols}]"),
                &out,
                &want,
                &[&x],
                1e-6,
                1e-5,
            );
        }
        // Fused losses.
        let (rows, cols) = (n / 1000, 1000);
        let t: Vec<i64> = (0..rows as i64).map(|r| r % cols as i64).collect();
        let ce = xt
            .reshape(&[rows, cols])
            .unwrap()
            .cross_entropy(Targets::Indices(&t), &CrossEntropyOptions::default())
            .unwrap();
        let loss = ce.loss.to_vec().unwrap()[0];
        assert!(loss.is_finite());
        let y = Tensor::from_slice(ctx, &uniform(13, n, 0.0, 1.0), &[n]).unwrap();
        let bce = xt.bce_with_logits(&y, &BceOptions::default()).unwrap();
        assert!(bce.loss.to_vec().unwrap()[0].is_finite());
        report(&format!(
            "[reliability] {}: 300,000,000 elements through sigmoid, gelu backward, softmax (rows of 1000 and one row), cross-entropy and BCE in {:.0} s; peak resident {:.2} GiB",
            label(ctx),
            started.elapsed().as_secs_f64(),
            peak_resident_bytes() as f64 / (1u64 << 30) as f64
        ));
    }
}

/// Contexts whose buffers are capped at 1 MiB and at 64 KiB, so that every op meets tensors
/// split over several buffers (as tensors beyond an adapter's `max_buffer_size` are), and the
/// loss reductions meet inputs longer than one binding.
fn small_buffer_contexts() -> Vec<(Context, u64)> {
    let mut all = Vec::new();
    for c in common::gpus() {
        for cap in [1u64 << 20, 64 << 10] {
            let options = ContextOptions {
                max_buffer_bytes: Some(cap),
                ..common::same_adapter(c)
            };
            all.push((Context::with_options(options).unwrap(), cap));
        }
    }
    all
}

#[test]
fn half_tensors_larger_than_one_buffer_are_split_over_several() {
    // Half parts and launch chunks start at 256-byte boundaries of both storage types: an
    // elementwise op, a conversion and the row kernels over split f16 and bf16 tensors.
    for (ctx, cap) in small_buffer_contexts() {
        for dtype in common::HALVES {
            let tag = format!("{} ({} KiB buffers) {dtype}", label(&ctx), cap >> 10);
            let n = 1_000_003;
            let x: Vec<f32> = uniform(30, n, -6.0, 6.0)
                .iter()
                .map(|&v| dtype.round(v))
                .collect();
            let xt = Tensor::from_slice_as(&ctx, &x, &[n], dtype).unwrap();
            assert_eq!(xt.to_vec().unwrap(), x, "{tag}: round trip");
            let wide = xt.to_dtype(gpu_activations::DType::F32).unwrap();
            assert_eq!(wide.to_vec().unwrap(), x, "{tag}: widened on the device");
            let want: Vec<f64> = x
                .iter()
                .map(|&v| Activation::Gelu.reference(v.into()))
                .collect();
            let got = xt.gelu().unwrap().to_vec().unwrap();
            common::assert_stored_close(&format!("{tag} gelu"), dtype, &got, &want, &[&x]);

            let (rows, cols) = (1000, 1000);
            let x: Vec<f32> = uniform(31, rows * cols, -8.0, 8.0)
                .iter()
                .map(|&v| dtype.round(v))
                .collect();
            let xt = Tensor::from_slice_as(&ctx, &x, &[rows, cols], dtype).unwrap();
            let y = xt.softmax().unwrap().to_vec().unwrap();
            common::assert_stored_close(
                &format!("{tag} softmax"),
                dtype,
                &y,
                &softmax_expected(&x, cols),
                &[&x],
            );
        }
    }
}

#[test]
fn tensors_larger_than_one_buffer_are_split_over_several() {
    for (ctx, cap) in small_buffer_contexts() {
        let tag = format!("{} ({} KiB buffers)", label(&ctx), cap >> 10);
        // Elementwise over 1,000,003 elements: four buffers and a tail.
        let n = 1_000_003;
        let x = uniform(20, n, -6.0, 6.0);
        let g = uniform(21, n, -1.0, 1.0);
        let xt = Tensor::from_slice(&ctx, &x, &[n]).unwrap();
        assert_eq!(xt.to_vec().unwrap(), x, "{tag}: round trip");
        let gt = Tensor::from_slice(&ctx, &g, &[n]).unwrap();
        for act in [Activation::Gelu, Activation::Relu] {
            let want: Vec<f64> = x.iter().map(|&v| act.reference(f64::from(v))).collect();
            assert_all_close(
                &format!("{tag} {act}"),
                &xt.activation(act).unwrap().to_vec().unwrap(),
                &want,
                &[&x],
                1e-6,
                1e-5,
            );
            let want: Vec<f64> = x
                .iter()
                .zip(&g)
                .map(|(&v, &d)| act.reference_backward(f64::from(v), f64::from(d)))
                .collect();
            assert_all_close(
                &format!("{tag} {act} backward"),
                &xt.activation_backward(act, &gt).unwrap().to_vec().unwrap(),
                &want,
                &[&x, &g],
                1e-6,
                1e-5,
            );
        }
        // Row ops: rows stay whole in every buffer.
        let (rows, cols) = (1000, 1000);
        let x = uniform(22, rows * cols, -8.0, 8.0);
        let xt = Tensor::from_slice(&ctx, &x, &[rows, cols]).unwrap();
        let y = xt.softmax().unwrap();
        assert_all_close(
            &format!("{tag} softmax"),
            &y.to_vec().unwrap(),
            &softmax_expected(&x, cols),
            &[&x],
            1e-6,
            1e-5,
        );
        let gt =
            Tensor::from_slice(&ctx, &uniform(23, rows * cols, -1.0, 1.0), &[rows, cols]).unwrap();
        let dx = y.softmax_backward(&gt).unwrap().to_vec().unwrap();
        assert!(dx.iter().all(|v| v.is_finite()), "{tag}: softmax backward");
        let t: Vec<i64> = (0..rows as i64).map(|r| r * 7 % cols as i64).collect();
        let ce = xt
            .cross_entropy(Targets::Indices(&t), &CrossEntropyOptions::default())
            .unwrap();
        let want = gpu_activations::cpu::loss::cross_entropy(
            &x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
            cols,
            gpu_activations::cpu::loss::CrossEntropyTargets::Indices(&t),
            &CrossEntropyOptions {
                reduction: gpu_activations::Reduction::Mean,
                ..Default::default()
            },
        );
        assert_all_close(
            &format!("{tag} cross-entropy grad"),
            &ce.grad.to_vec().unwrap(),
            &want.grad,
            &[&x],
            1e-6,
            1e-5,
        );
        let loss = ce.loss.to_vec().unwrap()[0];
        assert!(
            (f64::from(loss) - want.loss[0]).abs() <= 1e-5 * want.loss[0],
            "{tag}: {loss}"
        );
        let probs = Tensor::from_slice(&ctx, &vec![1e-3; rows * cols], &[rows, cols]).unwrap();
        let pce = xt
            .cross_entropy(
                Targets::Probabilities(&probs),
                &CrossEntropyOptions::default(),
            )
            .unwrap();
        assert!(
            pce.loss.to_vec().unwrap()[0].is_finite(),
            "{tag}: probability targets"
        );
        let o = BceOptions {
            reduction: gpu_activations::Reduction::None,
            weight: Some(vec![0.5; cols]),
            ..Default::default()
        };
        let bce = xt.bce_with_logits(&probs, &o).unwrap();
        let want = gpu_activations::cpu::loss::bce_with_logits(
            &x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
            &vec![f64::from(1e-3f32); rows * cols],
            &BceOptions {
                reduction: gpu_activations::Reduction::None,
                weight: Some(vec![0.5; cols]),
                ..Default::default()
            },
        );
        assert_all_close(
            &format!("{tag} bce loss"),
            &bce.loss.to_vec().unwrap(),
            &want.loss,
            &[&x],
            1e-6,
            1e-5,
        );
        let bce = xt.bce_with_logits(&probs, &BceOptions::default()).unwrap();
        let want = gpu_activations::cpu::loss::bce_with_logits(
            &x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
            &vec![f64::from(1e-3f32); rows * cols],
            &BceOptions {
                reduction: gpu_activations::Reduction::Mean,
                ..Default::default()
            },
        );
        let loss = bce.loss.to_vec().unwrap()[0];
        assert!(
            (f64::from(loss) - want.loss[0]).abs() <= 1e-5 * want.loss[0].abs(),
            "{tag}: bce mean {loss} vs {}",
            want.loss[0]
        );
        // A row that cannot stay whole in a buffer is a typed error, before any work.
        let wide = Tensor::zeros(&ctx, &[2, 300_000]).unwrap();
        assert!(
            matches!(wide.softmax(), Err(Error::TooLarge { .. })),
            "{tag}: wide rows"
        );
    }
}

/// A tensor larger than the adapter's own `max_buffer_size` (2 GiB on lavapipe): 600,000,000
/// elements, 2.4 GB, split over two buffers. Ignored by default; run it with
/// `cargo test --release --test reliability -- --ignored --nocapture beyond_max_buffer`.
#[test]
#[ignore = "needs ~10 GB of memory; run explicitly (see the README)"]
fn beyond_max_buffer_size() {
    let (rows, cols) = (600_000, 1000);
    let n = rows * cols;
    for ctx in common::gpus() {
        let max = ctx.limits().unwrap().max_buffer_size;
        assert!(
            (n as u64) * 4 > max,
            "{}: the tensor must exceed one buffer",
            label(ctx)
        );
        let started = std::time::Instant::now();
        let x: Vec<f32> = (0..n)
            .map(|i| ((i % 1999) as f32 - 999.0) / 100.0)
            .collect();
        let xt = Tensor::from_slice(ctx, &x, &[rows, cols]).unwrap();
        let mut out = vec![0.0f32; n];
        xt.relu().unwrap().read_into(&mut out).unwrap();
        assert!(
            out.iter().zip(&x).all(|(&y, &v)| y == v.max(0.0)),
            "{}: relu",
            label(ctx)
        );
        xt.softmax().unwrap().read_into(&mut out).unwrap();
        // Every 1000th row against the reference.
        for r in (0..rows).step_by(1000) {
            let row = &x[r * cols..(r + 1) * cols];
            let want = softmax_expected(row, cols);
            assert_all_close(
                &format!("{} row {r}", label(ctx)),
                &out[r * cols..(r + 1) * cols],
                &want,
                &[row],
                1e-6,
                1e-5,
            );
        }
        report(&format!(
            "[reliability] {}: 600,000,000 elements (2.4 GB > max_buffer_size {max}) through relu and softmax in {:.0} s; peak resident {:.2} GiB",
            label(ctx),
            started.elapsed().as_secs_f64(),
            peak_resident_bytes() as f64 / (1u64 << 30) as f64
        ));
    }
}

/// Opens the best context, marks stderr, then opens more contexts, and prints their backend.
#[test]
#[ignore = "the child of later_contexts_print_nothing_on_a_headless_machine"]
fn headless_child() {
    let first = Context::new().unwrap();
    eprintln!("FIRST CONTEXT OPEN");
    let again = Context::new().unwrap();
    let options = ContextOptions {
        backend: Some(first.backend()),
        ..Default::default()
    };
    let chosen = Context::with_options(options).unwrap();
    let listed = Context::adapters();
    println!(
        "BACKEND {} {} {} {}",
        first.backend(),
        again.backend(),
        chosen.backend(),
        listed.len()
    );
}

/// Runs `headless_child` with `XDG_RUNTIME_DIR` unset (and `extra` set): (stdout, stderr).
fn headless_run(extra: &[(&str, &str)]) -> (String, String) {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "headless_child", "--ignored", "--nocapture"])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove(gpu_activations::BACKEND_ENV)
        .env_remove("WGPU_BACKEND");
    for (k, v) in extra {
        command.env(k, v);
    }
    let out = command.output().expect("the test binary runs itself");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "child failed: {stdout}");
    (stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn later_contexts_print_nothing_on_a_headless_machine() {
    let Some(vulkan) = common::gpus()
        .iter()
        .find(|c| c.backend() == gpu_activations::Backend::Vulkan)
    else {
        report("[reliability] no Vulkan adapter: the headless stderr check is skipped");
        return;
    };
    // On a machine without a display, Mesa's Vulkan device-select layer (an implicit layer)
    // tries to reach a Wayland compositor whenever Vulkan adapters are enumerated, and
    // libwayland complains on stderr that XDG_RUNTIME_DIR is not set. The crate enumerates
    // once per process: the first context may bring that line, later ones bring nothing.
    let (stdout, stderr) = headless_run(&[]);
    assert!(
        stdout.contains("BACKEND vulkan vulkan vulkan"),
        "{}: the best adapter should be Vulkan here: {stdout}",
        label(vulkan)
    );
    let after_first = stderr.split("FIRST CONTEXT OPEN\n").nth(1);
    assert_eq!(
        after_first,
        Some(""),
        "contexts after the first wrote to stderr: {stderr}"
    );
    // With Mesa's layer off, opening contexts (and listing the adapters, GL's included)
    // writes nothing at all.
    let (_, stderr) = headless_run(&[("NODEVICE_SELECT", "1")]);
    assert_eq!(stderr, "FIRST CONTEXT OPEN\n", "a context wrote to stderr");
}
