//! The linear layer (`linear`: X, `--weight W`, optional `--bias B`; `linear-backward`: dX, dW,
//! dB from `--grad-output`) and the fused linear cross-entropy (`linear-cross-entropy`: the
//! loss of X·Wᵀ + B against `--targets` with every option of the cross-entropy and the head,
//! and dX, dW, dB), timed by `bench` against the FMA peak and the materialised path.

use gpu_activations::cpu::{linear as linear_ref, loss as loss_ref};
use gpu_activations::npy::{self, file_error};
use gpu_activations::{
    Context, CrossEntropyOptions, DType, HeadOptions, Reduction, Targets, Tensor,
};

use super::loss::{ClassTargets, LossLayout, class_options, head_options, read_targets};
use super::{BoxError, Case, Family, Flag, Need, Op, Produced, Run, Written, widen};
use crate::bench_linear::LayerBench;
use crate::check::Checker;
use crate::run::input_error;

/// Which op of the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Forward,
    Backward,
    CrossEntropy,
}

pub struct LinearOp {
    layer: Layer,
}

/// linear, linear-backward and linear-cross-entropy.
pub fn entries() -> Vec<Box<dyn Op>> {
    [Layer::Forward, Layer::Backward, Layer::CrossEntropy]
        .map(|layer| Box::new(LinearOp { layer }) as Box<dyn Op>)
        .into()
}

/// `(N, H, K)` of x `[.., H]` and W `[K, H]` (N every leading dim together).
fn dims(x: &[usize], w: &[usize]) -> (usize, usize, usize) {
    let h = x.last().copied().unwrap_or(1);
    let n = x.iter().product::<usize>() / h.max(1);
    (n, h, w.first().copied().unwrap_or(0))
}

impl Op for LinearOp {
    fn name(&self) -> String {
        match self.layer {
            Layer::Forward => "linear",
            Layer::Backward => "linear-backward",
            Layer::CrossEntropy => "linear-cross-entropy",
        }
        .into()
    }

    fn family(&self) -> Family {
        Family::Layers
    }

    fn flags(&self) -> Vec<(Flag, Need)> {
        use Need::{Optional, Required};
        match self.layer {
            Layer::Forward => vec![(Flag::Weight, Required), (Flag::Bias, Optional)],
            Layer::Backward => vec![
                (Flag::Weight, Required),
                (Flag::GradOutput, Required),
                (Flag::WeightGradOutput, Optional),
                (Flag::BiasGradOutput, Optional),
            ],
            Layer::CrossEntropy => [
                (Flag::Weight, Required),
                (Flag::Targets, Required),
                (Flag::Bias, Optional),
                (Flag::Reduction, Optional),
                (Flag::IgnoreIndex, Optional),
                (Flag::LabelSmoothing, Optional),
                (Flag::ClassWeight, Optional),
                (Flag::LseSquareScale, Optional),
                (Flag::Softcap, Optional),
                (Flag::LossOutput, Optional),
                (Flag::WeightGradOutput, Optional),
                (Flag::BiasGradOutput, Optional),
                (Flag::LseOutput, Optional),
                (Flag::ZLossOutput, Optional),
            ]
            .into(),
        }
    }

    fn run(&self, run: &Run<'_>) -> Result<Produced, BoxError> {
        if run.shape().is_empty() {
            return Err(input_error(
                run,
                format!(
                    "{} needs an input of rank at least 1, found a scalar",
                    self.name()
                ),
            ));
        }
        let w_path = run.path(Flag::Weight)?;
        let w = run.upload(&npy::read_f32(w_path)?)?;
        let bias = match run.args.bias.as_deref() {
            Some(path) => Some(run.upload(&npy::read_f32(path)?)?),
            None => None,
        };
        match self.layer {
            Layer::Forward => Produced::single(&run.x.linear(&w, bias.as_ref())?),
            Layer::Backward => {
                let (_, _, k) = dims(run.shape(), w.shape());
                let mut out_shape = run.shape().to_vec();
                if let Some(last) = out_shape.last_mut() {
                    *last = k;
                }
                let g = run.grad(&out_shape)?;
                let (dx, dw, db) = run.x.linear_backward(&w, &g)?;
                Produced::single(&dx)?
                    .with(Some(Flag::WeightGradOutput), &dw)?
                    .with(Some(Flag::BiasGradOutput), &db)
            }
            Layer::CrossEntropy => {
                let path = run.path(Flag::Targets)?;
                let (n, _, k) = dims(run.shape(), w.shape());
                let shape = run.shape();
                let layout = LossLayout {
                    rows: n,
                    classes: k,
                    targets: shape[..shape.len() - 1].to_vec(),
                    dim1: false,
                };
                let ClassTargets::Indices(indices) =
                    read_targets(&self.name(), path, &layout, shape, false)?
                else {
                    return Err(file_error(path, "linear-cross-entropy takes class indices").into());
                };
                let options = class_options(run, run.args.class_weight.as_deref(), k)?;
                let out = run
                    .x
                    .linear_cross_entropy(
                        &w,
                        bias.as_ref(),
                        Targets::Indices(&indices),
                        &options,
                        &head_options(run),
                    )
                    .map_err(|e| -> BoxError {
                        match e {
                            gpu_activations::Error::TargetOutOfRange { .. } => {
                                file_error(path, e.to_string()).into()
                            }
                            other => other.into(),
                        }
                    })?;
                let mut produced = Produced::single(&out.dx)?
                    .with(Some(Flag::LossOutput), &out.loss)?
                    .with(Some(Flag::ZLossOutput), &out.z_loss)?
                    .with(Some(Flag::WeightGradOutput), &out.dw)?
                    .with(Some(Flag::BiasGradOutput), &out.db)?;
                produced.files.push(Written {
                    to: Some(Flag::LseOutput),
                    values: out.lse.to_vec()?,
                    shape: out.lse.shape().to_vec(),
                    always_f32: true,
                });
                Ok(produced)
            }
        }
    }

    fn bench_shapes(&self) -> Vec<Vec<usize>> {
        match self.layer {
            Layer::CrossEntropy => vec![vec![8192, 1024, 32000]],
            _ => vec![vec![4096, 1024, 1024]],
        }
    }

    fn case(&self, _: &Context, _: &[usize], _: DType) -> Result<Option<Box<dyn Case>>, BoxError> {
        Ok(None)
    }

    fn layer(&self) -> Option<LayerBench> {
        match self.layer {
            Layer::Forward | Layer::Backward => Some(LayerBench::Linear),
            Layer::CrossEntropy => Some(LayerBench::LinearCrossEntropy),
        }
    }

    /// `[37, 29] × [23, 29]ᵀ` with a bias, its gradients, and the fused head with every option
    /// (class weights, an ignored row, label smoothing, the z-loss and the softcap).
    fn check(&self, ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
        let (n, h, k) = (37, 29, 23);
        let x = checker.uniform(n * h, -1.0, 1.0);
        let w = checker.uniform(k * h, -1.0, 1.0);
        let b = checker.uniform(k, -0.5, 0.5);
        let (xt, x) = checker.upload(ctx, &x, &[n, h])?;
        let (wt, w) = checker.upload(ctx, &w, &[k, h])?;
        let (bt, b) = checker.upload(ctx, &b, &[k])?;
        let (x64, w64, b64) = (widen(&x), widen(&w), widen(&b));
        match self.layer {
            Layer::Forward => {
                let want = linear_ref::forward(&x64, &w64, Some(&b64), n, h, k);
                let got = xt.linear(&wt, Some(&bt))?.to_vec()?;
                checker.add(self.name(), &[n, k], &got, &want, false);
            }
            Layer::Backward => {
                let g = checker.uniform(n * k, -1.0, 1.0);
                let (gt, g) = checker.upload(ctx, &g, &[n, k])?;
                let (dx, dw, db) = linear_ref::backward(&x64, &w64, &widen(&g), n, h, k);
                let (gdx, gdw, gdb) = xt.linear_backward(&wt, &gt)?;
                for (what, got, want, shape) in [
                    ("dx", gdx, dx, vec![n, h]),
                    ("dw", gdw, dw, vec![k, h]),
                    ("db", gdb, db, vec![k]),
                ] {
                    let name = format!("{} {what}", self.name());
                    checker.add(name, &shape, &got.to_vec()?, &want, false);
                }
            }
            Layer::CrossEntropy => {
                let mut labels: Vec<i64> = (0..n).map(|_| checker.class(k)).collect();
                labels[3] = -100;
                let class_weight: Vec<f32> = (0..k).map(|c| 0.5 + (c % 4) as f32 * 0.25).collect();
                let options = CrossEntropyOptions {
                    reduction: Reduction::Mean,
                    ignore_index: -100,
                    label_smoothing: 0.05,
                    weight: Some(class_weight.clone()),
                };
                let head = HeadOptions {
                    lse_square_scale: 1e-3,
                    softcap: Some(5.0),
                };
                let out = xt.linear_cross_entropy(
                    &wt,
                    Some(&bt),
                    Targets::Indices(&labels),
                    &options,
                    &head,
                )?;
                let z = linear_ref::forward(&x64, &w64, Some(&b64), n, h, k);
                let want = loss_ref::cross_entropy_head(
                    &z,
                    k,
                    &labels,
                    &CrossEntropyOptions {
                        weight: Some(class_weight.clone()),
                        label_smoothing: 0.05,
                        ..Default::default()
                    },
                    &HeadOptions {
                        lse_square_scale: 1e-3,
                        softcap: Some(5.0),
                    },
                );
                let (dx, dw, db) = linear_ref::backward(&x64, &w64, &want.grad, n, h, k);
                let name = self.name();
                checker.add(
                    format!("{name} loss"),
                    &[],
                    &out.loss.to_vec()?,
                    &want.loss,
                    true,
                );
                checker.add(
                    format!("{name} lse"),
                    &[n],
                    &out.lse.to_vec()?,
                    &want.lse,
                    true,
                );
                for (what, got, want, shape) in [
                    ("dx", out.dx, dx, vec![n, h]),
                    ("dw", out.dw, dw, vec![k, h]),
                    ("db", out.db, db, vec![k]),
                ] {
                    checker.add(
                        format!("{name} {what}"),
                        &shape,
                        &got.to_vec()?,
                        &want,
                        false,
                    );
                }
                // Reduction none with per-row upstream weights: the gradient of Σ w_r·loss_r.
                let none = CrossEntropyOptions {
                    reduction: Reduction::None,
                    ..options
                };
                let weights = checker.uniform(n, -1.0, 1.0);
                let wt_rows = Tensor::from_slice(ctx, &weights, &[n])?;
                let out = xt.linear_cross_entropy_weighted(
                    &wt,
                    Some(&bt),
                    Targets::Indices(&labels),
                    &none,
                    &head,
                    &wt_rows,
                )?;
                let mut want = loss_ref::cross_entropy_head(
                    &z,
                    k,
                    &labels,
                    &CrossEntropyOptions {
                        weight: Some(class_weight.clone()),
                        reduction: Reduction::None,
                        label_smoothing: 0.05,
                        ..Default::default()
                    },
                    &HeadOptions {
                        lse_square_scale: 1e-3,
                        softcap: Some(5.0),
                    },
                );
                for (g, &w) in want.grad.chunks_mut(k).zip(&weights) {
                    g.iter_mut().for_each(|v| *v *= f64::from(w));
                }
                let (dx, _, _) = linear_ref::backward(&x64, &w64, &want.grad, n, h, k);
                checker.add(
                    format!("{name} none, per-row weights, dx"),
                    &[n, h],
                    &out.dx.to_vec()?,
                    &dx,
                    false,
                );
            }
        }
        Ok(())
    }
}
