//! # gpu-activations
//!
//! The activation layer and the loss head of a neural network on any GPU through
//! [wgpu](https://wgpu.rs) (Vulkan, Metal, DX12, GL), with WGSL compute shaders, and on
//! software adapters (lavapipe, WARP, llvmpipe) or the built-in f64 CPU reference when no
//! GPU is present.
//!
//! ```no_run
//! use gpu_activations::{Activation, Context, Tensor};
//! # fn main() -> gpu_activations::Result<()> {
//! let ctx = Context::new()?;
//! let x = Tensor::from_slice(&ctx, &[-1.0, 0.0, 2.0, 3.0], &[2, 2])?;
//! let y = x.gelu()?;                                   // recorded, not waited for
//! let g = Tensor::from_slice(&ctx, &[1.0; 4], &[2, 2])?;
//! let dx = x.activation_backward(Activation::Gelu, &g)?;
//! println!("{:?} {:?}", y.to_vec()?, dx.to_vec()?);   // read back: waits here
//! # Ok(()) }
//! ```
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)
)]
#![warn(missing_docs)]
// wgpu's WebGPU objects are neither Send nor Sync; a browser runs the library on one thread.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

pub mod accuracy;
pub mod cases;
mod context;
pub mod cpu;
mod definitions;
mod dtype;
mod error;
mod gpu;
mod layout;
#[cfg(feature = "npy")]
pub mod npy;
mod ops;
mod tensor;
pub mod wgsl;

pub use context::{
    ADAPTER_ENV, AdapterSummary, BACKEND_ENV, Backend, Context, ContextOptions, MatmulKernel,
    RowStrategy, Subgroups, WgpuSetup,
};
pub use definitions::activation::Activation;
pub use definitions::gated::Gate;
pub use definitions::loss::{BceOptions, CrossEntropyOptions, HeadOptions, HeadStats, Reduction};
pub use dtype::DType;
pub use error::{Error, Result, Unit};
pub use gpu::pipelines::PipelineRecord;
/// The `half` crate, whose `f16` and `bf16` the half-precision calls take and return.
pub use half;
pub use ops::loss::{
    HeadLoss, HeadStatsOutput, LINEAR_CROSS_ENTROPY_CHUNK_BYTES, LINEAR_CROSS_ENTROPY_ROW_ALIGN,
    LinearCrossEntropy, LinearHeadStep, LossAndGrad, Targets, class_indices_from_floats,
};
pub use ops::optimizer::{Adam, AdamState, Sgd};
pub use tensor::Tensor;
pub use wgpu;

// The README's Rust examples, compiled (and run where they are not `no_run`) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
