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
