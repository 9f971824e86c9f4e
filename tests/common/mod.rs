//! Shared test helpers: one context per adapter present, seeded data, a NaN/∞-aware tolerance
//! check, and the PyTorch fixtures.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gpu_activations::{
    Activation, Backend, Context, ContextOptions, MatmulKernel, RowStrategy, Subgroups, Tensor,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Set to 1 to make a missing adapter a failure instead of a skip.
pub const REQUIRE_ADAPTER_ENV: &str = "GPU_ACTIVATIONS_REQUIRE_ADAPTER";

/// Comma-separated names (case-insensitive substrings, optionally `backend:name`) of adapters
/// that must be among those under test, e.g. `vulkan:llvmpipe,vulkan:swiftshader,gl:llvmpipe`:
/// a missing one fails every GPU test instead of leaving its implementation untested.
pub const REQUIRE_ADAPTERS_ENV: &str = "GPU_ACTIVATIONS_REQUIRE_ADAPTERS";

/// Writes to the real stderr, past the test harness's capture, so that every run shows it.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Options that open the adapter `ctx` runs on again (its backend and name), with the rest at
/// their defaults, for a test to override.
pub fn same_adapter(ctx: &Context) -> ContextOptions {
    ContextOptions {
        backend: Some(ctx.backend()),
        adapter: Some(ctx.adapter_info().name.clone()),
        allow_cpu_fallback: false,
        ..Default::default()
    }
}

fn open(ctx: &Context, subgroups: Subgroups) -> Option<Context> {
    Context::with_options(ContextOptions {
        subgroups,
        ..same_adapter(ctx)
    })
    .ok()
}

/// One context per GPU adapter present (every adapter of every backend: lavapipe and
/// SwiftShader are both Vulkan adapters), created once per test binary. Fails the test when
/// none is found and `GPU_ACTIVATIONS_REQUIRE_ADAPTER=1`, or when an adapter named in
/// `GPU_ACTIVATIONS_REQUIRE_ADAPTERS` is missing.
pub fn gpus() -> &'static [Context] {
    static CONTEXTS: OnceLock<Vec<Context>> = OnceLock::new();
    let contexts = CONTEXTS.get_or_init(|| {
        let found: Vec<Context> = Context::adapters()
            .into_iter()
            .filter(|a| a.backend != Backend::Cpu)
            .filter_map(|a| {
                Context::with_options(ContextOptions {
                    backend: Some(a.backend),
                    adapter: Some(a.name.clone()),
                    allow_cpu_fallback: false,
                    ..Default::default()
                })
                .ok()
            })
            .collect();
        let names: Vec<String> = found.iter().map(|c| c.adapter_info().to_string()).collect();
        report(&format!(
            "[{}] GPU adapters under test: {}",
            binary_name(),
            if names.is_empty() {
                "none".into()
            } else {
                names.join("; ")
            }
        ));
        found
    });
    if contexts.is_empty() {
        require_adapter();
    }
    require_named_adapters(contexts);
    contexts
}

fn require_named_adapters(contexts: &[Context]) {
    let Ok(list) = std::env::var(REQUIRE_ADAPTERS_ENV) else {
        return;
    };
    for wanted in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let (backend, name) = match wanted.split_once(':') {
            Some((b, n)) => (Some(b.to_lowercase()), n.to_lowercase()),
            None => (None, wanted.to_lowercase()),
        };
        let present = contexts.iter().any(|c| {
            backend.as_ref().is_none_or(|b| *b == c.backend().name())
                && c.adapter_info().name.to_lowercase().contains(&name)
        });
        assert!(
            present,
            "{REQUIRE_ADAPTERS_ENV} names {wanted:?}, which is not among the adapters under test \
             (scripts/setup.sh installs lavapipe, llvmpipe and SwiftShader)"
        );
    }
}

/// The GPU contexts plus, where an adapter has subgroups, a second context on it with
/// subgroups turned off, so that both reduction paths run.
pub fn gpus_with_reduction_paths() -> &'static [Context] {
    static CONTEXTS: OnceLock<Vec<Context>> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        let mut all = gpus().to_vec();
        for ctx in gpus() {
            if let Some(off) = ctx
                .uses_subgroups()
                .then(|| open(ctx, Subgroups::Off))
                .flatten()
            {
                report(&format!(
                    "[{}] also testing {} with subgroups off",
                    binary_name(),
                    off.adapter_info()
                ));
                all.push(off);
            }
        }
        all
    })
}

/// Every GPU adapter present with each row strategy forced, the workgroup strategy with
/// subgroups both on and off, and one subgroup per row where the adapter has subgroups. The
/// first context of each backend is the automatic one.
pub fn row_strategy_contexts() -> &'static [Context] {
    static ALL: OnceLock<Vec<Context>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = Vec::new();
        for ctx in gpus() {
            all.push(ctx.clone());
            let forced = [
                (RowStrategy::PerRow, Subgroups::Auto),
                (RowStrategy::Segmented, Subgroups::Auto),
                (RowStrategy::Workgroup, Subgroups::Auto),
                (RowStrategy::Workgroup, Subgroups::Off),
                (RowStrategy::Subgroup, Subgroups::Auto),
            ];
            for (row_strategy, subgroups) in forced {
                let needs_subgroups =
                    subgroups == Subgroups::Off || row_strategy == RowStrategy::Subgroup;
                if needs_subgroups && !ctx.uses_subgroups() {
                    continue;
                }
                let options = ContextOptions {
                    subgroups,
                    row_strategy,
                    ..same_adapter(ctx)
                };
                all.push(Context::with_options(options).expect("same adapter opens twice"));
            }
        }
        all
    })
}

/// Every context a test should cover: the GPUs and the CPU backend.
/// Every GPU adapter present with each matrix kernel forced (tiled, then registers), and the
/// CPU backend: what the linear layer's tests run on.
pub fn matmul_contexts() -> &'static [Context] {
    static ALL: OnceLock<Vec<Context>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = Vec::new();
        for ctx in gpus() {
            for matmul_kernel in [MatmulKernel::Tiled, MatmulKernel::Registers] {
                let options = ContextOptions {
                    matmul_kernel,
                    ..same_adapter(ctx)
                };
                if let Ok(forced) = Context::with_options(options) {
                    all.push(forced);
                }
            }
        }
        all.push(Context::cpu());
        all
    })
}

/// The context's label with its forced matrix kernel.
pub fn matmul_label(ctx: &Context) -> String {
    format!("{} {:?}", label(ctx), ctx.matmul_kernel())
}

pub fn all_backends() -> Vec<Context> {
    let mut all = gpus().to_vec();
    all.push(Context::cpu());
    all
}

fn require_adapter() {
    if std::env::var(REQUIRE_ADAPTER_ENV).is_ok_and(|v| v == "1") {
        panic!(
            "no GPU adapter found and {REQUIRE_ADAPTER_ENV}=1: install mesa-vulkan-drivers \
             (lavapipe) or make a GPU visible"
        );
    }
    report(&format!(
        "[{}] SKIP: no GPU adapter found; GPU tests ran on nothing",
        binary_name()
    ));
}

fn binary_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| s.split('-').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// A short label for a context in failure messages.
pub fn label(ctx: &Context) -> String {
    let name = ctx
        .adapter_info()
        .name
        .split_whitespace()
        .next()
        .unwrap_or("");
    format!(
        "{}:{name}{}",
        ctx.backend(),
        if ctx.uses_subgroups() {
            "+subgroups"
        } else {
            ""
        }
    )
}

/// `n` values uniform in `[lo, hi)`, reproducible from `seed`.
pub fn uniform(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// `n` values uniform in `[offset − spread, offset + spread)` (rounded to f32 after the
/// offset is added), reproducible from `seed`: rows with a large common offset.
pub fn offset_uniform(seed: u64, n: usize, offset: f32, spread: f32) -> Vec<f32> {
    uniform(seed, n, -spread, spread)
        .into_iter()
        .map(|v| v + offset)
        .collect()
}

/// Row widths on both sides of each row kernel's range: the cached per-row kernels' 64 floats,
/// the subgroup-per-row kernels' 1,024 (on 8-lane subgroups), and longer rows.
pub const OFFSET_WIDTHS: [usize; 9] = [1, 4, 63, 64, 65, 1000, 1024, 1025, 5000];

/// The common offsets that rows are tested at: where `x − (M + log S)` would lose digits.
pub const OFFSETS: [f32; 4] = [0.0, 1e2, 1e4, 1e6];

/// Values that stress activations (one table with `gpu-activations check`'s).
#[allow(unused_imports)]
pub use gpu_activations::cases::SPECIAL;

pub use gpu_activations::accuracy::close;

/// The half storage types every op is tested in.
pub const HALVES: [gpu_activations::DType; 2] =
    [gpu_activations::DType::F16, gpu_activations::DType::BF16];

/// Asserts `accuracy::close_stored` for every element of a result stored as `dtype`: within
/// one ulp of `dtype` plus the f32 bound of the f64 reference rounded to `dtype`.
pub fn assert_stored_close(
    case: &str,
    dtype: gpu_activations::DType,
    got: &[f32],
    want: &[f64],
    inputs: &[&[f32]],
) {
    use gpu_activations::accuracy::{ATOL, RTOL, close_stored, ulp};
    assert_eq!(got.len(), want.len(), "{case}: length");
    let mut bad = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (g, w))| !close_stored(dtype, **g, **w, ATOL, RTOL));
    if let Some((i, (g, w))) = bad.next() {
        let ins: Vec<f32> = inputs.iter().map(|s| s[i]).collect();
        let count = 1 + bad.count();
        panic!(
            "{case} ({dtype}): {count} element(s) out of tolerance; first at {i}: got {g:e}, \
             want {w:e} (inputs {ins:?}, one ulp there {:e})",
            ulp(dtype, *w)
        );
    }
}

/// Asserts `close` for every element; the message names the case, the index and the input.
pub fn assert_all_close(
    case: &str,
    got: &[f32],
    want: &[f64],
    inputs: &[&[f32]],
    atol: f64,
    rtol: f64,
) {
    assert_eq!(got.len(), want.len(), "{case}: length");
    let mut bad = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (g, w))| !close(**g, **w, atol, rtol));
    if let Some((i, (g, w))) = bad.next() {
        let ins: Vec<f32> = inputs.iter().map(|s| s[i]).collect();
        let count = 1 + bad.count();
        panic!(
            "{case}: {count} element(s) out of tolerance; first at {i}: got {g:e}, want {w:e} \
             (inputs {ins:?}, |diff| {:e}, bound {:e})",
            (f64::from(*g) - w).abs(),
            atol + rtol * w.abs()
        );
    }
}

/// The PyTorch fixtures copied into the repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch")
}

/// Reads a fixture `.npy` (float32, float64 or int64) as f64 values and its shape.
pub fn npy(path: &Path) -> (Vec<f64>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = npyz::NpyFile::new(&bytes[..]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
    let values = match file.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
            file.into_vec::<f32>()
                .map(|v| v.into_iter().map(f64::from).collect())
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 2 => {
            file.into_vec::<npyz::half::f16>()
                .map(|v| v.into_iter().map(|h| f64::from(h.to_f32())).collect())
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float => file.into_vec::<f64>(),
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Int => file
            .into_vec::<i64>()
            .map(|v| v.into_iter().map(|x| x as f64).collect()),
        other => panic!("{}: unexpected dtype {other:?}", path.display()),
    }
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (values, shape)
}

/// A fixture `.npy` as f32 (for inputs stored as float32).
pub fn npy_f32(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let (v, s) = npy(path);
    (v.into_iter().map(|x| x as f32).collect(), s)
}

/// The activation a fixture case names, with its parameters from `params.json` and the op's
/// defaults for the rest.
pub fn fixture_activation(name: &str, p: &serde_json::Value) -> Activation {
    let f = |k: &str, default: f32| {
        p.get(k)
            .and_then(|v| v.as_f64())
            .map_or(default, |v| v as f32)
    };
    let default: Activation = name.parse().unwrap();
    match default {
        Activation::LeakyRelu { negative_slope } => Activation::LeakyRelu {
            negative_slope: f("negative_slope", negative_slope),
        },
        Activation::Elu { alpha } => Activation::Elu {
            alpha: f("alpha", alpha),
        },
        Activation::Softplus { beta, threshold } => Activation::Softplus {
            beta: f("beta", beta),
            threshold: f("threshold", threshold),
        },
        Activation::Celu { alpha } => Activation::Celu {
            alpha: f("alpha", alpha),
        },
        Activation::Hardtanh { min_val, max_val } => Activation::Hardtanh {
            min_val: f("min_val", min_val),
            max_val: f("max_val", max_val),
        },
        Activation::Threshold { threshold, value } => Activation::Threshold {
            threshold: f("threshold", threshold),
            value: f("value", value),
        },
        Activation::Hardshrink { lambd } => Activation::Hardshrink {
            lambd: f("lambd", lambd),
        },
        Activation::Softshrink { lambd } => Activation::Softshrink {
            lambd: f("lambd", lambd),
        },
        Activation::RreluEval { lower, upper } => Activation::RreluEval {
            lower: f("lower", lower),
            upper: f("upper", upper),
        },
        Activation::OnnxHardSigmoid { alpha, beta } => Activation::OnnxHardSigmoid {
            alpha: f("alpha", alpha),
            beta: f("beta", beta),
        },
        Activation::OnnxSelu { alpha, gamma } => Activation::OnnxSelu {
            alpha: f("alpha", alpha),
            gamma: f("gamma", gamma),
        },
        Activation::OnnxThresholdedRelu { alpha } => Activation::OnnxThresholdedRelu {
            alpha: f("alpha", alpha),
        },
        Activation::OnnxSwish { alpha } => Activation::OnnxSwish {
            alpha: f("alpha", alpha),
        },
        other => other,
    }
}

/// One batch of a linear head: x [n, h], W [k, h], b [k], labels with every seventh row
/// ignored (−100), and upstream gradients a and c of the per-row statistics.
pub struct Batch {
    pub n: usize,
    pub h: usize,
    pub k: usize,
    pub x: Vec<f32>,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub labels: Vec<i64>,
    pub a: Vec<f32>,
    pub c: Vec<f32>,
}

pub fn batch(seed: u64, n: usize, h: usize, k: usize) -> Batch {
    let labels = uniform(seed + 3, n, 0.0, k as f32)
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if i % 7 == 3 {
                -100
            } else {
                (v as i64).min(k as i64 - 1)
            }
        })
        .collect();
    Batch {
        n,
        h,
        k,
        x: uniform(seed, n * h, -1.0, 1.0),
        w: uniform(seed + 1, k * h, -0.5, 0.5),
        b: uniform(seed + 2, k, -0.5, 0.5),
        labels,
        a: uniform(seed + 4, n, -1.0, 1.0),
        c: uniform(seed + 5, n, -0.5, 0.5),
    }
}

impl Batch {
    /// The batch with x, W and b rounded to `dtype` (labels and upstream gradients as they are).
    pub fn rounded(&self, dtype: gpu_activations::DType) -> Batch {
        let round = |v: &[f32]| v.iter().map(|&x| dtype.round(x)).collect::<Vec<_>>();
        Batch {
            x: round(&self.x),
            w: round(&self.w),
            b: round(&self.b),
            labels: self.labels.clone(),
            a: self.a.clone(),
            c: self.c.clone(),
            ..*self
        }
    }
}

/// The peak device bytes `run` holds beyond what it returns, counted from a trimmed pool.
pub fn peak_beyond_outputs(ctx: &Context, run: &dyn Fn() -> Vec<Tensor>) -> u64 {
    ctx.synchronize().unwrap();
    ctx.trim_pool();
    let before = ctx.device_bytes().0;
    ctx.reset_peak_device_bytes();
    let outputs = run();
    ctx.synchronize().unwrap();
    let kept: u64 = outputs.iter().map(|t| 4 * t.len() as u64).sum();
    ctx.device_bytes().1 - before - kept
}
