//! The loss options, as PyTorch names them: [`Reduction`], [`CrossEntropyOptions`] and
//! [`BceOptions`]. The f64 twins are in [`crate::cpu::loss`], the launches in `ops`.

/// How per-row (or per-element) losses are combined, as PyTorch's `reduction`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// The weighted mean (PyTorch's default).
    #[default]
    Mean,
    /// The sum.
    Sum,
    /// No reduction: one loss per row (cross-entropy) or per element (BCE).
    None,
}

impl Reduction {
    /// Parses `mean`, `sum` or `none`.
    pub fn parse(s: &str) -> Option<Reduction> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mean" => Some(Reduction::Mean),
            "sum" => Some(Reduction::Sum),
            "none" => Some(Reduction::None),
            _ => None,
        }
    }
}

/// Options of [`crate::Tensor::cross_entropy`], as `torch.nn.functional.cross_entropy`.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyOptions {
    /// How the per-row losses combine.
    pub reduction: Reduction,
    /// Rows whose class index equals this get zero loss and gradient and leave the mean's
    /// denominator (PyTorch's default −100).
    pub ignore_index: i64,
    /// ε in `[0, 1]`: the target becomes `(1 − ε)·onehot + ε/K`.
    pub label_smoothing: f32,
    /// Per-class weights (length K); the mean divides by the sum of the targets' weights.
    pub weight: Option<Vec<f32>>,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions {
            reduction: Reduction::Mean,
            ignore_index: -100,
            label_smoothing: 0.0,
            weight: None,
        }
    }
}

/// Options of [`crate::Tensor::bce_with_logits`], as `binary_cross_entropy_with_logits`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BceOptions {
    /// How the per-element losses combine.
    pub reduction: Reduction,
    /// A weight per column (length = last dim), broadcast over rows.
    pub weight: Option<Vec<f32>>,
    /// The positive-class weight per column (length = last dim).
    pub pos_weight: Option<Vec<f32>>,
}

/// Liger-Kernel's options for the cross-entropy of an LLM head
/// ([`crate::Tensor::cross_entropy_head`]), applied in the same fused pass.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HeadOptions {
    /// `s ≥ 0`: the z-loss `s·lse²` of each row (`lse = log Σ_c e^{z_c}`) is added to its loss,
    /// with its gradient `2s·lse·softmax` (PaLM's auxiliary loss that keeps `lse` near 0).
    pub lse_square_scale: f32,
    /// `c > 0`: the logits are capped to `c·tanh(z/c)` before the softmax (Gemma 2), and the
    /// gradient goes through the cap (`1 − tanh²(z/c)`).
    pub softcap: Option<f32>,
}

impl HeadOptions {
    /// Checks the options: `s` finite and ≥ 0, `c` finite and > 0.
    pub fn validate(&self, op: &'static str) -> crate::Result<()> {
        let s = self.lse_square_scale;
        if !(s.is_finite() && s >= 0.0) {
            return Err(crate::Error::InvalidParameter {
                op,
                name: "lse_square_scale",
                value: crate::Error::f32_param(s),
                reason: "must be finite and at least 0",
            });
        }
        match self.softcap {
            Some(c) if !(c.is_finite() && c > 0.0) => Err(crate::Error::InvalidParameter {
                op,
                name: "softcap",
                value: crate::Error::f32_param(c),
                reason: "must be finite and greater than 0",
            }),
            _ => Ok(()),
        }
    }
}

/// Options of the per-token statistics of a head's logits ([`crate::Tensor::head_stats`],
/// [`crate::Tensor::linear_head`] and their backward), for a loss the caller writes on them
/// (PPO, GRPO, DPO-style): with `p = softmax(u)`, `u = cap(z)/T`, each row's `log p_t`, its
/// entropy and its `lse = log Σ e^u`.
///
/// Combinations: the temperature with or without the softcap (the cap first, as Gemma 2 caps
/// its logits and a sampler then divides them by `T`); the z-loss with or without the softcap at
/// `T = 1` only (PaLM's z-loss keeps the training logits' `lse` near 0; at another temperature
/// the `lse` is of `z/T`, which the z-loss is not about, so `lse_square_scale > 0` with
/// `T ≠ 1` is [`crate::Error::UnsupportedCombination`]). Label smoothing and class weights
/// shape a cross-entropy, not these statistics: write them into the loss from `log p_t`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadStats {
    /// `T > 0` (finite): the distribution is `softmax(z/T)`.
    pub temperature: f32,
    /// Rows whose class index equals this get 0 log-probability and entropy and no gradient
    /// (their `lse` is written all the same); PyTorch's default −100.
    pub ignore_index: i64,
    /// `c > 0`: the logits are capped to `c·tanh(z/c)` before the temperature, and gradients
    /// go through the cap (`1 − tanh²(z/c)`).
    pub softcap: Option<f32>,
    /// `s ≥ 0` (at `T = 1`): the backward adds the gradient of the z-loss `Σ s·lse²` over the
    /// rows not ignored, `2s·lse·p`, to that of the caller's loss.
    pub lse_square_scale: f32,
}

impl Default for HeadStats {
    fn default() -> Self {
        HeadStats {
            temperature: 1.0,
            ignore_index: -100,
            softcap: None,
            lse_square_scale: 0.0,
        }
    }
}

impl HeadStats {
    /// Checks the options: `T` finite and > 0, `c` finite and > 0, `s` finite and ≥ 0, and the
    /// z-loss only at `T = 1`.
    pub fn validate(&self, op: &'static str) -> crate::Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && t > 0.0) {
            return Err(crate::Error::InvalidParameter {
                op,
                name: "temperature",
                value: crate::Error::f32_param(t),
                reason: "must be finite and greater than 0",
            });
        }
        HeadOptions {
            lse_square_scale: self.lse_square_scale,
            softcap: self.softcap,
        }
        .validate(op)?;
        if self.lse_square_scale > 0.0 && t != 1.0 {
            return Err(crate::Error::UnsupportedCombination {
                op,
                options: "lse_square_scale > 0 with temperature ≠ 1",
                reason: "the z-loss is about the lse of the training logits (temperature 1); \
                         at another temperature pass its gradient through the caller's loss",
            });
        }
        Ok(())
    }
}
