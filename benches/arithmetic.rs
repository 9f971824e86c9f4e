//! Where an elementwise activation's time goes: its device-memory traffic (the copy kernel)
//! and its arithmetic, measured apart.
//!
//! For each op this times, alternating in one process on one adapter: the copy kernel, the
//! op's real kernel, and two register-only kernels appended to the op's own shader that walk
//! the same grid and run `forward_checked` (or `backward_checked`) on values made from the
//! index, summing the results instead of storing them, and the same walk without the
//! function. Their difference is the arithmetic alone; if the op costs the copy plus its
//! arithmetic, the fraction of the copy it can reach is `copy / (copy + arithmetic)` (1.5
//! copies for a backward, which moves three streams). The ms columns are medians over the runs,
//! the fractions medians of each run's ratios, so the one need not follow from the other.
//!
//! Each timing is of back-to-back launches submitted together (enough of them to take 5 ms),
//! so that submitting and waiting do not hide a fast adapter's kernels.
//!
//! Run with `cargo bench --bench arithmetic` (`GPU_ACTIVATIONS_BACKEND` picks the adapter;
//! `ARITHMETIC_OPS=sigmoid,gelu` narrows the ops, `ARITHMETIC_RUNS` sets the pairs, 11).
//! To weigh a shader edit on a noisy machine, point `ARITHMETIC_BASELINE` at a folder holding
//! the other `activation.wgsl` and `math.wgsl`: both versions' arithmetic is then timed in
//! alternation and the last column gives the median ratio, this tree's over the baseline's
//! (a ratio of two differences: steady for the heavier ops, noisy for relu-like ones).

use std::time::Instant;

use gpu_activations::wgsl;
use gpu_activations::{Activation, Context, DType};
use wgpu::util::DeviceExt;

const ELEMENTS: usize = 16_777_216;
const WG: u32 = 256;
const VEC4S_PER_INVOCATION: u32 = 4;
/// The least time one timing takes; launches are repeated to reach it.
const MIN_TIMING_SECONDS: f64 = 0.005;

/// A register-only twin of the elementwise entry points: inputs spread over [−8, 8) from the
/// index, results summed and stored only under a condition the compiler cannot decide. PROBE
/// picks what is summed: the forward, the forward's identity (its input), the backward (with
/// g = v/2 + 1), or the backward's identity (its g). `COPY_PARAMS` becomes the shader's own
/// parameter load where it has one.
const PROBES: &str = r#"
override PROBE: u32 = 0u;

fn probe_input(i: u32) -> V {
    return V(f32(i & 0xffffu)) * (16.0 / 65536.0) + V(-8.0, -7.75, -7.5, -7.25);
}

fn probe_value(v: V) -> V {
    let g = v * 0.5 + 1.0;
    switch PROBE {
        case 0u: {
            return forward_checked(v);
        }
        case 1u: {
            return v;
        }
        case 2u: {
            return backward_checked(v, g);
        }
        default: {
            return g;
        }
    }
}

@compute @workgroup_size(WG)
fn probe(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    COPY_PARAMS
    var acc = splat(0.0);
    let first = first_index(wid, nwg, lid);
    for (var i = first; i < p.len; i += stride(nwg)) {
        acc += probe_value(probe_input(i));
    }
    if all(acc == V(-1.2345e30)) {
        out[first] = acc;
    }
}
"#;

/// `PROBE` values: the forward and its identity, the backward and its identity.
const FORWARD_PROBES: [u32; 2] = [0, 1];
const BACKWARD_PROBES: [u32; 2] = [2, 3];

/// An activation shader's source with the probes appended.
fn with_probes(shader: &str) -> String {
    let copy = if shader.contains("fn load_param()") {
        "load_param();"
    } else {
        ""
    };
    format!("{shader}{}", PROBES.replace("COPY_PARAMS", copy))
}

/// A pipeline with its bind group and the launches per timing.
struct Kernel {
    pipeline: wgpu::ComputePipeline,
    bind: wgpu::BindGroup,
    launches: u32,
}

struct Launcher<'a> {
    device: &'a wgpu::Device,
    queue: &'a wgpu::Queue,
    groups: u32,
}

impl Launcher<'_> {
    /// `entry` of `source` (with `OP = op` where the shader has it, and `PROBE = probe`), bound
    /// to `buffers`, with its launches per timing calibrated.
    fn kernel(
        &self,
        source: &str,
        entry: &str,
        (op, probe): (u32, Option<u32>),
        buffers: &[(u32, &wgpu::Buffer)],
    ) -> Kernel {
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: None,
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let mut constants = vec![("WG", f64::from(WG))];
        if source.contains("override OP") {
            constants.push(("OP", f64::from(op)));
        }
        if let Some(probe) = probe {
            constants.push(("PROBE", f64::from(probe)));
        }
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: None,
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        let entries: Vec<_> = buffers
            .iter()
            .map(|&(binding, buffer)| wgpu::BindGroupEntry {
                binding,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut kernel = Kernel {
            pipeline,
            bind,
            launches: 1,
        };
        self.time(&kernel);
        let once = self.time(&kernel);
        kernel.launches = (MIN_TIMING_SECONDS / once).ceil().clamp(1.0, 1000.0) as u32;
        kernel
    }

    /// Seconds per launch of `k`, its launches submitted together and waited for.
    fn time(&self, k: &Kernel) -> f64 {
        let t = Instant::now();
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&k.pipeline);
            pass.set_bind_group(0, &k.bind, &[]);
            for _ in 0..k.launches {
                pass.dispatch_workgroups(self.groups, 1, 1);
            }
        }
        self.queue.submit([encoder.finish()]);
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        t.elapsed().as_secs_f64() / f64::from(k.launches)
    }

    /// Seconds of arithmetic: a probe's time less its identity's.
    fn arithmetic(&self, [probe, identity]: &[Kernel; 2]) -> f64 {
        self.time(probe) - self.time(identity)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let ctx = Context::new().expect("a context");
    let Some((device, queue)) = ctx.wgpu() else {
        eprintln!("no GPU adapter: nothing to measure");
        return;
    };
    println!("adapter: {}", ctx.adapter_info());
    let runs: usize = std::env::var("ARITHMETIC_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    let wanted: Option<Vec<String>> = std::env::var("ARITHMETIC_OPS")
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());

    let vec4s = (ELEMENTS / 4) as u32;
    let launcher = Launcher {
        device,
        queue,
        groups: vec4s.div_ceil(WG * VEC4S_PER_INVOCATION),
    };
    let storage = |seed: f32| {
        let data: Vec<f32> = (0..ELEMENTS)
            .map(|i| {
                ((i.wrapping_mul(2_654_435_761) % 1_000_003) as f32 / 1_000_003.0 - 0.5) * seed
            })
            .collect();
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&data),
            usage: wgpu::BufferUsages::STORAGE,
        })
    };
    let (x, g, out) = (storage(16.0), storage(2.0), storage(0.0));
    let uniform = |words: [u32; 4]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&words),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    };

    let copy_params = uniform([vec4s, 0, 0, 0]);
    let copy = launcher.kernel(
        wgsl::module("copy", DType::F32)
            .expect("copy module")
            .source(),
        "copy",
        (0, None),
        &[(0, &copy_params), (1, &x), (2, &out)],
    );
    let activation = wgsl::module("activation", DType::F32).expect("activation module");
    let source = with_probes(activation.source());
    let baseline = std::env::var("ARITHMETIC_BASELINE").ok().map(|dir| {
        let read = |file: &str| {
            std::fs::read_to_string(std::path::Path::new(&dir).join(file))
                .unwrap_or_else(|e| panic!("ARITHMETIC_BASELINE: {dir}/{file}: {e}"))
        };
        // Today's module with the baseline's activation.wgsl and math.wgsl in place of today's
        // (the module holds each file verbatim; the helpers they import are today's).
        let composed = activation
            .source()
            .replace(
                include_str!("../shaders/activation.wgsl"),
                &read("activation.wgsl"),
            )
            .replace(include_str!("../shaders/math.wgsl"), &read("math.wgsl"));
        with_probes(&composed)
    });

    println!(
        "{:<22} {:>8} {:>8} {:>10} {:>13} {:>12} {:>12} {:>14}",
        "op", "copy ms", "op ms", "arith ms", "arith/copy", "of copy", "predicted", "vs baseline"
    );
    for act in Activation::ALL {
        for backward in [false, true] {
            let name = format!("{}{}", act.name(), if backward { "-backward" } else { "" });
            if wanted.as_ref().is_some_and(|w| !w.contains(&name)) {
                continue;
            }
            let [p0, p1, p2] = act.shader_params();
            let params = uniform([vec4s, p0.to_bits(), p1.to_bits(), p2.to_bits()]);
            let code = act.shader_code();
            let (entry, probes, inputs) = if backward {
                (
                    "backward",
                    BACKWARD_PROBES,
                    vec![(0, &params), (1, &x), (2, &g), (3, &out)],
                )
            } else {
                (
                    "forward",
                    FORWARD_PROBES,
                    vec![(0, &params), (1, &x), (3, &out)],
                )
            };
            let real = launcher.kernel(&source, entry, (code, None), &inputs);
            let register_only = [(0, &params), (3, &out)];
            let arithmetic = probes.map(|probe| {
                launcher.kernel(&source, "probe", (code, Some(probe)), &register_only)
            });
            let base = baseline.as_ref().map(|base| {
                probes.map(|probe| {
                    launcher.kernel(base, "probe", (code, Some(probe)), &register_only)
                })
            });

            let (mut copies, mut ops, mut ariths, mut fractions, mut predicted, mut vs_base) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            for _ in 0..runs {
                let c = launcher.time(&copy);
                let o = launcher.time(&real);
                let a = launcher.arithmetic(&arithmetic);
                // A backward reads two inputs: the copy moves 8 bytes per element, the op 12.
                let bytes_ratio = if backward { 1.5 } else { 1.0 };
                copies.push(c);
                ops.push(o);
                ariths.push(a);
                fractions.push(c * bytes_ratio / o);
                predicted.push(c * bytes_ratio / (c * bytes_ratio + a));
                if let Some(base) = &base {
                    vs_base.push(a / launcher.arithmetic(base));
                }
            }
            let ms = |v: Vec<f64>| median(v) * 1e3;
            let (c, o, a) = (ms(copies), ms(ops), ms(ariths));
            let vs_base = if vs_base.is_empty() {
                String::new()
            } else {
                format!("{:.2}×", median(vs_base))
            };
            println!(
                "{name:<22} {c:>8.2} {o:>8.2} {a:>10.2} {:>12.0}% {:>11.0}% {:>11.0}% {vs_base:>14}",
                100.0 * a / c,
                100.0 * median(fractions),
                100.0 * median(predicted),
            );
        }
    }
}
