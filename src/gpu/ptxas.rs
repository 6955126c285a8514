//! Reading ptxas's `-v` report (what `build.rs` saved for every kernel file): registers, spills
//! and shared memory per kernel and architecture. Tests hold the select kernels to zero spills
//! with it, and it tells the launcher nothing it needs at run time.

/// One kernel's resources on one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelReport {
    /// The entry point (`topk_select_k32_l2`).
    pub name: String,
    /// The architecture (`sm_90`).
    pub arch: String,
    /// Registers per thread.
    pub registers: u32,
    /// Bytes of spill stores.
    pub spill_stores: u32,
    /// Bytes of spill loads.
    pub spill_loads: u32,
    /// Stack frame bytes (local memory other than spills, e.g. arrays indexed at run time).
    pub stack_frame: u32,
    /// Static shared memory bytes.
    pub smem: u32,
}

/// Parses a ptxas `-v` report into one entry per (kernel, architecture) that ptxas compiled to
/// SASS. Lines ptxas writes for the PTX-only target (no "Compiling entry function") are ignored.
pub fn parse(report: &str) -> Vec<KernelReport> {
    let mut out: Vec<KernelReport> = Vec::new();
    let mut current: Option<KernelReport> = None;
    for line in report.lines() {
        let line = line.trim();
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            if let Some(c) = current.take() {
                out.push(c);
            }
            let mut parts = rest.split('\'');
            let name = parts.next().unwrap_or_default().to_string();
            let arch = rest.split("for '").nth(1).and_then(|r| r.split('\'').next()).unwrap_or_default().to_string();
            current = Some(KernelReport { name, arch, registers: 0, spill_stores: 0, spill_loads: 0, stack_frame: 0, smem: 0 });
            continue;
        }
        let Some(c) = current.as_mut() else { continue };
        if line.contains("bytes stack frame") {
            c.stack_frame = number_before(line, "bytes stack frame").unwrap_or(0);
            c.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
            c.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
        } else if line.contains("Used") && line.contains("registers") {
            c.registers = number_before(line, "registers").unwrap_or(0);
            c.smem = number_before(line, "bytes smem").unwrap_or(0);
        }
    }
    if let Some(c) = current {
        out.push(c);
    }
    out
}

/// The integer written just before `label` ("… 16 bytes smem" → 16).
fn number_before(line: &str, label: &str) -> Option<u32> {
    let head = &line[..line.find(label)?];
    head.split(|c: char| !c.is_ascii_digit()).rfind(|s| !s.is_empty())?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "ptxas info    : 0 bytes gmem\n\
ptxas info    : Compiling entry function 'topk_select_k32_l2' for 'sm_90'\n\
ptxas info    : Function properties for topk_select_k32_l2\n\
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
ptxas info    : Used 50 registers, used 0 barriers\n\
ptxas info    : Compiling entry function 'topk_merge' for 'sm_80'\n\
ptxas info    : Function properties for topk_merge\n\
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Used 32 registers, used 1 barriers, 16 bytes smem, 440 bytes cmem[0]\n";

    #[test]
    fn parses_registers_spills_and_smem() {
        let r = parse(SAMPLE);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "topk_select_k32_l2");
        assert_eq!(r[0].arch, "sm_90");
        assert_eq!((r[0].registers, r[0].stack_frame, r[0].spill_stores, r[0].spill_loads), (50, 8, 4, 12));
        assert_eq!((r[1].name.as_str(), r[1].arch.as_str(), r[1].registers, r[1].smem), ("topk_merge", "sm_80", 32, 16));
    }
}
