"""The threshold join and dedup from Python: FlatIndex.range_search with faiss's conventions,
range_pairs and dedup against a float64 brute force, keep policies, tables, cosine everywhere, and
bad input."""

from __future__ import annotations

import faiss
import numpy as np
import pyarrow as pa
import pytest

import faiss_nn
from conftest import DEMO, read_embeddings


def rand(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def scores64(a, b, metric):
    """Every pair's float64 score of rows a against rows b."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if metric == "l2":
        return ((a64[:, None, :] - b64[None, :, :]) ** 2).sum(-1)
    dot = a64 @ b64.T
    if metric == "ip":
        return dot
    return np.clip(dot / np.linalg.norm(a64, axis=1)[:, None] / np.linalg.norm(b64, axis=1)[None, :], -1, 1)


def passes(s, t, metric):
    return s < t if metric == "l2" else s > t


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_range_search_follows_faiss_flat_expectations(metric):
    # faiss's own TestIndexFlat range part: radius = the median of the queries' 10th-neighbour
    # scores, each query's results exactly the stored rows below (L2) or above (IP) it. Here the
    # reference is float64, since our decision is made on the exact score.
    d, nb, nq = 32, 1000, 200
    xb, xq = rand(nb, d, 1), rand(nq, d, 2)
    index = faiss_nn.FlatIndex(d, metric)
    index.add(xb)
    dist, _ = index.search(xq, 10)
    radius = float(np.median(dist[:, -1]))
    lims, D, I = index.range_search(xq, radius)
    assert lims.dtype == np.int64 and lims.shape == (nq + 1,) and lims[0] == 0 and lims[-1] == len(I)
    assert D.dtype == np.float32 and I.dtype == np.int64
    all_s = scores64(xq, xb, metric)
    for q in range(nq):
        got = I[lims[q] : lims[q + 1]]
        want = np.flatnonzero(passes(all_s[q], radius, metric))
        assert np.array_equal(np.sort(got), want), q
        np.testing.assert_allclose(D[lims[q] : lims[q + 1]], all_s[q, got], rtol=1e-6, atol=1e-6)
    if metric != "cosine":
        # faiss's own range search finds the same rows but where its float32 score sits on the
        # radius itself.
        ref = faiss.IndexFlat(d, faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)
        ref.add(xb)
        flims, _, fI = ref.range_search(xq, radius)
        differ = sum(set(fI[flims[q] : flims[q + 1]]) != set(I[lims[q] : lims[q + 1]]) for q in range(nq))
        assert differ <= 2, differ


def test_range_search_of_an_empty_batch_and_an_empty_index():
    # faiss's test_empty_query_batch: lims == [0] for both metrics.
    for metric in ("l2", "ip"):
        index = faiss_nn.FlatIndex(32, metric)
        index.add(rand(100, 32))
        lims, D, I = index.range_search(np.empty((0, 32), np.float32), 1.0)
        assert np.array_equal(lims, np.zeros(1, dtype=np.int64)) and D.size == I.size == 0
    lims, _, _ = faiss_nn.FlatIndex(4).range_search(rand(3, 4), 2.0)
    assert lims.tolist() == [0, 0, 0, 0]
    with pytest.raises(faiss_nn.InvalidInputError, match="radius"):
        faiss_nn.FlatIndex(4).range_search(rand(3, 4), float("nan"))
    # An infinite radius passes every row, as in faiss.
    index = faiss_nn.FlatIndex(4)
    index.add(rand(5, 4))
    assert index.range_search(rand(2, 4, 3), float("inf"))[0].tolist() == [0, 5, 10]


@pytest.mark.parametrize("metric,threshold", [("cosine", 0.3), ("ip", 6.0), ("l2", 50.0)])
def test_range_pairs_equals_the_float64_brute_force(metric, threshold):
    x = rand(400, 24, 5)
    x[300:350] = x[:50]  # exact duplicates
    i, j, s = faiss_nn.range_pairs(x, threshold, metric)
    assert i.dtype == np.int64 and j.dtype == np.int64 and s.dtype == np.float32
    all_s = scores64(x, x, metric)
    wi, wj = np.nonzero(np.triu(passes(all_s, threshold, metric), 1))
    assert np.array_equal(i, wi) and np.array_equal(j, wj), "sorted by (i, j), i < j"
    np.testing.assert_allclose(s, all_s[wi, wj], rtol=1e-6, atol=1e-7)


def test_dedup_keeps_one_row_per_component():
    x, _ = read_embeddings(DEMO)
    x = x[:800]
    t = 0.9
    group, keep = faiss_nn.dedup(x, t)
    assert group.dtype == np.int64 and keep.dtype == np.bool_
    # Reference: connected components of the brute-force pairs, named by their lowest row.
    s = scores64(x, x, "cosine")
    adj = np.triu(s > t, 1)
    parent = list(range(len(x)))

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a

    for a, b in zip(*np.nonzero(adj)):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    want = np.array([min(r for r in range(len(x)) if find(r) == find(q)) for q in range(len(x))])
    assert np.array_equal(group, want)
    assert np.array_equal(keep, group == np.arange(len(x)))
    assert (~keep).sum() > 0, "the demo rows hold near-duplicates at 0.9"


def test_keep_by_values_of_every_kind():
    x = np.repeat(rand(3, 8, 9), 3, axis=0)  # three groups of three identical rows
    texts = ["a", "ccc", "bb", "xx", "x", "xxx", None, "yy", "y"]
    group, keep = faiss_nn.dedup(x, 0.999, keep="max", by=texts)
    assert group.tolist() == [1, 1, 1, 5, 5, 5, 7, 7, 7]
    group, _ = faiss_nn.dedup(x, 0.999, keep="min", by=pa.array(texts))
    assert group.tolist() == [0, 0, 0, 4, 4, 4, 8, 8, 8], "a null is never kept"
    big = np.array([2**62 + 1, 2**62, 2**62 + 2] * 3, dtype=np.int64)
    assert faiss_nn.dedup(x, 0.999, keep="min", by=big)[0].tolist() == [1, 1, 1, 4, 4, 4, 7, 7, 7]
    stamps = np.array(["2024-01-0%d" % (1 + r % 3) for r in range(9)], dtype="datetime64[ns]")
    stamps[2] = np.datetime64("NaT")
    assert faiss_nn.dedup(x, 0.999, keep="max", by=stamps)[0].tolist() == [1, 1, 1, 5, 5, 5, 8, 8, 8]
    floats = np.array([1.0, np.nan, 3.0, 3.0, 3.0, 0.0, -1, -2, -3])
    assert faiss_nn.dedup(x, 0.999, keep="max", by=floats)[0].tolist() == [2, 2, 2, 3, 3, 3, 6, 6, 6]
    with pytest.raises(faiss_nn.InvalidInputError, match="no order"):
        faiss_nn.dedup(x, 0.999, keep="max", by=[{"a": 1}] * 9)
    with pytest.raises(faiss_nn.InvalidInputError, match="8 values for 9 rows"):
        faiss_nn.dedup(x, 0.999, keep="max", by=list(range(8)))
    with pytest.raises(faiss_nn.InvalidInputError, match="needs `by`"):
        faiss_nn.dedup(x, 0.999, keep="min")
    with pytest.raises(faiss_nn.InvalidInputError, match="keep"):
        faiss_nn.dedup(x, 0.999, keep="longest")
    # Lists by their length (ragged or not), Python dates and times, a masked array's mask.
    assert faiss_nn.dedup(x, 0.999, keep="max", by=[[1]] * 8 + [[1, 2]])[0].tolist() == [0, 0, 0, 3, 3, 3, 8, 8, 8]
    assert faiss_nn.dedup(x, 0.999, keep="max", by=[[1, 2]] * 9)[0].tolist() == [0, 0, 0, 3, 3, 3, 6, 6, 6]
    import datetime

    days = [datetime.date(2024, 1, 1 + r % 3) for r in range(9)]
    assert faiss_nn.dedup(x, 0.999, keep="max", by=days)[0].tolist() == [2, 2, 2, 5, 5, 5, 8, 8, 8]
    masked = np.ma.array(np.arange(9.0), mask=[r % 3 == 2 for r in range(9)])
    assert faiss_nn.dedup(x, 0.999, keep="max", by=masked)[0].tolist() == [1, 1, 1, 4, 4, 4, 7, 7, 7]
    with pytest.raises(faiss_nn.InvalidInputError, match="beyond the 64-bit integers"):
        faiss_nn.dedup(x, 0.999, keep="max", by=[2**70] + [1] * 8)


def test_dedup_table_adds_columns_and_ranks_by_a_column():
    table = pa.table(
        {
            "text": ["short", "the longest one", "mid size", "alone"],
            "embedding": [[1.0, 0.0], [2.0, 0.001], [3.0, 0.0], [0.0, 1.0]],
        }
    )
    out = faiss_nn.dedup_table(table, 0.99, keep="max", by="text")
    assert out.column_names == ["text", "embedding", "dup_group", "keep"]
    assert out.column("dup_group").to_pylist() == [1, 1, 1, 3]
    assert out.column("keep").to_pylist() == [False, True, False, True]
    with pytest.raises(faiss_nn.InvalidInputError, match="overwrite=True"):
        faiss_nn.dedup_table(out, 0.99)
    again = faiss_nn.dedup_table(out, 0.99, overwrite=True)
    assert again.column("dup_group").to_pylist() == [0, 0, 0, 3]
    with pytest.raises(faiss_nn.InvalidInputError, match="no column 'size'"):
        faiss_nn.dedup_table(table, 0.99, keep="max", by="size")
    nested = table.append_column("meta", pa.array([{"a": 1}] * 4))
    with pytest.raises(faiss_nn.InvalidInputError, match="has no order"):
        faiss_nn.dedup_table(nested, 0.99, keep="max", by="meta")


def test_bad_thresholds_and_rows():
    x = rand(30, 4)
    for t, match in ((float("nan"), "finite"), (float("inf"), "finite"), (-1.5, "every pair"), (1.0, "no pair")):
        with pytest.raises(faiss_nn.InvalidInputError, match=match):
            faiss_nn.range_pairs(x, t)
    with pytest.raises(faiss_nn.InvalidInputError, match="no pair"):
        faiss_nn.dedup(x, 0.0, metric="l2")
    with pytest.raises(faiss_nn.InvalidInputError, match="expected a number"):
        faiss_nn.range_pairs(x, "0.5")
    z = x.copy()
    z[4] = 0
    with pytest.raises(faiss_nn.InvalidInputError, match="row 4 is all zeros"):
        faiss_nn.dedup(z, 0.5)
    with pytest.raises(faiss_nn.InvalidInputError, match="row 4 is all zeros"):
        faiss_nn.self_knn(z, k=2, metric="cosine")
    with pytest.raises(faiss_nn.InvalidInputError, match=r"passes more than max_pairs = 10 pairs"):
        faiss_nn.range_pairs(x, -0.99, max_pairs=10)
    with pytest.warns(RuntimeWarning, match="runs on the CPU"):
        faiss_nn.range_pairs(x, 0.5, device=0)
    with pytest.raises(faiss_nn.InvalidInputError, match="invalid device"):
        faiss_nn.range_pairs(x, 0.5, device="mps")


def test_cosine_everywhere():
    x, _ = read_embeddings(DEMO)
    x = x[:500] * np.linspace(0.1, 10, 500, dtype=np.float32)[:, None]  # rows of every norm
    before = x.copy()
    idx, sc = faiss_nn.self_knn(x, k=5, metric="cosine")
    assert np.array_equal(x, before), "the input is not modified"
    unit = x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    ref = faiss.IndexFlatIP(x.shape[1])
    ref.add(unit.astype(np.float32))
    _, fi = ref.search(unit.astype(np.float32), 6)
    assert (idx[:, 0] == fi[:, 1]).mean() > 0.99
    s = scores64(x, x, "cosine")
    np.testing.assert_allclose(sc, np.take_along_axis(s, idx, 1), rtol=1e-6)
    index = faiss_nn.FlatIndex(x.shape[1], "cosine")
    index.add(x)
    assert index.metric == "cosine" and index.metric_type == faiss.METRIC_INNER_PRODUCT
    d, i = index.search(x[:10], 3)
    assert np.array_equal(i[:, 0], np.arange(10))
    np.testing.assert_allclose(d[:, 0], 1.0, rtol=1e-6)


def test_torch_style_device_names_are_parsed():
    # No GPU here: "cuda" / "cuda:1" are understood (a device error), not "not a number".
    x = rand(20, 4)
    for dev in ("cuda", "cuda:1", "cuda:0,cuda:1"):
        with pytest.raises((faiss_nn.UnsupportedError, faiss_nn.DeviceError)) as e:
            faiss_nn.self_knn(x, k=1, device=dev)
        assert "not a number" not in str(e.value), dev
    with pytest.raises(faiss_nn.InvalidInputError, match="not a number"):
        faiss_nn.self_knn(x, k=1, device="gpu")
