//! The element types of tensors ([`DType`]) and their sizes: the bottom of the library, used by
//! every layer above it (errors name a type, layouts size it).

/// Element type of a tensor's storage. Every op computes in f32; its float tensors are stored
/// as `F32`, `F16` or `BF16` (loaded into f32, results rounded once to the storage type, as
/// PyTorch does for half tensors). The integer types hold class indices that live on the
/// device ([`crate::Targets::Device`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// Unsigned 32-bit integers.
    U32,
    /// Signed 32-bit integers.
    I32,
    /// Signed 64-bit integers (PyTorch's `long`), little-endian.
    I64,
    /// IEEE 754 binary16 (`half::f16`): 5 exponent bits, 10 mantissa bits, largest 65504.
    F16,
    /// bfloat16 (`half::bf16`): the upper 16 bits of an f32 (8 exponent bits, 7 mantissa bits).
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::U32 | DType::I32 => 4,
            DType::I64 => 8,
        }
    }

    /// Whether the type holds integers.
    pub fn is_integer(self) -> bool {
        !self.is_float()
    }

    /// Whether the type holds floating-point values (f32 or a half type).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// Whether the type is one of the 16-bit float types.
    pub fn is_half(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }

    /// The type's name as PyTorch spells it (`float32`, `float16`, `bfloat16`, …).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::U32 => "uint32",
            DType::I32 => "int32",
            DType::I64 => "int64",
        }
    }

    /// `v` rounded to the nearest value of this float type (ties to even; beyond the type's
    /// range ±∞; NaN stays NaN), as an f32. Integer types return `v` unchanged.
    pub fn round(self, v: f32) -> f32 {
        match self {
            DType::F16 => half::f16::from_f32(v).to_f32(),
            DType::BF16 => half::bf16::from_f32(v).to_f32(),
            _ => v,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
