//! The gated activations (`glu swiglu geglu geglu-tanh`, forward and backward): of X split along
//! its last dim (value first), or of X (the values) and `--gate` (the gates).

use gpu_activations::cpu::gated as gated_ref;
use gpu_activations::npy::file_error;
use gpu_activations::{Context, DType, Gate, Tensor};

use super::{
    BoxError, Case, Family, Flag, Need, Op, Produced, Run, bench_g, bench_x, elements, read_like,
};
use crate::check::Checker;

/// A gated activation, forward or backward.
pub struct GatedOp {
    gate: Gate,
    backward: bool,
}

/// Every gate forward, then every gate backward.
pub fn entries() -> Vec<Box<dyn Op>> {
    [false, true]
        .into_iter()
        .flat_map(|backward| {
            Gate::ALL.map(|gate| Box::new(GatedOp { gate, backward }) as Box<dyn Op>)
        })
        .collect()
}

/// X's shape with its last dim halved: a gated op's output and upstream gradient.
fn halved(run: &Run<'_>) -> Result<Vec<usize>, BoxError> {
    match run.shape().split_last() {
        Some((&last, lead)) if last % 2 == 0 => Ok([lead, &[last / 2]].concat()),
        _ => Err(file_error(
            run.input(),
            format!(
                "a gated op needs an even last dim (value and gate halves), found shape {:?}",
                run.shape()
            ),
        )
        .into()),
    }
}

impl Op for GatedOp {
    fn name(&self) -> String {
        let suffix = if self.backward { "-backward" } else { "" };
        format!("{}{suffix}", self.gate.name().replace('_', "-"))
    }

    fn family(&self) -> Family {
        Family::GatedAndPrelu
    }

    fn flags(&self) -> Vec<(Flag, Need)> {
        let mut flags = vec![(Flag::Gate, Need::Optional)];
        if self.backward {
            flags.push((Flag::GradOutput, Need::Required));
            flags.push((Flag::GateGradOutput, Need::Optional));
        }
        flags
    }

    fn run(&self, run: &Run<'_>) -> Result<Produced, BoxError> {
        let (x, gate) = (&run.x, self.gate);
        let Some(gate_path) = run.args.gate.as_deref() else {
            if run.args.gate_grad_output.is_some() {
                return Err(format!(
                    "--gate-grad-output applies to {} with --gate (two tensors)",
                    self.name()
                )
                .into());
            }
            let half = halved(run)?;
            if !self.backward {
                return Produced::single(&x.gated(gate)?);
            }
            let g = run.grad(&half)?;
            return Produced::single(&x.gated_backward(gate, &g)?);
        };
        let b = run.upload(&read_like(gate_path, run.shape(), "the input's")?)?;
        if !self.backward {
            return Produced::single(&Tensor::gated_pair(gate, x, &b)?);
        }
        if run.args.gate_grad_output.is_none() {
            return Err(format!(
                "{} with --gate writes two gradients: give --gate-grad-output for the gates'",
                self.name()
            )
            .into());
        }
        let g = run.grad(run.shape())?;
        let (da, db) = Tensor::gated_pair_backward(gate, x, &b, &g)?;
        Produced::single(&da)?.with(Some(Flag::GateGradOutput), &db)
    }

    fn bench_shapes(&self) -> Vec<Vec<usize>> {
        vec![vec![4096, 4096]]
    }

    fn case(
        &self,
        ctx: &Context,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Option<Box<dyn Case>>, BoxError> {
        let n = elements(shape);
        let mut half = shape.to_vec();
        if let Some(last) = half.last_mut() {
            *last /= 2;
        }
        let g = bench_g(elements(&half));
        Ok(Some(Box::new(GatedCase {
            op: GatedOp { ..*self },
            xt: Tensor::from_slice_as(ctx, &bench_x(n), shape, dtype)?,
            gt: Tensor::from_slice_as(ctx, &g, &half, dtype)?,
        })))
    }

    /// Rows of 2·40 values, value and gate halves, against the f64 pair reference.
    fn check(&self, ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
        let (rows, half) = (37, 40);
        let shape = [rows, 2 * half];
        let x = checker.uniform(rows * 2 * half, -6.0, 6.0);
        let (xt, x) = checker.upload(ctx, &x, &shape)?;
        let gate = self.gate;
        let pairs = || {
            x.chunks(2 * half)
                .flat_map(|r| (0..half).map(move |j| (f64::from(r[j]), f64::from(r[j + half]))))
        };
        if !self.backward {
            let want: Vec<f64> = pairs()
                .map(|(a, b)| gated_ref::forward_pair(gate, a, b))
                .collect();
            checker.add(
                self.name(),
                &shape,
                &xt.gated(gate)?.to_vec()?,
                &want,
                false,
            );
            return Ok(());
        }
        let g = checker.uniform(rows * half, -1.0, 1.0);
        let (gt, g) = checker.upload(ctx, &g, &[rows, half])?;
        let mut want = vec![0.0; x.len()];
        for (i, (a, b)) in pairs().enumerate() {
            let (da, db) = gated_ref::backward_pair(gate, a, b, f64::from(g[i]));
            let (r, j) = (i / half, i % half);
            want[r * 2 * half + j] = da;
            want[r * 2 * half + j + half] = db;
        }
        let got = xt.gated_backward(gate, &gt)?.to_vec()?;
        checker.add(self.name(), &shape, &got, &want, false);
        Ok(())
    }
}

struct GatedCase {
    op: GatedOp,
    xt: Tensor,
    /// The upstream gradient (the output's shape).
    gt: Tensor,
}

impl Case for GatedCase {
    fn input(&self) -> &Tensor {
        &self.xt
    }

    fn record(&self) -> Result<(), BoxError> {
        if self.op.backward {
            drop(self.xt.gated_backward(self.op.gate, &self.gt)?);
        } else {
            drop(self.xt.gated(self.op.gate)?);
        }
        Ok(())
    }

    /// x read and half of it written; backward: x and g (half of x) read, dx written.
    fn bytes(&self) -> f64 {
        let bytes = self.xt.dtype().size() * self.xt.len();
        if self.op.backward {
            (5 * bytes / 2) as f64
        } else {
            (3 * bytes / 2) as f64
        }
    }
}
