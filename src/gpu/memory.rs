//! What a software adapter may allocate: its device memory is host memory, so a request beyond
//! the host's available memory is refused before it is made.

use super::Gpu;
use crate::error::{Error, Result};

impl Gpu {
    /// Fails with [`Error::TooLarge`] if a request of `bytes` in all cannot fit: on a software
    /// adapter, whose device memory is host memory, more than the host has available. (A GPU
    /// reports no such figure; its allocations fail with `OutOfMemory` instead.)
    pub fn check_fits(&self, bytes: u64, op: &'static str) -> Result<()> {
        if self.hardware {
            return Ok(());
        }
        match host_available_bytes() {
            Some(limit) if bytes > limit => Err(Error::TooLarge {
                op,
                requested: bytes,
                limit,
                unit: crate::Unit::Bytes,
                what: "available host memory (a software adapter's device memory)",
            }),
            _ => Ok(()),
        }
    }
}

/// `MemAvailable` from /proc/meminfo (Linux), in bytes.
fn host_available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
