//! What a tensor may take: at most a bounded number of buffers of the device, and on a
//! software adapter (whose device memory is host memory) no more than the host has available;
//! and on the host (the CPU backend, read-backs) no more than its memory. Requests beyond are
//! refused before anything is allocated.

use super::Gpu;
use crate::error::{Error, Result, Unit};

/// The most buffers one tensor is split into (tensors larger than `max_buffer_size` are).
pub(crate) const MAX_PARTS: u64 = 4096;

/// Requests from this size on are checked against the host's available memory (reading
/// /proc/meminfo for every small allocation would slow every op and read-back).
const HOST_CHECK_MIN: u64 = 64 << 20;

impl Gpu {
    /// Fails with [`Error::TooLarge`] if a tensor of `bytes` cannot be held: more than
    /// [`MAX_PARTS`] buffers of the context's size, or on a software adapter more than the
    /// host has available.
    pub fn check_tensor_bytes(&self, bytes: u64, op: &'static str) -> Result<()> {
        let limit = self.max_buffer.saturating_mul(MAX_PARTS);
        if bytes > limit {
            return Err(Error::TooLarge {
                op,
                requested: bytes,
                limit,
                unit: Unit::Bytes,
                what: "max_buffer_size times 4096, the most buffers a tensor is split into",
            });
        }
        if bytes >= HOST_CHECK_MIN {
            self.check_fits(bytes, op)?;
        }
        Ok(())
    }

    /// Fails with [`Error::TooLarge`] if a request of `bytes` in all cannot fit: on a software
    /// adapter, whose device memory is host memory, more than the host has available. (A GPU
    /// reports no such figure; its allocations fail with `OutOfMemory` instead.)
    pub fn check_fits(&self, bytes: u64, op: &'static str) -> Result<()> {
        if self.hardware {
            return Ok(());
        }
        match meminfo("MemAvailable:") {
            Some(limit) if bytes > limit => Err(Error::TooLarge {
                op,
                requested: bytes,
                limit,
                unit: Unit::Bytes,
                what: "available host memory (a software adapter's device memory)",
            }),
            _ => Ok(()),
        }
    }
}

/// Fails with [`Error::TooLarge`] if `bytes` of host memory cannot be had: more than the host
/// has available, swap included (Linux; a larger request would at best push the system into
/// the OOM killer as its pages are touched), or than a Rust allocation may be
/// (`isize::MAX`). Requests under 64 MiB are left to the allocator.
pub(crate) fn check_host_bytes(bytes: u64, op: &'static str) -> Result<()> {
    if bytes < HOST_CHECK_MIN {
        return Ok(());
    }
    let available =
        meminfo("MemAvailable:").map(|ram| ram.saturating_add(meminfo("SwapFree:").unwrap_or(0)));
    let (limit, what) = match available {
        Some(free) => (
            free.min(isize::MAX as u64),
            "available host memory and swap",
        ),
        None => (
            isize::MAX as u64,
            "the largest allocation (isize::MAX bytes)",
        ),
    };
    if bytes > limit {
        return Err(Error::TooLarge {
            op,
            requested: bytes,
            limit,
            unit: Unit::Bytes,
            what,
        });
    }
    Ok(())
}

/// A field of /proc/meminfo (Linux), in bytes.
fn meminfo(field: &str) -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
