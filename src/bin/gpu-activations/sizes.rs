//! Sizes asked for on the command line (`bench --shape`, `demo --rows/--cols`), multiplied with
//! checked arithmetic and compared with the adapter's largest buffer and the host's available
//! memory before anything is allocated: an answer instead of an abort.

use gpu_activations::{Context, DType};

/// Elements of `dims`, or why there is no such number: `flag` names where the sizes came from.
pub fn elements(flag: &str, dims: &[usize]) -> Result<usize, String> {
    dims.iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| {
            format!(
                "{flag} {}: {} elements is more than this machine can address",
                dims.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                dims.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(" × ")
            )
        })
}

/// Checks that `tensors` tensors of `elements` of `dtype` fit one buffer of `ctx` each, and that
/// the host can hold `host_f32s` f32 arrays of `elements` (the data made there) beside them (on
/// the CPU backend the tensors live on the host too).
pub fn check_fits(
    ctx: &Context,
    flag: &str,
    elements: usize,
    dtype: DType,
    tensors: usize,
    host_f32s: usize,
) -> Result<(), String> {
    let too_large = |what: String| format!("{flag}: {elements} elements {what}");
    let per_tensor = elements
        .checked_mul(dtype.size())
        .ok_or_else(|| too_large("overflow a byte count".into()))?;
    let mut host_arrays = host_f32s;
    match ctx.limits() {
        Some(limits) => {
            if per_tensor as u64 > limits.max_buffer_size {
                return Err(too_large(format!(
                    "of {dtype} are {per_tensor} bytes, beyond the adapter's largest buffer \
                     ({} bytes, max_buffer_size)",
                    limits.max_buffer_size
                )));
            }
        }
        None => host_arrays += tensors,
    }
    let host = per_tensor
        .max(elements.saturating_mul(4))
        .checked_mul(host_arrays)
        .ok_or_else(|| too_large("overflow a byte count".into()))?;
    if let Some(available) = available_memory()
        && host as u64 > available
    {
        return Err(too_large(format!(
            "need {host} bytes of host memory, and {available} are available"
        )));
    }
    Ok(())
}

/// The host memory available for new allocations (`MemAvailable` of /proc/meminfo), where
/// the system says.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_that_overflow_are_refused_naming_the_flag() {
        assert_eq!(elements("--shape", &[4096, 1024]), Ok(4_194_304));
        for dims in [&[usize::MAX, 2][..], &[100_000_000_000, 100_000_000_000]] {
            let e = elements("--shape", dims).unwrap_err();
            assert!(e.starts_with("--shape"), "{e}");
        }
    }

    #[test]
    fn the_cpu_backend_counts_its_tensors_against_the_host() {
        let cpu = Context::cpu();
        assert!(check_fits(&cpu, "--rows", 1024, DType::F32, 4, 2).is_ok());
        if available_memory().is_some() {
            let e = check_fits(&cpu, "--rows", 1 << 40, DType::F32, 4, 2).unwrap_err();
            assert!(e.contains("--rows") && e.contains("host memory"), "{e}");
        }
    }
}
