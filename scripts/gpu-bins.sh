#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, everything scripts/gpu-check.sh runs on a GPU machine, into
# .bin/ (ignored by git; carry it to the device machine). The GPU machine has no Rust toolchain
# and no OpenBLAS, so these binaries are built without the faiss feature.
#   bash scripts/gpu-bins.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
export FAISS_NN_REQUIRE_KERNELS=1
feat=(--no-default-features --features cuda)
mkdir -p .bin
# The first executable line cargo reports for each target is the one it built.
exe() { grep -o '"executable":"[^"]*"' | sed 's/"executable":"//; s/"$//' | grep -v '^null$' | head -n 1; }
cp "$(cargo test --release "${feat[@]}" --test lib --no-run --message-format=json 2>/dev/null | exe)" .bin/tests
cp "$(cargo bench "${feat[@]}" --bench gpu_knn --no-run --message-format=json 2>/dev/null | exe)" .bin/gpu_knn
cargo build --release "${feat[@]}" --bin faiss-nn --example 01_gpu_self_knn -q
cp target/release/faiss-nn .bin/faiss-nn
cp target/release/examples/01_gpu_self_knn .bin/01_gpu_self_knn
ls -la .bin
