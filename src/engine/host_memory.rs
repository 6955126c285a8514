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
/// allocated without swapping (`MemAvailable`), what is left under the process's address-space
/// limit (`ulimit -v`; its size so far counts against it) and what is left under its cgroup v2
/// memory limit (a container's `memory.max`). `None` where none of them is known.
fn available() -> Option<usize> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let machine = read("/proc/meminfo").and_then(|t| kib(&t, "MemAvailable:"));
    let address_space = read("/proc/self/limits").zip(read("/proc/self/status")).and_then(|(l, s)| address_space_left(&l, &s));
    let cgroup = read("/proc/self/cgroup").and_then(|c| cgroup_dir(&c)).and_then(|dir| {
        let file = |name: &str| read(&format!("{dir}/{name}"));
        cgroup_left(&file("memory.max")?, &file("memory.current")?, &file("memory.stat").unwrap_or_default())
    });
    [machine, address_space, cgroup].into_iter().flatten().min()
}

/// A `key: <n> kB` line of a /proc file, in bytes.
fn kib(text: &str, key: &str) -> Option<usize> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse::<usize>().ok()?.checked_mul(1024)
}

/// What is left under the soft "Max address space" of `/proc/self/limits`, given the process's
/// `VmSize` in `/proc/self/status`; `None` when unlimited.
fn address_space_left(limits: &str, status: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
    let limit: usize = line.split_whitespace().nth(3)?.parse().ok()?; // "unlimited" is no number
    Some(limit.saturating_sub(kib(status, "VmSize:")?))
}

/// The cgroup v2 directory of this process (the `0::<path>` line of `/proc/self/cgroup`).
fn cgroup_dir(cgroup: &str) -> Option<String> {
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    Some(format!("/sys/fs/cgroup{}", if path == "/" { "" } else { path }))
}

/// What is left under a cgroup's `memory.max` (`None` for "max"): its `memory.current` counts
/// the page cache too, of which the inactive file pages (`memory.stat`'s `inactive_file`) are
/// reclaimed before the limit bites, so they count as free.
fn cgroup_left(max: &str, current: &str, stat: &str) -> Option<usize> {
    let max: usize = max.trim().parse().ok()?;
    let current: usize = current.trim().parse().ok()?;
    let reclaimable = stat.lines().find_map(|l| l.strip_prefix("inactive_file ")).and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(0);
    Some(max.saturating_sub(current.saturating_sub(reclaimable)))
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

    #[test]
    fn limits_are_read_from_proc_and_cgroup_files() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max address space         4096000000           unlimited            bytes     \n";
        let status = "Name:\tx\nVmSize:\t  1000000 kB\n";
        assert_eq!(address_space_left(limits, status), Some(4_096_000_000 - 1_024_000_000));
        let unlimited = limits.replace("4096000000", "unlimited");
        assert_eq!(address_space_left(&unlimited, status), None);
        assert_eq!(cgroup_dir("4:memory:/a\n0::/user.slice/job\n").as_deref(), Some("/sys/fs/cgroup/user.slice/job"));
        assert_eq!(cgroup_dir("0::/\n").as_deref(), Some("/sys/fs/cgroup"));
        assert_eq!(cgroup_dir("4:memory:/a\n"), None);
        // 8 GiB limit, 6 GiB charged of which 5 GiB is inactive page cache: 7 GiB left.
        let stat = "anon 1073741824\nfile 5368709120\ninactive_file 5368709120\n";
        assert_eq!(cgroup_left("8589934592\n", "6442450944\n", stat), Some(7 << 30));
        assert_eq!(cgroup_left("max\n", "6442450944\n", stat), None);
        assert_eq!(cgroup_left("1000\n", "5000\n", ""), Some(0));
    }
}
