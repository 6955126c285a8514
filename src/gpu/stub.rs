//! The GPU entry points of a build without the `cuda` feature: each says so and how to fix it.

use crate::data::Vectors;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::flat::FlatSearcher;
use crate::gpu::GpuOptions;
use crate::topk::TopKLists;

const REASON: &str = "this build has no `cuda` feature; rebuild with --features cuda";

pub(crate) fn open_searchers(device: &Device, _: &GpuOptions) -> Result<Vec<Box<dyn FlatSearcher>>> {
    Err(Error::Unavailable { what: device.describe(), reason: REASON.into() })
}

pub(crate) fn merge_on_device(device: usize, _: &[TopKLists], _: usize) -> Result<TopKLists> {
    Err(Error::Unavailable { what: format!("CUDA device {device}"), reason: REASON.into() })
}

pub(crate) fn merge_on_device_timed(device: usize, _: &[TopKLists], _: usize) -> Result<(TopKLists, f32)> {
    Err(Error::Unavailable { what: format!("CUDA device {device}"), reason: REASON.into() })
}

pub(crate) fn gemm_floor(device: usize, _: Vectors<'_>, _: usize, _: &GpuOptions, _: usize) -> Result<Vec<f32>> {
    Err(Error::Unavailable { what: format!("CUDA device {device}"), reason: REASON.into() })
}
