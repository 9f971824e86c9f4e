//! Every elementwise activation of the library's op table, forward (`gelu`) and backward
//! (`gelu-backward`): its parameters are its flags.

use gpu_activations::cases::SPECIAL;
use gpu_activations::{Activation, Context, DType, Tensor};

use super::{
    BoxError, Case, Compared, Family, Flag, Need, Op, Produced, Run, bench_g, bench_x, elements,
};
use crate::check::Checker;

/// An activation, forward or backward.
pub struct ActivationOp {
    act: Activation,
    backward: bool,
}

/// Every activation, forward and backward.
pub fn entries() -> Vec<Box<dyn Op>> {
    Activation::ALL
        .into_iter()
        .flat_map(|act| {
            [false, true].map(|backward| Box::new(ActivationOp { act, backward }) as Box<dyn Op>)
        })
        .collect()
}

/// The command-line name of an activation: its snake_case name with hyphens.
pub fn cli_name(a: Activation) -> String {
    a.name().replace('_', "-")
}

impl Op for ActivationOp {
    fn name(&self) -> String {
        let suffix = if self.backward { "-backward" } else { "" };
        format!("{}{suffix}", cli_name(self.act))
    }

    fn family(&self) -> Family {
        Family::Activations
    }

    fn flags(&self) -> Vec<(Flag, Need)> {
        let mut flags: Vec<(Flag, Need)> = self
            .act
            .parameters()
            .into_iter()
            .map(|(name, _)| (Flag::Param(name), Need::Optional))
            .collect();
        if self.backward {
            flags.push((Flag::GradOutput, Need::Required));
        }
        flags
    }

    fn run(&self, run: &Run<'_>) -> Result<Produced, BoxError> {
        let act = run.args.params.apply(self.act);
        if self.backward {
            let g = run.grad(run.shape())?;
            Produced::single(&run.x.activation_backward(act, &g)?)
        } else {
            Produced::single(&run.x.activation(act)?)
        }
    }

    fn bench_shapes(&self) -> Vec<Vec<usize>> {
        vec![vec![16_777_216]]
    }

    fn case(
        &self,
        ctx: &Context,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Option<Box<dyn Case>>, BoxError> {
        let n = elements(shape);
        let (x, g) = (bench_x(n), bench_g(n));
        Ok(Some(Box::new(ActivationCase {
            act: self.act,
            backward: self.backward,
            xt: Tensor::from_slice_as(ctx, &x, shape, dtype)?,
            gt: Tensor::from_slice_as(ctx, &g, shape, dtype)?,
            out: Tensor::zeros_as(ctx, shape, dtype)?,
            x,
            g,
        })))
    }

    /// Random values over [−12, 12) and the edge values, each against several upstream
    /// gradients.
    fn check(&self, ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
        let random = checker.uniform(4 * 257, -12.0, 12.0);
        let inputs: [(&[usize], Vec<f32>); 2] =
            [(&[4, 257], random), (&[SPECIAL.len()], SPECIAL.to_vec())];
        let act = self.act;
        for (shape, x) in inputs {
            let (xt, x) = checker.upload(ctx, &x, shape)?;
            if !self.backward {
                let want: Vec<f64> = x.iter().map(|&v| act.reference(f64::from(v))).collect();
                checker.add(
                    self.name(),
                    shape,
                    &xt.activation(act)?.to_vec()?,
                    &want,
                    false,
                );
                continue;
            }
            let g = checker.uniform(x.len(), -2.0, 2.0);
            let (gt, g) = checker.upload(ctx, &g, shape)?;
            let want: Vec<f64> = x
                .iter()
                .zip(&g)
                .map(|(&v, &d)| act.reference_backward(f64::from(v), f64::from(d)))
                .collect();
            let got = xt.activation_backward(act, &gt)?.to_vec()?;
            checker.add(self.name(), shape, &got, &want, false);
        }
        Ok(())
    }

    fn activation(&self) -> Option<Activation> {
        (!self.backward).then_some(self.act)
    }

    fn in_demo(&self) -> bool {
        matches!(
            self.act,
            Activation::Relu
                | Activation::Gelu
                | Activation::Silu
                | Activation::Tanh
                | Activation::Sigmoid
        )
    }
}

struct ActivationCase {
    act: Activation,
    backward: bool,
    x: Vec<f32>,
    g: Vec<f32>,
    xt: Tensor,
    gt: Tensor,
    out: Tensor,
}

impl Case for ActivationCase {
    fn input(&self) -> &Tensor {
        &self.xt
    }

    fn record(&self) -> Result<(), BoxError> {
        if self.backward {
            self.xt
                .activation_backward_into(self.act, &self.gt, &self.out)?;
        } else {
            self.xt.activation_into(self.act, &self.out)?;
        }
        Ok(())
    }

    fn bytes(&self) -> f64 {
        let streams = if self.backward { 3 } else { 2 };
        (streams * self.xt.dtype().size() * self.xt.len()) as f64
    }

    fn compare(&self) -> Result<Vec<Compared>, BoxError> {
        self.record()?;
        let want = self
            .x
            .iter()
            .zip(&self.g)
            .map(|(&v, &d)| {
                let (v, d) = (f64::from(v), f64::from(d));
                if self.backward {
                    self.act.reference_backward(v, d)
                } else {
                    self.act.reference(v)
                }
            })
            .collect();
        Ok(vec![Compared {
            what: String::new(),
            got: self.out.to_vec()?,
            want,
        }])
    }
}
