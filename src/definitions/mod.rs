//! What each op is, independent of where it runs: the activations and the loss options, with
//! their formulas and parameter checks. Both the CPU reference (`cpu`) and the launches (`ops`)
//! build on these; this module depends on neither.

pub mod activation;
pub mod gated;
pub mod loss;
