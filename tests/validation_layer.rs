//! Every kernel of every module on lavapipe under Khronos' Vulkan validation layer
//! (`vulkan-validationlayers`, which wgpu enables with `WGPU_VALIDATION=1`): the layer writes
//! every error and warning to a log file (its settings file, through `VK_LAYER_SETTINGS_PATH`)
//! and the test fails on any. First it shows that a misuse would reach that file: a shader
//! module that declares a capability the device did not enable is reported.
//!
//! `WGPU_DEBUG=0`: wgpu then installs no messenger of its own (the layer logs to the file) and
//! adds no debug info to the SPIR-V, as in a release build, which is what users run (Debian's
//! layer, 1.3.239, predates the `OpSource WGSL` that debug info carries and reports it).
//!
//! One test function, so that the environment belongs to it alone.

mod common;

use std::collections::BTreeSet;

use common::uniform;
use gpu_activations::{
    Activation, Adam, AdamState, BceOptions, Context, ContextOptions, CrossEntropyOptions, DType,
    Gate, HeadOptions, HeadStats, MatmulKernel, Reduction, RowStrategy, Sgd, Subgroups, Targets,
    Tensor, wgpu,
};

/// The layer's log: its messages since the last call (one per `Validation` line).
struct LayerLog {
    path: std::path::PathBuf,
    read: usize,
}

impl LayerLog {
    fn take(&mut self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let new = text[self.read.min(text.len())..].to_string();
        self.read = text.len();
        new.lines()
            .filter(|l| l.contains("Validation Error") || l.contains("Validation Warning"))
            .map(str::to_string)
            .collect()
    }
}

fn layer_installed() -> bool {
    [
        "/usr/share/vulkan/explicit_layer.d",
        "/etc/vulkan/explicit_layer.d",
    ]
    .iter()
    .any(|d| {
        std::path::Path::new(d)
            .join("VkLayer_khronos_validation.json")
            .exists()
    })
}

/// lavapipe's adapter (the Vulkan llvmpipe), if present.
fn lavapipe() -> Option<Context> {
    Context::with_options(ContextOptions {
        backend: Some(gpu_activations::Backend::Vulkan),
        adapter: Some("llvmpipe".into()),
        allow_cpu_fallback: false,
        ..Default::default()
    })
    .ok()
}

/// A misuse the layer reports and wgpu does not see: SPIR-V handed to the driver unchecked
/// (passthrough) that declares the Float64 capability on a device without `shaderFloat64`.
fn deliberate_misuse() {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = wgpu::Backends::VULKAN;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::VULKAN))
        .into_iter()
        .find(|a| a.get_info().name.contains("llvmpipe"))
        .expect("lavapipe");
    assert!(
        adapter
            .features()
            .contains(wgpu::Features::PASSTHROUGH_SHADERS),
        "lavapipe takes SPIR-V passthrough"
    );
    let (device, _queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_features: wgpu::Features::PASSTHROUGH_SHADERS,
        ..Default::default()
    }))
    .unwrap();
    let source = "@group(0) @binding(0) var<storage, read_write> x: array<f32>;
        @compute @workgroup_size(1) fn main() { x[0] = f32(f64(x[0]) * 2.0lf); }";
    let module = naga::front::wgsl::parse_str(source).unwrap();
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap();
    let words =
        naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), None)
            .unwrap();
    let entry = wgpu::PassthroughShaderEntryPoint {
        name: "main".into(),
        workgroup_size: (1, 1, 1),
    };
    // SAFETY: the module is valid SPIR-V apart from the capability, which lavapipe compiles;
    // it is never run.
    let module = unsafe {
        device.create_shader_module_passthrough(wgpu::ShaderModuleDescriptorPassthrough {
            label: Some("float64 without shaderFloat64"),
            entry_points: std::borrow::Cow::Borrowed(std::slice::from_ref(&entry)),
            spirv: Some(std::borrow::Cow::Owned(words)),
            ..Default::default()
        })
    };
    // The layer checks a module's capabilities against the device's features when a pipeline
    // is made from it.
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: None,
        entries: &[wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: false },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }],
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: None,
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let _pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("float64 without shaderFloat64"),
        layout: Some(&pipeline_layout),
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
}

#[test]
fn every_kernel_on_lavapipe_passes_the_vulkan_validation_layer() {
    if !layer_installed() {
        let required = std::env::var(common::REQUIRE_ADAPTER_ENV).is_ok_and(|v| v == "1");
        assert!(
            !required,
            "the Vulkan validation layer is not installed (apt-get install \
             vulkan-validationlayers; scripts/setup.sh does with GPU_ACTIVATIONS_SETUP=test)"
        );
        common::report("SKIP: the Vulkan validation layer is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut log = LayerLog {
        path: dir.path().join("validation.log"),
        read: 0,
    };
    std::fs::write(
        dir.path().join("vk_layer_settings.txt"),
        format!(
            "khronos_validation.report_flags = error,warn\n\
             khronos_validation.debug_action = VK_DBG_LAYER_ACTION_LOG_MSG\n\
             khronos_validation.log_filename = {}\n",
            log.path.display()
        ),
    )
    .unwrap();
    // SAFETY: before any other thread of this test binary exists (one test function).
    unsafe {
        std::env::set_var("VK_LAYER_SETTINGS_PATH", dir.path());
        std::env::set_var("WGPU_VALIDATION", "1");
        std::env::set_var("WGPU_DEBUG", "0");
    }

    let Some(ctx) = lavapipe() else {
        let required = std::env::var(common::REQUIRE_ADAPTER_ENV).is_ok_and(|v| v == "1");
        assert!(!required, "lavapipe (mesa-vulkan-drivers) is not installed");
        return;
    };

    deliberate_misuse();
    let caught = log.take();
    assert!(
        caught.iter().any(|m| m.contains("VUID")),
        "the validation layer did not report the deliberate misuse: {caught:?}"
    );

    let contexts = contexts(&ctx);
    for c in &contexts {
        every_op(c);
        c.synchronize().unwrap();
    }
    let messages = log.take();
    let mut kinds: Vec<String> = messages
        .iter()
        .map(|m| m.split(" | ").nth(1).map_or(m.clone(), |k| k.to_string()))
        .collect();
    kinds.sort();
    kinds.dedup();
    assert!(
        messages.is_empty(),
        "{} validation message(s) of {} kinds:\n{}\nthe first: {}",
        messages.len(),
        kinds.len(),
        kinds.join("\n"),
        messages.first().map_or("", String::as_str)
    );

    // Every entry point of every module was built (and launched) under the layer.
    let mut built = BTreeSet::new();
    for c in &contexts {
        for p in c.pipelines_built().unwrap() {
            built.insert((p.module.to_string(), p.storage.name(), p.entry.to_string()));
        }
    }
    let mut missing = Vec::new();
    for m in gpu_activations::wgsl::modules() {
        let module = naga::front::wgsl::parse_str(m.source()).unwrap();
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap();
        for (index, ep) in module.entry_points.iter().enumerate() {
            // In a half module an entry point that reads a binding as plain f32 (`array<f32>`,
            // not the codec's `Stored4`) is one the host runs on f32 tensors only.
            if m.storage != DType::F32 && reads_plain_f32(&module, info.get_entry_point(index)) {
                continue;
            }
            if !built.contains(&(m.name.to_string(), m.storage.name(), ep.name.clone())) {
                missing.push(format!("{}::{} ({})", m.name, ep.name, m.storage));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} entry points never launched: {}",
        missing.len(),
        missing.join(", ")
    );
}

/// Whether the entry point uses a storage binding of plain `array<f32>`.
fn reads_plain_f32(module: &naga::Module, function: &naga::valid::FunctionInfo) -> bool {
    module.global_variables.iter().any(|(handle, var)| {
        matches!(var.space, naga::AddressSpace::Storage { .. })
            && !function[handle].is_empty()
            && matches!(
                module.types[var.ty].inner,
                naga::TypeInner::Array { base, .. }
                    if module.types[base].inner == naga::TypeInner::Scalar(naga::Scalar::F32)
            )
    })
}

/// lavapipe with each row strategy forced, subgroups on and off, and each matrix kernel.
fn contexts(auto: &Context) -> Vec<Context> {
    let same = common::same_adapter(auto);
    let mut all = vec![auto.clone()];
    for subgroups in [Subgroups::Auto, Subgroups::Off] {
        for row_strategy in [
            RowStrategy::Auto,
            RowStrategy::PerRow,
            RowStrategy::Segmented,
            RowStrategy::Workgroup,
            RowStrategy::Subgroup,
        ] {
            all.push(
                Context::with_options(ContextOptions {
                    row_strategy,
                    subgroups,
                    ..same.clone()
                })
                .unwrap(),
            );
        }
    }
    for matmul_kernel in [MatmulKernel::Tiled, MatmulKernel::Registers] {
        all.push(
            Context::with_options(ContextOptions {
                matmul_kernel,
                ..same.clone()
            })
            .unwrap(),
        );
    }
    all
}

fn upload(ctx: &Context, seed: u64, shape: &[usize], lo: f32, hi: f32, dtype: DType) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_slice_as(ctx, &uniform(seed, n, lo, hi), shape, dtype).unwrap()
}

/// Runs every op family on `ctx`, in every storage type, at shapes that take each kernel.
fn every_op(ctx: &Context) {
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        elementwise(ctx, dtype);
        for cols in [3, 8, 37, 64, 1000, 5000] {
            rows(ctx, dtype, cols);
        }
        families(ctx, dtype);
    }
    matrices(ctx);
}

fn elementwise(ctx: &Context, dtype: DType) {
    let shape = [4, 1030];
    let x = upload(ctx, 1, &shape, -6.0, 6.0, dtype);
    let g = upload(ctx, 2, &shape, -1.0, 1.0, dtype);
    for act in Activation::ALL {
        x.activation(act).unwrap();
        x.activation_backward(act, &g).unwrap();
        // In place: over the input, over the gradient, and forward.
        let y = upload(ctx, 1, &shape, -6.0, 6.0, dtype);
        y.activation_into(act, &y).unwrap();
        let g2 = upload(ctx, 2, &shape, -1.0, 1.0, dtype);
        x.activation_backward_into(act, &g2, &g2).unwrap();
        let x2 = upload(ctx, 1, &shape, -6.0, 6.0, dtype);
        x2.activation_backward_into(act, &g, &x2).unwrap();
    }
    x.sigmoid()
        .unwrap()
        .sigmoid_backward_from_output(&g)
        .unwrap();
    x.tanh().unwrap().tanh_backward_from_output(&g).unwrap();
    let out = Tensor::zeros_as(ctx, &shape, dtype).unwrap();
    x.copy_into(&out).unwrap();
    if dtype != DType::F32 {
        x.to_dtype(DType::F32).unwrap().to_dtype(dtype).unwrap();
    }
}

fn rows(ctx: &Context, dtype: DType, cols: usize) {
    let z = upload(ctx, cols as u64, &[6, cols], -5.0, 5.0, dtype);
    let gz = upload(ctx, 9, &[6, cols], -1.0, 1.0, dtype);
    for log in [false, true] {
        let y = if log { z.log_softmax() } else { z.softmax() }.unwrap();
        if log {
            y.log_softmax_backward(&gz).unwrap();
        } else {
            y.softmax_backward(&gz).unwrap();
        }
    }
    let labels: Vec<i64> = (0..6).map(|r| (r * 7 % cols) as i64).collect();
    let t = upload(ctx, 4, &[6, cols], 0.0, 1.0, dtype);
    for smoothing in [0.0, 0.1] {
        let o = CrossEntropyOptions {
            label_smoothing: smoothing,
            weight: Some(vec![0.5; cols]),
            ..Default::default()
        };
        z.cross_entropy(Targets::Indices(&labels), &o).unwrap();
        z.cross_entropy(Targets::Probabilities(&t), &o).unwrap();
    }
    z.cross_entropy(Targets::Indices(&labels), &CrossEntropyOptions::default())
        .unwrap();
    // Class indices in a buffer of the caller's, converted and checked on the device.
    let (device, queue) = ctx.wgpu().unwrap();
    let words: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("labels"),
        size: 32,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&buffer, 0, bytemuck::cast_slice(&words));
    let on_device = Tensor::from_wgpu_buffer_as(ctx, &buffer, 0, &[6], DType::I32).unwrap();
    z.cross_entropy(Targets::Device(&on_device), &CrossEntropyOptions::default())
        .unwrap();
    for softcap in [None, Some(20.0)] {
        let head = HeadOptions {
            lse_square_scale: 1e-4,
            softcap,
        };
        z.cross_entropy_head(
            Targets::Indices(&labels),
            &CrossEntropyOptions::default(),
            &head,
        )
        .unwrap();
    }
    // Per-token statistics and their gradient: with and without the softcap, each upstream
    // gradient alone and both, the z-loss.
    let a = upload(ctx, 19, &[6], -1.0, 1.0, DType::F32);
    for (softcap, temperature, lse_square_scale) in [(None, 0.7, 0.0), (Some(5.0), 1.0, 1e-3)] {
        let options = HeadStats {
            temperature,
            softcap,
            lse_square_scale,
            ..Default::default()
        };
        let stats = z.head_stats(Targets::Indices(&labels), &options).unwrap();
        for (ga, gc) in [(Some(&a), Some(&a)), (Some(&a), None), (None, Some(&a))] {
            z.head_stats_backward(Targets::Indices(&labels), &stats, ga, gc)
                .unwrap();
        }
    }
    z.log_softmax()
        .unwrap()
        .nll_loss(Targets::Indices(&labels), &CrossEntropyOptions::default())
        .unwrap();
    z.bce_with_logits(&t, &BceOptions::default()).unwrap();
    z.bce_with_logits(
        &t,
        &BceOptions {
            reduction: Reduction::None,
            weight: Some(vec![2.0; cols]),
            pos_weight: Some(vec![3.0; cols]),
        },
    )
    .unwrap();
}

fn families(ctx: &Context, dtype: DType) {
    // Gated: split along the last dim (widths a multiple of 4 and not) and as a pair.
    for width in [16, 10] {
        let x = upload(ctx, 3, &[5, width], -4.0, 4.0, dtype);
        let g = upload(ctx, 4, &[5, width / 2], -1.0, 1.0, dtype);
        for gate in Gate::ALL {
            x.gated(gate).unwrap();
            x.gated_backward(gate, &g).unwrap();
            let a = upload(ctx, 5, &[5, width / 2], -4.0, 4.0, dtype);
            let b = upload(ctx, 6, &[5, width / 2], -4.0, 4.0, dtype);
            Tensor::gated_pair(gate, &a, &b).unwrap();
            Tensor::gated_pair_backward(gate, &a, &b, &g).unwrap();
        }
    }
    // PReLU: channel blocks of 4 (vec4 kernels) and of 5.
    for inner in [4, 5] {
        let x = upload(ctx, 7, &[3, 6, inner], -3.0, 3.0, dtype);
        let g = upload(ctx, 8, &[3, 6, inner], -1.0, 1.0, dtype);
        let w = upload(ctx, 9, &[6], 0.0, 0.5, dtype);
        x.prelu(&w).unwrap();
        x.prelu_backward(&w, &g).unwrap();
    }
    // Softmax along an inner dim: lines held in registers (≤ 32) and longer ones.
    for len in [21, 40] {
        let x = upload(ctx, 10, &[3, len, 5], -4.0, 4.0, dtype);
        let g = upload(ctx, 11, &[3, len, 5], -1.0, 1.0, dtype);
        x.softmax_dim(1)
            .unwrap()
            .softmax_dim_backward(1, &g)
            .unwrap();
        x.log_softmax_dim(1)
            .unwrap()
            .log_softmax_dim_backward(1, &g)
            .unwrap();
        x.softmin(1).unwrap().softmin_backward(1, &g).unwrap();
        // PyTorch's layout for the losses: the class at dim 1.
        let labels: Vec<i64> = (0..15).map(|i| (i % len) as i64).collect();
        x.cross_entropy_dim1(Targets::Indices(&labels), &CrossEntropyOptions::default())
            .unwrap();
        let t = upload(ctx, 12, &[3, len, 5], 0.0, 1.0, dtype);
        x.cross_entropy_dim1(Targets::Probabilities(&t), &CrossEntropyOptions::default())
            .unwrap();
        x.nll_loss_dim1(Targets::Indices(&labels), &CrossEntropyOptions::default())
            .unwrap();
    }
}

fn matrices(ctx: &Context) {
    let (n, h, k) = (9, 20, 12);
    let x = upload(ctx, 13, &[n, h], -1.0, 1.0, DType::F32);
    let w = upload(ctx, 14, &[k, h], -1.0, 1.0, DType::F32);
    let b = upload(ctx, 15, &[k], -1.0, 1.0, DType::F32);
    let g = upload(ctx, 16, &[n, k], -1.0, 1.0, DType::F32);
    x.linear(&w, Some(&b)).unwrap();
    x.linear_backward(&w, &g).unwrap();
    let labels: Vec<i64> = (0..n as i64).map(|i| i % k as i64).collect();
    x.linear_cross_entropy(
        &w,
        Some(&b),
        Targets::Indices(&labels),
        &CrossEntropyOptions::default(),
        &HeadOptions::default(),
    )
    .unwrap();
    let options = HeadStats::default();
    let stats = x
        .linear_head(&w, Some(&b), Targets::Indices(&labels), &options)
        .unwrap();
    let a = upload(ctx, 20, &[n], -1.0, 1.0, DType::F32);
    x.linear_head_backward(
        &w,
        Some(&b),
        Targets::Indices(&labels),
        &stats,
        Some(&a),
        Some(&a),
    )
    .unwrap();
    let none = CrossEntropyOptions {
        reduction: Reduction::None,
        ..Default::default()
    };
    x.linear_cross_entropy_weighted(
        &w,
        Some(&b),
        Targets::Indices(&labels),
        &none,
        &HeadOptions::default(),
        &a,
    )
    .unwrap();
    ctx.fma_peak_probe(4, 2).unwrap();
    let param = upload(ctx, 17, &[64], -1.0, 1.0, DType::F32);
    let grad = upload(ctx, 18, &[64], -1.0, 1.0, DType::F32);
    Sgd {
        lr: 0.1,
        weight_decay: 0.01,
    }
    .step(&param, &grad)
    .unwrap();
    let mut state = AdamState::new(&param).unwrap();
    Adam::default().step(&param, &grad, &mut state).unwrap();
}
