"""Writes an exact index in faiss's own file format, so that ``faiss.read_index`` loads it.

The distilabel step saves the index it searched as an artifact (``faiss_index/index.faiss``), as
distilabel's own step does; for flat L2 / inner-product search that index is an ``IndexFlat``
holding the rows, which this module writes without needing faiss.
"""

from __future__ import annotations

import os
import struct
from typing import Union

import numpy as np

# faiss's IndexFlat file: a fourcc, the index header (d: int32, ntotal: int64, two reserved
# int64 words, is_trained: bool, metric_type: int32, and for metrics above 1 metric_arg:
# float32), then the codes as a vector of 4-byte words (count: uint64, then the float32 rows).
# IndexFlatIP and IndexFlatL2 have their own fourcc; a flat index of any other metric is "IxFl".
_FOURCC = {0: b"IxFI", 1: b"IxF2", 2: b"IxFl", 3: b"IxFl", 20: b"IxFl", 21: b"IxFl", 22: b"IxFl"}
# faiss's METRIC_* integers a flat index file is written for.
FLAT_INDEX_METRICS = tuple(_FOURCC)
_RESERVED = 1 << 20


def write_flat_index(path: Union[str, os.PathLike], x: np.ndarray, metric_type: int) -> None:
    """Writes ``x`` (C-contiguous float32 ``n × d``) as a faiss ``IndexFlatL2`` (metric 1),
    ``IndexFlatIP`` (metric 0) or ``IndexFlat`` of metric 2, 3, 20, 21 or 22 (L1, Linf,
    Canberra, BrayCurtis, JensenShannon) file at ``path``, through a temporary file and a
    rename."""
    if metric_type not in _FOURCC:
        raise ValueError(f"a flat index file holds metric 0, 1, 2, 3, 20, 21 or 22, not {metric_type}")
    if x.dtype != np.float32 or x.ndim != 2 or not x.flags.c_contiguous:
        raise ValueError("write_flat_index needs a C-contiguous float32 matrix")
    n, d = x.shape
    header = _FOURCC[metric_type] + struct.pack(
        "<iqqq?i", d, n, _RESERVED, _RESERVED, True, metric_type
    )
    if metric_type > 1:
        header += struct.pack("<f", 0.0)  # metric_arg, unused by these metrics
    header += struct.pack("<Q", n * d)
    tmp = f"{os.fspath(path)}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(memoryview(x).cast("B"))  # the rows as they are: no copy
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
