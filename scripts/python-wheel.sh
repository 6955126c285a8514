#!/usr/bin/env bash
# Builds the Python package (python/: the PyO3 extension and the faiss_nn sources) into one abi3
# wheel in python/dist and installs it into this Python. The wheel carries the CUDA kernels and
# loads the driver at run time, so it also runs on machines without CUDA.
#
# FAISS_NN_WHEEL_PROFILE picks the cargo profile (default release, the wheel to ship).
# scripts/test.sh builds its wheel under the dev profile, which python/Cargo.toml optimises like
# the main crate's test profile: it then reuses the compiled faiss (and the other dependencies)
# of `cargo test` instead of building them again.
set -euo pipefail
cd "$(dirname "$0")/../python"
profile="${FAISS_NN_WHEEL_PROFILE:-release}"
rm -f dist/faiss_nn-*.whl
# maturin copies the extension by hard link and then rewrites that copy in place (to bundle
# OpenBLAS), so cargo's own file is rewritten too; a second build with nothing to recompile would
# hand maturin that already rewritten file, and it fails ("Cannot repair wheel"). Removing both
# links makes cargo link the extension again (the crates stay compiled).
target="${CARGO_TARGET_DIR:-target}"
case "$profile" in dev) dir=debug ;; *) dir="$profile" ;; esac
rm -f "$target/$dir/deps/lib_faiss_nn.so" "$target/$dir/lib_faiss_nn.so" "$target/maturin/lib_faiss_nn.so"
python3 -m maturin build --profile "$profile" -o dist
python3 -m pip install -q --disable-pip-version-check --force-reinstall --no-deps dist/faiss_nn-*.whl
