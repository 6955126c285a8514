//! The host memory a search's results need, planned before anything is allocated: `k` × `n`
//! neighbour lists grow quickly (k = 39,999 over 40,000 rows is 19 GB of entries), and an
//! allocation the machine cannot back would end the process instead of returning an error.

use crate::error::{Error, Result};

/// Bytes per list entry while results are built and returned: a (key, index) pair in the
/// top-k state (4 + 8 bytes) and an (index, score) pair in the returned lists (8 + 4).
const BYTES_PER_ENTRY: usize = 24;

/// Refuses, with [`Error::OutOfMemory`], a search for `k` neighbours of `rows` rows whose lists
/// (of `entries` ≥ k candidates per row while they are built) need more memory than the machine
/// has available (Linux's `MemAvailable`; unchecked where unknown).
pub fn check_lists(rows: usize, k: usize, entries: usize) -> Result<()> {
    let needed = rows.checked_mul(entries.max(k)).and_then(|e| e.checked_mul(BYTES_PER_ENTRY)).unwrap_or(usize::MAX);
    match available() {
        Some(avail) if needed > avail => Err(Error::OutOfMemory {
            device: "cpu".into(),
            context: format!(
                "planning {rows} neighbour lists of k = {k} ({} entries, {BYTES_PER_ENTRY} bytes each while built); {avail} bytes are available. Ask for a smaller k or fewer rows",
                rows.saturating_mul(entries.max(k))
            ),
            needed_bytes: needed,
        }),
        _ => Ok(()),
    }
}

/// Memory the kernel says can be allocated without swapping, in bytes.
fn available() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_lists_are_refused_before_allocation() {
        let e = check_lists(40_000, usize::MAX / 8, usize::MAX / 8).unwrap_err();
        assert!(matches!(e, Error::OutOfMemory { .. }) && e.to_string().contains("k ="), "{e}");
        check_lists(1000, 10, 18).unwrap();
    }
}
