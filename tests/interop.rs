//! Embedding in a wgpu program on every adapter present: the caller's device
//! (`Context::from_wgpu`), the caller's buffers (`Tensor::from_wgpu_buffer`, `as_wgpu_buffer`),
//! the ordering of the crate's work with the caller's on one queue, and every rule an external
//! buffer can break, each a typed error that never reaches the caller's error handler.

mod common;

#[allow(dead_code)]
#[path = "../examples/interop.rs"]
mod interop;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use common::assert_all_close;
use gpu_activations::cpu::softmax as softmax_ref;
use gpu_activations::{
    Activation, Context, CrossEntropyOptions, DType, Error, Reduction, Targets, Tensor, WgpuSetup,
    wgpu,
};

/// Which adapter a caller's device is made on: a backend and a name (`None`: the first).
type Target = (wgpu::Backends, Option<String>);

/// A device of the caller's on `target`, made with wgpu alone (with `SUBGROUP` when asked for
/// and offered), whose uncaptured errors are counted in `errors`.
fn caller_device(
    target: Target,
    subgroups: bool,
    limits: Option<wgpu::Limits>,
) -> Option<(WgpuSetup, Arc<AtomicUsize>)> {
    let (backend, name) = target;
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backend;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.enumerate_adapters(backend))
        .into_iter()
        .find(|a| name.as_ref().is_none_or(|n| a.get_info().name == *n))?;
    let features = if subgroups {
        adapter.features() & wgpu::Features::SUBGROUP
    } else {
        wgpu::Features::empty()
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("the caller's device"),
        required_features: features,
        required_limits: limits.unwrap_or_else(|| adapter.limits()),
        ..Default::default()
    }))
    .ok()?;
    let errors = Arc::new(AtomicUsize::new(0));
    let counter = errors.clone();
    device.on_uncaptured_error(Arc::new(move |_e: wgpu::Error| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let setup = WgpuSetup {
        adapter_info: adapter.get_info(),
        device,
        queue,
    };
    Some((setup, errors))
}

/// Every adapter under test, as a target for a caller's device.
fn backends() -> Vec<Target> {
    common::gpus()
        .iter()
        .map(|ctx| {
            let backend = match ctx.backend() {
                gpu_activations::Backend::Gl => wgpu::Backends::GL,
                gpu_activations::Backend::Metal => wgpu::Backends::METAL,
                gpu_activations::Backend::Dx12 => wgpu::Backends::DX12,
                _ => wgpu::Backends::VULKAN,
            };
            (backend, Some(ctx.adapter_info().name.clone()))
        })
        .collect()
}

/// One context per caller device (with and without subgroups where the adapter has them), made
/// once per binary, and the counter of errors that reached the caller's handler.
fn embedded() -> &'static [(Context, WgpuSetup, Arc<AtomicUsize>)] {
    static ALL: OnceLock<Vec<(Context, WgpuSetup, Arc<AtomicUsize>)>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = Vec::new();
        for backend in backends() {
            for subgroups in [true, false] {
                let (setup, errors) = caller_device(backend.clone(), subgroups, None)
                    .expect("the adapter opens a device");
                if subgroups && !setup.device.features().contains(wgpu::Features::SUBGROUP) {
                    continue;
                }
                let ctx = Context::from_wgpu(setup.clone()).expect("a full device is suitable");
                assert_eq!(ctx.uses_subgroups(), subgroups, "{}", ctx.adapter_info());
                all.push((ctx, setup, errors));
            }
        }
        all
    })
}

/// No validation error of the crate's reached the caller's handler.
fn assert_handler_never_called(ctx: &Context, errors: &AtomicUsize) {
    let seen = errors.load(Ordering::SeqCst);
    assert_eq!(
        seen,
        0,
        "{}: the caller's handler was called",
        ctx.adapter_info()
    );
}

fn storage_buffer(device: &wgpu::Device, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("caller's buffer"),
        size: bytes,
        usage,
        mapped_at_creation: false,
    })
}

const ALL_USES: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

#[test]
fn caller_pipeline_then_fused_cross_entropy_then_caller_pipeline_without_a_host_round_trip() {
    for backend in backends() {
        for subgroups in [true, false] {
            let (setup, errors) = caller_device(backend.clone(), subgroups, None).unwrap();
            let name = format!("{} subgroups={subgroups}", setup.adapter_info.name);
            let outcome = interop::run(setup).unwrap();
            let (loss, doubled) = interop::expected(&outcome);
            assert!(
                (f64::from(outcome.loss) - loss).abs() <= 1e-5 * loss.abs(),
                "{name}: loss {} against {loss}",
                outcome.loss
            );
            assert_all_close(
                &format!("{name} doubled gradient"),
                &outcome.doubled_grad,
                &doubled,
                &[&outcome.logits],
                2e-6,
                1e-5,
            );
            // Not a constant: the gradient carries every row's −1/N at its label.
            assert!(outcome.doubled_grad.iter().any(|&g| g < -0.03));
            assert_eq!(errors.load(Ordering::SeqCst), 0, "{name}: handler called");
        }
    }
}

#[test]
fn ops_read_and_write_views_of_caller_buffers_in_place_included() {
    for (ctx, setup, errors) in embedded() {
        let (rows, cols) = (7, 260);
        let n = rows * cols;
        let x = common::uniform(11, n, -5.0, 5.0);
        let input = storage_buffer(&setup.device, 512 + 4 * n as u64, ALL_USES);
        let output = storage_buffer(&setup.device, 256 + 4 * n as u64, ALL_USES);
        setup
            .queue
            .write_buffer(&input, 512, bytemuck::cast_slice(&x));
        let xv = Tensor::from_wgpu_buffer(ctx, &input, 512, &[rows, cols]).unwrap();
        let yv = Tensor::from_wgpu_buffer(ctx, &output, 256, &[rows, cols]).unwrap();
        // From a view into another caller buffer, then in place over the output.
        xv.softmax_into(&yv).unwrap();
        let want: Vec<f64> = x
            .chunks(cols)
            .flat_map(|r| {
                softmax_ref::forward_row(
                    &r.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
                    false,
                )
            })
            .collect();
        assert_all_close(
            "softmax into a view",
            &yv.to_vec().unwrap(),
            &want,
            &[&x],
            1e-6,
            1e-5,
        );
        yv.activation_into(Activation::Sigmoid, &yv).unwrap();
        let want_sig: Vec<f64> = want
            .iter()
            .map(|&s| Activation::Sigmoid.reference(s))
            .collect();
        let y = yv.to_vec().unwrap();
        assert_all_close(
            "sigmoid in place in a view",
            &y,
            &want_sig,
            &[&x],
            1e-6,
            1e-5,
        );
        // The input view was only read.
        assert_eq!(xv.to_vec().unwrap(), x);

        // An output of the crate's, handed to the caller as (buffer, offset, size).
        let ours = xv.relu().unwrap();
        let (b, offset, size) = ours.as_wgpu_buffer().unwrap();
        assert_eq!(size, 4 * n as u64);
        let back = Tensor::from_wgpu_buffer(ctx, &b, offset, &[n]).unwrap();
        let relu: Vec<f32> = x.iter().map(|&v| v.max(0.0)).collect();
        assert_eq!(back.to_vec().unwrap(), relu);
        assert_handler_never_called(ctx, errors);
    }
}

#[test]
fn a_view_and_the_callers_handle_may_drop_while_work_is_queued() {
    for (ctx, setup, _) in embedded() {
        let n = 1 << 16;
        let x = common::uniform(12, n, -3.0, 3.0);
        let src = storage_buffer(&setup.device, 4 * n as u64, ALL_USES);
        setup.queue.write_buffer(&src, 0, bytemuck::cast_slice(&x));
        let y = {
            let view = Tensor::from_wgpu_buffer(ctx, &src, 0, &[n]).unwrap();
            view.tanh().unwrap()
        };
        drop(src); // the caller's handle and the view are gone; the recorded work is not
        let want: Vec<f64> = x.iter().map(|&v| f64::from(v).tanh()).collect();
        assert_all_close(
            "tanh of a dropped view",
            &y.to_vec().unwrap(),
            &want,
            &[&x],
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn external_buffers_that_break_a_rule_are_typed_errors_naming_it() {
    for (ctx, setup, errors) in embedded() {
        let device = &setup.device;
        let rule = |r: gpu_activations::Result<Tensor>| match r {
            Err(Error::ExternalBuffer { rule, .. }) => rule,
            other => panic!("expected ExternalBuffer, got {other:?}"),
        };
        let ok = storage_buffer(device, 4096, ALL_USES);
        let no_storage = storage_buffer(
            device,
            4096,
            wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        );
        assert!(rule(Tensor::from_wgpu_buffer(ctx, &no_storage, 0, &[16])).contains("STORAGE"));
        assert!(rule(Tensor::from_wgpu_buffer(ctx, &ok, 4, &[16])).contains("multiple of"));
        assert!(rule(Tensor::from_wgpu_buffer(ctx, &ok, 0, &[1028])).contains("past the end"));
        assert!(rule(Tensor::from_wgpu_buffer(ctx, &ok, 0, &[3, 5])).contains("multiple of 4"));
        assert!(rule(Tensor::from_wgpu_buffer(ctx, &ok, 0, &[0])).contains("multiple of 4"));
        assert!(
            rule(Tensor::from_wgpu_buffer(ctx, &ok, 4096 - 256, &[256])).contains("past the end")
        );
        let cpu = Context::cpu();
        assert!(rule(Tensor::from_wgpu_buffer(&cpu, &ok, 0, &[16])).contains("CPU backend"));

        // Larger than one storage binding, where a buffer can be (SwiftShader's buffers are
        // no larger than its bindings, 1 GiB).
        let limits = ctx.limits().unwrap();
        let binding = limits.max_storage_buffer_binding_size;
        if limits.max_buffer_size >= binding + 256 {
            let big = storage_buffer(device, binding + 256, ALL_USES);
            let over = (binding / 4 + 4) as usize;
            assert!(rule(Tensor::from_wgpu_buffer(ctx, &big, 0, &[over])).contains("binding"));
            drop(big);
        }

        // A buffer of another device.
        let (other, _) = caller_device((wgpu::Backends::all(), None), false, None).unwrap();
        let foreign = storage_buffer(&other.device, 4096, ALL_USES);
        assert!(rule(Tensor::from_wgpu_buffer(ctx, &foreign, 0, &[16])).contains("another device"));

        // No COPY_SRC: ops run, but a read-back names the missing usage.
        let storage_only = storage_buffer(device, 4096, wgpu::BufferUsages::STORAGE);
        let v = Tensor::from_wgpu_buffer(ctx, &storage_only, 0, &[16]).unwrap();
        match v.to_vec() {
            Err(Error::ExternalBuffer { rule, .. }) => assert!(rule.contains("COPY_SRC")),
            other => panic!("expected ExternalBuffer, got {other:?}"),
        }

        // Different ranges of one buffer, overlapping or not, in one launch (at offsets the
        // adapter's alignment allows: 32 bytes on lavapipe, 256 on SwiftShader).
        let align = u64::from(ctx.limits().unwrap().min_storage_buffer_offset_alignment);
        let len = (2 * align / 4) as usize;
        let a = Tensor::from_wgpu_buffer(ctx, &ok, 0, &[len]).unwrap();
        for offset in [align, 2 * align] {
            let b = Tensor::from_wgpu_buffer(ctx, &ok, offset, &[len]).unwrap();
            match a.activation_into(Activation::Relu, &b) {
                Err(Error::ExternalBuffer { rule, .. }) => assert!(rule.contains("one buffer")),
                other => panic!("expected ExternalBuffer, got {other:?}"),
            }
        }
        // A shape that does not match the op's input.
        let c = Tensor::from_wgpu_buffer(ctx, &ok, 1024, &[32]).unwrap();
        assert!(matches!(
            a.activation_into(Activation::Relu, &c),
            Err(Error::ShapeMismatch { .. })
        ));

        // A device the crate does not own is never destroyed by it.
        assert!(!ctx.owns_device());
        assert!(matches!(ctx.destroy_device(), Err(Error::NotOwner { .. })));
        assert_eq!(a.relu().unwrap().to_vec().unwrap(), vec![0.0; len]);

        assert_handler_never_called(ctx, errors);
    }
}

#[test]
fn the_callers_error_handler_stays_in_place() {
    for backend in backends() {
        // A device of its own: the other tests assert that their handlers are never called.
        let (setup, errors) = caller_device(backend, false, None).unwrap();
        let ctx = Context::from_wgpu(setup.clone()).unwrap();
        let x = Tensor::from_slice(&ctx, &[1.0, -2.0, 3.0, -4.0], &[4]).unwrap();
        assert_eq!(x.relu().unwrap().to_vec().unwrap(), [1.0, 0.0, 3.0, 0.0]);
        let before = errors.load(Ordering::SeqCst);
        // A mistake of the caller's own: MAP_READ may only go with COPY_DST.
        let _ = setup.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("invalid"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        assert_eq!(
            errors.load(Ordering::SeqCst),
            before + 1,
            "{}: the caller's handler no longer receives the caller's errors",
            ctx.adapter_info()
        );
    }
}

#[test]
fn a_device_without_the_needed_limits_is_refused_naming_each() {
    for backend in backends() {
        let limits = wgpu::Limits::downlevel_webgl2_defaults();
        let Some((setup, _)) = caller_device(backend, false, Some(limits)) else {
            continue;
        };
        match Context::from_wgpu(setup) {
            Err(Error::DeviceUnsuitable { missing, .. }) => {
                assert!(
                    missing
                        .iter()
                        .any(|m| m.contains("max_storage_buffers_per_shader_stage"))
                );
                assert!(
                    missing
                        .iter()
                        .any(|m| m.contains("max_compute_invocations_per_workgroup"))
                );
            }
            other => panic!("expected DeviceUnsuitable, got {other:?}"),
        }
    }
}

#[test]
fn the_async_twins_give_what_the_blocking_calls_give() {
    let best = pollster::block_on(Context::new_async()).unwrap();
    let blocking = Context::new().unwrap();
    assert_eq!(best.adapter_info(), blocking.adapter_info());
    for ctx in common::all_backends() {
        let options = if ctx.backend() == gpu_activations::Backend::Cpu {
            gpu_activations::ContextOptions {
                backend: Some(ctx.backend()),
                allow_cpu_fallback: false,
                ..Default::default()
            }
        } else {
            common::same_adapter(&ctx)
        };
        let again = pollster::block_on(Context::with_options_async(options)).unwrap();
        assert_eq!(again.adapter_info(), ctx.adapter_info());
        // 17,000,000 floats: more than one 64 MiB staging chunk.
        let n = if ctx.backend() == gpu_activations::Backend::Cpu {
            1000
        } else {
            17_000_000
        };
        let x = common::uniform(13, n, -4.0, 4.0);
        let y = Tensor::from_slice(&ctx, &x, &[n])
            .unwrap()
            .sigmoid()
            .unwrap();
        let got = pollster::block_on(y.to_vec_async()).unwrap();
        assert!(got == y.to_vec().unwrap(), "{}", ctx.adapter_info());
        assert!((f64::from(got[7]) - Activation::Sigmoid.reference(f64::from(x[7]))).abs() < 1e-6);
    }
    for (ctx, setup, _) in embedded() {
        let storage_only = storage_buffer(&setup.device, 256, wgpu::BufferUsages::STORAGE);
        let v = Tensor::from_wgpu_buffer(ctx, &storage_only, 0, &[64]).unwrap();
        assert!(matches!(
            pollster::block_on(v.to_vec_async()),
            Err(Error::ExternalBuffer { .. })
        ));
    }
}

/// `labels` as the caller would store them in `dtype` (little-endian words).
fn label_bytes(labels: &[i64], dtype: DType) -> Vec<u8> {
    labels
        .iter()
        .flat_map(|&v| match dtype {
            DType::I64 => v.to_le_bytes().to_vec(),
            DType::I32 => (v as i32).to_le_bytes().to_vec(),
            _ => (v as u32).to_le_bytes().to_vec(),
        })
        .collect()
}

fn device_labels(ctx: &Context, setup: &WgpuSetup, labels: &[i64], dtype: DType) -> Tensor {
    let bytes = label_bytes(labels, dtype);
    let buffer = storage_buffer(&setup.device, bytes.len().max(16) as u64, ALL_USES);
    setup.queue.write_buffer(&buffer, 0, &bytes);
    Tensor::from_wgpu_buffer_as(ctx, &buffer, 0, &[labels.len()], dtype).unwrap()
}

#[test]
fn class_indices_on_the_device_in_every_integer_type_match_host_indices() {
    for (ctx, setup, errors) in embedded() {
        let (rows, classes) = (37, 1000);
        let logits = common::uniform(21, rows * classes, -5.0, 5.0);
        let z = Tensor::from_slice(ctx, &logits, &[rows, classes]).unwrap();
        let weight: Vec<f32> = (0..classes).map(|c| 0.5 + (c % 5) as f32 * 0.25).collect();
        let option_sets = [
            CrossEntropyOptions::default(),
            CrossEntropyOptions {
                reduction: Reduction::Sum,
                label_smoothing: 0.1,
                weight: Some(weight.clone()),
                ..Default::default()
            },
            CrossEntropyOptions {
                reduction: Reduction::Mean,
                weight: Some(weight),
                ignore_index: 7,
                ..Default::default()
            },
            CrossEntropyOptions {
                reduction: Reduction::None,
                ..Default::default()
            },
        ];
        for dtype in [DType::I64, DType::I32, DType::U32] {
            for o in &option_sets {
                let mut labels: Vec<i64> =
                    (0..rows).map(|r| ((r * 131) % classes) as i64).collect();
                labels[3] = 7; // ignored where the ignore index is 7
                if dtype != DType::U32 && o.ignore_index == -100 {
                    labels[5] = -100; // the default ignore index
                }
                let t = device_labels(ctx, setup, &labels, dtype);
                let want = z.cross_entropy(Targets::Indices(&labels), o).unwrap();
                let got = z.cross_entropy(Targets::Device(&t), o).unwrap();
                let case = format!("{} {dtype:?} {o:?}", ctx.adapter_info());
                let close = |what: &str, got: &Tensor, want: &Tensor, atol: f64| {
                    let want: Vec<f64> = want
                        .to_vec()
                        .unwrap()
                        .iter()
                        .map(|&v| f64::from(v))
                        .collect();
                    let got = got.to_vec().unwrap();
                    assert_all_close(&format!("{case} {what}"), &got, &want, &[], atol, 1e-6);
                };
                close("loss", &got.loss, &want.loss, 1e-7);
                close("grad", &got.grad, &want.grad, 1e-9);
            }
        }
        assert_handler_never_called(ctx, errors);
    }
}

#[test]
fn device_class_indices_out_of_range_are_typed_errors_naming_row_and_value() {
    for (ctx, setup, errors) in embedded() {
        let classes = 10;
        let z = Tensor::from_slice(ctx, &[0.5; 50], &[5, classes]).unwrap();
        let o = CrossEntropyOptions::default();
        let cases: [(&[i64], DType, usize, i64); 5] = [
            (&[0, 5, 10, -1, 1 << 40], DType::I64, 2, 10),
            (&[0, 5, 9, 1 << 40, -1], DType::I64, 3, 1 << 40),
            (&[1, -7, 3, 4, 12], DType::I32, 1, -7),
            (&[15, 1, 2, 3, 4], DType::U32, 0, 15),
            // −100 is not the ignore index of a u32 label: it reads as 4294967196.
            (&[1, 2, -100, 3, 4], DType::U32, 2, 4_294_967_196),
        ];
        for (labels, dtype, row, value) in cases {
            let t = device_labels(ctx, setup, labels, dtype);
            match z.cross_entropy(Targets::Device(&t), &o) {
                Err(Error::TargetOutOfRange {
                    row: r,
                    value: v,
                    classes: k,
                    ..
                }) => {
                    assert_eq!((r, v, k), (row, value, classes), "{labels:?} as {dtype:?}")
                }
                other => {
                    panic!("{labels:?} as {dtype:?}: expected TargetOutOfRange, got {other:?}")
                }
            }
        }
        // The same labels with −1 as the ignore index: row 2 (10) is still out of range.
        let ignoring = CrossEntropyOptions {
            ignore_index: -1,
            ..Default::default()
        };
        let t = device_labels(ctx, setup, &[0, -1, 10, 2, 3], DType::I64);
        assert!(matches!(
            z.cross_entropy(Targets::Device(&t), &ignoring),
            Err(Error::TargetOutOfRange { row: 2, .. })
        ));
        // Wrong element type, wrong length, an integer tensor where f32 is taken.
        let floats = Tensor::from_slice(ctx, &[0.0; 8], &[8]).unwrap();
        assert!(matches!(
            z.cross_entropy(Targets::Device(&floats), &o),
            Err(Error::DTypeMismatch { .. })
        ));
        let short = device_labels(ctx, setup, &[1, 2, 3], DType::I64);
        assert!(matches!(
            z.cross_entropy(Targets::Device(&short), &o),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(short.relu(), Err(Error::DTypeMismatch { .. })));
        assert!(matches!(short.to_vec(), Err(Error::DTypeMismatch { .. })));
        // After the errors the context still works.
        let t = device_labels(ctx, setup, &[0, 1, 2, 3, 4], DType::I64);
        assert!(z.cross_entropy(Targets::Device(&t), &o).is_ok());
        assert_handler_never_called(ctx, errors);
    }
}

/// Two devices of the caller's on the first adapter of `backend`, made from one instance.
fn two_devices_of_one_instance(target: Target) -> Option<(WgpuSetup, WgpuSetup)> {
    let (backend, name) = target;
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backend;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.enumerate_adapters(backend))
        .into_iter()
        .find(|a| name.as_ref().is_none_or(|n| a.get_info().name == *n))?;
    let open = || {
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .ok()?;
        Some(WgpuSetup {
            adapter_info: adapter.get_info(),
            device,
            queue,
        })
    };
    Some((open()?, open()?))
}

/// The `Id(index,epoch)` a buffer's `Debug` shows: the key by which wgpu looks it up in
/// whichever instance it is handed to.
fn buffer_id(buffer: &wgpu::Buffer) -> String {
    let text = format!("{buffer:?}");
    let start = text.find("id: ").map_or(0, |i| i + 4);
    text[start..].split(')').next().unwrap_or("").to_string()
}

/// The (index, epoch) of a buffer's id, from its debug form (`Id(index,epoch)`).
fn id_parts(buffer: &wgpu::Buffer) -> (u64, u64) {
    let id = buffer_id(buffer);
    let numbers: Vec<u64> = id
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    match numbers[..] {
        [index, epoch] => (index, epoch),
        _ => panic!("an id of an unexpected form: {id}"),
    }
}

fn refused(r: gpu_activations::Result<Tensor>, case: &str) -> String {
    match r {
        Err(Error::ExternalBuffer { rule, .. }) => rule,
        other => panic!("{case}: expected ExternalBuffer, got {other:?}"),
    }
}

#[test]
fn a_buffer_of_another_device_of_the_same_instance_is_refused() {
    for backend in backends() {
        let (ours, theirs) = two_devices_of_one_instance(backend).unwrap();
        let ctx = Context::from_wgpu(ours.clone()).unwrap();
        let x: Vec<f32> = (0..64).map(|i| i as f32 - 32.0).collect();
        let foreign = storage_buffer(&theirs.device, 256, ALL_USES);
        theirs
            .queue
            .write_buffer(&foreign, 0, bytemuck::cast_slice(&x));
        let case = format!("{} (one instance, two devices)", ctx.adapter_info());
        let rule = refused(Tensor::from_wgpu_buffer(&ctx, &foreign, 0, &[64]), &case);
        assert!(rule.contains("another device"), "{case}: {rule}");

        // Two contexts of the crate's own on one backend: a tensor of one, handed out as a
        // buffer, is a buffer of another device to the other.
        let options = || gpu_activations::ContextOptions {
            backend: Some(ctx.backend()),
            allow_cpu_fallback: false,
            ..Default::default()
        };
        let (a, b) = (
            Context::with_options(options()).unwrap(),
            Context::with_options(options()).unwrap(),
        );
        let ta = Tensor::from_slice(&a, &x, &[64]).unwrap();
        let tb = Tensor::from_slice(&b, &vec![7.0; 64], &[64]).unwrap();
        let (buffer, offset, _) = ta.as_wgpu_buffer().unwrap();
        let case = format!("{} (two contexts of the crate's)", a.adapter_info());
        let rule = refused(Tensor::from_wgpu_buffer(&b, &buffer, offset, &[64]), &case);
        assert!(rule.contains("another device"), "{case}: {rule}");
        // Neither context's data was touched.
        assert_eq!(ta.to_vec().unwrap(), x);
        assert_eq!(tb.to_vec().unwrap(), vec![7.0; 64]);
    }
}

#[test]
fn a_buffer_of_another_instance_is_refused_never_resolved_among_the_contexts_buffers() {
    for (ctx, _, errors) in embedded() {
        // A live buffer of the context's device, with data of its own.
        let mine = Tensor::from_slice(ctx, &[5.0; 256], &[256]).unwrap();
        let (my_buffer, _, _) = mine.as_wgpu_buffer().unwrap();
        // Another program's instance, whose buffer ids are counted from the same start: make
        // its buffers until one carries the id of ours, with another size.
        // Ids are (index, epoch), and the context's buffer may sit in a slot it has reused
        // (other tests share the context): a buffer that lands on our index but an earlier
        // epoch is dropped, so that the next one takes the slot with the next epoch.
        let (other, _) = caller_device(backends()[0].clone(), false, None).unwrap();
        let target = id_parts(&my_buffer);
        let mut made = Vec::new();
        let alias = loop {
            let b = storage_buffer(&other.device, 2048, ALL_USES);
            let id = id_parts(&b);
            if id == target {
                break b;
            }
            assert!(
                made.len() < 10_000 && id.1 <= target.1,
                "no id of the other instance matched {target:?} (last {id:?})"
            );
            if id.0 != target.0 {
                made.push(b);
            }
        };
        other
            .queue
            .write_buffer(&alias, 0, bytemuck::cast_slice(&[1.0f32; 512]));
        let case = format!("{} (another instance, an id of ours)", ctx.adapter_info());
        let rule = refused(Tensor::from_wgpu_buffer(ctx, &alias, 0, &[256]), &case);
        assert!(rule.contains("another device"), "{case}: {rule}");
        // An id that the context's instance has never handed out.
        let far: Vec<wgpu::Buffer> = (0..2000)
            .map(|_| storage_buffer(&other.device, 256, ALL_USES))
            .collect();
        let case = format!("{} (another instance, an unknown id)", ctx.adapter_info());
        let rule = refused(Tensor::from_wgpu_buffer(ctx, &far[1999], 0, &[64]), &case);
        assert!(rule.contains("another device"), "{case}: {rule}");
        // The context's own tensor is untouched and the context still works.
        assert_eq!(mine.relu().unwrap().to_vec().unwrap(), vec![5.0; 256]);
        assert_handler_never_called(ctx, errors);
    }
}

#[test]
fn to_vec_async_is_pending_until_the_device_has_finished() {
    use std::future::Future;
    use std::task::{Poll, Waker};
    let (rows, cols) = (4096, 1024);
    let x = common::uniform(31, rows * cols, -4.0, 4.0);
    let first_row: Vec<f64> = x[..cols].iter().map(|&v| f64::from(v)).collect();
    let want = softmax_ref::forward_row(&first_row, false);
    for ctx in common::gpus() {
        let xt = Tensor::from_slice(ctx, &x, &[rows, cols]).unwrap();
        ctx.synchronize().unwrap();
        // Sixteen passes over 16 MiB: a long while on a software adapter. The first softmax
        // gives the rows' softmax, the next ones the softmax of a softmax, ...: read the first.
        let y = xt.softmax().unwrap();
        let mut z = y.clone();
        for _ in 0..15 {
            z = z.softmax().unwrap();
        }
        // Recorded, not yet submitted: the read-back submits it (natively from a helper
        // thread, since a driver may run or block a submission in the submitting call).
        let mut fut = std::pin::pin!(async { (y.to_vec_async().await, z.to_vec_async().await) });
        let mut cx = std::task::Context::from_waker(Waker::noop());
        let started = std::time::Instant::now();
        let first = fut.as_mut().poll(&mut cx);
        let first_poll = started.elapsed();
        let pending = first.is_pending();
        let polls = std::iter::repeat_with(|| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            fut.as_mut().poll(&mut cx)
        });
        let (yv, zv) = match first {
            Poll::Ready(r) => r,
            Poll::Pending => polls
                .take(120_000)
                .find_map(|p| match p {
                    Poll::Ready(r) => Some(r),
                    Poll::Pending => None,
                })
                .expect("the read-back finishes"),
        };
        let case = format!("{} (first poll {first_poll:?})", ctx.adapter_info());
        common::report(&format!("[interop] to_vec_async: {case}"));
        assert!(pending, "{case}: the first poll waited for the device");
        let yv = yv.unwrap();
        assert_all_close(&case, &yv[..cols], &want, &[&x[..cols]], 1e-6, 1e-5);
        assert_eq!(zv.unwrap(), z.to_vec().unwrap(), "{case}");
    }
}

/// A validation error inside the crate's work (a caller's buffer destroyed under a queued op)
/// comes back from the asynchronous synchronize as from the blocking one, and the context
/// goes on working: what the browser tests check in Chromium, natively on every adapter.
#[test]
fn an_error_of_the_crates_work_comes_back_from_synchronize_async() {
    for (ctx, setup, _) in embedded() {
        let buffer = storage_buffer(&setup.device, 256, ALL_USES);
        let view = Tensor::from_wgpu_buffer(ctx, &buffer, 0, &[64]).unwrap();
        let y = view.relu().unwrap();
        buffer.destroy();
        match pollster::block_on(ctx.synchronize_async()) {
            Err(Error::Gpu { message, .. }) => assert!(!message.is_empty()),
            other => panic!(
                "{}: expected a GPU error, got {other:?}",
                ctx.adapter_info()
            ),
        }
        drop(y);
        let z = Tensor::from_slice(ctx, &[-1.0, 2.0], &[2]).unwrap();
        assert_eq!(
            pollster::block_on(z.relu().unwrap().to_vec_async()).unwrap(),
            vec![0.0, 2.0]
        );
        pollster::block_on(ctx.synchronize_async()).unwrap();
    }
}
