//! PReLU with the slopes of `--weight`: one, or one per channel (dim 1, PyTorch's rule), or with
//! `--broadcast` any slope that broadcasts to X (ONNX's rule); `prelu-backward` writes dX and
//! the slopes' gradient (`--weight-grad-output`).

use gpu_activations::npy::{self, file_error};
use gpu_activations::{Context, DType, Error, Tensor};

use super::{BoxError, Case, Family, Flag, Need, Op, Produced, Run, bench_g, bench_x, elements};
use crate::check::Checker;

/// PReLU, forward or backward.
pub struct PreluOp {
    backward: bool,
}

/// prelu and prelu-backward.
pub fn entries() -> Vec<Box<dyn Op>> {
    [false, true]
        .map(|backward| Box::new(PreluOp { backward }) as Box<dyn Op>)
        .into()
}

/// `(y or dx, dweight)` of x by the channel or the broadcast rule.
fn prelu(
    x: &Tensor,
    w: &Tensor,
    g: Option<&Tensor>,
    broadcast: bool,
) -> gpu_activations::Result<(Tensor, Option<Tensor>)> {
    Ok(match (g, broadcast) {
        (None, false) => (x.prelu(w)?, None),
        (None, true) => (x.prelu_broadcast(w)?, None),
        (Some(g), false) => {
            let (dx, dw) = x.prelu_backward(w, g)?;
            (dx, Some(dw))
        }
        (Some(g), true) => {
            let (dx, dw) = x.prelu_broadcast_backward(w, g)?;
            (dx, Some(dw))
        }
    })
}

impl Op for PreluOp {
    fn name(&self) -> String {
        let suffix = if self.backward { "-backward" } else { "" };
        format!("prelu{suffix}")
    }

    fn family(&self) -> Family {
        Family::GatedAndPrelu
    }

    fn flags(&self) -> Vec<(Flag, Need)> {
        let mut flags = vec![
            (Flag::Weight, Need::Required),
            (Flag::Broadcast, Need::Optional),
        ];
        if self.backward {
            flags.push((Flag::GradOutput, Need::Required));
            flags.push((Flag::WeightGradOutput, Need::Required));
        }
        flags
    }

    fn run(&self, run: &Run<'_>) -> Result<Produced, BoxError> {
        let path = run.path(Flag::Weight)?;
        let broadcast = run.args.broadcast;
        let w = npy::read_f32(path)?;
        if !broadcast && w.shape.len() > 1 {
            return Err(file_error(
                path,
                format!(
                    "the slopes must be 1-D (or broadcast to X with --broadcast), found shape {:?}",
                    w.shape
                ),
            )
            .into());
        }
        // A 0-d slope stays 0-d, so that its gradient is written with the slope's own shape.
        let wt = run.upload(&w)?;
        let g = self.backward.then(|| run.grad(run.shape())).transpose()?;
        let (out, dw) = prelu(&run.x, &wt, g.as_ref(), broadcast).map_err(|e| -> BoxError {
            match e {
                Error::ShapeMismatch { .. } => file_error(path, e.to_string()).into(),
                other => other.into(),
            }
        })?;
        let produced = Produced::single(&out)?;
        match dw {
            Some(dw) => produced.with(Some(Flag::WeightGradOutput), &dw),
            None => Ok(produced),
        }
    }

    fn bench_shapes(&self) -> Vec<Vec<usize>> {
        vec![vec![64, 256, 1024]]
    }

    fn case(
        &self,
        ctx: &Context,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Option<Box<dyn Case>>, BoxError> {
        let n = elements(shape);
        let channels = if shape.len() >= 2 { shape[1] } else { 1 };
        let w: Vec<f32> = (0..channels)
            .map(|c| 0.05 + (c % 7) as f32 * 0.05)
            .collect();
        Ok(Some(Box::new(PreluCase {
            backward: self.backward,
            xt: Tensor::from_slice_as(ctx, &bench_x(n), shape, dtype)?,
            gt: Tensor::from_slice_as(ctx, &bench_g(n), shape, dtype)?,
            wt: Tensor::from_slice_as(ctx, &w, &[channels], dtype)?,
        })))
    }

    /// One slope per channel of `[4, 21, 6, 8]` (forward) and of `[3, 5, 4]` (backward, where
    /// each slope's gradient sums few enough products that its f32 rounding stays within the
    /// absolute bound), and a slope broadcast ONNX's way.
    fn check(&self, ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
        let (n, c, s) = if self.backward {
            (3, 5, 4)
        } else {
            (4, 21, 48)
        };
        let shape = [n, c, s];
        let x = checker.uniform(n * c * s, -8.0, 8.0);
        let (xt, x) = checker.upload(ctx, &x, &shape)?;
        let slopes: Vec<f32> = (0..c).map(|k| 0.05 * k as f32 - 0.2).collect();
        let (wt, w) = checker.upload(ctx, &slopes, &[c])?;
        // The broadcast slope: one per element of the last dim.
        let last: Vec<f32> = (0..s).map(|k| 0.02 * k as f32 - 0.1).collect();
        let (lt, l) = checker.upload(ctx, &last, &[s])?;
        let g = if self.backward {
            checker.uniform(n * c * s, -1.0, 1.0)
        } else {
            vec![1.0; n * c * s]
        };
        let (gt, g) = checker.upload(ctx, &g, &shape)?;
        for (label, broadcast, wt, slope_of) in [
            (
                "",
                false,
                &wt,
                &(|i: usize| (i / s) % c) as &dyn Fn(usize) -> usize,
            ),
            (" broadcast", true, &lt, &|i: usize| i % s),
        ] {
            let slopes = if broadcast { &l } else { &w };
            let mut want_dw = vec![0.0; slopes.len()];
            let (mut want_y, mut want_dx) = (Vec::new(), Vec::new());
            for (i, (&v, &g)) in x.iter().zip(&g).enumerate() {
                let (v, g, k) = (f64::from(v), f64::from(g), slope_of(i));
                let slope = f64::from(slopes[k]);
                if v > 0.0 {
                    want_y.push(v);
                    want_dx.push(g);
                } else {
                    want_y.push(slope * v);
                    want_dx.push(slope * g);
                    want_dw[k] += g * v;
                }
            }
            let grad = self.backward.then_some(&gt);
            let (out, dw) = prelu(&xt, wt, grad, broadcast)?;
            let name = format!("{}{label}", self.name());
            match dw {
                None => checker.add(name, &shape, &out.to_vec()?, &want_y, false),
                Some(dw) => {
                    checker.add(
                        format!("{name} dx"),
                        &shape,
                        &out.to_vec()?,
                        &want_dx,
                        false,
                    );
                    let dw_shape = [slopes.len()];
                    checker.add(
                        format!("{name} dslope"),
                        &dw_shape,
                        &dw.to_vec()?,
                        &want_dw,
                        false,
                    );
                }
            }
        }
        Ok(())
    }
}

struct PreluCase {
    backward: bool,
    xt: Tensor,
    gt: Tensor,
    wt: Tensor,
}

impl Case for PreluCase {
    fn input(&self) -> &Tensor {
        &self.xt
    }

    fn record(&self) -> Result<(), BoxError> {
        let g = self.backward.then_some(&self.gt);
        drop(prelu(&self.xt, &self.wt, g, false)?);
        Ok(())
    }

    fn bytes(&self) -> f64 {
        let streams = if self.backward { 3 } else { 2 };
        (streams * self.xt.dtype().size() * self.xt.len()) as f64
    }
}
