#!/usr/bin/env bash
# Everything the GPU issues need measured, in one call on a GPU machine (see .bin from
# scripts/gpu-bins.sh). Through the device tool:
#   run(command="bash scripts/gpu-check.sh", carry=[".bin"], timeout_s=420)
# Steps (STEPS=tests,sanitizer,cli,bench,torch,shards,ncu to pick), in this order: the ignored GPU
# tests; small runs under compute-sanitizer (memcheck; racecheck for the fused kernel); the CLI on
# the demo data with --device 0 against the CPU run (scripts/compare_nn.py); the GPU benchmarks
# (cuBLAS path and fused kernel vs the bare cuBLAS floor); torch matmul + topk on the same cases;
# logical shards; ncu's SpeedOfLight of the hottest kernels.
# BENCHES lists "cases:precisions" groups (default: 200k × 384 in f32 and bf16, 1M × 1024 in
# bf16); REPS the repetitions. BUDGET (seconds, default 400) is the whole script's time: each
# step is cut off (timeout) at what is left of it, so the logs of the steps before come back.
# Logs go to $OUT (or ./gpu-out), at most 8 files (what the device tool brings back): gpu.txt,
# tests.log, sanitizer.log, cli.log, bench.md, torch.txt, ncu.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-out}"
mkdir -p "$out"
steps="${STEPS:-tests,sanitizer,cli,bench,torch,shards,ncu}"
benches="${BENCHES:-200000x384:f32,bf16 1000000x1024:bf16}"
reps="${REPS:-3}"
end=$((SECONDS + ${BUDGET:-400}))
has() { [[ ",$steps," == *",$1,"* ]]; }
# Seconds left for a step: at most $1, at least 1.
left() { local l=$((end - SECONDS)); ((l > $1)) && l=$1; ((l < 1)) && l=1; echo "$l"; }
export FAISS_NN_ROOT="$PWD"
# The binaries from scripts/gpu-bins.sh (Python unpacks them: no xz binary needed there).
bin=/tmp/faiss-nn-bin
mkdir -p "$bin"
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' .bin/gpu-bins.tar.xz "$bin" || exit 1
# cuBLAS for cudarc's dlopen: the toolkit's, else the one in torch's Python environment.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia.cublas, os; print(os.path.join(nvidia.cublas.__path__[0], "lib"))' 2>/dev/null); do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$out/gpu.txt"
status=0
if has tests; then
  echo "== GPU tests"
  # Four at a time: the f64 references run on the CPU (106 s on an H200 machine's 16 cores).
  timeout "$(left 200)" "$bin/tests" --ignored gpu --test-threads 4 >"$out/tests.log" 2>&1 || status=1
  grep -E "^test |test result|panicked|FAILED" "$out/tests.log" | tail -n 40
fi
if has sanitizer; then
  echo "== compute-sanitizer"
  for run in memcheck:gpu::gpu_duplicates_and_self_exclusion memcheck:gpu::gpu_shards_on_one_device_and_device_merge \
             memcheck:gpu::gpu_fused_small_for_sanitizers racecheck:gpu::gpu_fused_small_for_sanitizers; do
    tool="${run%%:*}" t="${run#*:}" log=/tmp/sanitizer.log
    timeout "$(left 60)" compute-sanitizer --tool "$tool" --error-exitcode 9 "$bin/tests" --ignored --exact "$t" >"$log" 2>&1 \
      && echo "$t: $tool clean ($(grep -h 'ERROR SUMMARY' "$log"))" || { echo "$t: $tool FAILED"; tail -n 20 "$log"; status=1; }
    { echo "==== compute-sanitizer --tool $tool $t"; cat "$log"; } >>"$out/sanitizer.log"
  done
fi
if has cli; then
  echo "== CLI on the demo data, --device 0 against the CPU"
  {
    timeout "$(left 60)" "$bin/faiss-nn" --input data/demo.parquet --output /tmp/demo.cpu.parquet --k 10 -q &&
      timeout "$(left 60)" "$bin/faiss-nn" --input data/demo.parquet --output /tmp/demo.gpu.parquet --device 0 --k 10 &&
      timeout "$(left 60)" python3 scripts/compare_nn.py data/demo.parquet /tmp/demo.cpu.parquet /tmp/demo.gpu.parquet &&
      timeout "$(left 60)" "$bin/faiss-nn" --input data/demo.parquet --output /tmp/demo.cpu-ip.parquet --metric ip --k 10 -q &&
      timeout "$(left 60)" "$bin/faiss-nn" --input data/demo.parquet --output /tmp/demo.gpu-ip.parquet --metric ip --device 0 --k 10 -q &&
      timeout "$(left 60)" python3 scripts/compare_nn.py --metric ip data/demo.parquet /tmp/demo.cpu-ip.parquet /tmp/demo.gpu-ip.parquet &&
      timeout "$(left 60)" "$bin/01_gpu_self_knn" 100000 384 10
  } >"$out/cli.log" 2>&1 || status=1
  tail -n 12 "$out/cli.log"
fi
if has bench; then
  echo "== GPU benchmarks"
  for group in $benches; do
    timeout "$(left 200)" "$bin/gpu_knn" cases="${group%%:*}" precisions="${group#*:}" reps="$reps" shards= 2>&1 | tee -a "$out/bench.md" || status=1
  done
fi
if has torch; then
  echo "== torch matmul + topk"
  for group in $benches; do
    PYTHONUNBUFFERED=1 timeout "$(left 120)" python3 benches/torch_knn.py --cases "${group%%:*}" --precisions "${group#*:}" --reps "$reps" 2>&1 | tee -a "$out/torch.txt" || status=1
  done
fi
if has shards; then
  echo "== logical shards"
  timeout "$(left 120)" "$bin/gpu_knn" cases=1000x8 precisions=f32 reps="$reps" shards=1,2,4 2>&1 | sed -n '/shards on GPU/,$p' | tee -a "$out/bench.md" || status=1
fi
if has ncu; then
  # The cuBLAS path's products and select kernels (first launches, in its warm-up search), then
  # the fused kernel's first launch; 50k × 384 bf16 fills the GPU and keeps the replays short.
  echo "== ncu SpeedOfLight (50k × 384 bf16)"
  for kernel in "regex:topk_|nvjet|gemm|xmma|cutlass" regex:fused_knn; do
    timeout "$(left 90)" ncu --clock-control none --section SpeedOfLight --kernel-name "$kernel" --launch-count 3 \
      "$bin/gpu_knn" cases=50000x384 precisions=bf16 reps=1 shards= >>"$out/ncu.txt" 2>&1 || status=1
  done
  grep -E "^  [a-zA-Z_0-9]|Throughput|Duration|SM Frequency" "$out/ncu.txt" | head -n 60
fi
echo "== done in ${SECONDS}s, status $status"
exit $status
