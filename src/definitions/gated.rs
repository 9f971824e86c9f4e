//! The gated activations of LLM feed-forward blocks: [`Gate`] names each pair of a value
//! function and a gate, `y = f(a)·m(b)`. A tensor whose last dimension is 2H splits into the
//! value `a` (its first H) and the gate `b` (its last H), as PyTorch's `glu(x, dim = −1)`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A gated activation `y = f(a)·m(b)` of a value `a` and a gate `b`:
///
/// | name | y | ∂y/∂a | ∂y/∂b |
/// |---|---|---|---|
/// | glu | a·σ(b) | σ(b) | a·σ(b)(1 − σ(b)) |
/// | swiglu | silu(a)·b | b·silu'(a) | silu(a) |
/// | geglu | gelu(a)·b | b·gelu'(a) | gelu(a) |
/// | geglu_tanh | gelu_tanh(a)·b | b·gelu_tanh'(a) | gelu_tanh(a) |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gate {
    /// The gated linear unit (PyTorch's `glu`): the gate through a sigmoid.
    Glu,
    /// SiLU of the value times the gate (LLaMA's and PaLM's feed-forward).
    Swiglu,
    /// Exact GELU of the value times the gate.
    Geglu,
    /// GELU with the tanh approximation of the value times the gate.
    GegluTanh,
}

impl Gate {
    /// Every gated activation.
    pub const ALL: [Gate; 4] = [Gate::Glu, Gate::Swiglu, Gate::Geglu, Gate::GegluTanh];

    /// The snake_case name: `glu`, `swiglu`, `geglu`, `geglu_tanh`.
    pub fn name(self) -> &'static str {
        match self {
            Gate::Glu => "glu",
            Gate::Swiglu => "swiglu",
            Gate::Geglu => "geglu",
            Gate::GegluTanh => "geglu_tanh",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Gate {
    type Err = Error;

    /// Parses a name (`geglu_tanh` or `geglu-tanh`).
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().replace('-', "_");
        Gate::ALL
            .into_iter()
            .find(|g| g.name() == wanted)
            .ok_or_else(|| Error::UnknownActivation(s.to_string()))
    }
}

impl Gate {
    /// The `GATE` override constant of `shaders/gated.wgsl` (`GATE_NAME` in its prelude).
    pub(crate) fn code(self) -> u32 {
        self as u32
    }
}

/// The gates' codes for the WGSL prelude: `GATE_GLU`, `GATE_SWIGLU`, ….
pub(crate) fn wgsl_constants() -> Vec<(String, u32, &'static str)> {
    Gate::ALL
        .iter()
        .map(|g| {
            (
                format!("GATE_{}", g.name().to_uppercase()),
                g.code(),
                "a gated activation's code",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gate_has_its_case_in_the_shader() {
        let source = include_str!("../../shaders/gated.wgsl");
        let cases = crate::definitions::activation::tests::cases_of(source, "gated");
        for g in Gate::ALL {
            let name = format!("GATE_{}", g.name().to_uppercase());
            assert_eq!(cases.iter().filter(|c| **c == name).count(), 1, "{name}");
        }
        assert_eq!(cases.len(), Gate::ALL.len());
    }
}
