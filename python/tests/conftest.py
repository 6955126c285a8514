"""Shared fixtures: the data sets the tests run on, and reference helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEMO = REPO / "data" / "demo.parquet"  # 3,000 PyPI MiniLM rows bundled with the repository
SMALL = REPO / "tests" / "data" / "small.parquet"  # 200 rows
# 400 rows of the 10k PyPI MiniLM set (original row numbers in column "row"), holding its four
# pairs of identical embeddings and their neighbourhoods.
DUPS = HERE / "data" / "minilm_dups.parquet"
# The full 10,000-row set, when available: FAISS_NN_MINILM_10K=/path/to/pypi-minilm-10k.parquet
FULL_ENV = "FAISS_NN_MINILM_10K"


def full_minilm_path() -> Path | None:
    p = os.environ.get(FULL_ENV)
    if not p:
        return None
    path = Path(p)
    if not path.is_file():
        raise FileNotFoundError(f"{FULL_ENV}={p} does not name a file")
    return path


def pytest_report_header(config):
    full = full_minilm_path()
    if full:
        return f"faiss_nn parity data: the full MiniLM set {full}"
    return (
        f"faiss_nn parity data: {FULL_ENV} is not set, so the parity tests run on the bundled "
        f"{DEMO.relative_to(REPO)} (3,000 rows) and {DUPS.relative_to(REPO)} (400 rows with the "
        "four duplicate pairs) instead of the full 10,000 rows"
    )


def read_embeddings(path: Path, column: str = "embedding"):
    table = pq.read_table(path)
    col = table.column(column).combine_chunks()
    x = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return np.ascontiguousarray(x.reshape(table.num_rows, -1)), table


@pytest.fixture(scope="session")
def minilm():
    """(name, x): the full 10k set if FAISS_NN_MINILM_10K names it, else the 3k demo rows."""
    full = full_minilm_path()
    path = full or DEMO
    x, _ = read_embeddings(path)
    return ("minilm-10k" if full else "demo-3k"), x


@pytest.fixture(scope="session")
def dups():
    """(name, x, original_rows) for the duplicate-pair test: the full set or the shipped subset."""
    full = full_minilm_path()
    if full:
        x, _ = read_embeddings(full)
        return "minilm-10k", x, np.arange(len(x))
    x, table = read_embeddings(DUPS)
    return "minilm-dups-400", x, table.column("row").to_numpy()


def exact_scores(x: np.ndarray, queries: np.ndarray, labels: np.ndarray, metric: str) -> np.ndarray:
    """The f64 score of every (query, label) pair; NaN where the label is -1."""
    xd = x.astype(np.float64)
    qd = queries.astype(np.float64)
    out = np.full(labels.shape, np.nan)
    for start in range(0, len(qd), 1024):
        lab = labels[start : start + 1024]
        ok = lab >= 0
        rows = xd[np.where(ok, lab, 0)]
        q = qd[start : start + 1024, None, :]
        if metric == "l2":
            s = ((rows - q) ** 2).sum(-1)
        else:
            s = (rows * q).sum(-1)
        out[start : start + 1024] = np.where(ok, s, np.nan)
    return out


def brute_force(x: np.ndarray, k: int, metric: str, exclude_self: bool = True, queries=None):
    """Reference k-NN in f64, ties broken by the lower index: (indices, scores)."""
    xd = x.astype(np.float64)
    q = xd if queries is None else queries.astype(np.float64)
    if metric == "l2":
        key = (q * q).sum(1)[:, None] + (xd * xd).sum(1)[None, :] - 2 * q @ xd.T
        key = np.maximum(key, 0)
    else:
        key = -(q @ xd.T)
    if exclude_self:
        np.fill_diagonal(key, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(len(xd)), key.shape), key), axis=1)[:, :k]
    scores = np.take_along_axis(key, order, 1)
    return order.astype(np.int64), (scores if metric == "l2" else -scores)


def assert_tie_aware(ours_i, ours_s, ref_i, ref_s, tol, what=""):
    """Scores within ``tol`` position by position; indices equal as sets inside each group of
    equal reference score (a group that reaches the end of the list may be cut differently)."""
    assert ours_i.shape == ref_i.shape, (ours_i.shape, ref_i.shape)
    diff = np.abs(ours_s.astype(np.float64) - ref_s.astype(np.float64))
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    assert diff.max() <= tol, (
        f"{what}: score differs by {diff.max():.3g} > {tol:g} at row {worst[0]}, position {worst[1]}: "
        f"ours {ours_s[worst]!r} ({ours_i[worst]}), reference {ref_s[worst]!r} ({ref_i[worst]})"
    )
    n, k = ref_i.shape
    # A new group starts where the reference score moves by more than tol.
    breaks = np.abs(np.diff(ref_s.astype(np.float64), axis=1)) > tol
    same = ours_i == ref_i
    for row in np.flatnonzero(~same.all(axis=1)):
        start = 0
        for p in range(1, k + 1):
            if p == k or breaks[row, p - 1]:
                if p < k:  # a whole group: the same members
                    a, b = set(ours_i[row, start:p].tolist()), set(ref_i[row, start:p].tolist())
                    assert a == b, (
                        f"{what}: row {row}, positions {start}..{p} (score {ref_s[row, start]!r}): "
                        f"ours {sorted(a)}, reference {sorted(b)}"
                    )
                start = p
