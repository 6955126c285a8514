"""faiss_nn.FlatIndex against faiss's IndexFlatL2 / IndexFlatIP."""

from __future__ import annotations

import threading

import faiss
import numpy as np
import pytest

import faiss_nn
from conftest import assert_tie_aware


def rand(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_search_matches_faiss(metric):
    d = 24
    base, more, queries = rand(500, d, 1), rand(300, d, 2), rand(77, d, 3)
    ours = faiss_nn.FlatIndex(d, metric)
    ref = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    for part in (base, more):
        ours.add(part)
        ref.add(part)
    assert ours.ntotal == ref.ntotal == 800 and ours.d == d
    assert ours.metric_type == ref.metric_type
    dist, lab = ours.search(queries, 12)
    rdist, rlab = ref.search(queries, 12)
    assert dist.dtype == np.float32 and lab.dtype == np.int64 and dist.shape == (77, 12)
    assert_tie_aware(lab, dist, rlab, rdist, 1e-4, metric)


def test_fewer_rows_than_k_pad_exactly_as_faiss():
    # faiss's IndexFlat leaves unfilled slots at label -1 and distance +FLT_MAX (L2) or -FLT_MAX
    # (inner product): the same arrays, bit for bit.
    x = np.array([[0, 0], [1, 1]], dtype=np.float32)
    for ours, ref, q in (
        (faiss_nn.IndexFlatL2(2), faiss.IndexFlatL2(2), np.zeros((1, 2), np.float32)),
        (faiss_nn.IndexFlatIP(2), faiss.IndexFlatIP(2), np.array([[1, 0]], np.float32)),
    ):
        ours.add(x)
        ref.add(x)
        dist, lab = ours.search(q, 3)
        rdist, rlab = ref.search(q, 3)
        assert lab.tolist() == rlab.tolist() and lab[0, 2] == -1
        assert dist.tobytes() == rdist.tobytes(), (dist, rdist)
    flt_max = np.finfo(np.float32).max
    empty = faiss_nn.FlatIndex(2)
    dist, lab = empty.search(np.zeros((2, 2), np.float32), 2)
    assert (lab == -1).all() and (dist == flt_max).all()
    dist, lab = faiss_nn.FlatIndex(2, "cosine").search(np.ones((1, 2), np.float32), 1)
    assert lab.tolist() == [[-1]] and dist.tolist() == [[-flt_max]]
    dist, lab = empty.search(np.zeros((0, 2), np.float32), 2)
    assert dist.shape == lab.shape == (0, 2)


def test_rows_stay_loaded_between_searches_and_reload_after_add():
    index = faiss_nn.FlatIndex(8)
    index.add(rand(100, 8))
    q = rand(5, 8, 9)
    first = index.search(q, 3)
    index.search(q, 3)
    index.search(q, 3)
    assert index.loads == 1
    index.add(rand(10, 8, 4))
    index.search(q, 3)
    assert index.loads == 2 and index.ntotal == 110
    index.reset()
    assert index.ntotal == 0
    index.add(rand(100, 8))
    again = index.search(q, 3)
    assert np.array_equal(first[1], again[1]) and np.array_equal(first[0], again[0])


def test_searches_from_several_threads_agree():
    index = faiss_nn.FlatIndex(16, "ip")
    index.add(rand(3000, 16))
    q = rand(200, 16, 5)
    want = index.search(q, 5)
    results = [None] * 4

    def run(i):
        results[i] = index.search(q, 5)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert np.array_equal(r[0], want[0]) and np.array_equal(r[1], want[1])


def test_ports_from_faiss_by_one_line():
    rng = np.random.default_rng(0)
    xb = rng.random((1000, 32)).astype("float32")
    xq = rng.random((10, 32)).astype("float32")
    results = []
    for make in (faiss.IndexFlatL2, faiss_nn.IndexFlatL2):
        index = make(32)
        index.add(xb)
        D, I = index.search(xq, 4)
        results.append((D, I, index.ntotal, index.is_trained))
    (fd, fi, fn, ft), (od, oi, on, ot) = results
    assert np.array_equal(fi, oi) and np.allclose(fd, od, atol=1e-4)
    assert (fn, ft) == (on, ot)


def test_repr_names_the_index():
    index = faiss_nn.FlatIndex(3, "ip")
    index.add([[1, 2, 3]])
    assert repr(index) == "faiss_nn.FlatIndex(d=3, metric=IP, ntotal=1, device=cpu)"
