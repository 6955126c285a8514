#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, everything scripts/gpu-check.sh runs on a GPU machine, as
# .bin/gpu-bins.tar.xz (ignored by git; carry .bin to the device machine). The GPU machine has no
# Rust toolchain and no OpenBLAS, so these binaries are built without the faiss feature (with the
# cli feature: the command-line tool and its tests). Each
# embeds ~30 MB of kernels, so they travel stripped and compressed (the carry limit is 64 MiB).
#   bash scripts/gpu-bins.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
export FAISS_NN_REQUIRE_KERNELS=1
feat=(--no-default-features --features cuda,cli)
rm -rf .bin && mkdir -p .bin/stage
# The executable cargo reports for the target of kind $1 (not the binaries built beside it).
exe() {
  python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and sys.argv[1] in m["target"]["kind"]:
        print(m["executable"])' "$1" | tail -n 1
}
# Stripped of debug info: the device tool carries at most 64 MiB.
put() {
  [ -n "$1" ] || { echo "gpu-bins: $2 did not build; run: cargo build --release ${feat[*]} --all-targets" >&2; exit 1; }
  strip -o ".bin/stage/$2" "$1"
}
put "$(cargo test --release "${feat[@]}" --test lib --no-run --message-format=json 2>/dev/null | exe test)" tests
put "$(cargo bench "${feat[@]}" --bench gpu_knn --no-run --message-format=json 2>/dev/null | exe bench)" gpu_knn
cargo build --release "${feat[@]}" --bin faiss-nn --example 01_gpu_self_knn -q
put target/release/faiss-nn faiss-nn
put target/release/examples/01_gpu_self_knn 01_gpu_self_knn
tar -cf - -C .bin/stage . | xz -T0 -6 > .bin/gpu-bins.tar.xz
rm -rf .bin/stage
ls -la .bin
