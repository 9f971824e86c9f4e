//! The elementwise activations: [`Activation`] names each function once, with its parameters,
//! their checks and its formula. Where it runs is elsewhere: its f64 twin in
//! [`crate::cpu::activation`], its kernel in `shaders/activation.wgsl`, the launches in `ops`.
//!
//! Derivatives at kinks follow PyTorch: relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = α,
//! relu6'(0) = relu6'(6) = 0, hardsigmoid'(±3) = 0, hardswish'(3) = 1 (PyTorch's vectorised
//! CPU kernel) and −½ at −3 (the zero branch is x < −3). At NaN, relu' passes g, leaky_relu' gives g·slope,
//! relu6' and hardsigmoid' give 0, and every other function gives NaN.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How a parameter is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Finite.
    Finite,
    /// Finite and non-zero.
    NonZero,
    /// Finite and at least 0.
    NonNegative,
    /// Anything but NaN (±∞ included).
    NotNan,
}

impl Check {
    fn holds(self, v: f32) -> bool {
        match self {
            Check::Finite => v.is_finite(),
            Check::NonZero => v.is_finite() && v != 0.0,
            Check::NonNegative => v.is_finite() && v >= 0.0,
            Check::NotNan => !v.is_nan(),
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Check::Finite => "must be finite",
            Check::NonZero => "must be finite and non-zero",
            Check::NonNegative => "must be finite and non-negative",
            Check::NotNan => "must not be NaN",
        }
    }
}

/// What an activation gives for a NaN input, forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NanForward {
    /// NaN, routed by the input's bits (a compiler may fold a comparison with NaN away).
    Nan,
    /// NaN, carried by the formula itself (`v·h(v)`, or a select between two NaNs): no test.
    NanByFormula,
    /// 0 (a `x > α ? x : 0` that NaN fails, as PyTorch's `where`).
    Zero,
}

/// What an activation's backward gives for a NaN input (PyTorch's answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NanBackward {
    /// NaN.
    Nan,
    /// The upstream gradient g (`x <= θ ? 0 : g`, which NaN fails).
    Grad,
    /// g times the first packed parameter (leaky ReLU's slope).
    GradTimesSlope,
    /// 0 (a `lo < x < hi ? g : 0` that NaN fails).
    Zero,
}

/// The op codes of the backward from a saved output, beside the activations' own: the `OP`
/// of `shaders/activation.wgsl` for sigmoid's and tanh's gradients from y.
pub(crate) const SIGMOID_FROM_OUTPUT: u32 = 15;
/// See [`SIGMOID_FROM_OUTPUT`].
pub(crate) const TANH_FROM_OUTPUT: u32 = 16;

/// QuickGELU's slope: x·σ(1.702x), 1.702 as an f32 (CLIP's, onnxruntime's).
pub(crate) const QUICK_GELU_ALPHA: f32 = 1.702;

/// The op table. Each entry declares one activation: its variant (with doc comments), its
/// snake_case name (the command line's with hyphens), its op code (`OP_NAME` in the WGSL
/// prelude, what `shaders/activation.wgsl` switches on), its parameters with their defaults and
/// checks (the command line's flags, by name), a cross-parameter requirement, how the
/// parameters pack into the kernel's `p0, p1, p2`, and its NaN policy (forward, backward).
/// Everything else about an activation is generated from here.
macro_rules! activations {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident {
            name: $name:literal,
            code: $code:literal,
            $(params: {$(
                $(#[doc = $pdoc:literal])*
                $p:ident: $default:expr => $check:ident
            ),* $(,)?},)?
            $(require: $lhs:ident >= $rhs:ident,)?
            pack: [$($pack:expr),* $(,)?],
            nan: ($nan_forward:ident, $nan_backward:ident),
        }
    )*) => {
        /// An elementwise activation with its parameters. Formulas are PyTorch's:
        ///
        /// | name | f(x) | f'(x) |
        /// |---|---|---|
        /// | sigmoid | 1/(1+e^−x) | σ(1−σ) |
        /// | tanh | tanh x | 1 − tanh² x |
        /// | relu | max(x, 0) | x > 0 ? 1 : 0 |
        /// | leaky_relu(s) | x > 0 ? x : s·x | x > 0 ? 1 : s |
        /// | elu(α) | x > 0 ? x : α(e^x − 1) | x > 0 ? 1 : αe^x |
        /// | selu | λ·elu(x, α₀), λ ≈ 1.0507, α₀ ≈ 1.6733 | λ·elu'(x, α₀) |
        /// | gelu | x·Φ(x) | Φ(x) + x·φ(x) |
        /// | gelu_tanh | ½x(1 + tanh(√(2/π)(x + 0.044715x³))) | (its derivative) |
        /// | silu | x·σ(x) | σ(x)(1 + x(1 − σ(x))) |
        /// | mish | x·tanh(softplus x) | t + x·σ(x)(1 − t²) |
        /// | softplus(β, τ) | βx > τ ? x : log(1 + e^{βx})/β | βx > τ ? 1 : σ(βx) |
        /// | hardsigmoid | clamp((x+3)/6, 0, 1) | 1/6 on (−3, 3) |
        /// | hardswish | x·clamp((x+3)/6, 0, 1) | x < −3 ? 0 : x ≥ 3 ? 1 : x/3 + ½ |
        /// | relu6 | clamp(x, 0, 6) | 1 on (0, 6) |
        /// | logsigmoid | log σ(x) | σ(−x) |
        /// | celu(α) | x > 0 ? x : α(e^{x/α} − 1) | x > 0 ? 1 : e^{x/α} |
        /// | hardtanh(a, b) | clamp(x, a, b) | 1 on (a, b) |
        /// | softsign | x/(1 + \|x\|) | 1/(1 + \|x\|)² |
        /// | tanhshrink | x − tanh x | tanh² x |
        /// | threshold(θ, v) | x ≤ θ ? v : x | x ≤ θ ? 0 : 1 |
        /// | hardshrink(λ) | \|x\| ≤ λ ? 0 : x | \|x\| ≤ λ ? 0 : 1 |
        /// | softshrink(λ) | \|x\| ≤ λ ? 0 : x − λ·sign x | \|x\| ≤ λ ? 0 : 1 |
        /// | rrelu_eval(l, u) | leaky_relu(x, (l + u)/2) | (its derivative) |
        /// | onnx_hardsigmoid(α, β) | clamp(αx + β, 0, 1) | α on 0 < αx + β < 1 |
        /// | onnx_selu(α, γ) | γ·elu(x, α) | γ·elu'(x, α), 0 at x = 0 |
        /// | onnx_thresholded_relu(α) | x > α ? x : 0 | x > α ? 1 : 0 |
        /// | onnx_swish(α) | x·σ(αx) | σ(αx)(1 + αx(1 − σ(αx))) |
        /// | quick_gelu | x·σ(1.702x) | σ(1.702x)(1 + 1.702x(1 − σ(1.702x))) |
        /// | squared_relu | max(x, 0)² | 2·max(x, 0) |
        ///
        /// ONNX's `Celu(α)` is `celu(α)`, and its `Clip` with one bound is a hardtanh with the
        /// other infinite. At NaN the backward follows PyTorch's answers: hardtanh,
        /// hardshrink, softshrink and the ONNX clamps and thresholds give 0, threshold passes
        /// g, and onnx_thresholded_relu's forward gives 0.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum Activation {
            $(
                $(#[doc = $doc])*
                $variant $({$(
                    $(#[doc = $pdoc])*
                    $p: f32,
                )*})?,
            )*
        }

        /// How many activations the table declares.
        const COUNT: usize = [$(stringify!($variant)),*].len();

        // The codes index the WGSL prelude's NaN-policy masks (one bit per code).
        $(const _: () = assert!($code < 32, "an op code must be below 32");)*

        impl Activation {
            /// Every activation with PyTorch's default parameters.
            pub const ALL: [Activation; COUNT] = [
                $(Activation::$variant $({$($p: $default),*})?,)*
            ];

            /// The snake_case name (as in PyTorch and the fixtures): `leaky_relu`, `gelu_tanh`, ….
            pub fn name(self) -> &'static str {
                match self {
                    $(Activation::$variant { .. } => $name,)*
                }
            }

            /// The op code of `shaders/activation.wgsl` (`OP_NAME` in its prelude).
            pub(crate) fn code(self) -> u32 {
                match self {
                    $(Activation::$variant { .. } => $code,)*
                }
            }

            /// The parameters, by name, with their values (in the table's order).
            pub fn parameters(self) -> Vec<(&'static str, f32)> {
                match self {
                    $(Activation::$variant $({$($p),*})? => {
                        vec![$($((stringify!($p), $p)),*)?]
                    })*
                }
            }

            /// This activation with parameter `name` set to `value` (unchecked: see
            /// [`Activation::validate`]). A name it does not take is [`Error::UnknownParameter`].
            #[allow(unused_mut)]
            pub fn with_parameter(self, name: &str, value: f32) -> Result<Activation> {
                let mut found = false;
                let changed = match self {
                    $(Activation::$variant $({$(mut $p),*})? => {
                        $($(
                            if name == stringify!($p) {
                                $p = value;
                                found = true;
                            }
                        )*)?
                        Activation::$variant $({$($p),*})?
                    })*
                };
                if found {
                    Ok(changed)
                } else {
                    Err(Error::UnknownParameter {
                        op: self.name(),
                        name: name.to_string(),
                        takes: self.parameters().iter().map(|(n, _)| *n).collect(),
                    })
                }
            }

            /// Checks the parameters: every one must be finite (hardtanh's bounds, threshold's θ
            /// and value, softplus's τ and onnx_thresholded_relu's α may be infinite, not NaN),
            /// softplus's β and celu's α non-zero, λ non-negative, and each range's ends in
            /// order.
            pub fn validate(self) -> Result<()> {
                let check = |name: &'static str, value: f32, ok: bool, reason: &'static str| {
                    if ok {
                        Ok(())
                    } else {
                        Err(Error::InvalidParameter {
                            op: self.name(),
                            name,
                            value: crate::Error::f32_param(value),
                            reason,
                        })
                    }
                };
                match self {
                    $(Activation::$variant $({$($p),*})? => {
                        $($(
                            check(stringify!($p), $p, Check::$check.holds($p), Check::$check.reason())?;
                        )*)?
                        $(
                            check(
                                stringify!($lhs),
                                $lhs,
                                $lhs >= $rhs,
                                concat!("must be at least ", stringify!($rhs)),
                            )?;
                        )?
                        Ok(())
                    })*
                }
            }

            /// The kernel's uniform parameters `p0, p1, p2`.
            pub(crate) fn packed(self) -> [f32; 3] {
                let given: &[f32] = match self {
                    $(Activation::$variant $({$($p),*})? => &[$($pack),*],)*
                };
                let mut out = [0.0; 3];
                out[..given.len()].copy_from_slice(given);
                out
            }

            /// What f(NaN) and g·f'(NaN) are.
            pub(crate) fn nan_policy(self) -> (NanForward, NanBackward) {
                match self {
                    $(Activation::$variant { .. } => {
                        (NanForward::$nan_forward, NanBackward::$nan_backward)
                    })*
                }
            }
        }
    };
}

activations! {
    /// Logistic sigmoid.
    Sigmoid { name: "sigmoid", code: 0, pack: [], nan: (Nan, Nan), }
    /// Hyperbolic tangent.
    Tanh { name: "tanh", code: 1, pack: [], nan: (Nan, Nan), }
    /// Rectified linear unit.
    Relu { name: "relu", code: 2, pack: [], nan: (Nan, Grad), }
    /// Leaky ReLU with slope `negative_slope` below 0 (PyTorch's default 0.01).
    LeakyRelu {
        name: "leaky_relu",
        code: 3,
        params: {
            /// Slope for x ≤ 0.
            negative_slope: 0.01 => Finite,
        },
        pack: [negative_slope],
        nan: (NanByFormula, GradTimesSlope),
    }
    /// Exponential linear unit (PyTorch's default α = 1).
    Elu {
        name: "elu",
        code: 4,
        params: {
            /// Saturation value for x → −∞ is −α.
            alpha: 1.0 => Finite,
        },
        pack: [alpha],
        nan: (Nan, Nan),
    }
    /// Scaled ELU with the self-normalising constants.
    Selu { name: "selu", code: 5, pack: [], nan: (Nan, Nan), }
    /// Gaussian error linear unit, exact (with erf).
    Gelu { name: "gelu", code: 6, pack: [], nan: (NanByFormula, Nan), }
    /// GELU with the tanh approximation.
    GeluTanh { name: "gelu_tanh", code: 7, pack: [], nan: (NanByFormula, Nan), }
    /// Sigmoid-weighted linear unit (swish).
    Silu { name: "silu", code: 8, pack: [], nan: (NanByFormula, Nan), }
    /// Mish.
    Mish { name: "mish", code: 9, pack: [], nan: (NanByFormula, Nan), }
    /// Softplus (PyTorch's defaults β = 1, τ = 20; linear where βx > τ).
    Softplus {
        name: "softplus",
        code: 10,
        params: {
            /// Sharpness β.
            beta: 1.0 => NonZero,
            /// Above βx > threshold the function is the identity.
            threshold: 20.0 => NotNan,
        },
        pack: [beta, threshold, 1.0 / beta],
        nan: (Nan, Nan),
    }
    /// Piecewise-linear sigmoid.
    Hardsigmoid { name: "hardsigmoid", code: 11, pack: [], nan: (Nan, Zero), }
    /// x · hardsigmoid(x).
    Hardswish { name: "hardswish", code: 12, pack: [], nan: (NanByFormula, Nan), }
    /// ReLU clipped at 6.
    Relu6 { name: "relu6", code: 13, pack: [], nan: (Nan, Zero), }
    /// log σ(x).
    Logsigmoid { name: "logsigmoid", code: 14, pack: [], nan: (Nan, Nan), }
    /// Continuously differentiable ELU (PyTorch's default α = 1; also ONNX's `Celu`).
    Celu {
        name: "celu",
        code: 17,
        params: {
            /// Saturation value for x → −∞ is −α; non-zero.
            alpha: 1.0 => NonZero,
        },
        pack: [alpha, 1.0 / alpha],
        nan: (Nan, Nan),
    }
    /// x clamped to [min_val, max_val] (PyTorch's defaults −1, 1). Either bound may be infinite
    /// (`F.hardtanh(x, 0, inf)` is a one-sided clamp, as ONNX's `Clip` with one bound).
    Hardtanh {
        name: "hardtanh",
        code: 18,
        params: {
            /// Lower end (−∞ for none).
            min_val: -1.0 => NotNan,
            /// Upper end (at least `min_val`; ∞ for none).
            max_val: 1.0 => NotNan,
        },
        require: max_val >= min_val,
        pack: [min_val, max_val],
        nan: (Nan, Zero),
    }
    /// x/(1 + |x|).
    Softsign { name: "softsign", code: 19, pack: [], nan: (Nan, Nan), }
    /// x − tanh x.
    Tanhshrink { name: "tanhshrink", code: 20, pack: [], nan: (Nan, Nan), }
    /// `value` where x ≤ threshold, else x. PyTorch has no defaults; `threshold` parses as
    /// θ = 0, value = 0.
    Threshold {
        name: "threshold",
        code: 21,
        params: {
            /// θ.
            threshold: 0.0 => NotNan,
            /// What replaces x ≤ θ.
            value: 0.0 => NotNan,
        },
        pack: [threshold, value],
        nan: (Nan, Grad),
    }
    /// 0 on [−λ, λ], else x (PyTorch's default λ = 0.5).
    Hardshrink {
        name: "hardshrink",
        code: 22,
        params: {
            /// λ ≥ 0.
            lambd: 0.5 => NonNegative,
        },
        pack: [lambd],
        nan: (Nan, Zero),
    }
    /// 0 on [−λ, λ], else x shrunk towards 0 by λ (PyTorch's default λ = 0.5).
    Softshrink {
        name: "softshrink",
        code: 23,
        params: {
            /// λ ≥ 0.
            lambd: 0.5 => NonNegative,
        },
        pack: [lambd],
        nan: (Nan, Zero),
    }
    /// Randomized leaky ReLU in eval mode: the fixed slope (lower + upper)/2 below 0
    /// (PyTorch's defaults 1/8 and 1/3).
    RreluEval {
        name: "rrelu_eval",
        code: 28,
        params: {
            /// Lower bound of the training-time slope.
            lower: 1.0 / 8.0 => Finite,
            /// Upper bound (at least `lower`).
            upper: 1.0 / 3.0 => Finite,
        },
        require: upper >= lower,
        pack: [(lower + upper) / 2.0],
        nan: (NanByFormula, GradTimesSlope),
    }
    /// ONNX `HardSigmoid`: clamp(αx + β, 0, 1) (ONNX's defaults α = 0.2, β = 0.5).
    OnnxHardSigmoid {
        name: "onnx_hardsigmoid",
        code: 24,
        params: {
            /// Slope.
            alpha: 0.2 => Finite,
            /// Offset.
            beta: 0.5 => Finite,
        },
        pack: [alpha, beta],
        nan: (Nan, Zero),
    }
    /// ONNX `Selu`: γ·elu(x, α) (ONNX's defaults α ≈ 1.67326, γ ≈ 1.0507).
    OnnxSelu {
        name: "onnx_selu",
        code: 25,
        params: {
            /// ELU's α.
            alpha: 1.673_263_2 => Finite,
            /// Scale γ.
            gamma: 1.050_701 => Finite,
        },
        pack: [alpha, gamma],
        nan: (Nan, Zero),
    }
    /// ONNX `ThresholdedRelu`: x where x > α, else 0 (ONNX's default α = 1).
    OnnxThresholdedRelu {
        name: "onnx_thresholded_relu",
        code: 26,
        params: {
            /// The threshold.
            alpha: 1.0 => NotNan,
        },
        pack: [alpha],
        nan: (Zero, Zero),
    }
    /// ONNX `Swish`: x·σ(αx) (α = 1 is silu).
    OnnxSwish {
        name: "onnx_swish",
        code: 27,
        params: {
            /// The gate's slope.
            alpha: 1.0 => Finite,
        },
        pack: [alpha],
        nan: (NanByFormula, Nan),
    }
    /// QuickGELU, x·σ(1.702x): CLIP's approximation of GELU (onnxruntime's `QuickGelu`).
    QuickGelu { name: "quick_gelu", code: 29, pack: [QUICK_GELU_ALPHA], nan: (NanByFormula, Nan), }
    /// Squared ReLU, max(x, 0)² (Primer's feed-forward activation).
    SquaredRelu { name: "squared_relu", code: 30, pack: [], nan: (Nan, Nan), }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = Error;

    /// Parses a name (`leaky_relu` or `leaky-relu`) into the activation with default parameters.
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().replace('-', "_");
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == wanted)
            .ok_or_else(|| Error::UnknownActivation(s.to_string()))
    }
}

/// The WGSL constant naming an op code: `OP_` and the upper-case name (`OP_LEAKY_RELU`).
pub(crate) fn wgsl_name(name: &str) -> String {
    format!("OP_{}", name.to_uppercase())
}

/// The activations' constants of the WGSL prelude: each op code by name, the two backward
/// codes from a saved output, and the NaN policy as one mask of codes per answer (bit `c` set
/// where op `c` has it), which `shaders/activation.wgsl` tests with `OP`.
pub(crate) fn wgsl_constants() -> Vec<(String, u32, &'static str)> {
    let mut all: Vec<(String, u32, &'static str)> = Activation::ALL
        .iter()
        .map(|a| (wgsl_name(a.name()), a.code(), "an activation's op code"))
        .collect();
    all.push((
        wgsl_name("sigmoid_from_output"),
        SIGMOID_FROM_OUTPUT,
        "sigmoid's backward from its saved output",
    ));
    all.push((
        wgsl_name("tanh_from_output"),
        TANH_FROM_OUTPUT,
        "tanh's backward from its saved output",
    ));
    let mask = |keep: &dyn Fn(NanForward, NanBackward) -> bool| {
        Activation::ALL
            .iter()
            .filter(|a| {
                let (f, b) = a.nan_policy();
                keep(f, b)
            })
            .fold(0u32, |m, a| m | (1 << a.code()))
    };
    all.extend([
        (
            "NAN_BY_FORMULA".to_string(),
            mask(&|f, _| f == NanForward::NanByFormula),
            "ops whose formula carries NaN (no test)",
        ),
        (
            "NAN_FORWARD_ZERO".to_string(),
            mask(&|f, _| f == NanForward::Zero),
            "ops with f(NaN) = 0",
        ),
        (
            "NAN_BACKWARD_GRAD".to_string(),
            mask(&|_, b| b == NanBackward::Grad),
            "ops whose backward passes g at NaN",
        ),
        (
            "NAN_BACKWARD_GRAD_SLOPE".to_string(),
            mask(&|_, b| b == NanBackward::GradTimesSlope),
            "ops whose backward gives g·p0 at NaN",
        ),
        (
            "NAN_BACKWARD_ZERO".to_string(),
            mask(&|_, b| b == NanBackward::Zero),
            "ops whose backward gives 0 at NaN",
        ),
    ]);
    all
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn op_codes_are_distinct_and_apart_from_the_backward_codes() {
        let mut codes: Vec<u32> = Activation::ALL.iter().map(|a| a.code()).collect();
        codes.extend([SIGMOID_FROM_OUTPUT, TANH_FROM_OUTPUT]);
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len(), "{codes:?}");
    }

    #[test]
    fn every_name_parses_back_and_every_parameter_is_set_by_name() {
        for a in Activation::ALL {
            assert_eq!(a.name().parse::<Activation>().unwrap(), a);
            assert_eq!(a.name().replace('_', "-").parse::<Activation>().unwrap(), a);
            a.validate().unwrap();
            for (name, default) in a.parameters() {
                let changed = a.with_parameter(name, default + 0.25).unwrap();
                let value = changed.parameters().into_iter().find(|(n, _)| *n == name);
                assert_eq!(value, Some((name, default + 0.25)), "{a:?}");
            }
            assert!(matches!(
                a.with_parameter("no_such_parameter", 1.0),
                Err(Error::UnknownParameter { .. })
            ));
        }
    }

    #[test]
    fn hardtanh_takes_infinite_bounds_and_refuses_them_crossed() {
        let clamp = |min_val, max_val| Activation::Hardtanh { min_val, max_val }.validate();
        assert!(clamp(0.0, f32::INFINITY).is_ok());
        assert!(clamp(f32::NEG_INFINITY, 0.0).is_ok());
        assert!(clamp(f32::NEG_INFINITY, f32::INFINITY).is_ok());
        assert!(clamp(1.0, 1.0).is_ok());
        for (lo, hi, name) in [
            (1.0, 0.0, "max_val"),
            (f32::INFINITY, 0.0, "max_val"),
            (f32::NAN, 0.0, "min_val"),
        ] {
            match clamp(lo, hi) {
                Err(Error::InvalidParameter { name: got, .. }) => assert_eq!(got, name),
                other => panic!("hardtanh({lo}, {hi}): {other:?}"),
            }
        }
    }

    /// The names of the `case` selectors in the body of WGSL function `function` of `source`.
    pub(crate) fn cases_of(source: &str, function: &str) -> Vec<String> {
        let start = source
            .find(&format!("fn {function}("))
            .unwrap_or_else(|| panic!("no fn {function}"));
        let body = &source[start..];
        let end = body.find("\n}\n").unwrap_or(body.len());
        body[..end]
            .lines()
            .filter_map(|l| l.trim().strip_prefix("case "))
            .flat_map(|l| {
                l.trim_end_matches(['{', ' '])
                    .trim_end_matches(':')
                    .split(',')
            })
            .map(|c| c.trim().to_string())
            .collect()
    }

    #[test]
    fn every_entry_of_the_table_has_a_case_forward_and_backward() {
        let source = include_str!("../../shaders/activation.wgsl");
        let forward = cases_of(source, "forward_op");
        let backward = cases_of(source, "backward_op");
        for a in Activation::ALL {
            let name = wgsl_name(a.name());
            assert_eq!(
                forward.iter().filter(|c| **c == name).count(),
                1,
                "forward {name}"
            );
            assert_eq!(
                backward.iter().filter(|c| **c == name).count(),
                1,
                "backward {name}"
            );
        }
        for name in ["sigmoid_from_output", "tanh_from_output"] {
            assert!(backward.contains(&wgsl_name(name)), "{name}");
        }
        // No case names a code the table does not declare.
        let declared: Vec<String> = wgsl_constants().into_iter().map(|(n, _, _)| n).collect();
        for case in forward.iter().chain(&backward) {
            assert!(
                declared.contains(case),
                "case {case} is not in the op table"
            );
        }
    }
}
