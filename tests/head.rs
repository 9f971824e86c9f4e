//! The fused head cross-entropy with Liger-Kernel's options (z-loss, softcap, the z-loss and
//! each row's log-sum-exp returned) against Liger's semantics as PyTorch computes them
//! (`tests/fixtures/pytorch/family/cross_entropy_liger/`) and the f64 reference, on every
//! backend, with the bad parameters a user can give.

mod common;

use common::{all_backends, assert_all_close, fixtures, label, npy, npy_f32, uniform};
use gpu_activations::accuracy::{ATOL, RTOL};
use gpu_activations::cpu::loss as reference;
use gpu_activations::{
    CrossEntropyOptions, DType, Error, HeadOptions, Reduction, Targets, Tensor,
    class_indices_from_floats,
};

#[test]
fn head_options_match_pytorchs_answers_on_every_backend() {
    let root = fixtures().join("family/cross_entropy_liger");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 3, "every case is covered");
    for ctx in all_backends() {
        for d in &cases {
            let o: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(d.join("options.json")).unwrap())
                    .unwrap();
            let head = HeadOptions {
                lse_square_scale: o["lse_square_scale"].as_f64().unwrap() as f32,
                softcap: o["softcap"].as_f64().map(|c| c as f32),
            };
            let options = CrossEntropyOptions {
                ignore_index: o["ignore_index"].as_i64().unwrap(),
                reduction: Reduction::parse(o["reduction"].as_str().unwrap()).unwrap(),
                ..Default::default()
            };
            let (z, shape) = npy_f32(&d.join("logits.npy"));
            let zt = Tensor::from_slice(&ctx, &z, &shape).unwrap();
            let labels = class_indices_from_floats(&npy(&d.join("targets.npy")).0).unwrap();
            let out = zt
                .cross_entropy_head(Targets::Indices(&labels), &options, &head)
                .unwrap();
            let case = format!("{} PyTorch {}", label(&ctx), d.display());
            for (what, got, file) in [
                ("loss", &out.loss, "loss.npy"),
                ("z_loss", &out.z_loss, "z_loss.npy"),
                ("lse", &out.lse, "lse.npy"),
                ("grad", &out.grad, "grad.npy"),
            ] {
                let (want, want_shape) = npy(&d.join(file));
                assert_eq!(got.shape(), want_shape, "{case} {what}: shape");
                let got = got.to_vec().unwrap();
                assert_all_close(&format!("{case} {what}"), &got, &want, &[], ATOL, RTOL);
            }
        }
    }
}

#[test]
fn head_options_match_the_reference_with_every_option_and_storage_type() {
    // Rows of up to 32 classes are held in registers (a kernel built for their length); longer
    // ones are read twice. Both sides of that edge, a row shorter than a vec4, and a long row.
    for classes in [67, 33, 32, 5, 1] {
        head_matches_the_reference(24, classes);
    }
}

fn head_matches_the_reference(rows: usize, classes: usize) {
    let z = uniform(70, rows * classes, -40.0, 40.0);
    let mut labels: Vec<i64> = (0..rows as i64)
        .map(|r| (r * 13) % classes as i64)
        .collect();
    labels[5] = -100;
    let weight = uniform(71, classes, 0.5, 2.0);
    for ctx in all_backends() {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let stored: Vec<f32> = z.iter().map(|&v| dtype.round(v)).collect();
            let zt = Tensor::from_slice_as(&ctx, &stored, &[rows, classes], dtype).unwrap();
            for (reduction, smoothing, weighted, head) in [
                (
                    Reduction::Mean,
                    0.0,
                    false,
                    HeadOptions {
                        lse_square_scale: 1e-3,
                        softcap: None,
                    },
                ),
                (
                    Reduction::Sum,
                    0.1,
                    true,
                    HeadOptions {
                        lse_square_scale: 1e-4,
                        softcap: Some(15.0),
                    },
                ),
                (
                    Reduction::None,
                    0.0,
                    true,
                    HeadOptions {
                        lse_square_scale: 0.0,
                        softcap: Some(30.0),
                    },
                ),
                (
                    Reduction::Mean,
                    0.2,
                    true,
                    HeadOptions {
                        lse_square_scale: 2e-3,
                        softcap: Some(5.0),
                    },
                ),
            ] {
                let options = CrossEntropyOptions {
                    reduction,
                    label_smoothing: smoothing,
                    weight: weighted.then(|| weight.clone()),
                    ..Default::default()
                };
                let out = zt
                    .cross_entropy_head(Targets::Indices(&labels), &options, &head)
                    .unwrap();
                let want = reference::cross_entropy_head(
                    &stored.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
                    classes,
                    &labels,
                    &options,
                    &head,
                );
                let case = format!(
                    "{} {dtype} K={classes} {reduction:?} {head:?} ε={smoothing}",
                    label(&ctx)
                );
                common::assert_stored_close(
                    &format!("{case} loss"),
                    dtype,
                    &out.loss.to_vec().unwrap(),
                    &want.loss,
                    &[],
                );
                common::assert_stored_close(
                    &format!("{case} z"),
                    dtype,
                    &out.z_loss.to_vec().unwrap(),
                    &want.z_loss,
                    &[],
                );
                common::assert_stored_close(
                    &format!("{case} grad"),
                    dtype,
                    &out.grad.to_vec().unwrap(),
                    &want.grad,
                    &[],
                );
                // lse is returned in f32 whatever the storage.
                assert_all_close(
                    &format!("{case} lse"),
                    &out.lse.to_vec().unwrap(),
                    &want.lse,
                    &[],
                    ATOL,
                    RTOL,
                );
            }
        }
        // Without z-loss or softcap the head is the plain cross-entropy.
        let zt = Tensor::from_slice(&ctx, &z, &[rows, classes]).unwrap();
        let o = CrossEntropyOptions::default();
        let head = zt
            .cross_entropy_head(Targets::Indices(&labels), &o, &HeadOptions::default())
            .unwrap();
        let plain = zt.cross_entropy(Targets::Indices(&labels), &o).unwrap();
        let want: Vec<f64> = plain
            .grad
            .to_vec()
            .unwrap()
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        assert_all_close(
            "head = cross-entropy",
            &head.grad.to_vec().unwrap(),
            &want,
            &[],
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn bad_head_options_are_typed_errors() {
    for ctx in all_backends() {
        let z = Tensor::from_slice(&ctx, &[0.0; 8], &[2, 4]).unwrap();
        let o = CrossEntropyOptions::default();
        for head in [
            HeadOptions {
                lse_square_scale: 0.0,
                softcap: Some(0.0),
            },
            HeadOptions {
                lse_square_scale: 0.0,
                softcap: Some(-3.0),
            },
            HeadOptions {
                lse_square_scale: 0.0,
                softcap: Some(f32::NAN),
            },
            HeadOptions {
                lse_square_scale: -1e-3,
                softcap: None,
            },
            HeadOptions {
                lse_square_scale: f32::NAN,
                softcap: None,
            },
        ] {
            let e = z
                .cross_entropy_head(Targets::Indices(&[0, 1]), &o, &head)
                .unwrap_err();
            assert!(matches!(e, Error::InvalidParameter { .. }), "{head:?}: {e}");
        }
        let e = z
            .cross_entropy_head(Targets::Probabilities(&z), &o, &HeadOptions::default())
            .unwrap_err();
        assert!(matches!(e, Error::DTypeMismatch { .. }), "{e}");
        let e = z
            .cross_entropy_head(Targets::Indices(&[0, 4]), &o, &HeadOptions::default())
            .unwrap_err();
        assert!(matches!(e, Error::TargetOutOfRange { row: 1, .. }), "{e}");
    }
}

#[test]
fn head_rows_with_infinities_and_nan_match_the_reference() {
    // Rows holding +∞, −∞ (at the target and elsewhere), all −∞, NaN, ±3e38, and a plain row;
    // rows of 7 classes (held in registers) and of 40 (read twice); with and without a softcap
    // (which maps ±∞ to ±c).
    for classes in [7, 40] {
        let mut z = uniform(72, 7 * classes, -3.0, 3.0);
        let row = |r: usize| r * classes;
        z[row(0) + 2] = f32::INFINITY;
        z[row(1) + 4] = f32::NEG_INFINITY;
        z[row(2) + 1] = f32::NEG_INFINITY;
        z[row(3)..row(4)].fill(f32::NEG_INFINITY);
        z[row(4) + 5] = f32::NAN;
        z[row(5)] = 3e38;
        z[row(5) + 1] = -3e38;
        let labels: Vec<i64> = vec![0, 3, 1, 2, 0, 1, 6];
        let z64: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
        for ctx in all_backends() {
            let zt = Tensor::from_slice(&ctx, &z, &[7, classes]).unwrap();
            for softcap in [None, Some(20.0)] {
                let head = HeadOptions {
                    lse_square_scale: 1e-3,
                    softcap,
                };
                let o = CrossEntropyOptions {
                    reduction: Reduction::None,
                    ..Default::default()
                };
                let out = zt
                    .cross_entropy_head(Targets::Indices(&labels), &o, &head)
                    .unwrap();
                let want = reference::cross_entropy_head(
                    &z64,
                    classes,
                    &labels,
                    &CrossEntropyOptions {
                        reduction: Reduction::None,
                        ..Default::default()
                    },
                    &HeadOptions {
                        lse_square_scale: 1e-3,
                        softcap,
                    },
                );
                let case = format!("{} K={classes} softcap {softcap:?}", label(&ctx));
                for (what, got, want) in [
                    ("loss", &out.loss, &want.loss),
                    ("z-loss", &out.z_loss, &want.z_loss),
                    ("lse", &out.lse, &want.lse),
                    ("grad", &out.grad, &want.grad),
                ] {
                    let got = got.to_vec().unwrap();
                    assert_all_close(&format!("{case} {what}"), &got, want, &[], ATOL, RTOL);
                }
            }
        }
    }
}
