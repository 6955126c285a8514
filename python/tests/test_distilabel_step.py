"""faiss_nn.distilabel.FaissNearestNeighbour: distilabel's own unit-test expectations, side by
side with distilabel's step, and bad input."""

from __future__ import annotations

import platform

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
from distilabel.steps.embeddings.nearest_neighbour import FaissNearestNeighbour as DistilabelStep

import faiss_nn
from conftest import DEMO, SMALL, assert_tie_aware, read_embeddings
from faiss_nn.distilabel import FaissNearestNeighbour

# distilabel 1.5.3, tests/unit/steps/embeddings/test_nearest_neighbour.py: nine 4-d rows with the
# default parameters (k = 1, L2) and, for each, its nearest other row and faiss's squared distance.
ROWS = [
    [0.1, -0.4, 0.7, 0.2],
    [-0.3, 0.9, 0.1, -0.5],
    [0.6, 0.2, -0.1, 0.8],
    [-0.2, -0.6, 0.4, 0.3],
    [0.9, 0.1, -0.3, -0.2],
    [0.4, -0.7, 0.6, 0.1],
    [-0.5, 0.3, -0.2, 0.9],
    [0.7, 0.5, -0.4, -0.1],
    [-0.1, -0.9, 0.8, 0.6],
]
EXPECTED = [
    (5, 0.19999998807907104),
    (7, 1.5699999332427979),
    (7, 1.0000001192092896),
    (0, 0.23000000417232513),
    (7, 0.2200000137090683),
    (0, 0.19999998807907104),
    (2, 1.2400000095367432),
    (4, 0.2200000137090683),
    (3, 0.3499999940395355),
]
# faiss's float32 distances against our exact ones rounded to float32: at most a few float32
# ulps apart at these magnitudes (an ulp is 1.2e-7 at 1.0).
SCORE_TOL = 1e-6


def run(step, rows):
    step.load()
    out = list(step.process(rows))
    assert len(out) == 1, "a global step yields its rows once"
    return out[0]


def test_distilabel_unit_test_expectations():
    step = FaissNearestNeighbour()
    results = run(step, [{"embedding": e} for e in ROWS])
    assert len(results) == len(ROWS)
    for i, (row, (idx, score)) in enumerate(zip(results, EXPECTED)):
        assert set(row) == {"embedding", "nn_indices", "nn_scores"}, i
        assert row["embedding"] == ROWS[i]
        assert row["nn_indices"] == [idx], i
        assert type(row["nn_indices"][0]) is int and type(row["nn_scores"][0]) is float
        assert len(row["nn_scores"]) == 1
        assert abs(row["nn_scores"][0] - score) <= SCORE_TOL, (i, row["nn_scores"][0], score)


def test_same_runtime_parameters_and_defaults_as_distilabels_step():
    ours = FaissNearestNeighbour()
    theirs = DistilabelStep()
    for name in ("device", "string_factory", "metric_type", "k", "search_batch_size", "train_size"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert set(theirs.runtime_parameters_names) <= set(ours.runtime_parameters_names)
    assert ours.inputs == theirs.inputs and ours.outputs == theirs.outputs
    dumped = ours.dump()
    assert dumped["type_info"] == {"module": "faiss_nn.distilabel", "name": "FaissNearestNeighbour"}


@pytest.mark.parametrize("metric_type", [None, faiss.METRIC_L2, faiss.METRIC_INNER_PRODUCT])
def test_same_neighbours_as_distilabels_step_on_real_rows(metric_type):
    table = pq.read_table(SMALL)
    rows = table.to_pylist()
    kw = {"k": 5, "metric_type": metric_type}
    ours = run(FaissNearestNeighbour(**kw), rows)
    theirs = run(DistilabelStep(**kw), rows)
    assert [r["text"] for r in ours] == [r["text"] for r in theirs]
    assert [r["embedding"] for r in ours] == [r["embedding"] for r in rows]
    oi = np.array([r["nn_indices"] for r in ours])
    os_ = np.array([r["nn_scores"] for r in ours], dtype=np.float32)
    ti = np.array([r["nn_indices"] for r in theirs])
    ts = np.array([r["nn_scores"] for r in theirs], dtype=np.float32)
    assert_tie_aware(oi, os_, ti, ts, 1e-5, f"metric {metric_type}")
    # ... and exactly what self_knn gives.
    x = np.array([r["embedding"] for r in rows], dtype=np.float32)
    si, ss = faiss_nn.self_knn(x, k=5, metric=1 if metric_type is None else metric_type)
    assert oi.tolist() == si.tolist() and os_.tolist() == ss.tolist()


def test_inputs_are_not_modified():
    rows = [{"embedding": e, "id": i} for i, e in enumerate(ROWS)]
    snapshot = [dict(r) for r in rows]
    out = run(FaissNearestNeighbour(k=2), rows)
    assert rows == snapshot
    assert [r["id"] for r in out] == list(range(len(ROWS)))


def test_parameters_reach_the_search():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 16)).astype(np.float32)
    rows = [{"embedding": r} for r in x.tolist()]
    out = run(FaissNearestNeighbour(k=3, metric_type=0, threads=1, memory_budget=1 << 20), rows)
    i, s = faiss_nn.self_knn(x, k=3, metric="ip")
    assert [r["nn_indices"] for r in out] == i.tolist()
    out = run(FaissNearestNeighbour(k=3, string_factory="IVF8,Flat", train_size=200), rows)
    assert all(len(r["nn_indices"]) == 3 and i not in r["nn_indices"] for i, r in enumerate(out))
    # nprobe = nlist: the IVF index visits every list, so its answer is the exact one.
    out = run(FaissNearestNeighbour(k=3, string_factory="IVF8,Flat", train_size=200, search_params="nprobe=8"), rows)
    exact, _ = faiss_nn.self_knn(x, k=3)
    hits = sum(len(set(r["nn_indices"]) & set(e)) for r, e in zip(out, exact.tolist()))
    assert hits >= 0.99 * 3 * len(rows), hits
    # approximate reaches the search: on near-copies (test_self_knn's approximate test) the
    # step's lists are self_knn's unproven ones, which differ from the exact ones where an int8
    # kernel runs (x86-64).
    y = np.vstack([x[:100, :8].repeat(8, axis=1), x[0, :8].repeat(8) + 1e-4 * rng.standard_normal((150, 64))])
    y = np.ascontiguousarray(y.astype(np.float32))
    out = run(FaissNearestNeighbour(k=5, precision="int8", approximate=True), [{"embedding": r} for r in y.tolist()])
    loose, _ = faiss_nn.self_knn(y, k=5, precision="int8", approximate=True)
    assert [r["nn_indices"] for r in out] == loose.tolist()
    exact, _ = faiss_nn.self_knn(y, k=5, precision="int8")
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert not np.array_equal(loose, exact)


@pytest.mark.parametrize(
    "rows,match",
    [
        ([{"embedding": [1.0, 2.0]}, {"text": "no embedding"}], r"row 1: no column 'embedding'; its columns are: 'text'"),
        ([{"embedding": [1.0, 2.0]}, {"embedding": [1.0]}], r"ragged rows in column 'embedding': row 1 has 1 values, expected 2"),
        ([{"embedding": [1.0, 2.0]}, {"embedding": ["a", 2.0]}], r"column 'embedding': row 1, component 0 is 'a' \(str\)"),
        ([{"embedding": [1.0, 2.0]}, {"embedding": None}], r"column 'embedding': row 1 is None"),
        ([{"embedding": [1.0, 2.0]}, {"embedding": [np.nan, 2.0]}], r"column 'embedding': row 1, component 0 is NaN"),
        ([{"embedding": [1.0, np.inf]}], r"column 'embedding': row 0, component 1 is inf"),
        ([], r"column 'embedding' is empty: no rows"),
        ([{"embedding": [1.0, 2.0]}, [1.0, 2.0]], r"row 1 is list, expected a dict of columns"),
    ],
)
def test_bad_rows_are_named(rows, match):
    snapshot = [dict(r) if isinstance(r, dict) else r for r in rows]
    step = FaissNearestNeighbour()
    step.load()
    with pytest.raises(faiss_nn.InvalidInputError, match=match):
        next(step.process(rows))
    assert repr(rows) == repr(snapshot)  # untouched (repr: NaN compares unequal to itself)


def test_bad_parameters_are_named():
    rows = [{"embedding": e} for e in ROWS]
    for kwargs, match in (
        ({"k": 0}, r"k = 0 is invalid"),
        ({"k": -3}, r"k = -3 is invalid"),
        ({"metric_type": 9}, r"metric_type 9: not a faiss metric"),
        ({"device": [0, -1]}, r"cannot appear in a list"),
    ):
        step = FaissNearestNeighbour(**kwargs)
        step.load()
        with pytest.raises(faiss_nn.InvalidInputError, match=match):
            next(step.process(rows))


@pytest.mark.parametrize("k", [8, 9, 12])
def test_k_beyond_the_other_rows_fills_as_distilabels_step(k):
    """distilabel's step asks faiss for k + 1 rows of n and gets the missing ones as index -1,
    score float32's largest: so does this step (8 = every other row, 9 and 12 beyond)."""
    rows = [{"embedding": e} for e in ROWS]
    ours = run(FaissNearestNeighbour(k=k), rows)
    theirs = run(DistilabelStep(k=k), rows)
    for o, t in zip(ours, theirs):
        assert o["nn_indices"] == t["nn_indices"]
        assert len(o["nn_scores"]) == k
        for a, b, i in zip(o["nn_scores"], t["nn_scores"], o["nn_indices"]):
            assert (a == b) if i < 0 else abs(a - b) <= SCORE_TOL, (o, t)
    assert ours[0]["nn_indices"][8:] == [-1] * (k - 8)
    assert ours[0]["nn_scores"][8:] == [float(np.finfo(np.float32).max)] * (k - 8)
    # Inner products: the empty slots score the most negative float32, as faiss writes them.
    ip = run(FaissNearestNeighbour(k=k, metric_type=faiss.METRIC_INNER_PRODUCT), rows)
    assert ip[0]["nn_scores"][8:] == [-float(np.finfo(np.float32).max)] * (k - 8)
    # One row: nothing to search, every slot empty.
    one = run(FaissNearestNeighbour(k=2), [{"embedding": [1.0, 2.0]}])
    assert one[0]["nn_indices"] == [-1, -1] and one[0]["nn_scores"] == [float(np.finfo(np.float32).max)] * 2
    # ... but the row and the parameters are still checked.
    with pytest.raises(faiss_nn.InvalidInputError, match="metric_type 99"):
        next(FaissNearestNeighbour(k=2, metric_type=99).process([{"embedding": [1.0, 2.0]}]))


def test_search_batch_size_none_is_one_batch():
    rows = [{"embedding": e} for e in ROWS]
    for factory in (None, "HNSW8"):
        none = run(FaissNearestNeighbour(search_batch_size=None, string_factory=factory), rows)
        default = run(FaissNearestNeighbour(string_factory=factory), rows)
        assert [r["nn_indices"] for r in none] == [r["nn_indices"] for r in default]



def test_hnsw_lists_are_the_same_every_run():
    """faiss inserts rows into an HNSW graph on several threads at once, and the graph (so every
    list) then changes from run to run; the step's graph is built on one thread."""
    x, _ = read_embeddings(DEMO)
    rows = [{"embedding": e} for e in x]
    first = [r["nn_indices"] for r in run(FaissNearestNeighbour(k=10, string_factory="HNSW16"), rows)]
    for _ in range(3):
        again = [r["nn_indices"] for r in run(FaissNearestNeighbour(k=10, string_factory="HNSW16"), rows)]
        assert again == first


def test_search_batch_size_zero_or_less_is_one_batch(monkeypatch):
    """As datasets.map reads a batch size (distilabel's step runs with it), 0 or less is one
    batch of every row: the search gets the row count as its batch."""
    import faiss_nn.distilabel as step_module

    seen = []
    real = step_module._self_knn

    def spy(x, what, k, metric, device, factory, batch, *rest):
        seen.append(batch)
        return real(x, what, k, metric, device, factory, batch, *rest)

    monkeypatch.setattr(step_module, "_self_knn", spy)
    rows = [{"embedding": e} for e in ROWS]
    for size, batch in ((0, len(rows)), (-5, len(rows)), (None, len(rows)), (3, 3)):
        seen.clear()
        run(FaissNearestNeighbour(search_batch_size=size, string_factory="HNSW8"), rows)
        assert seen == [batch], (size, seen)


@pytest.mark.parametrize("metric_type", [21, 2])
def test_bray_curtis_and_l1_take_signed_rows_as_distilabels_step(metric_type):
    """Real embeddings have negative components: BrayCurtis (Σ|x − y| / Σ|x + y|) is defined on
    them, as in faiss and scipy, and both steps list the same rows."""
    # Random rows: no ties that f32 (faiss) and f64 (ours) sums could order differently.
    x = np.random.default_rng(5).standard_normal((40, 16)).astype(np.float32)
    rows = [{"embedding": e.tolist()} for e in x]
    ours = run(FaissNearestNeighbour(k=3, metric_type=metric_type), rows)
    theirs = run(DistilabelStep(k=3, metric_type=metric_type), rows)
    for o, t in zip(ours, theirs):
        assert o["nn_indices"] == t["nn_indices"], (o, t)
        assert np.allclose(o["nn_scores"], t["nn_scores"], rtol=1e-5), (o, t)


def test_flat_index_artifact_of_every_flat_metric(tmp_path, monkeypatch):
    """Like distilabel's step, a flat index of L1 … JensenShannon is stored as faiss's IndexFlat
    of that metric."""
    rows = [{"embedding": [abs(v) for v in e]} for e in ROWS]
    x = np.array([r["embedding"] for r in rows], dtype=np.float32)
    for metric_type in (2, 3, 20, 21, 22):
        saved = []
        monkeypatch.setattr(
            FaissNearestNeighbour, "save_artifact", lambda self, name, write_function, metadata: saved.append((name, write_function, metadata))
        )
        run(FaissNearestNeighbour(k=2, metric_type=metric_type), rows)
        ((name, write, meta),) = saved
        target = tmp_path / str(metric_type)
        target.mkdir()
        write(target)
        index = faiss.read_index(str(target / "index.faiss"))
        assert (name, index.metric_type, index.ntotal, meta["num_rows"]) == ("faiss_index", metric_type, len(rows), len(rows))
        assert np.array_equal(index.reconstruct_n(0, index.ntotal), x)
