//! Where an elementwise activation's time goes: its device-memory traffic (the copy kernel)
//! and its arithmetic, measured apart.
//!
//! For each op this times, alternating in one process on one adapter: the copy kernel, the
//! op's real kernel, and two register-only kernels appended to the op's own shader that walk
//! the same grid and run `forward_checked` (or `backward_checked`) on values made from the
//! index, summing the results instead of storing them, minus the same walk summing the
//! inputs. Their difference is the arithmetic alone; if the op costs the copy plus its
//! arithmetic, the fraction of the copy it can reach is `copy / (copy + arithmetic)`.
//!
//! Run with `cargo bench --bench arithmetic` (`GPU_ACTIVATIONS_BACKEND` picks the adapter;
//! `ARITHMETIC_OPS=sigmoid,gelu` narrows the ops, `ARITHMETIC_RUNS` sets the pairs, 11).
//! To weigh a shader edit on a noisy machine, point `ARITHMETIC_BASELINE` at a folder holding
//! the other `activation.wgsl` and `math.wgsl`: both versions' arithmetic is then timed in
//! alternation and the last column gives the median ratio, this tree's over the baseline's.

use std::time::Instant;

use gpu_activations::{Activation, Context, Shader};
use wgpu::util::DeviceExt;

const ELEMENTS: usize = 16_777_216;
const WG: u32 = 256;
const VEC4S_PER_INVOCATION: u32 = 4;

/// Register-only twins of the elementwise entry points: inputs spread over [−8, 8) from the
/// index, results summed and stored only under a condition the compiler cannot decide.
const PROBES: &str = r#"
fn probe_input(i: u32) -> V {
    return V(f32(i & 0xffffu)) * (16.0 / 65536.0) + V(-8.0, -7.75, -7.5, -7.25);
}

fn probe_keep(acc: V, i: u32) {
    if all(acc == V(-1.2345e30)) {
        out[i] = acc;
    }
}

@compute @workgroup_size(WG)
fn probe_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    p = params;
    var acc = splat(0.0);
    let first = first_index(wid, nwg, lid);
    for (var i = first; i < p.len; i += stride(nwg)) {
        acc += forward_checked(probe_input(i));
    }
    probe_keep(acc, first);
}

@compute @workgroup_size(WG)
fn probe_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    p = params;
    var acc = splat(0.0);
    let first = first_index(wid, nwg, lid);
    for (var i = first; i < p.len; i += stride(nwg)) {
        let v = probe_input(i);
        acc += backward_checked(v, v * 0.5 + 1.0);
    }
    probe_keep(acc, first);
}

@compute @workgroup_size(WG)
fn probe_identity(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    p = params;
    var acc = splat(0.0);
    let first = first_index(wid, nwg, lid);
    for (var i = first; i < p.len; i += stride(nwg)) {
        let v = probe_input(i);
        acc += v + (v * 0.5 + 1.0);
    }
    probe_keep(acc, first);
}
"#;

struct Launcher<'a> {
    device: &'a wgpu::Device,
    queue: &'a wgpu::Queue,
    groups: u32,
}

impl Launcher<'_> {
    fn pipeline(&self, source: &str, entry: &str, op: u32) -> wgpu::ComputePipeline {
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
        self.device
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
            })
    }

    fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        entries: &[(u32, &wgpu::Buffer)],
    ) -> wgpu::BindGroup {
        let entries: Vec<_> = entries
            .iter()
            .map(|&(binding, buffer)| wgpu::BindGroupEntry {
                binding,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Seconds for one launch, submitted alone and waited for.
    fn time(&self, pipeline: &wgpu::ComputePipeline, bind: &wgpu::BindGroup) -> f64 {
        let t = Instant::now();
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind, &[]);
            pass.dispatch_workgroups(self.groups, 1, 1);
        }
        self.queue.submit([encoder.finish()]);
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        t.elapsed().as_secs_f64()
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

    let copy = launcher.pipeline(Shader::Copy.source(), "copy", 0);
    let copy_params = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&[vec4s, 0, 0, 0]),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let copy_bind = launcher.bind(&copy, &[(0, &copy_params), (1, &x), (2, &out)]);
    let source = format!("{}{PROBES}", Shader::Activation.source());
    let baseline = std::env::var("ARITHMETIC_BASELINE").ok().map(|dir| {
        let read = |file: &str| {
            std::fs::read_to_string(std::path::Path::new(&dir).join(file))
                .unwrap_or_else(|e| panic!("ARITHMETIC_BASELINE: {dir}/{file}: {e}"))
        };
        format!("{}{}{PROBES}", read("activation.wgsl"), read("math.wgsl"))
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
            let params = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(&[vec4s, p0.to_bits(), p1.to_bits(), p2.to_bits()]),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let code = act.shader_code();
            let (entry, probe_entry) = if backward {
                ("backward", "probe_backward")
            } else {
                ("forward", "probe_forward")
            };
            let real = launcher.pipeline(&source, entry, code);
            let real_bind = if backward {
                launcher.bind(&real, &[(0, &params), (1, &x), (2, &g), (3, &out)])
            } else {
                launcher.bind(&real, &[(0, &params), (1, &x), (3, &out)])
            };
            let probe = launcher.pipeline(&source, probe_entry, code);
            let probe_bind = launcher.bind(&probe, &[(0, &params), (3, &out)]);
            let identity = launcher.pipeline(&source, "probe_identity", code);
            let identity_bind = launcher.bind(&identity, &[(0, &params), (3, &out)]);
            // The baseline's probe and identity kernels, with their bind groups.
            let base = baseline.as_ref().map(|base| {
                let probe = launcher.pipeline(base, probe_entry, code);
                let identity = launcher.pipeline(base, "probe_identity", code);
                let probe_bind = launcher.bind(&probe, &[(0, &params), (3, &out)]);
                let identity_bind = launcher.bind(&identity, &[(0, &params), (3, &out)]);
                [(probe, probe_bind), (identity, identity_bind)]
            });
            let base_arith = || {
                base.as_ref()
                    .map(|[(probe, probe_bind), (identity, identity_bind)]| {
                        launcher.time(probe, probe_bind) - launcher.time(identity, identity_bind)
                    })
            };

            for _ in 0..2 {
                launcher.time(&copy, &copy_bind);
                launcher.time(&real, &real_bind);
                launcher.time(&probe, &probe_bind);
                launcher.time(&identity, &identity_bind);
                base_arith();
            }
            let (mut copies, mut ops, mut ariths, mut fractions, mut predicted, mut vs_base) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            for _ in 0..runs {
                let c = launcher.time(&copy, &copy_bind);
                let o = launcher.time(&real, &real_bind);
                let a =
                    launcher.time(&probe, &probe_bind) - launcher.time(&identity, &identity_bind);
                // A backward reads two inputs: the copy moves 8 bytes per element, the op 12.
                let bytes_ratio = if backward { 1.5 } else { 1.0 };
                copies.push(c);
                ops.push(o);
                ariths.push(a);
                fractions.push(c * bytes_ratio / o);
                predicted.push(c * bytes_ratio / (c * bytes_ratio + a));
                if let Some(b) = base_arith() {
                    vs_base.push(a / b);
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
