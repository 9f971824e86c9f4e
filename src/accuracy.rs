//! Comparing a result with its f64 reference under the crate's tolerance policy:
//! `|got − want| ≤ atol + rtol·|want|` for every element, where a NaN expectation must be met
//! by NaN and an infinite one (or one beyond f32's range, whose correctly rounded f32 value is
//! infinite) must be met exactly. At the other end, an expectation below f32's normal range
//! (|want| < 2^−126, where a device may flush to zero) is met by any |got| below it of the
//! same sign or zero: f32 storage can say no more there.

use crate::layout::DType;

/// The bound every op is held to: `1e-6 + 1e-5·|want|`.
pub const ATOL: f64 = 1e-6;
/// See [`ATOL`].
pub const RTOL: f64 = 1e-5;

/// Whether `got` is within `atol + rtol·|want|` of `want` (NaN and infinities exactly).
pub fn close(got: f32, want: f64, atol: f64, rtol: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    let want32 = want as f32;
    if want32.is_infinite() {
        return got == want32;
    }
    if !got.is_finite() {
        return false;
    }
    let tiny = f64::from(f32::MIN_POSITIVE);
    if want.abs() < tiny
        && f64::from(got).abs() < tiny
        && (got == 0.0 || (got > 0.0) == (want > 0.0))
    {
        return true;
    }
    (f64::from(got) - want).abs() <= atol + rtol * want.abs()
}

/// One unit in the last place of float type `dtype` at `v`: the spacing of that type's values
/// around `|v|` (its subnormal spacing below the normal range).
pub fn ulp(dtype: DType, v: f64) -> f64 {
    let (mantissa_bits, min_exponent) = match dtype {
        DType::F16 => (10, -14),
        DType::BF16 => (7, -126),
        _ => (23, -126),
    };
    let exponent = if v == 0.0 || !v.is_finite() {
        min_exponent
    } else {
        (v.abs().log2().floor() as i32).max(min_exponent)
    };
    2f64.powi(exponent - mantissa_bits)
}

/// Whether `got`, a value stored as `dtype`, meets the reference `want` (computed in f64 from
/// the same stored inputs) rounded to `dtype`: within one ulp of `dtype` plus the f32 bound
/// (`atol + rtol·|want|`); NaN, and a reference that rounds to ±∞ in `dtype`, exactly. For
/// `F32` this is [`close`].
pub fn close_stored(dtype: DType, got: f32, want: f64, atol: f64, rtol: f64) -> bool {
    if !dtype.is_half() {
        return close(got, want, atol, rtol);
    }
    if want.is_nan() {
        return got.is_nan();
    }
    let rounded = dtype.round(want as f32);
    if rounded.is_infinite() {
        return got == rounded;
    }
    got.is_finite()
        && (f64::from(got) - f64::from(rounded)).abs()
            <= ulp(dtype, f64::from(rounded)) + atol + rtol * want.abs()
}

/// The errors of a whole result against its reference.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Largest `|got − want|` over elements whose expectation is finite.
    pub max_abs: f64,
    /// Largest `|got − want| / |want|` over finite expectations of magnitude at least `atol`
    /// (below it the absolute bound governs, and a ratio of denormals means nothing).
    pub max_rel: f64,
    /// Elements outside the bound.
    pub failures: usize,
    /// The first element outside the bound, if any.
    pub first_failure: Option<usize>,
}

impl Comparison {
    /// Whether every element is within the bound.
    pub fn passed(&self) -> bool {
        self.failures == 0
    }
}

/// Compares `got` with `want` element by element.
pub fn compare(got: &[f32], want: &[f64], atol: f64, rtol: f64) -> Comparison {
    compare_stored(DType::F32, got, want, atol, rtol)
}

/// [`compare`] for a result stored as `dtype` (each element by [`close_stored`]).
pub fn compare_stored(dtype: DType, got: &[f32], want: &[f64], atol: f64, rtol: f64) -> Comparison {
    let mut c = Comparison::default();
    if got.len() != want.len() {
        c.failures = got.len().max(want.len());
        c.first_failure = Some(got.len().min(want.len()));
        return c;
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_finite() && g.is_finite() {
            let d = (f64::from(g) - w).abs();
            c.max_abs = c.max_abs.max(d);
            if w.abs() >= atol {
                c.max_rel = c.max_rel.max(d / w.abs());
            }
        }
        if !close_stored(dtype, g, w, atol, rtol) {
            c.failures += 1;
            c.first_failure.get_or_insert(i);
        }
    }
    c
}
