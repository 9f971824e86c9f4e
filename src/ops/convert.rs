//! Storage conversion between f32 and the half types (f16, bf16), and the route by which an op
//! without half kernels runs on half tensors: its operands widened to f32 (exact), the op in
//! f32, its results rounded once to the storage type (PyTorch's semantics for half tensors).

use crate::error::{Error, Result};
use crate::gpu::pipelines::{Kernel, Slot};
use crate::layout::DType;
use crate::ops::launch_elementwise_stored;
use crate::ops::placement::{Placement, place, store};
use crate::tensor::Tensor;
use crate::wgsl::Shader;

const WIDEN: Kernel = Kernel {
    module: Shader::Convert.module(),
    entry: "widen",
    slots: &[Slot::Read(1), Slot::ReadWrite(2)],
};
const NARROW: Kernel = Kernel {
    module: Shader::Convert.module(),
    entry: "narrow",
    slots: &[Slot::Read(1), Slot::ReadWrite(2)],
};

/// The conversion kernels, with their parameter block's size.
#[cfg(test)]
pub(crate) fn launched_kernels() -> Vec<(Kernel, crate::ops::ParamsLayout)> {
    let size = crate::ops::ElementwiseParams::LAYOUT;
    vec![(WIDEN, size), (NARROW, size)]
}

impl Tensor {
    /// The tensor stored as float type `dtype`: widening is exact; narrowing rounds each
    /// value once to the nearest of `dtype` (ties to even; beyond its range ±∞; NaN stays
    /// NaN). A tensor already of `dtype` is returned as a clone sharing its storage.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let out = Tensor::uninit_as(self.context(), self.shape(), dtype, "to_dtype")?;
        self.convert_into(&out)?;
        Ok(out)
    }

    /// Writes the values into `out` (same shape and context, any float type), converted.
    pub(crate) fn convert_into(&self, out: &Tensor) -> Result<()> {
        const OP: &str = "to_dtype";
        if !self.context().same(out.context()) {
            return Err(Error::ContextMismatch { op: OP });
        }
        self.expect_float(OP, "the input")?;
        out.expect_float(OP, "the output")?;
        if self.shape() != out.shape() {
            return Err(Error::ShapeMismatch {
                op: OP,
                what: "output",
                got: out.shape().to_vec(),
                expected: self.shape().to_vec(),
            });
        }
        match place(OP, &[self, out])? {
            Placement::Host => store(OP, out, self.to_vec()?),
            Placement::Device(_) => match (self.dtype(), out.dtype()) {
                (from, to) if from == to => self.copy_into(out),
                (from, DType::F32) => {
                    launch_elementwise_stored(&WIDEN, from, &[], [0.0; 3], &[self, out])
                }
                (DType::F32, to) => {
                    launch_elementwise_stored(&NARROW, to, &[], [0.0; 3], &[self, out])
                }
                _ => self.to_dtype(DType::F32)?.convert_into(out),
            },
        }
    }
}

/// The float type that `operands` share (the first one's), or [`Error::DTypeMismatch`] naming
/// the first operand of another type.
pub(crate) fn common_float(
    op: &'static str,
    operands: &[(&'static str, &Tensor)],
) -> Result<DType> {
    let Some((first_name, first)) = operands.first() else {
        return Ok(DType::F32);
    };
    first.expect_float(op, first_name)?;
    for (what, t) in &operands[1..] {
        if t.dtype() != first.dtype() {
            return Err(Error::DTypeMismatch {
                op,
                what,
                got: t.dtype(),
                expected: first.dtype().name(),
            });
        }
    }
    Ok(first.dtype())
}

/// The route of an f32-only op when any of `operands` (`(name, tensor)`, inputs first) is
/// stored in a half type: `None` when all are f32; otherwise, once the operands are checked to
/// share one float type, `op` run on f32 copies of them with its results rounded once to that
/// type.
pub(crate) fn half_route<const N: usize>(
    name: &'static str,
    operands: &[(&'static str, &Tensor)],
    op: impl FnOnce(&[Tensor]) -> Result<[Tensor; N]>,
) -> Option<Result<[Tensor; N]>> {
    if !operands.iter().any(|(_, t)| t.dtype().is_half()) {
        return None;
    }
    Some((|| {
        let dtype = common_float(name, operands)?;
        let results = op(&widen_all(operands)?)?;
        let mut rounded = Vec::with_capacity(N);
        for r in &results {
            rounded.push(r.to_dtype(dtype)?);
        }
        rounded.try_into().map_err(|_| Error::Gpu {
            op: name,
            message: "an op returned another number of results".into(),
        })
    })())
}

/// [`half_route`] for an op that writes its one result into `out` (which may alias an
/// input): `op` gets the f32 copies of `inputs` and an f32 tensor to write, which is then
/// rounded into `out`.
pub(crate) fn half_route_into(
    name: &'static str,
    inputs: &[(&'static str, &Tensor)],
    out: &Tensor,
    op: impl FnOnce(&[Tensor], &Tensor) -> Result<()>,
) -> Option<Result<()>> {
    if !out.dtype().is_half() && !inputs.iter().any(|(_, t)| t.dtype().is_half()) {
        return None;
    }
    Some((|| {
        let mut all = inputs.to_vec();
        all.push(("output", out));
        common_float(name, &all)?;
        let wide = widen_all(inputs)?;
        let result = Tensor::uninit_as(out.context(), out.shape(), DType::F32, name)?;
        op(&wide, &result)?;
        result.convert_into(out)
    })())
}

fn widen_all(operands: &[(&'static str, &Tensor)]) -> Result<Vec<Tensor>> {
    operands
        .iter()
        .map(|(_, t)| t.to_dtype(DType::F32))
        .collect()
}
