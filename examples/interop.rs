//! gpu-activations inside a wgpu program: the program's own device, its own buffers and its own
//! compute pipelines, with the crate's fused cross-entropy in between and no host round trip.
//!
//! 1. The program's pipeline writes logits into the program's buffer.
//! 2. `Context::from_wgpu` wraps the program's device; `Tensor::from_wgpu_buffer` views the
//!    logits and a gradient buffer of the program's (256 bytes in) without copying.
//! 3. `cross_entropy_into` reads the logits in place and writes `softmax − one_hot` / N into the
//!    program's gradient buffer; `Context::flush` submits it.
//! 4. The program's next pipeline reads that gradient and doubles it into a third buffer.
//!
//! The result is compared with the crate's f64 CPU reference. Run it with
//! `cargo run --release --example interop` (set `WGPU_BACKEND=vulkan|gl` to choose an adapter).

use gpu_activations::cpu::loss::{self as reference, CrossEntropyTargets};
use gpu_activations::{Context, CrossEntropyOptions, Targets, Tensor, WgpuSetup, accuracy, wgpu};

/// Rows and classes of the program's logits.
pub const ROWS: usize = 64;
pub const CLASSES: usize = 1000;

/// Where the gradient starts in the program's gradient buffer (an aligned offset).
pub const GRAD_OFFSET: u64 = 256;

/// The program's own kernels (nothing of the crate's).
const PROGRAM_WGSL: &str = r#"
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;

fn index(id: vec3<u32>, n: vec3<u32>) -> u32 {
    return id.y * n.x * 64u + id.x;
}

// logits_i = 6·sin(0.37·i) + 3·cos(0.011·i)
@compute @workgroup_size(64)
fn make_logits(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = index(id, n);
    if i < arrayLength(&dst) {
        let v = f32(i);
        dst[i] = 6.0 * sin(0.37 * v) + 3.0 * cos(0.011 * v);
    }
}

// dst_i = 2·src_i
@compute @workgroup_size(64)
fn double(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = index(id, n);
    if i < arrayLength(&dst) {
        dst[i] = 2.0 * src[i];
    }
}
"#;

/// The program: a device, a queue and two pipelines of its own.
pub struct Program {
    device: wgpu::Device,
    queue: wgpu::Queue,
    make_logits: wgpu::ComputePipeline,
    double: wgpu::ComputePipeline,
}

impl Program {
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Program {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("program"),
            source: wgpu::ShaderSource::Wgsl(PROGRAM_WGSL.into()),
        });
        let pipeline = |entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        Program {
            device: device.clone(),
            queue: queue.clone(),
            make_logits: pipeline("make_logits"),
            double: pipeline("double"),
        }
    }

    /// A storage buffer of the program's, which it can also copy from and to.
    pub fn buffer(&self, bytes: u64, label: &str) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Runs `pipeline` over `n` elements with the given bindings, and submits it.
    fn run(&self, pipeline: &wgpu::ComputePipeline, entries: &[wgpu::BindGroupEntry<'_>], n: u64) {
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries,
        });
        let groups = n.div_ceil(64) as u32;
        let (x, y) = (groups.min(65_535), groups.div_ceil(65_535));
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        self.queue.submit([encoder.finish()]);
    }

    /// Writes `n` logits at the start of `dst`.
    pub fn write_logits(&self, dst: &wgpu::Buffer, n: usize) {
        let entries = [wgpu::BindGroupEntry {
            binding: 1,
            resource: range(dst, 0, n),
        }];
        self.run(&self.make_logits, &entries, n as u64);
    }

    /// Writes 2·src (n values from byte `src_offset`) at the start of `dst`.
    pub fn double(&self, src: &wgpu::Buffer, src_offset: u64, dst: &wgpu::Buffer, n: usize) {
        let entries = [
            wgpu::BindGroupEntry {
                binding: 0,
                resource: range(src, src_offset, n),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: range(dst, 0, n),
            },
        ];
        self.run(&self.double, &entries, n as u64);
    }

    /// Reads `n` floats at the start of `buffer` back to the host (the program's own read-back).
    pub fn read(&self, buffer: &wgpu::Buffer, n: usize) -> Vec<f32> {
        let bytes = n as u64 * 4;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("program read-back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        staging.slice(..).map_async(wgpu::MapMode::Read, |r| {
            r.expect("the program's read-back maps");
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .expect("the program's device finishes");
        let view = staging
            .slice(..)
            .get_mapped_range()
            .expect("the mapped range");
        bytemuck::cast_slice(&view).to_vec()
    }
}

fn range(buffer: &wgpu::Buffer, offset: u64, n: usize) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset,
        size: wgpu::BufferSize::new(n as u64 * 4),
    })
}

/// What the pipeline of programs produced.
pub struct Outcome {
    /// The logits as the program's kernel wrote them (read back for the reference).
    pub logits: Vec<f32>,
    /// The class of each row.
    pub labels: Vec<i64>,
    /// The mean cross-entropy.
    pub loss: f32,
    /// The program's doubling of the crate's gradient.
    pub doubled_grad: Vec<f32>,
    /// Whether the crate's kernels used subgroups on this device.
    pub subgroups: bool,
}

/// The program's logits → the crate's fused cross-entropy → the program's next pipeline.
pub fn run(setup: WgpuSetup) -> gpu_activations::Result<Outcome> {
    let n = ROWS * CLASSES;
    let program = Program::new(&setup.device, &setup.queue);
    let ctx = Context::from_wgpu(setup)?;
    let logits = program.buffer(n as u64 * 4, "logits");
    let grad = program.buffer(GRAD_OFFSET + n as u64 * 4, "gradient");
    let doubled = program.buffer(n as u64 * 4, "doubled gradient");

    program.write_logits(&logits, n); // submitted before the crate records anything
    let z = Tensor::from_wgpu_buffer(&ctx, &logits, 0, &[ROWS, CLASSES])?;
    let dz = Tensor::from_wgpu_buffer(&ctx, &grad, GRAD_OFFSET, &[ROWS, CLASSES])?;
    let labels: Vec<i64> = (0..ROWS).map(|r| ((r * 37) % CLASSES) as i64).collect();
    let options = CrossEntropyOptions::default();
    let loss = z.cross_entropy_into(Targets::Indices(&labels), &options, &dz)?;
    ctx.flush()?; // the crate's work is on the queue before the program's next submission
    program.double(&grad, GRAD_OFFSET, &doubled, n);

    Ok(Outcome {
        doubled_grad: program.read(&doubled, n),
        logits: z.to_vec()?,
        labels,
        loss: loss.to_vec()?[0],
        subgroups: ctx.uses_subgroups(),
    })
}

/// The f64 reference's mean loss and doubled gradient for the outcome's logits and labels.
pub fn expected(outcome: &Outcome) -> (f64, Vec<f64>) {
    let z: Vec<f64> = outcome.logits.iter().map(|&v| f64::from(v)).collect();
    let want = reference::cross_entropy(
        &z,
        CLASSES,
        CrossEntropyTargets::Indices(&outcome.labels),
        &CrossEntropyOptions::default(),
    );
    let doubled = want.grad.iter().map(|g| 2.0 * g).collect();
    (want.loss[0], doubled)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The program's own device, made without the crate: the adapter wgpu prefers.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("the program's device"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;
    let info = adapter.get_info();
    println!("the program's device: {} ({:?})", info.name, info.backend);
    let outcome = run(WgpuSetup {
        adapter_info: info,
        device,
        queue,
    })?;
    let (loss, doubled) = expected(&outcome);
    let c = accuracy::compare(
        &outcome.doubled_grad,
        &doubled,
        accuracy::ATOL,
        accuracy::RTOL,
    );
    println!(
        "cross-entropy of the program's [{ROWS}, {CLASSES}] logits: {} (f64 reference {loss:.7}); \
         subgroup kernels: {}",
        outcome.loss, outcome.subgroups
    );
    println!(
        "the program's doubled gradient against the reference: max |error| {:.2e}, {} of {} \
         elements outside 1e-6 + 1e-5·|ref|",
        c.max_abs,
        c.failures,
        doubled.len()
    );
    if !c.passed() {
        return Err("the gradient is outside the tolerance".into());
    }
    Ok(())
}
