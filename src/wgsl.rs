//! The WGSL modules the crate builds, composed from the files in `shaders/`, and the constants
//! Rust and WGSL share.
//!
//! A kernel family is one root file. The file's own `//!` lines say how its module is composed:
//!
//! - `//! import a, b`: the helper files it uses (`a.wgsl`, `b.wgsl`), followed transitively,
//!   each file once (WGSL declarations may come in any order);
//! - `//! storage f32, f16, bf16` (a root only): the storage types the family is built for, one
//!   `storage_*.wgsl` codec appended to each (f32 alone without the line);
//! - `//! requires subgroups`: the file uses subgroup built-ins, so the module needs
//!   `Features::SUBGROUP` (a family does when any of its files does).
//!
//! Every module also gets the prelude: the constants shared with Rust (the ignored class, the
//! register caches' sizes, the activations' op codes), written here once and generated into
//! WGSL, so that no number is written by hand in both languages.
//!
//! [`modules`] lists every module as composed, for another compiler (a browser's, a driver's):
//! `gpu-activations shaders --dump` writes them, the naga test validates and translates them,
//! and the benchmarks launch some of them on raw wgpu. [`Module::locate`] turns a line of a
//! composed module back into the file and line it came from.

use std::fmt::Write as _;

use crate::definitions;
use crate::gpu::pipelines::{Composed, ModuleRef, Piece};
use crate::layout::DType;

/// The class index of a row that is left out of a loss (`ignore_index`), in every loss kernel.
pub(crate) const IGNORED: u32 = u32::MAX;
/// The longest row, in floats, that the per-row softmax kernel holds in registers.
pub(crate) const CACHED_ROW_MAX: usize = 64;
/// vec4s in one part of a subgroup lane's register cache, and parts per lane: a lane of the
/// subgroup-per-row kernels holds at most `LANE_PART · LANE_PARTS` vec4s of its row.
pub(crate) const LANE_PART: usize = 8;
/// See [`LANE_PART`].
pub(crate) const LANE_PARTS: usize = 4;
/// The most classes a head row holds in registers (the rest are read twice).
pub(crate) const HEAD_CACHED_CLASSES: usize = 32;
/// The longest line along an inner dim that the strided softmax holds in registers.
pub(crate) const STRIDED_CACHED_LEN: usize = 32;
/// The tiled matrix product's block of C (rows and columns) and its step along the inner dim.
pub(crate) const MATMUL_BLOCK: usize = 64;
/// See [`MATMUL_BLOCK`].
pub(crate) const MATMUL_TILE_K: usize = 16;
/// Invocations per workgroup of the matrix products.
pub(crate) const MATMUL_THREADS: usize = 256;

/// The constants shared with Rust: name, value, and what it is.
fn shared_constants() -> Vec<(String, u32, &'static str)> {
    let mut all: Vec<(String, u32, &'static str)> = vec![
        (
            "IGNORED".into(),
            IGNORED,
            "the class index of an ignored row",
        ),
        (
            "ROW_CACHE".into(),
            (CACHED_ROW_MAX / 4) as u32,
            "vec4s of a row cached by one invocation",
        ),
        (
            "LANE_PART".into(),
            LANE_PART as u32,
            "vec4s per part of a lane's cache",
        ),
        (
            "LANE_PARTS".into(),
            LANE_PARTS as u32,
            "parts of a lane's cache",
        ),
        (
            "HEAD_CACHE".into(),
            (HEAD_CACHED_CLASSES / 4) as u32,
            "vec4s of a head row held in registers",
        ),
        (
            "STRIDED_CACHE".into(),
            STRIDED_CACHED_LEN as u32,
            "elements of a line held in registers",
        ),
        (
            "MATMUL_BLOCK".into(),
            MATMUL_BLOCK as u32,
            "rows and columns of a block of C",
        ),
        (
            "MATMUL_TILE_K".into(),
            MATMUL_TILE_K as u32,
            "a tile's depth along k",
        ),
        (
            "MATMUL_THREADS".into(),
            MATMUL_THREADS as u32,
            "invocations per workgroup",
        ),
    ];
    all.extend(definitions::wgsl_constants());
    all
}

/// The prelude every module begins its helper part with: the shared constants as WGSL.
fn prelude() -> String {
    let mut out = String::from(
        "// prelude: constants shared with Rust, generated from src/wgsl.rs (and the op\n\
         // definitions); edit them there.\n",
    );
    for (name, value, what) in shared_constants() {
        let _ = writeln!(out, "const {name}: u32 = {value}u; // {what}");
    }
    out
}

/// Every file in `shaders/`, by name without `.wgsl`.
const FILES: &[(&str, &str)] = &[
    ("activation", include_str!("../shaders/activation.wgsl")),
    (
        "bce_with_logits",
        include_str!("../shaders/bce_with_logits.wgsl"),
    ),
    ("class_index", include_str!("../shaders/class_index.wgsl")),
    ("convert", include_str!("../shaders/convert.wgsl")),
    ("copy", include_str!("../shaders/copy.wgsl")),
    (
        "cross_entropy",
        include_str!("../shaders/cross_entropy.wgsl"),
    ),
    (
        "cross_entropy_head",
        include_str!("../shaders/cross_entropy_head.wgsl"),
    ),
    (
        "cross_entropy_shared",
        include_str!("../shaders/cross_entropy_shared.wgsl"),
    ),
    (
        "cross_entropy_subgroup",
        include_str!("../shaders/cross_entropy_subgroup.wgsl"),
    ),
    (
        "cross_entropy_subgroup_rows",
        include_str!("../shaders/cross_entropy_subgroup_rows.wgsl"),
    ),
    ("gated", include_str!("../shaders/gated.wgsl")),
    ("grid", include_str!("../shaders/grid.wgsl")),
    ("head_stats", include_str!("../shaders/head_stats.wgsl")),
    ("math", include_str!("../shaders/math.wgsl")),
    ("matmul", include_str!("../shaders/matmul.wgsl")),
    ("nll", include_str!("../shaders/nll.wgsl")),
    (
        "online_softmax",
        include_str!("../shaders/online_softmax.wgsl"),
    ),
    ("optimizer", include_str!("../shaders/optimizer.wgsl")),
    ("prelu", include_str!("../shaders/prelu.wgsl")),
    ("reduce", include_str!("../shaders/reduce.wgsl")),
    ("row_cache", include_str!("../shaders/row_cache.wgsl")),
    (
        "row_reduce_shared",
        include_str!("../shaders/row_reduce_shared.wgsl"),
    ),
    (
        "row_reduce_subgroup",
        include_str!("../shaders/row_reduce_subgroup.wgsl"),
    ),
    ("softmax", include_str!("../shaders/softmax.wgsl")),
    (
        "softmax_shared",
        include_str!("../shaders/softmax_shared.wgsl"),
    ),
    (
        "softmax_strided",
        include_str!("../shaders/softmax_strided.wgsl"),
    ),
    (
        "softmax_subgroup",
        include_str!("../shaders/softmax_subgroup.wgsl"),
    ),
    (
        "softmax_subgroup_rows",
        include_str!("../shaders/softmax_subgroup_rows.wgsl"),
    ),
    ("special", include_str!("../shaders/special.wgsl")),
    ("storage_bf16", include_str!("../shaders/storage_bf16.wgsl")),
    ("storage_f16", include_str!("../shaders/storage_f16.wgsl")),
    ("storage_f32", include_str!("../shaders/storage_f32.wgsl")),
    ("transpose", include_str!("../shaders/transpose.wgsl")),
];

fn file(name: &str) -> Option<&'static str> {
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// The values of a file's `//! key …` lines, comma- or space-separated.
fn directive<'a>(text: &'a str, key: &str) -> impl Iterator<Item = &'a str> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("//!"))
        .filter_map(move |rest| {
            let mut words = rest.trim().splitn(2, char::is_whitespace);
            (words.next() == Some(key)).then(|| words.next().unwrap_or(""))
        })
        .flat_map(|list| list.split([',', ' ']))
        .map(str::trim)
        .filter(|w| !w.is_empty())
}

/// A kernel family: one root file and the module composed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    /// Elementwise activations, forward and backward.
    Activation,
    /// Row-wise softmax and log-softmax, reducing through workgroup memory.
    Softmax,
    /// Row-wise softmax and log-softmax, reducing through subgroups.
    SoftmaxSubgroup,
    /// Fused softmax cross-entropy, reducing through workgroup memory.
    CrossEntropy,
    /// Fused softmax cross-entropy, reducing through subgroups.
    CrossEntropySubgroup,
    /// Fused sigmoid binary cross-entropy with logits.
    BceWithLogits,
    /// Grouped sums that reduce losses to a scalar.
    Reduce,
    /// A plain vec4 copy: the bandwidth ceiling every benchmark is measured against.
    Copy,
    /// Class indices stored on the device, converted and checked for the cross-entropy.
    ClassIndex,
    /// Gated activations (GLU, SwiGLU, GeGLU), forward and both gradients.
    Gated,
    /// PReLU with a learnable slope, forward and both gradients.
    Prelu,
    /// Softmax, log-softmax and softmin along a dim other than the last (strided lines).
    SoftmaxStrided,
    /// Conversion between f32 and half storage (f16, bf16).
    Convert,
    /// Batched transpose of the last two dims (PyTorch's class-at-dim-1 layout and back).
    Transpose,
    /// Negative log-likelihood of log-probabilities, loss and gradient.
    Nll,
    /// Cross-entropy of an LLM head with z-loss and softcap, fused.
    CrossEntropyHead,
    /// Tiled matrix products of the linear layer, forward and backward.
    Matmul,
    /// Parameter updates: SGD and Adam with an L2 term.
    Optimizer,
    /// Per-token log-probabilities, entropies and log-sum-exps of a head's logits under a
    /// temperature, and their gradient.
    HeadStats,
}

impl Shader {
    /// Every kernel family.
    pub const ALL: [Shader; 19] = [
        Shader::Activation,
        Shader::Softmax,
        Shader::SoftmaxSubgroup,
        Shader::CrossEntropy,
        Shader::CrossEntropySubgroup,
        Shader::BceWithLogits,
        Shader::Reduce,
        Shader::Copy,
        Shader::ClassIndex,
        Shader::Gated,
        Shader::Prelu,
        Shader::SoftmaxStrided,
        Shader::Convert,
        Shader::Transpose,
        Shader::Nll,
        Shader::CrossEntropyHead,
        Shader::Matmul,
        Shader::Optimizer,
        Shader::HeadStats,
    ];

    /// The family's root file (without `.wgsl`), which is also its module's name.
    pub const fn name(self) -> &'static str {
        match self {
            Shader::Activation => "activation",
            Shader::Softmax => "softmax_shared",
            Shader::SoftmaxSubgroup => "softmax_subgroup",
            Shader::CrossEntropy => "cross_entropy_shared",
            Shader::CrossEntropySubgroup => "cross_entropy_subgroup",
            Shader::BceWithLogits => "bce_with_logits",
            Shader::Reduce => "reduce",
            Shader::Copy => "copy",
            Shader::ClassIndex => "class_index",
            Shader::Gated => "gated",
            Shader::Prelu => "prelu",
            Shader::SoftmaxStrided => "softmax_strided",
            Shader::Convert => "convert",
            Shader::Transpose => "transpose",
            Shader::Nll => "nll",
            Shader::CrossEntropyHead => "cross_entropy_head",
            Shader::Matmul => "matmul",
            Shader::Optimizer => "optimizer",
            Shader::HeadStats => "head_stats",
        }
    }

    /// What the device layer is told of the family's module: its name and how to compose it.
    pub const fn module(self) -> ModuleRef {
        ModuleRef {
            name: self.name(),
            compose: compose_named,
        }
    }

    /// Whether the module uses subgroup built-ins (any of its files' `//! requires subgroups`).
    pub fn needs_subgroups(self) -> bool {
        files_of(self.name())
            .iter()
            .any(|f| file(f).is_some_and(|t| directive(t, "requires").any(|w| w == "subgroups")))
    }
}

/// The storage types a root is composed for.
fn storages(root: &str) -> Vec<DType> {
    let listed: Vec<DType> = file(root)
        .map(|text| {
            directive(text, "storage")
                .filter_map(|w| match w {
                    "f32" => Some(DType::F32),
                    "f16" => Some(DType::F16),
                    "bf16" => Some(DType::BF16),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        vec![DType::F32]
    } else {
        listed
    }
}

/// The root and every file it imports, transitively, each once, in depth-first order.
fn files_of(root: &'static str) -> Vec<&'static str> {
    fn visit(name: &'static str, seen: &mut Vec<&'static str>) {
        if seen.contains(&name) {
            return;
        }
        let Some((name, text)) = FILES.iter().find(|(n, _)| *n == name) else {
            return;
        };
        seen.push(name);
        for import in directive(text, "import") {
            if let Some((known, _)) = FILES.iter().find(|(n, _)| *n == import) {
                visit(known, seen);
            }
        }
    }
    let mut seen = Vec::new();
    visit(root, &mut seen);
    seen
}

/// Imports that name no file, as (file, import): a test asserts there are none.
#[cfg(test)]
pub(crate) fn unknown_imports() -> Vec<(&'static str, String)> {
    FILES
        .iter()
        .flat_map(|(name, text)| {
            directive(text, "import")
                .filter(|i| file(i).is_none())
                .map(move |i| (*name, i.to_string()))
        })
        .collect()
}

/// The module of root `name` for `storage`: the root, its imports, the prelude and the codec.
fn compose_named(name: &'static str, storage: DType) -> Option<Composed> {
    if !storages(name).contains(&storage) {
        return None;
    }
    let codec = match storage {
        // A family without a `//! storage` line reads f32 arrays itself.
        _ if file(name).is_none_or(|t| directive(t, "storage").next().is_none()) => None,
        DType::F32 => Some("storage_f32"),
        DType::F16 => Some("storage_f16"),
        DType::BF16 => Some("storage_bf16"),
        _ => return None,
    };
    let prelude = prelude();
    let mut parts: Vec<(&'static str, &str)> = Vec::new();
    for f in files_of(name) {
        parts.push((f, file(f)?));
    }
    parts.push(("prelude", &prelude));
    if let Some(codec) = codec {
        parts.push((codec, file(codec)?));
    }
    let mut source = String::new();
    let mut pieces = Vec::new();
    for (file, text) in parts {
        let first_line = source.lines().count() + 1;
        source.push_str(text);
        if !text.ends_with('\n') {
            source.push('\n');
        }
        pieces.push(Piece {
            file,
            first_line,
            lines: text.lines().count(),
        });
    }
    Some(Composed { source, pieces })
}

/// One WGSL module as the crate composes it: a kernel family built for one storage type.
#[derive(Clone, Debug)]
pub struct Module {
    /// The family's name (its root file in `shaders/`, without `.wgsl`).
    pub name: &'static str,
    /// The storage type the module reads and writes tensors in.
    pub storage: DType,
    /// Whether it uses subgroup built-ins (a device needs `Features::SUBGROUP`; a browser's
    /// compiler also wants `enable subgroups;`, which naga does not take).
    pub requires_subgroups: bool,
    composed: Composed,
}

impl Module {
    /// The composed WGSL source.
    pub fn source(&self) -> &str {
        &self.composed.source
    }

    /// The file (without `.wgsl`; `prelude` for the generated constants) and line that line
    /// `line` (1-based) of the composed source came from.
    pub fn locate(&self, line: usize) -> Option<(&'static str, usize)> {
        self.composed.locate(line)
    }

    /// `message` (a compiler's) with each `wgsl:LINE:COLUMN` turned into `FILE.wgsl:LINE:COLUMN`.
    pub fn relabel(&self, message: &str) -> String {
        self.composed.relabel(message)
    }

    /// The files it is composed from, in order.
    pub fn files(&self) -> Vec<&'static str> {
        self.composed.pieces.iter().map(|p| p.file).collect()
    }
}

/// Every module the crate builds: each kernel family with each storage type it is built for.
pub fn modules() -> Vec<Module> {
    Shader::ALL
        .iter()
        .flat_map(|&shader| {
            storages(shader.name())
                .into_iter()
                .filter_map(move |storage| module_of(shader, storage))
        })
        .collect()
}

/// The module of family `name` (its root file's name) for `storage`, if the crate builds one.
pub fn module(name: &str, storage: DType) -> Option<Module> {
    let shader = Shader::ALL.into_iter().find(|s| s.name() == name)?;
    module_of(shader, storage)
}

fn module_of(shader: Shader, storage: DType) -> Option<Module> {
    Some(Module {
        name: shader.name(),
        storage,
        requires_subgroups: shader.needs_subgroups(),
        composed: compose_named(shader.name(), storage)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_import_names_a_file() {
        assert_eq!(unknown_imports(), Vec::<(&str, String)>::new());
    }

    #[test]
    fn every_family_is_composed_for_the_storage_types_its_root_lists() {
        for shader in Shader::ALL {
            let storages = storages(shader.name());
            assert!(!storages.is_empty(), "{}", shader.name());
            for t in [DType::F32, DType::F16, DType::BF16] {
                assert_eq!(
                    compose_named(shader.name(), t).is_some(),
                    storages.contains(&t),
                    "{} {t}",
                    shader.name()
                );
            }
        }
        assert_eq!(
            storages("softmax_shared"),
            [DType::F32, DType::F16, DType::BF16]
        );
        assert_eq!(storages("matmul"), [DType::F32]);
        assert_eq!(storages("convert"), [DType::F16, DType::BF16]);
    }

    #[test]
    fn the_prelude_holds_each_shared_constant_once() {
        let prelude = prelude();
        for (name, value, _) in shared_constants() {
            assert_eq!(
                prelude
                    .matches(&format!("const {name}: u32 = {value}u;"))
                    .count(),
                1,
                "{name}"
            );
        }
    }
}
