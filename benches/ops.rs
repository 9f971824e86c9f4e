//! Criterion benchmarks of every op family at the shapes of the performance targets, the copy
//! ceiling they are measured against, a chain of small ops against a raw wgpu loop, and an
//! offload (upload, op, read back) against the transfers alone.
//!
//! Each sample of an op's iterations alternates with as many runs of the copy kernel over as
//! many elements; after each benchmark a line gives its GB/s and the fraction of the copy's
//! GB/s measured in those same alternations. Run with `cargo bench` (`GPU_ACTIVATIONS_BACKEND`
//! picks the adapter).

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gpu_activations::{
    Activation, BceOptions, Context, CrossEntropyOptions, DType, Targets, Tensor,
};
use wgpu::util::DeviceExt;

const ELEMENTWISE: usize = 16_777_216;
const ROW_SHAPES: [(usize, usize); 4] = [(4096, 1024), (65536, 64), (64, 65536), (16, 1_048_576)];
const LOSS_SHAPES: [(usize, usize); 2] = [(4096, 1000), (512, 32000)];

fn context() -> Context {
    let ctx = Context::new().expect("a context");
    eprintln!("benchmarking on {}", ctx.adapter_info());
    ctx
}

fn data(n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i.wrapping_mul(2_654_435_761) % 1_000_003) as f32 / 1_000_003.0 - 0.5) * scale)
        .collect()
}

/// Times `op` in alternation with the copy kernel over `n` elements, for criterion, and prints
/// the op's GB/s (`bytes` per run) and its fraction of the copy's GB/s.
fn bench_against_copy(
    c: &mut Criterion,
    group: &str,
    id: String,
    ctx: &Context,
    n: usize,
    bytes: u64,
    op: &dyn Fn(),
) {
    let src = Tensor::zeros(ctx, &[n]).expect("copy source");
    let dst = Tensor::zeros(ctx, &[n]).expect("copy target");
    let mut op_time = Duration::ZERO;
    let mut copy_time = Duration::ZERO;
    let mut runs = 0u64;
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(bytes));
    g.bench_function(BenchmarkId::from_parameter(&id), |b| {
        // A sample's iterations run back to back and are waited for once (so that submitting
        // and waiting do not hide a fast device's kernels), then as many copies the same way.
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                op();
            }
            ctx.synchronize().expect("synchronize");
            let total = t.elapsed();
            op_time += total;
            runs += iters;
            let t = Instant::now();
            for _ in 0..iters {
                src.copy_into(&dst).expect("copy");
            }
            ctx.synchronize().expect("synchronize");
            copy_time += t.elapsed();
            total
        })
    });
    g.finish();
    if op_time.is_zero() || copy_time.is_zero() {
        return; // filtered out on the command line
    }
    // Both totals cover the same runs, so their rates compare directly.
    let op_gbs = (bytes * runs) as f64 / op_time.as_secs_f64() / 1e9;
    let copy_gbs = (8 * n as u64 * runs) as f64 / copy_time.as_secs_f64() / 1e9;
    println!(
        "{group}/{id}: {op_gbs:.2} GB/s, copy {copy_gbs:.2} GB/s: {:.0} % of the copy ceiling",
        100.0 * op_gbs / copy_gbs
    );
}

fn copy_ceiling(c: &mut Criterion) {
    let ctx = context();
    let x = Tensor::from_slice(&ctx, &data(ELEMENTWISE, 8.0), &[ELEMENTWISE]).expect("upload");
    let y = Tensor::zeros(&ctx, &[ELEMENTWISE]).expect("output");
    let mut g = c.benchmark_group("copy");
    g.sample_size(10)
        .throughput(Throughput::Bytes(8 * ELEMENTWISE as u64));
    g.bench_function("vec4 copy kernel 16M", |b| {
        b.iter(|| {
            x.copy_into(&y).expect("copy");
            ctx.synchronize().expect("synchronize");
        })
    });
    g.finish();
}

fn activations(c: &mut Criterion) {
    let ctx = context();
    let n = ELEMENTWISE;
    let x = Tensor::from_slice(&ctx, &data(n, 16.0), &[n]).expect("upload");
    let g = Tensor::from_slice(&ctx, &data(n, 2.0), &[n]).expect("upload");
    let out = Tensor::zeros(&ctx, &[n]).expect("output");
    for act in Activation::ALL {
        let fwd = || x.activation_into(act, &out).expect("forward");
        bench_against_copy(
            c,
            "activation",
            act.name().to_string(),
            &ctx,
            n,
            8 * n as u64,
            &fwd,
        );
        let bwd = || x.activation_backward_into(act, &g, &out).expect("backward");
        let id = format!("{}_backward", act.name());
        bench_against_copy(c, "activation", id, &ctx, n, 12 * n as u64, &bwd);
    }
}

fn softmax(c: &mut Criterion) {
    let ctx = context();
    for (rows, cols) in ROW_SHAPES {
        let n = rows * cols;
        let x = Tensor::from_slice(&ctx, &data(n, 16.0), &[rows, cols]).expect("upload");
        let g = Tensor::from_slice(&ctx, &data(n, 2.0), &[rows, cols]).expect("upload");
        let out = Tensor::zeros(&ctx, &[rows, cols]).expect("output");
        let y = x.softmax().expect("softmax");
        let ly = x.log_softmax().expect("log_softmax");
        let shape = format!("{rows}x{cols}");
        let b8 = 8 * n as u64;
        let b12 = 12 * n as u64;
        bench_against_copy(c, "softmax", shape.clone(), &ctx, n, b8, &|| {
            x.softmax_into(&out).expect("softmax")
        });
        bench_against_copy(c, "log_softmax", shape.clone(), &ctx, n, b8, &|| {
            x.log_softmax_into(&out).expect("log_softmax")
        });
        bench_against_copy(c, "softmax_backward", shape.clone(), &ctx, n, b12, &|| {
            y.softmax_backward_into(&g, &out).expect("backward")
        });
        bench_against_copy(c, "log_softmax_backward", shape, &ctx, n, b12, &|| {
            ly.log_softmax_backward_into(&g, &out).expect("backward")
        });
    }
}

fn losses(c: &mut Criterion) {
    let ctx = context();
    for (rows, cols) in LOSS_SHAPES {
        let n = rows * cols;
        let z = Tensor::from_slice(&ctx, &data(n, 16.0), &[rows, cols]).expect("upload");
        let t: Vec<i64> = (0..rows).map(|r| (r * 7919 % cols) as i64).collect();
        let bytes = (8 * n + 8 * rows) as u64;
        bench_against_copy(
            c,
            "cross_entropy",
            format!("{rows}x{cols}"),
            &ctx,
            n,
            bytes,
            &|| {
                z.cross_entropy(Targets::Indices(&t), &CrossEntropyOptions::default())
                    .expect("cross-entropy");
            },
        );
    }
    let n = ELEMENTWISE;
    let z = Tensor::from_slice(&ctx, &data(n, 16.0), &[n]).expect("upload");
    let y: Vec<f32> = data(n, 1.0).iter().map(|v| v.abs()).collect();
    let y = Tensor::from_slice(&ctx, &y, &[n]).expect("upload");
    bench_against_copy(
        c,
        "bce_with_logits",
        "16M".into(),
        &ctx,
        n,
        12 * n as u64,
        &|| {
            z.bce_with_logits(&y, &BceOptions::default()).expect("bce");
        },
    );
}

/// 1,000 relus on a [64, 10] tensor through the library, against a raw wgpu loop that records
/// the same 1,000 dispatches (same shader, bind groups made up front) into one encoder.
fn small_ops(c: &mut Criterion) {
    let ctx = context();
    let Some((device, queue)) = ctx.wgpu() else {
        return;
    };
    let x = Tensor::from_slice(&ctx, &data(640, 4.0), &[64, 10]).expect("upload");
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(
            gpu_activations::wgsl::module("activation", DType::F32)
                .expect("activation module")
                .source()
                .to_owned()
                .into(),
        ),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("forward"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &[("OP", 2.0), ("WG", 256.0)],
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    let buffer = |contents: &[u8], usage| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents,
            usage,
        })
    };
    let a = buffer(
        bytemuck::cast_slice(&data(640, 4.0)),
        wgpu::BufferUsages::STORAGE,
    );
    let b = buffer(&[0; 2560], wgpu::BufferUsages::STORAGE);
    let params = buffer(
        bytemuck::cast_slice(&[160u32, 0, 0, 0]),
        wgpu::BufferUsages::UNIFORM,
    );
    let layout = pipeline.get_bind_group_layout(0);
    let bind = |src: &wgpu::Buffer, dst: &wgpu::Buffer| {
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: params.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: src.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: dst.as_entire_binding(),
                },
            ],
        })
    };
    let groups = [bind(&a, &b), bind(&b, &a)];
    let mut g = c.benchmark_group("small_ops_1000x[64,10]");
    g.sample_size(10);
    g.bench_function("library chain", |bench| {
        bench.iter(|| {
            let mut y = x.clone();
            for _ in 0..1000 {
                y = y.relu().expect("relu");
            }
            ctx.synchronize().expect("synchronize");
        })
    });
    g.bench_function("raw wgpu loop", |bench| {
        bench.iter(|| {
            let mut encoder = device.create_command_encoder(&Default::default());
            for i in 0..1000 {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &groups[i % 2], &[]);
                pass.dispatch_workgroups(1, 1, 1);
            }
            queue.submit([encoder.finish()]);
            let _ = device.poll(wgpu::PollType::wait_indefinitely());
        })
    });
    g.finish();
}

/// Upload 64 MiB, one op, read back; against the upload and read-back alone.
fn offload(c: &mut Criterion) {
    let ctx = context();
    let n = ELEMENTWISE;
    let host = data(n, 8.0);
    let mut back = vec![0.0f32; n];
    let mut g = c.benchmark_group("offload_64MiB");
    g.sample_size(10)
        .throughput(Throughput::Bytes(8 * n as u64));
    g.bench_function("upload + read back", |b| {
        b.iter(|| {
            let x = Tensor::from_slice(&ctx, &host, &[n]).expect("upload");
            x.read_into(&mut back).expect("read back");
        })
    });
    g.bench_function("upload + sigmoid + read back", |b| {
        b.iter(|| {
            let x = Tensor::from_slice(&ctx, &host, &[n]).expect("upload");
            x.sigmoid()
                .expect("sigmoid")
                .read_into(&mut back)
                .expect("read back");
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    copy_ceiling,
    activations,
    softmax,
    losses,
    small_ops,
    offload
);
criterion_main!(benches);
