#!/usr/bin/env bash
# Exact against approximate (unproven) reduced-precision lists on this CPU, side by side: each
# case runs f32, int8 and int8 --approximate in turn, REPS rounds, and reports the median wall
# time of each and the recall@k of the approximate lists against the exact ones (checking that
# the exact int8 lists equal the f32 lists). Needs target/release/faiss-nn (cargo build
# --release) and the bench data (`cargo bench --bench scale -- --cases precision` writes it).
#   bash scripts/bench-approximate.sh [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-3}"
bin=target/release/faiss-nn
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cases=("../shared/data/pypi-minilm-10k.parquet:10" "../shared/data/pypi-minilm-10k.parquet:100" "target/bench-data/normal_20000x384.npy:10")
echo "| input | k | f32 | int8 (exact) | int8 --approximate | f32 / approximate | exact / approximate | recall@k of approximate |"
echo "|---|---|---|---|---|---|---|---|"
for c in "${cases[@]}"; do
  input="${c%%:*}"; k="${c##*:}"
  [ -f "$input" ] || { echo "missing $input" >&2; continue; }
  declare -A times=()
  for r in $(seq "$reps"); do
    for mode in f32 int8 approx; do
      case "$mode" in
        f32) extra=(--precision f32) ;;
        int8) extra=(--precision int8) ;;
        approx) extra=(--precision int8 --approximate) ;;
      esac
      t0=$(date +%s%N)
      "$bin" --input "$input" --k "$k" --metric l2 --output "$tmp/$mode.parquet" --quiet "${extra[@]}"
      t1=$(date +%s%N)
      times[$mode]+="$((t1 - t0)) "
    done
  done
  python3 - "$input" "$k" "$tmp" "${times[f32]}" "${times[int8]}" "${times[approx]}" <<'PY'
import sys, statistics, pyarrow.parquet as pq
inp, k, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
med = [statistics.median(int(t) / 1e9 for t in s.split()) for s in sys.argv[4:7]]
exact = pq.read_table(f"{tmp}/int8.parquet", columns=["nn_indices"]).column(0).to_pylist()
f32 = pq.read_table(f"{tmp}/f32.parquet", columns=["nn_indices"]).column(0).to_pylist()
assert exact == f32, "exact int8 lists must equal the f32 lists"
approx = pq.read_table(f"{tmp}/approx.parquet", columns=["nn_indices"]).column(0).to_pylist()
hits = sum(len(set(a) & set(b)) for a, b in zip(approx, exact))
name = inp.rsplit("/", 1)[-1]
print(f"| {name} | {k} | {med[0]:.3f} s | {med[1]:.3f} s | {med[2]:.3f} s | {med[0]/med[2]:.2f}× | {med[1]/med[2]:.2f}× | {hits / (len(exact) * k):.5f} |")
PY
done
