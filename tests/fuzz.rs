//! Hostile input: the .npy reader and every op's argument validation, fed random and mutated
//! input, must answer with a value or a typed error, never a panic.
//!
//! CI runs a few hundred cases per property; the dedicated run named in the README sets
//! `GPU_ACTIVATIONS_FUZZ_CASES=100000`. Failing cases proptest finds are saved under
//! `tests/fuzz.proptest-regressions` and replayed first on every run; the ones found while
//! writing this file are also spelled out as tests at the end.

mod common;

use std::path::Path;

use gpu_activations::npy;
use gpu_activations::{
    Activation, BceOptions, Context, CrossEntropyOptions, Reduction, Targets, Tensor,
    class_indices_from_floats,
};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("GPU_ACTIVATIONS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// A valid .npy file of random values in one of the dtypes the reader accepts (or rejects).
fn npy_file() -> impl Strategy<Value = Vec<u8>> {
    let dtype = prop::sample::select(vec![
        "<f4", ">f4", "<f8", ">f8", "|i1", "<i2", ">i4", "<i8", "|u1", "<u2", "<u4", ">u8", "<c8",
        "|b1", "<f2",
    ]);
    (dtype, prop::collection::vec(0usize..4, 0..4), any::<bool>()).prop_map(
        |(dtype, shape, fortran)| {
            let n: usize = shape.iter().product();
            let header = format!(
                "{{'descr': '{dtype}', 'fortran_order': {}, 'shape': ({}), }}",
                if fortran { "True" } else { "False" },
                shape.iter().map(|d| format!("{d},")).collect::<String>()
            );
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            let pad = 64 - (10 + header.len() + 1) % 64;
            let len = (header.len() + pad + 1) as u16;
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend(std::iter::repeat_n(b' ', pad));
            bytes.push(b'\n');
            let item = dtype[2..].parse::<usize>().unwrap_or(1);
            bytes.extend((0..n * item).map(|i| (i * 37 % 251) as u8));
            bytes
        },
    )
}

/// A valid file with some bytes changed, cut short or extended.
fn mutated_npy() -> impl Strategy<Value = Vec<u8>> {
    (
        npy_file(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        prop::option::of(any::<prop::sample::Index>()),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(mut bytes, edits, cut, tail)| {
            for (at, value) in edits {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] = value;
                }
            }
            if let Some(at) = cut {
                let len = bytes.len();
                bytes.truncate(at.index(len + 1));
            }
            bytes.extend(tail);
            bytes
        })
}

fn contexts() -> Vec<Context> {
    let mut all = vec![Context::cpu()];
    all.extend(common::gpus().iter().take(1).cloned());
    all
}

fn float() -> impl Strategy<Value = f32> {
    prop_oneof![
        -10.0f32..10.0,
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(0.0),
        Just(-1.5),
        Just(1e30),
        any::<f32>(),
    ]
}

fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        prop::collection::vec(0usize..6, 0..4),
        prop::collection::vec(
            prop_oneof![
                Just(usize::MAX),
                Just(usize::MAX / 3),
                Just(1usize << 40),
                0usize..4
            ],
            1..4
        ),
    ]
}

/// Applies every op with the given arguments; only panics count as failures.
fn exercise(
    ctx: &Context,
    shape: &[usize],
    param: f32,
    other: f32,
    targets: &[i64],
    reduction: Reduction,
) {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let Some(n) = n.filter(|&n| n <= 256) else {
        // Oversized shapes must be refused, not allocated.
        let err = Tensor::zeros(ctx, shape);
        assert!(err.is_err() || shape.iter().product::<usize>() <= 1 << 28);
        return;
    };
    let values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
    let Ok(x) = Tensor::from_slice(ctx, &values, shape) else {
        return;
    };
    let acts = [
        Activation::LeakyRelu {
            negative_slope: param,
        },
        Activation::Elu { alpha: param },
        Activation::Softplus {
            beta: param,
            threshold: other,
        },
        Activation::Gelu,
    ];
    for act in acts {
        let _ = x.activation(act).and_then(|y| y.to_vec());
        let _ = x.activation_backward(act, &x).and_then(|y| y.to_vec());
    }
    let _ = x
        .softmax()
        .and_then(|y| y.log_softmax_backward(&x))
        .and_then(|y| y.to_vec());
    let weight = Some(vec![param; shape.last().copied().unwrap_or(1).min(256)]);
    let o = CrossEntropyOptions {
        reduction,
        ignore_index: targets.first().copied().unwrap_or(-100),
        label_smoothing: other,
        weight: weight.clone(),
    };
    if let Ok(out) = x.cross_entropy(Targets::Indices(targets), &o) {
        let _ = out.loss.to_vec();
        let _ = out.grad.to_vec();
    }
    let _ = x
        .cross_entropy(Targets::Probabilities(&x), &o)
        .and_then(|out| out.loss.to_vec());
    let b = BceOptions {
        reduction,
        weight: weight.clone(),
        pos_weight: weight,
    };
    let _ = x.bce_with_logits(&x, &b).and_then(|out| out.loss.to_vec());
    let floats: Vec<f64> = targets
        .iter()
        .map(|&t| t as f64 + f64::from(param).fract())
        .collect();
    let _ = class_indices_from_floats(&floats);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn npy_parse_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = npy::parse(Path::new("fuzz.npy"), &bytes);
    }

    #[test]
    fn npy_parse_never_panics_on_mutated_files(bytes in mutated_npy()) {
        if let Ok(values) = npy::parse(Path::new("fuzz.npy"), &bytes) {
            let n: usize = values.shape().iter().product();
            let len = match &values {
                npy::Values::F16(a) | npy::Values::F32(a) => a.values.len(),
                npy::Values::F64(a) => a.values.len(),
                npy::Values::Int(a) => a.values.len(),
            };
            prop_assert_eq!(n, len);
        }
    }

    #[test]
    fn op_arguments_never_panic(
        shape in shape(),
        param in float(),
        other in float(),
        targets in prop::collection::vec(prop_oneof![-3i64..8, Just(i64::MIN), Just(i64::MAX), Just(-100i64)], 0..8),
        reduction in prop::sample::select(vec![Reduction::Mean, Reduction::Sum, Reduction::None]),
    ) {
        for ctx in contexts() {
            exercise(&ctx, &shape, param, other, &targets, reduction);
        }
    }
}

#[test]
fn valid_files_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.npy");
    let staged = npy::stage(&path, &[1.5, -2.0, f32::NAN], &[3]).unwrap();
    staged.commit().unwrap();
    let a = npy::read_f32(&path).unwrap();
    assert_eq!(a.shape, vec![3]);
    assert_eq!(a.values[..2], [1.5, -2.0]);
    assert!(a.values[2].is_nan());
}

/// Cases found while writing the fuzz targets, kept as regressions.
#[test]
fn regressions() {
    let path = Path::new("regression.npy");
    // A header whose shape promises far more data than the file holds: refused before any
    // allocation (npyz would otherwise reserve the promised size).
    let mut huge = b"\x93NUMPY\x01\x00".to_vec();
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,), }";
    huge.extend_from_slice(&(header.len() as u16 + 1).to_le_bytes());
    huge.extend_from_slice(header.as_bytes());
    huge.push(b'\n');
    assert!(npy::parse(path, &huge).is_err());
    // Empty input and a bare magic string.
    assert!(npy::parse(path, b"").is_err());
    assert!(npy::parse(path, b"\x93NUMPY").is_err());
    // A shape whose element count overflows usize.
    assert!(Tensor::zeros(&Context::cpu(), &[usize::MAX, usize::MAX]).is_err());
}
