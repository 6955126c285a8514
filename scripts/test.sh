#!/usr/bin/env bash
# The tests: the Rust crate's (unit and integration tests, the kernels' CPU emulation), then the
# Python package's (built into a wheel from python/, installed, and tested with pytest, which
# includes distilabel pipelines and local Ray clusters). Run after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --features cuda
# The wheel under the dev profile, optimised (python/Cargo.toml): the same faiss and kernels the
# Rust tests were built with (scripts/python-wheel.sh).
FAISS_NN_WHEEL_PROFILE=dev bash scripts/python-wheel.sh
# From the repository root, so that `import faiss_nn` (also in Ray's worker processes, which
# start in this directory) finds the installed package, not the python/ source folder.
# The parity tests use the full 10k MiniLM set where it sits beside the checkout (else the
# bundled rows; the test header says which).
full="../shared/data/pypi-minilm-10k.parquet"
if [ -z "${FAISS_NN_MINILM_10K:-}" ] && [ -f "$full" ]; then export FAISS_NN_MINILM_10K="$PWD/$full"; fi
python3 -m pytest -q -p no:cacheprovider python/tests
