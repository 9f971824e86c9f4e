//! Choosing an adapter and owning the device: [`Context`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::gpu::pipelines::PipelineRecord;
use crate::gpu::{DeviceFacts, DeviceOwner, Gpu, GpuHolder, SubgroupSizes};

/// Environment variable that picks the backend when the options leave it open.
pub const BACKEND_ENV: &str = "GPU_ACTIVATIONS_BACKEND";

/// Environment variable that picks the adapter by name when the options leave it open: only
/// adapters whose name contains it (case-insensitive) are considered.
pub const ADAPTER_ENV: &str = "GPU_ACTIVATIONS_ADAPTER";

/// llvmpipe's limit on one invocation's loop iterations (all its loops together).
const LLVMPIPE_LOOP_LIMIT: usize = 65_535;

/// The API that runs the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Vulkan (lavapipe, NVIDIA, AMD, Intel, MoltenVK…).
    Vulkan,
    /// Apple Metal.
    Metal,
    /// Direct3D 12 (including WARP).
    Dx12,
    /// OpenGL / OpenGL ES (compute shaders need GL 4.3 / ES 3.1).
    Gl,
    /// A browser's WebGPU (wasm32 only).
    WebGpu,
    /// No GPU: the f64 CPU reference in [`crate::cpu`].
    Cpu,
}

impl Backend {
    /// Every backend, in the order `auto` prefers among equally capable adapters.
    pub const ALL: [Backend; 6] = [
        Backend::Vulkan,
        Backend::Metal,
        Backend::Dx12,
        Backend::Gl,
        Backend::WebGpu,
        Backend::Cpu,
    ];

    /// The lower-case name used on the command line and in the environment.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Vulkan => "vulkan",
            Backend::Metal => "metal",
            Backend::Dx12 => "dx12",
            Backend::Gl => "gl",
            Backend::WebGpu => "webgpu",
            Backend::Cpu => "cpu",
        }
    }

    /// Parses a backend name; `auto` (or an empty string) means "let the context choose".
    pub fn parse_choice(name: &str) -> Result<Option<Backend>> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(None),
            other => other.parse().map(Some),
        }
    }

    fn wgpu_backends(self) -> wgpu::Backends {
        match self {
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
            Backend::WebGpu => wgpu::Backends::BROWSER_WEBGPU,
            Backend::Cpu => wgpu::Backends::empty(),
        }
    }

    fn from_wgpu(b: wgpu::Backend) -> Option<Backend> {
        match b {
            wgpu::Backend::Vulkan => Some(Backend::Vulkan),
            wgpu::Backend::Metal => Some(Backend::Metal),
            wgpu::Backend::Dx12 => Some(Backend::Dx12),
            wgpu::Backend::Gl => Some(Backend::Gl),
            wgpu::Backend::BrowserWebGpu => Some(Backend::WebGpu),
            _ => None,
        }
    }
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::UnknownBackend(s.to_string()))
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether row reductions may use subgroup operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Subgroups {
    /// Use them when the adapter offers `SUBGROUP`.
    #[default]
    Auto,
    /// Never use them: reduce through workgroup memory (for drivers that misreport them).
    Off,
}

/// How row operations (softmax, log-softmax, cross-entropy) cover a row. `Auto` chooses by
/// shape and adapter; the others force one kernel, for testing and tuning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RowStrategy {
    /// Choose by shape and adapter.
    #[default]
    Auto,
    /// One invocation per row.
    PerRow,
    /// Rows split into segments, one invocation per segment, combined in a second launch.
    Segmented,
    /// One workgroup per row, reducing through subgroups or workgroup memory.
    Workgroup,
    /// One subgroup per row, the row held in registers, where the adapter has subgroups and
    /// the row fits (softmax, log-softmax and class-index cross-entropy); otherwise as `Auto`.
    Subgroup,
}

/// Which kernel of `shaders/matmul.wgsl` forms the linear layer's matrix products. `Auto`
/// chooses by adapter; the others force one, for testing and tuning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatmulKernel {
    /// `Tiled` on hardware adapters, `Registers` on software ones (CPU rasterisers, where
    /// workgroup memory and barriers are slow).
    #[default]
    Auto,
    /// 64 × 64 blocks of the product through tiles in workgroup memory.
    Tiled,
    /// 4 × 4 patches of the product in registers, operands read as vec4s straight from memory.
    Registers,
}

/// How to build a [`Context`].
#[derive(Clone, Debug)]
pub struct ContextOptions {
    /// The backend to use; `None` reads [`BACKEND_ENV`] and otherwise picks the best adapter.
    pub backend: Option<Backend>,
    /// Only adapters whose name contains this text (case-insensitive), e.g. `"swiftshader"`
    /// when several adapters share a backend; `None` reads [`ADAPTER_ENV`] and otherwise
    /// considers every adapter.
    pub adapter: Option<String>,
    /// Whether to fall back to the CPU reference when no adapter is found.
    pub allow_cpu_fallback: bool,
    /// Subgroup policy for row reductions.
    pub subgroups: Subgroups,
    /// Which kernel covers a row in row operations.
    pub row_strategy: RowStrategy,
    /// Which kernel forms matrix products.
    pub matmul_kernel: MatmulKernel,
    /// The longest a read-back or synchronize waits before failing with [`Error::Timeout`].
    pub readback_timeout: Duration,
    /// A cap, in bytes, on any one buffer the context allocates, below the adapter's
    /// `max_buffer_size` (`None`: the adapter's limit). Tensors larger than a buffer are split
    /// into several buffers either way; a small cap exercises that path cheaply in tests.
    pub max_buffer_bytes: Option<u64>,
    /// A cap, in bytes, on any one storage binding, below the adapter's
    /// `max_storage_buffer_binding_size` (`None`: the adapter's limit). Longer tensors and rows
    /// are covered by several launches either way; a cap makes that path as cheap to test on
    /// an adapter with 1 GiB bindings (SwiftShader) as on one with 128 MiB (lavapipe).
    pub max_binding_bytes: Option<u64>,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            backend: None,
            adapter: None,
            allow_cpu_fallback: true,
            subgroups: Subgroups::Auto,
            row_strategy: RowStrategy::Auto,
            matmul_kernel: MatmulKernel::Auto,
            readback_timeout: Duration::from_secs(120),
            max_buffer_bytes: None,
            max_binding_bytes: None,
        }
    }
}

/// What an adapter is, as chosen by a context or listed by [`Context::adapters`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    /// The adapter's name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// The backend that drives it.
    pub backend: Backend,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: wgpu::DeviceType,
    /// Driver name (may be empty).
    pub driver: String,
    /// Driver version information (may be empty).
    pub driver_info: String,
    /// The adapter's optional features (`SUBGROUP`, `SHADER_F16`, …); empty for the CPU backend.
    pub features: wgpu::Features,
}

impl AdapterSummary {
    fn of(adapter: &wgpu::Adapter) -> Option<AdapterSummary> {
        let info = adapter.get_info();
        Some(AdapterSummary {
            backend: Backend::from_wgpu(info.backend)?,
            name: info.name,
            device_type: info.device_type,
            driver: info.driver,
            driver_info: info.driver_info,
            features: adapter.features(),
        })
    }

    fn cpu() -> AdapterSummary {
        AdapterSummary {
            name: "CPU reference (f64 arithmetic)".into(),
            backend: Backend::Cpu,
            device_type: wgpu::DeviceType::Cpu,
            driver: "gpu-activations".into(),
            driver_info: env!("CARGO_PKG_VERSION").into(),
            features: wgpu::Features::empty(),
        }
    }

    /// Whether this adapter is real GPU hardware rather than a software rasteriser.
    pub fn is_hardware(&self) -> bool {
        !matches!(
            self.device_type,
            wgpu::DeviceType::Cpu | wgpu::DeviceType::Other
        )
    }

    /// The most loop iterations one shader invocation runs on this adapter, where it has such
    /// a limit: Mesa's llvmpipe (lavapipe on Vulkan, and on GL) ends an invocation after
    /// 65,535 iterations of all its loops together, silently (`LP_MAX_TGSI_LOOP_ITERATIONS`).
    pub fn loop_limit(&self) -> Option<usize> {
        let llvmpipe = |s: &str| s.to_ascii_lowercase().contains("llvmpipe");
        (llvmpipe(&self.name) || llvmpipe(&self.driver)).then_some(LLVMPIPE_LOOP_LIMIT)
    }
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {:?}", self.name, self.backend, self.device_type)?;
        if !self.driver.is_empty() || !self.driver_info.is_empty() {
            write!(f, ", {} {}", self.driver, self.driver_info)?;
        }
        f.write_str(")")
    }
}

/// Owns the instance, adapter, device, queue, pipeline cache and buffer pool, or stands for
/// the CPU backend. Cloning is cheap (an `Arc`); a context is `Send + Sync`.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub summary: AdapterSummary,
    pub why: String,
    pub gpu: Option<Gpu>,
    /// Which kernel row operations use.
    pub row_strategy: RowStrategy,
    /// Which kernel matrix products use.
    pub matmul_kernel: MatmulKernel,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.inner.summary)
            .finish()
    }
}

impl Context {
    /// The best adapter available: [`BACKEND_ENV`] if set, else hardware first, then a
    /// software adapter (lavapipe, WARP, llvmpipe GL), then the CPU reference. The adapters are
    /// enumerated once per process, by the first context.
    pub fn new() -> Result<Context> {
        Context::with_options(ContextOptions::default())
    }

    /// The CPU reference backend, which needs no adapter.
    pub fn cpu() -> Context {
        Context::from_inner(Inner {
            summary: AdapterSummary::cpu(),
            why: "the CPU backend was requested".into(),
            gpu: None,
            row_strategy: RowStrategy::Auto,
            matmul_kernel: MatmulKernel::Auto,
        })
    }

    /// A context on the backend and with the policies in `options`.
    pub fn with_options(options: ContextOptions) -> Result<Context> {
        pollster::block_on(Context::with_options_async(options))
    }

    /// [`Context::new`] without blocking, for a browser (wasm32 and WebGPU) or an async runtime.
    pub async fn new_async() -> Result<Context> {
        Context::with_options_async(ContextOptions::default()).await
    }

    /// [`Context::with_options`] without blocking.
    pub async fn with_options_async(options: ContextOptions) -> Result<Context> {
        let requested = match options.backend {
            Some(b) => Some(b),
            None => match std::env::var(BACKEND_ENV) {
                Ok(v) => Backend::parse_choice(&v)?,
                Err(_) => None,
            },
        };
        if requested == Some(Backend::Cpu) {
            return Ok(Context::cpu());
        }
        let wanted_name = match &options.adapter {
            Some(name) => Some(name.clone()),
            None => std::env::var(ADAPTER_ENV)
                .ok()
                .filter(|v| !v.trim().is_empty()),
        }
        .map(|name| name.trim().to_lowercase());
        let wanted = requested.map_or(wgpu::Backends::all(), Backend::wgpu_backends);
        let best = adapters()
            .await
            .into_iter()
            .filter(|a| wanted.contains(a.get_info().backend.into()))
            .filter_map(|a| {
                let summary = AdapterSummary::of(&a)?;
                if let Some(wanted) = &wanted_name
                    && !summary.name.to_lowercase().contains(wanted.as_str())
                {
                    return None;
                }
                let compute = a
                    .get_downlevel_capabilities()
                    .flags
                    .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS);
                compute.then_some((rank(&summary), a, summary))
            })
            .min_by_key(|(r, _, _)| *r);
        let Some((_, adapter, summary)) = best else {
            if requested.is_none() && wanted_name.is_none() && options.allow_cpu_fallback {
                return Ok(Context::from_inner(Inner {
                    summary: AdapterSummary::cpu(),
                    why: "no GPU adapter was found; using the CPU reference".into(),
                    gpu: None,
                    row_strategy: RowStrategy::Auto,
                    matmul_kernel: MatmulKernel::Auto,
                }));
            }
            let mut wanted = requested.map_or(String::new(), |b| format!(" for backend {b}"));
            if let Some(name) = &wanted_name {
                wanted.push_str(&format!(" named like {name:?}"));
            }
            return Err(Error::NoAdapter { wanted });
        };
        let why = match (requested, &wanted_name) {
            (_, Some(name)) => format!("an adapter named like {name:?} was requested"),
            (Some(b), None) => format!("backend {b} was requested"),
            (None, None) if summary.is_hardware() => "the best hardware adapter found".into(),
            (None, None) => {
                "no hardware adapter was found; this is the best software adapter".into()
            }
        };
        let gpu = open_device(adapter, &summary, &options).await?;
        Ok(Context::from_inner(Inner {
            summary,
            why,
            gpu: Some(gpu),
            row_strategy: options.row_strategy,
            matmul_kernel: options.matmul_kernel,
        }))
    }

    /// A context on a device the caller already runs (their adapter's facts, device and
    /// queue; modelled on cubecl's `WgpuSetup`), with the default options.
    /// See [`Context::from_wgpu_with_options`].
    pub fn from_wgpu(setup: WgpuSetup) -> Result<Context> {
        Context::from_wgpu_with_options(setup, &ContextOptions::default())
    }

    /// A context on the caller's device. It requests nothing: it checks that the device has
    /// the limits the kernels need ([`Error::DeviceUnsuitable`] lists each one missing), uses
    /// subgroup kernels only where `SUBGROUP` is enabled on that device (and `options` allow
    /// them), and leaves the device's device-lost and uncaptured-error handlers as they are:
    /// its own work runs inside validation error scopes and reports through [`Result`]s.
    /// [`Context::destroy_device`] is refused. Of `options`, the backend and the CPU fallback
    /// do not apply.
    ///
    /// Ordering with the caller's work on the same queue: ops record into the context's own
    /// command encoder and are submitted in batches, at a read-back, or by
    /// [`Context::flush`]. Work the caller submitted before an op is recorded runs before it;
    /// work the caller submits after `flush` runs after everything recorded until then.
    pub fn from_wgpu_with_options(setup: WgpuSetup, options: &ContextOptions) -> Result<Context> {
        let WgpuSetup {
            adapter_info: info,
            device,
            queue,
        } = setup;
        let name = info.name.clone();
        let missing = missing_requirements(&device.limits());
        if !missing.is_empty() {
            return Err(Error::DeviceUnsuitable {
                adapter: name,
                missing,
            });
        }
        let backend = Backend::from_wgpu(info.backend).ok_or_else(|| Error::DeviceUnsuitable {
            adapter: name.clone(),
            missing: vec![format!(
                "backend {:?} is not one this crate runs on",
                info.backend
            )],
        })?;
        let summary = AdapterSummary {
            name: info.name.clone(),
            backend,
            device_type: info.device_type,
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            features: device.features(),
        };
        let subgroups = options.subgroups == Subgroups::Auto
            && device.features().contains(wgpu::Features::SUBGROUP);
        let facts = device_facts(&info, subgroups, &summary, DeviceOwner::Caller, options);
        Ok(Context::from_inner(Inner {
            summary,
            why: "the caller's device (Context::from_wgpu)".into(),
            gpu: Some(Gpu::new(device, queue, facts)),
            row_strategy: options.row_strategy,
            matmul_kernel: options.matmul_kernel,
        }))
    }

    /// Whether the context opened its device itself (false for [`Context::from_wgpu`] and the
    /// CPU backend).
    pub fn owns_device(&self) -> bool {
        self.gpu().is_some_and(|g| g.owner == DeviceOwner::Crate)
    }

    /// Every adapter wgpu can see on this machine (compute-capable or not), plus the CPU backend.
    pub fn adapters() -> Vec<AdapterSummary> {
        let mut all: Vec<AdapterSummary> = pollster::block_on(adapters())
            .iter()
            .filter_map(AdapterSummary::of)
            .collect();
        all.sort_by_key(rank);
        all.push(AdapterSummary::cpu());
        all
    }

    /// The adapter this context runs on.
    pub fn adapter_info(&self) -> &AdapterSummary {
        &self.inner.summary
    }

    /// Why this adapter was chosen, in words.
    pub fn selection_reason(&self) -> &str {
        &self.inner.why
    }

    /// The backend this context runs on.
    pub fn backend(&self) -> Backend {
        self.inner.summary.backend
    }

    /// The wgpu device and queue this context drives (`None` on the CPU backend), for sharing
    /// the device with other wgpu code. Work submitted directly is not ordered with the
    /// context's recorded ops until [`Context::flush`].
    pub fn wgpu(&self) -> Option<(&wgpu::Device, &wgpu::Queue)> {
        self.inner.gpu.as_ref().map(|g| (&g.device, &g.queue))
    }

    /// The device's limits (`None` on the CPU backend).
    pub fn limits(&self) -> Option<wgpu::Limits> {
        self.inner.gpu.as_ref().map(|g| g.limits.clone())
    }

    /// The device's enabled features (`None` on the CPU backend).
    pub fn features(&self) -> Option<wgpu::Features> {
        self.inner.gpu.as_ref().map(|g| g.device.features())
    }

    /// Whether row reductions use subgroup operations on this context.
    pub fn uses_subgroups(&self) -> bool {
        self.inner.gpu.as_ref().is_some_and(|g| g.subgroups)
    }

    /// The most loop iterations the adapter lets one shader invocation run, where it stops
    /// invocations (llvmpipe: 65,535); `None` elsewhere and on the CPU backend. Ops choose
    /// kernels whose invocations stay below it, and where none can (a head row or a line along
    /// an inner dim of more than about 520,000 elements, a matrix product's inner dim of more
    /// than about 260,000), fail with [`Error::TooLarge`] rather than return a truncated
    /// result.
    pub fn loop_limit(&self) -> Option<usize> {
        self.inner.gpu.as_ref().and_then(|g| g.loop_limit)
    }

    /// Which kernel row operations use (`Auto` unless the options forced one).
    pub fn row_strategy(&self) -> RowStrategy {
        self.inner.row_strategy
    }

    /// Which kernel forms matrix products (as set in [`ContextOptions::matmul_kernel`]).
    pub fn matmul_kernel(&self) -> MatmulKernel {
        self.inner.matmul_kernel
    }

    /// Submits all recorded work and waits for the device to finish it.
    pub fn synchronize(&self) -> Result<()> {
        match &self.inner.gpu {
            Some(gpu) => gpu.synchronize(),
            None => Ok(()),
        }
    }

    /// [`Context::synchronize`] without blocking: natively a helper thread waits on the
    /// device while the future is pending; in a browser (where nothing may block) the queue's
    /// work-done promise is awaited, and a validation or out-of-memory error of the crate's
    /// work since the last such call comes back as this call's `Err` (a blocking call cannot
    /// see it there: the browser answers error scopes only through its event loop).
    pub async fn synchronize_async(&self) -> Result<()> {
        match &self.inner.gpu {
            Some(gpu) => gpu.synchronize_async(self).await,
            None => Ok(()),
        }
    }

    /// Submits all recorded work without waiting for it.
    pub fn flush(&self) -> Result<()> {
        match &self.inner.gpu {
            Some(gpu) => gpu.flush(),
            None => Ok(()),
        }
    }

    /// Bytes held idle in the buffer pool and the upload staging buffers (0 on the CPU
    /// backend).
    pub fn pooled_bytes(&self) -> u64 {
        self.inner.gpu.as_ref().map_or(0, Gpu::pool_idle_bytes)
    }

    /// Device memory in the crate's buffers (tensors, scratch, and idle buffers kept for
    /// reuse; not the upload staging buffers), in bytes: `(now, the peak since
    /// [`Context::reset_peak_device_bytes`])`. `(0, 0)` on the CPU backend. What a bench reads
    /// to report an op's peak memory.
    pub fn device_bytes(&self) -> (u64, u64) {
        self.inner.gpu.as_ref().map_or((0, 0), Gpu::device_bytes)
    }

    /// Starts the peak of [`Context::device_bytes`] afresh from the bytes held now.
    pub fn reset_peak_device_bytes(&self) {
        if let Some(gpu) = &self.inner.gpu {
            gpu.reset_peak_device_bytes();
        }
    }

    /// Every pipeline this context has built so far (family, storage type, entry point and
    /// override constants), for feeding the same pipelines to another shader compiler
    /// (`gpu-activations shaders --dump`); empty on the CPU backend.
    pub fn pipelines_built(&self) -> Result<Vec<PipelineRecord>> {
        self.inner
            .gpu
            .as_ref()
            .map_or(Ok(Vec::new()), Gpu::pipelines_built)
    }

    /// Releases the idle buffers of the pool and the upload staging buffers.
    pub fn trim_pool(&self) {
        if let Some(gpu) = &self.inner.gpu {
            gpu.trim_pool();
        }
    }

    /// Destroys the device, as a driver reset would; later calls fail with
    /// [`Error::DeviceLost`]. Meant for testing fault handling. Refused with
    /// [`Error::NotOwner`] on a device the crate does not own ([`Context::from_wgpu`]).
    pub fn destroy_device(&self) -> Result<()> {
        match &self.inner.gpu {
            Some(gpu) if gpu.owner == DeviceOwner::Caller => Err(Error::NotOwner {
                op: "destroy_device",
            }),
            Some(gpu) => {
                gpu.destroy();
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub(crate) fn gpu(&self) -> Option<&Gpu> {
        self.inner.gpu.as_ref()
    }

    pub(crate) fn same(&self, other: &Context) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn from_inner(inner: Inner) -> Context {
        Context {
            inner: Arc::new(inner),
        }
    }
}

impl GpuHolder for Context {
    fn held(&self) -> Option<&Gpu> {
        self.gpu()
    }
}

/// The caller's device for [`Context::from_wgpu`]: the facts of the adapter it was made from
/// (`adapter.get_info()`: its name, backend, device type and subgroup sizes), the device and
/// its queue.
#[derive(Clone, Debug)]
pub struct WgpuSetup {
    /// What the adapter is.
    pub adapter_info: wgpu::AdapterInfo,
    /// The device (kept as a clone of the handle; the crate never destroys it).
    pub device: wgpu::Device,
    /// Its queue, which the crate submits to.
    pub queue: wgpu::Queue,
}

/// What the device layer is told of a device: the adapter's subgroup sizes where `subgroups`
/// are enabled, whether it is hardware, whose it is, and the options' buffer cap and timeout.
fn device_facts(
    info: &wgpu::AdapterInfo,
    subgroups: bool,
    summary: &AdapterSummary,
    owner: DeviceOwner,
    options: &ContextOptions,
) -> DeviceFacts {
    DeviceFacts {
        subgroup_sizes: subgroups.then_some(SubgroupSizes {
            min: info.subgroup_min_size,
            max: info.subgroup_max_size,
        }),
        hardware: summary.is_hardware(),
        loop_limit: summary.loop_limit(),
        owner,
        max_buffer_bytes: options.max_buffer_bytes,
        max_binding_bytes: options.max_binding_bytes,
        readback_timeout: options.readback_timeout,
    }
}

/// The limits every kernel needs, each as (name, value on the device, value needed).
fn missing_requirements(limits: &wgpu::Limits) -> Vec<String> {
    let needs = [
        // The losses bind six storage buffers (logits, targets, gradient, losses, weights).
        (
            "max_storage_buffers_per_shader_stage",
            limits.max_storage_buffers_per_shader_stage,
            6,
        ),
        (
            "max_uniform_buffers_per_shader_stage",
            limits.max_uniform_buffers_per_shader_stage,
            1,
        ),
        ("max_bind_groups", limits.max_bind_groups, 1),
        // Elementwise kernels run 256 invocations per workgroup.
        (
            "max_compute_invocations_per_workgroup",
            limits.max_compute_invocations_per_workgroup,
            256,
        ),
        (
            "max_compute_workgroup_size_x",
            limits.max_compute_workgroup_size_x,
            256,
        ),
        (
            "max_compute_workgroups_per_dimension",
            limits.max_compute_workgroups_per_dimension,
            1,
        ),
        (
            "max_dynamic_uniform_buffers_per_pipeline_layout",
            limits.max_dynamic_uniform_buffers_per_pipeline_layout,
            1,
        ),
    ];
    needs
        .into_iter()
        .filter(|&(_, have, need)| have < need)
        .map(|(name, have, need)| format!("{name} is {have}, the kernels need {need}"))
        .collect()
}

/// The adapters of the crate's wgpu instance, which every context the crate opens itself
/// shares: made and enumerated once per process (natively). Sharing the instance is what lets a
/// buffer of one context be recognised as another device's when handed to another context:
/// wgpu looks a buffer up by an id that is unique only within its instance
/// ([`crate::Tensor::from_wgpu_buffer`]). Enumerating once keeps a second context from probing
/// the drivers again (and on a headless Linux machine Mesa's Vulkan device-select layer, asked
/// for the adapters, tries to reach a Wayland compositor, and libwayland prints
/// "XDG_RUNTIME_DIR is invalid or not set" each time).
#[cfg(not(target_arch = "wasm32"))]
async fn adapters() -> Vec<wgpu::Adapter> {
    static ADAPTERS: std::sync::OnceLock<Vec<wgpu::Adapter>> = std::sync::OnceLock::new();
    if let Some(found) = ADAPTERS.get() {
        return found.clone();
    }
    let found = new_instance()
        .enumerate_adapters(wgpu::Backends::all())
        .await;
    ADAPTERS.get_or_init(|| found).clone()
}

/// In a browser wgpu's objects stay on one thread: a new instance each time.
#[cfg(target_arch = "wasm32")]
async fn adapters() -> Vec<wgpu::Adapter> {
    new_instance()
        .enumerate_adapters(wgpu::Backends::all())
        .await
}

fn new_instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    // A browser's WebGPU exists only on wasm32.
    #[cfg(not(target_arch = "wasm32"))]
    {
        desc.backends &= !wgpu::Backends::BROWSER_WEBGPU;
    }
    // Where the driver reports a memory budget (Vulkan's VK_EXT_memory_budget), allocations
    // past 90 % of it fail with an out-of-memory error (which this crate returns as
    // Error::OutOfMemory) instead of pushing the system into swap or the OOM killer.
    desc.memory_budget_thresholds.for_resource_creation = Some(90);
    wgpu::Instance::new(desc)
}

/// Lower is better: hardware before software, then the native APIs before GL.
fn rank(s: &AdapterSummary) -> (u8, u8) {
    let device = match s.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let api = Backend::ALL
        .iter()
        .position(|b| *b == s.backend)
        .unwrap_or(Backend::ALL.len()) as u8;
    (device, api)
}

async fn open_device(
    adapter: wgpu::Adapter,
    summary: &AdapterSummary,
    options: &ContextOptions,
) -> Result<Gpu> {
    let available = adapter.features();
    let subgroups =
        options.subgroups == Subgroups::Auto && available.contains(wgpu::Features::SUBGROUP);
    let mut features = wgpu::Features::empty();
    if subgroups {
        features |= wgpu::Features::SUBGROUP;
    }
    let request = wgpu::DeviceDescriptor {
        label: Some("gpu-activations"),
        required_features: features,
        required_limits: adapter.limits(),
        ..Default::default()
    };
    let (device, queue) =
        adapter
            .request_device(&request)
            .await
            .map_err(|e| Error::DeviceRequest {
                adapter: summary.name.clone(),
                message: e.to_string(),
            })?;
    let facts = device_facts(
        &adapter.get_info(),
        subgroups,
        summary,
        DeviceOwner::Crate,
        options,
    );
    Ok(Gpu::new(device, queue, facts))
}
