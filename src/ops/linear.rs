//! The linear layer `y = x·Wᵀ + b` (PyTorch's layout: `x [.., H]`, `W [K, H]`, `b [K]`) and its
//! backward, by the matrix products of `shaders/matmul.wgsl`: the forward with the bias fused,
//! `dx = g·W`, `dW = gᵀ·x`, and `db = Σ_n g` as `1ᵀ·g`, each reading its operands in place
//! (the kernels take either operand transposed).

use crate::context::MatmulKernel;
use crate::cpu;
use crate::cpu::{narrow, widen};
use crate::error::{Error, Result};
use crate::gpu::pipelines::{Kernel, Slot};
use crate::gpu::{Gpu, View};
use crate::layout::{self, DType};
use crate::ops::convert::half_route;
use crate::ops::placement::{Placement, bound_whole, device, place, store};
use crate::ops::transpose::transpose_view;
use crate::tensor::Tensor;
use crate::wgsl::Shader;

const OP: &str = "linear";

/// Rows and columns of the block of C one workgroup computes (`BM`, `BN` in the shader).
use crate::wgsl::MATMUL_BLOCK as BLOCK;

params! {
    /// Mirrors `Params` in `shaders/matmul.wgsl`.
    struct MatmulParams {
        m: u32,
        n: u32,
        k: u32,
        col_blocks: u32,
        blocks: u32,
    }
}

const MATMUL: Kernel = Kernel {
    module: Shader::Matmul.module(),
    entry: "matmul",
    slots: &[
        Slot::Read(1),
        Slot::Read(2),
        Slot::Read(3),
        Slot::ReadWrite(4),
    ],
};

const MATMUL_PATCHES: Kernel = Kernel {
    entry: "matmul_patches",
    ..MATMUL
};
const FMA_PEAK: Kernel = Kernel {
    module: Shader::Matmul.module(),
    entry: "fma_peak",
    slots: &[Slot::ReadWrite(4)],
};

/// The kernels with their parameter block's size.
#[cfg(test)]
pub(crate) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    [MATMUL, MATMUL_PATCHES, FMA_PEAK]
        .map(|k| (k, MatmulParams::LAYOUT))
        .to_vec()
}

/// Invocations per workgroup of the matrix kernels.
use crate::wgsl::MATMUL_THREADS as THREADS;

/// Loop iterations per inner-dim tile of 16 in the tiled kernel on llvmpipe (measured: its
/// tile loop and the 16-step loop inside, which the driver does not unroll), and the inner-dim
/// elements per iteration of the register kernel (a group of four).
const TILED_ITERATIONS_PER_TILE: usize = 18;
use crate::wgsl::MATMUL_TILE_K as TILE_K;

impl crate::Context {
    /// Records the arithmetic-peak probe of `shaders/matmul.wgsl` (`fma_peak`): `workgroups`
    /// of 256 invocations, each `rounds` rounds of eight vec4 FMAs. It performs
    /// `workgroups · 256 · rounds · 64` flops; time it (with [`crate::Context::synchronize`])
    /// to measure the adapter's peak for a matrix product's GFLOP/s to be compared with. `None`
    /// on the CPU backend.
    pub fn fma_peak_probe(&self, workgroups: u32, rounds: u32) -> Result<Option<u64>> {
        let Some(gpu) = self.gpu() else {
            return Ok(None);
        };
        gpu.check_loop_limit(
            OP,
            rounds as usize,
            "rounds of the FMA probe, one loop iteration each (the adapter ends an invocation \
             after that many; llvmpipe)",
        )?;
        let out = Tensor::uninit_as(self, &[workgroups as usize * THREADS], DType::F32, OP)?;
        let params = MatmulParams {
            m: 0,
            n: 0,
            k: rounds,
            col_blocks: 1,
            blocks: workgroups,
        };
        gpu.launch(
            &FMA_PEAK,
            &[],
            &[out.view(0, out.len(), OP)?],
            bytemuck::bytes_of(&params),
            u64::from(workgroups),
        )?;
        Ok(Some(
            u64::from(workgroups) * THREADS as u64 * u64::from(rounds) * 64,
        ))
    }
}

/// `(N, H, K)` of a linear layer of `op`, once the shapes are checked to chain.
pub(crate) fn dims(op: &'static str, x: &Tensor, w: &Tensor) -> Result<(usize, usize, usize)> {
    if !x.context().same(w.context()) {
        return Err(Error::ContextMismatch { op });
    }
    let (n, h) = x.rows_cols(op)?;
    match w.shape() {
        [k, hw] if *hw == h => Ok((n, h, *k)),
        other => Err(Error::ShapeMismatch {
            op,
            what: "weight ([K, H], H the input's last dim)",
            got: other.to_vec(),
            expected: vec![other.first().copied().unwrap_or(0), h],
        }),
    }
}

/// A bias of `op`'s linear layer at input `x` with `k` outputs: f32, shape `[k]`.
pub(crate) fn check_bias(
    op: &'static str,
    x: &Tensor,
    bias: Option<&Tensor>,
    k: usize,
) -> Result<()> {
    let Some(b) = bias else {
        return Ok(());
    };
    if !b.context().same(x.context()) {
        return Err(Error::ContextMismatch { op });
    }
    b.expect_f32(op, "bias")?;
    if b.shape() != [k] {
        return Err(Error::ShapeMismatch {
            op,
            what: "bias ([K], K the weight's first dim)",
            got: b.shape().to_vec(),
            expected: vec![k],
        });
    }
    Ok(())
}

/// The input's shape with its last dim replaced by `last`.
fn with_last(shape: &[usize], last: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    match s.last_mut() {
        Some(d) => *d = last,
        None => s.push(last),
    }
    s
}

impl Tensor {
    /// The linear layer `y = x·Wᵀ + b` of this input `x [.., H]` (every leading dim a row),
    /// with `weight [K, H]` and an optional `bias [K]` (PyTorch's `nn.Linear`): `y [.., K]`,
    /// accumulated in f32. Each tensor is bound whole, so it must fit one storage binding.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let mut operands = vec![("the input", self), ("weight", weight)];
        operands.extend(bias.map(|b| ("bias", b)));
        if let Some(done) = half_route(OP, &operands, |wide| {
            Ok([wide[0].linear(&wide[1], wide.get(2))?])
        }) {
            return done.map(|[y]| y);
        }
        let (n, h, k) = dims(OP, self, weight)?;
        self.expect_f32(OP, "the input")?;
        weight.expect_f32(OP, "weight")?;
        check_bias(OP, self, bias, k)?;
        let y = Tensor::uninit_as(self.context(), &with_last(self.shape(), k), DType::F32, OP)?;
        let mut tensors = vec![self, weight, &y];
        tensors.extend(bias);
        if let Placement::Host = place(OP, &tensors)? {
            let (_, _, logits) = host_logits(self, weight, bias, (n, h, k))?;
            store(OP, &y, narrow(&logits))?;
            return Ok(y);
        }
        products_device(self.context(), &[self, weight, &y])?;
        matmul(
            self.context(),
            Product {
                a: whole(self)?,
                b: whole(weight)?,
                bias: bias.map(whole).transpose()?,
                c: whole(&y)?,
                dims: (n, k, h),
                trans: (false, true),
                accumulate: false,
            },
        )?;
        Ok(y)
    }

    /// The gradients `(dx, dW, db)` of [`Tensor::linear`] at this input, from the upstream
    /// `grad` (`y`'s shape): `dx = g·W`, `dW = gᵀ·x` and `db = Σ_n g` (the bias's gradient,
    /// whether or not the forward had one).
    pub fn linear_backward(
        &self,
        weight: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (dx, dw, db) = backward(self, weight, grad, true)?;
        let dx = dx.ok_or(Error::Gpu {
            op: OP,
            message: "the input's gradient was not formed".into(),
        })?;
        Ok((dx, dw, db))
    }

    /// The parameters' gradients `(dW, db)` of [`Tensor::linear`] alone: what training on data
    /// needs, without the product that forms `dx`.
    pub fn linear_param_backward(
        &self,
        weight: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (_, dw, db) = backward(self, weight, grad, false)?;
        Ok((dw, db))
    }
}

/// `(dx if with_input, dW, db)` of the linear layer at `x`.
fn backward(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    with_input: bool,
) -> Result<(Option<Tensor>, Tensor, Tensor)> {
    let operands = [("the input", x), ("weight", weight), ("gradient", grad)];
    if let Some(done) = half_route(OP, &operands, |wide| {
        let (dx, dw, db) = backward(&wide[0], &wide[1], &wide[2], true)?;
        let dx = dx.ok_or(Error::Gpu {
            op: OP,
            message: "the input's gradient was not formed".into(),
        })?;
        Ok([dx, dw, db])
    }) {
        return done.map(|[dx, dw, db]| (with_input.then_some(dx), dw, db));
    }
    let (n, h, k) = dims(OP, x, weight)?;
    for (what, t) in operands {
        t.expect_f32(OP, what)?;
    }
    let expected = with_last(x.shape(), k);
    if grad.shape() != expected {
        return Err(Error::ShapeMismatch {
            op: OP,
            what: "gradient (the output's shape [.., K])",
            got: grad.shape().to_vec(),
            expected,
        });
    }
    let ctx = x.context();
    let dx = Tensor::uninit_as(ctx, x.shape(), DType::F32, OP)?;
    let dw = Tensor::uninit_as(ctx, &[k, h], DType::F32, OP)?;
    let db = Tensor::uninit_as(ctx, &[k], DType::F32, OP)?;
    if let Placement::Host = place(OP, &[x, weight, grad, &dx, &dw, &db])? {
        let (gx, gw, gb) = cpu::linear::backward(
            &widen(&x.to_vec()?),
            &widen(&weight.to_vec()?),
            &widen(&grad.to_vec()?),
            n,
            h,
            k,
        );
        for (t, v) in [(&dx, gx), (&dw, gw), (&db, gb)] {
            store(OP, t, narrow(&v))?;
        }
        return Ok((with_input.then_some(dx), dw, db));
    }
    products_device(ctx, &[x, weight, grad])?;
    let ones = Tensor::from_slice(ctx, &vec![1.0; n.max(1)], &[n.max(1)])?;
    // dx [N, H] = g [N, K]·W [K, H]; dW [K, H] = gᵀ·x; db [1, K] = 1 [1, N]·g.
    let mut products = vec![
        (&dw, whole(grad)?, whole(x)?, (k, h, n), (true, false)),
        (&db, whole(&ones)?, whole(grad)?, (1, k, n), (false, false)),
    ];
    if with_input {
        products.push((&dx, whole(grad)?, whole(weight)?, (n, h, k), (false, false)));
    }
    for (c, a, b, dims, trans) in products {
        let product = Product {
            a,
            b,
            bias: None,
            c: whole(c)?,
            dims,
            trans,
            accumulate: false,
        };
        matmul(ctx, product)?;
    }
    Ok((with_input.then_some(dx), dw, db))
}

/// A view of the whole of `t`.
pub(crate) fn whole(t: &Tensor) -> Result<View<'_>> {
    t.view(0, t.len(), OP)
}

/// `z = x_rows·Wᵀ + b` of `rows` rows into `logits` (`[rows, K]`): one chunk of a fused head's
/// logits, formed where the head reads them and never stored whole.
pub(crate) fn chunk_logits(
    ctx: &crate::Context,
    (x_rows, logits): (View<'_>, View<'_>),
    w: &Tensor,
    b: Option<&Tensor>,
    (rows, k, h): (usize, usize, usize),
) -> Result<()> {
    matmul(
        ctx,
        Product {
            a: x_rows,
            b: whole(w)?,
            bias: b.map(whole).transpose()?,
            c: logits,
            dims: (rows, k, h),
            trans: (false, true),
            accumulate: false,
        },
    )
}

/// `dx_rows = G·W`, `dW += Gᵀ·x_rows`, `db += 1ᵀ·G` for a chunk of `rows` rows from `r0`
/// whose gradient G is in `g`: the backward of one chunk of a fused head, dW and db summed
/// over the chunks in f32.
pub(crate) fn accumulate_chunk(
    ctx: &crate::Context,
    op: &'static str,
    (dx, dw, db, ones): (&Tensor, &Tensor, &Tensor, &Tensor),
    (g, x_rows, w): (View<'_>, View<'_>, &Tensor),
    (r0, rows, h, k): (usize, usize, usize, usize),
) -> Result<()> {
    let products = [
        (
            dx.view(r0 * h, rows * h, op)?,
            g,
            whole(w)?,
            (rows, h, k),
            (false, false),
            false,
        ),
        (whole(dw)?, g, x_rows, (k, h, rows), (true, false), true),
        (
            whole(db)?,
            ones.view(0, rows, op)?,
            g,
            (1, k, rows),
            (false, false),
            true,
        ),
    ];
    for (c, a, b, dims, trans, accumulate) in products {
        matmul(
            ctx,
            Product {
                a,
                b,
                bias: None,
                c,
                dims,
                trans,
                accumulate,
            },
        )?;
    }
    Ok(())
}

/// On the CPU backend, `(x, W, z = x·Wᵀ + b)` in f64 for `(N, H, K)`.
pub(crate) fn host_logits(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    (n, h, k): (usize, usize, usize),
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let (xs, ws) = (widen(&x.to_vec()?), widen(&weight.to_vec()?));
    let bs = bias.map(Tensor::to_vec).transpose()?.map(|b| widen(&b));
    let z = cpu::linear::forward(&xs, &ws, bs.as_deref(), n, h, k);
    Ok((xs, ws, z))
}

/// The device of the products, once each of `tensors` fits one storage binding (the products
/// bind them whole).
pub(crate) fn products_device<'a>(ctx: &'a crate::Context, tensors: &[&Tensor]) -> Result<&'a Gpu> {
    let gpu = device(OP, ctx)?;
    let whole = "max_storage_buffer_binding_size (a linear layer's tensors are bound whole)";
    bound_whole(gpu, OP, whole, tensors)?;
    Ok(gpu)
}

/// One matrix product `C [M, N] = A'·B' (+ bias) (+ C with accumulate)` of
/// `shaders/matmul.wgsl`, with its operands as bound: `dims` is `(M, N, K)`, the inner dim K,
/// and `trans` says whether A and B are stored transposed (see the shader).
pub(crate) struct Product<'a> {
    pub a: View<'a>,
    pub b: View<'a>,
    pub bias: Option<View<'a>>,
    pub c: View<'a>,
    pub dims: (usize, usize, usize),
    pub trans: (bool, bool),
    pub accumulate: bool,
}

/// Launches `product` on the kernel the context's [`MatmulKernel`] calls for.
pub(crate) fn matmul(ctx: &crate::Context, product: Product<'_>) -> Result<()> {
    // The device alone: callers check their operands' bindings with products_device first.
    let gpu = device(OP, ctx)?;
    let Product {
        a,
        mut b,
        bias,
        c,
        dims: (m, n, k),
        trans: (trans_a, mut trans_b),
        accumulate,
    } = product;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let registers = match ctx.matmul_kernel() {
        MatmulKernel::Auto => !gpu.hardware,
        MatmulKernel::Registers => true,
        MatmulKernel::Tiled => false,
    };
    // The register kernel streams one operand stored along K per invocation. With neither
    // (Aᵀ·B), B is transposed first.
    let transposed;
    if registers && trans_a && !trans_b && k > 0 {
        transposed = gpu.alloc(layout::bytes(k * n), OP)?;
        transpose_view(gpu, b, transposed.view(k * n), (1, k, n))?;
        b = transposed.view(k * n);
        trans_b = true;
    }
    let iterations = if registers {
        k.div_ceil(4)
    } else {
        k.div_ceil(TILE_K) * TILED_ITERATIONS_PER_TILE
    };
    gpu.check_loop_limit(
        OP,
        iterations,
        "loop iterations of one invocation over a matrix product's inner dim (the adapter \
         ends an invocation after that many; llvmpipe)",
    )?;
    let col_blocks = n.div_ceil(BLOCK);
    let (kernel, blocks, groups) = if registers {
        let patches = m.div_ceil(4) * n.div_ceil(4);
        (&MATMUL_PATCHES, patches, patches.div_ceil(THREADS))
    } else {
        let blocks = m.div_ceil(BLOCK) * col_blocks;
        (&MATMUL, blocks, blocks)
    };
    let params = MatmulParams {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        col_blocks: col_blocks as u32,
        blocks: blocks as u32,
    };
    // Each operand reads as vec4s along the dim it is contiguous in, when that is whole vec4s.
    let vec_a = if trans_a { m } else { k }.is_multiple_of(4);
    let vec_b = if trans_b { k } else { n }.is_multiple_of(4);
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    let constants = [
        ("TRANS_A", flag(trans_a)),
        ("TRANS_B", flag(trans_b)),
        ("HAS_BIAS", flag(bias.is_some())),
        ("ACCUMULATE", flag(accumulate)),
        ("VEC_A", flag(vec_a)),
        ("VEC_B", flag(vec_b)),
        ("LANES_ALONG_M", flag(!trans_b)),
    ];
    // Without a bias, B is bound in its place (never read).
    let views = [a, b, bias.unwrap_or(b), c];
    gpu.launch(
        kernel,
        &constants,
        &views,
        bytemuck::bytes_of(&params),
        groups as u64,
    )
}
