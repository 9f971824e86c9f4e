//! The pipeline cache: shader modules and compute pipelines, built on first use.
//!
//! A [`Kernel`] is one entry point of a module ([`ModuleRef`]: a name and the function that
//! composes its source, which the op layer supplies) and the storage buffers it binds. By house
//! convention binding 0 of every shader is the uniform `Params` block, bound with a dynamic
//! offset into the recorder's parameter arena, and storage buffers follow at bindings 1, 2, ….
//! Modules are built once per `(module, storage type)`, pipelines once per `(kernel, storage
//! type, override constants)`, and shared by every launch. A compiler's message points at the
//! file and line the error came from, not at the composed source.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use super::PendingScopes;
use crate::error::{Error, Result};
use crate::layout::DType;

/// Size of one slot of the parameter arena; every `Params` struct must fit in it.
pub(crate) const PARAMS_SLOT: u64 = 256;

/// A shader module as the device layer sees it: a name, unique per module, and the function
/// that composes its source for a storage type (the op layer's registry, [`crate::wgsl`]).
#[derive(Clone, Copy)]
pub(crate) struct ModuleRef {
    pub name: &'static str,
    pub compose: fn(&'static str, DType) -> Option<Composed>,
}

impl PartialEq for ModuleRef {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ModuleRef {}

impl std::hash::Hash for ModuleRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl std::fmt::Debug for ModuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// A composed WGSL source and where each of its lines came from.
#[derive(Clone, Debug)]
pub(crate) struct Composed {
    pub source: String,
    pub pieces: Vec<Piece>,
}

/// A file's lines within a composed source.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Piece {
    /// The file, without `.wgsl`.
    pub file: &'static str,
    /// Its first line in the composed source (1-based).
    pub first_line: usize,
    /// How many lines it has.
    pub lines: usize,
}

impl Composed {
    /// The file and line (1-based) of line `line` of the composed source.
    pub fn locate(&self, line: usize) -> Option<(&'static str, usize)> {
        self.pieces
            .iter()
            .find(|p| line >= p.first_line && line < p.first_line + p.lines)
            .map(|p| (p.file, line - p.first_line + 1))
    }

    /// `message` with every `wgsl:LINE:COLUMN` (naga's and Tint's way of pointing into the
    /// source) turned into `FILE.wgsl:LINE:COLUMN` of the file the line came from.
    pub fn relabel(&self, message: &str) -> String {
        const MARK: &str = "wgsl:";
        let mut out = String::with_capacity(message.len());
        let mut rest = message;
        while let Some(at) = rest.find(MARK) {
            out.push_str(&rest[..at]);
            let after = &rest[at + MARK.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            match after[..digits]
                .parse::<usize>()
                .ok()
                .and_then(|l| self.locate(l))
            {
                Some((file, line)) => {
                    let _ = write!(out, "{file}.wgsl:{line}");
                    rest = &after[digits..];
                }
                None => {
                    out.push_str(MARK);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
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
    pub module: ModuleRef,
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
    modules: Mutex<HashMap<(ModuleRef, DType), (wgpu::ShaderModule, Composed)>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
}

/// One pipeline a context has built: its family, storage type, entry point and override
/// constants, as [`crate::Context::pipelines_built`] lists them.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineRecord {
    /// The module's name: its kernel family (see [`crate::wgsl::modules`]).
    pub module: &'static str,
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
        scopes: &PendingScopes,
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
        let (module, composed) = self.module(device, scopes, kernel.module, storage)?;
        let built = Arc::new(build_pipeline(
            device, scopes, &module, &composed, kernel, storage, constants,
        )?);
        // Another thread may have built the same pipeline meanwhile; keep the first.
        Ok(lock(&self.pipelines)?.entry(key).or_insert(built).clone())
    }

    /// Every pipeline built so far, sorted by family, storage type, entry point and constants.
    pub fn built(&self) -> Result<Vec<PipelineRecord>> {
        let mut all: Vec<PipelineRecord> = lock(&self.pipelines)?
            .keys()
            .map(|(kernel, storage, constants)| PipelineRecord {
                module: kernel.module.name,
                storage: *storage,
                entry: kernel.entry,
                constants: constants
                    .iter()
                    .map(|&(name, bits)| (name, f64::from_bits(bits)))
                    .collect(),
            })
            .collect();
        all.sort_by(|a, b| {
            (a.module, a.storage.name(), a.entry)
                .cmp(&(b.module, b.storage.name(), b.entry))
                .then_with(|| format!("{:?}", a.constants).cmp(&format!("{:?}", b.constants)))
        });
        Ok(all)
    }

    fn module(
        &self,
        device: &wgpu::Device,
        scopes: &PendingScopes,
        module: ModuleRef,
        storage: DType,
    ) -> Result<(wgpu::ShaderModule, Composed)> {
        let mut modules = lock(&self.modules)?;
        if let Some(m) = modules.get(&(module, storage)) {
            return Ok(m.clone());
        }
        let composed = (module.compose)(module.name, storage).ok_or(Error::Shader {
            shader: module.name,
            entry: "(module)",
            message: format!("the family has no kernels for {storage} storage"),
        })?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let built = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(module.name),
            source: wgpu::ShaderSource::Wgsl(composed.source.as_str().into()),
        });
        let labels = composed.clone();
        let name = module.name;
        scopes.pop(scope, move |e| Error::Shader {
            shader: name,
            entry: "(module)",
            message: labels.relabel(&e.to_string()),
        })?;
        modules.insert((module, storage), (built.clone(), composed.clone()));
        Ok((built, composed))
    }
}

fn build_pipeline(
    device: &wgpu::Device,
    scopes: &PendingScopes,
    module: &wgpu::ShaderModule,
    composed: &Composed,
    kernel: &Kernel,
    storage: DType,
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
    let labels = composed.clone();
    let (shader, entry) = (kernel.module.name, kernel.entry);
    scopes.pop(scope, move |e| Error::Shader {
        shader,
        entry,
        message: format!("{storage} storage: {}", labels.relabel(&e.to_string())),
    })?;
    Ok(Pipeline { pipeline, layout })
}

/// Locks a mutex, turning poisoning (a panic on another thread) into an error.
pub(crate) fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| Error::Gpu {
        op: "lock",
        message: "a thread panicked while holding the device state".into(),
    })
}
