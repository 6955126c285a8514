//! One GPU's searcher (one logical shard): the [`FlatSearcher`] that checks a job against the
//! GPU's limits, keeps loaded database rows resident, and runs the path the strategy chose (the
//! cuBLAS path in [`super::cublas_path`], the fused kernel in [`super::fused_path`]).

use super::resources::{device_resources, Lane};
use super::upload::{Rows, Uploader};
use super::CudaResultExt;
use crate::data::Vectors;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::flat::{FlatJob, FlatSearcher, Resident};
use crate::gpu::plan::{stored_ld, upload_chunk, MAX_K, RESERVE};
use crate::gpu::table::elem_bytes;
use crate::gpu::{GpuOptions, GpuPath};
use crate::metric::FlatMetric;
use crate::precision::Precision;
use crate::topk::TopKLists;
use std::sync::Mutex;

/// Largest magnitude an f16 can hold.
const F16_MAX: f32 = 65504.0;

/// A searcher on one device (one logical shard).
pub(crate) struct CudaSearcher {
    pub(super) device: usize,
    slot: usize,
    sharing: usize,
    pub(super) opts: GpuOptions,
    lane: Mutex<Lane>,
}

/// Database rows kept on the device by [`FlatSearcher::load`].
pub(super) struct ResidentRows {
    /// Which searcher made them (device, slot) and for which host rows and arithmetic: a job
    /// uses them only when all of it matches.
    device: usize,
    slot: usize,
    host: (usize, usize),
    precision: Precision,
    shift: Option<Vec<f32>>,
    pub rows: Rows,
}

/// One searcher per listed device id, in order: a repeated id is one more logical shard on that
/// GPU (its own streams and cuBLAS handle, a share of the memory budget); [`Device::AllCuda`] is
/// every visible device. See [`crate::gpu::open_searchers`].
pub(crate) fn open_searchers(device: &Device, opts: &GpuOptions) -> Result<Vec<Box<dyn FlatSearcher>>> {
    super::driver::check_runtime(&device.describe())?;
    let count = super::driver::device_count()?;
    let ids: Vec<usize> = match device {
        Device::Cpu => return Err(Error::invalid("device", "cpu is not a CUDA device")),
        Device::AllCuda => (0..count).collect(),
        Device::Cuda(ids) => ids.clone(),
    };
    if ids.is_empty() {
        return Err(Error::Unavailable { what: device.describe(), reason: "the CUDA driver sees no device (check CUDA_VISIBLE_DEVICES)".into() });
    }
    if let Some(&bad) = ids.iter().find(|&&i| i >= count) {
        return Err(Error::BadDevice { id: bad, count });
    }
    let mut out: Vec<Box<dyn FlatSearcher>> = Vec::with_capacity(ids.len());
    for (slot, &id) in ids.iter().enumerate() {
        let sharing = ids.iter().filter(|&&j| j == id).count();
        let lane = Lane::open(device_resources(id)?)?;
        out.push(Box::new(CudaSearcher { device: id, slot, sharing, opts: *opts, lane: Mutex::new(lane) }));
    }
    Ok(out)
}

impl CudaSearcher {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Lane>> {
        let lane =
            self.lane.lock().map_err(|_| Error::Internal { what: self.name(), message: "a previous search panicked while holding this device".into() })?;
        lane.ctx().bind_to_thread().ctx(self.device, "binding the CUDA context")?;
        let _ = lane.ctx().check_err(); // forget errors recorded before this call
        Ok(lane)
    }

    /// Drains both streams whatever `r` is (so the next search starts clean), then returns `r`'s
    /// error, or an error the device reported while finishing, or `r`'s value.
    pub(super) fn finish<T>(&self, lane: &Lane, r: Result<T>) -> Result<T> {
        let drained = lane.compute.synchronize().and(lane.copy.synchronize());
        let v = r?;
        drained.ctx(self.device, "finishing the search")?;
        lane.ctx().check_err().ctx(self.device, "finishing the search")?;
        Ok(v)
    }

    /// Device bytes a search may use: `memory_fraction` of the free memory, split between the
    /// logical shards of this GPU, capped by `budget_bytes`.
    pub(super) fn budget(&self, lane: &Lane) -> Result<usize> {
        let (free, _total) = lane.ctx().mem_get_info().ctx(self.device, "querying free memory")?;
        let share = (free as f64 * self.opts.memory_fraction as f64 / self.sharing as f64) as usize;
        Ok(self.opts.budget_bytes.map_or(share, |b| share.min(b)))
    }

    /// The resident rows of `job`'s database, if this searcher loaded exactly them.
    pub(super) fn resident<'j>(&self, job: &FlatJob<'j>) -> Option<&'j Rows> {
        let held = job.resident?.rows.as_ref()?.downcast_ref::<ResidentRows>()?;
        let host = (job.database.as_slice().as_ptr() as usize, job.database.as_slice().len());
        let same = held.device == self.device
            && held.slot == self.slot
            && held.host == host
            && held.precision == self.opts.precision
            && held.shift.as_deref() == job.shift;
        same.then_some(&held.rows)
    }
}

impl FlatSearcher for CudaSearcher {
    fn name(&self) -> String {
        if self.sharing > 1 {
            format!("cuda:{} (shard {})", self.device, self.slot)
        } else {
            format!("cuda:{}", self.device)
        }
    }

    fn search(&self, job: &FlatJob<'_>) -> Result<TopKLists> {
        validate(job, self.opts.precision)?;
        let lane = self.lock()?;
        if job.gpu_path == GpuPath::Fused {
            return self.finish(&lane, self.fused(&lane, job));
        }
        let mut shrink = 0;
        loop {
            match self.cublas(&lane, job, shrink) {
                Err(e) if e.kind() == crate::error::ErrorKind::OutOfMemory && shrink < crate::gpu::plan::GpuPlan::MAX_SHRINK => {
                    // Drain both streams and forget the failed allocation, then re-plan smaller.
                    let _ = lane.compute.synchronize().and(lane.copy.synchronize());
                    let _ = lane.ctx().check_err();
                    shrink += 1;
                }
                r => return self.finish(&lane, r),
            }
        }
    }

    /// Uploads the rows once (when they take at most half of this searcher's budget; larger
    /// databases stream through the device tile by tile on every search).
    fn load(&self, database: Vectors<'_>, shift: Option<&[f32]>) -> Result<Resident> {
        check_shape(database.n(), database.d())?;
        check_f16(database, shift, self.opts.precision)?;
        let lane = self.lock()?;
        let prec = self.opts.precision;
        let (d, ld, elem) = (database.d(), stored_ld(database.d()), elem_bytes(prec));
        let bytes = database.n() * (ld * elem + 4);
        if bytes > self.budget(&lane)?.saturating_sub(RESERVE) / 2 {
            return Ok(Resident::default());
        }
        let upload = || -> Result<Rows> {
            let mut rows = Rows::alloc(&lane.compute, database.n(), ld, elem)?;
            let mut up = Uploader::new(&lane.copy, upload_chunk(d, database.n(), 0), d)?;
            up.upload(lane.functions(), &lane.copy, &lane.compute, prec, database.as_slice(), shift, &mut rows, 0, ld, true)?;
            // The staging buffers must outlive the queued copies: drain before `up` drops.
            lane.copy.synchronize().ctx(self.device, "uploading rows")?;
            lane.compute.synchronize().ctx(self.device, "uploading rows")?;
            Ok(rows)
        };
        let rows = self.finish(&lane, upload())?;
        let held = ResidentRows {
            device: self.device,
            slot: self.slot,
            host: (database.as_slice().as_ptr() as usize, database.as_slice().len()),
            precision: prec,
            shift: shift.map(<[f32]>::to_vec),
            rows,
        };
        Ok(Resident { rows: Some(Box::new(held)), uploads: 1 })
    }
}

/// Sizes the kernels index with 32-bit integers (row counts, block counts of 64 rows).
fn check_shape(n: usize, d: usize) -> Result<()> {
    if n > (i32::MAX as usize) - 64 || d > i32::MAX as usize / 8 {
        return Err(Error::invalid("gpu search", format!("{n} rows of dimension {d}: the CUDA kernels serve fewer than 2³¹ − 64 rows per device and d < 2²⁸")));
    }
    Ok(())
}

/// f16 holds magnitudes up to 65504: refuse rows (as stored, after the shift) beyond it.
fn check_f16(v: Vectors<'_>, shift: Option<&[f32]>, prec: Precision) -> Result<()> {
    if prec != Precision::F16 {
        return Ok(());
    }
    let d = v.d();
    for (p, x) in v.as_slice().iter().enumerate() {
        let stored = x - shift.map_or(0.0, |s| s[p % d]);
        if stored.abs() > F16_MAX {
            return Err(Error::invalid(
                "precision",
                format!("f16 cannot hold row {}, component {} = {} (|x| > 65504 as stored); use bf16 or f32", p / d, p % d, x),
            ));
        }
    }
    Ok(())
}

/// The checks the CPU backend would make too, plus the GPU's own limits.
fn validate(job: &FlatJob<'_>, prec: Precision) -> Result<()> {
    if job.k == 0 || job.k > MAX_K {
        return Err(Error::InvalidK { k: job.k, reason: format!("the CUDA backend serves 1 ≤ k ≤ {MAX_K}") });
    }
    if job.queries.d() != job.database.d() {
        return Err(Error::invalid("queries", format!("dimension {} differs from the database's {}", job.queries.d(), job.database.d())));
    }
    check_shape(job.database.n().max(job.queries.n()), job.database.d())?;
    let shift = if job.metric == FlatMetric::L2 { job.shift } else { None };
    check_f16(job.queries, shift, prec)?;
    check_f16(job.database, shift, prec)
}

/// Where the queries are: rows `[first, first + n)` of the database slice, when they are.
pub(super) fn queries_in_database(q: Vectors<'_>, x: Vectors<'_>) -> Option<usize> {
    let (qs, xs) = (q.as_slice().as_ptr_range(), x.as_slice().as_ptr_range());
    if qs.start < xs.start || qs.end > xs.end {
        return None;
    }
    // SAFETY: both pointers lie in the database slice (checked above).
    let off = unsafe { qs.start.offset_from(xs.start) } as usize;
    off.is_multiple_of(x.d()).then_some(off / x.d())
}
