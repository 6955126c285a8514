//! Where a search runs: the CPU, one CUDA device, a list of them, or every visible one.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The `device` control, as the original step takes it: none (CPU), an id, a list of ids, or a
/// negative number for every GPU.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU (the original's `device=None`).
    #[default]
    Cpu,
    /// These CUDA devices, in this order. A repeated id is allowed: it makes several logical
    /// shards on one physical GPU.
    Cuda(Vec<usize>),
    /// Every visible CUDA device (the original's negative `device`).
    AllCuda,
}

impl Device {
    /// From the original's integer form: negative = every GPU, otherwise that device id.
    pub fn from_id(id: i64) -> Self {
        if id < 0 {
            Device::AllCuda
        } else {
            Device::Cuda(vec![id as usize])
        }
    }

    /// True for every GPU form.
    pub fn is_gpu(&self) -> bool {
        !matches!(self, Device::Cpu)
    }
}

impl FromStr for Device {
    type Err = Error;

    /// `cpu` / `none`, an id (`0`), a list (`0,1,1`), or a negative number (`-1`) for every GPU.
    /// torch's spellings are taken too: `cuda` (device 0, torch's default device) and `cuda:1`,
    /// also in lists (`cuda:0,cuda:1`).
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("cpu") || t.eq_ignore_ascii_case("none") {
            return Ok(Device::Cpu);
        }
        if t.eq_ignore_ascii_case("cuda") {
            return Ok(Device::Cuda(vec![0]));
        }
        let bad = |why: &str| {
            Error::invalid("device", format!("{s:?}: {why}; expected cpu, an id such as 0 (or cuda:0, or cuda), a list such as 0,1, or -1 for every GPU"))
        };
        if t.is_empty() {
            return Err(bad("empty"));
        }
        // `cuda:N` is the id N (a list may mix both spellings).
        let strip = |p: &str| -> String {
            let p = p.trim();
            match p.get(..5) {
                Some(prefix) if prefix.eq_ignore_ascii_case("cuda:") => p[5..].trim().to_owned(),
                _ => p.to_owned(),
            }
        };
        let parts: Vec<String> = t.split(',').map(strip).collect();
        if parts.len() == 1 {
            let id: i64 = parts[0].parse().map_err(|_| bad("not a number"))?;
            return Ok(Device::from_id(id));
        }
        let mut ids = Vec::with_capacity(parts.len());
        for p in &parts {
            let id: i64 = p.parse().map_err(|_| bad(&format!("{p:?} is not a device id")))?;
            if id < 0 {
                return Err(bad("a negative id cannot appear in a list"));
            }
            ids.push(id as usize);
        }
        Ok(Device::Cuda(ids))
    }
}

impl Device {
    /// What the device is, for messages: "CUDA device 0", "the CUDA device list 0,1", or "a negative
    /// device id (every CUDA device)" — never a number the user did not give.
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => "the CPU".into(),
            Device::AllCuda => "a negative device id (every CUDA device)".into(),
            Device::Cuda(ids) if ids.len() == 1 => format!("CUDA device {}", ids[0]),
            Device::Cuda(_) => format!("the CUDA device list {self}"),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::AllCuda => f.write_str("-1"),
            Device::Cuda(ids) => {
                let s: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                f.write_str(&s.join(","))
            }
        }
    }
}
