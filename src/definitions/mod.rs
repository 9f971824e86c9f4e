//! What each op is, independent of where it runs: the activations and the loss options, with
//! their formulas and parameter checks. Both the CPU reference (`cpu`) and the launches (`ops`)
//! build on these; this module depends on neither.

pub mod activation;
pub mod gated;
pub mod loss;

/// The op codes the shaders switch on, as `(WGSL constant name, code, what it is)`, for the
/// generated prelude of every module ([`crate::wgsl`]).
pub(crate) fn wgsl_constants() -> Vec<(String, u32, &'static str)> {
    let mut all = activation::wgsl_constants();
    all.extend(gated::wgsl_constants());
    all
}
