#!/usr/bin/env bash
# The CPU kernels side by side on this machine: for each data set, the self-join (through the
# engine, as the step runs it) under several kernel choices, one process per run, the choices in
# turn, REPS rounds (one at 100k rows). Prints the median time, the peak memory (largest), the
# rows the proof left to the f32 re-search and what ran. A choice is FAISS_NN_CPU's cap (native,
# avxvnni, avx2; see src/flat/cpu/features.rs) and a precision:
#   f32@avx2      the f32 path on the AVX2 micro-kernel (a CPU without AVX-512)
#   f32@native    the f32 path on this CPU's best micro-kernel (AVX-512 F where it has it)
#   int8@avxvnni  int8 candidates on AVX-VNNI's 256-bit vpdpbusd (a CPU with AVX-VNNI only)
#   auto@avxvnni  the default on such a CPU
#   auto@native   the default here
# Needs the bench binary and its data: `cargo bench --bench scale -- --cases precision` makes
# both (or `cargo bench --bench scale --no-run` and a first run of this script's cases there).
#   bash scripts/bench-cpu-kernels.sh [REPS] [CHOICES...]
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-3}"
shift || true
choices=("$@")
[ ${#choices[@]} -gt 0 ] || choices=(f32@avx2 f32@native int8@avxvnni auto@avxvnni auto@native)
target="${CARGO_TARGET_DIR:-target}"
bin="$(ls -t "$target"/release/deps/scale-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)"
[ -x "$bin" ] || { echo "no bench binary under $target/release/deps (cargo bench --bench scale --no-run)" >&2; exit 1; }
cases=("target/bench-data/minilm_like_10000.npy:10" "target/bench-data/minilm_like_100000.npy:10"
       "target/bench-data/minilm_like_10000.npy:100" "target/bench-data/normal_20000x384.npy:10")
echo "binary: $bin"
grep -m1 'model name' /proc/cpuinfo || true
printf '| data | k |'; for c in "${choices[@]}"; do printf ' %s |' "$c"; done; echo
printf '|---|---|'; for _ in "${choices[@]}"; do printf -- '---|'; done; echo
for c in "${cases[@]}"; do
  input="${c%%:*}"; k="${c##*:}"
  [ -f "$input" ] || { echo "missing $input (cargo bench --bench scale -- --cases precision writes it)" >&2; continue; }
  r="$reps"; [[ "$input" == *100000* ]] && r=1
  declare -A times=() peak=() again=() ran=()
  for _ in $(seq "$r"); do
    for ch in "${choices[@]}"; do
      prec="${ch%@*}"; cap="${ch#*@}"
      line="$(FAISS_NN_CPU="$cap" "$bin" --precision-child "$input" "$k" 1 "$prec" | grep '^RESULT')"
      read -r _ t mb fb _ ops <<<"$line"
      times[$ch]+="$t "
      peak[$ch]="$(python3 -c "print(max(${peak[$ch]:-0}, $mb))")"
      again[$ch]="$fb"; ran[$ch]="$ops"
    done
  done
  printf '| %s | %s |' "$(basename "$input" .npy)" "$k"
  for ch in "${choices[@]}"; do
    med="$(python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" ${times[$ch]})"
    printf ' %s s, %s MB, %s again (%s) |' "$med" "${peak[$ch]%.*}" "${again[$ch]}" "${ran[$ch]}"
  done
  echo
  unset times peak again ran
done
