//! The softmax family: softmax and log-softmax along the last dim (`softmax`, `log-softmax`),
//! and softmax, log-softmax and softmin along any dim (`softmax-dim`, `log-softmax-dim`,
//! `softmin`, which take `--dim`), each forward and backward (from the saved output).

use gpu_activations::cases::SOFTMAX_EDGE_ROWS;
use gpu_activations::cpu::softmax as softmax_ref;
use gpu_activations::{Context, DType, Tensor};

use super::{
    BoxError, Case, Compared, Family, Flag, Need, Op, Produced, Run, bench_g, bench_x, elements,
    rows_cols, widen,
};
use crate::check::Checker;
use crate::run::input_error;

/// Which function of the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Softmax,
    LogSoftmax,
    Softmin,
}

/// A member of the family along the last dim (`dim: false`) or along `--dim`.
pub struct SoftmaxOp {
    kind: Kind,
    along_dim: bool,
    backward: bool,
}

/// softmax and log-softmax along the last dim, forward then backward each.
pub fn last_dim_entries() -> Vec<Box<dyn Op>> {
    let mut all: Vec<Box<dyn Op>> = Vec::new();
    for kind in [Kind::Softmax, Kind::LogSoftmax] {
        for backward in [false, true] {
            all.push(Box::new(SoftmaxOp {
                kind,
                along_dim: false,
                backward,
            }));
        }
    }
    all
}

/// softmax-dim, log-softmax-dim and softmin, forward then backward.
pub fn dim_entries() -> Vec<Box<dyn Op>> {
    let mut all: Vec<Box<dyn Op>> = Vec::new();
    for backward in [false, true] {
        for kind in [Kind::Softmax, Kind::LogSoftmax, Kind::Softmin] {
            all.push(Box::new(SoftmaxOp {
                kind,
                along_dim: true,
                backward,
            }));
        }
    }
    all
}

impl SoftmaxOp {
    fn base_name(&self) -> &'static str {
        match (self.kind, self.along_dim) {
            (Kind::Softmax, false) => "softmax",
            (Kind::LogSoftmax, false) => "log-softmax",
            (Kind::Softmax, true) => "softmax-dim",
            (Kind::LogSoftmax, true) => "log-softmax-dim",
            (Kind::Softmin, _) => "softmin",
        }
    }

    /// The forward along `dim` (the last dim for the last-dim members).
    fn forward(&self, x: &Tensor, dim: isize) -> gpu_activations::Result<Tensor> {
        match (self.kind, self.along_dim) {
            (Kind::Softmax, false) => x.softmax(),
            (Kind::LogSoftmax, false) => x.log_softmax(),
            (Kind::Softmax, true) => x.softmax_dim(dim),
            (Kind::LogSoftmax, true) => x.log_softmax_dim(dim),
            (Kind::Softmin, _) => x.softmin(dim),
        }
    }

    /// The backward from the saved output `y` with upstream `g`.
    fn backward(&self, y: &Tensor, g: &Tensor, dim: isize) -> gpu_activations::Result<Tensor> {
        match (self.kind, self.along_dim) {
            (Kind::Softmax, false) => y.softmax_backward(g),
            (Kind::LogSoftmax, false) => y.log_softmax_backward(g),
            (Kind::Softmax, true) => y.softmax_dim_backward(dim, g),
            (Kind::LogSoftmax, true) => y.log_softmax_dim_backward(dim, g),
            (Kind::Softmin, _) => y.softmin_backward(dim, g),
        }
    }

    /// The dim a benchmark runs along: 1 where the input has it (the class dim of PyTorch's
    /// layout), else the last.
    fn bench_dim(&self, shape: &[usize]) -> isize {
        if self.along_dim && shape.len() >= 2 {
            1
        } else {
            -1
        }
    }
}

impl Op for SoftmaxOp {
    fn name(&self) -> String {
        let suffix = if self.backward { "-backward" } else { "" };
        format!("{}{suffix}", self.base_name())
    }

    fn family(&self) -> Family {
        Family::Softmax
    }

    fn flags(&self) -> Vec<(Flag, Need)> {
        let mut flags = Vec::new();
        if self.along_dim {
            flags.push((Flag::Dim, Need::Optional));
        }
        if self.backward {
            flags.push((Flag::GradOutput, Need::Required));
        }
        flags
    }

    fn run(&self, run: &Run<'_>) -> Result<Produced, BoxError> {
        if !self.along_dim && run.shape().is_empty() {
            return Err(input_error(
                run,
                format!(
                    "{} needs an array of rank at least 1, found a scalar",
                    self.name()
                ),
            ));
        }
        let dim = run.args.dim.unwrap_or(-1);
        let y = self.forward(&run.x, dim)?;
        if !self.backward {
            return Produced::single(&y);
        }
        let g = run.grad(run.shape())?;
        Produced::single(&self.backward(&y, &g, dim)?)
    }

    fn bench_shapes(&self) -> Vec<Vec<usize>> {
        if self.along_dim {
            // The segmentation case: 21 classes at dim 1 of a batch of 128 × 128 maps.
            vec![vec![32, 21, 128, 128]]
        } else {
            vec![
                vec![4096, 1024],
                vec![65536, 64],
                vec![64, 65536],
                vec![16, 1_048_576],
            ]
        }
    }

    fn case(
        &self,
        ctx: &Context,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Option<Box<dyn Case>>, BoxError> {
        let n = elements(shape);
        let (x, g) = (bench_x(n), bench_g(n));
        let xt = Tensor::from_slice_as(ctx, &x, shape, dtype)?;
        let dim = self.bench_dim(shape);
        let y = if self.backward {
            Some(self.forward(&xt, dim)?)
        } else {
            None
        };
        Ok(Some(Box::new(SoftmaxCase {
            op: SoftmaxOp { ..*self },
            dim,
            gt: Tensor::from_slice_as(ctx, &g, shape, dtype)?,
            out: Tensor::zeros_as(ctx, shape, dtype)?,
            xt,
            y,
            x,
        })))
    }

    fn check(&self, ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
        if self.along_dim {
            check_dim(self, ctx, checker)
        } else {
            check_last(self, ctx, checker)
        }
    }

    fn in_demo(&self) -> bool {
        self.kind == Kind::Softmax && !self.along_dim && !self.backward
    }
}

/// Rows of one element, of 33, of 1000 and of 65,537 (past every register cache), and the
/// edge rows.
fn check_last(op: &SoftmaxOp, ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
    let log = op.kind == Kind::LogSoftmax;
    let edge: Vec<f32> = SOFTMAX_EDGE_ROWS.iter().flatten().copied().collect();
    let cases: Vec<(Vec<usize>, Vec<f32>)> = vec![
        (vec![1, 1], vec![0.3]),
        (vec![7, 33], checker.uniform(7 * 33, -8.0, 8.0)),
        (vec![64, 1000], checker.uniform(64_000, -8.0, 8.0)),
        (vec![2, 65537], checker.uniform(2 * 65537, -8.0, 8.0)),
        (vec![SOFTMAX_EDGE_ROWS.len(), 4], edge),
    ];
    for (shape, x) in cases {
        let cols = shape[1];
        let (xt, x) = checker.upload(ctx, &x, &shape)?;
        let yt = op.forward(&xt, -1)?;
        let y = yt.to_vec()?;
        if !op.backward {
            let want: Vec<f64> = x
                .chunks(cols)
                .flat_map(|r| softmax_ref::forward_row(&widen(r), log))
                .collect();
            checker.add(op.name(), &shape, &y, &want, false);
            continue;
        }
        let g = checker.uniform(x.len(), -1.0, 1.0);
        let (gt, g) = checker.upload(ctx, &g, &shape)?;
        let dx = op.backward(&yt, &gt, -1)?;
        // The backward from the saved output, as the reference forms it from that output.
        let want: Vec<f64> = y
            .chunks(cols)
            .zip(g.chunks(cols))
            .flat_map(|(y, g)| softmax_ref::backward_row(&widen(y), &widen(g), log))
            .collect();
        checker.add(op.name(), &shape, &dx.to_vec()?, &want, false);
    }
    Ok(())
}

/// `[N, C, S]` values with the class dim moved last (`[N·S, C]`), widened: the reference's
/// rows; `back` moves `[N·S, C]` rows to `[N, C, S]` instead.
pub fn permute_classes(v: &[f64], (n, c, s): (usize, usize, usize), back: bool) -> Vec<f64> {
    let mut out = vec![0.0; v.len()];
    for b in 0..n {
        for k in 0..c {
            for p in 0..s {
                let (dim1, last) = ((b * c + k) * s + p, (b * s + p) * c + k);
                if back {
                    out[dim1] = v[last];
                } else {
                    out[last] = v[dim1];
                }
            }
        }
    }
    out
}

/// The family along dim 1 of `[4, 21, 6, 8]`: PyTorch's class dim of segmentation maps.
fn check_dim(op: &SoftmaxOp, ctx: &Context, checker: &mut Checker) -> Result<(), BoxError> {
    let (n, c, s) = (4, 21, 48);
    let shape = [n, c, 6, 8];
    let x = checker.uniform(n * c * s, -8.0, 8.0);
    let (xt, x) = checker.upload(ctx, &x, &shape)?;
    let log = op.kind == Kind::LogSoftmax;
    let sign = if op.kind == Kind::Softmin { -1.0 } else { 1.0 };
    let name = format!("{} 1", op.base_name());
    let y = op.forward(&xt, 1)?;
    if !op.backward {
        let want: Vec<f64> = permute_classes(&widen(&x), (n, c, s), false)
            .chunks(c)
            .flat_map(|r| {
                let r: Vec<f64> = r.iter().map(|v| sign * v).collect();
                softmax_ref::forward_row(&r, log)
            })
            .collect();
        let want = permute_classes(&want, (n, c, s), true);
        checker.add(name, &shape, &y.to_vec()?, &want, false);
        return Ok(());
    }
    let g = checker.uniform(n * c * s, -1.0, 1.0);
    let (gt, g) = checker.upload(ctx, &g, &shape)?;
    let g_rows = permute_classes(&widen(&g), (n, c, s), false);
    let dx = op.backward(&y, &gt, 1)?;
    // The backward from the saved output, as the reference forms it from its own output.
    let want: Vec<f64> = permute_classes(&widen(&y.to_vec()?), (n, c, s), false)
        .chunks(c)
        .zip(g_rows.chunks(c))
        .flat_map(|(y, g)| {
            softmax_ref::backward_row(y, g, log)
                .into_iter()
                .map(move |d| sign * d)
        })
        .collect();
    let want = permute_classes(&want, (n, c, s), true);
    checker.add(
        format!("{name} backward"),
        &shape,
        &dx.to_vec()?,
        &want,
        false,
    );
    Ok(())
}

struct SoftmaxCase {
    op: SoftmaxOp,
    dim: isize,
    x: Vec<f32>,
    xt: Tensor,
    gt: Tensor,
    out: Tensor,
    /// The saved output, for the backward.
    y: Option<Tensor>,
}

impl Case for SoftmaxCase {
    fn input(&self) -> &Tensor {
        &self.xt
    }

    fn record(&self) -> Result<(), BoxError> {
        match (&self.y, self.op.along_dim) {
            (None, false) if self.op.kind == Kind::Softmax => self.xt.softmax_into(&self.out)?,
            (None, false) => self.xt.log_softmax_into(&self.out)?,
            (Some(y), false) if self.op.kind == Kind::Softmax => {
                y.softmax_backward_into(&self.gt, &self.out)?
            }
            (Some(y), false) => y.log_softmax_backward_into(&self.gt, &self.out)?,
            (None, true) => drop(self.op.forward(&self.xt, self.dim)?),
            (Some(y), true) => drop(self.op.backward(y, &self.gt, self.dim)?),
        }
        Ok(())
    }

    fn bytes(&self) -> f64 {
        let streams = if self.op.backward { 3 } else { 2 };
        (streams * self.xt.dtype().size() * self.xt.len()) as f64
    }

    fn compare(&self) -> Result<Vec<Compared>, BoxError> {
        if self.op.backward || self.op.along_dim {
            return Ok(Vec::new());
        }
        self.record()?;
        let (_, cols) = rows_cols(self.xt.shape());
        let log = self.op.kind == Kind::LogSoftmax;
        let want = self
            .x
            .chunks(cols)
            .flat_map(|r| softmax_ref::forward_row(&widen(r), log))
            .collect();
        Ok(vec![Compared {
            what: String::new(),
            got: self.out.to_vec()?,
            want,
        }])
    }
}
