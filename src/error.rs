//! The crate's one error type.

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in this crate, each with the context needed to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // === Devices ===
    /// No adapter was found and the CPU fallback was not allowed.
    #[error(
        "no GPU adapter found{wanted}; on Debian/Ubuntu install the software Vulkan driver \
         with `apt-get install -y mesa-vulkan-drivers`, or choose the CPU backend \
         (GPU_ACTIVATIONS_BACKEND=cpu)"
    )]
    NoAdapter {
        /// Which backend was asked for, as text (empty when any would do).
        wanted: String,
    },
    /// The adapter refused to create a device.
    #[error("could not open a device on adapter {adapter}: {message}")]
    DeviceRequest {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason.
        message: String,
    },
    /// The device was lost (driver reset, removal, or `destroy`); make a new `Context`.
    #[error("GPU device lost: {0}; create a new Context")]
    DeviceLost(String),
    /// wgpu reported a validation or internal error for work this crate submitted.
    #[error("GPU error in {op}: {message}")]
    Gpu {
        /// The operation during which the error surfaced.
        op: &'static str,
        /// wgpu's message.
        message: String,
    },
    /// An allocation failed: of device memory, or of host memory (the CPU backend's tensors,
    /// read-backs).
    #[error("out of {memory} memory allocating {bytes} bytes for {op}")]
    OutOfMemory {
        /// The operation that allocated.
        op: &'static str,
        /// The size of the failed allocation.
        bytes: u64,
        /// Which memory ran out: `"device"` or `"host"`.
        memory: &'static str,
    },
    /// A shader failed to compile or a pipeline failed to build.
    #[error("shader {shader}::{entry} failed to build: {message}")]
    Shader {
        /// The shader family.
        shader: &'static str,
        /// The entry point.
        entry: &'static str,
        /// The compiler's message.
        message: String,
    },
    /// Waiting for the GPU took longer than the context's read-back timeout.
    #[error("GPU did not finish {op} within {seconds} s")]
    Timeout {
        /// What was being waited for.
        op: &'static str,
        /// The timeout that expired.
        seconds: f64,
    },
    /// A request larger than the device, the adapter or the host can take, found before any
    /// work started or anything was allocated.
    #[error("{op}: needs {} {unit}, but at most {limit} {unit} fit ({what})", amount(*requested))]
    TooLarge {
        /// The operation.
        op: &'static str,
        /// What the request needs, in `unit`s (`u64::MAX` when the count overflows).
        requested: u64,
        /// The most the limit allows, in `unit`s.
        limit: u64,
        /// What `requested` and `limit` count.
        unit: Unit,
        /// Which limit.
        what: &'static str,
    },
    /// An activation name that is not one of [`crate::Activation::ALL`].
    #[error("unknown activation {0:?}")]
    UnknownActivation(String),
    /// A parameter an activation does not take.
    #[error("{op} has no parameter {name:?} (it takes {})", list_or_none(takes))]
    UnknownParameter {
        /// The activation.
        op: &'static str,
        /// The name asked for.
        name: String,
        /// The parameters it takes.
        takes: Vec<&'static str>,
    },
    /// The requested backend name is not one this crate knows.
    #[error("unknown backend {0:?}; expected one of auto, vulkan, metal, dx12, gl, webgpu, cpu")]
    UnknownBackend(String),

    // === Shapes ===
    /// A shape that makes no sense for the operation.
    #[error("{op}: invalid shape {shape:?}: {reason}")]
    InvalidShape {
        /// The operation.
        op: &'static str,
        /// The offending shape.
        shape: Vec<usize>,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// Two tensors that must agree in shape do not.
    #[error("{op}: {what} has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The operation.
        op: &'static str,
        /// Which operand disagrees.
        what: &'static str,
        /// Its shape.
        got: Vec<usize>,
        /// The shape it must have.
        expected: Vec<usize>,
    },
    /// Host data whose length does not match the shape it came with.
    #[error("{op}: {len} values do not fill shape {shape:?} ({expected} elements)")]
    LengthMismatch {
        /// The operation.
        op: &'static str,
        /// The data's length.
        len: usize,
        /// The shape.
        shape: Vec<usize>,
        /// The shape's element count.
        expected: usize,
    },
    /// Tensors from different contexts were mixed in one operation.
    #[error("{op}: tensors belong to different contexts")]
    ContextMismatch {
        /// The operation.
        op: &'static str,
    },

    // === Values ===
    /// A hyper-parameter outside its domain.
    #[error("{op}: {name} = {value} is invalid: {reason}")]
    InvalidParameter {
        /// The operation.
        op: &'static str,
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: f64,
        /// The domain it must lie in.
        reason: &'static str,
    },
    /// A class index outside `[0, classes)` that is not the ignore index.
    #[error(
        "{op}: target at row {row} is {value}, outside [0, {classes}) and not the ignore index {ignore_index}"
    )]
    TargetOutOfRange {
        /// The operation.
        op: &'static str,
        /// The first offending row.
        row: usize,
        /// Its value.
        value: i64,
        /// The number of classes.
        classes: usize,
        /// The ignore index in force.
        ignore_index: i64,
    },
    /// A tensor of another element type than the operation takes.
    #[error("{op}: {what} holds {got:?} elements; it takes {expected}")]
    DTypeMismatch {
        /// The operation.
        op: &'static str,
        /// Which argument.
        what: &'static str,
        /// Its element type.
        got: crate::dtype::DType,
        /// What the operation takes, in words.
        expected: &'static str,
    },
    /// Options that are each valid but that the operation does not take together.
    #[error("{op}: {options} is not supported: {reason}")]
    UnsupportedCombination {
        /// The operation.
        op: &'static str,
        /// The options given together.
        options: &'static str,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// A class-index target that is not an integer (NaN, infinite or fractional).
    #[error("{op}: target at row {row} is {value}, not an integer class index")]
    TargetNotInteger {
        /// The operation.
        op: &'static str,
        /// The first offending row.
        row: usize,
        /// Its value.
        value: f64,
    },
    /// A caller's device lacks a feature or limit the kernels need ([`crate::Context::from_wgpu`]).
    #[error("the device of {adapter} cannot run these kernels: {}", missing.join("; "))]
    DeviceUnsuitable {
        /// The adapter the device was made from.
        adapter: String,
        /// Each missing feature or limit, with the value found and the value needed.
        missing: Vec<String>,
    },
    /// A caller's buffer cannot be viewed as a tensor ([`crate::Tensor::from_wgpu_buffer`]), or a
    /// tensor cannot be handed out as one buffer ([`crate::Tensor::as_wgpu_buffer`]).
    #[error("{op}: {rule}")]
    ExternalBuffer {
        /// The operation.
        op: &'static str,
        /// The rule the buffer, offset or shape breaks, with the values involved.
        rule: String,
    },
    /// An operation that only the owner of the device may perform (e.g. destroying it) was
    /// asked of a context built on the caller's device.
    #[error("{op}: the device belongs to the caller ({})", "Context::from_wgpu")]
    NotOwner {
        /// The operation refused.
        op: &'static str,
    },
}

/// What the figures of an [`Error::TooLarge`] count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unit {
    /// Bytes of memory.
    Bytes,
    /// Elements of a tensor.
    Elements,
    /// Loop iterations of one shader invocation.
    LoopIterations,
    /// Workgroups of one dispatch.
    Workgroups,
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unit::Bytes => "bytes",
            Unit::Elements => "elements",
            Unit::LoopIterations => "loop iterations",
            Unit::Workgroups => "workgroups",
        })
    }
}

/// A requested amount as text: "at least u64::MAX" where counting it overflowed.
fn amount(requested: u64) -> String {
    if requested == u64::MAX {
        format!("at least {requested}")
    } else {
        requested.to_string()
    }
}

impl Error {
    /// An f32 parameter as the f64 that prints as the f32 does (`-0.1`, where widening gives
    /// `-0.10000000149011612`), for [`Error::InvalidParameter`]'s value.
    pub(crate) fn f32_param(value: f32) -> f64 {
        value.to_string().parse().unwrap_or(f64::from(value))
    }

    pub(crate) fn invalid_shape(op: &'static str, shape: &[usize], reason: &'static str) -> Self {
        Error::InvalidShape {
            op,
            shape: shape.to_vec(),
            reason,
        }
    }
}

/// `a, b` or `none`, for messages.
fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
