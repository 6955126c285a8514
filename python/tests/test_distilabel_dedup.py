"""faiss_nn.distilabel.EmbeddingDedup against distilabel's own, and ExactEmbeddingDedup: one row
kept per group, the metric's direction, distilabel's rule reproduced on request, a pipeline."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps.filtering.embedding import EmbeddingDedup as DistilabelDedup

import faiss_nn
from conftest import DEMO, SMALL
from faiss_nn.distilabel import EmbeddingDedup, ExactEmbeddingDedup, FaissNearestNeighbour

KEEP = "keep_row_after_embedding_filtering"


def run(step, rows):
    step.load()
    out = list(step.process([dict(r) for r in rows]))
    assert len(out) == 1
    return out[0]


def nn_rows(n=600, k=5, metric=0):
    rows = pq.read_table(DEMO).slice(0, n).to_pylist()
    return run(FaissNearestNeighbour(k=k, metric_type=metric, save_index=False), rows)


def test_a_duplicate_pair_keeps_one_row_where_distilabel_drops_both():
    rows = [
        {"nn_indices": [1, 2], "nn_scores": [0.99, 0.2]},
        {"nn_indices": [0, 2], "nn_scores": [0.99, 0.1]},
        {"nn_indices": [0, 1], "nn_scores": [0.2, 0.1]},
    ]
    theirs = run(DistilabelDedup(threshold=0.9), rows)
    assert [r[KEEP] for r in theirs] == [False, False, True], "distilabel drops both twins"
    ours = run(EmbeddingDedup(threshold=0.9), rows)
    assert [r[KEEP] for r in ours] == [True, False, True]
    assert all(set(r) == {"nn_indices", "nn_scores", KEEP} for r in ours)
    same = run(EmbeddingDedup(threshold=0.9, mode="distilabel"), rows)
    assert [r[KEEP] for r in same] == [False, False, True]


def test_distilabel_mode_reproduces_distilabels_step_on_real_lists():
    rows = nn_rows()
    for t in (0.8, 0.9):
        theirs = [r[KEEP] for r in run(DistilabelDedup(threshold=t), rows)]
        ours = [r[KEEP] for r in run(EmbeddingDedup(threshold=t, mode="distilabel"), rows)]
        assert ours == theirs, t
        groups = [r[KEEP] for r in run(EmbeddingDedup(threshold=t), rows)]
        # Ours never drops more rows than distilabel's, and every group keeps one row.
        assert sum(groups) >= sum(theirs)


def test_groups_from_lists_equal_the_exact_join_where_no_group_outgrows_k():
    rows = nn_rows(k=10)
    x = np.array([r["embedding"] for r in rows], np.float32)
    _, keep = faiss_nn.dedup(x, 0.9, metric="ip")
    ours = [r[KEEP] for r in run(EmbeddingDedup(threshold=0.9, metric_type=0), rows)]
    assert ours == keep.tolist()


def test_the_direction_follows_the_metric():
    # L2 lists (ascending): duplicates are distances below the threshold. distilabel's rule
    # (scores above it) marks every row whose neighbours are far, i.e. nearly all of them.
    rows = nn_rows(n=1500, k=3, metric=1)
    x = np.array([r["embedding"] for r in rows], np.float32)
    t = 0.3  # a squared distance of 0.3 between unit rows: cosine 0.85
    _, keep = faiss_nn.dedup(x, t, metric="l2")
    inferred = [r[KEEP] for r in run(EmbeddingDedup(threshold=t), rows)]
    stated = [r[KEEP] for r in run(EmbeddingDedup(threshold=t, metric_type=1), rows)]
    assert inferred == stated == keep.tolist()
    assert 0 < len(rows) - sum(inferred) < 40
    theirs = [r[KEEP] for r in run(DistilabelDedup(threshold=t), rows)]
    assert sum(theirs) < len(rows) / 2, "distilabel's rule is backwards for distances"
    mixed = [{"nn_indices": [1, 2], "nn_scores": [0.1, 0.5]}, {"nn_indices": [0, 2], "nn_scores": [0.9, 0.2]}, {"nn_indices": [0, 1], "nn_scores": [0.5, 0.2]}]
    with pytest.raises(faiss_nn.InvalidInputError, match="ascend in row 0 and descend in row 1"):
        run(EmbeddingDedup(), mixed)


def test_bad_lists_are_named():
    with pytest.raises(faiss_nn.InvalidInputError, match="row 1: nn_indices holds 7"):
        run(EmbeddingDedup(), [{"nn_indices": [1], "nn_scores": [0.95]}, {"nn_indices": [7], "nn_scores": [0.95]}])
    with pytest.raises(faiss_nn.InvalidInputError, match="row 0: needs the columns"):
        run(EmbeddingDedup(), [{"embedding": [1.0]}])
    with pytest.raises(faiss_nn.InvalidInputError, match="pair up"):
        run(EmbeddingDedup(), [{"nn_indices": [0, 0], "nn_scores": [0.95]}])
    # Unfilled slots (-1) are skipped; with one neighbour a row the direction must be stated.
    rows = [{"nn_indices": [1, -1], "nn_scores": [0.95, -3.4e38]}, {"nn_indices": [0, -1], "nn_scores": [0.95, -3.4e38]}]
    with pytest.raises(faiss_nn.InvalidInputError, match="set metric_type"):
        run(EmbeddingDedup(), rows)
    out = run(EmbeddingDedup(metric_type=0), rows)
    assert [r[KEEP] for r in out] == [True, False]
    # distilabel's rule, literally: a -1 slot above the threshold drops the last row.
    theirs = run(DistilabelDedup(threshold=0.9), [{"nn_indices": [1, -1], "nn_scores": [0.1, 3.4e38]}, {"nn_indices": [0, -1], "nn_scores": [0.1, 3.4e38]}, {"nn_indices": [0, 1], "nn_scores": [0.1, 0.2]}])
    same = run(EmbeddingDedup(threshold=0.9, mode="distilabel"), [{"nn_indices": [1, -1], "nn_scores": [0.1, 3.4e38]}, {"nn_indices": [0, -1], "nn_scores": [0.1, 3.4e38]}, {"nn_indices": [0, 1], "nn_scores": [0.1, 0.2]}])
    assert [r[KEEP] for r in same] == [r[KEEP] for r in theirs] == [True, True, False]
    # None lists (rows with no neighbours) are no neighbours.
    out = run(EmbeddingDedup(metric_type="cosine"), [{"nn_indices": None, "nn_scores": None}, {"nn_indices": [0], "nn_scores": [0.99]}])
    assert [r[KEEP] for r in out] == [True, False]


def test_the_default_pipeline_lists_of_one_l2_neighbour_need_the_metric():
    # FaissNearestNeighbour's defaults: L2, k = 1. Guessing "similarity" would keep twins and drop
    # distinct rows; the step asks for the metric, and with it finds the twins.
    x = np.eye(6, 8, dtype=np.float32)
    x[5] = x[4]
    rows = run(FaissNearestNeighbour(save_index=False), [{"embedding": r.tolist()} for r in x])
    with pytest.raises(faiss_nn.InvalidInputError, match="k = 1"):
        run(EmbeddingDedup(threshold=0.01), rows)
    out = run(EmbeddingDedup(threshold=0.01, metric_type=1), rows)
    assert [r[KEEP] for r in out] == [True, True, True, True, True, False]


def test_exact_dedup_step_equals_the_library_and_ranks_by_a_column():
    rows = pq.read_table(DEMO).slice(0, 800).to_pylist()
    x = np.array([r["embedding"] for r in rows], np.float32)
    out = run(ExactEmbeddingDedup(threshold=0.9), rows)
    group, keep = faiss_nn.dedup(x, 0.9)
    assert [r["dup_group"] for r in out] == group.tolist()
    assert [r[KEEP] for r in out] == keep.tolist()
    assert all(type(r["dup_group"]) is int and type(r[KEEP]) is bool for r in out)
    assert out[0]["text"] == rows[0]["text"] and "embedding" in out[0]
    longest = run(ExactEmbeddingDedup(threshold=0.9, keep="max", keep_by="text"), rows)
    lengths = [len(r["text"]) for r in rows]
    for r in range(len(rows)):
        g = longest[r]["dup_group"]
        members = [s for s in range(len(rows)) if longest[s]["dup_group"] == g]
        best = max(lengths[s] for s in members)
        assert lengths[g] == best and g == min(s for s in members if lengths[s] == best)
    with pytest.raises(faiss_nn.InvalidInputError, match="no column 'size'"):
        run(ExactEmbeddingDedup(threshold=0.9, keep="max", keep_by="size"), rows)


def test_pipeline_nn_then_dedup(tmp_path):
    rows = pq.read_table(SMALL).to_pylist()
    x = np.array([r["embedding"] for r in rows], np.float32)
    with Pipeline(name="faiss-nn-dedup-test", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=64)
        nn = FaissNearestNeighbour(k=8, metric_type="cosine", save_index=False)
        dedup = EmbeddingDedup(threshold=0.8, metric_type="cosine")
        exact = ExactEmbeddingDedup(threshold=0.8)
        load >> nn >> dedup >> exact
    out = pipeline.run(use_cache=False)["default"]["train"]
    group, keep = faiss_nn.dedup(x, 0.8)
    assert out["dup_group"] == group.tolist() and out[KEEP] == keep.tolist()
    idx, sc = faiss_nn.self_knn(x, k=8, metric="cosine")
    assert out["nn_indices"] == idx.tolist()
    assert np.allclose(out["nn_scores"], sc)
