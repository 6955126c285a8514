//! The CPU self-kNN across n and k, ours against the faiss-cpu wheel in the same run, with time
//! and peak memory per case: `cargo bench --bench scale` (add `-- --cases k` or `-- --cases n`,
//! `-- --reps 3`, `-- --no-wheel`). Writes the table to stdout and `target/bench-scale.md`.
//! `-- --cases rescore` instead measures what k = 1000 costs beyond k = 10 on the 10k rows (see
//! [`rescore_budget`]). `-- --cases precision` compares the default precision (`Auto`: int8
//! or bf16 candidates where the CPU and the data allow) with the f32 path, with itself on the
//! AVX2 kernels only, and with the wheel, with the share of rows the reduced candidates proved
//! (see [`precision_cases`]).
//!
//! Data: the real 10,000 × 384 MiniLM rows (`../shared/data/pypi-minilm-10k.parquet`, else the
//! bundled 3,000-row demo) and *MiniLM-like* sets of n rows made from them: row i is real row
//! i mod 10,000 plus Gaussian noise of norm about 0.1, normalised to unit length (MiniLM
//! embeddings are unit vectors), seeded. Each set is written once to `target/bench-data/*.npy` so
//! that the wheel reads the very same rows.
//!
//! Each case runs in a child process (this binary again), so that its peak resident memory
//! (VmHWM) is its own: ours is the step (`FaissNearestNeighbour::run`: checks, the symmetric
//! self-join, the exact re-scoring); the wheel is `IndexFlatL2` searched with every row for
//! k + 1, as the original step searches (`benches/faiss_python.py`, median of the same number of
//! runs, after an untimed warm-up of the index on a subset).

use faiss_nn::FaissNearestNeighbour;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn real_rows() -> (Vec<f32>, usize) {
    let full = root().join("../shared/data/pypi-minilm-10k.parquet");
    let path = if full.exists() { full } else { root().join("data/demo.parquet") };
    let ds = faiss_nn::io::read_embeddings(&path, "embedding").expect("bench data");
    (ds.embeddings.to_vec(), ds.d)
}

/// Uniform values in [0, 1) from a seeded xorshift64* generator.
fn uniform_stream(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed;
    move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` MiniLM-like rows (see the module doc).
fn minilm_like(n: usize) -> (Vec<f32>, usize) {
    let (real, d) = real_rows();
    let m = real.len() / d;
    if n <= m {
        return (real[..n * d].to_vec(), d);
    }
    let mut uniform = uniform_stream(0x9E37_79B9_7F4A_7C15u64 ^ n as u64);
    let sigma = 0.1 / (d as f64).sqrt();
    let mut out = Vec::with_capacity(n * d);
    for i in 0..n {
        let base = &real[(i % m) * d..(i % m + 1) * d];
        let row: Vec<f64> = base
            .iter()
            .map(|v| {
                let g = (-2.0 * uniform().max(1e-300).ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform()).cos();
                if i < m {
                    *v as f64
                } else {
                    *v as f64 + sigma * g
                }
            })
            .collect();
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        out.extend(row.iter().map(|v| (v / norm) as f32));
    }
    (out, d)
}

fn write_npy(path: &Path, x: &[f32], d: usize) {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {d}), }}", x.len() / d);
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    for v in x {
        bytes.extend(v.to_le_bytes());
    }
    std::fs::write(path, bytes).expect("write bench data");
}

/// The data file of `n` rows, made once.
fn data_file(n: usize) -> PathBuf {
    let dir = root().join("target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench data dir");
    let path = dir.join(format!("minilm_like_{n}.npy"));
    if !path.exists() {
        let (x, d) = minilm_like(n);
        write_npy(&path, &x, d);
    }
    path
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The precision child: times the self-join of one data file at `precision` through the engine
/// (what the step runs), prints `RESULT <median s> <peak MB> <rows searched again in f32> <rows>
/// <operands planned>`.
fn precision_child(path: &str, k: usize, reps: usize, precision: &str) {
    use faiss_nn::engine::{Engine, EngineOptions};
    let ds = faiss_nn::io::read_embeddings(Path::new(path), "embedding").expect("read bench data");
    let precision: faiss_nn::Precision = precision.parse().expect("a precision");
    let mut times = Vec::with_capacity(reps);
    let mut fallback = 0;
    let mut ops = String::new();
    for _ in 0..reps {
        let t = Instant::now();
        let engine = Engine::open(&faiss_nn::Device::Cpu, EngineOptions { precision, ..EngineOptions::default() }).expect("engine");
        let shard = engine.load_shard(&ds.embeddings, ds.d, 0, faiss_nn::FlatMetric::L2).expect("load");
        let (lists, stats) = shard.self_join_with_stats(k, &faiss_nn::NoProgress).expect("self-kNN");
        times.push(t.elapsed().as_secs_f64());
        fallback = stats.fallback_rows;
        std::hint::black_box(lists);
        // The plan is cached per shard: this reads what the join ran.
        ops = format!("{:?}", shard.planned_operands(k)).to_lowercase();
    }
    times.sort_by(f64::total_cmp);
    println!("RESULT {} {} {fallback} {} {ops}", times[times.len() / 2], peak_rss_mb(), ds.n);
}

/// `n × d` standard normal rows (seeded), the hard case of bf16 proofs: every row's scores are
/// packed together.
fn normal_file(n: usize, d: usize) -> PathBuf {
    let dir = root().join("target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench data dir");
    let path = dir.join(format!("normal_{n}x{d}.npy"));
    if !path.exists() {
        let mut uniform = uniform_stream(0x2545_F491_4F6C_DD1Du64 ^ n as u64);
        let x: Vec<f32> = (0..n * d).map(|_| ((-2.0 * uniform().max(1e-300).ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform()).cos()) as f32).collect();
        write_npy(&path, &x, d);
    }
    path
}

/// `--cases precision`: on each data set, the default (`auto`), `f32`, and `auto` with the
/// AVX-512 kernels switched off (`FAISS_NN_CPU=avx2`, a CPU without AVX-512) children
/// alternately (`reps` each, in their own processes: peak memory is each one's), and the wheel.
fn precision_cases(reps: usize, wheel: bool) {
    let run = |path: &Path, k: usize, precision: &str, cap: Option<&str>| -> (f64, f64, f64, String) {
        let mut cmd = Command::new(std::env::current_exe().expect("this binary"));
        cmd.args(["--precision-child", &path.to_string_lossy(), &k.to_string(), "1", precision]);
        if let Some(c) = cap {
            cmd.env("FAISS_NN_CPU", c);
        }
        let out = cmd.output().expect("run the child");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with("RESULT")).unwrap_or_else(|| panic!("child failed: {}", String::from_utf8_lossy(&out.stderr)));
        let f: Vec<&str> = line.split_whitespace().skip(1).collect();
        let v: Vec<f64> = f[..4].iter().map(|s| s.parse().expect("a number")).collect();
        (v[0], v[1], 1.0 - v[2] / v[3], f[4].to_string())
    };
    let cases: Vec<(String, PathBuf, usize)> = vec![
        ("MiniLM 10k".into(), data_file(10_000), 10),
        ("MiniLM-like 100k".into(), data_file(100_000), 10),
        ("MiniLM 10k".into(), data_file(10_000), 100),
        ("MiniLM 10k".into(), data_file(10_000), 1000),
        ("normal 20k × 384".into(), normal_file(20_000, 384), 10),
    ];
    println!("| rows | k | auto (runs) | f32 | f32 / auto | rows proven by the first pass | no AVX-512: auto (runs) | f32 / that | wheel | wheel / auto | auto peak | f32 peak |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, path, k) in cases {
        let r = if name.contains("100k") { 1 } else { reps };
        let (mut auto, mut f32t, mut plain, mut settled, mut peaks) = (Vec::new(), Vec::new(), Vec::new(), 1.0, (0.0f64, 0.0f64));
        let (mut ran, mut ran_plain) = (String::new(), String::new());
        for _ in 0..r {
            let (t, mb, s, ops) = run(&path, k, "auto", None);
            auto.push(t);
            (settled, ran) = (s, ops);
            peaks.0 = peaks.0.max(mb);
            let (t, mb, _, _) = run(&path, k, "f32", None);
            f32t.push(t);
            peaks.1 = peaks.1.max(mb);
            let (t, _, _, ops) = run(&path, k, "auto", Some("avx2"));
            plain.push(t);
            ran_plain = ops;
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (a, f, p) = (median(&mut auto), median(&mut f32t), median(&mut plain));
        let w = if wheel { run_wheel(&path, k, r).map(|(t, _)| t) } else { None };
        let (wt, wr) = match w {
            Some(t) => (format!("{t:.3} s"), format!("**{:.2}×**", t / a)),
            None => ("—".into(), "—".into()),
        };
        println!(
            "| {name} | {k} | {a:.3} s ({ran}) | {f:.3} s | **{:.2}×** | {:.2} % | {p:.3} s ({ran_plain}) | {:.2}× | {wt} | {wr} | {:.0} MB | {:.0} MB |",
            f / a,
            settled * 100.0,
            f / p,
            peaks.0,
            peaks.1
        );
    }
}

/// The child: times the step on one data file, prints `RESULT <median s> <peak MB>`.
fn child(path: &str, k: usize, reps: usize) {
    let ds = faiss_nn::io::read_embeddings(Path::new(path), "embedding").expect("read bench data");
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        let nn = FaissNearestNeighbour::new().k(k).run(&ds.embeddings, ds.d).expect("self-kNN");
        times.push(t.elapsed().as_secs_f64());
        std::hint::black_box(nn);
    }
    times.sort_by(f64::total_cmp);
    println!("RESULT {} {}", times[times.len() / 2], peak_rss_mb());
}

fn run_ours(path: &Path, k: usize, reps: usize) -> (f64, f64) {
    let out = Command::new(std::env::current_exe().expect("this binary"))
        .args(["--child", &path.to_string_lossy(), &k.to_string(), &reps.to_string()])
        .output()
        .expect("run the child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("RESULT")).unwrap_or_else(|| panic!("child failed: {}", String::from_utf8_lossy(&out.stderr)));
    let v: Vec<f64> = line.split_whitespace().skip(1).map(|s| s.parse().expect("a number")).collect();
    (v[0], v[1])
}

fn run_wheel(path: &Path, k: usize, reps: usize) -> Option<(f64, f64)> {
    let script = root().join("benches/faiss_python.py");
    let out = Command::new("python3").arg(script).args(["--npy", &path.to_string_lossy(), "--k", &k.to_string(), "--reps", &reps.to_string()]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("RESULT"))?;
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|s| s.parse().ok()).collect();
    (v.len() == 2).then(|| (v[0], v[1]))
}

/// `--cases rescore`: the step at k = 10 and k = 1000 on the real rows (alternating, in this
/// process, median of `reps`), the pairs the k = 1000 lists hold and how many distinct unordered
/// pairs they are (a pair listed by both of its rows needs its exact key once at best), and the
/// f64 re-scoring kernel's time per pair: with both rows in L1 (its floor) and in the re-scoring's
/// own pattern (64 query rows, their k = 1000 candidates visited in database order).
fn rescore_budget(reps: usize) {
    use faiss_nn::engine::exact::l2_pair_kernel;
    let (rows, d) = real_rows();
    let n = rows.len() / d;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let step = |k: usize| {
        let t = Instant::now();
        let nn = FaissNearestNeighbour::new().k(k).run(&rows, d).expect("self-kNN");
        (t.elapsed().as_secs_f64(), nn)
    };
    let (mut t10, mut t1000, mut lists) = (Vec::new(), Vec::new(), None);
    for _ in 0..reps.max(1) {
        t10.push(step(10).0);
        let (t, nn) = step(1000);
        t1000.push(t);
        lists = Some(nn);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (t10, t1000) = (median(&mut t10), median(&mut t1000));
    let nn = lists.expect("at least one run");
    let mut pairs: Vec<u64> =
        (0..n).flat_map(|i| nn.indices_of(i).iter().map(move |&j| ((i.min(j as usize) as u64) << 32) | i.max(j as usize) as u64)).collect();
    let listed = pairs.len();
    pairs.sort_unstable();
    pairs.dedup();
    let distinct = pairs.len();

    let q64: Vec<f64> = rows[..64 * d].iter().map(|&v| v as f64).collect();
    let per_pair = |pairs: &[(usize, usize)], rounds: usize| {
        let t = Instant::now();
        let mut acc = 0.0;
        for _ in 0..rounds {
            for &(j, g) in pairs {
                acc += l2_pair_kernel(&q64[g * d..(g + 1) * d], &rows[j * d..(j + 1) * d]);
            }
        }
        std::hint::black_box(acc);
        t.elapsed().as_secs_f64() / (rounds * pairs.len()) as f64
    };
    let in_l1: Vec<(usize, usize)> = (0..4096).map(|p| (0, p % 4)).collect();
    let mut pattern: Vec<(usize, usize)> = (0..64).flat_map(|g| nn.indices_of(g).iter().map(move |&j| (j as usize, g))).collect();
    pattern.sort_unstable();
    let (l1, pat) = (per_pair(&in_l1, 500), per_pair(&pattern, 30));
    let floor = distinct as f64 * l1 / threads as f64;
    println!("| k = 10 | k = 1000 | k = 1000 / k = 10 | listed pairs | distinct pairs | kernel, rows in L1 | kernel, re-scoring pattern |");
    println!("|---|---|---|---|---|---|---|");
    println!("| {t10:.3} s | {t1000:.3} s | {:.2}× | {listed} | {distinct} | {:.1} ns | {:.1} ns |", t1000 / t10, l1 * 1e9, pat * 1e9);
    println!(
        "\nk = 1000 within 2.5× of k = 10 leaves {:.3} s beyond the k = 10 run; the distinct pairs' exact keys alone, at the L1 kernel time on {threads} threads, take {floor:.3} s.",
        1.5 * t10
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], args[i + 2].parse().expect("k"), args[i + 3].parse().expect("reps"));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--precision-child") {
        precision_child(&args[i + 1], args[i + 2].parse().expect("k"), args[i + 3].parse().expect("reps"), &args[i + 4]);
        return;
    }
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let cases = value("--cases").unwrap_or_else(|| "k,n".into());
    let reps: usize = value("--reps").and_then(|r| r.parse().ok()).unwrap_or(3);
    let wheel = !args.iter().any(|a| a == "--no-wheel");
    if cases == "rescore" {
        rescore_budget(reps);
        return;
    }
    if cases == "precision" {
        precision_cases(reps, wheel);
        return;
    }

    let mut plan: Vec<(usize, usize)> = Vec::new();
    if cases.split(',').any(|c| c == "k") {
        plan.extend([10, 100, 1000, 4096].map(|k| (10_000, k)));
    }
    if cases.split(',').any(|c| c == "n") {
        plan.extend([20_000, 50_000, 100_000, 200_000].map(|n| (n, 10)));
    }
    let mut table =
        String::from("| rows × 384 | k | ours | ours peak RSS | faiss-cpu wheel | wheel peak RSS | wheel / ours |\n|---|---|---|---|---|---|---|\n");
    for (n, k) in plan {
        let path = data_file(n);
        // One run each above 50k rows: those take minutes.
        let r = if n > 50_000 { 1 } else { reps };
        let (ours, ours_mb) = run_ours(&path, k, r);
        let theirs = if wheel { run_wheel(&path, k, r) } else { None };
        let (w, w_mb, ratio) = match theirs {
            Some((t, mb)) => (format!("{:.3} s", t), format!("{mb:.0} MB"), format!("**{:.2}×**", t / ours)),
            None => ("—".into(), "—".into(), "—".into()),
        };
        let line = format!("| {n} | {k} | {ours:.3} s | {ours_mb:.0} MB | {w} | {w_mb} | {ratio} |\n");
        print!("{line}");
        table.push_str(&line);
    }
    let out = root().join("target/bench-scale.md");
    std::fs::write(&out, &table).expect("write the table");
    println!("\n{table}(written to {})", out.display());
}
