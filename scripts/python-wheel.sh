#!/usr/bin/env bash
# Builds the Python package (python/: the PyO3 extension and the faiss_nn sources) into one abi3
# wheel in python/dist and installs it into this Python. The wheel carries the CUDA kernels and
# loads the driver at run time, so it also runs on machines without CUDA.
set -euo pipefail
cd "$(dirname "$0")/../python"
rm -f dist/faiss_nn-*.whl
python3 -m maturin build --release -o dist
python3 -m pip install -q --disable-pip-version-check --force-reinstall --no-deps dist/faiss_nn-*.whl
