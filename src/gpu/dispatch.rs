//! Workgroup-count arithmetic, the one place that knows the per-dimension grid limit.
//!
//! A launch asks for a number of workgroups; [`grid`] lays it out as `x × y` with both within
//! `max_compute_workgroups_per_dimension`, and shaders recover the linear group index as
//! `wid.x + wid.y * nwg.x`, skipping the few indices past the requested count.

use crate::error::{Error, Result};

/// A grid of `[x, y]` workgroups covering at least `groups`, each side within `max_dim`.
pub(crate) fn grid(groups: u64, max_dim: u32) -> Result<[u32; 2]> {
    let max = u64::from(max_dim.max(1));
    if groups <= max {
        return Ok([groups as u32, 1]);
    }
    let y = groups.div_ceil(max);
    if y > max {
        return Err(Error::TooLarge {
            op: "dispatch",
            requested: groups,
            limit: max * max,
            what: "workgroups per dispatch",
        });
    }
    let x = groups.div_ceil(y);
    Ok([x as u32, y as u32])
}

#[cfg(test)]
mod tests {
    use super::grid;

    #[test]
    fn grids_stay_within_the_limit_and_cover_the_request() {
        assert_eq!(grid(1, 65535).ok(), Some([1, 1]));
        assert_eq!(grid(65535, 65535).ok(), Some([65535, 1]));
        let [x, y] = grid(10_000_000, 65535).unwrap_or([0, 0]);
        assert!(x <= 65535 && y <= 65535);
        assert!(u64::from(x) * u64::from(y) >= 10_000_000);
        assert!(u64::from(x) * u64::from(y) < 10_000_000 + u64::from(y));
        assert!(grid(65535 * 65535 + 1, 65535).is_err());
    }
}
