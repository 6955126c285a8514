#!/usr/bin/env bash
# Everything the GPU issues need measured, in one call on a GPU machine (see .bin from
# scripts/gpu-bins.sh). Through the device tool:
#   run(command="bash scripts/gpu-check.sh", carry=[".bin"])
# Steps (STEPS=tests,sanitizer,cli,bench,torch,shards to pick): the ignored GPU tests; small runs
# under compute-sanitizer (memcheck; racecheck for the fused kernel); the CLI on the demo data
# with --device 0; the GPU benchmarks (cuBLAS path and fused kernel vs the bare cuBLAS floor, f32,
# tf32 and bf16); torch matmul + topk; logical shards. CASES, PRECISIONS, REPS narrow the benches.
# Logs go to $OUT (or ./gpu-out) and the tables are printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-out}"
mkdir -p "$out"
steps="${STEPS:-tests,sanitizer,cli,bench,torch,shards}"
has() { [[ ",$steps," == *",$1,"* ]]; }
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
  echo "== GPU tests"; "$bin/tests" --ignored gpu 2>&1 | tee "$out/tests.log" | tail -n 25 || status=1
fi
if has sanitizer; then
  echo "== compute-sanitizer memcheck"
  for run in memcheck:gpu::gpu_duplicates_and_self_exclusion memcheck:gpu::gpu_shards_on_one_device_and_device_merge \
             memcheck:gpu::gpu_fused_small_for_sanitizers racecheck:gpu::gpu_fused_small_for_sanitizers; do
    tool="${run%%:*}" t="${run#*:}"
    compute-sanitizer --tool "$tool" --error-exitcode 9 "$bin/tests" --ignored --exact "$t" >"$out/sanitizer-$tool.log" 2>&1 \
      && echo "$t: $tool clean" || { echo "$t: $tool FAILED"; tail -n 30 "$out/sanitizer-$tool.log"; status=1; }
  done
fi
if has cli; then
  echo "== CLI on the demo data, --device 0"
  "$bin/faiss-nn" --input data/demo.parquet --output /tmp/demo.nn.parquet --device 0 --k 10 2>&1 | tail -n 3 || status=1
  "$bin/01_gpu_self_knn" 100000 384 10 2>&1 | tail -n 5 || status=1
fi
if has bench || has shards; then
  echo "== GPU benchmarks"
  shards=""; has shards && shards="1,2,4"
  cases="${CASES:-200000x384,1000000x1024}"; has bench || cases="1000x8"
  "$bin/gpu_knn" cases="$cases" precisions="${PRECISIONS:-f32,tf32,bf16}" reps="${REPS:-3}" shards="$shards" 2>&1 | tee "$out/bench.md" || status=1
fi
if has torch; then
  echo "== torch matmul + topk"
  python3 benches/torch_knn.py --cases "${CASES:-200000x384,1000000x1024}" --precisions "${PRECISIONS:-f32,tf32,bf16}" 2>&1 | tee "$out/torch.txt" || status=1
fi
exit $status
