"""Parity with faiss-cpu's IndexFlat on the real PyPI MiniLM embeddings, tie-aware.

faiss computes its scores in float32 (L2 as ‖x‖² + ‖y‖² − 2⟨x, y⟩), ours are exact (re-scored in
float64, then rounded to float32). On these unit-norm 384-d rows faiss's rounding error stays
below 1e-6; the tolerance below, 1e-5 (about 80 float32 ulps at 1.0), leaves room for it and
nothing more: a wrong neighbour differs by far more on these data.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

import faiss_nn
from conftest import assert_tie_aware, exact_scores

K = 10
TOL = 1e-5


def faiss_self_knn(x: np.ndarray, k: int, metric: str):
    """faiss's flat search for k + 1, then each row removed from its own list *by index*
    (the last hit dropped where the row itself is not among them)."""
    index = faiss.IndexFlatL2(x.shape[1]) if metric == "l2" else faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    dist, lab = index.search(x, k + 1)
    own = lab == np.arange(len(x))[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(own)
    keep[np.arange(len(x)), drop] = False
    return lab[keep].reshape(len(x), k), dist[keep].reshape(len(x), k), lab, dist


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_self_knn_matches_faiss_tie_aware(minilm, metric):
    name, x = minilm
    ours_i, ours_s = faiss_nn.self_knn(x, k=K, metric=metric)
    ref_i, ref_s, _, _ = faiss_self_knn(x, K, metric)
    assert ours_i.shape == (len(x), K) and ours_i.dtype == np.int64
    assert ours_s.shape == (len(x), K) and ours_s.dtype == np.float32
    assert_tie_aware(ours_i, ours_s, ref_i, ref_s, TOL, f"{name} {metric}")
    # No row lists itself, and no list holds a row twice.
    assert not (ours_i == np.arange(len(x))[:, None]).any()
    srt = np.sort(ours_i, axis=1)
    assert not (srt[:, 1:] == srt[:, :-1]).any()
    # Our scores are the exact scores of the rows we list (float64 rounded to float32).
    exact = exact_scores(x, x, ours_i, metric)
    assert np.abs(exact - ours_s).max() <= 1e-6
    # ... best first, ties by the lower index.
    key = exact if metric == "l2" else -exact
    assert (np.diff(key, axis=1) >= -1e-6).all()


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_rows_faiss_does_not_rank_first_are_never_their_own_neighbour(dups, metric):
    """Identical embeddings: faiss ranks a twin before the row itself for one row of each of the
    four duplicate pairs, so "search k + 1, drop the first hit" keeps the row in its own list.
    Ours excludes by index: the twin comes first, at the exact score, and the row never."""
    name, x, original = dups
    _, _, lab, dist = faiss_self_knn(x, K, metric)
    misranked = np.flatnonzero(lab[:, 0] != np.arange(len(x)))
    if name == "minilm-10k":
        expected = [3459, 6479, 6694, 7632] if metric == "l2" else [37, 591, 1913, 3080]
        assert misranked.tolist() == expected
    else:
        assert len(misranked) == 4, original[misranked]
    # What the original step returns for those rows: the row itself among its neighbours.
    dropped_first = lab[misranked, 1:]
    assert (dropped_first == misranked[:, None]).any(axis=1).all()

    ours_i, ours_s = faiss_nn.self_knn(x, k=K, metric=metric)
    assert not (ours_i[misranked] == misranked[:, None]).any()
    for row in misranked:
        twin = lab[row, 0]
        assert np.array_equal(x[row], x[twin]), "the pair is an exact duplicate"
        assert ours_i[row, 0] == twin
        self_score = float(np.dot(x[row].astype(np.float64), x[row].astype(np.float64)))
        assert ours_s[row, 0] == (0.0 if metric == "l2" else np.float32(self_score))
