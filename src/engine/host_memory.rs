//! The host memory a search's results need, planned before anything is allocated: `k` × `n`
//! neighbour lists grow quickly (k = 39,999 over 40,000 rows is 19 GB of entries), and an
//! allocation the machine cannot back would end the process instead of returning an error.

use crate::error::{Error, Result};

/// Bytes per list entry while results are built and returned: a (key, index) pair in the
/// top-k state (4 + 8 bytes) and an (index, score) pair in the returned lists (8 + 4).
const BYTES_PER_ENTRY: usize = 24;

/// Refuses, with [`Error::OutOfMemory`], a search for `k` neighbours of `rows` rows whose lists
/// (of `entries` ≥ k candidates per row while they are built) need more memory than the process
/// can get: the least of Linux's `MemAvailable`, what is left under the address-space limit
/// (`ulimit -v`) and what is left under the cgroup's `memory.max` (unchecked where none is
/// known).
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

/// Memory this process can still get, in bytes: the least of what the kernel says can be
/// allocated without swapping (`MemAvailable`), what is left of the process's address-space
/// limit (`ulimit -v`: its size so far counts against it) and what is left of its cgroup's
/// memory limit (a container's). `None` where none of them is known.
fn available() -> Option<usize> {
    let kib = |text: &str, key: &str| -> Option<usize> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<usize>().ok()?.checked_mul(1024)
    };
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| kib(&t, "MemAvailable:"));
    let address_space = (|| {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
        let limit: usize = line.split_whitespace().nth(3)?.parse().ok()?; // "unlimited" → None
        let used = kib(&std::fs::read_to_string("/proc/self/status").ok()?, "VmSize:")?;
        Some(limit.saturating_sub(used))
    })();
    let cgroup = (|| {
        let read = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).ok()?.trim().parse::<usize>().ok();
        Some(read("memory.max")?.saturating_sub(read("memory.current").unwrap_or(0)))
    })();
    [machine, address_space, cgroup].into_iter().flatten().min()
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
