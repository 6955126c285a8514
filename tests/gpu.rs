//! The CUDA backend (feature `cuda`).
//!
//! Run everywhere (CI has no GPU):
//! * the embedded kernels carry SASS for sm_80 and sm_90, the pipeline primitives (cp.async,
//!   ldmatrix) assemble to LDGSTS and LDSM, and ptxas reports no spills in the
//!   select and merge kernels (needs the kernels compiled: nvcc present at build time; set
//!   `FAISS_NN_REQUIRE_KERNELS=1`, as .ci/run does, to fail rather than skip without them);
//! * opening a GPU without a driver fails with a typed error instead of panicking.
//!
//! `#[ignore = "needs a CUDA GPU"]`: parity with the f64 reference and the CPU backend over
//! shapes, metrics and precisions; run with `cargo test --features cuda --test lib -- --ignored gpu`.

use crate::common::data::{demo_embeddings, normal, repo_root, tied, Rng};
use crate::common::parity::{compare_row, max_norm2, tolerance, Row};
use crate::common::reference::{knn, score};
use faiss_nn::engine::{Engine, EngineOptions};
use faiss_nn::flat::cpu::CpuSearcher;
use faiss_nn::flat::{FlatJob, FlatSearcher};
use faiss_nn::gpu::{self, embedded, ptxas, GpuOptions};
use faiss_nn::topk::{merge_lists, TopKLists};
use faiss_nn::{Device, Error, FlatMetric, GpuPath, NoProgress, Precision, Vectors};
use std::process::Command;

// ------------------------------------------------------------------ no GPU needed

/// True when the kernels are built in; otherwise says why the caller skips (or fails under
/// `FAISS_NN_REQUIRE_KERNELS`).
fn kernels_built(test: &str) -> bool {
    if embedded::BUILT {
        return true;
    }
    let msg = format!("{test}: SKIPPED, the CUDA kernels were not compiled: {}", embedded::MISSING_REASON);
    assert!(std::env::var_os("FAISS_NN_REQUIRE_KERNELS").is_none(), "{msg} (FAISS_NN_REQUIRE_KERNELS is set)");
    eprintln!("{msg}");
    false
}

#[test]
fn kernels_carry_sass_for_sm80_and_sm90() {
    if !kernels_built("kernels_carry_sass_for_sm80_and_sm90") {
        return;
    }
    assert_eq!(embedded::SASS_ARCHS, &["sm_80", "sm_90"]);
    for (name, fatbin, ptx, src, report) in embedded::MODULES {
        // A fatbin begins with its magic number 0xBA55ED50 (little-endian).
        assert_eq!(fatbin.get(..4), Some(&[0x50, 0xED, 0x55, 0xBA][..]), "{name}: not a fatbin");
        assert!(ptx.contains(".target sm_80"), "{name}: PTX is not compute_80");
        assert!(src.contains("extern \"C\"") && !src.contains("#include \"topk.cuh\""), "{name}: NVRTC source not inlined");
        let entries = ptxas::parse(report);
        assert!(!entries.is_empty(), "{name}: empty ptxas report");
        for e in &entries {
            for arch in ["sm_80", "sm_90"] {
                assert!(entries.iter().any(|o| o.name == e.name && o.arch == arch), "{name}: {} has no {arch} SASS", e.name);
            }
        }
    }
}

#[test]
fn select_merge_and_fused_kernels_do_not_spill() {
    if !kernels_built("select_merge_and_fused_kernels_do_not_spill") {
        return;
    }
    let mut seen = 0;
    for (name, _, _, _, report) in embedded::MODULES {
        for e in ptxas::parse(report) {
            eprintln!(
                "{name}.cu {:<24} {}: {:>3} registers, {} B spill stores, {} B spill loads, {} B stack",
                e.name, e.arch, e.registers, e.spill_stores, e.spill_loads, e.stack_frame
            );
            if e.name.starts_with("topk_") || e.name.starts_with("fused_knn_") {
                seen += 1;
                assert!(e.spill_stores == 0 && e.spill_loads == 0, "{} on {} spills: {e:?}", e.name, e.arch);
                assert_eq!(e.stack_frame, 0, "{} on {} uses local memory: {e:?}", e.name, e.arch);
            }
        }
    }
    // 10 select entries + merge + 16 fused entries, on two architectures.
    assert_eq!(seen, 54, "missing select/merge/fused kernels in the ptxas reports");
}

/// The pipeline primitives of kernels/async.cuh (cp.async, ldmatrix) assemble to the instructions
/// meant on sm_80 and sm_90: kernels/emu/async_sass.cu compiled by nvcc, read back by cuobjdump.
#[test]
fn pipeline_primitives_assemble_to_ldgsts_and_ldsm() {
    let root = repo_root();
    let tools = root.join(".cuda/tools/nvidia/cu13/bin");
    let nvcc = std::env::var_os("NVCC").map(std::path::PathBuf::from).unwrap_or_else(|| root.join(".cuda/nvidia/cu13/bin/nvcc"));
    let cuobjdump = std::env::var_os("CUOBJDUMP").map(std::path::PathBuf::from).unwrap_or_else(|| tools.join("cuobjdump"));
    if !nvcc.is_file() || !cuobjdump.is_file() {
        let msg = format!("SKIPPED, no nvcc at {} or cuobjdump at {} (bash scripts/setup.sh installs them)", nvcc.display(), cuobjdump.display());
        assert!(std::env::var_os("FAISS_NN_REQUIRE_KERNELS").is_none(), "{msg} (FAISS_NN_REQUIRE_KERNELS is set)");
        eprintln!("pipeline_primitives_assemble_to_ldgsts_and_ldsm: {msg}");
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    for arch in ["sm_80", "sm_90"] {
        let cubin = dir.path().join(format!("async_{arch}.cubin"));
        let build = Command::new(&nvcc)
            .args(["-std=c++17", "-cubin", &format!("-arch={arch}"), "-I"])
            .arg(root.join("kernels"))
            .arg(root.join("kernels/emu/async_sass.cu"))
            .arg("-o")
            .arg(&cubin)
            .output()
            .expect("run nvcc");
        assert!(build.status.success(), "nvcc {arch}: {}", String::from_utf8_lossy(&build.stderr));
        let out =
            Command::new(&cuobjdump).arg("-sass").arg(&cubin).env("NVDISASM_PATH", tools.join("nvdisasm")).env("PATH", &tools).output().expect("run cuobjdump");
        assert!(out.status.success(), "cuobjdump failed: {}", String::from_utf8_lossy(&out.stderr));
        let sass = String::from_utf8_lossy(&out.stdout);
        for op in ["LDGSTS.E.BYPASS.128", "LDGDEPBAR", "DEPBAR.LE", "LDSM.16.M88.4", "LDSM.16.MT88.4"] {
            assert!(sass.contains(op), "{arch}: no {op} in\n{sass}");
        }
    }
}

/// The fused kernels' SASS (cuobjdump, as installed by scripts/setup.sh) holds the instructions
/// we meant: tensor-core HMMA of the right type for bf16 / f16 / tf32, FFMA and no HMMA for exact
/// f32, and no local-memory traffic (LDL/STL) in any of them, on both architectures.
#[test]
fn fused_kernels_use_the_matrix_instructions_meant() {
    if !kernels_built("fused_kernels_use_the_matrix_instructions_meant") {
        return;
    }
    let tools = repo_root().join(".cuda/tools/nvidia/cu13/bin");
    let cuobjdump = std::env::var_os("CUOBJDUMP").map(std::path::PathBuf::from).unwrap_or_else(|| tools.join("cuobjdump"));
    if !cuobjdump.is_file() {
        let msg = format!("SKIPPED, no cuobjdump at {} (bash scripts/setup.sh installs it)", cuobjdump.display());
        assert!(std::env::var_os("FAISS_NN_REQUIRE_KERNELS").is_none(), "{msg} (FAISS_NN_REQUIRE_KERNELS is set)");
        eprintln!("fused_kernels_use_the_matrix_instructions_meant: {msg}");
        return;
    }
    let (_, fatbin, _, _, _) = embedded::MODULES.iter().find(|m| m.0 == "fused").expect("kernels/fused.cu is embedded");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("fused.fatbin");
    std::fs::write(&path, fatbin).expect("write the fatbin");
    let out =
        Command::new(&cuobjdump).arg("-sass").arg(&path).env("NVDISASM_PATH", tools.join("nvdisasm")).env("PATH", &tools).output().expect("run cuobjdump");
    assert!(out.status.success(), "cuobjdump failed: {}", String::from_utf8_lossy(&out.stderr));
    let sass = String::from_utf8_lossy(&out.stdout);

    // Instruction counts per (function, architecture).
    let mut counts: std::collections::BTreeMap<(String, String), std::collections::BTreeMap<&str, usize>> = Default::default();
    let (mut arch, mut func) = (String::new(), None::<(String, String)>);
    const OPS: [&str; 7] = ["HMMA.16816.F32.BF16 ", "HMMA.16816.F32 ", "HMMA.1688.F32.TF32 ", "FFMA ", "LDL", "STL", "HMMA"];
    for line in sass.lines() {
        if let Some(a) = line.trim().strip_prefix("arch = ") {
            arch = a.to_string();
        } else if let Some(f) = line.split("Function : ").nth(1) {
            func = Some((f.trim().to_string(), arch.clone()));
            counts.entry(func.clone().unwrap()).or_default();
        } else if let Some(f) = &func {
            let c = counts.get_mut(f).expect("entry made above");
            for op in OPS {
                if line.contains(op) {
                    *c.entry(op).or_default() += 1;
                }
            }
        }
    }
    let fused: Vec<_> = counts.iter().filter(|((f, _), _)| f.starts_with("fused_knn_")).collect();
    assert_eq!(fused.len(), 32, "16 fused entries on sm_80 and sm_90: {:?}", counts.keys().collect::<Vec<_>>());
    for ((f, a), c) in fused {
        let n = |op: &str| c.get(op).copied().unwrap_or(0);
        eprintln!("{f} {a}: {c:?}");
        assert_eq!(n("LDL") + n("STL"), 0, "{f} on {a} touches local memory");
        let meant = if f.contains("_bf16_") {
            "HMMA.16816.F32.BF16 "
        } else if f.contains("_f16_") {
            "HMMA.16816.F32 "
        } else if f.contains("_tf32_") {
            "HMMA.1688.F32.TF32 "
        } else {
            assert_eq!(n("HMMA"), 0, "{f} on {a}: the exact-f32 kernel must not use tensor cores");
            "FFMA "
        };
        // Per 16-word depth slice: 2 × 8 mma per warp, or 16 × 32 FMAs per thread.
        let least = if meant == "FFMA " { 128 } else { 16 };
        assert!(n(meant) >= least, "{f} on {a}: {} × {meant}, expected at least {least}", n(meant));
    }
}

#[test]
fn opening_a_gpu_never_panics() {
    // Whatever this machine has (no driver, no kernels, a GPU), the answer is typed.
    match gpu::open_searchers(&Device::Cuda(vec![0]), &GpuOptions::default()) {
        Ok(s) => assert_eq!(s.len(), 1),
        Err(Error::Unavailable { reason, .. }) => assert!(!reason.is_empty()),
        Err(e) => panic!("unexpected error: {e}"),
    }
    assert!(matches!(gpu::open_searchers(&Device::Cpu, &GpuOptions::default()), Err(Error::InvalidArgument { .. } | Error::Unavailable { .. })));
    assert!(matches!(
        gpu::open_searchers(&Device::Cuda(vec![0]), &GpuOptions { memory_fraction: 2.0, ..Default::default() }),
        Err(Error::InvalidArgument { .. })
    ));
}

// ------------------------------------------------------------------ on a GPU

fn searcher(opts: GpuOptions) -> Box<dyn FlatSearcher> {
    let mut v = gpu::open_searchers(&Device::Cuda(vec![0]), &opts).expect("a CUDA device 0");
    v.remove(0)
}

/// Every entry written (the searcher poisons its output with NaN / i64::MIN).
fn assert_written(l: &TopKLists) {
    assert!(l.ids.iter().all(|i| *i >= -1), "an output index was never written");
    assert!(l.keys.iter().all(|k| !k.is_nan()), "an output key was never written");
}

/// GPU result of a self-join (or foreign queries) against the f64 reference, tie-aware, with
/// each returned index's true score (exact f32 products; reduced precisions use
/// [`check_reduced`]).
fn check(s: &dyn FlatSearcher, metric: FlatMetric, q: &[f32], x: &[f32], d: usize, k: usize, self_join: bool) -> Result<(), String> {
    let xv = Vectors::new(x, d, "x").unwrap();
    let qv = if self_join { xv } else { Vectors::new(q, d, "q").unwrap() };
    let job = if self_join { FlatJob::self_join(xv, metric, k, &NoProgress) } else { FlatJob::search(qv, xv, metric, k, &NoProgress) };
    let lists = s.search(&job).map_err(|e| e.to_string())?;
    assert_written(&lists);
    let got = lists.into_neighbours(metric);
    let want = knn(metric, qv.as_slice(), x, d, k, self_join);
    let tol = tolerance(max_norm2(x, d).max(max_norm2(qv.as_slice(), d)));
    for (i, want) in want.iter().enumerate() {
        let mut w_ids: Vec<i64> = want.iter().map(|p| p.0).collect();
        let mut w_sc: Vec<f32> = want.iter().map(|p| p.1 as f32).collect();
        w_ids.resize(k, -1);
        w_sc.resize(k, if metric == FlatMetric::L2 { f32::INFINITY } else { f32::NEG_INFINITY });
        let exact = |id: i64| score(metric, qv.row(i), xv.row(id as usize));
        compare_row(metric, Row { ids: got.indices_of(i), scores: got.scores_of(i) }, Row { ids: &w_ids, scores: &w_sc }, tol, Some(&exact))
            .map_err(|e| format!("n {} d {d} k {k} {metric:?} row {i}: {e}", xv.n()))?;
        if self_join && got.indices_of(i).contains(&(i as i64)) {
            return Err(format!("row {i} is in its own list"));
        }
    }
    Ok(())
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_matches_reference_on_random_shapes() {
    let s = searcher(GpuOptions::default());
    let small_batches = searcher(GpuOptions { batch_rows: Some(37), ..Default::default() });
    let mut rng = Rng::new(7);
    for case in 0..40 {
        let n = 2 + rng.below(700);
        let d = [1, 3, 17, 64, 385, 1023][case % 6];
        let k = 1 + rng.below((n - 1).min(600));
        let metric = if case % 2 == 0 { FlatMetric::L2 } else { FlatMetric::InnerProduct };
        let x = if case % 3 == 0 { tied(n, d, case as u64) } else { normal(n, d, case as u64) };
        let which: &dyn FlatSearcher = if case % 4 == 1 { small_batches.as_ref() } else { s.as_ref() };
        check(which, metric, &[], &x, d, k, true).unwrap();
        // Foreign queries, k possibly above the database size.
        let q = normal(1 + rng.below(50), d, 1000 + case as u64);
        check(which, metric, &q, &x, d, (k + 5).min(4096), false).unwrap();
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_k_extremes_and_every_bucket() {
    let s = searcher(GpuOptions::default());
    let (n, d) = (5000, 24);
    for (i, k) in [1, 32, 33, 128, 129, 512, 513, 2048, 2049, 4096].into_iter().enumerate() {
        let x = if i % 2 == 0 { normal(n, d, i as u64) } else { tied(n, d, i as u64) };
        for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
            check(s.as_ref(), metric, &[], &x, d, k, true).unwrap();
        }
    }
}

/// Several database tiles (16,384 columns each) and batches: compare with the CPU backend.
#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_matches_cpu_backend_across_tiles() {
    let (n, d, k) = (40_001, 8, 20);
    let x = tied(n, d, 3);
    let xv = Vectors::new(&x, d, "x").unwrap();
    let cpu = CpuSearcher::new();
    for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
        let job = FlatJob::self_join(xv, metric, k, &NoProgress);
        let want = cpu.search(&job).unwrap();
        for opts in [GpuOptions::default(), GpuOptions { batch_rows: Some(1000), ..Default::default() }] {
            let got = searcher(opts).search(&job).unwrap();
            assert_written(&got);
            // Small integers: every score is exact in f32 on both sides, so lists are identical.
            assert_eq!(got.ids, want.ids, "{metric:?} {opts:?}");
            assert_eq!(got.keys, want.keys, "{metric:?} {opts:?}");
        }
    }
}

/// Unit roundoff of the product inputs: bf16 keeps 8 significant bits, f16 and TF32 11.
fn unit_roundoff(p: Precision) -> f64 {
    match p {
        Precision::Bf16 => 2f64.powi(-8),
        Precision::F16 | Precision::Tf32 => 2f64.powi(-11),
        _ => 2f64.powi(-24),
    }
}

/// Lists from reduced-precision products, entry by entry: every entry written, no row in its own
/// list, no index twice, and each reported score within the rounding bound of its own pair's
/// true score. Rounding both factors costs at most 2u of each product term, so the inner
/// product is off by at most ~2u·Σ|qᵢxᵢ| and the L2 key (twice the product) by ~4u·Σ|qᵢxᵢ|,
/// which is at most 2u·(‖q‖² + ‖x‖²); the bounds below add 50 % and the f32 accumulation.
fn check_reduced(got: &TopKLists, metric: FlatMetric, x: &[f32], d: usize, unit: f64) -> Result<(), String> {
    assert_written(got);
    let k = got.k();
    for i in 0..got.n() {
        let (keys, ids) = got.row(i);
        let q = &x[i * d..(i + 1) * d];
        let mut seen = std::collections::HashSet::new();
        for t in 0..k {
            let j = ids[t];
            if j == i as i64 {
                return Err(format!("row {i} is in its own list"));
            }
            if j < 0 || !seen.insert(j) {
                return Err(format!("row {i} position {t}: index {j} (unfilled or repeated)"));
            }
            let xr = &x[j as usize * d..(j as usize + 1) * d];
            let abs_dot: f64 = q.iter().zip(xr).map(|(a, b)| (f64::from(*a) * f64::from(*b)).abs()).sum();
            let n2 = |r: &[f32]| r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
            let (bound, score) = match metric {
                FlatMetric::L2 => (3.0 * unit * (n2(q) + n2(xr)) + 1e-5 * (1.0 + n2(q) + n2(xr)), f64::from(keys[t])),
                FlatMetric::InnerProduct | FlatMetric::Cosine => (3.0 * unit * abs_dot + 1e-5 * (1.0 + abs_dot), -f64::from(keys[t])),
            };
            let truth = crate::common::reference::score(metric, q, xr);
            #[allow(clippy::neg_cmp_op_on_partial_ord)] // a NaN must fail too
            if !((score - truth).abs() <= bound) {
                return Err(format!("row {i} position {t}: index {j} reported {score}, true {truth}, bound {bound}"));
            }
        }
    }
    Ok(())
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_tf32_is_close() {
    let s = searcher(GpuOptions { precision: Precision::Tf32, ..Default::default() });
    let (n, d, k) = (800, 64, 10);
    let x = normal(n, d, 11);
    let xv = Vectors::new(&x, d, "x").unwrap();
    for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
        let got = s.search(&FlatJob::self_join(xv, metric, k, &NoProgress)).unwrap();
        check_reduced(&got, metric, &x, d, unit_roundoff(Precision::Tf32)).unwrap();
        let recall = recall(&got, &knn(metric, &x, &x, d, k, true), k);
        assert!(recall >= 0.99, "{metric:?}: recall {recall}");
    }
}

/// Share of the reference's `k` neighbours per row (`want`, from [`knn`]) that `got` found.
fn recall(got: &TopKLists, want: &[Vec<(i64, f64)>], k: usize) -> f64 {
    let hits: usize = want.iter().enumerate().map(|(i, w)| w.iter().filter(|(id, _)| got.row(i).1.contains(id)).count()).sum();
    hits as f64 / (want.len() * k) as f64
}

/// Recall@k that exact arithmetic reaches on `x` rounded to `prec` (f16 and bf16; the L2 norms
/// of the rounded rows, as the GPU paths compute them), against `want`: the floor the GPU's
/// rounding allows, measured instead of guessed (on the demo rows, L2: bf16 0.99823, f16 0.99963;
/// inner product: bf16 0.9986, f16 0.99993). Other precisions: 0.999.
fn recall_floor(metric: FlatMetric, x: &[f32], d: usize, k: usize, prec: Precision, want: &[Vec<(i64, f64)>]) -> f64 {
    let round: fn(f32) -> f32 = match prec {
        Precision::Bf16 => |v| half::bf16::from_f32(v).to_f32(),
        Precision::F16 => |v| half::f16::from_f32(v).to_f32(),
        _ => return 0.999,
    };
    let xr: Vec<f32> = x.iter().map(|v| round(*v)).collect();
    let emulated = knn(metric, &xr, &xr, d, k, true);
    let hits: usize = want.iter().zip(&emulated).map(|(w, e)| w.iter().filter(|(id, _)| e.iter().any(|p| p.0 == *id)).count()).sum();
    // f32 accumulation on the GPU may settle a few near-ties differently from f64 here.
    hits as f64 / (want.len() * k) as f64 - 0.0005
}

/// The real MiniLM demo rows: f16 and bf16 products reach the recall at k = 10 that exact
/// arithmetic on the rounded rows reaches ([`recall_floor`]); tf32 and f32 at least 0.999.
#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_half_precisions_keep_recall_on_minilm() {
    let (x, d) = demo_embeddings();
    let xv = Vectors::new(&x, d, "x").unwrap();
    let k = 10;
    for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
        let want = knn(metric, &x, &x, d, k, true);
        for prec in [Precision::F16, Precision::Bf16, Precision::Tf32, Precision::F32] {
            let got = searcher(GpuOptions { precision: prec, ..Default::default() }).search(&FlatJob::self_join(xv, metric, k, &NoProgress)).unwrap();
            check_reduced(&got, metric, &x, d, unit_roundoff(prec)).unwrap_or_else(|e| panic!("{metric:?} {prec:?}: {e}"));
            let (recall, floor) = (recall(&got, &want, k), recall_floor(metric, &x, d, k, prec, &want));
            eprintln!("{metric:?} {prec:?}: recall@{k} = {recall:.5} (floor {floor:.5})");
            assert!(recall >= floor, "{metric:?} {prec:?}: recall {recall} < {floor}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_duplicates_and_self_exclusion() {
    // Every row three times: each row's nearest others are its two copies at distance 0.
    let base = normal(300, 7, 9);
    let x: Vec<f32> = base.iter().chain(&base).chain(&base).copied().collect();
    let got = searcher(GpuOptions::default()).search(&FlatJob::self_join(Vectors::new(&x, 7, "x").unwrap(), FlatMetric::L2, 2, &NoProgress)).unwrap();
    // The raw kernel's key ‖x‖² + ‖x‖² − 2·x·x is not exactly 0 on a GPU: the norms (a shuffle
    // tree) and the product (cuBLAS or tensor cores) round in different orders. Each of the
    // three terms carries at most about d·ε relative error, so |key| ≤ c·ε·‖x‖² with
    // c = 4·(d + 2) = 36 for d = 7.
    let c = 4.0 * (7.0 + 2.0);
    for i in 0..900 {
        let (keys, ids) = got.row(i);
        let mut want: Vec<i64> = [0, 300, 600].iter().map(|o| ((i % 300) + o) as i64).filter(|j| *j != i as i64).collect();
        want.sort();
        let mut ids = ids.to_vec();
        ids.sort();
        assert_eq!(ids, want, "row {i}: its two copies, never itself");
        let norm2: f32 = x[i * 7..(i + 1) * 7].iter().map(|v| v * v).sum();
        for key in keys {
            assert!(key.abs() <= c * f32::EPSILON * norm2.max(f32::MIN_POSITIVE), "row {i}: key {key} for a copy (‖x‖² = {norm2})");
        }
    }
    // Through the engine (what the step runs), the exact layer re-scores in f64: exactly 0.
    let nn = faiss_nn::FaissNearestNeighbour::new().k(2).device(Device::Cuda(vec![0])).run(&x, 7).unwrap();
    assert!(nn.scores.iter().all(|s| *s == 0.0), "duplicates must score exactly 0 after the exact layer");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_errors_are_typed() {
    assert!(matches!(gpu::open_searchers(&Device::Cuda(vec![999]), &GpuOptions::default()), Err(Error::BadDevice { id: 999, .. })));
    let x = normal(10, 4, 1);
    let xv = Vectors::new(&x, 4, "x").unwrap();
    let s = searcher(GpuOptions::default());
    assert!(matches!(s.search(&FlatJob::self_join(xv, FlatMetric::L2, 4097, &NoProgress)), Err(Error::InvalidK { .. })));
    let big = vec![1.0e5f32; 16];
    let bv = Vectors::new(&big, 4, "x").unwrap();
    let half = searcher(GpuOptions { precision: Precision::F16, ..Default::default() });
    assert!(matches!(half.search(&FlatJob::self_join(bv, FlatMetric::L2, 1, &NoProgress)), Err(Error::InvalidArgument { .. })));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_shards_on_one_device_and_device_merge() {
    let (n, d, k) = (3001, 16, 50);
    let x = tied(n, d, 21);
    let xv = Vectors::new(&x, d, "x").unwrap();
    let job = FlatJob::self_join(xv, FlatMetric::L2, k, &NoProgress);
    let one = searcher(GpuOptions::default()).search(&job).unwrap();
    let _ = one;
    // Through the engine: exact lists, identical for one device and three logical shards.
    let single = Engine::open(&Device::Cuda(vec![0]), EngineOptions::default()).unwrap();
    let want = single.load_shard(&x, d, 0, FlatMetric::L2).unwrap().self_join(k, &NoProgress).unwrap();
    for mode in [faiss_nn::ShardMode::Sharded, faiss_nn::ShardMode::Replicated] {
        let three = Engine::open(&Device::Cuda(vec![0, 0, 0]), EngineOptions { shard_mode: mode, ..Default::default() }).unwrap();
        let shard = three.load_shard(&x, d, 0, FlatMetric::L2).unwrap();
        assert_eq!(shard.uploads(), 3, "{mode:?}: one upload per logical shard, at load");
        assert_eq!(shard.self_join(k, &NoProgress).unwrap(), want, "{mode:?} (device merge)");
        assert_eq!(shard.uploads(), 3, "{mode:?}: searching uploads nothing more");
    }
    // The device merge against the host merge on lists with ties, padding and k above 512.
    let mut rng = Rng::new(4);
    for k in [1, 7, 600, 4096] {
        let parts: Vec<TopKLists> = (0..3)
            .map(|p| {
                let rows = 5;
                let mut keys = Vec::new();
                let mut ids = Vec::new();
                for _ in 0..rows {
                    let filled = rng.below(k + 1);
                    let mut row: Vec<(f32, i64)> = (0..filled).map(|j| (rng.below(4) as f32, (p * 10_000 + j) as i64)).collect();
                    row.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    row.resize(k, (f32::INFINITY, -1));
                    keys.extend(row.iter().map(|e| e.0));
                    ids.extend(row.iter().map(|e| e.1));
                }
                TopKLists::from_raw(k, keys, ids)
            })
            .collect();
        assert_eq!(gpu::merge_on_device(0, &parts, k).unwrap(), merge_lists(&parts, k), "k = {k}");
    }
}

// ------------------------------------------------------------------ the fused kernel, on a GPU

/// A searcher whose jobs all take the fused path.
struct Fused(Box<dyn FlatSearcher>);

impl FlatSearcher for Fused {
    fn name(&self) -> String {
        self.0.name()
    }
    fn search(&self, job: &FlatJob<'_>) -> faiss_nn::Result<TopKLists> {
        self.0.search(&FlatJob { gpu_path: GpuPath::Fused, ..*job })
    }
}

fn fused(precision: Precision) -> Box<dyn FlatSearcher> {
    Box::new(Fused(searcher(GpuOptions { precision, ..Default::default() })))
}

/// Random shapes (blocks of 64 rows cut anywhere, odd dimensions), both metrics, self-joins
/// (symmetric) and foreign queries, exact f32 and TF32, against the f64 reference.
#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_fused_matches_reference_on_random_shapes() {
    let mut rng = Rng::new(17);
    for prec in [Precision::F32, Precision::Tf32] {
        let s = fused(prec);
        for case in 0..24 {
            let n = 2 + rng.below(600);
            let d = [1, 3, 17, 64, 385, 1023][case % 6];
            let k = 1 + rng.below((n - 1).min(128));
            let metric = if case % 2 == 0 { FlatMetric::L2 } else { FlatMetric::InnerProduct };
            let x = if case % 3 == 0 { tied(n, d, case as u64) } else { normal(n, d, case as u64) };
            if prec == Precision::Tf32 {
                // TF32 products may reorder near-ties: hold each entry to its own pair's bound.
                let got = s.search(&FlatJob::self_join(Vectors::new(&x, d, "x").unwrap(), metric, k, &NoProgress)).unwrap();
                check_reduced(&got, metric, &x, d, unit_roundoff(prec)).unwrap_or_else(|e| panic!("{prec:?} n {n} d {d} k {k}: {e}"));
                continue;
            }
            check(s.as_ref(), metric, &[], &x, d, k, true).unwrap_or_else(|e| panic!("{prec:?}: {e}"));
            let q = normal(1 + rng.below(100), d, 500 + case as u64);
            check(s.as_ref(), metric, &q, &x, d, (k + 3).min(128), false).unwrap_or_else(|e| panic!("{prec:?}: {e}"));
        }
    }
}

/// On small integers every precision is exact, so the fused kernel and the cuBLAS path must give
/// identical lists (ties broken by the lower index in both), for every precision and k bucket.
#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_fused_equals_the_cublas_path_on_exact_data() {
    let (n, d) = (3001, 24);
    let x = tied(n, d, 5);
    let xv = Vectors::new(&x, d, "x").unwrap();
    for prec in [Precision::F32, Precision::Tf32, Precision::F16, Precision::Bf16] {
        let (a, b) = (fused(prec), searcher(GpuOptions { precision: prec, ..Default::default() }));
        for k in [1, 10, 32, 33, 128] {
            for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
                let job = FlatJob::self_join(xv, metric, k, &NoProgress);
                let (got, want) = (a.search(&job).unwrap(), b.search(&job).unwrap());
                assert_written(&got);
                assert_eq!(got, want, "{prec:?} k {k} {metric:?}");
            }
        }
    }
}

/// The real MiniLM demo rows: the fused kernel's bf16 and f16 products reach the recall of exact
/// arithmetic on the rounded rows ([`recall_floor`]).
#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_fused_half_precisions_keep_recall_on_minilm() {
    let (x, d) = demo_embeddings();
    let xv = Vectors::new(&x, d, "x").unwrap();
    let k = 10;
    for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
        let want = knn(metric, &x, &x, d, k, true);
        for prec in [Precision::Bf16, Precision::F16] {
            let got = fused(prec).search(&FlatJob::self_join(xv, metric, k, &NoProgress)).unwrap();
            check_reduced(&got, metric, &x, d, unit_roundoff(prec)).unwrap_or_else(|e| panic!("fused {metric:?} {prec:?}: {e}"));
            let (recall, floor) = (recall(&got, &want, k), recall_floor(metric, &x, d, k, prec, &want));
            eprintln!("fused {metric:?} {prec:?}: recall@{k} = {recall:.5} (floor {floor:.5})");
            assert!(recall >= floor, "fused {metric:?} {prec:?}: recall {recall} < {floor}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_fused_refuses_k_above_its_buckets() {
    let x = normal(300, 8, 3);
    let job = FlatJob::self_join(Vectors::new(&x, 8, "x").unwrap(), FlatMetric::L2, 129, &NoProgress);
    assert!(matches!(fused(Precision::F32).search(&job), Err(Error::InvalidK { k: 129, .. })));
}

/// A small fused run for compute-sanitizer (memcheck and racecheck, scripts/gpu-check.sh): a
/// partial last block, both k buckets, both metrics, self-join and foreign queries.
#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_fused_small_for_sanitizers() {
    let (n, d) = (200, 33);
    let x = normal(n, d, 8);
    let q = normal(70, d, 9);
    for prec in [Precision::F32, Precision::Bf16] {
        let s = fused(prec);
        for (k, metric) in [(10, FlatMetric::L2), (100, FlatMetric::InnerProduct)] {
            // bf16 keys carry ~3 significant digits: only the exact f32 run is held to the reference.
            if prec == Precision::F32 {
                check(s.as_ref(), metric, &[], &x, d, k, true).unwrap();
                check(s.as_ref(), metric, &q, &x, d, k, false).unwrap();
            } else {
                let xv = Vectors::new(&x, d, "x").unwrap();
                assert_written(&s.search(&FlatJob::self_join(xv, metric, k, &NoProgress)).unwrap());
            }
        }
    }
}

/// The proof's assumption about tensor cores (`engine::bound`, *A GPU's keys*): every key the
/// GPU's bf16 and f16 products give, on both paths, lies within the bound the exact layer
/// proves their lists with (`KeyBound`), on the demo rows, rows far from the origin and random
/// normal rows; L2 both centred on the column means (as the engine loads rows) and not (the
/// largest norms against the smallest differences). Prints the largest ratio of a key's error
/// to its bound. (The candidates are the rows checked: the model's test in `engine::tensor_emu`
/// checks every pair.)
#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_reduced_keys_stay_within_the_proofs_bound() {
    use faiss_nn::engine::bound::{Accumulation, KeyBound, Rounding};
    let (demo, dd) = demo_embeddings();
    let far: Vec<f32> = normal(600, 64, 21).iter().map(|v| 50.0 + v).collect();
    let sets = [("demo", demo[..1500 * dd].to_vec(), dd), ("far", far, 64), ("normal", normal(1000, 96, 22), 96)];
    for (prec, rounding) in [(Precision::Bf16, Rounding::Bf16), (Precision::F16, Rounding::F16)] {
        for (name, x, d) in &sets {
            let xv = Vectors::new(x, *d, "x").unwrap();
            let means: Vec<f32> = (0..*d).map(|j| ((0..xv.n()).map(|i| xv.row(i)[j] as f64).sum::<f64>() / xv.n() as f64) as f32).collect();
            for (metric, shift) in [(FlatMetric::L2, None), (FlatMetric::L2, Some(&means[..])), (FlatMetric::InnerProduct, None)] {
                let bound = KeyBound::new(rounding, Accumulation::TensorCores, metric, &xv, shift);
                for (path, s) in [("cublas", searcher(GpuOptions { precision: prec, ..Default::default() })), ("fused", fused(prec))] {
                    let got = s.search(&FlatJob::self_join(xv, metric, 32, &NoProgress).with_shift(shift)).unwrap();
                    let mut worst = 0f64;
                    for i in 0..xv.n() {
                        let e = bound.of(xv.row(i));
                        let (keys, ids) = got.row(i);
                        for (key, id) in keys.iter().zip(ids) {
                            let truth = score(metric, xv.row(i), xv.row(*id as usize));
                            let exact_key = if metric == FlatMetric::L2 { truth } else { -truth };
                            let ratio = (*key as f64 - exact_key).abs() / e;
                            assert!(
                                ratio <= 1.0,
                                "{prec:?} {name} {metric:?} shift {} {path}: row {i}, index {id}: key {key}, exact {exact_key}, bound {e}",
                                shift.is_some()
                            );
                            worst = worst.max(ratio);
                        }
                    }
                    eprintln!("{prec:?} {name} {metric:?} shift {} {path}: largest key error {worst:.3e} of the bound", shift.is_some());
                }
            }
        }
    }
}

/// With the default (exact) mode a GPU's bf16 and f16 self-joins give the CPU's exact lists
/// (bit for bit: ids and scores), the rows the proof leaves unproven searched again in f32 on
/// the CPU; with `approximate` the lists are the GPU's candidates re-scored. Prints the share of
/// rows proven by the first pass.
#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_reduced_lists_are_proven_exact() {
    // The whole demo set (3,000 rows).
    let (demo, d) = demo_embeddings();
    let x = &demo[..];
    let cpu = Engine::open(&Device::Cpu, EngineOptions { precision: Precision::F32, ..EngineOptions::default() }).unwrap();
    for prec in [Precision::Bf16, Precision::F16] {
        for metric in [FlatMetric::L2, FlatMetric::InnerProduct, FlatMetric::Cosine] {
            for k in [1, 10, 100] {
                let want = cpu.load_shard(x, d, 0, metric).unwrap().self_join(k, &NoProgress).unwrap();
                for path in [GpuPath::Cublas, GpuPath::Fused] {
                    if path == GpuPath::Fused && k > gpu::FUSED_MAX_K {
                        continue;
                    }
                    let opts = EngineOptions { precision: prec, gpu_path: path, ..EngineOptions::default() };
                    let gpu = Engine::open(&Device::Cuda(vec![0]), opts).unwrap();
                    let (got, stats) = gpu.load_shard(x, d, 0, metric).unwrap().self_join_with_stats(k, &NoProgress).unwrap();
                    assert_eq!(got, want, "{prec:?} {metric:?} k = {k} {path:?}");
                    let n = x.len() / d;
                    eprintln!(
                        "{prec:?} {metric:?} k = {k} {path:?}: {:.2} % of rows proven by the first pass",
                        100.0 * (n - stats.fallback_rows) as f64 / n as f64
                    );
                    let loose = Engine::open(&Device::Cuda(vec![0]), EngineOptions { approximate: true, ..opts }).unwrap();
                    let (approx, stats) = loose.load_shard(x, d, 0, metric).unwrap().self_join_with_stats(k, &NoProgress).unwrap();
                    assert_eq!(stats.fallback_rows, 0);
                    let hits: usize = (0..n).map(|i| approx.row(i).1.iter().filter(|id| want.row(i).1.contains(id)).count()).sum();
                    eprintln!("  approximate: recall@{k} {:.5}", hits as f64 / (n * k) as f64);
                }
            }
        }
    }
}

/// Where the fused path's k limit cuts bf16's proof margin below half (k = 110: 18 candidates
/// beyond k where the proof keeps 55) and f32's whole margin fits, the step opens the GPU in f32
/// (`engine::options_for`): its lists equal the CPU's. The step's own options and plan say f32.
#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_bf16_near_the_k_limit_runs_f32() {
    let (demo, d) = demo_embeddings();
    let (x, n, k) = (&demo[..], demo.len() / d, 110);
    let gpu = Device::Cuda(vec![0]);
    let step = |device: Device| faiss_nn::FaissNearestNeighbour::new().device(device).precision(Precision::Bf16).gpu_path(GpuPath::Fused).k(k);
    let opts = step(gpu.clone()).engine_options();
    assert_eq!(opts.precision, Precision::F32);
    assert_eq!(step(gpu.clone()).strategy(n).unwrap().precision, Precision::F32);
    let cpu = Engine::open(&Device::Cpu, EngineOptions { precision: Precision::F32, ..EngineOptions::default() }).unwrap();
    let want = cpu.load_shard(x, d, 0, FlatMetric::L2).unwrap().self_join(k, &NoProgress).unwrap();
    let (got, stats) = Engine::open(&gpu, opts).unwrap().load_shard(x, d, 0, FlatMetric::L2).unwrap().self_join_with_stats(k, &NoProgress).unwrap();
    assert_eq!(got, want);
    eprintln!("f32 at k = {k} on the fused path: {} of {n} rows searched by brute force", stats.brute_force_rows);
    assert_eq!(step(gpu).run(x, d).unwrap(), step(Device::Cpu).run(x, d).unwrap());
}
