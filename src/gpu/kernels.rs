//! The shader registry and the pipeline cache.
//!
//! Every kernel family is one `shaders/*.wgsl` file ([`Shader`]); every entry point of a family
//! is a [`Kernel`] that names its storage bindings. By house convention binding 0 of every
//! shader is the uniform `Params` block, bound with a dynamic offset into the recorder's
//! parameter arena, and storage buffers follow at bindings 1, 2, ….
//! Families written against the storage codec (`shaders/storage_*.wgsl`) are built once per
//! float storage type ([`Shader::source_for`]). Pipelines are built once per `(kernel, storage
//! type, override constants)` and shared by every launch.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::layout::DType;

/// Size of one slot of the parameter arena; every `Params` struct must fit in it.
pub(crate) const PARAMS_SLOT: u64 = 256;

/// A kernel family: one WGSL file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    /// Elementwise activations, forward and backward.
    Activation,
    /// Row-wise softmax and log-softmax, reducing through workgroup memory.
    Softmax,
    /// Row-wise softmax and log-softmax, reducing through subgroups.
    SoftmaxSubgroup,
    /// Fused softmax cross-entropy, reducing through workgroup memory.
    CrossEntropy,
    /// Fused softmax cross-entropy, reducing through subgroups.
    CrossEntropySubgroup,
    /// Fused sigmoid binary cross-entropy with logits.
    BceWithLogits,
    /// Grouped sums that reduce losses to a scalar.
    Reduce,
    /// A plain vec4 copy: the bandwidth ceiling every benchmark is measured against.
    Copy,
    /// Class indices stored on the device, converted and checked for the cross-entropy.
    ClassIndex,
    /// Gated activations (GLU, SwiGLU, GeGLU), forward and both gradients.
    Gated,
    /// PReLU with a learnable slope, forward and both gradients.
    Prelu,
    /// Softmax, log-softmax and softmin along a dim other than the last (strided lines).
    SoftmaxStrided,
    /// Conversion between f32 and half storage (f16, bf16).
    Convert,
    /// Batched transpose of the last two dims (PyTorch's class-at-dim-1 layout and back).
    Transpose,
    /// Negative log-likelihood of log-probabilities, loss and gradient.
    Nll,
    /// Cross-entropy of an LLM head with z-loss and softcap, fused.
    CrossEntropyHead,
    /// Tiled matrix products of the linear layer, forward and backward.
    Matmul,
    /// Parameter updates: SGD and Adam with an L2 term.
    Optimizer,
}

impl Shader {
    /// Every kernel family, for validation and listing.
    pub const ALL: [Shader; 18] = [
        Shader::Activation,
        Shader::Softmax,
        Shader::SoftmaxSubgroup,
        Shader::CrossEntropy,
        Shader::CrossEntropySubgroup,
        Shader::BceWithLogits,
        Shader::Reduce,
        Shader::Copy,
        Shader::ClassIndex,
        Shader::Gated,
        Shader::Prelu,
        Shader::SoftmaxStrided,
        Shader::Convert,
        Shader::Transpose,
        Shader::Nll,
        Shader::CrossEntropyHead,
        Shader::Matmul,
        Shader::Optimizer,
    ];

    /// The family's file name (without `.wgsl`).
    pub fn name(self) -> &'static str {
        match self {
            Shader::Activation => "activation",
            Shader::Softmax => "softmax",
            Shader::SoftmaxSubgroup => "softmax+subgroup",
            Shader::CrossEntropy => "cross_entropy",
            Shader::CrossEntropySubgroup => "cross_entropy+subgroup",
            Shader::BceWithLogits => "bce_with_logits",
            Shader::Reduce => "reduce",
            Shader::Copy => "copy",
            Shader::ClassIndex => "class_index",
            Shader::Gated => "gated",
            Shader::Prelu => "prelu",
            Shader::SoftmaxStrided => "softmax_strided",
            Shader::Convert => "convert",
            Shader::Transpose => "transpose",
            Shader::Nll => "nll",
            Shader::CrossEntropyHead => "cross_entropy_head",
            Shader::Matmul => "matmul",
            Shader::Optimizer => "optimizer",
        }
    }

    /// Whether the family is written against the storage codec, and so runs on f16 and bf16
    /// storage as well as f32 (the row-softmax families: their vec4 kernels).
    pub fn has_half_storage(self) -> bool {
        matches!(
            self,
            Shader::Activation
                | Shader::Copy
                | Shader::Convert
                | Shader::Softmax
                | Shader::SoftmaxSubgroup
                | Shader::BceWithLogits
        )
    }

    /// The WGSL source for tensors stored as `storage` (`F32`, `F16` or `BF16`): the family's
    /// files with the storage codec's file appended. `None` for a family without half storage
    /// asked for a half type.
    pub fn source_for(self, storage: DType) -> Option<Cow<'static, str>> {
        let codec = match storage {
            DType::F32 if !self.has_half_storage() => return Some(Cow::Borrowed(self.body())),
            DType::F32 => include_str!("../../shaders/storage_f32.wgsl"),
            DType::F16 if self.has_half_storage() => {
                include_str!("../../shaders/storage_f16.wgsl")
            }
            DType::BF16 if self.has_half_storage() => {
                include_str!("../../shaders/storage_bf16.wgsl")
            }
            _ => return None,
        };
        Some(Cow::Owned(format!("{}\n{codec}", self.body())))
    }

    /// The WGSL source for f32 tensors: the family's file with the helper files it uses
    /// (see [`Shader::source_for`] for the other storage types).
    pub fn source(self) -> Cow<'static, str> {
        self.source_for(DType::F32)
            .unwrap_or(Cow::Borrowed(self.body()))
    }

    /// Whether the module uses subgroup operations (and so needs the `SUBGROUP` feature).
    pub fn needs_subgroups(self) -> bool {
        matches!(self, Shader::SoftmaxSubgroup | Shader::CrossEntropySubgroup)
    }

    /// The family's file with the helper files it uses appended (WGSL declarations may come
    /// in any order): math.wgsl for the elementwise families, online_softmax.wgsl for the row
    /// families, and one of the two workgroup-reduction files (workgroup memory, or subgroups
    /// where the adapter has them). A codec family also needs a storage codec appended.
    fn body(self) -> &'static str {
        match self {
            Shader::Activation => concat!(
                include_str!("../../shaders/activation.wgsl"),
                include_str!("../../shaders/math.wgsl"),
                include_str!("../../shaders/special.wgsl")
            ),
            Shader::Softmax => concat!(
                include_str!("../../shaders/softmax.wgsl"),
                include_str!("../../shaders/online_softmax.wgsl"),
                include_str!("../../shaders/special.wgsl"),
                include_str!("../../shaders/row_reduce_shared.wgsl")
            ),
            Shader::SoftmaxSubgroup => concat!(
                include_str!("../../shaders/softmax.wgsl"),
                include_str!("../../shaders/online_softmax.wgsl"),
                include_str!("../../shaders/special.wgsl"),
                include_str!("../../shaders/row_reduce_subgroup.wgsl"),
                include_str!("../../shaders/softmax_subgroup_rows.wgsl"),
                include_str!("../../shaders/row_cache.wgsl")
            ),
            Shader::CrossEntropy => concat!(
                include_str!("../../shaders/cross_entropy.wgsl"),
                include_str!("../../shaders/online_softmax.wgsl"),
                include_str!("../../shaders/special.wgsl"),
                include_str!("../../shaders/row_reduce_shared.wgsl")
            ),
            Shader::CrossEntropySubgroup => concat!(
                include_str!("../../shaders/cross_entropy.wgsl"),
                include_str!("../../shaders/online_softmax.wgsl"),
                include_str!("../../shaders/special.wgsl"),
                include_str!("../../shaders/row_reduce_subgroup.wgsl"),
                include_str!("../../shaders/cross_entropy_subgroup_rows.wgsl"),
                include_str!("../../shaders/row_cache.wgsl")
            ),
            Shader::BceWithLogits => concat!(
                include_str!("../../shaders/bce_with_logits.wgsl"),
                include_str!("../../shaders/math.wgsl"),
                include_str!("../../shaders/special.wgsl")
            ),
            Shader::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Shader::Copy => include_str!("../../shaders/copy.wgsl"),
            Shader::ClassIndex => include_str!("../../shaders/class_index.wgsl"),
            Shader::Prelu => include_str!("../../shaders/prelu.wgsl"),
            Shader::SoftmaxStrided => concat!(
                include_str!("../../shaders/softmax_strided.wgsl"),
                include_str!("../../shaders/online_softmax.wgsl"),
                include_str!("../../shaders/special.wgsl")
            ),
            Shader::Gated => concat!(
                include_str!("../../shaders/gated.wgsl"),
                include_str!("../../shaders/math.wgsl"),
                include_str!("../../shaders/special.wgsl")
            ),
            Shader::Convert => include_str!("../../shaders/convert.wgsl"),
            Shader::Transpose => include_str!("../../shaders/transpose.wgsl"),
            Shader::Nll => include_str!("../../shaders/nll.wgsl"),
            Shader::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Shader::Optimizer => include_str!("../../shaders/optimizer.wgsl"),
            Shader::CrossEntropyHead => concat!(
                include_str!("../../shaders/cross_entropy_head.wgsl"),
                include_str!("../../shaders/online_softmax.wgsl"),
                include_str!("../../shaders/special.wgsl"),
                include_str!("../../shaders/math.wgsl")
            ),
        }
    }
}

/// How a kernel binds one storage buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// `var<storage, read>` at this binding.
    Read(u32),
    /// `var<storage, read_write>` at this binding.
    ReadWrite(u32),
}

impl Slot {
    fn binding(self) -> u32 {
        match self {
            Slot::Read(b) | Slot::ReadWrite(b) => b,
        }
    }
}

/// One entry point and the storage buffers it binds, in the order a launch passes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Kernel {
    pub shader: Shader,
    pub entry: &'static str,
    pub slots: &'static [Slot],
}

/// A built pipeline and the layout its bind groups use.
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

type PipelineKey = (Kernel, DType, Vec<(&'static str, u64)>);

/// Shader modules and pipelines, built on first use and kept for the context's lifetime.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<(Shader, DType), wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
}

/// One pipeline a context has built: its family, storage type, entry point and override
/// constants, as [`crate::Context::pipelines_built`] lists them.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineRecord {
    /// The kernel family (one composed module per family and storage type).
    pub shader: Shader,
    /// The storage type the module was composed for.
    pub storage: DType,
    /// The entry point.
    pub entry: &'static str,
    /// The override constants the pipeline was created with, by name.
    pub constants: Vec<(&'static str, f64)>,
}

impl PipelineCache {
    /// The pipeline for `kernel` on tensors stored as `storage`, with these override
    /// constants, built once.
    pub fn get(
        &self,
        device: &wgpu::Device,
        kernel: &Kernel,
        storage: DType,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<Pipeline>> {
        let key: PipelineKey = (
            *kernel,
            storage,
            constants.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
        );
        if let Some(p) = lock(&self.pipelines)?.get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(device, kernel.shader, storage)?;
        let built = Arc::new(build_pipeline(device, &module, kernel, constants)?);
        // Another thread may have built the same pipeline meanwhile; keep the first.
        Ok(lock(&self.pipelines)?.entry(key).or_insert(built).clone())
    }

    /// Every pipeline built so far, sorted by family, storage type, entry point and constants.
    pub fn built(&self) -> Result<Vec<PipelineRecord>> {
        let mut all: Vec<PipelineRecord> = lock(&self.pipelines)?
            .keys()
            .map(|(kernel, storage, constants)| PipelineRecord {
                shader: kernel.shader,
                storage: *storage,
                entry: kernel.entry,
                constants: constants
                    .iter()
                    .map(|&(name, bits)| (name, f64::from_bits(bits)))
                    .collect(),
            })
            .collect();
        all.sort_by(|a, b| {
            (a.shader.name(), a.storage.name(), a.entry)
                .cmp(&(b.shader.name(), b.storage.name(), b.entry))
                .then_with(|| format!("{:?}", a.constants).cmp(&format!("{:?}", b.constants)))
        });
        Ok(all)
    }

    fn module(
        &self,
        device: &wgpu::Device,
        shader: Shader,
        storage: DType,
    ) -> Result<wgpu::ShaderModule> {
        let mut modules = lock(&self.modules)?;
        if let Some(m) = modules.get(&(shader, storage)) {
            return Ok(m.clone());
        }
        let source = shader.source_for(storage).ok_or(Error::Shader {
            shader: shader.name(),
            entry: "(module)",
            message: format!("the family has no kernels for {storage} storage"),
        })?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(shader.name()),
            source: wgpu::ShaderSource::Wgsl(source),
        });
        if let Some(e) = super::pop_now(scope) {
            return Err(Error::Shader {
                shader: shader.name(),
                entry: "(module)",
                message: e.to_string(),
            });
        }
        modules.insert((shader, storage), module.clone());
        Ok(module)
    }
}

fn build_pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    kernel: &Kernel,
    constants: &[(&'static str, f64)],
) -> Result<Pipeline> {
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: None,
        },
        count: None,
    }];
    entries.extend(kernel.slots.iter().map(|slot| wgpu::BindGroupLayoutEntry {
        binding: slot.binding(),
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage {
                read_only: matches!(slot, Slot::Read(_)),
            },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }));
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(kernel.entry),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(kernel.entry),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(kernel.entry),
        layout: Some(&pipeline_layout),
        module,
        entry_point: Some(kernel.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    if let Some(e) = super::pop_now(scope) {
        return Err(Error::Shader {
            shader: kernel.shader.name(),
            entry: kernel.entry,
            message: e.to_string(),
        });
    }
    Ok(Pipeline { pipeline, layout })
}

/// Locks a mutex, turning poisoning (a panic on another thread) into an error.
pub(crate) fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| Error::Gpu {
        op: "lock",
        message: "a thread panicked while holding the device state".into(),
    })
}
